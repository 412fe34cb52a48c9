"""The code location loads from the `pipelines` package alone: its defs folder is found through
`pipelines/dg.toml` (shipped in the wheel), which must say what `[tool.dg]` in pyproject.toml
says. Importing the definitions from an installed wheel outside the repository takes a fresh
environment and a Dagster import (too slow for the suite): docs/testing.md gives the check."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_packaged_dg_settings_match_pyproject() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dg"]
    packaged = tomllib.loads((REPO / "pipelines" / "dg.toml").read_text())
    assert packaged["directory_type"] == pyproject["directory_type"] == "project"
    assert packaged["project"] == pyproject["project"]
