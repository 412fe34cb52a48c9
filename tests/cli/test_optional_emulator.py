"""The emulator is an optional extra: without starlette/uvicorn, the commands that need it say
in one line what to install (exit 2, nothing started), and the pipeline still imports.

That the code location (what the Dockerfile serves) never imports the emulator's packages is
checked on a whole `usage-etl run` subprocess, from its import profile
(`test_cli_run_output.py::test_cli_run_prints_short_lines_and_a_summary`): an interpreter of
its own here only repeated that process's imports."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipelines.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def without_emulator_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if `starlette` and `uvicorn` were not installed (find_spec and import both fail)."""
    for name in ("starlette", "uvicorn"):
        monkeypatch.setitem(sys.modules, name, None)


def test_emulator_command_names_what_to_install(without_emulator_packages, capsys):
    assert main(["emulator", "--port", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "starlette, uvicorn missing" in err
    assert "pip install 'ubiops-usage[emulator]'" in err
    assert "./dev.sh sync" in err


def test_default_run_without_api_host_names_what_to_install(
    without_emulator_packages, monkeypatch, tmp_path, capsys
):
    for name in ("UBIOPS_API_HOST", "UBIOPS_API_TOKEN", "USAGE_LAKE_CATALOG", "USAGE_LAKE_DATA"):
        monkeypatch.delenv(name, raising=False)
    warehouse = tmp_path / "wh"
    assert main(["run", "--warehouse", str(warehouse)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("usage-etl run: UBIOPS_API_HOST and UBIOPS_API_TOKEN are not set")
    assert "ubiops-usage[emulator]" in err[-1]
    assert not (warehouse / "parquet").exists()  # nothing was loaded


def test_emulator_is_an_extra_not_a_runtime_dependency():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    assert "starlette" not in runtime and "uvicorn" not in runtime
    extra = " ".join(project["optional-dependencies"]["emulator"])
    assert "starlette" in extra and "uvicorn" in extra
