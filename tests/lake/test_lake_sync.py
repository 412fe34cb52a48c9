"""Two writers' local copies kept in step through one lake (real PostgreSQL + S3 on loopback).

Host A and host B are two warehouse directories; each publishes what it changed and fetches
what the other committed, and neither ever overwrites the other's slices with stale copies.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from tests.lake.conftest import Lake
from warehouse.lake import connect
from warehouse.lake_sync import SyncState, publish_up, sync_down
from warehouse.parquet_store import ParquetStore
from warehouse.schema import CREDIT_USAGE, RESOURCE_USAGE


def usage_rows(month: str, credits: float, orgs: int = 3) -> pd.DataFrame:
    start = pd.Timestamp(f"{month}-01")
    return pd.DataFrame(
        {
            "organization_id": [f"org-{i}" for i in range(orgs)],
            "organization_name": [f"org {i}" for i in range(orgs)],
            "interval": "day",
            "scope": "organization",
            "project_id": None,
            "project_name": None,
            "start_date": start,
            "end_date": start + pd.Timedelta(days=1),
            "credits": credits,
            "loaded_at": pd.Timestamp("2026-11-28 06:00"),
        }
    )


def snapshot_rows(observed_at: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "organization_id": ["org-0", "org-1"],
            "observed_at": pd.Timestamp(observed_at),
            "projects": [3, 4],
        }
    )


def write_month(warehouse: Path, month: str, credits: float) -> None:
    ParquetStore(warehouse).replace_partition(
        CREDIT_USAGE, {"interval": "day", "month": month}, usage_rows(month, credits)
    )


def lake_months(lake: Lake) -> dict[str, float]:
    con = connect(lake.config, read_only=True)
    try:
        rows = con.execute(
            "SELECT month, sum(credits) FROM credit_usage GROUP BY month ORDER BY month"
        ).fetchall()
    finally:
        con.close()
    return {str(m): float(c) for m, c in rows}


def local_months(warehouse: Path) -> dict[str, float]:
    frame = ParquetStore(warehouse).read(CREDIT_USAGE)
    sums = frame.groupby(frame["start_date"].dt.strftime("%Y-%m"))["credits"].sum()
    return {str(k): float(v) for k, v in sums.items()}


def test_each_host_publishes_only_what_it_changed_and_fetches_the_rest(
    lake: Lake, tmp_path: Path
) -> None:
    host_a, host_b = tmp_path / "a", tmp_path / "b"
    write_month(host_a, "2026-09", 1.0)
    write_month(host_a, "2026-10", 1.0)
    first = publish_up(host_a, lake.config)
    assert sorted(first.published) == [
        "credit_usage/interval=day/month=2026-09",
        "credit_usage/interval=day/month=2026-10",
    ]
    assert lake_months(lake) == {"2026-09": 3.0, "2026-10": 3.0}

    fetched = sync_down(host_b, lake.config)
    assert len(fetched.fetched) == 2
    assert local_months(host_b) == {"2026-09": 3.0, "2026-10": 3.0}
    assert publish_up(host_b, lake.config).published == []  # fetched slices are not echoed back

    write_month(host_b, "2026-10", 2.0)  # B re-pulls October
    assert publish_up(host_b, lake.config).published == ["credit_usage/interval=day/month=2026-10"]
    write_month(host_a, "2026-08", 5.0)  # meanwhile A backfills August, still on the old October
    assert publish_up(host_a, lake.config).published == ["credit_usage/interval=day/month=2026-08"]
    assert lake_months(lake) == {"2026-08": 15.0, "2026-09": 3.0, "2026-10": 6.0}

    again = sync_down(host_a, lake.config)
    assert again.fetched == ["credit_usage/interval=day/month=2026-10"]
    assert local_months(host_a) == {"2026-08": 15.0, "2026-09": 3.0, "2026-10": 6.0}
    assert sync_down(host_a, lake.config).fetched == []


def test_snapshots_from_two_hosts_on_one_day_are_both_kept_once(lake: Lake, tmp_path: Path) -> None:
    host_a, host_b = tmp_path / "a", tmp_path / "b"
    day = {"observed_date": "2026-11-28"}
    ParquetStore(host_a).append_file(
        RESOURCE_USAGE, day, "snapshot-a.parquet", snapshot_rows("2026-11-28 06:00")
    )
    ParquetStore(host_b).append_file(
        RESOURCE_USAGE, day, "snapshot-b.parquet", snapshot_rows("2026-11-28 07:00")
    )
    for host in (host_a, host_b, host_a, host_b):
        sync_down(host, lake.config)
        publish_up(host, lake.config)
    for host in (host_a, host_b):
        frame = ParquetStore(host).read(RESOURCE_USAGE)
        assert len(frame) == 4
        assert not frame.duplicated(["organization_id", "observed_at"]).any()

    (
        ParquetStore(host_a).table_dir(RESOURCE_USAGE)
        / "observed_date=2026-11-28"
        / "snapshot-b.parquet"
    ).unlink()
    removed = publish_up(host_a, lake.config)
    assert removed.removed == [
        "resource_usage/observed_date=2026-11-28/snapshot=snapshot-b.parquet"
    ]
    con = connect(lake.config, read_only=True)
    try:
        times = con.execute("SELECT DISTINCT observed_at FROM resource_usage").fetchall()
    finally:
        con.close()
    assert [t for (t,) in times] == [datetime(2026, 11, 28, 6, 0)]


def test_a_lost_sync_state_refetches_but_never_duplicates(lake: Lake, tmp_path: Path) -> None:
    host = tmp_path / "a"
    write_month(host, "2026-10", 1.0)
    publish_up(host, lake.config)
    SyncState(host).path.unlink()
    sync_down(host, lake.config)
    assert local_months(host) == {"2026-10": 3.0}
    publish_up(host, lake.config)
    assert lake_months(lake) == {"2026-10": 3.0}
