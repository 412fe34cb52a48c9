"""Benchmark: the derived step of a daily refresh (trends, forecasts, quota status) before and
after issue 9 part 1, as history grows.

Builds synthetic warehouses (no emulator: `credit_usage` day slices, `organizations` and daily
`resource_usage` snapshots written through the warehouse's own store) with `--orgs`
organizations (5 series each: the total, three projects, deleted projects) and 1, 12 and 24
months of history ending yesterday, then measures, each in a fresh process (wall time and that
process's peak RSS):

- **before**: what the assets did: the whole `credit_usage` history into pandas, the pandas
  trends (the former implementation, kept in `tests/derive/pandas_reference.py`) written as one
  file, and the alert evaluation over the whole history and every resource snapshot;
- **after, from scratch**: `refresh_trends` computing every month in DuckDB SQL (a first run);
- **after, daily refresh**: the current month's slice reloaded (as the schedule does), then
  `refresh_trends` (recomputes that month) and the evaluation on the SQL window;
- **publish** and **report** of that daily refresh: `usage.duckdb` updated by slice (after a
  first, unmeasured full publish) and the HTML report written from it.

and prints the ratios within the run: refresh over N months / over 1 month (the derived step,
and derive + publish + report), before / after.

    .venv/bin/python bench/derive.py                          # 1,000 organizations, 1/12/24 months
    .venv/bin/python bench/derive.py --orgs 100 --months 1 6  # quicker
    .venv/bin/python bench/derive.py --orgs 5000 --months 1 24 --without-before
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common.periods import shift_month  # noqa: E402
from warehouse.files import writer_lock  # noqa: E402
from warehouse.parquet_store import ParquetStore  # noqa: E402
from warehouse.schema import CREDIT_USAGE, ORGANIZATIONS, RESOURCE_USAGE  # noqa: E402

SUBSCRIPTIONS = ["free", "starter", "professional", "enterprise"]


# ---- the synthetic warehouse -------------------------------------------------------------


def month_days(key: date, last: date) -> pd.DatetimeIndex:
    ny, nm = shift_month(key.year, key.month, 1)
    end = min(date(ny, nm, 1) - timedelta(days=1), last)
    return pd.date_range(key, end, freq="D", unit="us")


def month_slice(orgs: int, days: pd.DatetimeIndex, seed: int, loaded_at: datetime) -> pd.DataFrame:
    """Day rows of one month: per organization three projects, deleted projects and the total."""
    rng = np.random.default_rng(seed)
    n, d = orgs, len(days)
    scale = rng.gamma(2.0, 20.0, size=(n, 1))
    weekday = np.where(np.asarray(days.day_of_week) < 5, 1.0, 0.4)[None, :]
    parts = {
        "p1": scale * weekday * rng.gamma(8.0, 1 / 8.0, size=(n, d)),
        "p2": 0.5 * scale * rng.gamma(4.0, 1 / 4.0, size=(n, d)) * (rng.random((n, d)) > 0.2),
        "p3": 0.2 * scale * rng.gamma(2.0, 1 / 2.0, size=(n, d)) * (rng.random((n, 1)) > 0.3),
    }
    deleted = 0.05 * scale * rng.random((n, d))
    total = sum(parts.values()) + deleted
    org_ids = np.array([f"org-{i:05d}" for i in range(n)], dtype=object)
    frames = []
    for scope, pid, values in [
        *[("project", p, v) for p, v in parts.items()],
        ("deleted_projects", None, deleted),
        ("organization", None, total),
    ]:
        frames.append(
            pd.DataFrame(
                {
                    "organization_id": np.repeat(org_ids, d),
                    "organization_name": np.repeat(org_ids, d),
                    "interval": "day",
                    "scope": scope,
                    "project_id": None if pid is None else np.repeat(org_ids, d) + f"-{pid}",
                    "project_name": pid,
                    "start_date": np.tile(days.to_numpy(), n),
                    "end_date": np.tile((days + pd.Timedelta(days=1)).to_numpy(), n),
                    "credits": np.round(values.ravel(), 3),
                    "loaded_at": loaded_at,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def build(warehouse: Path, orgs: int, months: int, today: date) -> None:
    """`months` calendar months of history ending yesterday (the current month partial)."""
    store = ParquetStore(warehouse)
    last = today - timedelta(days=1)
    loaded = datetime(today.year, today.month, today.day)
    rng = np.random.default_rng(0)
    anchors = rng.integers(1, 32, size=orgs).astype(float)
    anchors[rng.random(orgs) < 0.1] = np.nan
    ids = [f"org-{i:05d}" for i in range(orgs)]
    organizations = pd.DataFrame(
        {
            "organization_id": ids,
            "organization_name": ids,
            "status": "active",
            "subscription": [SUBSCRIPTIONS[i % 4] for i in range(orgs)],
            "period_anchor_day": pd.array(anchors, dtype="Int16"),
            "first_seen_at": pd.Timestamp(loaded),
            "last_seen_at": pd.Timestamp(loaded),
            "visible": True,
        }
    )
    with writer_lock(warehouse):
        store.replace_table(ORGANIZATIONS, organizations)
        for back in range(months - 1, -1, -1):
            y, m = shift_month(today.year, today.month, -back)
            days = month_days(date(y, m, 1), last)
            if len(days) == 0:
                continue
            frame = month_slice(orgs, days, seed=y * 12 + m, loaded_at=loaded)
            store.replace_partition(
                CREDIT_USAGE, {"interval": "day", "month": f"{y:04d}-{m:02d}"}, frame
            )
            snapshots = []
            for day in days:
                counts = {
                    r: rng.integers(1, 30, size=orgs)
                    for r in ("projects", "users", "deployments", "pipelines")
                }
                snapshot = pd.DataFrame(
                    {"organization_id": ids, "observed_at": day + pd.Timedelta(hours=6), **counts}
                )
                path = store.partition_path(
                    RESOURCE_USAGE, {"observed_date": f"{day:%Y-%m-%d}"}, "snapshot.parquet"
                )
                snapshots.append((path, snapshot))
            store.write_files(RESOURCE_USAGE, snapshots)


def reload_current_month(warehouse: Path, orgs: int, today: date) -> None:
    """What the daily schedule does to the warehouse: the current month's slice replaced."""
    store = ParquetStore(warehouse)
    days = month_days(date(today.year, today.month, 1), today - timedelta(days=1))
    frame = month_slice(orgs, days, seed=today.year * 12 + today.month, loaded_at=datetime.now())
    with writer_lock(warehouse):
        store.replace_partition(CREDIT_USAGE, {"interval": "day", "month": f"{today:%Y-%m}"}, frame)


# ---- the steps (each run in a fresh process) --------------------------------------------


def _evaluation_inputs(store: ParquetStore) -> tuple[pd.DataFrame, object, date]:
    from insights.quotas import load_quotas

    orgs = store.read(ORGANIZATIONS)
    return orgs, load_quotas(ROOT / "quotas.example.yaml"), datetime.now(UTC).date()


def step_before(warehouse: Path) -> str:
    from alerting.evaluate import compute_alerts
    from tests.derive.pandas_reference import reference_trends
    from warehouse.derived_schema import PROJECT_USAGE_TRENDS

    store = ParquetStore(warehouse)
    usage = store.read(CREDIT_USAGE, "interval = 'day'")
    orgs, config, today = _evaluation_inputs(store)
    trends = reference_trends(usage, orgs)
    single_file = replace(PROJECT_USAGE_TRENDS, partition_by=())
    ParquetStore(warehouse / "before").replace_table(single_file, trends)
    evaluation = compute_alerts(
        usage,
        orgs,
        config,  # type: ignore[arg-type]
        store.read(RESOURCE_USAGE),
        as_of=today - timedelta(days=1),
        resources_as_of=today,
    )
    return f"{len(trends):,} trend rows, {len(evaluation.forecasts):,} forecasts"


def step_after_scratch(warehouse: Path) -> str:
    from common.periods import anchors_by_organization
    from insights.derived_slices import refresh_trends

    store = ParquetStore(warehouse)
    result = refresh_trends(warehouse, anchors_by_organization(store.read(ORGANIZATIONS)))
    _evaluate_on_window(store)
    return f"{len(result.recomputed)} months, {result.rows_written:,} rows"


def _evaluate_on_window(store: ParquetStore) -> int:
    """The alert evaluation of the asset (on the SQL window), its two tables stored; forecasts."""
    from alerting.evaluate import compute_alerts
    from insights.usage_window import load_evaluation_window, load_resource_window
    from warehouse.derived_schema import QUOTA_FORECASTS, QUOTA_STATUS

    orgs, config, today = _evaluation_inputs(store)
    window = load_evaluation_window(store, today - timedelta(days=1), config, orgs)  # type: ignore[arg-type]
    observed = load_resource_window(store, today)
    evaluation = compute_alerts(
        window.daily,
        orgs,
        config,  # type: ignore[arg-type]
        observed.observations,
        as_of=today - timedelta(days=1),
        resources_as_of=today,
        first_days=window.first_days,
        last_days=window.last_days,
        observation_counts=observed.counts,
    )
    with writer_lock(store.root.parent):
        store.replace_table(QUOTA_FORECASTS, evaluation.forecasts)
        store.replace_table(QUOTA_STATUS, evaluation.status)
    return len(evaluation.forecasts)


def step_after_daily(warehouse: Path) -> str:
    from common.periods import anchors_by_organization
    from insights.derived_slices import refresh_trends

    store = ParquetStore(warehouse)
    result = refresh_trends(warehouse, anchors_by_organization(store.read(ORGANIZATIONS)))
    forecasts = _evaluate_on_window(store)
    return (
        f"{len(result.recomputed)} of {len(result.months)} months recomputed, "
        f"{result.rows_written:,} rows; {forecasts:,} forecasts"
    )


def step_publish(warehouse: Path) -> str:
    from warehouse.publish import publish_database

    with writer_lock(warehouse):
        result = publish_database(warehouse)
    how = "by slice" if result.incremental else f"rebuilt ({result.reason})"
    return f"{how}, {sum(result.rows.values()):,} rows"


def step_report(warehouse: Path) -> str:
    from reports import write_report

    path = write_report(warehouse)
    size = sum(p.stat().st_size for p in path.parent.rglob("*.html"))
    return f"{sum(1 for _ in path.parent.rglob('*.html')):,} pages, {size / 2**20:.1f} MB"


STEPS: dict[str, Callable[[Path], str]] = {
    "before": step_before,
    "after_scratch": step_after_scratch,
    "after_daily": step_after_daily,
    "publish": step_publish,
    "report": step_report,
}
DAILY_STEPS = ("after_daily", "publish", "report")
"""The steps of a daily refresh after the current month's slice is reloaded, in order."""


@dataclass(frozen=True)
class Measured:
    seconds: float
    rss_mb: float
    what: str


def run_step(name: str, warehouse: Path) -> Measured:
    """Run one step in a fresh Python process; its wall time and peak RSS."""
    out = subprocess.run(
        [sys.executable, __file__, "--step", name, "--warehouse", str(warehouse)],
        check=True,
        capture_output=True,
        text=True,
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return Measured(float(data["seconds"]), float(data["rss_mb"]), str(data["what"]))


def child(name: str, warehouse: Path) -> int:
    started = time.perf_counter()
    what = STEPS[name](warehouse)
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss_mb": rss, "what": what}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orgs", type=int, default=1000)
    parser.add_argument("--months", type=int, nargs="+", default=[1, 12, 24])
    parser.add_argument("--step", choices=sorted(STEPS))
    parser.add_argument("--warehouse", type=Path)
    parser.add_argument(
        "--without-before",
        action="store_true",
        help="skip the whole-history pandas baseline (it needs many GB at 5,000 organizations)",
    )
    args = parser.parse_args()
    if args.step:
        return child(args.step, args.warehouse)
    today = datetime.now(UTC).date()
    print(f"{args.orgs} organizations, history of {args.months} months ending {today}")
    print("| history | step | wall | peak RSS | what |")
    print("|---|---|---|---|---|")
    results: dict[tuple[int, str], Measured] = {}
    with tempfile.TemporaryDirectory(prefix="bench-derive-") as tmp:
        for months in args.months:
            warehouse = Path(tmp) / f"m{months}"
            build(warehouse, args.orgs, months, today)
            first_steps = ("after_scratch",) if args.without_before else ("before", "after_scratch")
            for name in first_steps:
                results[(months, name)] = run_step(name, warehouse)
            run_step("publish", warehouse)  # the first publish: a full build, not measured
            reload_current_month(warehouse, args.orgs, today)
            for name in DAILY_STEPS:
                results[(months, name)] = run_step(name, warehouse)
            for name in (*first_steps, *DAILY_STEPS):
                r = results[(months, name)]
                print(
                    f"| {months} mo | {name} | {r.seconds:.2f} s | {r.rss_mb:,.0f} MB | {r.what} |",
                    flush=True,
                )
    base = min(args.months)
    print()
    for months in args.months:
        daily = sum(results[(months, n)].seconds for n in DAILY_STEPS)
        daily_base = sum(results[(base, n)].seconds for n in DAILY_STEPS)
        peak = max(results[(months, n)].rss_mb for n in DAILY_STEPS)
        steps = ", ".join(
            f"{n} {results[(months, n)].seconds / results[(base, n)].seconds:.2f}x"
            for n in DAILY_STEPS
        )
        print(
            f"{months:>2} months / {base}: daily derive + publish + report {daily:.1f} s, "
            f"{daily / daily_base:.2f}x wall ({steps}); peak RSS of a step {peak:,.0f} MB"
        )
    for months in [] if args.without_before else args.months:
        before, daily = results[(months, "before")], results[(months, "after_daily")]
        grown_before = before.seconds / results[(base, "before")].seconds
        grown_after = daily.seconds / results[(base, "after_daily")].seconds
        print(
            f"{months:>2} months / {base}: before {grown_before:.2f}x, after (daily refresh) "
            f"{grown_after:.2f}x wall; before / after: {before.seconds / daily.seconds:.1f}x "
            f"wall, {before.rss_mb / daily.rss_mb:.1f}x peak RSS"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
