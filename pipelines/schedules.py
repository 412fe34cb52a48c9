"""The daily refresh: re-pull the current month, and the previous one early in a month.

Each scheduled run covers a partition range ending at the month of the tick, starting
`LOOKBACK_DAYS` before it, so corrections the API makes to the last days of a month still land.
"""

from __future__ import annotations

from datetime import timedelta

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    schedule,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

LOOKBACK_DAYS = 3
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def range_tags(first_month: str, last_month: str) -> dict[str, str]:
    return {RANGE_START_TAG: first_month, RANGE_END_TAG: last_month}


def daily_refresh_schedule(job: UnresolvedAssetJobDefinition) -> ScheduleDefinition:
    @schedule(
        name="daily_usage_refresh",
        cron_schedule="15 6 * * *",
        execution_timezone="UTC",
        job=job,
        default_status=DefaultScheduleStatus.STOPPED,
        description=(
            f"Every day at 06:15 UTC: refresh the registry and re-pull the current month of "
            f"usage (and the previous month during its first {LOOKBACK_DAYS} days)."
        ),
    )
    def _schedule(context: ScheduleEvaluationContext) -> RunRequest:
        tick = context.scheduled_execution_time
        first = (tick - timedelta(days=LOOKBACK_DAYS)).replace(day=1)
        last = tick.replace(day=1)
        return RunRequest(
            run_key=f"{tick:%Y-%m-%d}",
            tags=range_tags(f"{first:%Y-%m-%d}", f"{last:%Y-%m-%d}"),
        )

    return _schedule
