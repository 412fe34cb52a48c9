"""The session's shared runs (built once by tests/conftest.py): the demo run (the previous and
the current month) and the 24-month run, what each builds and how a test reaches it.

Each build is one real run of the whole pipeline against a loopback emulator, made in a process
of its own (`python -m tests.services.demo_run NAME ROOT`): it starts when the session does, with
the session's environment, and no test's environment changes can reach it.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DemoBuild:
    """The session's demo run: its directory (`warehouse/`, `dagster/`) and the emulator clock
    it loaded from (seed 11; the same seed and clock make an emulator in the same state)."""

    root: Path
    now: datetime

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse"

    @property
    def summary(self) -> dict[str, Any]:
        """What the run's summary said (`RECORDED_SUMMARY` fields), for the tests of a first
        run: the demo run is one, so they check it instead of repeating it."""
        return json.loads((self.root / "SUMMARY.json").read_text())


def copy_demo_run(demo_build: DemoBuild, tmp_path: Path) -> Path:
    """A private copy of the demo run in `tmp_path` (`warehouse/`, `dagster/`); returns the
    warehouse. An emulator started with `now=demo_build.now` is in the state it loaded from."""
    warehouse = tmp_path / "warehouse"
    shutil.copytree(demo_build.warehouse, warehouse, ignore=shutil.ignore_patterns("*.lock"))
    shutil.copytree(demo_build.root / "dagster", tmp_path / "dagster")
    return warehouse


# the run summary's fields a test of a first run reads (`DemoBuild.summary`)
RECORDED_SUMMARY = ("success", "failed_checks", "blocked", "organizations", "requests", "error")


def build_demo(root: Path) -> None:
    """The demo run in `root` (`warehouse/`, `dagster/`), its emulator clock in `root/NOW` and
    what its run summary said in `root/SUMMARY.json`."""
    import pipelines.commands.run_cmd as run_cmd
    from pipelines.demo import build_demo_warehouse

    summaries: list[run_cmd.RunSummary] = []
    execute = run_cmd.execute

    def recorded(*args: Any, **kwargs: Any) -> run_cmd.RunSummary:
        summaries.append(execute(*args, **kwargs))
        return summaries[-1]

    run_cmd.execute = recorded  # this build's own process: the demo's one run, recorded
    now = datetime.now(UTC).replace(microsecond=0)
    build_demo_warehouse(root, now=now)
    [summary] = summaries
    (root / "SUMMARY.json").write_text(
        json.dumps({name: getattr(summary, name) for name in RECORDED_SUMMARY})
    )
    (root / "NOW").write_text(now.isoformat())


def read_demo_build(root: Path) -> DemoBuild:
    return DemoBuild(root, datetime.fromisoformat((root / "NOW").read_text()))


LONG_MONTHS = 24
# The first two demo organizations: what the 24-month report tests check (weekly bars, legible
# axes, a page per organization) depends on the length of the history, not on their number.
LONG_ORGANIZATIONS = 2


def build_long(root: Path) -> None:
    """`LONG_MONTHS` calendar months (this one included) of `LONG_ORGANIZATIONS` demo
    organizations in `root/warehouse`: one real run of the whole pipeline against an emulator
    that serves a month more history than that (its default 15 months would need two runs)."""
    from common.periods import shift_month
    from emulator.server import EmulatorConfig, EmulatorServer
    from pipelines.commands.run_cmd import execute

    now = datetime.now(UTC).replace(microsecond=0)
    today = now.date()
    year, month = shift_month(today.year, today.month, -(LONG_MONTHS - 1))
    config = EmulatorConfig(
        seed=11,
        rate_limit_per_minute=0,
        now=now,
        history_months=LONG_MONTHS + 1,
        organizations=LONG_ORGANIZATIONS,
    )
    with EmulatorServer(config, host="127.0.0.1", port=0) as server:
        summary = execute(
            date(year, month, 1),
            today,
            log_level="WARNING",
            overrides={
                "ubiops": {"host": server.base_url, "token": server.token},
                "warehouse": {"path": str(root / "warehouse")},
            },
            dagster_home=root / "dagster",
        )
    if not summary.success:
        raise RuntimeError("the 24-month run failed: " + "; ".join(summary.lines()))


# the builds by name, with the fixture a test asks for to get each (tests/conftest.py)
BUILDS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "demo": ("demo_build", build_demo),
    "long": ("long_warehouse", build_long),
}


if __name__ == "__main__":
    name, root_arg = sys.argv[1:]
    BUILDS[name][1](Path(root_arg))
