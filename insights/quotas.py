"""Quota and alerting configuration: credit budgets, resource limits, alert rules, channels.

Owns the YAML schema of the quota file (see ``quotas.example.yaml`` at the repository root and
``docs/alerts.md``), its validation with pydantic and the lookup helpers that resolve the budget
and limits that apply to one organization (subscription defaults, then per-organization
overrides by id or name, then per-project budgets).

Every number has a range (finite; budgets and limits >= 0; thresholds, timeouts and
sensitivity > 0; ``forecast_interval`` strictly between 0 and 1). A bad file raises
:class:`QuotaConfigError` with one line naming the key path and what was expected.

Channels are named: ``log`` (on unless disabled), and any number of ``webhook``, ``slack``,
``email`` and ``apprise`` channels (a channel called ``webhook``/``slack``/``email``/``apprise``
has that type; any other name says ``type:``). Routing: ``channels: [names]`` under an
organization override, a subscription or ``default`` picks the channels of that organization's
alerts (first match wins; else the channels no route names; no routes at all: every channel).
Secrets (webhook secret, Slack URL,
Apprise URLs, SMTP password) are held as ``SecretStr`` and may be read from environment
variables (``secret_env``, ``url_env``, ``urls_env``, ``password_env``); they never appear in
``repr``, logs or error messages. Whether the channels are complete (URL and secret present,
variables set) is checked by :func:`alerting.validate_channels`, not here, so that
reading commands work without the delivery secrets.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from common.errors import QuotaConfigError
from warehouse.schema import RESOURCE_NAMES

QUOTAS_ENV = "USAGE_QUOTAS"
DEFAULT_QUOTAS_PATH = Path(__file__).resolve().parent.parent / "quotas.example.yaml"
_SECRET_HINTS = ("secret", "password", "url", "token")


def _number(
    minimum: float | None = None,
    integer: bool = False,
    *,
    above: bool = False,
    below: float | None = None,
) -> Any:
    """Build a before-validator that accepts finite numbers in a range only and reports one
    readable expectation (``minimum`` inclusive, or exclusive with ``above``; ``below``
    exclusive)."""
    kind = "an integer" if integer else "a finite number"
    bounds = []
    if minimum is not None:
        bounds.append(f"{'>' if above else '>='} {minimum:g}")
    if below is not None:
        bounds.append(f"< {below:g}")
    expected = kind + (" " + " and ".join(bounds) if bounds else "")

    def check(value: Any) -> float | int:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not math.isfinite(value):  # NaN, .inf
            ok = False
        if ok and integer and isinstance(value, float) and not value.is_integer():
            ok = False
        if ok and minimum is not None:
            ok = value > minimum if above else value >= minimum
        if ok and below is not None:
            ok = value < below
        if not ok:
            raise PydanticCustomError("expected", expected)
        return int(value) if integer else float(value)

    return BeforeValidator(check)


NonNegFloat = Annotated[float, _number(0)]
PosFloat = Annotated[float, _number(0, above=True)]
NonNegInt = Annotated[int, _number(0, integer=True)]
PosInt = Annotated[int, _number(1, integer=True)]
Percent = Annotated[float, _number(0, above=True)]
Fraction = Annotated[float, _number(0, above=True, below=1)]
ChannelName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
CHANNEL_TYPES = ("webhook", "slack", "email", "apprise")
_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")


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


def _address(value: Any) -> Any:
    if not (isinstance(value, str) and _ADDRESS.match(value.strip())):
        raise PydanticCustomError("expected", "an e-mail address such as alerts@example.com")
    return value.strip()


def _recipients(value: Any) -> Any:
    ok = value == "admins" or (
        isinstance(value, list)
        and value
        and all(isinstance(v, str) and _ADDRESS.match(v.strip()) for v in value)
    )
    if not ok:
        raise PydanticCustomError("expected", "'admins' or a non-empty list of e-mail addresses")
    return value if value == "admins" else [v.strip() for v in value]


class WebhookChannelConfig(_Model):
    """JSON webhook signed with Standard Webhooks headers (secret ``whsec_<base64>``)."""

    type: Literal["webhook"] = "webhook"
    url: SecretStr | None = None  # may carry a token in its query: hidden like a secret
    url_env: str | None = None
    secret: SecretStr | None = None
    secret_env: str | None = None
    timeout_seconds: PosFloat = 10.0

    @model_validator(mode="after")
    def _resolve(self) -> WebhookChannelConfig:
        object.__setattr__(self, "url", _env_secret(self.url, self.url_env))
        object.__setattr__(self, "secret", _env_secret(self.secret, self.secret_env))
        return self


class SlackChannelConfig(_Model):
    """Slack incoming webhook (the URL itself is the credential, so it is a secret)."""

    type: Literal["slack"] = "slack"
    url: SecretStr | None = None
    url_env: str | None = None
    timeout_seconds: PosFloat = 10.0

    @model_validator(mode="after")
    def _resolve(self) -> SlackChannelConfig:
        object.__setattr__(self, "url", _env_secret(self.url, self.url_env))
        return self


class EmailChannelConfig(_Model):
    """SMTP e-mail; ``to`` is a list of addresses or ``admins`` (the organization's admins)."""

    type: Literal["email"] = "email"
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, _number(1, integer=True, below=65536)] = 25
    starttls: bool = False
    user: str | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    from_addr: Annotated[str, BeforeValidator(_address)] = Field(alias="from")
    to: Annotated[Literal["admins"] | list[str], BeforeValidator(_recipients)] = "admins"
    timeout_seconds: PosFloat = 10.0

    @model_validator(mode="after")
    def _resolve(self) -> EmailChannelConfig:
        object.__setattr__(self, "password", _env_secret(self.password, self.password_env))
        return self


class AppriseChannelConfig(_Model):
    """Any service Apprise supports (Teams, Discord, PagerDuty, Opsgenie, Telegram, ntfy, ...):
    a list of Apprise URLs. The URLs carry credentials, so they are secrets; ``urls_env`` names
    a variable holding them separated by whitespace."""

    type: Literal["apprise"] = "apprise"
    urls: list[SecretStr] = Field(default_factory=list)
    urls_env: str | None = None

    @model_validator(mode="after")
    def _resolve(self) -> AppriseChannelConfig:
        if not self.urls and self.urls_env:
            raw = os.environ.get(self.urls_env, "")
            object.__setattr__(self, "urls", [SecretStr(u) for u in raw.split()])
        return self


ChannelConfig = Annotated[
    WebhookChannelConfig | SlackChannelConfig | EmailChannelConfig | AppriseChannelConfig,
    Field(discriminator="type"),
]


class ChannelsConfig(_Model):
    """The notification channels by name; ``log`` is on unless disabled."""

    log: bool = True
    named: dict[ChannelName, ChannelConfig] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _collect(cls, data: Any) -> Any:
        """``{log: true, ops: {type: apprise, ...}}`` -> ``{log: true, named: {ops: ...}}``;
        a channel named after a type has that type unless it says otherwise."""
        if not isinstance(data, dict) or "named" in data:
            return data
        named: dict[str, Any] = {}
        for name, value in data.items():
            if name == "log":
                continue
            if isinstance(value, dict) and "type" not in value and name in CHANNEL_TYPES:
                value = {**value, "type": name}
            elif isinstance(value, dict) and "type" not in value:
                value = {**value, "type": None}
            named[name] = value
        out: dict[str, Any] = {"named": named}
        if "log" in data:
            out["log"] = data["log"]
        return out

    def enabled(self) -> list[str]:
        """Names of the configured channels, in a stable order (``log`` first)."""
        return (["log"] if self.log else []) + list(self.named)

    def get(self, name: str) -> ChannelConfig | None:
        """The configuration of a named channel (None for ``log`` or an unknown name)."""
        return self.named.get(name)

    @property
    def webhook(self) -> ChannelConfig | None:
        """The channel named ``webhook``, if any."""
        return self.named.get("webhook")

    @property
    def slack(self) -> ChannelConfig | None:
        """The channel named ``slack``, if any."""
        return self.named.get("slack")

    @property
    def email(self) -> ChannelConfig | None:
        """The channel named ``email``, if any."""
        return self.named.get("email")


class DeliverySettings(_Model):
    """Retries of a channel that fails at send time: a message stays ``pending`` and is retried
    after ``backoff_seconds`` x 2^(attempts - 1) (at most ``max_backoff_seconds``) on later
    runs; it becomes ``failed`` after ``max_attempts`` attempts."""

    max_attempts: PosInt = 20
    backoff_seconds: NonNegFloat = 60.0
    max_backoff_seconds: NonNegFloat = 6 * 3600.0

    def backoff(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt."""
        if attempts <= 0:
            return 0.0
        return min(self.backoff_seconds * 2.0 ** min(attempts - 1, 30), self.max_backoff_seconds)


class SubscriptionQuota(_Model):
    """Credit budget per subscription period and resource limits of one subscription."""

    credit_budget: NonNegFloat | None = None
    resources: dict[str, NonNegInt] = Field(default_factory=dict)
    channels: list[ChannelName] | None = None  # routing: where these organizations' alerts go

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
    sensitivity: PosFloat = 4.0
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
    forecast_interval: Fraction = 0.8
    anomaly: AnomalyRule = Field(default_factory=AnomalyRule)

    @field_validator(
        "credit_actual_thresholds", "credit_forecast_thresholds", "resource_thresholds"
    )
    @classmethod
    def _sorted(cls, value: list[float]) -> list[float]:
        return sorted(set(value))


class QuotaConfig(_Model):
    """The whole quota file (its sections: `QUOTA_SECTIONS`)."""

    subscriptions: dict[str, SubscriptionQuota] = Field(default_factory=dict)
    default: SubscriptionQuota = Field(default_factory=SubscriptionQuota)
    organizations: dict[str, OrganizationOverride] = Field(default_factory=dict)
    rules: AlertRules = Field(default_factory=AlertRules)
    channels: ChannelsConfig = Field(default_factory=ChannelsConfig)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    _source: str = PrivateAttr(default="quotas.yaml")

    @property
    def source(self) -> str:
        """The quota file as given (for error messages)."""
        return self._source

    @model_validator(mode="after")
    def _routes_name_channels(self) -> QuotaConfig:
        known = self.channels.enabled()
        routes: list[tuple[str, list[str] | None]] = [("default", self.default.channels)]
        routes += [(f"subscriptions.{k}", v.channels) for k, v in self.subscriptions.items()]
        routes += [(f"organizations.{k}", v.channels) for k, v in self.organizations.items()]
        for where, names in routes:
            for name in names or []:
                if name not in known:
                    raise PydanticCustomError(
                        "route",
                        "{where}.channels: unknown channel '{name}' (configured: {known})",
                        {"where": where, "name": name, "known": ", ".join(known) or "none"},
                    )
        routed = [where for where, names in routes[1:] if names is not None]
        if routed and self.default.channels is None and not self.unclaimed_channels():
            raise PydanticCustomError(
                "route",
                "every channel is named by a route ({where}), so an organization without "
                "a route would get no channel: set default.channels (an empty list sends "
                "those alerts nowhere)",
                {"where": ", ".join(routed)},
            )
        return self

    def unclaimed_channels(self) -> list[str]:
        """The configured channels that no organization or subscription route names: where an
        organization without a route goes when ``default`` has no ``channels``."""
        claimed = {
            name
            for route in (
                *(v.channels for v in self.subscriptions.values()),
                *(v.channels for v in self.organizations.values()),
            )
            for name in route or []
        }
        return [name for name in self.channels.enabled() if name not in claimed]

    def channels_for(
        self, organization_id: str, organization_name: str | None, subscription: str | None
    ) -> list[str]:
        """The channels an organization's alerts go to: its override's ``channels``, else its
        subscription's, else ``default.channels``, else the channels no organization or
        subscription route names (every configured channel when there are no routes), so a
        team's channel never receives other organizations' alerts by fallback."""
        override = self._override(organization_id, organization_name)
        name = override.subscription or subscription
        for names in (
            override.channels,
            self.subscriptions[name].channels if name in self.subscriptions else None,
            self.default.channels,
        ):
            if names is not None:
                return list(names)
        return self.unclaimed_channels()

    def unmatched_overrides(self, organizations: Iterable[tuple[str, str | None]]) -> list[str]:
        """The `organizations:` keys that are neither the id nor the name of any of
        `organizations` (id, name): a typo there leaves the organization on its subscription's
        budget without a word, so a run warns about them."""
        known = {str(part) for pair in organizations for part in pair if part is not None}
        return [key for key in self.organizations if key not in known]

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


QUOTA_SECTIONS = tuple(QuotaConfig.model_fields)


def _describe_input(value: Any, loc: str) -> str:
    if any(hint in loc.lower() for hint in _SECRET_HINTS) and not isinstance(value, dict):
        return "a hidden value"
    if loc.startswith("channels") and isinstance(value, dict | list):
        return "a mapping" if isinstance(value, dict) else "a list"  # may hold credentials
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
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return "a channel type: " + ", ".join(CHANNEL_TYPES)
    if kind == "string_pattern_mismatch":
        return "a name of letters, digits, '_', '.' or '-'"
    return error["msg"][0].lower() + error["msg"][1:]


def format_validation_error(source: str, exc: ValidationError) -> str:
    """One line for the first validation error: ``file: key.path: expected X, got Y``."""
    error = exc.errors()[0]
    if error["type"] == "route":
        return f"{source}: {error['msg']}"
    parts = [str(p) for p in error["loc"] if not str(p).startswith(("function-", "literal["))]
    parts = [p for p in parts if p != "[key]"]
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        tag = (error.get("ctx") or {}).get("tag")
        parts.append("type")
        error = {**error, "input": tag if isinstance(tag, str) else None}
    if parts[:2] == ["channels", "named"]:
        # channels.named.<name>.<type tag>.<key> -> channels.<name>.<key>
        tail = [p for p in parts[3:4] if p not in CHANNEL_TYPES]
        parts = ["channels", *parts[2:3], *tail, *parts[4:]]
    # union branches add type names to the path ("url.str"): keep only real keys
    parts = [p for p in parts if p not in ("str", "list[str]", "SecretStr", "float", "int")]
    loc = ".".join(parts) or "<root>"
    if error["type"] == "missing" or (loc.endswith(".type") and error["input"] in (None, "None")):
        return f"{source}: {loc}: expected a value, but the key is missing"
    if error["type"] == "extra_forbidden":
        return f"{source}: {loc}: unknown key"
    return (
        f"{source}: {loc}: expected {_expected(error)}, got {_describe_input(error['input'], loc)}"
    )


def parse_quotas(data: Any, source: str = "quotas.yaml") -> QuotaConfig:
    """Validate an already-parsed mapping into a :class:`QuotaConfig`. An empty document is an
    error (every budget, limit and channel would be gone without a word); a file meant to set
    nothing says so with `{}`."""
    if data is None:
        raise QuotaConfigError(
            f"{source}: <root>: expected a mapping with any of {', '.join(QUOTA_SECTIONS)} "
            "(`{}` for none), got an empty file"
        )
    if not isinstance(data, dict):
        raise QuotaConfigError(f"{source}: <root>: expected a mapping, got {type(data).__name__}")
    try:
        config = QuotaConfig.model_validate(data)
    except ValidationError as exc:
        raise QuotaConfigError(format_validation_error(source, exc)) from None
    config._source = source
    return config


def resolve_quotas_path(path: str | os.PathLike[str] | None = None) -> Path:
    """The quota file to use: explicit path, else ``$USAGE_QUOTAS``, else the bundled example."""
    if path:
        return Path(path)
    env = os.environ.get(QUOTAS_ENV)
    return Path(env) if env else DEFAULT_QUOTAS_PATH


class _UniqueKeys:
    """A loader mix-in refusing a key given twice in one mapping (YAML leaves it to the loader,
    and PyYAML keeps the last silently: `free:` twice under `subscriptions` would drop the first
    budget); the error names the key and both lines. Keys merged in with `<<:` may be
    overridden, as YAML intends."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)  # type: ignore[attr-defined]
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the constructor refuses it itself
                continue
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {first})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)  # type: ignore[misc]


class _SafeLoader(_UniqueKeys, yaml.SafeLoader):
    pass


_FAST_LOADER: type | None = (
    type("_CSafeLoader", (_UniqueKeys, yaml.CSafeLoader), {})
    if hasattr(yaml, "CSafeLoader")
    else None
)


def _load_yaml(text: str) -> Any:
    """The YAML document in `text`: parsed by libyaml when PyYAML has it (a run loads the quota
    file more than once, and the pure-Python parser is an order of magnitude slower); a file
    libyaml refuses is parsed again by PyYAML's own parser, so the error a user sees is always
    PyYAML's (libyaml words its problems differently). Both refuse duplicate keys."""
    if _FAST_LOADER is not None:
        try:
            return yaml.load(text, Loader=_FAST_LOADER)  # the safe loader, in C
        except yaml.YAMLError:
            pass
    return yaml.load(text, Loader=_SafeLoader)


def load_quotas(path: str | os.PathLike[str] | None = None) -> QuotaConfig:
    """Load and validate the quota file (see :func:`resolve_quotas_path`); errors name it as
    given (the bundled example by its name)."""
    resolved = resolve_quotas_path(path)
    source = resolved.name if resolved == DEFAULT_QUOTAS_PATH else str(resolved)
    try:
        text = resolved.read_text(encoding="utf-8")
    except OSError as exc:
        raise QuotaConfigError(f"{source}: cannot read it: {exc.strerror}") from None
    try:
        data = _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise QuotaConfigError(f"{source}: {where}{problem}") from None
    return parse_quotas(data, source)
