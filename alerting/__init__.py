"""Alerting: rules over quota status, the durable alert store, and notification delivery through
channels (log, webhook, Slack, e-mail, Apprise) with their validation and secret redaction.

Imports `common`, `warehouse` and `insights`; never `reports`, `assets` or `pipelines`.
"""

from alerting.channels import (
    AppriseChannel,
    Channel,
    DeliveryError,
    EmailChannel,
    LogChannel,
    PermanentDeliveryError,
    SlackChannel,
    UnavailableChannel,
    WebhookChannel,
    admins_by_organization,
    build_channels,
)
from alerting.delivery import (
    DeliveryReport,
    deliver_configured,
    deliver_pending,
    send_test_message,
)
from alerting.evaluate import AlertEvaluation, backtest_rule, compute_alerts
from alerting.rules import alert_key, evaluate_alerts
from alerting.validation import channel_problem, validate_channels

__all__ = [
    "AlertEvaluation",
    "AppriseChannel",
    "Channel",
    "DeliveryError",
    "DeliveryReport",
    "EmailChannel",
    "LogChannel",
    "PermanentDeliveryError",
    "SlackChannel",
    "UnavailableChannel",
    "WebhookChannel",
    "admins_by_organization",
    "alert_key",
    "backtest_rule",
    "build_channels",
    "channel_problem",
    "compute_alerts",
    "deliver_configured",
    "deliver_pending",
    "evaluate_alerts",
    "send_test_message",
    "validate_channels",
]
