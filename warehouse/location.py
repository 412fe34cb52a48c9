"""Where the warehouse is: its directory and the shared lake, resolved without Dagster.

`ENVIRONMENT` declares, once, the warehouse's settings: each field's name and the environment
variable(s) behind it (`USAGE_WAREHOUSE`, `USAGE_LAKE_CATALOG`, `USAGE_LAKE_DATA`,
`USAGE_LAKE_WRITER`, the standard AWS variables), secrets marked. The Dagster `warehouse`
resource (assets/resources.py) has exactly these fields and reads this table; the commands that
only read the warehouse (`query`, `dictionary`, `history`, `report`, ...) build a
`WarehouseLocation` from the environment and their flags directly, so resolving where the
warehouse is never imports Dagster.

Secrets (the catalog's password, the S3 keys) are held in clear only inside `lake`, which is
kept out of `repr`, and reach nothing but `LakeConfig` (warehouse/lake.py), which scrubs them
from its messages and shows only `redacted()`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from common import settings
from common.settings import FromEnv

if TYPE_CHECKING:
    from warehouse.lake import LakeConfig

PATH = "path"
ENVIRONMENT: Mapping[str, FromEnv] = {
    PATH: FromEnv.var("USAGE_WAREHOUSE"),
    "lake_catalog": FromEnv.var("USAGE_LAKE_CATALOG", secret=True),
    "lake_data": FromEnv.var("USAGE_LAKE_DATA"),
    "lake_writer": FromEnv.var("USAGE_LAKE_WRITER"),
    "s3_endpoint": FromEnv.var("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"),
    "s3_key_id": FromEnv.var("AWS_ACCESS_KEY_ID", secret=True),
    "s3_secret": FromEnv.var("AWS_SECRET_ACCESS_KEY", secret=True),
    "s3_region": FromEnv.var("AWS_REGION", "AWS_DEFAULT_REGION"),
    "s3_session_token": FromEnv.var("AWS_SESSION_TOKEN", secret=True),
}


@dataclass(frozen=True)
class WarehouseLocation:
    """The warehouse directory (`path`, default `./data`) and every other `ENVIRONMENT` setting
    that is set, by field name (`lake`: secrets in clear, so never shown)."""

    path: str = settings.DEFAULT_WAREHOUSE
    lake: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, values: Mapping[str, str | None]) -> WarehouseLocation:
        """From field values (`ENVIRONMENT`'s names); a None (or, but for `path`, blank) value
        is unset."""
        unknown = sorted(set(values) - set(ENVIRONMENT))
        if unknown:
            raise TypeError(f"not warehouse settings: {', '.join(unknown)}")
        path = values.get(PATH)
        lake = {name: value for name, value in values.items() if name != PATH and value}
        return cls(settings.DEFAULT_WAREHOUSE if path is None else path, lake)

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: str | None
    ) -> WarehouseLocation:
        """From `environ` (default `os.environ`); non-None `overrides` (fields) win."""
        env = os.environ if environ is None else environ
        values = {name: source.value(env) for name, source in ENVIRONMENT.items()}
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls.of(values)

    @property
    def root(self) -> Path:
        return settings.warehouse_dir(self.path)

    def lake_config(self) -> LakeConfig | None:
        """The shared lake (`warehouse/lake.py`), None without one; errors name the variable."""
        if not self.lake.keys() & {"lake_catalog", "lake_data"}:
            return None  # no lake (what `LakeConfig.from_env` says), without importing pandas
        from warehouse.lake import LakeConfig

        return LakeConfig.from_env(
            {ENVIRONMENT[name].names[0]: value for name, value in self.lake.items()}
        )
