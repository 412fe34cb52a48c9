"""Dagster resources: the UbiOps API client factory and the warehouse location.

Secrets are not part of run configuration: the token is read from `UBIOPS_API_TOKEN` when a
client is made, so it never shows in the Dagster UI, run config or event metadata.
"""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource, InitResourceContext
from pydantic import Field

from pipelines import settings
from pipelines.ubiops_client import UbiOpsClient


class UbiOpsApi(ConfigurableResource):
    """Makes `UbiOpsClient`s for the configured host (`UBIOPS_API_HOST` by default)."""

    host: str | None = Field(default=None, description="API base URL; default UBIOPS_API_HOST.")
    max_concurrency: int = Field(default=16, description="Requests in flight at most.")
    max_retries: int = Field(default=8, description="Retries of a transient failure or 429.")
    timeout_seconds: float = Field(default=60.0, description="Timeout of every request.")

    def client(self) -> UbiOpsClient:
        return UbiOpsClient(
            settings.api_host(self.host),
            settings.api_token(),
            max_concurrency=self.max_concurrency,
            timeout=self.timeout_seconds,
            max_retries=self.max_retries,
        )


class Warehouse(ConfigurableResource):
    """The warehouse directory (`USAGE_WAREHOUSE`, default `./data`).

    In lake mode (`USAGE_LAKE_CATALOG` and `USAGE_LAKE_DATA` set) the directory is this
    writer's working copy of the shared lake: when a run starts, the slices other writers
    committed since are fetched into it (see `warehouse/lake_sync.py`)."""

    path: str | None = Field(default=None, description="Warehouse directory.")

    @property
    def root(self) -> Path:
        return settings.warehouse_dir(self.path)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        from warehouse.files import writer_lock
        from warehouse.lake import LakeConfig
        from warehouse.lake_sync import sync_down

        config = LakeConfig.from_env()
        if config is None:
            return
        with writer_lock(self.root):
            report = sync_down(self.root, config)
        if context.log is not None:
            context.log.info(f"lake: {report.line()}")
