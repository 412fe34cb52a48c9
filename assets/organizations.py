"""Assets for the organization registry: organizations, their users, resource-usage snapshots.

These are not partitioned: each run reads the current state. `organizations` also learns each
organization's current subscription period (from the usage endpoint without dates), which the
credit-usage assets need to ask for subscription periods. The request budget: the list is read
every run, resources every run; details, members and the anchor only when they can have changed
(a new organization, a rename, or older than `USAGE_DETAILS_MAX_AGE_DAYS`), see
`extraction/endpoints.py`.

Partial visibility is not deletion: an organization the token no longer sees keeps its row
(`visible` false, `last_seen_at` when it was last visible), its members and its stored usage,
and the run warns naming it; `usage-etl forget` removes an organization's data on purpose.
`organizations`, the first asset of a run, also settles the warehouse's slice manifests (adopting
the files of a warehouse written before manifests existed) and reports damaged slices.
"""

import asyncio

import pandas as pd
from dagster import AssetExecutionContext, Output, asset

from assets.io_manager import (
    WAREHOUSE_IO_MANAGER,
    Merge,
    Slices,
    Snapshot,
    TableWrite,
    writes_table,
)
from assets.materialize import api_failure_stats, table_metadata
from assets.resources import UbiOpsApi, Warehouse
from common.errors import SNAPSHOT_REMEDY
from extraction.endpoints import (
    CURRENT_PERIOD,
    ORGANIZATION_DETAILS,
    RESOURCES,
    USERS,
    Endpoint,
    WriteMode,
    pull,
)
from extraction.fanout import Org
from extraction.normalize import (
    anchor_changes,
    anchor_unknown,
    details_due,
    organizations_frame,
    unknown_anchor_names,
)
from ubiops_api.client import RequestStats
from ubiops_api.models import OrganizationItem
from warehouse.files import writer_lock
from warehouse.manifest import ManifestError, reconcile_warehouse
from warehouse.parquet_store import ParquetStore
from warehouse.schema import ORGANIZATION_USERS, ORGANIZATIONS, RESOURCE_USAGE, Table, now_utc

GROUP = "ubiops_registry"


def current_organizations(warehouse: Warehouse) -> list[Org]:
    """The organizations the token saw in the latest organizations run (by their current name)."""
    frame = ParquetStore(warehouse.root).read(ORGANIZATIONS)
    if frame.empty:
        return []
    visible = frame["visible"]
    if visible.isna().all():  # written before the `visible` column existed
        latest = frame[frame["last_seen_at"] == frame["last_seen_at"].max()]
    else:
        latest = frame[visible.fillna(False).astype(bool)]
    return [
        Org(i, n)
        for i, n in zip(latest["organization_id"], latest["organization_name"], strict=True)
    ]


def previous_rows(context: AssetExecutionContext, store: ParquetStore, t: Table) -> pd.DataFrame:
    """A table's stored rows to merge with, or none (said loudly) when its slice is damaged."""
    bad = store.check(t).bad
    if not bad:
        return store.read(t)
    for slice_ in bad:
        context.log.warning(
            f"{t.name}: damaged slice {slice_.describe()} is rebuilt from what the API returns "
            "now; rows of organizations the token no longer sees are not in it"
        )
    return store.empty(t)


def settle_manifests(context: AssetExecutionContext, warehouse: Warehouse) -> None:
    """Adopt pre-manifest files, settle interrupted writes, report damaged slices (under lock)."""
    try:
        check = reconcile_warehouse(ParquetStore(warehouse.root).root)
    except ManifestError as exc:
        raise RuntimeError(str(exc)) from None
    if check.adopted:
        context.log.warning(
            f"adopted {len(check.adopted)} stored slice(s) written before slice manifests "
            "existed: their current content is recorded as good from now on"
        )
    for bad in check.bad:
        remedy = f"; {SNAPSHOT_REMEDY}" if bad.table == RESOURCE_USAGE.name else ""
        context.log.warning(f"damaged slice: {bad.describe()}{remedy}")


def plan_details(
    context: AssetExecutionContext,
    items: list[OrganizationItem],
    previous: pd.DataFrame,
    max_age: int,
) -> tuple[list[Org], list[Org]]:
    """Which listed organizations get their details re-read, and which their current period
    (the anchor day); every other organization keeps what is stored (the request budget)."""
    stored = {str(r["organization_id"]): r for r in previous.to_dict("records")}
    now = now_utc()
    due: list[Org] = []
    anchor: list[Org] = []
    reasons: dict[str, int] = {}
    for item in items:
        row = stored.get(item.id)
        reason = details_due(item, row, now, max_age)
        if reason is not None:
            reasons[reason] = reasons.get(reason, 0) + 1
            due.append(Org(item.id, item.name))
            anchor.append(Org(item.id, item.name))
        elif anchor_unknown(row):
            anchor.append(Org(item.id, item.name))
    why = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "none due"
    context.log.info(
        f"details: re-read {len(due)} ({why}), kept {len(items) - len(due)}; "
        f"current period asked for {len(anchor)}"
    )
    return due, anchor


@asset(
    group_name=GROUP,
    owners=["team:usage-analytics"],
    kinds={"python", "parquet"},
    io_manager_key=WAREHOUSE_IO_MANAGER,
    metadata=writes_table(ORGANIZATIONS),
    description=(
        "Organizations the token can see (list + details + current subscription period), "
        "keyed by id; details and the anchor are re-read only for a new organization, a rename "
        "or after USAGE_DETAILS_MAX_AGE_DAYS. Table `organizations`."
    ),
)
def organizations(
    context: AssetExecutionContext, ubiops: UbiOpsApi, warehouse: Warehouse
) -> Output[Merge]:
    """Returns the registry as a merge with the stored rows (applied by the IO manager under the
    writer lock, so hidden organizations keep their rows and a concurrent `forget` is kept); the
    metadata and warnings describe the merge with the rows read at the start of the step."""
    store = ParquetStore(warehouse.root)
    with writer_lock(warehouse.root):
        settle_manifests(context, warehouse)
    previous = previous_rows(context, store, ORGANIZATIONS)

    with api_failure_stats(context=context) as clients:

        async def listing() -> tuple[list[OrganizationItem], RequestStats]:
            async with clients.track(ubiops.client)() as client:
                return await client.list_organizations(), client.stats

        items, list_stats = asyncio.run(listing())
    due, anchor = plan_details(context, items, previous, ubiops.details_max_age_days)
    with api_failure_stats(list_stats, context=context) as clients:
        (details, periods), stats = pull(
            clients.track(ubiops.client),
            [(ORGANIZATION_DETAILS, due), (CURRENT_PERIOD, anchor)],
            context.log.info,
        )
    stats = merged_stats(list_stats, stats)
    period_of = {org.id: answer for org, answer in periods}
    current = [(detail, period_of[org.id]) for org, detail in details]
    reread = {org.id for org in due}
    carried = [(i, period_of.get(i.id)) for i in items if i.id not in reread]
    seen_at = now_utc()

    def merged(stored: pd.DataFrame) -> pd.DataFrame:
        return organizations_frame(current, stored, seen_at, carried)

    frame = merged(previous)
    for name in unknown_anchor_names(frame, seen_at):
        context.log.warning(
            f"organization {name}: subscription anchor day unknown (its usage answer has no "
            "buckets yet); using calendar months for its periods"
        )
    for change in anchor_changes(previous, frame):
        context.log.warning(
            f"organization {change.name}: subscription anchor day changed {change.before} -> "
            f"{change.after} from {change.since}: closed periods keep anchor {change.before}, "
            f"the period running on {change.since} ends that day, later periods start on day "
            f"{change.after} (organizations.anchor_history)"
        )
    hidden = frame[~frame["visible"].fillna(False).astype(bool)]
    if len(hidden):
        listing_text = ", ".join(
            f"{row.organization_name} ({row.organization_id}, last visible {row.last_seen_at})"
            for row in hidden.itertuples()
        )
        context.log.warning(
            f"{len(hidden)} organization(s) no longer visible to the token keep their stored "
            f"history and are not refreshed: {listing_text}. Remove one on purpose with "
            "`usage-etl forget --organization NAME|ID`"
        )
    metadata = table_metadata(ORGANIZATIONS, frame, stats)
    metadata["organizations"] = len(frame) - len(hidden)
    metadata["not_visible"] = ", ".join(hidden["organization_name"]) or "-"
    metadata["details_reread"] = len(due)
    return Output(Merge(merged), metadata=metadata)


def merged_stats(*parts: RequestStats) -> RequestStats:
    """The request statistics of several clients, added up."""
    total = RequestStats()
    for part in parts:
        total.requests += part.requests
        total.retries += part.retries
        total.rate_limited += part.rate_limited
        total.failures += part.failures
        for status, n in part.by_status.items():
            total.by_status[status] = total.by_status.get(status, 0) + n
    return total


def users_due(warehouse: Warehouse, orgs: list[Org], stored_users: pd.DataFrame) -> list[Org]:
    """Organizations whose members must be re-read: details re-read after their members were
    last loaded (new organization, rename, maximum age), or no members stored."""
    registry = ParquetStore(warehouse.root).read(ORGANIZATIONS)
    refreshed = dict(
        zip(registry["organization_id"], registry["details_refreshed_at"], strict=True)
    )
    loaded = stored_users.groupby("organization_id")["loaded_at"].max().to_dict()
    due = []
    for org in orgs:
        at, last = refreshed.get(org.id), loaded.get(org.id)
        if at is None or pd.isna(at) or last is None or pd.isna(last) or last < at:
            due.append(org)
    return due


def run_per_organization(
    context: AssetExecutionContext,
    ubiops: UbiOpsApi,
    endpoint: Endpoint,
    orgs: list[Org],
) -> Output[TableWrite]:
    """The generic runner of a per-organization endpoint: pull, normalize, and hand the rows to
    the IO manager by the endpoint's write mode."""
    with api_failure_stats(context=context) as clients:
        (found,), stats = pull(clients.track(ubiops.client), [(endpoint, orgs)], context.log.info)
    assert endpoint.normalize is not None, endpoint.name
    loaded_at = now_utc()
    fresh = endpoint.normalize(found, loaded_at)
    rows: Slices | Snapshot
    if endpoint.write is WriteMode.APPEND_SNAPSHOT:
        rows = Snapshot(
            fresh,
            {"observed_date": loaded_at.date().isoformat()},
            f"snapshot-{loaded_at:%Y%m%dT%H%M%S%f}.parquet",
        )
    elif endpoint.write is WriteMode.REPLACE_PER_ORGANIZATION:
        # the pulled organizations' rows replaced; those not pulled (not due, or no longer
        # visible) are kept
        rows = Slices.whole(fresh, organizations=[o.id for o in orgs], damaged="rebuild")
    else:
        raise ValueError(f"{endpoint.name}: write mode {endpoint.write.name} is not per-org")
    metadata = table_metadata(endpoint.table, fresh, stats)
    metadata["organizations_pulled"] = len(orgs)  # row counts: the IO manager's, of the table
    return Output(rows, metadata=metadata)


@asset(
    group_name=GROUP,
    deps=[organizations],
    owners=["team:usage-analytics"],
    kinds={"python", "parquet"},
    io_manager_key=WAREHOUSE_IO_MANAGER,
    metadata=writes_table(ORGANIZATION_USERS),
    description=(
        "Members of every organization, with their admin flag; re-read when the organization's "
        "details are. Table `organization_users`."
    ),
)
def organization_users(
    context: AssetExecutionContext, ubiops: UbiOpsApi, warehouse: Warehouse
) -> Output[TableWrite]:
    orgs = current_organizations(warehouse)
    stored = previous_rows(context, ParquetStore(warehouse.root), ORGANIZATION_USERS)
    due = users_due(warehouse, orgs, stored)
    context.log.info(f"members: re-read for {len(due)} of {len(orgs)} organizations")
    return run_per_organization(context, ubiops, USERS, due)


@asset(
    group_name=GROUP,
    deps=[organizations],
    owners=["team:usage-analytics"],
    kinds={"python", "parquet"},
    io_manager_key=WAREHOUSE_IO_MANAGER,
    metadata=writes_table(RESOURCE_USAGE),
    description=(
        "A snapshot of each organization's resource counts (projects, users, deployments, ...) "
        "per run; history accumulates. Table `resource_usage`."
    ),
)
def resource_usage(
    context: AssetExecutionContext, ubiops: UbiOpsApi, warehouse: Warehouse
) -> Output[TableWrite]:
    orgs = current_organizations(warehouse)
    return run_per_organization(context, ubiops, RESOURCES, orgs)
