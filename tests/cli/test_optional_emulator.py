"""The emulator is an optional extra: without starlette/uvicorn, the commands that need it say
in one line what to install (exit 2, nothing started), and the pipeline still imports."""

from __future__ import annotations

import subprocess
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


def test_pipeline_definitions_import_without_the_emulator():
    """The code location (what the Dockerfile serves) never imports the emulator's packages."""
    code = (
        "import sys\n"
        "sys.modules['starlette'] = None\n"
        "sys.modules['uvicorn'] = None\n"
        "import pipelines.definitions, pipelines.cli\n"
        "print(len(pipelines.definitions.defs.resolve_asset_graph().get_all_asset_keys()))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert int(out.stdout.strip()) > 5


def test_emulator_is_an_extra_not_a_runtime_dependency():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = " ".join(project["dependencies"])
    assert "starlette" not in runtime and "uvicorn" not in runtime
    extra = " ".join(project["optional-dependencies"]["emulator"])
    assert "starlette" in extra and "uvicorn" in extra
