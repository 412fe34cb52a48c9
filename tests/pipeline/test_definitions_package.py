"""The code location loads from the `pipelines` package alone: its defs folder is found through
`pipelines/dg.toml` (shipped in the wheel), which must say what `[tool.dg]` in pyproject.toml
says. Importing the definitions from an installed wheel outside the repository takes a fresh
environment and a Dagster import (too slow for the suite): docs/testing.md gives the check."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_the_packaged_dg_settings_match_pyproject() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dg"]
    packaged = tomllib.loads((REPO / "pipelines" / "dg.toml").read_text())
    assert packaged["directory_type"] == pyproject["directory_type"] == "project"
    assert packaged["project"] == pyproject["project"]


def test_the_defs_folder_is_loaded_once_it_holds_definitions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import dagster as dg

    import pipelines.definitions as definitions

    loaded: list[Path] = []

    def load(*, path_within_project: Path) -> dg.Definitions:
        loaded.append(path_within_project)
        return dg.Definitions(assets=[])

    monkeypatch.setattr(definitions, "load_from_defs_folder", load)
    folder = tmp_path / "defs"
    (folder / "__pycache__").mkdir(parents=True)
    (folder / "__init__.py").write_text('"""Nothing yet."""\n')
    definitions._defs_folder(folder)
    assert loaded == [], "a folder holding only its __init__.py is not loaded"
    (folder / "scaffolded").mkdir()  # what `dg scaffold defs ...` adds
    definitions._defs_folder(folder)
    assert loaded == [folder]
