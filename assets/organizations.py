"""Assets for the organization registry: organizations, their users, resource-usage snapshots.

These are not partitioned: each run reads the current state. `organizations` also learns each
organization's current subscription period (from the usage endpoint without dates), which the
credit-usage assets need to ask for subscription periods.
"""

import asyncio
from datetime import UTC, datetime

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
from warehouse.parquet_store import ParquetStore
from warehouse.schema import ORGANIZATION_USERS, ORGANIZATIONS, RESOURCE_USAGE

GROUP = "ubiops_registry"


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def current_organizations(warehouse: Warehouse) -> list[Org]:
    """The organizations seen by the latest organizations run (renamed ones by new name)."""
    frame = ParquetStore(warehouse.root).read(ORGANIZATIONS)
    if frame.empty:
        return []
    latest = frame[frame["last_seen_at"] == frame["last_seen_at"].max()]
    return [
        Org(i, n)
        for i, n in zip(latest["organization_id"], latest["organization_name"], strict=True)
    ]


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
        frame = organizations_frame(current, store.read(ORGANIZATIONS), seen_at)
        store.replace_table(ORGANIZATIONS, frame)
    for name in unknown_anchor_names(frame, seen_at):
        context.log.warning(
            f"organization {name}: subscription anchor day unknown (its usage answer has no "
            "buckets yet); using calendar months for its periods"
        )
    return MaterializeResult(metadata=table_metadata(ORGANIZATIONS, frame, stats))  # type: ignore[arg-type]


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
    frame = users_frame(users, now_utc())
    with writer_lock(warehouse.root):
        ParquetStore(warehouse.root).replace_table(ORGANIZATION_USERS, frame)
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
