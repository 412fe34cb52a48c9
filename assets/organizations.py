"""Assets for the organization registry: organizations, their users, resource-usage snapshots.

These are not partitioned: each run reads the current state. `organizations` also learns each
organization's current subscription period (from the usage endpoint without dates), which the
credit-usage assets need to ask for subscription periods.

Partial visibility is not deletion: an organization the token no longer sees keeps its row
(`visible` false, `last_seen_at` when it was last visible), its members and its stored usage,
and the run warns naming it; `usage-etl forget` removes an organization's data on purpose.
`organizations`, the first asset of a run, also settles the warehouse's slice manifests (adopting
the files of a warehouse written before manifests existed) and reports damaged slices.
"""

import asyncio

import pandas as pd
from dagster import AssetExecutionContext, MaterializeResult, asset

from assets.materialize import table_metadata
from pipelines.api_models import CreditUsage, OrganizationDetail
from pipelines.extract import Org, fan_out
from pipelines.normalize import (
    organizations_frame,
    resource_usage_frame,
    unknown_anchor_names,
    users_frame,
)
from pipelines.resources import UbiOpsApi, Warehouse
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
        context.log.warning(f"damaged slice: {bad.describe()}")


@asset(
    group_name=GROUP,
    owners=["team:usage-analytics"],
    kinds={"python", "parquet"},
    description=(
        "Organizations the token can see (list + details + current subscription period), "
        "keyed by id. Table `organizations`."
    ),
)
def organizations(
    context: AssetExecutionContext, ubiops: UbiOpsApi, warehouse: Warehouse
) -> MaterializeResult:
    async def pull() -> tuple[list[tuple[OrganizationDetail, CreditUsage]], object]:
        async with ubiops.client() as client:
            items = await client.list_organizations()
            names = [item.name for item in items]

            async def details(name: str) -> tuple[OrganizationDetail, CreditUsage]:
                detail = await client.get_organization(name)
                period = await client.credit_usage(name, interval="month")
                return detail, period

            pairs = await fan_out(
                client, names, details, label="organizations", progress=context.log.info
            )
            return [pair for _, pair in pairs], client.stats

    current, stats = asyncio.run(pull())
    store = ParquetStore(warehouse.root)
    seen_at = now_utc()
    with writer_lock(warehouse.root):
        settle_manifests(context, warehouse)
        previous = previous_rows(context, store, ORGANIZATIONS)
        frame = organizations_frame(current, previous, seen_at)
        store.replace_table(ORGANIZATIONS, frame)
    for name in unknown_anchor_names(frame, seen_at):
        context.log.warning(
            f"organization {name}: subscription anchor day unknown (its usage answer has no "
            "buckets yet); using calendar months for its periods"
        )
    hidden = frame[~frame["visible"].fillna(False).astype(bool)]
    if len(hidden):
        listing = ", ".join(
            f"{row.organization_name} ({row.organization_id}, last visible {row.last_seen_at})"
            for row in hidden.itertuples()
        )
        context.log.warning(
            f"{len(hidden)} organization(s) no longer visible to the token keep their stored "
            f"history and are not refreshed: {listing}. Remove one on purpose with "
            "`usage-etl forget --organization NAME|ID`"
        )
    metadata = table_metadata(ORGANIZATIONS, frame, stats)
    metadata["organizations"] = len(frame) - len(hidden)
    metadata["not_visible"] = ", ".join(hidden["organization_name"]) or "-"
    return MaterializeResult(metadata=metadata)  # type: ignore[arg-type]


@asset(
    group_name=GROUP,
    deps=[organizations],
    owners=["team:usage-analytics"],
    kinds={"python", "parquet"},
    description="Members of every organization, with their admin flag. Table `organization_users`.",
)
def organization_users(
    context: AssetExecutionContext, ubiops: UbiOpsApi, warehouse: Warehouse
) -> MaterializeResult:
    orgs = current_organizations(warehouse)

    async def pull() -> tuple[list, object]:
        async with ubiops.client() as client:
            found = await fan_out(
                client,
                orgs,
                lambda org: client.list_users(org.name),
                label="organization users",
                progress=context.log.info,
            )
            return [(org.id, users) for org, users in found], client.stats

    users, stats = asyncio.run(pull())
    fresh = users_frame(users, now_utc())
    store = ParquetStore(warehouse.root)
    with writer_lock(warehouse.root):
        # replaced per organization pulled: members of organizations no longer visible are kept
        previous = previous_rows(context, store, ORGANIZATION_USERS)
        kept = previous[~previous["organization_id"].isin([o.id for o in orgs])]
        parts = [f for f in (kept, fresh) if not f.empty]
        frame = pd.concat(parts, ignore_index=True) if parts else fresh
        store.replace_table(ORGANIZATION_USERS, frame)
    return MaterializeResult(metadata=table_metadata(ORGANIZATION_USERS, frame, stats))  # type: ignore[arg-type]


@asset(
    group_name=GROUP,
    deps=[organizations],
    owners=["team:usage-analytics"],
    kinds={"python", "parquet"},
    description=(
        "A snapshot of each organization's resource counts (projects, users, deployments, ...) "
        "per run; history accumulates. Table `resource_usage`."
    ),
)
def resource_usage(
    context: AssetExecutionContext, ubiops: UbiOpsApi, warehouse: Warehouse
) -> MaterializeResult:
    orgs = current_organizations(warehouse)

    async def pull() -> tuple[list, object]:
        async with ubiops.client() as client:
            found = await fan_out(
                client,
                orgs,
                lambda org: client.resource_usage(org.name),
                label="resource usage",
                progress=context.log.info,
            )
            return [(org.id, usage) for org, usage in found], client.stats

    usage, stats = asyncio.run(pull())
    observed_at = now_utc()
    frame = resource_usage_frame(usage, observed_at)
    with writer_lock(warehouse.root):
        ParquetStore(warehouse.root).append_file(
            RESOURCE_USAGE,
            {"observed_date": observed_at.date().isoformat()},
            f"snapshot-{observed_at:%Y%m%dT%H%M%S%f}.parquet",
            frame,
        )
    return MaterializeResult(metadata=table_metadata(RESOURCE_USAGE, frame, stats))  # type: ignore[arg-type]
