"""Draining the alert outbox through the channels, and channel test messages.

:func:`deliver_pending` claims one outbox row at a time (claim -> send -> mark, see
:mod:`alerting.store`). A failed send leaves the row ``pending`` with a backoff
(``delivery.backoff_seconds`` doubling per attempt) and stops using that channel for the rest
of the pass, so messages keep their order and a dead sink costs one timeout per run; the row
becomes ``failed`` only after ``delivery.max_attempts``. A message-level failure (e-mail: no
recipient for that organization) is retried the same way without stopping the channel. Any
exception a channel raises is contained: it never reaches the caller, never blocks other
channels, and its message (one line, secrets removed) is recorded as the row's ``last_error``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from alerting.channels import (
    Channel,
    DeliveryError,
    PermanentDeliveryError,
    build_channels,
)
from alerting.redact import REDACT, scrub
from alerting.store import AlertStore, OutboxItem
from insights.quotas import ChannelsConfig, DeliverySettings, QuotaConfig
from warehouse.schema import now_utc

logger = logging.getLogger("alerting")


@dataclass
class DeliveryReport:
    """Outcome of one :func:`deliver_pending` pass."""

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

    def summary(self) -> str:
        """One short line for logs and the run summary."""
        text = f"{self.delivered} delivered, {self.pending} pending, {self.failed} failed"
        if self.channels_down:
            text += " (channels down: " + ", ".join(sorted(set(self.channels_down))) + ")"
        return text


def _send(channel: Channel, item: OutboxItem) -> None:
    """channel.send with every unexpected exception turned into a one-line DeliveryError."""
    try:
        channel.send(item)
    except DeliveryError:
        raise
    except Exception as exc:
        detail = scrub(REDACT.redact(str(exc)), []) if str(exc) else ""
        message = f"{item.channel}: {type(exc).__name__}" + (f": {detail}" if detail else "")
        raise DeliveryError(message[:300]) from None


def deliver_pending(
    store: AlertStore,
    channels: Mapping[str, Channel],
    now: datetime | None = None,
    *,
    settings: DeliverySettings | None = None,
    max_attempts: int | None = None,
    ignore_backoff: bool = False,
    max_messages: int | None = None,
    only: Collection[str] | None = None,
) -> DeliveryReport:
    """Deliver every due pending outbox row whose channel is in ``channels``.

    ``settings`` gives the backoff and ``max_attempts`` (an explicit ``max_attempts``
    overrides it); ``ignore_backoff`` sends rows that are not due yet (``alerts --retry``);
    ``only`` limits the pass to these idempotency keys (the rows claimed in a shared lake).
    Errors are logged as one line each; nothing a channel does raises out of here.
    """
    settings = settings or DeliverySettings()
    limit = max_attempts if max_attempts is not None else settings.max_attempts
    report = DeliveryReport()
    available = dict(channels)
    sent = 0
    while available and (max_messages is None or sent < max_messages):
        item = store.claim_next(available.keys(), now, ignore_backoff=ignore_backoff, only=only)
        if item is None:
            break
        sent += 1
        try:
            _send(available[item.channel], item)
        except DeliveryError as exc:
            retry_at = (now or now_utc()) + timedelta(seconds=settings.backoff(item.attempts))
            status = store.mark_failed(
                item,
                str(exc),
                max_attempts=limit,
                retry_at=retry_at,
                delivered_to=exc.delivered_to,
            )
            report.failed += status == "failed"
            report.retried_later += status == "pending"
            report.errors.append(str(exc))
            if isinstance(exc, PermanentDeliveryError):
                logger.warning("alert message %s not delivered: %s", item.webhook_id, exc)
                continue
            report.channels_down.append(item.channel)
            available.pop(item.channel)
            logger.warning("channel %s is failing, retried on a later run: %s", item.channel, exc)
            continue
        store.mark_delivered(item, now or now_utc())
        report.delivered += 1
    report.pending = store.pending_count()
    return report


def deliver_configured(
    store: AlertStore,
    config: QuotaConfig,
    organization_users: pd.DataFrame | None = None,
    now: datetime | None = None,
    *,
    ignore_backoff: bool = False,
    only: Collection[str] | None = None,
) -> DeliveryReport:
    """Deliver with the channels and retry settings of a quota configuration."""
    channels = build_channels(config.channels, organization_users)
    return deliver_pending(
        store, channels, now, settings=config.delivery, ignore_backoff=ignore_backoff, only=only
    )


def send_test_message(
    channel_name: str,
    config: QuotaConfig | ChannelsConfig,
    *,
    organization_users: pd.DataFrame | None = None,
    organization_id: str = "test-organization",
    organization_name: str | None = None,
) -> None:
    """Send one synthetic alert through a configured channel (raises DeliveryError); it is
    about ``organization_id`` (an e-mail channel with ``to: admins`` writes to its admins)."""
    channels_config = config.channels if isinstance(config, QuotaConfig) else config
    channels = build_channels(channels_config, organization_users)
    if channel_name not in channels:
        known = ", ".join(channels) or "none"
        raise DeliveryError(f"{channel_name}: channel is not configured (configured: {known})")
    now = now_utc()
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
                "organization_name": organization_name or organization_id,
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
    _send(channels[channel_name], item)
