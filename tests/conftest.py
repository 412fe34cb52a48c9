"""Fixtures every test folder shares (helpers the fixtures use live in `tests/services/`).

- settings applied before any test module imports the Dagster definitions: the tests' data reach
  further back than a deployment's default first partition (the report tests build 24 months),
  and `USAGE_PARTITIONS_START` is read when the definitions load, so it is set here, once, for
  the session and the processes it starts;
- warehouses made by real pipeline runs, built once and shared read-only: `demo_warehouse` (the
  previous and the current month) and `long_warehouse` (24 months); `demo_warehouse_copy` for a
  test that writes into one; `pipeline_after_demo_run` for a test about a later run. Under
  pytest-xdist the workers share one build (a file lock in the session's common temporary
  directory), so the suite pays for each build once;
- `pipeline` and `emulator_env`: a loopback emulator and an isolated warehouse for one test;
- `postgres_server` / `postgres`: one PostgreSQL cluster for the session, a database per test;
- `clock`: a fake monotonic clock and `asyncio.sleep` for unit tests of the client and pacer.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("USAGE_PARTITIONS_START", "2024-01-01")  # before anything loads Dagster

import pytest
from filelock import FileLock

from tests.services.clock import FakeClock
from tests.services.emulator import EmulatorEnv, Pipeline, default_range, start_emulator
from tests.services.postgres import Postgres, fresh_database, postgres_cluster

# ---- warehouses built once per session -----------------------------------------------------


@dataclass(frozen=True)
class DemoBuild:
    """The session's demo run: its directory (`warehouse/`, `dagster/`) and the emulator clock
    it loaded from (seed 11; the same seed and clock make an emulator in the same state)."""

    root: Path
    now: datetime

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse"


def shared_build(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]
) -> Path:
    """`build(root)` run once for the whole session (all xdist workers), in a thread of its own;
    returns `root`.

    The thread: the pipeline calls asyncio.run(), which cannot run where a browser test keeps an
    event loop. The lock and the marker file: the first worker builds, the others wait for it
    and reuse the result; a failed build leaves no marker, so every worker reports the failure.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the directory all workers' temporary directories share
    root = base / f"shared-{name}"
    done = root / "BUILT"
    with FileLock(str(root) + ".lock"):
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            with ThreadPoolExecutor(max_workers=1) as pool:
                pool.submit(build, root).result()
            done.touch()
    return root


@pytest.fixture(scope="session")
def demo_build(tmp_path_factory: pytest.TempPathFactory) -> DemoBuild:
    """Two months (previous + current) of the emulator's demo organizations: one real run of
    the whole pipeline, shared by every test that only reads its result."""
    from pipelines.demo import build_demo_warehouse

    def build(root: Path) -> None:
        now = datetime.now(UTC).replace(microsecond=0)
        build_demo_warehouse(root, now=now)
        (root / "NOW").write_text(now.isoformat())

    root = shared_build(tmp_path_factory, "demo", build)
    return DemoBuild(root, datetime.fromisoformat((root / "NOW").read_text()))


@pytest.fixture(scope="session")
def demo_warehouse(demo_build: DemoBuild) -> Path:
    """The demo run's warehouse, read-only (use `demo_warehouse_copy` to write)."""
    return demo_build.warehouse


@pytest.fixture(scope="session")
def long_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 months of the demo organizations (two real runs: the emulator serves 15 months)."""
    from pipelines.demo import build_long_demo_warehouse

    root = shared_build(
        tmp_path_factory, "long", lambda root: build_long_demo_warehouse(root, months=24)
    )
    return root / "warehouse"


@pytest.fixture
def demo_warehouse_copy(demo_warehouse: Path, tmp_path: Path) -> Path:
    """A private copy of the demo warehouse, for a test that republishes or writes into it."""
    copy = tmp_path / "warehouse"
    shutil.copytree(demo_warehouse, copy, ignore=shutil.ignore_patterns("*.lock"))
    return copy


# ---- an emulator and a warehouse of one's own -------------------------------------------------


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    """A loopback emulator (clock frozen now) and an empty warehouse, for runs in process."""
    warehouse = tmp_path / "warehouse"
    with start_emulator() as server:
        monkeypatch.setenv("UBIOPS_API_HOST", server.base_url)
        monkeypatch.setenv("UBIOPS_API_TOKEN", server.token)
        monkeypatch.setenv("USAGE_WAREHOUSE", str(warehouse))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
        start, end = default_range(datetime.now(UTC).date())
        yield Pipeline(warehouse, server, start, end)


@pytest.fixture
def pipeline_after_demo_run(
    demo_build: DemoBuild, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Pipeline]:
    """A `pipeline` whose first run (the default range) is done: a private copy of the session's
    demo run (warehouse and Dagster home) and an emulator in the state it loaded from. For tests
    about what a later run does; the first run itself is tested in tests/pipeline."""
    warehouse = tmp_path / "warehouse"
    shutil.copytree(demo_build.warehouse, warehouse, ignore=shutil.ignore_patterns("*.lock"))
    shutil.copytree(demo_build.root / "dagster", tmp_path / "dagster")
    with start_emulator(now=demo_build.now) as server:
        monkeypatch.setenv("UBIOPS_API_HOST", server.base_url)
        monkeypatch.setenv("UBIOPS_API_TOKEN", server.token)
        monkeypatch.setenv("USAGE_WAREHOUSE", str(warehouse))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
        start, end = default_range(demo_build.now.date())
        yield Pipeline(warehouse, server, start, end)


@pytest.fixture
def emulator_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorEnv]:
    """The same, as environment variables (for `dg`, Dagster instances and subprocesses)."""
    with start_emulator() as server:
        env = {
            "UBIOPS_API_HOST": server.base_url,
            "UBIOPS_API_TOKEN": server.token,
            "USAGE_WAREHOUSE": str(tmp_path / "warehouse"),
            "DAGSTER_HOME": str(tmp_path / "dagster"),
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        (tmp_path / "dagster").mkdir()
        start, end = default_range(datetime.now(UTC).date())
        yield EmulatorEnv(tmp_path / "warehouse", tmp_path / "dagster", env, start, end)


# ---- PostgreSQL -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """A PostgreSQL cluster for the test session (per xdist worker), stopped and deleted after."""
    with postgres_cluster() as server:
        yield server


@pytest.fixture
def postgres(postgres_server: Postgres) -> Postgres:
    """An empty database of its own for each test, on the session's server."""
    return fresh_database(postgres_server, "dagster")


# ---- a fake clock for unit tests ---------------------------------------------------------------


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A `FakeClock` installed for the pacer's clock and every `asyncio.sleep`."""
    from ubiops_api import pacing

    fake = FakeClock()
    monkeypatch.setattr(pacing, "time", SimpleNamespace(monotonic=fake.monotonic))
    monkeypatch.setattr(asyncio, "sleep", fake.sleep)
    return fake
