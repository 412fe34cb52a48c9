"""Where the pipeline's settings come from: command-line values, then environment, then defaults.

Environment contract (docs/data-contract.md and the README):
- `UBIOPS_API_TOKEN`: `Token xxx` or bare `xxx` (secret: never logged);
- `UBIOPS_API_HOST`: default `https://api.ubiops.com/v2.1`;
- `USAGE_WAREHOUSE`: the warehouse directory, default `./data`;
- `DAGSTER_HOME`: the Dagster instance, default `<warehouse>/dagster`;
- `USAGE_QUOTAS`: the quota/alert configuration file;
- `USAGE_PARTITIONS_START`: the first month with organization data (the first monthly partition),
  default `2025-08-01`;
- `USAGE_DETAILS_MAX_AGE_DAYS`: the most days an organization's details, members and subscription
  anchor go without being re-read from the API (default 7).

Everything here is cheap to import (no Dagster, no pandas): the command line imports it before
parsing arguments. Inside a run the settings are Dagster resources (assets/resources.py), built
from the same variables; the validators here (`checked_host`, `checked_token`) serve both. Nothing
here writes the environment: the command line passes its flags to a run as resource overrides.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from common.errors import SettingsError, WarehouseError

DEFAULT_HOST = "https://api.ubiops.com/v2.1"
DEFAULT_WAREHOUSE = "./data"
PARTITIONS_START_ENV = "USAGE_PARTITIONS_START"
DEFAULT_PARTITIONS_START = "2025-08-01"


@dataclass(frozen=True)
class FromEnv:
    """The environment variable(s) behind a setting: the first one set (not blank) wins.

    A `secret` setting's text is never shown or stored: inside a Dagster run it becomes an
    `EnvVar` holding only the variable's name (assets/resources.py); outside one, `value` reads
    it for the process that uses it. `parse` turns a plain setting's text into its value
    (raising `SettingsError`)."""

    names: tuple[str, ...]
    secret: bool = False
    parse: Callable[[str], Any] | None = None

    @classmethod
    def var(
        cls, *names: str, secret: bool = False, parse: Callable[[str], Any] | None = None
    ) -> FromEnv:
        return cls(names, secret, parse)

    def lookup(self, environ: Mapping[str, str]) -> tuple[str, str] | None:
        """(variable, text) of the first of `names` set in `environ`; None when none is."""
        for name in self.names:
            raw = (environ.get(name) or "").strip()
            if raw:
                return name, raw
        return None

    def parsed(self, text: str) -> Any:
        return text if self.parse is None else self.parse(text)

    def value(self, environ: Mapping[str, str]) -> Any:
        """The setting's value now (a secret in clear), None when no variable is set."""
        found = self.lookup(environ)
        return None if found is None else self.parsed(found[1])


def warehouse_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    value = explicit or os.environ.get("USAGE_WAREHOUSE") or DEFAULT_WAREHOUSE
    return Path(value).expanduser().resolve()


def writable_warehouse(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The warehouse directory, checked up front: created if missing, and writable.

    Checked by doing (a probe file is created and removed), so it holds for root and for
    read-only file systems alike.
    """
    path = warehouse_dir(explicit)
    if path.exists() and not path.is_dir():
        raise WarehouseError(f"warehouse {path}: is a file; expected a directory")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise WarehouseError(f"warehouse {path}: {existing} is a file; expected a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable("warehouse", path, exc) from None
    check_writable(path)
    return path


def check_writable(path: Path, label: str = "warehouse") -> None:
    """A `WarehouseError` (one line, exit 2) naming ``path`` unless a file can be created in the
    existing directory ``path``: checked by doing (a probe file is created and removed), so it
    holds for root and for read-only file systems alike. ``label`` says what ``path`` is."""
    try:
        probe = path / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise _unwritable(label, path, exc) from None


def _unwritable(label: str, path: Path, exc: OSError) -> WarehouseError:
    return WarehouseError(
        f"{label} {path}: cannot write there ({exc.strerror}); expected a writable directory"
    )


def partitions_start() -> str:
    """First day of the first monthly partition (`USAGE_PARTITIONS_START`, YYYY-MM-01)."""
    text = os.environ.get(PARTITIONS_START_ENV, "").strip() or DEFAULT_PARTITIONS_START
    try:
        first = date.fromisoformat(text)
    except ValueError:
        raise SettingsError(
            f"{PARTITIONS_START_ENV}={text!r}: expected the first day of a month, YYYY-MM-01"
        ) from None
    if first.day != 1:
        raise SettingsError(
            f"{PARTITIONS_START_ENV}={text!r}: expected the first day of a month, YYYY-MM-01"
        )
    return first.isoformat()


DETAILS_MAX_AGE_ENV = "USAGE_DETAILS_MAX_AGE_DAYS"
DEFAULT_DETAILS_MAX_AGE_DAYS = 7


def parse_details_max_age_days(text: str) -> int:
    """`USAGE_DETAILS_MAX_AGE_DAYS`'s text as days, 0 or more (the `ubiops` resource's
    `details_max_age_days` field is read from it), or a `SettingsError` naming the variable."""
    try:
        days = int(text)
    except ValueError:
        days = -1
    if days < 0:
        raise SettingsError(
            f"{DETAILS_MAX_AGE_ENV}={text!r}: expected a whole number of days, 0 or more "
            "(0 re-reads them on every run)"
        )
    return days


RECONCILE_PER_RUN_ENV = "USAGE_RECONCILE_PER_RUN"
DEFAULT_RECONCILE_PER_RUN = 500


def parse_reconcile_per_run(text: str) -> int:
    """`USAGE_RECONCILE_PER_RUN`'s text as a number of periods, 0 or more (the `ubiops`
    resource's `reconcile_per_run` field is read from it), or a `SettingsError` naming it."""
    try:
        count = int(text)
    except ValueError:
        count = -1
    if count < 0:
        raise SettingsError(
            f"{RECONCILE_PER_RUN_ENV}={text!r}: expected a whole number of periods, 0 or more"
        )
    return count


def reconcile_limit(configured: int | None, daily_refresh: bool) -> int:
    """Older closed periods (closed before the previous month) a run confirms with the API at
    most: the configured number when set, else 500 in a backfill and 0 in a daily refresh (which
    keeps to its request budget; periods that closed recently are always confirmed)."""
    if configured is not None:
        return configured
    return 0 if daily_refresh else DEFAULT_RECONCILE_PER_RUN


def api_host(explicit: str | None = None) -> str:
    """The API host: `explicit`, else `UBIOPS_API_HOST`, else the real API; validated."""
    return checked_host(explicit or os.environ.get("UBIOPS_API_HOST") or DEFAULT_HOST)


def checked_host(host: str) -> str:
    """`host` without a trailing slash, or a `SettingsError` saying what is wrong with it."""
    host = host.strip().rstrip("/")
    parts = urlsplit(host)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"UBIOPS_API_HOST={host!r}: expected an http(s) URL")
    try:
        parts.port  # noqa: B018 - validates the port number
    except ValueError:
        raise SettingsError(f"UBIOPS_API_HOST={host!r}: the port is not a number") from None
    return host


def api_token(explicit: str | None = None) -> str:
    """The API token: `explicit`, else `UBIOPS_API_TOKEN`; a `SettingsError` when neither."""
    return checked_token(explicit or os.environ.get("UBIOPS_API_TOKEN"))


def checked_token(token: str | None) -> str:
    """`token`, or a `SettingsError` (that never echoes it) when it is missing or blank."""
    if not token or not token.strip():
        raise SettingsError("UBIOPS_API_TOKEN is not set: expected `Token <key>` or a bare key")
    return token


def dagster_home(warehouse: Path, explicit: Path | None = None) -> Path:
    """The Dagster instance directory (`explicit`, else `DAGSTER_HOME`, else `<warehouse>/dagster`),
    created with a local `dagster.yaml` when it has none."""
    chosen = explicit or os.environ.get("DAGSTER_HOME") or warehouse / "dagster"
    home = Path(chosen).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DEFAULT_INSTANCE_CONFIG)
    return home


DEFAULT_INSTANCE_CONFIG = """\
# Written by usage-etl for a local instance: run history in SQLite files next to this one.
# For production (PostgreSQL storage, queued runs, a writer pool) see deploy/dagster.yaml.
telemetry:
  enabled: false
"""


def should_embed_emulator() -> bool:
    """With neither a token nor a host configured, the bundled emulator stands in for the API."""
    return not os.environ.get("UBIOPS_API_TOKEN") and not os.environ.get("UBIOPS_API_HOST")
