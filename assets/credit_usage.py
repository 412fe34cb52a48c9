"""Credit-usage assets: daily usage and usage per subscription period, monthly partitioned.

Partitions are calendar months (organizations are a column, not a partition dimension). A run
over a partition range pulls, for every current organization, each month of the range and then
replaces exactly those month slices in the warehouse, all or nothing; re-running a range gives the
same tables. The daily schedule re-pulls the current month (and the previous one in the first
days of a month), so late corrections and project deletions land.

A month slice is replaced per organization actually pulled: rows of organizations the token no
longer sees stay. A stored slice that is missing or damaged (see `warehouse/manifest.py`), in or
outside the run's range, is re-pulled and rewritten, and the run says so; one that held usage of
organizations the token cannot see any more cannot be rebuilt and fails the run, naming the file.
"""

import asyncio
from collections.abc import Iterator
from datetime import date, timedelta

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    MonthlyPartitionsDefinition,
    asset,
)

from assets.materialize import partition_metadata
from assets.organizations import current_organizations, now_utc, organizations
from pipelines import quality, settings
from pipelines.analytics.periods import organization_anchor, periods_starting_in, shift_month
from pipelines.analytics.reconcile import reconcile_periods
from pipelines.extract import Org, fan_out
from pipelines.normalize import credit_period_frame, credit_usage_frame
from pipelines.resources import UbiOpsApi, Warehouse
from pipelines.ubiops_client import RequestStats
from warehouse.files import writer_lock
from warehouse.parquet_store import ParquetStore
from warehouse.schema import CREDIT_USAGE, ORGANIZATIONS

GROUP = "ubiops_usage"
PARTITIONS_START = settings.partitions_start()  # USAGE_PARTITIONS_START
monthly_partitions = MonthlyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1)


def months_of(context: AssetExecutionContext) -> list[date]:
    """First days of the months in this run's partition range."""
    keys = context.partition_keys
    return [date.fromisoformat(k) for k in keys]


def month_bounds(first: date) -> tuple[date, date]:
    ny, nm = shift_month(first.year, first.month, 1)
    return first, date(ny, nm, 1)


def _checks(asset_name: str) -> list[AssetCheckSpec]:
    specs = [
        AssetCheckSpec(
            "projects_add_up",
            asset=asset_name,
            blocking=True,
            description="Per organization and bucket, projects + deleted projects = total.",
        ),
        AssetCheckSpec("no_negative_credits", asset=asset_name, description="credits >= 0."),
        AssetCheckSpec(
            "unique_keys",
            asset=asset_name,
            description="No two rows share (organization, interval, scope, project, start).",
        ),
    ]
    if asset_name == "credit_usage_periods":
        specs.append(
            AssetCheckSpec(
                "period_reconciliation",
                asset=asset_name,
                blocking=True,
                description=(
                    "Each subscription-period row equals the sum of that period's daily rows "
                    "(per organization, project and deleted projects); a mismatch names the "
                    "organization and the period."
                ),
            )
        )
    if asset_name == "credit_usage_daily":
        specs.append(
            AssetCheckSpec(
                "complete_days",
                asset=asset_name,
                blocking=True,
                description="Every day of the loaded range is present for every organization.",
            )
        )
    return specs


def _check_result(name: str, finding: quality.Finding) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=name,
        passed=finding.passed,
        severity=AssetCheckSeverity.ERROR,
        description=finding.description,
        metadata={"failures": finding.failures, "examples": "\n".join(finding.examples) or "-"},
    )


def damaged_months(
    context: AssetExecutionContext, warehouse: Warehouse, interval: str
) -> list[date]:
    """Months of `interval` whose stored slice is missing or damaged: this run re-pulls them."""
    months = []
    prefix = f"interval={interval}/month="
    store = ParquetStore(warehouse.root)
    for bad in store.check(CREDIT_USAGE).bad:
        relative = bad.path.relative_to(store.table_dir(CREDIT_USAGE)).as_posix()
        if not relative.startswith(prefix):
            continue
        try:
            month = date.fromisoformat(relative.removeprefix(prefix).split("/")[0] + "-01")
        except ValueError:
            continue  # not a month slice: publishing refuses it, naming the file
        context.log.warning(f"re-pulling {bad.describe()} from the API")
        months.append(month)
    return sorted(set(months))


def _pull(
    ubiops: UbiOpsApi,
    requests: list[tuple[Org, date, date, date]],
    interval: str,
    label: str,
    progress: object,
) -> tuple[dict[date, pd.DataFrame], RequestStats]:
    """Fetch every (org, partition month, start, end) and build one frame per partition month."""

    async def run() -> tuple[list, RequestStats]:
        async with ubiops.client() as client:
            found = await fan_out(
                client,
                requests,
                lambda r: client.credit_usage(r[0].name, interval, r[2], r[3]),
                label=label,
                progress=progress,  # type: ignore[arg-type]
            )
            return found, client.stats

    found, stats = asyncio.run(run())
    loaded_at = now_utc()
    by_month: dict[date, list] = {}
    for (org, month, start, end), usage in found:
        by_month.setdefault(month, []).append((org.id, org.name, start, end, usage))
    if interval == "month":  # one row per requested subscription period
        frames = {m: credit_period_frame(r, loaded_at) for m, r in by_month.items()}
    else:
        frames = {
            m: credit_usage_frame([(o, n, u) for o, n, _, _, u in r], interval, loaded_at)
            for m, r in by_month.items()
        }
    return frames, stats


def _concat(frames: dict[date, pd.DataFrame], interval: str) -> pd.DataFrame:
    loaded = [f for f in frames.values() if not f.empty]
    return (
        pd.concat(loaded, ignore_index=True)
        if loaded
        else credit_usage_frame([], interval, now_utc())
    )


def _write_slices(
    warehouse: Warehouse,
    interval: str,
    months: list[date],
    frames: dict[date, pd.DataFrame],
    requests: list[tuple[Org, date, date, date]],
) -> pd.DataFrame:
    """Replace the month slices, per organization pulled; returns the rows pulled."""
    pulled: dict[date, set[str]] = {}
    for org, month, _, _ in requests:
        pulled.setdefault(month, set()).add(org.id)
    store = ParquetStore(warehouse.root)
    empty = credit_usage_frame([], interval, now_utc())
    with writer_lock(warehouse.root):
        damaged = {b.path: b for b in store.check(CREDIT_USAGE).bad}
        slices = []
        for month in months:
            partition = {"interval": interval, "month": f"{month:%Y-%m}"}
            path = store.partition_path(CREDIT_USAGE, partition, "data.parquet")
            orgs = pulled.get(month, set())
            if path in damaged:
                lost = damaged[path].organization_ids - orgs
                if lost:
                    raise RuntimeError(
                        f"cannot repair {damaged[path].describe()}: it held usage of "
                        f"organization(s) {', '.join(sorted(lost))} that this run did not pull "
                        "(no longer visible to the token); restore the file from a backup, or "
                        "remove those organizations on purpose with `usage-etl forget`"
                    )
                kept = empty
            elif path.exists():
                previous = store.read_file(CREDIT_USAGE, path)
                kept = previous[~previous["organization_id"].isin(orgs)]
            else:
                kept = empty
            parts = [f for f in (kept, frames.get(month, empty)) if not f.empty]
            slices.append((partition, pd.concat(parts, ignore_index=True) if parts else empty))
        store.replace_partitions(CREDIT_USAGE, slices)
    loaded = [f for f in frames.values() if not f.empty]
    return pd.concat(loaded, ignore_index=True) if loaded else empty


def _materialize(
    context: AssetExecutionContext,
    warehouse: Warehouse,
    interval: str,
    months: list[date],
    frames: dict[date, pd.DataFrame],
    stats: RequestStats,
    findings: dict[str, quality.Finding],
    repair: list[date],
    requests: list[tuple[Org, date, date, date]],
) -> MaterializeResult:
    """Write the month slices (and damaged ones being repaired) unless a blocking check failed;
    each partition of the run gets its own row count."""
    asset_name = {"day": "credit_usage_daily", "month": "credit_usage_periods"}[interval]
    blocking = {spec.name for spec in _checks(asset_name) if spec.blocking}
    failed = sorted(name for name, f in findings.items() if name in blocking and not f.passed)
    if failed:
        context.log.error(
            f"not written: blocking check(s) {', '.join(failed)} failed; the warehouse keeps "
            "its previous state and nothing downstream runs (no publish, no alerts)"
        )
    else:
        _write_slices(warehouse, interval, months + repair, frames, requests)
    pulled = _concat(frames, interval)
    empty = pulled.iloc[0:0]
    per_partition = {f"{m:%Y-%m-%d}": frames.get(m, empty) for m in months}
    metadata = partition_metadata(context, CREDIT_USAGE, pulled, per_partition, stats)
    metadata["written"] = not failed
    return MaterializeResult(metadata=metadata)  # type: ignore[arg-type]


@asset(
    group_name=GROUP,
    deps=[organizations],
    partitions_def=monthly_partitions,
    check_specs=_checks("credit_usage_daily"),
    owners=["team:usage-analytics"],
    kinds={"python", "parquet"},
    description=(
        "Daily credits per organization, project and deleted projects (`credit_usage` rows with "
        "interval 'day'), one partition per calendar month."
    ),
)
def credit_usage_daily(
    context: AssetExecutionContext, ubiops: UbiOpsApi, warehouse: Warehouse
) -> Iterator[MaterializeResult | AssetCheckResult]:
    months = months_of(context)
    orgs = current_organizations(warehouse)
    today = now_utc().date()
    repair = [m for m in damaged_months(context, warehouse, "day") if m not in months]
    requests = [
        (org, month, *month_bounds(month))
        for month in months + repair
        for org in orgs
        if month <= today
    ]
    context.log.info(f"credit usage (day): {len(orgs)} organizations x {len(months)} months")
    frames, stats = _pull(ubiops, requests, "day", "credit usage (day)", context.log.info)
    pulled = _concat(frames, "day")
    registry = ParquetStore(warehouse.root).read(ORGANIZATIONS)
    registry = registry[registry["organization_id"].isin([o.id for o in orgs])]
    first = months[0]
    end = min(month_bounds(months[-1])[1], today + timedelta(days=1))
    findings = {
        "projects_add_up": quality.balance(pulled),
        "no_negative_credits": quality.non_negative(pulled),
        "unique_keys": quality.unique_keys(pulled),
        "complete_days": quality.complete_days(pulled, registry, first, end),
    }
    yield _materialize(context, warehouse, "day", months, frames, stats, findings, repair, requests)
    for name, finding in findings.items():
        yield _check_result(name, finding)


def period_requests(
    orgs: list[Org], registry: pd.DataFrame, months: list[date], today: date
) -> tuple[list[tuple[Org, date, date, date]], list[str]]:
    """(org, partition month, period start, period end) for every subscription period that
    starts in one of ``months`` and has begun by ``today``: exactly one period per request, so
    each answer becomes one row whatever the API's month bucketing. Also the names of the
    organizations whose anchor is unknown (they get calendar months)."""
    rows = {str(r["organization_id"]): r for r in registry.to_dict("records")}
    requests: list[tuple[Org, date, date, date]] = []
    unknown: list[str] = []
    for org in orgs:
        row = rows.get(org.id, {})
        learnt = row.get("period_anchor_day")
        if learnt is None or pd.isna(learnt):
            unknown.append(org.name)
        anchor = organization_anchor(row)
        for month in months:
            for start, end in periods_starting_in(month.year, month.month, anchor):
                if start <= today:
                    requests.append((org, month, start, end))
    return requests, unknown


@asset(
    group_name=GROUP,
    deps=[organizations, credit_usage_daily],
    partitions_def=monthly_partitions,
    check_specs=_checks("credit_usage_periods"),
    owners=["team:usage-analytics"],
    kinds={"python", "parquet"},
    description=(
        "Credits per subscription period (`credit_usage` rows with interval 'month'), one row "
        "per organization, series and whole period (one API request per period); a period "
        "belongs to the partition of the month it starts in, anchored on the subscription day."
    ),
)
def credit_usage_periods(
    context: AssetExecutionContext, ubiops: UbiOpsApi, warehouse: Warehouse
) -> Iterator[MaterializeResult | AssetCheckResult]:
    months = months_of(context)
    repair = [m for m in damaged_months(context, warehouse, "month") if m not in months]
    today = now_utc().date()
    store = ParquetStore(warehouse.root)
    registry = store.read(ORGANIZATIONS)
    orgs = current_organizations(warehouse)
    requests, unknown = period_requests(orgs, registry, months + repair, today)
    for name in unknown:
        context.log.warning(
            f"organization {name}: subscription anchor day unknown; its periods are calendar months"
        )
    frames, stats = _pull(ubiops, requests, "month", "credit usage (period)", context.log.info)
    pulled = _concat(frames, "month")
    daily = store.read(CREDIT_USAGE, "interval = 'day'")
    findings = {
        "projects_add_up": quality.balance(pulled),
        "no_negative_credits": quality.non_negative(pulled),
        "unique_keys": quality.unique_keys(pulled),
        "period_reconciliation": reconcile_periods(pulled, daily, today),
    }
    yield _materialize(
        context, warehouse, "month", months, frames, stats, findings, repair, requests
    )
    for name, finding in findings.items():
        yield _check_result(name, finding)
