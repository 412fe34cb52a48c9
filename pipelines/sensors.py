"""Run-failure notification: a failed pipeline run is announced on the log channel and, when
configured, the webhook/Slack channels of the quota configuration (as a test-style message).

The sensor runs by default (`DefaultSensorStatus.RUNNING`): wherever a Dagster daemon runs
(`dg dev`, `dagster dev`, production), failures are announced without turning anything on.
"""

import logging

from dagster import DefaultSensorStatus, RunFailureSensorContext, run_failure_sensor

from assets.resources import Alerting

log = logging.getLogger("alerting")


@run_failure_sensor(
    name="usage_etl_failure_notifier",
    default_status=DefaultSensorStatus.RUNNING,
    description="Tells the configured channels when a usage_etl run fails.",
)
def usage_etl_failure_notifier(context: RunFailureSensorContext, alerting: Alerting) -> None:
    from alerting.channels import DeliveryError
    from alerting.delivery import send_test_message

    run = context.dagster_run
    message = context.failure_event.message or "run failed"
    log.error("usage-etl run %s (%s) failed: %s", run.run_id, run.job_name, message)
    config = alerting.config()
    for channel in config.channels.enabled():
        if channel in ("webhook", "slack"):
            try:
                send_test_message(channel, config, organization_id=f"run-failure:{run.run_id}")
            except DeliveryError as exc:
                context.log.warning(f"failure notice via {channel} failed: {exc}")
