"""The asset that publishes the analysts' DuckDB file from the Parquet files (atomic swap).

Every slice is checked against its manifest first (`warehouse/publish.py`): a damaged one fails
this step naming the file, and the previously published `usage.duckdb` stays. The file is updated
by slice (only the partitions this run changed) or, when it cannot be, rebuilt whole; the run log
says which and why.
"""

from typing import Any

from dagster import (
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
    load_assets_from_modules,
)

from alerting.lake_state import merged_alert_tables, writer_name
from alerting.state import open_state
from assets import analytics, credit_usage
from assets import organizations as registry
from assets.resources import Alerting, Warehouse
from warehouse.files import remove_stale_temporaries, writer_lock
from warehouse.lake_sync import publish_up
from warehouse.publish import DATABASE_NAME, publish_database

# Publishing waits for every asset of the modules that write warehouse tables (loaded from the
# modules, so a new asset there is waited for without editing this file).
PUBLISH_AFTER = [
    key
    for loaded in load_assets_from_modules([registry, credit_usage, analytics])
    for key in loaded.keys  # type: ignore[union-attr]
]


@asset(
    group_name="warehouse",
    deps=PUBLISH_AFTER,
    owners=["team:usage-analytics"],
    kinds={"duckdb"},
    pool="warehouse_writer",
    description=(
        "`usage.duckdb`: every warehouse table (with column comments) and the analyst views, "
        "built as a new file (a copy of the previous one with only the changed partitions "
        "replaced, or rebuilt from Parquet when it cannot be) and swapped in atomically, so "
        "open read-only sessions keep a consistent snapshot and never block the run. Only "
        "published when every Parquet slice matches its manifest record. In lake mode the "
        "slices this run changed are also committed to the shared DuckLake as one snapshot, "
        "the alert tables merged with the lake's (what other writers delivered stays "
        "delivered)."
    ),
)
def usage_database(
    context: AssetExecutionContext, warehouse: Warehouse, alerting: Alerting
) -> MaterializeResult:
    lake = warehouse.lake_config()
    with writer_lock(warehouse.root):
        stale = remove_stale_temporaries(warehouse.root)
        if stale:
            context.log.info(f"removed {stale} temporary files left by an interrupted run")
        published = publish_database(warehouse.root)
        synced = None
        if lake is not None:  # the alert tables merged with the lake's (alerting/lake_state.py)
            with open_state(warehouse.root) as state:
                # with the channels this writer delivers (`usage-etl alerts --retry` on another
                # writer leaves their messages to it)
                channels = alerting.config().channels.enabled()
                merged = merged_alert_tables(
                    state.store, configured=(writer_name(warehouse.root, lake), channels)
                )
                synced = publish_up(warehouse.root, lake, merged=merged)
    path = warehouse.root / DATABASE_NAME
    counts = published.rows
    context.log.info(f"published {DATABASE_NAME}: {published.line()}")
    if published.incremental:
        replaced = ", ".join(published.replaced) or "nothing changed"
        context.log.info(f"replaced: {replaced[:140]}{'...' if len(replaced) > 140 else ''}")
    else:
        context.log.info(f"rebuilt whole because: {published.reason[:130]}")
    context.log.info(f"integrity check: {published.files_hashed} changed file(s) hashed")
    metadata: dict[str, Any] = {f"rows/{name}": n for name, n in counts.items()}
    metadata["publish_mode"] = "incremental" if published.incremental else "full rebuild"
    metadata["partitions_replaced"] = ", ".join(published.replaced) or "-"
    metadata["rebuild_reason"] = published.reason or "-"
    metadata["files_hashed"] = published.files_hashed
    if synced is not None:
        context.log.info(f"lake: {synced.line()}")
        metadata["lake"] = lake.redacted() if lake is not None else "-"
        metadata["lake_slices_published"] = len(synced.published)
        metadata["lake_commit_retries"] = synced.retries
        if synced.snapshot is not None:
            metadata["lake_snapshot"] = synced.snapshot
    metadata["path"] = MetadataValue.path(str(path))
    metadata["dagster/row_count"] = sum(counts.values())
    return MaterializeResult(metadata=metadata)
