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

from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    MonthlyPartitionsDefinition,
    Output,
    asset,
)

from assets.io_manager import WAREHOUSE_IO_MANAGER, Slices, writes_table
from assets.materialize import api_failure_stats, partition_metadata
from assets.organizations import current_organizations, now_utc, organizations
from assets.reconciliation_ledger import PendingPeriod, read_pending, write_pending
from assets.resources import UbiOpsApi, Warehouse
from common import settings
from common.errors import InputError
from common.periods import (
    organization_schedule,
    parse_anchor_history,
    schedule_periods_starting_in,
    shift_month,
)
from extraction import quality
from extraction.endpoints import DAILY_USAGE, PERIOD_USAGE, Endpoint, MonthKey, PeriodKey, pull
from extraction.fanout import Org, ProgressFn
from extraction.normalize import credit_period_frame, credit_period_from_days, credit_usage_frame
from insights.reconcile import reconcile_periods
from ubiops_api.client import RequestStats
from warehouse.parquet_store import ParquetStore
from warehouse.schema import CREDIT_USAGE, ORGANIZATIONS

GROUP = "ubiops_usage"
PARTITIONS_START = settings.partitions_start()  # USAGE_PARTITIONS_START
monthly_partitions = MonthlyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1)


def months_of(context: AssetExecutionContext) -> list[date]:
    """First days of the months in this run's partition range; a month after the current one
    (its days have not happened: a range launched by hand, or through run tags that Dagster does
    not check against the partitions) fails the step in one line before anything is pulled, as
    `usage-etl run` refuses an --end after today."""
    months = [date.fromisoformat(k) for k in context.partition_keys]
    today = now_utc().date()
    current = date(today.year, today.month, 1)
    future = [m for m in months if m > current]
    if future:
        raise InputError(
            f"partition {future[0]:%Y-%m-%d}: expected a month no later than the current one "
            f"({current:%Y-%m-%d}, today is {today}); its days have not happened yet"
        )
    return months


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
    endpoint: Endpoint,
    keys: list[MonthKey] | list[PeriodKey],
    progress: ProgressFn,
    context: AssetExecutionContext | None = None,
) -> tuple[dict[date, pd.DataFrame], RequestStats]:
    """Fetch every key of a month-sliced endpoint and build one frame per partition month."""
    with api_failure_stats(context=context) as clients:
        (found,), stats = pull(clients.track(ubiops.client), [(endpoint, keys)], progress)
    assert endpoint.normalize is not None, endpoint.name
    loaded_at = now_utc()
    by_month: dict[date, list] = {}
    for key, answer in found:
        by_month.setdefault(key.month, []).append((key, answer))
    return {m: endpoint.normalize(f, loaded_at) for m, f in by_month.items()}, stats


def _concat(frames: dict[date, pd.DataFrame], interval: str) -> pd.DataFrame:
    loaded = [f for f in frames.values() if not f.empty]
    return (
        pd.concat(loaded, ignore_index=True)
        if loaded
        else credit_usage_frame([], interval, now_utc())
    )


def _slices(
    interval: str,
    months: list[date],
    frames: dict[date, pd.DataFrame],
    requests: list[MonthKey] | list[PeriodKey],
) -> Slices:
    """The month slices to replace, per organization pulled (the IO manager keeps the rows of
    organizations not pulled, and refuses to rebuild a damaged slice that held some)."""
    pulled: dict[date, set[str]] = {}
    for key in requests:
        pulled.setdefault(key.month, set()).add(key.org.id)
    empty = credit_usage_frame([], interval, now_utc())
    return Slices(
        {f"{m:%Y-%m-%d}": frames.get(m, empty) for m in months},
        organizations={f"{m:%Y-%m-%d}": pulled.get(m, set()) for m in months},
        damaged="refuse",
    )


def _materialize(
    context: AssetExecutionContext,
    interval: str,
    months: list[date],
    frames: dict[date, pd.DataFrame],
    stats: RequestStats,
    findings: dict[str, quality.Finding],
    repair: list[date],
    requests: list[MonthKey] | list[PeriodKey],
) -> Output[Slices] | MaterializeResult:
    """The month slices (and damaged ones being repaired) for the IO manager to write, unless a
    blocking check failed (then a materialization without rows: nothing is written); each
    partition of the run gets its own row count."""
    asset_name = {"day": "credit_usage_daily", "month": "credit_usage_periods"}[interval]
    blocking = {spec.name for spec in _checks(asset_name) if spec.blocking}
    failed = sorted(name for name, f in findings.items() if name in blocking and not f.passed)
    if failed:
        context.log.error(
            f"not written: blocking check(s) {', '.join(failed)} failed; the warehouse keeps "
            "its previous state and nothing downstream runs (no publish, no alerts)"
        )
    pulled = _concat(frames, interval)
    empty = pulled.iloc[0:0]
    per_partition = {f"{m:%Y-%m-%d}": frames.get(m, empty) for m in months}
    metadata = partition_metadata(context, CREDIT_USAGE, pulled, per_partition, stats)
    metadata["written"] = not failed
    if failed:
        return MaterializeResult(metadata=metadata)
    return Output(_slices(interval, months + repair, frames, requests), metadata=metadata)


@asset(
    group_name=GROUP,
    deps=[organizations],
    partitions_def=monthly_partitions,
    check_specs=_checks("credit_usage_daily"),
    owners=["team:usage-analytics"],
    kinds={"python", "parquet"},
    io_manager_key=WAREHOUSE_IO_MANAGER,
    metadata=writes_table(CREDIT_USAGE, interval="day"),
    description=(
        "Daily credits per organization, project and deleted projects (`credit_usage` rows with "
        "interval 'day'), one partition per calendar month."
    ),
)
def credit_usage_daily(
    context: AssetExecutionContext, ubiops: UbiOpsApi, warehouse: Warehouse
) -> Iterator[Output[Slices] | MaterializeResult | AssetCheckResult]:
    months = months_of(context)
    orgs = current_organizations(warehouse)
    today = now_utc().date()
    repair = [m for m in damaged_months(context, warehouse, "day") if m not in months]
    requests = [
        MonthKey(org, month, *month_bounds(month))
        for month in months + repair
        for org in orgs
        if month <= today
    ]
    context.log.info(f"credit usage (day): {len(orgs)} organizations x {len(months)} months")
    frames, stats = _pull(ubiops, DAILY_USAGE, requests, context.log.info, context)
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
    yield _materialize(context, "day", months, frames, stats, findings, repair, requests)
    for name, finding in findings.items():
        yield _check_result(name, finding)


def period_requests(
    orgs: list[Org], registry: pd.DataFrame, months: list[date], today: date
) -> tuple[list[tuple[Org, date, date, date]], list[str]]:
    """(org, partition month, period start, period end) for every subscription period that
    starts in one of ``months`` and has begun by ``today``: exactly one period per request, so
    each answer becomes one row whatever the API's month bucketing; periods follow the
    organization's anchor schedule (`anchor_history`: closed periods keep the anchor they were
    billed under). Also the names of the
    organizations whose anchor is unknown (they get calendar months)."""
    rows = {str(r["organization_id"]): r for r in registry.to_dict("records")}
    requests: list[tuple[Org, date, date, date]] = []
    unknown: list[str] = []
    for org in orgs:
        row = rows.get(org.id, {})
        learnt = row.get("period_anchor_day")
        if learnt is None or pd.isna(learnt):
            unknown.append(org.name)
        schedule = organization_schedule(row)
        for month in months:
            for start, end in schedule_periods_starting_in(month.year, month.month, schedule):
                if start <= today:
                    requests.append((org, month, start, end))
    return requests, unknown


def touching_periods(
    orgs: list[Org], registry: pd.DataFrame, months: list[date]
) -> list[tuple[Org, date, date, date]]:
    """(org, partition month, period start, period end) for every subscription period that
    started in the month before one of ``months`` (and is not itself in ``months``) but runs
    into it: anchor 20 and a run over November only, the period Oct 20 - Nov 20. Its row lives
    in October's partition; the days this run loads change it."""
    rows = {str(r["organization_id"]): r for r in registry.to_dict("records")}
    loaded = set(months)
    touching: list[tuple[Org, date, date, date]] = []
    for month in sorted(loaded):
        previous = date(*shift_month(month.year, month.month, -1), 1)
        if previous in loaded:
            continue  # its periods are the run's own
        for org in orgs:
            schedule = organization_schedule(rows.get(org.id, {}))
            periods = schedule_periods_starting_in(previous.year, previous.month, schedule)
            if any(end > month for _, end in periods):
                # all of them: the org's rows of that month are rewritten together (two periods
                # begin in a month where the anchor changed)
                touching.extend((org, previous, start, end) for start, end in periods)
    return touching


def months_around_anchor_changes(orgs: list[Org], registry: pd.DataFrame) -> list[date]:
    """The partition months that can hold a stored period row spanning an anchor change of one
    of ``orgs`` (``anchor_history``): the change day's month and the month before (a period
    running on the change day began in one of them)."""
    wanted = {o.id for o in orgs}
    months: set[date] = set()
    if registry.empty or "anchor_history" not in registry.columns:
        return []
    for org_id, text in zip(registry["organization_id"], registry["anchor_history"], strict=True):
        if str(org_id) not in wanted:
            continue
        for _, until in parse_anchor_history(text):
            months.add(date(until.year, until.month, 1))
            months.add(date(*shift_month(until.year, until.month, -1), 1))
    return sorted(months)


def misaligned_periods(
    orgs: list[Org], registry: pd.DataFrame, stored_periods: pd.DataFrame, today: date
) -> list[tuple[Org, date, date, date]]:
    """(org, partition month, period start, period end) of the schedule's periods for every
    organization and partition month whose stored period rows are not the periods of its anchor
    schedule (an anchor change cut the period they cover, e.g. a stored Oct 28 - Nov 28 after
    28 -> 25 on Nov 25, which overlaps the new Nov 25 - Dec 25): the run rewrites those rows,
    wherever its own range is, so stored periods always follow the schedule and never overlap."""
    by_id = {o.id: o for o in orgs}
    # only organizations with an anchor change (usually none) have rows to look at: the rows of
    # the others are the run's ranges' business, and are not converted one by one
    schedules = {
        org_id: schedule
        for org_id, schedule in (
            (str(r["organization_id"]), organization_schedule(r))
            for r in registry.to_dict("records")
            if str(r["organization_id"]) in by_id  # one not visible any more: not rebuilt
        )
        if schedule.earlier
    }
    if not schedules or stored_periods.empty:
        return []
    org_rows = stored_periods[
        (stored_periods["scope"] == "organization")
        & stored_periods["organization_id"].astype(str).isin(list(schedules))
    ]
    stored: dict[tuple[str, date], set[tuple[date, date]]] = {}
    for o, s, e in zip(
        org_rows["organization_id"], org_rows["start_date"], org_rows["end_date"], strict=True
    ):
        start, end = pd.Timestamp(s).date(), pd.Timestamp(e).date()
        month = date(start.year, start.month, 1)
        stored.setdefault((str(o), month), set()).add((start, end))
    out: list[tuple[Org, date, date, date]] = []
    for (org_id, month), periods in sorted(stored.items()):
        org = by_id[org_id]
        schedule = schedules[org_id]
        expected = schedule_periods_starting_in(month.year, month.month, schedule)
        if periods - set(expected):
            out.extend((org, month, s, e) for s, e in expected if s <= today)
    return out


@dataclass
class PeriodPlan:
    """What a run does for each subscription period in its range (the request budget).

    `derived`: periods whose days are all loaded: their row is the sum of their days.
    `requested`: periods the API is asked for: to reconcile (a closed period not checked since
    it closed; the current period of an organization whose details were re-read in this run,
    which happens on a new organization, a rename and at most every USAGE_DETAILS_MAX_AGE_DAYS)
    or because their days are not all loaded (then the API's answer is the row).
    A period of an earlier partition that the run's days touch (`touching_periods`) is derived
    when its days are all stored and left as it is otherwise (never asked for its own sake).
    Closed periods are confirmed at most `limit` a run, oldest first: `confirm_only` are
    periods left pending by earlier runs (asked, their stored rows kept), `deferred` the closed
    periods left pending by this run (see `assets/reconciliation_ledger.py`), `gone` pending
    periods whose days are no longer stored.
    """

    derived: list[PeriodKey]
    requested: list[PeriodKey]
    reasons: dict[str, int]
    confirm_only: list[PeriodKey] = field(default_factory=list)
    deferred: list[PeriodKey] = field(default_factory=list)
    gone: list[PeriodKey] = field(default_factory=list)

    @property
    def all(self) -> list[PeriodKey]:
        """The periods whose rows this run writes."""
        skip = set(self.derived) | set(self.confirm_only)  # sets: per key, quadratic
        return self.derived + [k for k in self.requested if k not in skip]


def _month_files(store: ParquetStore, interval: str, months: Iterable[date]) -> list[pd.DataFrame]:
    """The stored `credit_usage` slices of `interval` for `months` (first days), in month
    order (readable ones: a damaged slice is re-pulled, never read)."""
    damaged = {b.path for b in store.check(CREDIT_USAGE).bad}
    frames = []
    for month in sorted(set(months)):
        partition = {"interval": interval, "month": f"{month:%Y-%m}"}
        path = store.partition_path(CREDIT_USAGE, partition, "data.parquet")
        if path.exists() and path not in damaged:
            frames.append(store.read_file(CREDIT_USAGE, path))
    return frames


def stored_rows(store: ParquetStore, interval: str, months: Iterable[date]) -> pd.DataFrame:
    frames = [f for f in _month_files(store, interval, months) if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else store.empty(CREDIT_USAGE)


UNIX_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def _organization_days(daily: pd.DataFrame) -> dict[str, set[int]]:
    """Per organization, the days (`date.toordinal`) of its loaded organization-total rows;
    converted as whole columns (a backfill has ~400,000 of them)."""
    totals = daily[daily["scope"] == "organization"]
    starts = pd.to_datetime(totals["start_date"])
    if starts.dt.tz is not None:
        starts = starts.dt.tz_localize(None)  # the day in the timestamps' own zone
    ordinals = starts.to_numpy().astype("datetime64[D]").astype(np.int64) + UNIX_EPOCH_ORDINAL
    days: dict[str, set[int]] = {}
    for org_id, day in zip(
        totals["organization_id"].astype(str).tolist(), ordinals.tolist(), strict=True
    ):
        days.setdefault(org_id, set()).add(day)
    return days


def months_of_days(keys: Iterable[PeriodKey], today: date) -> set[date]:
    """The calendar months (first days) holding the loaded days of the periods `keys`: the
    daily slices a run of periods reads. Not every month between the first and the last key:
    a backfill's oldest waiting confirmations lie months before its own range, and reading
    everything between them held a 5,000-organization history in memory."""
    months: set[date] = set()
    for key in keys:
        last = min(key.end, today + timedelta(days=1)) - timedelta(days=1)
        month = date(key.start.year, key.start.month, 1)
        while key.start <= last and month <= last:
            months.add(month)
            month = month_bounds(month)[1]
    return months


def plan_periods(
    candidates: list[PeriodKey],
    daily: pd.DataFrame,
    stored_periods: pd.DataFrame,
    reread: set[str],
    today: date,
    touching: Collection[PeriodKey] = (),
    pending: Collection[PeriodKey] = (),
    limit: int | None = None,
) -> PeriodPlan:
    """Split the periods of a run into those summed from their days and those asked for;
    `touching` periods (of earlier partitions, see `touching_periods`) only when derivable;
    closed periods to confirm (`pending` ones recorded by earlier runs, and those not checked
    since they closed): those that closed since the previous month began always, older ones at
    most `limit`, oldest first (the others are `deferred`)."""
    days = _organization_days(daily)
    org_rows = stored_periods[stored_periods["scope"] == "organization"]
    checked_after_close = {
        (str(o), pd.Timestamp(s).date())
        for o, s, e, at in zip(
            org_rows["organization_id"],
            org_rows["start_date"],
            org_rows["end_date"],
            org_rows["loaded_at"],
            strict=True,
        )
        if pd.Timestamp(at) >= pd.Timestamp(e)
    }
    plan = PeriodPlan([], [], {})
    optional = set(touching)

    def ask(key: PeriodKey, reason: str) -> None:
        plan.requested.append(key)
        plan.reasons[reason] = plan.reasons.get(reason, 0) + 1

    def complete(key: PeriodKey) -> bool:
        stop = min(key.end, today + timedelta(days=1))
        have = days.get(key.org.id, set())
        return all(d in have for d in range(key.start.toordinal(), stop.toordinal()))

    waiting = {(k.org.id, k.start) for k in pending}
    to_confirm: list[tuple[PeriodKey, bool]] = []  # (period, its row is written by this run)
    own = set(candidates)
    for key in [*candidates, *(k for k in touching if k not in own)]:
        if not complete(key):
            if key not in optional:
                ask(key, "days missing")
            continue
        plan.derived.append(key)
        closed = key.end <= today
        ident = (key.org.id, key.start)
        if closed and (ident not in checked_after_close or ident in waiting):
            to_confirm.append((key, True))
        elif not closed and key.org.id in reread:
            ask(key, "details re-read")
    written = {(k.org.id, k.start) for k in plan.derived}
    for key in pending:
        if (key.org.id, key.start) in written:
            continue
        if complete(key):
            to_confirm.append((key, False))
        else:  # its days are gone (forgotten, pruned): nothing left to confirm
            plan.gone.append(key)
    to_confirm.sort(key=lambda item: (item[0].start, item[0].org.id))
    recently = date(*shift_month(today.year, today.month, -1), 1)
    older = 0
    for key, row_written in to_confirm:
        if key.end < recently:  # closed before the previous month: a backfill's, or a backlog's
            older += 1
            if limit is not None and older > limit:
                plan.deferred.append(key)
                continue
        ask(key, "closed")
        if not row_written:
            plan.confirm_only.append(key)
    return plan


@asset(
    group_name=GROUP,
    deps=[organizations, credit_usage_daily],
    partitions_def=monthly_partitions,
    check_specs=_checks("credit_usage_periods"),
    owners=["team:usage-analytics"],
    kinds={"python", "parquet"},
    io_manager_key=WAREHOUSE_IO_MANAGER,
    metadata=writes_table(CREDIT_USAGE, interval="month"),
    description=(
        "Credits per subscription period (`credit_usage` rows with interval 'month'), one row "
        "per organization, series and whole period: the sum of the period's days when they are "
        "all loaded, else the API's answer for exactly that period; the API is asked for a "
        "period also to reconcile it with its days (once after it closed, and the current one "
        "when the organization's details are re-read). A period belongs to the partition of "
        "the month it starts in, anchored on the subscription day."
    ),
)
def credit_usage_periods(
    context: AssetExecutionContext, ubiops: UbiOpsApi, warehouse: Warehouse
) -> Iterator[Output[Slices] | MaterializeResult | AssetCheckResult]:
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
    candidates = [PeriodKey(*r) for r in requests]
    touching = [PeriodKey(*r) for r in touching_periods(orgs, registry, months + repair)]
    # stored period rows an anchor change cut (wherever they are): re-cut on the schedule
    around = stored_rows(store, "month", months_around_anchor_changes(orgs, registry))
    own = set(candidates)
    realign = [
        k
        for k in (PeriodKey(*r) for r in misaligned_periods(orgs, registry, around, today))
        if k not in own
    ]
    for org, month in sorted({(k.org.name, k.month) for k in realign}):
        context.log.warning(
            f"organization {org}: the stored periods begun in {month:%Y-%m} do not follow its "
            "anchor changes (anchor_history); rewritten as "
            + ", ".join(
                f"{k.start} -> {k.end}" for k in realign if k.org.name == org and k.month == month
            )
        )
    candidates += realign
    touching = [k for k in touching if k not in set(realign)]
    limit = settings.reconcile_limit(
        ubiops.reconcile_per_run, daily_refresh=is_daily_refresh(months + repair, today)
    )
    recorded = read_pending(warehouse.root)
    by_id = {o.id: o for o in orgs}
    # only the oldest `limit` recorded periods can be confirmed by this run: the others stay
    # recorded, and their days (a backfill's backlog spans its whole range) are not read
    oldest = [] if limit == 0 else sorted(recorded)  # a daily refresh sorts no backlog
    pending = [
        PeriodKey(by_id[p.organization_id], date(p.start.year, p.start.month, 1), p.start, p.end)
        for p in oldest
        if p.organization_id in by_id
    ][:limit]
    keys = candidates + touching + pending
    daily = stored_rows(store, "day", months_of_days(keys, today))
    daily = daily[daily["organization_id"].isin([o.id for o in orgs])]
    partitions = {k.month for k in keys} | set(months + repair)
    stored_periods = stored_rows(store, "month", partitions)
    plan = plan_periods(
        candidates,
        daily,
        stored_periods,
        reread_organizations(registry),
        today,
        touching,
        pending,
        limit,
    )
    why = ", ".join(f"{n} {r}" for r, n in sorted(plan.reasons.items())) or "none"
    waiting = len(recorded) - len(pending) + len(plan.deferred)
    earlier = sorted({k.month for k in plan.all} - set(months + repair))
    context.log.info(
        f"periods: {len(plan.derived)} summed from days, {len(plan.requested)} asked ({why})"
        + (
            f"; rows of periods begun in {', '.join(f'{m:%Y-%m}' for m in earlier)} "
            "recomputed (this run's days reach into them)"
            if earlier
            else ""
        )
        + (
            f"; {waiting} closed periods wait to be confirmed by later runs "
            f"(at most {limit} this run; backfills confirm 500 a run, daily refreshes none "
            "unless USAGE_RECONCILE_PER_RUN is set)"
            if waiting
            else ""
        )
    )
    answers, stats = _pull(ubiops, PERIOD_USAGE, plan.requested, context.log.info, context)
    asked = _concat(answers, "month")
    frames = _frames_to_write(plan, answers, daily, stored_periods)
    pulled = _concat(frames, "month")
    findings = {
        "projects_add_up": quality.balance(pd.concat([pulled, asked], ignore_index=True)),
        "no_negative_credits": quality.non_negative(pd.concat([pulled, asked], ignore_index=True)),
        "unique_keys": quality.unique_keys(pulled),
        "period_reconciliation": reconcile_periods(asked, daily, today),
    }
    blocking = {spec.name for spec in _checks("credit_usage_periods") if spec.blocking}
    if all(f.passed for name, f in findings.items() if name in blocking):
        # recorded before the rows are written: a crash never leaves one unconfirmed unrecorded
        confirmed = {(k.org.id, k.start) for k in plan.requested + plan.gone}
        still = {p for p in recorded if (p.organization_id, p.start) not in confirmed} | {
            PendingPeriod(k.start, k.org.id, k.end) for k in plan.deferred
        }
        if still != recorded:  # unchanged (a daily refresh confirms none): not rewritten
            write_pending(warehouse.root, still)
    yield _materialize(
        context, "month", months, frames, stats, findings, repair + earlier, plan.all
    )
    for name, finding in findings.items():
        yield _check_result(name, finding)


def is_daily_refresh(months: list[date], today: date) -> bool:
    """A run over the current month, and the previous one at most (the daily schedule's and
    `usage-etl run`'s default range), as opposed to a backfill of older months."""
    previous = date(*shift_month(today.year, today.month, -1), 1)
    return all(month >= previous for month in months)


def reread_organizations(registry: pd.DataFrame) -> set[str]:
    """Ids of the organizations whose details the latest `organizations` run re-read."""
    if registry.empty:
        return set()
    fresh = registry["details_refreshed_at"].notna() & (
        registry["details_refreshed_at"] == registry["last_seen_at"]
    )
    return {str(o) for o in registry.loc[fresh, "organization_id"]}


def kept_rows(plan: PeriodPlan, stored_periods: pd.DataFrame) -> pd.DataFrame:
    """The stored period rows that a rewrite of their organization's rows in their partition
    keeps: those of periods (begun in a month the run writes for that organization) that no
    period written by this run overlaps, e.g. Nov 25 - Dec 25 when only Nov 9 - Nov 25 of
    November can be rebuilt from its days. Rows of periods the schedule no longer has overlap a
    written one and go."""
    written = plan.all
    if stored_periods.empty or not written:
        return stored_periods.iloc[0:0]
    rewritten = {(k.org.id, k.month) for k in written}
    starts = {(k.org.id, k.start) for k in written}
    spans: dict[str, list[tuple[date, date]]] = {}
    for k in written:
        spans.setdefault(k.org.id, []).append((k.start, k.end))
    orgs = stored_periods["organization_id"].astype(str)
    begun = pd.to_datetime(stored_periods["start_date"]).dt.date
    # whole columns first (a backfill rewrites every row of its months, each of a written period)
    other = ~pd.MultiIndex.from_arrays([orgs, begun]).isin(list(starts))
    rest = stored_periods[other]
    mask = []
    for o, s, e in zip(orgs[other], rest["start_date"], rest["end_date"], strict=True):
        start, end = pd.Timestamp(s).date(), pd.Timestamp(e).date()
        mask.append(
            (o, date(start.year, start.month, 1)) in rewritten
            and not any(ws < end and start < we for ws, we in spans.get(o, []))
        )
    return rest[mask] if mask else stored_periods.iloc[0:0]


def _frames_to_write(
    plan: PeriodPlan,
    answers: dict[date, pd.DataFrame],
    daily: pd.DataFrame,
    stored_periods: pd.DataFrame | None = None,
) -> dict[date, pd.DataFrame]:
    """Per partition month: the derived rows, the API's rows for periods not derivable, and the
    stored rows of the other periods of the organizations rewritten there (`kept_rows`: a
    partition rewrite never drops a period row)."""
    loaded_at = now_utc()
    derived_keys = {(k.org.id, k.start) for k in plan.derived}
    derived_keys |= {(k.org.id, k.start) for k in plan.confirm_only}  # their stored rows stay
    by_month: dict[date, list[PeriodKey]] = {}
    for key in plan.derived:
        by_month.setdefault(key.month, []).append(key)
    frames: dict[date, pd.DataFrame] = {}
    # each month's periods read only the days they span (a backfill's 12 months: each month
    # scanned all 2.6 M daily rows of 1,000 organizations); the stored month slices come in
    # month order, so the rows of a range of months are one block
    months_of_days = daily["start_date"].to_numpy().astype("datetime64[M]")
    if (months_of_days[1:] < months_of_days[:-1]).any():
        daily = daily.sort_values("start_date", kind="stable", ignore_index=True)
        months_of_days = daily["start_date"].to_numpy().astype("datetime64[M]")
    kept = kept_rows(plan, stored_periods) if stored_periods is not None else None
    kept_month = (
        None
        if kept is None
        else pd.to_datetime(kept["start_date"]).to_numpy().astype("datetime64[M]")
    )
    for month in {k.month for k in plan.all}:
        keys = by_month.get(month, [])
        days = daily.iloc[0:0]
        if keys:
            first = np.datetime64(min(k.start for k in keys), "M")
            last = np.datetime64(max(k.end for k in keys), "M")  # its days up to the end
            days = daily.iloc[
                months_of_days.searchsorted(first) : months_of_days.searchsorted(last, "right")
            ]
        derived = credit_period_from_days(
            [(k.org.id, k.org.name, k.start, k.end) for k in keys], days, loaded_at
        )
        asked = answers.get(month)
        parts = [derived]
        if asked is not None and not asked.empty:
            starts = asked["start_date"].map(lambda v: pd.Timestamp(v).date())
            keep = [
                (o, s) not in derived_keys
                for o, s in zip(asked["organization_id"], starts, strict=True)
            ]
            parts.append(asked[keep])
        if kept is not None and kept_month is not None:
            parts.append(kept[kept_month == np.datetime64(month, "M")])
        parts = [p for p in parts if not p.empty]
        frames[month] = (
            pd.concat(parts, ignore_index=True) if parts else credit_period_frame([], loaded_at)
        )
    return frames
