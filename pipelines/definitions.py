"""The Dagster code location: assets, checks, the job, the schedule, the sensor and the resources.

Loaded the same way by `dg` (`[tool.dg]` in pyproject.toml: `dg dev`, `dg check defs`,
`dg list defs`, `dg launch`), by `dagster dev -w workspace.yaml` and by `usage-etl run`, so all
three show and run exactly the same graph.

Assets and their checks are found by loading the `assets` package (every module in it), not from a
hand-kept list; the partitioned credit-usage assets get a single-run backfill policy, so a backfill
of a month range is one run that pulls the range (and replaces its slices) in one go. Anything in
the `dg` defs folder (`pipelines/defs/`) is merged in. Every job runs in one process (the assets
share the warehouse writer lock and gain nothing from a process per step), including the
implicit asset job behind `dg launch --assets ...` and the UI's "Materialize".

The resources (assets/resources.py) are built from the environment when the code location
loads: plain settings as values, secrets as `EnvVar`s resolved only inside a run. `usage-etl run`
executes the same job with its flags as resource overrides.
"""

from __future__ import annotations

from pathlib import Path

from dagster import (
    AssetSelection,
    BackfillPolicy,
    Definitions,
    define_asset_job,
    in_process_executor,
    load_asset_checks_from_package_module,
    load_assets_from_package_module,
    load_from_defs_folder,
)

import assets as asset_package
import pipelines.defs as defs_package
from assets.resources import resources_from_env
from pipelines.console import short_console_logger
from pipelines.schedules import daily_refresh_schedule
from pipelines.sensors import usage_etl_failure_notifier

ALL_ASSETS = load_assets_from_package_module(
    asset_package, backfill_policy=BackfillPolicy.single_run()
)
ALL_CHECKS = load_asset_checks_from_package_module(asset_package)


def _defs_folder(folder: Path) -> Definitions:
    """What the defs folder holds. Its project settings are `pipelines/dg.toml`, inside the
    package, so this loads the same from the source tree and from an installed wheel (no
    pyproject.toml there). A folder holding only its `__init__.py` is not loaded: Dagster would
    still build its component registry (~0.3 s of CPU in every process that loads these
    definitions: `usage-etl run`, `dg`, code servers) to find nothing."""
    if all(p.name in {"__init__.py", "__pycache__"} for p in folder.iterdir()):
        return Definitions()
    return load_from_defs_folder(path_within_project=folder)


usage_etl_job = define_asset_job(
    "usage_etl",
    selection=AssetSelection.all(),
    executor_def=in_process_executor,
    description="Pull everything the Organizations API offers about usage, then publish.",
)

defs = Definitions.merge(
    Definitions(
        assets=ALL_ASSETS,
        asset_checks=ALL_CHECKS,
        jobs=[usage_etl_job],
        schedules=[daily_refresh_schedule(usage_etl_job)],
        sensors=[usage_etl_failure_notifier],
        resources=resources_from_env(),
        loggers={"console": short_console_logger},
        executor=in_process_executor,
    ),
    _defs_folder(Path(defs_package.__file__).parent),
)
