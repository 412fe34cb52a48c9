"""A warehouse loaded over two ranges with never-loaded months between them (F-e): the months
between are a gap, not zero usage. `project_usage_trends` has no rows there, and its series
restart after the gap: the rows of the later range are those of a warehouse holding that range
alone (the session's demo run), apart from the flags that know the earlier usage."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tests.derive.test_trends_sql import TREND_COLUMNS, assert_same_trends
from tests.services.demo_run import DemoBuild
from tests.services.emulator import default_range, start_emulator

COMPARED = [c for c in TREND_COLUMNS if c not in ("is_new", "is_dormant")]


def trends_of(warehouse: Path) -> pd.DataFrame:
    con = duckdb.connect(str(warehouse / "usage.duckdb"), read_only=True)
    try:
        return con.execute("select * from project_usage_trends").df()
    finally:
        con.close()


def test_months_never_loaded_are_a_gap_not_zero_usage(
    demo_build: DemoBuild, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipelines.commands.run_cmd import execute

    start, end = default_range(demo_build.now.date())
    early = (date(2024, 1, 1), date(2024, 3, 31))
    assert early[1] < start.replace(day=1)  # months in between were never loaded
    warehouse = tmp_path / "warehouse"
    with start_emulator(now=demo_build.now) as server:
        monkeypatch.setenv("UBIOPS_API_HOST", server.base_url)
        monkeypatch.setenv("UBIOPS_API_TOKEN", server.token)
        monkeypatch.setenv("USAGE_WAREHOUSE", str(warehouse))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
        monkeypatch.setenv("USAGE_PARTITIONS_START", f"{early[0]:%Y-%m-%d}")  # as a user must
        for first, last in (early, (start, end)):
            summary = execute(first, last, log_level="WARNING")
            assert summary.success, summary.error
    gapped = trends_of(warehouse)
    assert (gapped["date"] <= pd.Timestamp(early[1])).any()  # the early range has rows
    between = (gapped["date"] > pd.Timestamp(early[1])) & (gapped["date"] < pd.Timestamp(start))
    assert not between.any(), gapped[between].head()
    later = gapped[gapped["date"] >= pd.Timestamp(start)]
    alone = trends_of(demo_build.warehouse)
    assert_same_trends(later, alone, COMPARED)  # e.g. mean_30d over loaded days only
    mid = pd.Timestamp(start) + pd.Timedelta(days=14)
    means = later[(later["scope"] == "organization") & (later["date"] == mid)]
    assert len(means) > 0 and (means["mean_30d"] > 0).any()
