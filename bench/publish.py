"""Publishing `usage.duckdb`: the full rebuild (as before) vs the incremental publish by slice.

Builds a synthetic warehouse with `ParquetStore` (no API run): N organizations, ~5 usage series
each (organization total, projects, deleted projects), M months of daily `credit_usage` plus one
period row per series and month, organizations, users, a resource snapshot a day for the last
week, and `project_usage_trends` as the pipeline writes it today (one unpartitioned file, one row
per series and day). Then, for M = each of --months, in one process:

- `check all`: hashing every slice against its manifest, what every publish did before (and
  `usage-etl verify` still does);
- `full rebuild`: `publish_database(incremental=False)`: every table from all Parquet files;
- a daily refresh (the current month's day and period slices, organizations and a resource
  snapshot rewritten) published incrementally, once with `project_usage_trends` unchanged (as
  once derived tables are replaced by slice) and once with it rewritten whole (as today);
- the size of `usage.duckdb` after a full rebuild and after --rounds incremental publishes.

The ratio printed is (check all + full rebuild) / incremental: the publish step of a daily
refresh before and after. Times include the integrity check each path does.

    .venv/bin/python bench/publish.py                        # 1,000 organizations, 12 and 24 months
    .venv/bin/python bench/publish.py --orgs 100 --months 6  # quicker
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from warehouse.derived_schema import PROJECT_USAGE_TRENDS  # noqa: E402
from warehouse.manifest import RACY_SECONDS, check_warehouse  # noqa: E402
from warehouse.parquet_store import ParquetStore  # noqa: E402
from warehouse.publish import DATABASE_NAME, PublishResult, publish_database  # noqa: E402
from warehouse.schema import (  # noqa: E402
    CREDIT_USAGE,
    ORGANIZATION_USERS,
    ORGANIZATIONS,
    RESOURCE_USAGE,
)

SERIES_PER_ORG = 5  # organization total + 3 projects + deleted projects


def months_back(last: datetime, n: int) -> list[datetime]:
    out, y, m = [], last.year, last.month
    for _ in range(n):
        out.append(datetime(y, m, 1))
        y, m = (y, m - 1) if m > 1 else (y - 1, 12)
    return sorted(out)


def series(orgs: int) -> pd.DataFrame:
    """One row per usage series: organization id and name, scope, project id and name."""
    rows = []
    for o in range(orgs):
        org = f"{o:08d}-0000-4000-8000-{o:012d}"
        rows.append((org, f"org-{o}", "organization", None, None))
        for p in range(SERIES_PER_ORG - 2):
            rows.append((org, f"org-{o}", "project", f"{o:08d}-{p:04d}", f"project-{p}"))
        rows.append((org, f"org-{o}", "deleted_projects", None, None))
    return pd.DataFrame(
        rows,
        columns=["organization_id", "organization_name", "scope", "project_id", "project_name"],
    )


def month_frames(keys: pd.DataFrame, month: datetime, seed: int) -> tuple[pd.DataFrame, ...]:
    """The day rows and the period rows of one month."""
    rng = np.random.default_rng(seed)
    end = (month + timedelta(days=32)).replace(day=1)
    days = pd.date_range(month, end - timedelta(days=1), freq="D")
    day = keys.loc[keys.index.repeat(len(days))].reset_index(drop=True)
    day["start_date"] = np.tile(days.values, len(keys))
    day["end_date"] = day["start_date"] + pd.Timedelta(days=1)
    day["credits"] = rng.gamma(2.0, 40.0, len(day)).round(3)
    day["interval"] = "day"
    day["loaded_at"] = end
    period = keys.copy()
    period["start_date"], period["end_date"] = month, end
    period["credits"] = day.groupby(day.index // len(days))["credits"].sum().values
    period["interval"] = "month"
    period["loaded_at"] = end
    return day, period


def write_month(store: ParquetStore, keys: pd.DataFrame, month: datetime, seed: int) -> int:
    day, period = month_frames(keys, month, seed)
    store.replace_partitions(
        CREDIT_USAGE,
        [
            ({"interval": "day", "month": f"{month:%Y-%m}"}, day),
            ({"interval": "month", "month": f"{month:%Y-%m}"}, period),
        ],
    )
    return len(day) + len(period)


def write_registry(store: ParquetStore, orgs: int, seen: datetime) -> None:
    ids = [f"{o:08d}-0000-4000-8000-{o:012d}" for o in range(orgs)]
    store.replace_table(
        ORGANIZATIONS,
        pd.DataFrame(
            {
                "organization_id": ids,
                "organization_name": [f"org-{o}" for o in range(orgs)],
                "visible": True,
                "last_seen_at": seen,
            }
        ),
    )
    users = pd.DataFrame({"organization_id": np.repeat(ids, 3)})
    users["user_id"] = [f"{i:032d}" for i in range(len(users))]
    users["loaded_at"] = seen
    store.replace_table(ORGANIZATION_USERS, users)


def write_snapshot(store: ParquetStore, orgs: int, at: datetime) -> None:
    frame = pd.DataFrame(
        {
            "organization_id": [f"{o:08d}-0000-4000-8000-{o:012d}" for o in range(orgs)],
            "observed_at": at,
            "projects": 3,
        }
    )
    store.append_file(
        RESOURCE_USAGE,
        {"observed_date": f"{at:%Y-%m-%d}"},
        f"snapshot-{at:%Y%m%dT%H%M%S}.parquet",
        frame,
    )


def write_trends(store: ParquetStore, keys: pd.DataFrame, months: list[datetime], seed: int) -> int:
    """`project_usage_trends` as today: one file, one row per series and day of history."""
    first, last = months[0], (months[-1] + timedelta(days=32)).replace(day=1)
    days = pd.date_range(first, last - timedelta(days=1), freq="D")
    frame = keys.loc[keys.index.repeat(len(days))].reset_index(drop=True)
    frame["date"] = np.tile(days.values, len(keys))
    rng = np.random.default_rng(seed)
    frame["credits"] = rng.gamma(2.0, 40.0, len(frame)).round(3)
    frame["mean_7d"] = frame["credits"]
    store.replace_table(PROJECT_USAGE_TRENDS, frame)
    return len(frame)


def build(root: Path, orgs: int, months: list[datetime]) -> int:
    store = ParquetStore(root)
    keys = series(orgs)
    rows = sum(write_month(store, keys, m, seed=i) for i, m in enumerate(months))
    write_registry(store, orgs, months[-1] + timedelta(days=20))
    for d in range(7):
        write_snapshot(store, orgs, months[-1] + timedelta(days=13 + d, hours=6))
    rows += write_trends(store, keys, months, seed=0)
    return rows


def daily_refresh(root: Path, orgs: int, months: list[datetime], n: int, trends: bool) -> None:
    """What a daily refresh writes: the current month's slices, the registry, a snapshot."""
    store = ParquetStore(root)
    keys = series(orgs)
    write_month(store, keys, months[-1], seed=1000 + n)
    write_registry(store, orgs, months[-1] + timedelta(days=20, hours=n))
    write_snapshot(store, orgs, months[-1] + timedelta(days=20, hours=6, minutes=n))
    if trends:
        write_trends(store, keys, months, seed=n + 1)


def settle() -> None:
    """Let the files just written age past the digest cache's racy window, as between runs."""
    time.sleep(RACY_SECONDS + 0.5)


def timed(fn: object) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn()  # type: ignore[operator]
    return time.perf_counter() - started, result


def bench(orgs: int, n_months: int, rounds: int, work: Path) -> None:
    months = months_back(datetime(2026, 11, 1), n_months)
    root = work / f"w{orgs}x{n_months}"
    shutil.rmtree(root, ignore_errors=True)
    t_build, rows = timed(lambda: build(root, orgs, months))
    settle()
    publish_database(root)  # the first publish: full check, full rebuild
    settle()
    t_check, _ = timed(lambda: check_warehouse(root / "parquet", full=True))
    t_full, full = timed(lambda: publish_database(root, incremental=False))
    assert isinstance(full, PublishResult) and not full.incremental
    full_size = (root / DATABASE_NAME).stat().st_size

    results = []
    for n, trends in enumerate([False, True] + [False] * max(0, rounds - 2)):
        daily_refresh(root, orgs, months, n, trends)
        settle()
        t_incr, incr = timed(lambda: publish_database(root))
        assert isinstance(incr, PublishResult) and incr.incremental, incr
        results.append((trends, t_incr, incr))
    incr_size = (root / DATABASE_NAME).stat().st_size
    parquet_mb = sum(p.stat().st_size for p in (root / "parquet").rglob("*.parquet")) / 2**20

    print(
        f"\n{orgs:,} organizations x {n_months} months: {rows:,} rows, {parquet_mb:,.0f} MiB "
        f"of Parquet (built in {t_build:.1f} s)"
    )
    print(f"  check all slices (full hash)        {t_check:7.2f} s")
    print(f"  full rebuild                        {t_full:7.2f} s   ({full.line()})")
    before = t_check + t_full
    for trends, t_incr, incr in results[:2]:
        what = "facts + trends rewritten whole" if trends else "facts only (derived by slice)"
        print(
            f"  incremental, {what:31} {t_incr:7.2f} s   ratio {before / t_incr:5.1f}x   "
            f"({len(incr.replaced)} partitions, {incr.files_hashed} files hashed)"
        )
    print(
        f"  usage.duckdb: {full_size / 2**20:,.1f} MiB after a full rebuild, "
        f"{incr_size / 2**20:,.1f} MiB after {len(results)} incremental publishes"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=1000)
    parser.add_argument("--months", type=int, nargs="+", default=[12, 24])
    parser.add_argument("--rounds", type=int, default=4, help="incremental publishes (>= 2)")
    parser.add_argument("--keep", type=Path, help="build under this directory and keep it")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-publish-"))
    try:
        for n in args.months:
            bench(args.orgs, n, args.rounds, work)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
