"""Alert notifications: channels (log, webhook, Slack, e-mail) and outbox delivery."""

from pipelines.notify.channels import (
    Channel,
    DeliveryError,
    EmailChannel,
    LogChannel,
    PermanentDeliveryError,
    SlackChannel,
    WebhookChannel,
    admins_by_organization,
    build_channels,
)
from pipelines.notify.delivery import DeliveryReport, deliver_pending, send_test_message

__all__ = [
    "Channel",
    "DeliveryError",
    "DeliveryReport",
    "EmailChannel",
    "LogChannel",
    "PermanentDeliveryError",
    "SlackChannel",
    "WebhookChannel",
    "admins_by_organization",
    "build_channels",
    "deliver_pending",
    "send_test_message",
]
