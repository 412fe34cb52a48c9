"""The session's demo run (built once by the `demo_build` fixture in tests/conftest.py): where
it is, the emulator clock it loaded from, and a private copy for a test about a later run."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class DemoBuild:
    """The session's demo run: its directory (`warehouse/`, `dagster/`) and the emulator clock
    it loaded from (seed 11; the same seed and clock make an emulator in the same state)."""

    root: Path
    now: datetime

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse"


def copy_demo_run(demo_build: DemoBuild, tmp_path: Path) -> Path:
    """A private copy of the demo run in `tmp_path` (`warehouse/`, `dagster/`); returns the
    warehouse. An emulator started with `now=demo_build.now` is in the state it loaded from."""
    warehouse = tmp_path / "warehouse"
    shutil.copytree(demo_build.warehouse, warehouse, ignore=shutil.ignore_patterns("*.lock"))
    shutil.copytree(demo_build.root / "dagster", tmp_path / "dagster")
    return warehouse
