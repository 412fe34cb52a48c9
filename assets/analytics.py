"""Derived assets: project usage trends, forecasts and quota status, alerts and their delivery.

`quota_alerts` evaluates the quota rules on the whole warehouse as of the last complete day,
records alerts in the durable alert store (`<warehouse>/state/alerts.sqlite`), delivers pending
notifications to every configured channel (exactly once per channel; a channel that is down is
retried on later runs) and writes the alert tables for publishing.
"""

from datetime import timedelta

from dagster import AssetExecutionContext, MaterializeResult, asset

from assets.credit_usage import credit_usage_daily
from assets.materialize import table_metadata
from assets.organizations import now_utc, organization_users, organizations, resource_usage
from pipelines.analytics.evaluate import compute_alerts
from pipelines.analytics.trends import project_usage_trends as compute_trends
from pipelines.notify.channels import build_channels
from pipelines.notify.delivery import deliver_pending
from pipelines.quotas import load_quotas
from pipelines.resources import Warehouse
from warehouse.alert_store import AlertStore
from warehouse.derived_schema import (
    ALERT_OUTBOX,
    PROJECT_USAGE_TRENDS,
    QUOTA_ALERTS,
    QUOTA_FORECASTS,
    QUOTA_STATUS,
)
from warehouse.files import writer_lock
from warehouse.parquet_store import ParquetStore
from warehouse.schema import CREDIT_USAGE, ORGANIZATION_USERS, ORGANIZATIONS, RESOURCE_USAGE

GROUP = "usage_insights"


@asset(
    group_name=GROUP,
    deps=[credit_usage_daily, organizations],
    owners=["team:usage-analytics"],
    kinds={"pandas", "parquet"},
    description=(
        "Per project and organization, daily: credits, 7/30-day means, week-over-week and "
        "period-over-period change, share, rank, new and dormant flags. Table "
        "`project_usage_trends`."
    ),
)
def project_usage_trends(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    store = ParquetStore(warehouse.root)
    usage = store.read(CREDIT_USAGE, "interval = 'day'")
    frame = compute_trends(usage, store.read(ORGANIZATIONS))
    with writer_lock(warehouse.root):
        store.replace_table(PROJECT_USAGE_TRENDS, frame)
    context.log.info(f"trends: {len(frame)} rows")
    return MaterializeResult(metadata=table_metadata(PROJECT_USAGE_TRENDS, frame))  # type: ignore[arg-type]


@asset(
    group_name=GROUP,
    deps=[credit_usage_daily, organizations, organization_users, resource_usage],
    owners=["team:usage-analytics"],
    kinds={"pandas", "sqlite"},
    description=(
        "Forecasts to the end of each subscription period, quota status, and quota alerts with "
        "their lifecycle; delivers notifications (log, signed webhook, Slack, e-mail) exactly "
        "once per channel. Tables `quota_forecasts`, `quota_status`, `quota_alerts`, "
        "`alert_outbox`. Quotas from USAGE_QUOTAS (default quotas.example.yaml)."
    ),
)
def quota_alerts(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    config = load_quotas()
    store = ParquetStore(warehouse.root)
    orgs = store.read(ORGANIZATIONS)
    current = orgs[orgs["last_seen_at"] == orgs["last_seen_at"].max()] if len(orgs) else orgs
    usage = store.read(CREDIT_USAGE, "interval = 'day'")
    users = store.read(ORGANIZATION_USERS)
    as_of = now_utc().date() - timedelta(days=1)  # the last complete UTC day
    evaluation = compute_alerts(
        usage,
        current,
        config,
        store.read(RESOURCE_USAGE),
        as_of=as_of,
        resources_as_of=now_utc().date(),
    )

    with AlertStore(warehouse.root / "state" / "alerts.sqlite") as alerts:
        sync = alerts.sync(
            evaluation.candidates,
            config.channels.enabled(),
            evaluated_organizations=list(current["organization_id"]),
        )
        report = deliver_pending(alerts, build_channels(config.channels, users))
        alert_frame = alerts.alerts_frame()
        outbox_frame = alerts.outbox_frame()
    with writer_lock(warehouse.root):
        store.replace_table(QUOTA_FORECASTS, evaluation.forecasts)
        store.replace_table(QUOTA_STATUS, evaluation.status)
        store.replace_table(QUOTA_ALERTS, alert_frame)
        store.replace_table(ALERT_OUTBOX, outbox_frame)
    opened = len(sync.opened) + len(sync.reopened)
    context.log.info(
        f"alerts: {opened} opened, {len(sync.resolved)} resolved, {len(sync.expired)} expired, "
        f"{len(sync.suppressed)} of past periods; notifications: {report.delivered} sent, "
        f"{report.retried_later} to retry, {report.failed} failed"
        + (f" (channels down: {', '.join(report.channels_down)})" if report.channels_down else "")
    )
    open_now = (
        alert_frame[alert_frame["status"].isin(["open", "notified"])]
        if len(alert_frame)
        else alert_frame
    )
    metadata = table_metadata(QUOTA_ALERTS, open_now)
    metadata.update(
        {
            "opened": opened,
            "resolved": len(sync.resolved),
            "expired": len(sync.expired),
            "suppressed": len(sync.suppressed),
            "pending_notifications": int((outbox_frame["status"] == "pending").sum())
            if len(outbox_frame)
            else 0,
        }
    )
    return MaterializeResult(metadata=metadata)  # type: ignore[arg-type]
