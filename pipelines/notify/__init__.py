"""Alert notifications: channels (log, webhook, Slack, e-mail, Apprise), their validation, secret
redaction and outbox delivery."""

from pipelines.notify.channels import (
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
from pipelines.notify.delivery import (
    DeliveryReport,
    deliver_configured,
    deliver_pending,
    send_test_message,
)
from pipelines.notify.validation import channel_problem, validate_channels

__all__ = [
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
    "build_channels",
    "channel_problem",
    "deliver_configured",
    "deliver_pending",
    "send_test_message",
    "validate_channels",
]
