"""Is every notification channel complete enough to send? Checked before any API request.

:func:`validate_channels` is what ``usage-etl run`` calls up front: a missing URL or secret, an
environment variable that is named but not set, a URL that is not one (or that Apprise does not
understand) or an invalid Standard Webhooks secret is a :class:`QuotaConfigError`, one line naming
the channel, and the run does not start (exit 2). :func:`channel_problem` is the same check for one
channel; :func:`alerting.channels.build_channels` uses it at send time, so a channel that
broke between runs (a variable unset in the daemon's environment) keeps its messages pending
instead of failing them. Messages name variables and keys, never their values.
"""

from __future__ import annotations

import base64
from urllib.parse import urlsplit

from pydantic import SecretStr

from alerting.redact import protect_secret_url, protect_url
from insights.quotas import (
    AppriseChannelConfig,
    ChannelConfig,
    EmailChannelConfig,
    QuotaConfig,
    QuotaConfigError,
    SlackChannelConfig,
    WebhookChannelConfig,
)


def _missing(what: str, env: str | None, keys: str) -> str:
    if env:
        return f"no {what}: environment variable {env} is not set"
    return f"no {what} ({keys})"


def _http_url_problem(url: SecretStr | None, env: str | None, what: str) -> str | None:
    if url is None:
        return _missing(what, env, "url or url_env")
    text = url.get_secret_value()
    protect_url(text)
    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        _ = parts.port  # raises on a bad port
    except ValueError:
        ok = False
    if not ok:
        return f"the {what} is not an http(s) URL with a host"
    return None


def _webhook_problem(cfg: WebhookChannelConfig) -> str | None:
    problem = _http_url_problem(cfg.url, cfg.url_env, "URL")
    if problem:
        return problem
    if cfg.secret is None:
        return _missing("signing secret", cfg.secret_env, "secret or secret_env")
    if not _is_standard_webhooks_secret(cfg.secret.get_secret_value()):
        return "the signing secret is not a Standard Webhooks secret (whsec_<base64>)"
    return None


def _is_standard_webhooks_secret(secret: str) -> bool:
    """``whsec_`` followed by base64 of at least 16 bytes, accepted by the signer."""
    from standardwebhooks import Webhook

    if not secret.startswith("whsec_"):
        return False
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        Webhook(secret)
    except Exception:
        return False
    return len(key) >= 16


def _email_problem(cfg: EmailChannelConfig) -> str | None:
    if cfg.password is None and cfg.password_env:
        return _missing("SMTP password", cfg.password_env, "password or password_env")
    if cfg.password is not None and not cfg.user:
        return "a password is configured but no user to log in with"
    return None


def _apprise_problem(cfg: AppriseChannelConfig) -> str | None:
    if not cfg.urls:
        return _missing("Apprise URLs", cfg.urls_env, "urls or urls_env")
    import apprise

    for number, secret in enumerate(cfg.urls, start=1):
        url = secret.get_secret_value()
        protect_secret_url(url)  # apprise logs what it cannot parse
        scheme = url.split("://", 1)[0].lower() if "://" in url else None
        if scheme is None:
            return f"Apprise URL {number} is not a URL (expected scheme://...)"
        if apprise.Apprise.instantiate(url) is None:
            return f"Apprise URL {number} ({scheme}://) is not one Apprise understands"
    return None


def channel_problem(cfg: ChannelConfig) -> str | None:
    """What keeps this channel from sending, in one line without secrets (None: nothing)."""
    if isinstance(cfg, WebhookChannelConfig):
        return _webhook_problem(cfg)
    if isinstance(cfg, SlackChannelConfig):
        return _http_url_problem(cfg.url, cfg.url_env, "webhook URL")
    if isinstance(cfg, EmailChannelConfig):
        return _email_problem(cfg)
    return _apprise_problem(cfg)


def validate_channels(config: QuotaConfig) -> None:
    """Raise :class:`QuotaConfigError` for the first channel that cannot send as configured."""
    for name, cfg in config.channels.named.items():
        problem = channel_problem(cfg)
        if problem is not None:
            raise QuotaConfigError(f"{config.source}: channels.{name}: {problem}")
