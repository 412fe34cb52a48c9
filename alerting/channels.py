"""Notification channels: ``log``, ``webhook`` (Standard Webhooks), ``slack``, ``email`` (SMTP)
and ``apprise`` (any service Apprise supports: Teams, Discord, PagerDuty, Opsgenie, ntfy, ...).

Each channel sends one outbox message (:class:`alerting.store.OutboxItem`) and raises
:class:`DeliveryError` with a ONE-line message that never contains a secret (webhook secret,
Slack or Apprise URL, SMTP password; URLs are shown as scheme://host:port, Apprise targets as
their number and scheme only). A channel whose configuration is incomplete (see
:mod:`alerting.validation`) is built as an :class:`UnavailableChannel` whose sends fail,
so its messages stay pending until the configuration is fixed.

Secret URLs are also kept out of third-party logs (:mod:`alerting.redact`).
"""

from __future__ import annotations

import json
import logging
import smtplib
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from typing import Any, Protocol

import pandas as pd
from standardwebhooks import Webhook

from alerting.redact import REDACT, origin, protect_secret_url, protect_url, scrub
from alerting.store import OutboxItem
from alerting.validation import channel_problem
from common.errors import DeliveryError, PermanentDeliveryError
from insights.quotas import (
    AppriseChannelConfig,
    ChannelsConfig,
    EmailChannelConfig,
    SlackChannelConfig,
    WebhookChannelConfig,
)

logger = logging.getLogger("alerting")


class Channel(Protocol):
    """Something that delivers one outbox message."""

    name: str

    def send(self, item: OutboxItem) -> None:
        """Deliver or raise :class:`DeliveryError`."""
        ...


def _period_text(alert: Mapping[str, Any]) -> str:
    """``start .. last day`` (the payload's ``period_end`` is exclusive), or the start alone."""
    start = str(alert.get("period_start") or "")[:10]
    end = str(alert.get("period_end") or "")[:10]
    if not end:
        return start
    last = date.fromisoformat(end) - timedelta(days=1)
    return f"{start} .. {last:%Y-%m-%d}"


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
    if alert.get("restatement"):
        lines.append(alert["restatement"])
    org = alert["organization_id"]
    name = alert.get("organization_name")
    lines.append(
        f"organization {f'{name} ({org})' if name and name != org else org}, "
        f"rule {alert['rule']}, period {_period_text(alert)}"
    )
    lines.append(f"alert key {alert['alert_key']} (message {item.webhook_id})")
    return "\n".join(lines)


class LogChannel:
    """Writes alerts to Python logging (``alerting``)."""

    name = "log"

    def send(self, item: OutboxItem) -> None:
        """Log the message (WARNING when opened, INFO when resolved)."""
        level = logging.WARNING if item.event == "open" else logging.INFO
        logger.log(level, "quota alert %s: %s", item.event, render_text(item).replace("\n", " | "))


class WebhookChannel:
    """JSON POST signed with Standard Webhooks headers (``webhook-id``, ``-timestamp``,
    ``-signature``); ``webhook-id`` is stable per message so receivers can dedupe."""

    def __init__(self, config: WebhookChannelConfig, name: str = "webhook") -> None:
        self.name = name
        self._url = config.url.get_secret_value() if config.url else None
        self.timeout = config.timeout_seconds
        self._secret = config.secret.get_secret_value() if config.secret else None
        if self._url:
            protect_url(self._url)

    def send(self, item: OutboxItem) -> None:
        """POST the payload; any non-2xx answer or transport error raises DeliveryError."""
        if not self._secret or not self._url:
            raise DeliveryError(f"{self.name}: no URL or no signing secret configured")
        try:
            signer = Webhook(self._secret)
        except Exception:
            raise DeliveryError(
                f"{self.name}: the signing secret is not valid (expected whsec_<base64>)"
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
    import httpx  # here, not at the top: loading the code location never needs it

    where = origin(url)
    try:
        response = httpx.post(url, content=body.encode(), headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        reason = scrub(str(exc), [*secrets, url]) or type(exc).__name__
        raise DeliveryError(f"{channel}: POST to {where} failed: {reason}") from None
    if response.status_code >= 300:
        raise DeliveryError(f"{channel}: {where} answered HTTP {response.status_code}")


class SlackChannel:
    """Slack incoming webhook: JSON with ``text`` (fallback) and ``blocks``."""

    def __init__(self, config: SlackChannelConfig, name: str = "slack") -> None:
        self.name = name
        self._url = config.url.get_secret_value() if config.url else None
        if self._url:
            protect_url(self._url)
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
        if alert.get("restatement"):
            blocks.append(
                {"type": "section", "text": {"type": "mrkdwn", "text": alert["restatement"]}}
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
            raise DeliveryError(f"{self.name}: no webhook URL configured (url/url_env)")
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

    def __init__(
        self,
        config: EmailChannelConfig,
        admins: Mapping[str, list[str]] | None = None,
        name: str = "email",
    ) -> None:
        self.name = name
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
                f"{self.name}: no recipients for organization {alert['organization_id']}"
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
            detail = scrub(str(exc), [self._password]) or "no detail"
            raise DeliveryError(
                f"{self.name}: SMTP {cfg.host}:{cfg.port} failed: {type(exc).__name__}: {detail}"
            ) from None


class AppriseChannel:
    """Apprise: the message goes to every URL of the channel (each a "target", numbered from
    1). Targets that got it are remembered by the outbox (``delivered_to``), so a retry after a
    partial failure reaches only the others: exactly once per target."""

    def __init__(self, config: AppriseChannelConfig, name: str = "apprise") -> None:
        self.name = name
        self._urls = [u.get_secret_value() for u in config.urls]
        for url in self._urls:
            protect_secret_url(url)

    @staticmethod
    def _scheme(url: str) -> str:
        return url.split("://", 1)[0].lower() if "://" in url else "?"

    def send(self, item: OutboxItem) -> None:
        """Notify every target not yet reached; raise DeliveryError naming the failing ones."""
        import apprise

        if not self._urls:
            raise DeliveryError(f"{self.name}: no Apprise URLs configured (urls/urls_env)")
        alert = item.payload["alert"]
        prefix = "Resolved: " if item.event == "resolved" else ""
        title = (prefix + str(alert.get("title") or alert["alert_key"]))[:250]
        kind = (
            apprise.NotifyType.SUCCESS if item.event == "resolved" else apprise.NotifyType.WARNING
        )
        done = list(item.delivered_to)
        failures: list[str] = []
        for number, url in enumerate(self._urls, start=1):
            target = str(number)
            if target in done:
                continue
            where = f"target {number} ({self._scheme(url)}://)"
            with _apprise_warnings() as warnings:
                plugin = apprise.Apprise.instantiate(url)
                ok = plugin is not None and bool(
                    plugin.notify(body=render_text(item), title=title, notify_type=kind)
                )
            if ok:
                done.append(target)
                continue
            reason = warnings[-1] if warnings else "not delivered"
            if plugin is None:
                reason = "not a URL Apprise understands"
            failures.append(f"{where}: {scrub(REDACT.redact(reason), self._urls)}")
        if failures:
            raise DeliveryError(
                f"{self.name}: {len(failures)} of {len(self._urls)} targets failed: "
                + "; ".join(failures),
                delivered_to=tuple(done),
            )


@contextmanager
def _apprise_warnings() -> Iterator[list[str]]:
    """Collect apprise's warning/error log lines (already redacted by the filter)."""
    captured: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(REDACT.redact(record.getMessage()))

    handler = _Collect(level=logging.WARNING)
    target = logging.getLogger("apprise")
    target.addHandler(handler)
    try:
        yield captured
    finally:
        target.removeHandler(handler)


class UnavailableChannel:
    """A configured channel that cannot send as configured (missing URL, unset variable...).
    Its messages stay pending, retried with backoff, until the configuration is fixed."""

    def __init__(self, name: str, problem: str) -> None:
        self.name = name
        self.problem = problem

    def send(self, item: OutboxItem) -> None:
        """Always fails with the configuration problem (one line, no secret)."""
        raise DeliveryError(f"{self.name}: not configured correctly: {self.problem}")


def build_channels(
    config: ChannelsConfig, organization_users: pd.DataFrame | None = None
) -> dict[str, Channel]:
    """Channel objects for every configured channel, keyed by name. Never raises: a channel
    with a configuration problem becomes an :class:`UnavailableChannel`."""
    channels: dict[str, Channel] = {}
    if config.log:
        channels["log"] = LogChannel()
    admins: dict[str, list[str]] | None = None
    for name, cfg in config.named.items():
        problem = channel_problem(cfg)
        if problem is not None:
            channels[name] = UnavailableChannel(name, problem)
        elif isinstance(cfg, WebhookChannelConfig):
            channels[name] = WebhookChannel(cfg, name)
        elif isinstance(cfg, SlackChannelConfig):
            channels[name] = SlackChannel(cfg, name)
        elif isinstance(cfg, EmailChannelConfig):
            if admins is None:
                admins = admins_by_organization(organization_users)
            channels[name] = EmailChannel(cfg, admins, name)
        else:
            channels[name] = AppriseChannel(cfg, name)
    return channels
