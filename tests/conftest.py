"""Fixtures every test folder shares (helpers the fixtures use live in `tests/services/`).

- settings applied before any test module imports the Dagster definitions: the tests' data reach
  further back than a deployment's default first partition (the report tests build 24 months),
  and `USAGE_PARTITIONS_START` is read when the definitions load, so it is set here, once, for
  the session and the processes it starts;
- warehouses made by real pipeline runs, built once and shared read-only: `demo_warehouse` (the
  previous and the current month) and `long_warehouse` (24 months of two organizations, one run);
  `demo_warehouse_copy` for a test that writes into one; `pipeline_after_demo_run` for a test
  about a later run. Under pytest-xdist the workers share one build (a file lock in the
  session's common temporary directory), so the suite pays for each build once. The builds a
  session's tests need start with the session, each in a process of its own
  (`shared_builds_started`), so they run while the first long tests do and no worker waits;
- `pipeline` and `emulator_env`: a loopback emulator and an isolated warehouse for one test;
- `postgres_server` / `postgres`: one PostgreSQL cluster for the session, a database per test;
- `clock`: a fake monotonic clock and `asyncio.sleep` for unit tests of the client and pacer;
- where the session's temporary directories live: a RAM file system (`/dev/shm`) when the
  machine has one with room and `TMPDIR` does not choose otherwise (`pytest_configure`);
- the order tests start in: the long end-to-end tests first (`pytest_collection_modifyitems`),
  so that under pytest-xdist no worker starts a two-minute test while the other runs out of work.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("USAGE_PARTITIONS_START", "2024-01-01")  # before anything loads Dagster

import pytest
from filelock import FileLock

from tests.services.clock import FakeClock
from tests.services.demo_run import BUILDS, DemoBuild, copy_demo_run, read_demo_build
from tests.services.emulator import EmulatorEnv, Pipeline, default_range, start_emulator
from tests.services.postgres import Postgres, fresh_database, postgres_cluster

# ---- temporary directories in memory ----------------------------------------------------------

REPO = Path(__file__).resolve().parent.parent
RAM_TEMP = Path("/dev/shm")
RAM_TEMP_MIN_FREE = 4 * 1024**3  # the suite's warehouses, Dagster homes and clusters fit in this


def pytest_configure(config: pytest.Config) -> None:
    """Put `tmp_path` and the shared builds on a RAM file system when there is one with room
    and `TMPDIR` is unset. Every run commits SQLite (Dagster's event log), DuckDB and Parquet
    files with fsync; on a disk those waits are most of a small run's time and leave the CPU
    idle. Nothing a test proves depends on the medium: the crash tests kill processes, which
    leaves written pages in place on any file system."""
    if os.environ.get("TMPDIR") or not RAM_TEMP.is_dir() or not os.access(RAM_TEMP, os.W_OK):
        return
    stats = os.statvfs(RAM_TEMP)
    if stats.f_bavail * stats.f_frsize >= RAM_TEMP_MIN_FREE:
        tempfile.tempdir = str(RAM_TEMP)  # read by pytest when it makes the session's basetemp


# ---- the longest tests start first ---------------------------------------------------------

# Fixtures whose tests are the suite's longest (real processes, real runs, servers), heaviest
# first. Tests are otherwise kept in collection order (a stable sort), so a module's tests stay
# together and share their module-scoped fixtures.
LONG_TEST_FIXTURES = (
    ("team", 4),  # two hosts' CLI runs on a shared lake
    ("dagster_dev", 4),  # a `dg dev` webserver and daemon
    ("long_warehouse", 4),  # the 24-month warehouse
    ("lake", 3),
    ("postgres", 3),
    ("pipeline", 2),
    ("pipeline_after_demo_run", 2),
    ("emulator_env", 2),
    ("demo_warehouse_copy", 1),
)


def start_weight(item: pytest.Item) -> int:
    """How early `item` should start: the weight of its heaviest fixture (or 0); a test marked
    `pytest.mark.long` (a long test without one of these fixtures) weighs 4."""
    names = set(getattr(item, "fixturenames", ()))
    weights = [w for name, w in LONG_TEST_FIXTURES if name in names]
    if item.get_closest_marker("long") is not None:
        weights.append(4)
    return max(weights, default=0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: -start_weight(item))
    if getattr(config.option, "loadgroup", False):  # an xdist worker, `--dist loadgroup`
        for item in items:
            keep_xdist_group(item)


def keep_xdist_group(item: pytest.Item) -> None:
    """Give `item` the `@group` node id suffix `--dist loadgroup` schedules by.

    pytest-xdist 3.8 writes it into `item._nodeid`, which pytest 9.2 no longer reads (it keeps
    the id in `item._id`): without this the tests of one `xdist_group` are spread over the
    workers and each builds the group's module fixtures (pytest-xdist issue #1386)."""
    marks = list(item.iter_markers("xdist_group"))
    if not marks or "@" in item.nodeid.rpartition("]")[2] or not hasattr(item, "_id"):
        return
    from _pytest.nodeid import NodeId

    names = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in marks})
    item._id = NodeId.parse(f"{item.nodeid}@{'_'.join(names)}")


# ---- warehouses built once per session -----------------------------------------------------


def shared_root(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    """Where the session's build `name` lives: in the directory all xdist workers share."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the directory all workers' temporary directories share
    return base / f"shared-{name}"


def shared_build(root: Path, name: str, env: Mapping[str, str]) -> Path:
    """The build `name` (tests/services/demo_run.py) made once for the whole session (all xdist
    workers) in `root`, by a process of its own with the environment `env`; returns `root`.

    The lock and the marker file: the first to ask builds, the others wait for it and reuse the
    result; a failed build leaves no marker, so every worker reports the failure (with the end
    of the build's output).
    """
    done = root / "BUILT"
    with FileLock(str(root) + ".lock"):
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            log = root.with_suffix(".log")
            with log.open("wb") as out:
                built = subprocess.run(
                    [sys.executable, "-m", "tests.services.demo_run", name, str(root)],
                    cwd=REPO,
                    env=dict(env),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=False,
                )
            if built.returncode != 0:
                tail = log.read_text(errors="replace")[-4000:]
                raise RuntimeError(
                    f"the shared {name} build failed (exit {built.returncode}):\n{tail}"
                )
            done.touch()
    return root


@pytest.fixture(scope="session", autouse=True)
def shared_builds_started(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Future[Path]]:
    """The session's shared builds that its tests need, started when the session starts (in
    the background, with the session's environment), so that no worker sits waiting for one
    when its first test that needs it comes up."""
    wanted = {
        name
        for name, (fixture, _) in BUILDS.items()
        if any(fixture in getattr(item, "fixturenames", ()) for item in request.session.items)
    }
    env = dict(os.environ)
    pool = ThreadPoolExecutor(max_workers=max(len(wanted), 1), thread_name_prefix="shared-build")
    started = {
        name: pool.submit(shared_build, shared_root(tmp_path_factory, name), name, env)
        for name in sorted(wanted)
    }
    pool.shutdown(wait=False)
    return started


def shared(
    started: dict[str, Future[Path]], tmp_path_factory: pytest.TempPathFactory, name: str
) -> Path:
    """The root of the build `name`, once built (by the session's start, else now)."""
    if name in started:
        return started[name].result()
    return shared_build(shared_root(tmp_path_factory, name), name, os.environ)


@pytest.fixture(scope="session")
def demo_build(
    shared_builds_started: dict[str, Future[Path]], tmp_path_factory: pytest.TempPathFactory
) -> DemoBuild:
    """Two months (previous + current) of the emulator's demo organizations: one real run of
    the whole pipeline, shared by every test that only reads its result."""
    return read_demo_build(shared(shared_builds_started, tmp_path_factory, "demo"))


@pytest.fixture(scope="session")
def demo_warehouse(demo_build: DemoBuild) -> Path:
    """The demo run's warehouse, read-only (use `demo_warehouse_copy` to write)."""
    return demo_build.warehouse


@pytest.fixture(scope="session")
def long_warehouse(
    shared_builds_started: dict[str, Future[Path]], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """24 months of two demo organizations in one run (`build_long`), built once, read-only."""
    return shared(shared_builds_started, tmp_path_factory, "long") / "warehouse"


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
    warehouse = copy_demo_run(demo_build, tmp_path)
    with start_emulator(now=demo_build.now) as server:
        monkeypatch.setenv("UBIOPS_API_HOST", server.base_url)
        monkeypatch.setenv("UBIOPS_API_TOKEN", server.token)
        monkeypatch.setenv("USAGE_WAREHOUSE", str(warehouse))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
        start, end = default_range(demo_build.now.date())
        yield Pipeline(warehouse, server, start, end)


@pytest.fixture
def emulator_env(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[EmulatorEnv]:
    """The same, as environment variables (for `dg`, Dagster instances and subprocesses);
    `@pytest.mark.emulator(organizations=N)` serves N organizations instead of the demo set."""
    marker = request.node.get_closest_marker("emulator")
    with start_emulator(**(marker.kwargs if marker else {})) as server:
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
