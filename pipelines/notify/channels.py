"""Notification channels: ``log``, ``webhook`` (Standard Webhooks), ``slack``, ``email`` (SMTP).

Each channel sends one outbox message (:class:`warehouse.alert_store.OutboxItem`) and raises
:class:`DeliveryError` (transient: retried on a later run) or :class:`PermanentDeliveryError`
(e.g. no recipients; marked failed) with a ONE-line message that never contains a secret
(webhook secret, Slack URL, SMTP password; URLs are shown as scheme://host:port only).
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx
import pandas as pd
from standardwebhooks import Webhook

from pipelines.quotas import (
    ChannelsConfig,
    EmailChannelConfig,
    SlackChannelConfig,
    WebhookChannelConfig,
)
from warehouse.alert_store import OutboxItem

logger = logging.getLogger("pipelines.notify")


class _RedactUrls(logging.Filter):
    """httpx logs every request URL at INFO; a webhook/Slack URL can itself be a credential.
    This filter, installed on the ``httpx`` logger, shows such URLs as scheme://host:port/***."""

    def __init__(self) -> None:
        super().__init__("redact-alert-urls")
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.urls:
            text = record.getMessage()
            for url in self.urls:
                text = text.replace(url, _origin(url) + "/***")
            record.msg, record.args = text, None
        return True


_REDACT = _RedactUrls()


def _protect_url(url: str) -> None:
    httpx_logger = logging.getLogger("httpx")
    if _REDACT not in httpx_logger.filters:
        httpx_logger.addFilter(_REDACT)
    _REDACT.urls.add(url)


class DeliveryError(RuntimeError):
    """A message could not be delivered now; it stays pending and is retried later."""


class PermanentDeliveryError(DeliveryError):
    """A message can never be delivered as configured (e.g. no recipients)."""


class Channel(Protocol):
    """Something that delivers one outbox message."""

    name: str

    def send(self, item: OutboxItem) -> None:
        """Deliver or raise :class:`DeliveryError`."""
        ...


def _origin(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _scrub(text: str, secrets: list[str | None]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())


def render_text(item: OutboxItem) -> str:
    """Plain-text rendering of a message (log line, e-mail body, Slack fallback text)."""
    alert = item.payload["alert"]
    prefix = "RESOLVED: " if item.event == "resolved" else ""
    lines = [prefix + (alert.get("title") or alert["alert_key"])]
    if item.event == "resolved":
        lines.append(
            "The condition no longer holds (value back under the threshold or a new period)."
        )
    if alert.get("explanation"):
        lines.append(alert["explanation"])
    lines.append(
        f"organization {alert['organization_id']}, rule {alert['rule']}, "
        f"period {str(alert['period_start'])[:10]} to {str(alert.get('period_end') or '')[:10]}"
    )
    lines.append(f"alert key {alert['alert_key']} (message {item.webhook_id})")
    return "\n".join(lines)


class LogChannel:
    """Writes alerts to Python logging (``pipelines.notify``)."""

    name = "log"

    def send(self, item: OutboxItem) -> None:
        """Log the message (WARNING when opened, INFO when resolved)."""
        level = logging.WARNING if item.event == "open" else logging.INFO
        logger.log(level, "quota alert %s: %s", item.event, render_text(item).replace("\n", " | "))


class WebhookChannel:
    """JSON POST signed with Standard Webhooks headers (``webhook-id``, ``-timestamp``,
    ``-signature``); ``webhook-id`` is stable per message so receivers can dedupe."""

    name = "webhook"

    def __init__(self, config: WebhookChannelConfig) -> None:
        self._url = config.url.get_secret_value() if config.url else None
        self.timeout = config.timeout_seconds
        self._secret = config.secret.get_secret_value() if config.secret else None
        if self._url:
            _protect_url(self._url)

    def send(self, item: OutboxItem) -> None:
        """POST the payload; any non-2xx answer or transport error raises DeliveryError."""
        if not self._secret:
            raise PermanentDeliveryError(
                "webhook: no signing secret configured (secret/secret_env)"
            )
        try:
            signer = Webhook(self._secret)
        except Exception:
            raise PermanentDeliveryError(
                "webhook: the signing secret is not valid (expected whsec_<base64>)"
            ) from None
        body = json.dumps(item.payload, sort_keys=True, separators=(",", ":"))
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": item.webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signer.sign(item.webhook_id, now, body),
            "idempotency-key": item.idempotency_key,
        }
        _post(self.name, self._url, body, headers, self.timeout, [self._secret, self._url])


def _post(
    channel: str,
    url: str,
    body: str,
    headers: dict[str, str],
    timeout: float,
    secrets: list[str | None],
) -> None:
    where = _origin(url)
    try:
        response = httpx.post(url, content=body.encode(), headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        reason = _scrub(str(exc), [*secrets, url]) or type(exc).__name__
        raise DeliveryError(f"{channel}: POST to {where} failed: {reason}") from None
    if response.status_code >= 300:
        raise DeliveryError(f"{channel}: {where} answered HTTP {response.status_code}")


class SlackChannel:
    """Slack incoming webhook: JSON with ``text`` (fallback) and ``blocks``."""

    name = "slack"

    def __init__(self, config: SlackChannelConfig) -> None:
        self._url = config.url.get_secret_value() if config.url else None
        if self._url:
            _protect_url(self._url)
        self.timeout = config.timeout_seconds

    @staticmethod
    def message(item: OutboxItem) -> dict[str, Any]:
        """The Slack message body."""
        alert = item.payload["alert"]
        icon = ":white_check_mark:" if item.event == "resolved" else ":warning:"
        title = ("Resolved: " if item.event == "resolved" else "") + str(alert.get("title"))
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{title}*"}}
        ]
        if alert.get("explanation"):
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": alert["explanation"]}}
            )
        blocks.append(
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": f"rule `{alert['rule']}` | key `{alert['alert_key']}`",
                    }
                ],
            }
        )
        return {"text": render_text(item), "blocks": blocks}

    def send(self, item: OutboxItem) -> None:
        """POST to the incoming webhook."""
        if not self._url:
            raise PermanentDeliveryError("slack: no webhook URL configured (url/url_env)")
        body = json.dumps(self.message(item))
        headers = {"content-type": "application/json"}
        _post(self.name, self._url, body, headers, self.timeout, [self._url])


def admins_by_organization(organization_users: pd.DataFrame | None) -> dict[str, list[str]]:
    """organization_id -> admin e-mail addresses (from the ``organization_users`` table)."""
    if organization_users is None or organization_users.empty:
        return {}
    users = organization_users[organization_users["admin"].fillna(False).astype(bool)]
    if "status" in users.columns:
        users = users[users["status"].fillna("active").astype(str) != "inactive"]
    out: dict[str, list[str]] = {}
    for row in users.itertuples(index=False):
        out.setdefault(str(row.organization_id), []).append(str(row.email))
    return {k: sorted(set(v)) for k, v in out.items()}


class EmailChannel:
    """SMTP e-mail (STARTTLS optional) to configured addresses or the organization's admins."""

    name = "email"

    def __init__(
        self, config: EmailChannelConfig, admins: Mapping[str, list[str]] | None = None
    ) -> None:
        self.config = config
        self.admins = dict(admins or {})
        self._password = config.password.get_secret_value() if config.password else None

    def recipients(self, organization_id: str) -> list[str]:
        """Who receives a message about this organization."""
        if self.config.to == "admins":
            return list(self.admins.get(str(organization_id), []))
        return list(self.config.to)

    def send(self, item: OutboxItem) -> None:
        """Send one e-mail; errors name host:port and the SMTP error, never the password."""
        alert = item.payload["alert"]
        to = self.recipients(alert["organization_id"])
        if not to:
            raise PermanentDeliveryError(
                f"email: no recipients for organization {alert['organization_id']}"
            )
        msg = EmailMessage()
        prefix = "[resolved] " if item.event == "resolved" else ""
        msg["Subject"] = f"{prefix}{alert.get('title') or alert['alert_key']}"[:200]
        msg["From"] = self.config.from_addr
        msg["To"] = ", ".join(to)
        msg["Message-ID"] = f"<{item.webhook_id}@ubiops-usage>"
        msg["X-Idempotency-Key"] = item.idempotency_key
        msg.set_content(render_text(item))
        cfg = self.config
        try:
            with smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_seconds) as smtp:
                if cfg.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.user and self._password:
                    smtp.login(cfg.user, self._password)
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            detail = _scrub(str(exc), [self._password]) or "no detail"
            raise DeliveryError(
                f"email: SMTP {cfg.host}:{cfg.port} failed: {type(exc).__name__}: {detail}"
            ) from None


def build_channels(
    config: ChannelsConfig, organization_users: pd.DataFrame | None = None
) -> dict[str, Channel]:
    """Channel objects for every configured channel, keyed by name."""
    channels: dict[str, Channel] = {}
    if config.log:
        channels["log"] = LogChannel()
    if config.webhook is not None:
        channels["webhook"] = WebhookChannel(config.webhook)
    if config.slack is not None:
        channels["slack"] = SlackChannel(config.slack)
    if config.email is not None:
        channels["email"] = EmailChannel(config.email, admins_by_organization(organization_users))
    return channels
