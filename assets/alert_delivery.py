"""The asset that delivers queued alert notifications, after the warehouse is published.

`alert_delivery` sends every due pending message of the alert outbox through its channel
(exactly once per channel; see `alerting.delivery`), copies the delivery state into the
warehouse tables `quota_alerts` / `alert_outbox` and, when something changed, re-publishes
`usage.duckdb` so analysts see it. It never evaluates anything, and a channel that fails never
fails it: its messages stay pending with backoff, and the materialization's metadata (delivered,
pending, failed, channels down, errors) and a warning in the log say so.
"""

from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, asset

from alerting.delivery import deliver_configured
from alerting.state import open_state, publish_state, record_tables
from assets.analytics import quota_alerts
from assets.database import usage_database
from assets.resources import Alerting, Warehouse
from warehouse.parquet_store import ParquetStore
from warehouse.schema import ORGANIZATION_USERS


@asset(
    group_name="usage_insights",
    deps=[quota_alerts, usage_database],
    owners=["team:usage-analytics"],
    kinds={"sqlite"},
    description=(
        "Delivers the queued quota-alert notifications (log, signed webhook, Slack, e-mail, "
        "Apprise) exactly once per channel, after publishing; a failing channel keeps its "
        "messages pending and retries them with backoff on later runs."
    ),
)
def alert_delivery(
    context: AssetExecutionContext, warehouse: Warehouse, alerting: Alerting
) -> MaterializeResult:
    config = alerting.config()
    users = ParquetStore(warehouse.root).read(ORGANIZATION_USERS)
    with open_state(warehouse.root) as state:
        report = deliver_configured(state.store, config, users)
        attempted = report.delivered + report.retried_later + report.failed
        if attempted:
            publish_state(warehouse.root, state.store)
        elif state.recovered:
            record_tables(warehouse.root, state.store)
        failed_total = int((state.store.outbox_frame()["status"] == "failed").sum())
    context.log.info(f"notifications: {report.summary()}")
    for error in report.errors[:10]:
        context.log.warning(error)
    metadata: dict[str, Any] = {
        "delivered": report.delivered,
        "pending": report.pending,
        "failed": failed_total,
        "channels_down": ", ".join(sorted(set(report.channels_down))) or "-",
    }
    if state.recovered:
        context.log.warning(state.recovered)
        metadata["state_recovered"] = state.recovered
    if report.errors:
        metadata["errors"] = "\n".join(report.errors[:10])
    return MaterializeResult(metadata=metadata)
