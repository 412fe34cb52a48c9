"""The asset that delivers queued alert notifications, after the warehouse is published.

`alert_delivery` sends every due pending message of the alert outbox through its channel
(exactly once per channel; see `alerting.delivery`), copies the delivery state into the
warehouse tables `quota_alerts` / `alert_outbox` and, when something changed, re-publishes
`usage.duckdb` so analysts see it. On a shared lake the pass claims its messages in the lake
first and commits the outcome there after sending (`alerting.lake_state`), so a message is
sent once across the lake's writers and the lake says it was delivered. It never evaluates
anything, and a channel that fails never fails it: its messages stay pending with backoff, and
the materialization's metadata (delivered, pending, failed, channels down, errors; on a lake
what it claimed and any commit that failed) and a warning in the log say so.
"""

from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, asset

from alerting.delivery import deliver_configured
from alerting.lake_state import deliver_through_lake
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
    lake = warehouse.lake_config()
    users = ParquetStore(warehouse.root).read(ORGANIZATION_USERS)
    problems: list[str] = []
    claimed: int | None = None
    with open_state(warehouse.root) as state:
        if lake is None:
            report = deliver_configured(state.store, config, users)
        else:  # claimed in the lake, sent, the outcome committed there (alerting/lake_state.py)
            shared = deliver_through_lake(warehouse.root, lake, state.store, config, users)
            report, claimed, problems = shared.report, shared.claimed, shared.problems
        attempted = report.delivered + report.retried_later + report.failed
        # on a lake the state also took in what other writers did (at the main commit and here)
        if attempted or lake is not None:
            publish_state(warehouse.root, state.store)
        elif state.recovered:
            record_tables(warehouse.root, state.store)
        failed_total = int((state.store.outbox_frame()["status"] == "failed").sum())
    context.log.info(f"notifications: {report.summary()}")
    for error in [*problems, *report.errors[:10]]:
        context.log.warning(error)
    metadata: dict[str, Any] = {
        "delivered": report.delivered,
        "pending": report.pending,
        "failed": failed_total,
        "channels_down": ", ".join(sorted(set(report.channels_down))) or "-",
    }
    if claimed is not None:
        metadata["lake_claimed"] = claimed
        metadata["lake_problems"] = "\n".join(problems) or "-"
    if state.recovered:
        context.log.warning(state.recovered)
        metadata["state_recovered"] = state.recovered
    if report.errors:
        metadata["errors"] = "\n".join(report.errors[:10])
    return MaterializeResult(metadata=metadata)
