"""Dagster resources: every setting a run reads, as `ConfigurableResource` fields.

- `UbiOpsApi` (`ubiops`): the API host and token, and the client's limits; makes `UbiOpsClient`s.
- `Warehouse` (`warehouse`): the warehouse directory and where the shared
  lake is, if anywhere (`lake_catalog`, `lake_data`, the S3 settings).
- `Alerting` (`alerting`): the quota/alert file (rules, budgets, notification channels).
- `warehouse_io_manager`: writes the assets' rows into the `warehouse` (assets/io_manager.py).

Each resource declares, once, which environment variable backs each field (`ENVIRONMENT`, of
`common.settings.FromEnv`; the warehouse's table lives in `warehouse/location.py`, which the
commands that only read the warehouse use without Dagster).
`resources_from_env()` builds them all from the environment: plain settings become literal
defaults, secrets become `EnvVar`s, so Dagster resolves them in the run's process and the run
configuration, the job snapshot and the UI only ever hold the variable's *name*. `dg`,
`workspace.yaml` and `dagster dev` load these (pipelines/definitions.py); `usage-etl run` passes
its flags as overrides of the same fields (pipelines/commands/run_cmd.py), and the other commands
build the same resources from their flags (`Warehouse.from_env(path=..., lake_data=...)`).

Adding a setting: a field with its default on the resource, one `ENVIRONMENT` entry naming the
variable (`secret=True` for anything that must not be shown, `parse=` to check the text), and,
for a command-line flag, one override in `run_overrides` of the command
(`"warehouse": {"lake_data": args.lake_data}`). A literal value passed to a run is stored in its
job snapshot, so a secret flag reaches a run only as an `EnvVar` of a private variable held for
the run's length (`secret_flag`, used for `--lake-catalog`).

Settings that shape the definitions themselves (the first monthly partition,
`USAGE_PARTITIONS_START`) are not resources: they are read when the definitions load
(`common.settings.partitions_start`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from dagster import ConfigurableResource, EnvVar, InitResourceContext
from pydantic import Field

from assets.io_manager import WAREHOUSE_IO_MANAGER, warehouse_io_manager
from common import settings
from common.settings import FromEnv
from ubiops_api.client import UbiOpsClient
from warehouse.location import ENVIRONMENT as WAREHOUSE_ENVIRONMENT
from warehouse.location import WarehouseLocation

if TYPE_CHECKING:
    from insights.quotas import QuotaConfig
    from warehouse.lake import LakeConfig


def env_value(source: FromEnv, environ: Mapping[str, str]) -> Any:
    """A field's value from `environ`: a secret as an `EnvVar` (resolved only inside the run),
    any other setting as a literal value; None when no variable of `source` is set."""
    found = source.lookup(environ)
    if found is None:
        return None
    name, text = found
    return EnvVar(name) if source.secret else source.parsed(text)


def resolved(value: str | None) -> str | None:
    """A field's value; an `EnvVar` not yet resolved by Dagster (outside a run) is read now."""
    if isinstance(value, EnvVar):
        return value.get_value()
    return value


@contextlib.contextmanager
def secret_flag(variable: str, value: str | None) -> Iterator[EnvVar | None]:
    """A secret given on the command line, as an `EnvVar`, for the length of one in-process run.

    A resource field's value becomes a default of the job's config schema, which Dagster stores
    in the run's snapshot in the instance; an `EnvVar` is stored by its name only. So a secret
    flag (`--lake-catalog` may carry the catalog's password) is held, while the block runs, in
    a private variable of this process (`variable`, named `_USAGE_ETL_FLAG_*`, read by nothing
    but that `EnvVar`), and the variable's previous state is restored when the block ends. This
    is the one place the command line writes the environment; every other flag is a literal
    resource override. Yields None (and writes nothing) when the flag was not given."""
    if value is None:
        yield None
        return
    if not variable.startswith(FLAG_VARIABLE_PREFIX):
        raise ValueError(f"{variable}: a flag's private variable starts {FLAG_VARIABLE_PREFIX}")
    previous = os.environ.get(variable)
    os.environ[variable] = value
    try:
        yield EnvVar(variable)
    finally:
        if previous is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = previous


FLAG_VARIABLE_PREFIX = "_USAGE_ETL_FLAG_"
LAKE_CATALOG_FLAG_VARIABLE = f"{FLAG_VARIABLE_PREFIX}LAKE_CATALOG"


class EnvResource(ConfigurableResource):
    """A resource whose fields default from the environment (see `ENVIRONMENT`)."""

    ENVIRONMENT: ClassVar[Mapping[str, FromEnv]] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """The resource from `environ` (default `os.environ`); non-None `overrides` win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, source in cls.ENVIRONMENT.items():
            value = env_value(source, env)
            if value is not None:
                values[name] = value
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


class UbiOpsApi(EnvResource):
    """Makes `UbiOpsClient`s for the configured host with the configured token."""

    ENVIRONMENT: ClassVar[Mapping[str, FromEnv]] = {
        "host": FromEnv.var("UBIOPS_API_HOST"),
        "token": FromEnv.var("UBIOPS_API_TOKEN", secret=True),
        "details_max_age_days": FromEnv.var(
            settings.DETAILS_MAX_AGE_ENV, parse=settings.parse_details_max_age_days
        ),
        "reconcile_per_run": FromEnv.var(
            settings.RECONCILE_PER_RUN_ENV, parse=settings.parse_reconcile_per_run
        ),
    }

    host: str = Field(default=settings.DEFAULT_HOST, description="API base URL (UBIOPS_API_HOST).")
    token: str | None = Field(
        default=None,
        description="API token, `Token <key>` or the bare key (EnvVar UBIOPS_API_TOKEN: only the "
        "variable's name is ever stored or shown).",
    )
    max_concurrency: int = Field(
        default=8,
        description="Requests in flight at most, each on a pooled keep-alive connection.",
    )
    max_retries: int = Field(default=8, description="Retries of a transient failure or 429.")
    timeout_seconds: float = Field(default=60.0, description="Timeout of every request.")
    details_max_age_days: int = Field(
        default=settings.DEFAULT_DETAILS_MAX_AGE_DAYS,
        ge=0,
        description="Days an organization's details, members and subscription anchor go "
        "without being re-read; 0 re-reads them every run (USAGE_DETAILS_MAX_AGE_DAYS).",
    )
    reconcile_per_run: int | None = Field(
        default=None,
        ge=0,
        description="Closed periods older than the previous month confirmed with the API per run "
        "at most; unset: 500 in a backfill, 0 in a daily refresh (USAGE_RECONCILE_PER_RUN).",
    )

    def client(self) -> UbiOpsClient:
        return UbiOpsClient(
            settings.checked_host(self.host),
            settings.checked_token(resolved(self.token)),
            max_concurrency=self.max_concurrency,
            timeout=self.timeout_seconds,
            max_retries=self.max_retries,
        )


class Warehouse(EnvResource):
    """The warehouse directory (`USAGE_WAREHOUSE`, default `./data`) and the shared lake: the
    fields and variables of `warehouse/location.py` (`ENVIRONMENT`), which resolves them the
    same way for the commands that do not import Dagster.

    In lake mode (`lake_catalog` and `lake_data` set) the directory is this writer's working
    copy of the shared lake: when a run starts, the slices other writers committed since are
    fetched into it (see `warehouse/lake_sync.py`)."""

    ENVIRONMENT: ClassVar[Mapping[str, FromEnv]] = WAREHOUSE_ENVIRONMENT

    path: str = Field(default=settings.DEFAULT_WAREHOUSE, description="Warehouse directory.")
    lake_catalog: str | None = Field(
        default=None,
        repr=False,
        description="Shared lake's PostgreSQL catalog (EnvVar USAGE_LAKE_CATALOG: may hold a "
        "password); with lake_data set, the warehouse publishes to the lake.",
    )
    lake_data: str | None = Field(
        default=None, description="Shared lake's data: s3:// URL or directory (USAGE_LAKE_DATA)."
    )
    lake_writer: str | None = Field(
        default=None,
        description="This writer's name in the shared lake, the same for every run of one "
        "deployment (USAGE_LAKE_WRITER); default host:working-copy.",
    )
    s3_endpoint: str | None = Field(default=None, description="S3 endpoint (AWS_ENDPOINT_URL_S3).")
    s3_key_id: str | None = Field(default=None, description="EnvVar AWS_ACCESS_KEY_ID.")
    s3_secret: str | None = Field(default=None, description="EnvVar AWS_SECRET_ACCESS_KEY.")
    s3_region: str | None = Field(default=None, description="S3 region (AWS_REGION).")
    s3_session_token: str | None = Field(default=None, description="EnvVar AWS_SESSION_TOKEN.")

    def location(self) -> WarehouseLocation:
        """These fields, secrets resolved, as `warehouse/location.py` resolves them for the
        commands that run without Dagster."""
        return WarehouseLocation.of(
            {name: resolved(getattr(self, name)) for name in self.ENVIRONMENT}
        )

    @property
    def root(self) -> Path:
        return self.location().root

    def lake_config(self) -> LakeConfig | None:
        """The shared lake (`warehouse/lake.py`), None without one; errors name the variable."""
        return self.location().lake_config()

    def setup_for_execution(self, context: InitResourceContext) -> None:
        from warehouse.files import writer_lock
        from warehouse.lake_sync import sync_down

        config = self.lake_config()
        if config is None:
            return
        with writer_lock(self.root):
            report = sync_down(self.root, config)
        if context.log is not None:
            context.log.info(f"lake: {report.line()}")


class Alerting(EnvResource):
    """The quota/alert file: rules, budgets, routing and notification channels (`USAGE_QUOTAS`).

    Channel secrets (webhook secrets, SMTP passwords, Apprise URLs) are named in that file by
    environment variable (`secret_env`, `password_env`, `urls_env`) and read when it is loaded
    in the run, so they never enter run configuration either."""

    ENVIRONMENT: ClassVar[Mapping[str, FromEnv]] = {"quotas": FromEnv.var("USAGE_QUOTAS")}

    quotas: str | None = Field(
        default=None, description="Quota/alert YAML (USAGE_QUOTAS; default quotas.example.yaml)."
    )

    def config(self) -> QuotaConfig:
        from insights.quotas import DEFAULT_QUOTAS_PATH, load_quotas

        return load_quotas(self.quotas or DEFAULT_QUOTAS_PATH)


RESOURCES: dict[str, type[EnvResource]] = {
    "ubiops": UbiOpsApi,
    "warehouse": Warehouse,
    "alerting": Alerting,
}


def resources_from_env(
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Every resource of the code location, from the environment, with per-resource field
    `overrides` (`{"warehouse": {"path": ...}}`; None values are ignored) on top, and the
    warehouse IO manager writing into that warehouse (`assets/io_manager.py`)."""
    given = overrides or {}
    built: dict[str, Any] = {
        key: kind.from_env(environ, **given.get(key, {})) for key, kind in RESOURCES.items()
    }
    built[WAREHOUSE_IO_MANAGER] = warehouse_io_manager
    return built
