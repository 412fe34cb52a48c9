"""Publishing a daily refresh: updating the kept previous file against updating a copy.

For each warehouse given (a directory holding `warehouse/`, as left by `bench/scale.py`-like
runs: e.g. one with 2 months of history and one with 24), copies it to a scratch directory on
the same filesystem as the source (a disk, not RAM: the copy and its fsync are the cost) and
replays two daily refreshes' changes to the publish step: the last month's `credit_usage` days
and `project_usage_trends` rewritten with other numbers, and `organizations` rewritten, then
published (`publish_database`, as the `usage_database` asset does). The first publish is the
previous day's (it keeps the file it replaces); the second, today's, is timed twice, each time
from the same state:

- **copy**: the kept file removed first, so the publish copies `usage.duckdb` and updates the
  copy (what every publish did before the kept file);
- **kept**: the kept file present, so the publish updates it in place of a copy.

Prints wall seconds (best of `--repeat`), the file's size, and kept / copy per warehouse, then
the growth from the first warehouse to each other (kept and copy): what the history adds to a
daily refresh's publish.

    .venv/bin/python bench/publish_kept.py /tmp/lead/o1000n2/h2 /tmp/lead/o1000n2/h24

The kept warehouses are never modified.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from warehouse.derived_schema import PROJECT_USAGE_TRENDS  # noqa: E402
from warehouse.parquet_store import ParquetStore  # noqa: E402
from warehouse.publish import DATABASE_NAME, kept_path, publish_database  # noqa: E402
from warehouse.schema import CREDIT_USAGE, ORGANIZATIONS  # noqa: E402


def last_month(store: ParquetStore) -> str:
    months = sorted(
        p.name.split("=", 1)[1] for p in (store.table_dir(CREDIT_USAGE) / "interval=day").iterdir()
    )
    return months[-1]


def change_a_day(store: ParquetStore, month: str, factor: float) -> None:
    """What a daily refresh writes: the last month re-pulled (other numbers), its trends, the
    registry."""
    day = store.read(
        CREDIT_USAGE, "interval = 'day' AND strftime(start_date, '%Y-%m') = ?", [month]
    )
    day["credits"] = day["credits"] * factor
    store.replace_partition(CREDIT_USAGE, {"interval": "day", "month": month}, day)
    trends = store.read(PROJECT_USAGE_TRENDS, "strftime(date, '%Y-%m') = ?", [month])
    trends["credits"] = trends["credits"] * factor
    store.replace_partition(PROJECT_USAGE_TRENDS, {"month": month}, trends)
    organizations = store.read(ORGANIZATIONS)
    organizations["last_seen_at"] = organizations["last_seen_at"] + pd.Timedelta(days=1)
    store.replace_table(ORGANIZATIONS, organizations)


def settle(path: Path) -> None:
    os.sync()
    with open(path, "rb") as handle:  # the published file in the page cache, as after a run
        while handle.read(1 << 24):
            pass


def timed_publish(warehouse: Path, *, keep: bool) -> tuple[float, str]:
    if not keep:
        kept_path(warehouse / DATABASE_NAME).unlink(missing_ok=True)
    settle(warehouse / DATABASE_NAME)
    began = time.perf_counter()
    result = publish_database(warehouse)
    seconds = time.perf_counter() - began
    assert result.incremental, result.reason
    return seconds, result.updated


def measure(source: Path, scratch: Path, repeat: int) -> dict[str, float]:
    figures: dict[str, float] = {}
    for how in ("copy", "kept"):
        best = float("inf")
        for _ in range(repeat):
            work = scratch / "work"
            shutil.rmtree(work, ignore_errors=True)
            shutil.copytree(source / "warehouse", work)
            store = ParquetStore(work)
            month = last_month(store)
            change_a_day(store, month, 1.01)
            publish_database(work)  # yesterday's refresh: keeps the file it replaces
            change_a_day(store, month, 1.02)
            seconds, updated = timed_publish(work, keep=how == "kept")
            assert updated == ("the kept previous file" if how == "kept" else "a copy"), updated
            best = min(best, seconds)
            figures["size_mb"] = (work / DATABASE_NAME).stat().st_size / 1e6
        figures[how] = best
    shutil.rmtree(scratch / "work", ignore_errors=True)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warehouses", nargs="+", type=Path, help="kept warehouse directories")
    parser.add_argument("--repeat", type=int, default=3, help="timed publishes per way (best)")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for source in args.warehouses:
        with tempfile.TemporaryDirectory(prefix="publish-kept-", dir=source.parent) as scratch:
            results[str(source)] = measure(source, Path(scratch), args.repeat)
    print("| warehouse | usage.duckdb | copy | kept | kept / copy |")
    print("|---|---|---|---|---|")
    for name, f in results.items():
        print(
            f"| {name} | {f['size_mb']:,.0f} MB | {f['copy']:.2f} s | {f['kept']:.2f} s "
            f"| {f['kept'] / f['copy']:.2f}x |"
        )
    (base_name, first), *others = results.items()
    for name, f in others:
        print(
            f"\n{name} over {base_name}: copy +{f['copy'] - first['copy']:.2f} s, "
            f"kept +{f['kept'] - first['kept']:.2f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
