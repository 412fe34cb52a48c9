"""Draining the alert outbox through the channels, and channel test messages.

:func:`deliver_pending` claims one outbox row at a time (claim -> send -> mark, see
:mod:`warehouse.alert_store`), stops using a channel for the rest of the run after its first
transient failure (so messages keep their order and a dead sink costs one timeout per run), and
leaves undelivered rows pending for the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from pipelines.notify.channels import (
    Channel,
    DeliveryError,
    PermanentDeliveryError,
    build_channels,
)
from pipelines.quotas import ChannelsConfig, QuotaConfig
from warehouse.alert_store import AlertStore, OutboxItem, utc_now

logger = logging.getLogger("pipelines.notify")


@dataclass
class DeliveryReport:
    """Outcome of one :func:`deliver_pending` run."""

    delivered: int = 0
    retried_later: int = 0
    failed: int = 0
    pending: int = 0
    channels_down: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed and nothing is left pending."""
        return not self.errors and self.pending == 0


def deliver_pending(
    store: AlertStore,
    channels: Mapping[str, Channel],
    now: datetime | None = None,
    *,
    max_attempts: int | None = None,
    max_messages: int | None = None,
) -> DeliveryReport:
    """Deliver every pending outbox row whose channel is in ``channels``.

    Transient errors leave the row pending (``failed`` once ``max_attempts`` is reached, if
    given); permanent errors mark it failed at once. Errors are logged as one line each.
    """
    report = DeliveryReport()
    available = dict(channels)
    sent = 0
    while available and (max_messages is None or sent < max_messages):
        item = store.claim_next(available.keys(), now)
        if item is None:
            break
        sent += 1
        channel = available[item.channel]
        try:
            channel.send(item)
        except PermanentDeliveryError as exc:
            store.mark_failed(item, str(exc), max_attempts=item.attempts)
            report.failed += 1
            report.errors.append(str(exc))
            logger.error("alert message %s not deliverable: %s", item.webhook_id, exc)
            continue
        except DeliveryError as exc:
            status = store.mark_failed(item, str(exc), max_attempts=max_attempts)
            report.failed += status == "failed"
            report.retried_later += status == "pending"
            report.errors.append(str(exc))
            report.channels_down.append(item.channel)
            available.pop(item.channel)
            logger.warning("channel %s is failing, retry on the next run: %s", item.channel, exc)
            continue
        store.mark_delivered(item, now or utc_now())
        report.delivered += 1
    report.pending = store.pending_count()
    return report


def send_test_message(
    channel_name: str,
    config: QuotaConfig | ChannelsConfig,
    *,
    organization_users: pd.DataFrame | None = None,
    organization_id: str = "test-organization",
) -> None:
    """Send one synthetic alert through a configured channel (raises DeliveryError)."""
    channels_config = config.channels if isinstance(config, QuotaConfig) else config
    channels = build_channels(channels_config, organization_users)
    if channel_name not in channels:
        known = ", ".join(channels) or "none"
        raise DeliveryError(f"{channel_name}: channel is not configured (configured: {known})")
    now = utc_now()
    key = f"{organization_id}||test|0|{now:%Y-%m-%d}"
    idem = f"{key}#{int(now.timestamp())}:test:{channel_name}"
    item = OutboxItem(
        id=0,
        idempotency_key=idem,
        webhook_id=f"msg_test_{int(now.timestamp())}",
        alert_key=key,
        occurrence=1,
        event="test",
        channel=channel_name,
        attempts=1,
        payload={
            "type": "quota_alert.test",
            "event": "test",
            "idempotency_key": idem,
            "occurred_at": now.isoformat(sep=" "),
            "alert": {
                "alert_key": key,
                "organization_id": organization_id,
                "organization_name": organization_id,
                "project_id": "",
                "rule": "test",
                "period_start": pd.Timestamp(now).normalize().isoformat(sep=" "),
                "period_end": None,
                "title": "Test message from ubiops-usage alerts",
                "explanation": "If you can read this, the channel works.",
            },
            "details": {},
        },
    )
    channels[channel_name].send(item)
