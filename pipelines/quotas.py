"""Quota and alerting configuration: credit budgets, resource limits, alert rules, channels.

Owns the YAML schema of the quota file (see ``quotas.example.yaml`` at the repository root and
``docs/alerts.md``), its validation with pydantic and the lookup helpers that resolve the budget
and limits that apply to one organization (subscription defaults, then per-organization
overrides by id or name, then per-project budgets).

A bad file raises :class:`QuotaConfigError` with one line naming the key path and what was
expected. Secrets (webhook secret, Slack URL, SMTP password) are held as ``SecretStr`` and may be
read from environment variables (``secret_env``, ``url_env``, ``password_env``); they never
appear in ``repr``, logs or error messages.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pipelines.errors import ConfigError

QUOTAS_ENV = "USAGE_QUOTAS"
DEFAULT_QUOTAS_PATH = Path(__file__).resolve().parent.parent / "quotas.example.yaml"
RESOURCE_NAMES: tuple[str, ...] = (
    "projects",
    "users",
    "deployments",
    "deployment_versions",
    "pipelines",
    "pipeline_versions",
    "buckets",
    "environments",
)
_SECRET_HINTS = ("secret", "password", "url", "token")


class QuotaConfigError(ConfigError, ValueError):
    """The quota file is missing, unreadable or invalid (message is a single line)."""


def _number(minimum: float | None = None, integer: bool = False) -> Any:
    """Build a before-validator that accepts numbers only and reports one readable expectation."""
    kind = "an integer" if integer else "a number"
    expected = f"{kind} >= {minimum:g}" if minimum is not None else kind

    def check(value: Any) -> float | int:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and integer and isinstance(value, float) and not value.is_integer():
            ok = False
        if ok and value != value:  # NaN
            ok = False
        if not ok or (minimum is not None and value < minimum):
            raise PydanticCustomError("expected", expected)
        return int(value) if integer else float(value)

    return BeforeValidator(check)


NonNegFloat = Annotated[float, _number(0)]
NonNegInt = Annotated[int, _number(0, integer=True)]
PosInt = Annotated[int, _number(1, integer=True)]
Percent = Annotated[float, _number(0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _env_secret(value: SecretStr | None, env_name: str | None) -> SecretStr | None:
    if value is not None:
        return value
    if env_name:
        raw = os.environ.get(env_name)
        if raw:
            return SecretStr(raw)
    return None


def _recipients(value: Any) -> Any:
    ok = value == "admins" or (
        isinstance(value, list) and value and all(isinstance(v, str) and "@" in v for v in value)
    )
    if not ok:
        raise PydanticCustomError("expected", "'admins' or a non-empty list of e-mail addresses")
    return value


class WebhookChannelConfig(_Model):
    """JSON webhook signed with Standard Webhooks headers (secret ``whsec_<base64>``)."""

    url: SecretStr | None = None  # may carry a token in its query: hidden like a secret
    url_env: str | None = None
    secret: SecretStr | None = None
    secret_env: str | None = None
    timeout_seconds: NonNegFloat = 10.0

    @model_validator(mode="after")
    def _resolve(self) -> WebhookChannelConfig:
        object.__setattr__(self, "url", _env_secret(self.url, self.url_env))
        object.__setattr__(self, "secret", _env_secret(self.secret, self.secret_env))
        return self


class SlackChannelConfig(_Model):
    """Slack incoming webhook (the URL itself is the credential, so it is a secret)."""

    url: SecretStr | None = None
    url_env: str | None = None
    timeout_seconds: NonNegFloat = 10.0

    @model_validator(mode="after")
    def _resolve(self) -> SlackChannelConfig:
        object.__setattr__(self, "url", _env_secret(self.url, self.url_env))
        return self


class EmailChannelConfig(_Model):
    """SMTP e-mail; ``to`` is a list of addresses or ``admins`` (the organization's admins)."""

    host: str
    port: PosInt = 25
    starttls: bool = False
    user: str | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    from_addr: str = Field(alias="from")
    to: Annotated[Literal["admins"] | list[str], BeforeValidator(_recipients)] = "admins"
    timeout_seconds: NonNegFloat = 10.0

    @model_validator(mode="after")
    def _resolve(self) -> EmailChannelConfig:
        object.__setattr__(self, "password", _env_secret(self.password, self.password_env))
        return self


class ChannelsConfig(_Model):
    """Which notification channels are enabled; ``log`` is on unless disabled."""

    log: bool = True
    webhook: WebhookChannelConfig | None = None
    slack: SlackChannelConfig | None = None
    email: EmailChannelConfig | None = None

    def enabled(self) -> list[str]:
        """Names of the configured channels, in a stable order."""
        names = ["log"] if self.log else []
        names += [n for n in ("webhook", "slack", "email") if getattr(self, n) is not None]
        return names


class SubscriptionQuota(_Model):
    """Credit budget per subscription period and resource limits of one subscription."""

    credit_budget: NonNegFloat | None = None
    resources: dict[str, NonNegInt] = Field(default_factory=dict)

    @field_validator("resources")
    @classmethod
    def _known_resources(cls, value: dict[str, int]) -> dict[str, int]:
        for name in value:
            if name not in RESOURCE_NAMES:
                raise PydanticCustomError(
                    "expected",
                    "resource names among {names} (unknown: {bad})",
                    {"names": ", ".join(RESOURCE_NAMES), "bad": name},
                )
        return value


class OrganizationOverride(SubscriptionQuota):
    """Overrides for one organization (keyed by id or name) plus per-project budgets."""

    subscription: str | None = None
    projects: dict[str, NonNegFloat] = Field(default_factory=dict)


class AnomalyRule(_Model):
    """Robust anomaly detection settings (rolling weekday median + MAD)."""

    enabled: bool = False
    sensitivity: NonNegFloat = 4.0
    window_days: PosInt = 28
    min_history_days: PosInt = 14
    notify_resolved: bool = False


class AlertRules(_Model):
    """Thresholds (percent of the limit) and floors of the alert rules."""

    credit_actual_thresholds: list[Percent] = Field(default_factory=lambda: [50.0, 80.0, 100.0])
    credit_forecast_thresholds: list[Percent] = Field(default_factory=lambda: [100.0])
    resource_thresholds: list[Percent] = Field(default_factory=lambda: [80.0, 100.0])
    min_days_forecast: PosInt = 7
    min_impact_credits: NonNegFloat = 50.0
    forecast_interval: Annotated[float, _number(0)] = 0.8
    anomaly: AnomalyRule = Field(default_factory=AnomalyRule)

    @field_validator(
        "credit_actual_thresholds", "credit_forecast_thresholds", "resource_thresholds"
    )
    @classmethod
    def _sorted(cls, value: list[float]) -> list[float]:
        return sorted(set(value))


class QuotaConfig(_Model):
    """The whole quota file."""

    subscriptions: dict[str, SubscriptionQuota] = Field(default_factory=dict)
    default: SubscriptionQuota = Field(default_factory=SubscriptionQuota)
    organizations: dict[str, OrganizationOverride] = Field(default_factory=dict)
    rules: AlertRules = Field(default_factory=AlertRules)
    channels: ChannelsConfig = Field(default_factory=ChannelsConfig)

    def _override(
        self, organization_id: str, organization_name: str | None
    ) -> OrganizationOverride:
        by_id = self.organizations.get(str(organization_id))
        if by_id is not None:
            return by_id
        if organization_name is not None and organization_name in self.organizations:
            return self.organizations[organization_name]
        return OrganizationOverride()

    def _subscription(
        self, subscription: str | None, override: OrganizationOverride
    ) -> SubscriptionQuota:
        name = override.subscription or subscription
        if name is not None and name in self.subscriptions:
            return self.subscriptions[name]
        return self.default

    def credit_budget(
        self, organization_id: str, organization_name: str | None, subscription: str | None
    ) -> float | None:
        """Credit budget per subscription period for one organization (None: no budget)."""
        override = self._override(organization_id, organization_name)
        if override.credit_budget is not None:
            return override.credit_budget
        return self._subscription(subscription, override).credit_budget

    def resource_limits(
        self, organization_id: str, organization_name: str | None, subscription: str | None
    ) -> dict[str, int]:
        """Resource limits for one organization (subscription limits updated by overrides)."""
        override = self._override(organization_id, organization_name)
        limits = dict(self._subscription(subscription, override).resources)
        limits.update(override.resources)
        return limits

    def project_budgets(
        self, organization_id: str, organization_name: str | None
    ) -> dict[str, float]:
        """Per-project credit budgets, keyed by project id or project name as configured."""
        return dict(self._override(organization_id, organization_name).projects)


def _describe_input(value: Any, loc: str) -> str:
    if any(hint in loc.lower() for hint in _SECRET_HINTS) and not isinstance(value, dict):
        return "a hidden value"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _expected(error: dict[str, Any]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "expected":
        return error["msg"]
    if kind == "missing":
        return "a value (required key is missing)"
    if kind == "extra_forbidden":
        return "no such key (unknown key)"
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "a mapping"
    if kind == "list_type":
        return "a list"
    if kind in ("string_type", "string_sub_type"):
        return "a string"
    if kind in ("bool_type", "bool_parsing"):
        return "true or false"
    if kind == "literal_error":
        return f"one of {ctx.get('expected', '')}"
    return error["msg"][0].lower() + error["msg"][1:]


def format_validation_error(source: str, exc: ValidationError) -> str:
    """One line for the first validation error: ``file: key.path: expected X, got Y``."""
    error = exc.errors()[0]
    parts = [str(p) for p in error["loc"] if not str(p).startswith(("function-", "literal["))]
    # union branches add type names to the path ("url.str"): keep only real keys
    parts = [p for p in parts if p not in ("str", "list[str]", "SecretStr", "float", "int")]
    loc = ".".join(parts) or "<root>"
    if error["type"] == "missing":
        return f"{source}: {loc}: expected a value, but the key is missing"
    if error["type"] == "extra_forbidden":
        return f"{source}: {loc}: unknown key"
    return (
        f"{source}: {loc}: expected {_expected(error)}, got {_describe_input(error['input'], loc)}"
    )


def parse_quotas(data: Any, source: str = "quotas.yaml") -> QuotaConfig:
    """Validate an already-parsed mapping into a :class:`QuotaConfig`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise QuotaConfigError(f"{source}: <root>: expected a mapping, got {type(data).__name__}")
    try:
        return QuotaConfig.model_validate(data)
    except ValidationError as exc:
        raise QuotaConfigError(format_validation_error(source, exc)) from None


def resolve_quotas_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The quota file to use: explicit path, else ``$USAGE_QUOTAS``, else the bundled example."""
    if path:
        return Path(path)
    env = os.environ.get(QUOTAS_ENV)
    return Path(env) if env else DEFAULT_QUOTAS_PATH


def load_quotas(path: str | os.PathLike[str] | None = None) -> QuotaConfig:
    """Load and validate the quota file (see :func:`resolve_quotas_path`)."""
    resolved = resolve_quotas_path(path)
    source = resolved.name
    try:
        text = resolved.read_text(encoding="utf-8")
    except OSError as exc:
        raise QuotaConfigError(f"{source}: cannot read {resolved}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise QuotaConfigError(f"{source}: {where}{problem}") from None
    return parse_quotas(data, source)
