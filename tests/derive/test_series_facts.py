"""The whole-history facts of every series, kept per day slice and combined
(`insights.series_facts`), equal the same aggregate over the whole history after runs
that change different months; a run reads only the slices that changed (issue 9: a daily
refresh that does not grow with history)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from common.periods import anchors_by_organization
from insights import derived_slices
from insights.derived_slices import DerivedRecord, refresh_trends
from insights.series_facts import (
    CACHE,
    FACTS_TABLE,
    LEGACY_CACHE,
    combine,
    day_slices,
    load_slice_facts,
)
from insights.trends import (
    ORG_LAST_TABLE,
    SERIES_TABLE,
    derived_connection,
    parquet_daily_view,
    prepare_series,
)
from tests.derive.pandas_reference import reference_trends
from tests.derive.test_trends_sql import (
    _row,
    assert_same_trends,
    organizations_frame,
    stored_trends,
    synthetic_usage,
    write_usage,
)
from warehouse.derived_schema import PROJECT_USAGE_TRENDS
from warehouse.files import writer_lock
from warehouse.parquet_store import ParquetStore
from warehouse.schema import CREDIT_USAGE

SERIES_SQL = (
    f"SELECT organization_id, scope, pkey, project_id, first_day, first_use, organization_name, "
    f"project_name FROM {SERIES_TABLE} ORDER BY ALL"
)
ORG_LAST_SQL = f"SELECT organization_id, last_day FROM {ORG_LAST_TABLE} ORDER BY ALL"


def from_scratch(warehouse: Path) -> tuple[list[tuple], list[tuple]]:
    """The facts aggregated over every day row of the warehouse at once."""
    source = ParquetStore(warehouse).scan_sql(CREDIT_USAGE)
    assert source is not None
    with derived_connection() as con:
        parquet_daily_view(con, source)
        prepare_series(con, {})
        return con.execute(SERIES_SQL).fetchall(), con.execute(ORG_LAST_SQL).fetchall()


def incremental(warehouse: Path) -> tuple[list[tuple], list[tuple], int]:
    """The facts combined from the per-slice cache; and how many slices had to be read."""
    store = ParquetStore(warehouse)
    with derived_connection() as con:
        load = load_slice_facts(con, store, day_slices(store))
        combine(con, SERIES_TABLE, ORG_LAST_TABLE)
        series, last = con.execute(SERIES_SQL).fetchall(), con.execute(ORG_LAST_SQL).fetchall()
    return series, last, load.computed


def assert_facts_match(warehouse: Path, expected_reads: int) -> None:
    series, last, reads = incremental(warehouse)
    scratch_series, scratch_last = from_scratch(warehouse)
    assert series == scratch_series and len(series) > 0
    assert last == scratch_last
    assert reads == expected_reads


def month_of(usage: pd.DataFrame) -> pd.Series:
    return usage["start_date"].dt.strftime("%Y-%m")


def test_combined_facts_equal_a_whole_history_aggregate_after_runs_changing_months(
    tmp_path: Path,
) -> None:
    usage = synthetic_usage(organizations=5)
    months = sorted(set(month_of(usage)))
    assert len(months) >= 5
    write_usage(tmp_path, usage)
    assert_facts_match(tmp_path, expected_reads=len(months))  # first run: every slice
    assert_facts_match(tmp_path, expected_reads=0)  # nothing changed: the cache alone

    # an old month restated: its credits change and a project's usage there becomes zero,
    # which moves that project's first day with usage later
    restated = usage.copy()
    old = months[1]
    in_old = month_of(restated) == old
    restated.loc[in_old, "credits"] = restated.loc[in_old, "credits"] * 0.5 + 0.25
    project = restated.loc[in_old & (restated["scope"] == "project"), "project_id"].iloc[0]
    first_use_before = usage.loc[
        (usage["project_id"] == project) & (usage["credits"] > 0), "start_date"
    ].min()
    upto_old = month_of(restated) <= old
    restated.loc[upto_old & (restated["project_id"] == project), "credits"] = 0.0
    changed = sorted(set(month_of(restated[upto_old & (restated["project_id"] == project)])))
    write_usage(tmp_path, restated, months=sorted({old, *changed}))
    assert_facts_match(tmp_path, expected_reads=len({old, *changed}))
    series, _, _ = incremental(tmp_path)
    first_use = {(r[0], r[2]): r[5] for r in series}
    org = str(restated.loc[restated["project_id"] == project, "organization_id"].iloc[0])
    assert first_use[(org, project)] != first_use_before  # the restatement is visible

    # a new project appearing in the latest month, under a new organization name
    last = months[-1]
    day = restated["start_date"].max()
    new_rows = pd.DataFrame([_row("org1", "brand-new name", "project", "p-new", day, 12.5)])
    grown = pd.concat([restated, new_rows], ignore_index=True)
    write_usage(tmp_path, grown, months=[last])
    assert_facts_match(tmp_path, expected_reads=1)
    series, _, _ = incremental(tmp_path)
    newest = [r for r in series if r[2] == "p-new"]
    assert [(r[0], r[5], r[6]) for r in newest] == [("org1", day.to_pydatetime(), "brand-new name")]

    # a month with no rows left (emptied): its facts are gone
    with writer_lock(tmp_path):
        ParquetStore(tmp_path).replace_partition(
            CREDIT_USAGE, {"interval": "day", "month": months[0]}, grown.iloc[0:0]
        )
    assert_facts_match(tmp_path, expected_reads=1)


def test_trends_after_incremental_runs_equal_a_from_scratch_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """The table built run by run (a restated old month, then a new project in the latest
    month) equals the table of one run over the final data, and the pandas reference."""
    warehouse = tmp_path_factory.mktemp("incremental")
    usage = synthetic_usage(seed=11, organizations=4)
    organizations = organizations_frame(usage)
    anchors = anchors_by_organization(organizations)
    months = sorted(set(month_of(usage)))
    write_usage(warehouse, usage)
    first = refresh_trends(warehouse, anchors)
    assert first.facts.computed == len(months)

    restated = usage.copy()
    in_old = month_of(restated) == months[1]
    restated.loc[in_old, "credits"] = restated.loc[in_old, "credits"] * 2.0
    write_usage(warehouse, restated, months=[months[1]])
    second = refresh_trends(warehouse, anchors)
    assert second.facts.computed == 1
    assert second.recomputed == months[1:4]

    day = restated["start_date"].max()
    org = str(restated.loc[restated["start_date"] == day, "organization_id"].iloc[0])
    name = str(restated.loc[restated["organization_id"] == org, "organization_name"].iloc[-1])
    final = pd.concat(
        [restated, pd.DataFrame([_row(org, name, "project", "p-late", day, 40.0)])],
        ignore_index=True,
    )
    write_usage(warehouse, final, months=[months[-1]])
    third = refresh_trends(warehouse, anchors)
    assert third.facts.computed == 1
    assert third.recomputed == [months[-1]]

    scratch = tmp_path_factory.mktemp("scratch")
    write_usage(scratch, final)
    refresh_trends(scratch, anchors)
    assert_same_trends(stored_trends(warehouse), stored_trends(scratch))
    assert_same_trends(stored_trends(warehouse), reference_trends(final, organizations))


def test_a_damaged_or_foreign_cache_is_rebuilt_from_the_slices(tmp_path: Path) -> None:
    usage = synthetic_usage(seed=4, organizations=3)
    months = sorted(set(month_of(usage)))
    write_usage(tmp_path, usage)
    assert_facts_match(tmp_path, expected_reads=len(months))
    cache = tmp_path / CACHE
    files = sorted(cache.glob("*.parquet"))
    assert len(files) == len(months)  # one file a slice
    files[0].write_bytes(b"not a parquet file")
    assert_facts_match(tmp_path, expected_reads=len(months))
    # rows a file holds for a slice digest that is no longer the slice's are not used
    store = ParquetStore(tmp_path)
    with derived_connection() as con:
        load_slice_facts(con, store, day_slices(store))
        con.execute(
            f"COPY (SELECT * REPLACE (TIMESTAMP '1999-01-01' AS first_day, 'stale' AS sha256) "
            f"FROM {FACTS_TABLE} WHERE slice = (SELECT min(slice) FROM {FACTS_TABLE})) "
            f"TO '{files[0]}' (FORMAT parquet)"
        )
    assert_facts_match(tmp_path, expected_reads=1)
    # a file of no current slice, and the single-file cache of earlier versions, are removed
    foreign = cache / "0123456789abcdef.parquet"
    foreign.write_bytes(files[1].read_bytes())
    legacy = tmp_path / LEGACY_CACHE
    legacy.write_bytes(b"old cache")
    assert_facts_match(tmp_path, expected_reads=0)
    assert not foreign.exists() and not legacy.exists()
    assert len(list(cache.glob("*.parquet"))) == len(months)


def test_a_changed_slice_rewrites_only_its_own_cache_file(tmp_path: Path) -> None:
    usage = synthetic_usage(seed=6, organizations=3)
    months = sorted(set(month_of(usage)))
    write_usage(tmp_path, usage)
    assert_facts_match(tmp_path, expected_reads=len(months))
    before = {p: p.stat().st_ino for p in (tmp_path / CACHE).glob("*.parquet")}
    changed = usage.copy()
    last = month_of(changed) == months[-1]
    changed.loc[last, "credits"] = changed.loc[last, "credits"] + 1.0
    write_usage(tmp_path, changed, months=[months[-1]])
    assert_facts_match(tmp_path, expected_reads=1)
    after = {p: p.stat().st_ino for p in (tmp_path / CACHE).glob("*.parquet")}
    assert set(after) == set(before)
    assert sum(after[p] != before[p] for p in before) == 1


def test_the_single_file_cache_of_earlier_versions_is_taken_over(tmp_path: Path) -> None:
    usage = synthetic_usage(seed=8, organizations=3)
    months = sorted(set(month_of(usage)))
    write_usage(tmp_path, usage)
    store = ParquetStore(tmp_path)
    with derived_connection() as con:  # the old cache: every slice's rows in one file
        load_slice_facts(con, store, day_slices(store))
        con.execute(f"COPY {FACTS_TABLE} TO '{tmp_path / LEGACY_CACHE}' (FORMAT parquet)")
    for path in (tmp_path / CACHE).glob("*.parquet"):
        path.unlink()
    assert_facts_match(tmp_path, expected_reads=0)  # nothing recomputed
    assert not (tmp_path / LEGACY_CACHE).exists()
    assert len(list((tmp_path / CACHE).glob("*.parquet"))) == len(months)
    assert_facts_match(tmp_path, expected_reads=0)


def test_records_of_the_previous_context_digest_are_adopted_without_recomputing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upgrade over a long history recomputes no month whose inputs did not change: a record
    written with the previous context digest is checked with it and re-recorded; one that does
    not match it is recomputed."""
    usage = synthetic_usage(seed=5, organizations=3)
    anchors = anchors_by_organization(organizations_frame(usage))
    months = sorted(set(month_of(usage)))
    write_usage(tmp_path, usage)
    with monkeypatch.context() as old_version:  # the records the previous version wrote
        old_version.setattr(
            derived_slices, "_context_hashes", derived_slices._legacy_context_hashes
        )
        refresh_trends(tmp_path, anchors)
    record = DerivedRecord(ParquetStore(tmp_path).table_dir(PROJECT_USAGE_TRENDS))
    entries = record.load()
    for entry in entries.values():
        entry.pop("context")
    entries[f"month={months[1]}/data.parquet"]["sources"] = "a record that no longer matches"
    record.save(entries)
    upgraded = refresh_trends(tmp_path, anchors)
    assert upgraded.recomputed == [months[1]]
    assert all(e["context"] == derived_slices.CONTEXT_FORMAT for e in record.load().values())
    assert refresh_trends(tmp_path, anchors).recomputed == []
