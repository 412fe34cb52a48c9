"""The Dagster code location: assets, checks, the job, the schedule and the resources.

`workspace.yaml` loads this module, so `dagster dev` shows exactly what `usage-etl run` runs.
"""

from __future__ import annotations

from dagster import Definitions, define_asset_job, in_process_executor

from assets.alert_delivery import alert_delivery
from assets.analytics import project_usage_trends, quota_alerts
from assets.credit_usage import credit_usage_daily, credit_usage_periods
from assets.database import usage_database
from assets.organizations import organization_users, organizations, resource_usage
from assets.report import usage_report
from pipelines.resources import UbiOpsApi, Warehouse
from pipelines.schedules import daily_refresh_schedule
from pipelines.sensors import usage_etl_failure_notifier

ALL_ASSETS = [
    organizations,
    organization_users,
    resource_usage,
    credit_usage_daily,
    credit_usage_periods,
    project_usage_trends,
    quota_alerts,
    usage_database,
    alert_delivery,
    usage_report,
]

usage_etl_job = define_asset_job(
    "usage_etl",
    selection=ALL_ASSETS,
    executor_def=in_process_executor,
    description="Pull everything the Organizations API offers about usage, then publish.",
)

defs = Definitions(
    assets=ALL_ASSETS,
    jobs=[usage_etl_job],
    schedules=[daily_refresh_schedule(usage_etl_job)],
    sensors=[usage_etl_failure_notifier],
    resources={"ubiops": UbiOpsApi(), "warehouse": Warehouse()},
)
