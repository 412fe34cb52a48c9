"""The asset that publishes the analysts' DuckDB file from the Parquet files (atomic swap).

Every slice is checked against its manifest first (`warehouse/publish.py`): a damaged one fails
this step naming the file, and the previously published `usage.duckdb` stays.
"""

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.analytics import project_usage_trends, quota_alerts
from assets.credit_usage import credit_usage_daily, credit_usage_periods
from assets.organizations import organization_users, organizations, resource_usage
from pipelines.resources import Warehouse
from warehouse.files import remove_stale_temporaries, writer_lock
from warehouse.publish import DATABASE_NAME, publish

PUBLISH_AFTER = [
    organizations,
    organization_users,
    resource_usage,
    credit_usage_daily,
    credit_usage_periods,
    project_usage_trends,
    quota_alerts,
]


@asset(
    group_name="warehouse",
    deps=PUBLISH_AFTER,
    owners=["team:usage-analytics"],
    kinds={"duckdb"},
    pool="warehouse_writer",
    description=(
        "`usage.duckdb`: every warehouse table (with column comments) and the analyst views, "
        "rebuilt from Parquet into a new file and swapped in atomically, so open read-only "
        "sessions keep a consistent snapshot and never block the run. Only published when "
        "every Parquet slice matches its manifest record."
    ),
)
def usage_database(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    with writer_lock(warehouse.root):
        stale = remove_stale_temporaries(warehouse.root)
        if stale:
            context.log.info(f"removed {stale} temporary files left by an interrupted run")
        counts = publish(warehouse.root)
    path = warehouse.root / DATABASE_NAME
    context.log.info("published %s: %s", path, counts)
    metadata: dict[str, object] = {f"rows/{name}": n for name, n in counts.items()}
    metadata["path"] = MetadataValue.path(str(path))
    metadata["dagster/row_count"] = sum(counts.values())
    return MaterializeResult(metadata=metadata)  # type: ignore[arg-type]
