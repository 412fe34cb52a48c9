"""Where the pipeline's settings come from: command-line values, then environment, then defaults.

Environment contract (see DESIGN.md and the README):
- `UBIOPS_API_TOKEN`: `Token xxx` or bare `xxx` (secret: never logged);
- `UBIOPS_API_HOST`: default `https://api.ubiops.com/v2.1`;
- `USAGE_WAREHOUSE`: the warehouse directory, default `./data`;
- `DAGSTER_HOME`: the Dagster instance, default `<warehouse>/dagster`;
- `USAGE_QUOTAS`: the quota/alert configuration file.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

DEFAULT_HOST = "https://api.ubiops.com/v2.1"
DEFAULT_WAREHOUSE = "./data"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


def warehouse_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    value = explicit or os.environ.get("USAGE_WAREHOUSE") or DEFAULT_WAREHOUSE
    return Path(value).expanduser().resolve()


def api_host(explicit: str | None = None) -> str:
    host = (explicit or os.environ.get("UBIOPS_API_HOST") or DEFAULT_HOST).strip().rstrip("/")
    if not host.startswith(("http://", "https://")):
        raise SettingsError(f"UBIOPS_API_HOST={host!r}: expected an http(s) URL")
    return host


def api_token(explicit: str | None = None) -> str:
    token = explicit or os.environ.get("UBIOPS_API_TOKEN")
    if not token or not token.strip():
        raise SettingsError("UBIOPS_API_TOKEN is not set: expected `Token <key>` or a bare key")
    return token


def dagster_home(warehouse: Path) -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or warehouse / "dagster").expanduser().resolve()
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


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore them exactly."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
