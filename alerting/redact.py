"""Keeping notification secrets out of logs and messages.

Webhook and Slack URLs, and Apprise URLs, are credentials. Third-party libraries log them
(httpx logs every request URL at INFO; apprise logs unparsable URLs and target hosts; urllib3
logs request paths at DEBUG). :func:`protect_url` / :func:`protect_secret_url` register a URL
with one logging filter, installed on those loggers, that rewrites every record: the whole URL
becomes ``scheme://host:port/***`` (webhook, Slack) or ``scheme://***`` (Apprise), and for Apprise
every part of the URL (user, password, host, path segments, query values: any can be the
token) becomes ``***``. :func:`scrub` does the same for a one-line error message.
"""

from __future__ import annotations

import logging
from urllib.parse import parse_qsl, unquote, urlsplit

GUARDED_LOGGERS = (
    "httpx",
    "apprise",
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.util.retry",
    "requests",
)


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL (what an error message may show)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = parts.port
    except ValueError:
        return "?"
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def scrub(text: str, secrets: list[str | None]) -> str:
    """One line with every given secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())


class _RedactSecrets(logging.Filter):
    """Replaces registered secret strings (whole URLs first, then their parts) in records."""

    def __init__(self) -> None:
        super().__init__("redact-alert-secrets")
        self.urls: dict[str, str] = {}  # url -> its safe form
        self.parts: set[str] = set()

    def redact(self, text: str) -> str:
        """``text`` with every registered URL and URL part replaced."""
        for url in sorted(self.urls, key=len, reverse=True):
            text = text.replace(url, self.urls[url])
        for part in sorted(self.parts, key=len, reverse=True):
            text = text.replace(part, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.urls or self.parts:
            record.msg, record.args = self.redact(record.getMessage()), None
        return True


REDACT = _RedactSecrets()


def _install() -> None:
    for name in GUARDED_LOGGERS:
        target = logging.getLogger(name)
        if REDACT not in target.filters:
            target.addFilter(REDACT)


def protect_url(url: str) -> None:
    """A URL that is itself a credential (webhook, Slack): logged as scheme://host:port/***."""
    _install()
    REDACT.urls[url] = origin(url) + "/***"


def protect_secret_url(url: str) -> None:
    """An Apprise URL: the whole URL and each of its parts are redacted from logs."""
    _install()
    REDACT.urls[url] = url.split(":", 1)[0] + "://***"
    try:
        parts = urlsplit(url)
        credentials = [parts.username, parts.password]
        pieces = [parts.hostname, parts.netloc]
        pieces += [unquote(seg) for seg in parts.path.split("/")]
        pieces += [v for _, v in parse_qsl(parts.query)]
    except ValueError:
        credentials, pieces = [], []
    # tokens hide in hosts, paths and queries (discord://id/token, tgram://token/chat); short
    # pieces there are words like "api", so only credentials are redacted at any length >= 3
    REDACT.parts.update(p for p in credentials if p and len(p) >= 3)
    REDACT.parts.update(p for p in pieces if p and len(p) >= 6)
