"""Fixtures every test folder shares (helpers the fixtures use live in `tests/services/`).

- settings applied before any test module imports the Dagster definitions: the tests' data reach
  further back than a deployment's default first partition (the report tests build 24 months),
  and `USAGE_PARTITIONS_START` is read when the definitions load, so it is set here, once, for
  the session and the processes it starts;
- warehouses made by real pipeline runs, built once and shared read-only: `demo_warehouse` (the
  previous and the current month) and `long_warehouse` (24 months of two organizations, one run);
  `demo_warehouse_copy` for a test that writes into one; `pipeline_after_demo_run` for a test
  about a later run. Under pytest-xdist the workers share one build (a file lock in the
  session's common temporary directory), so the suite pays for each build once;
- `pipeline` and `emulator_env`: a loopback emulator and an isolated warehouse for one test;
- `postgres_server` / `postgres`: one PostgreSQL cluster for the session, a database per test;
- `clock`: a fake monotonic clock and `asyncio.sleep` for unit tests of the client and pacer;
- the order tests start in: the long end-to-end tests first (`pytest_collection_modifyitems`),
  so that under pytest-xdist no worker starts a two-minute test while the other runs out of work.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("USAGE_PARTITIONS_START", "2024-01-01")  # before anything loads Dagster

import pytest
from filelock import FileLock

from tests.services.clock import FakeClock
from tests.services.demo_run import DemoBuild, copy_demo_run
from tests.services.emulator import EmulatorEnv, Pipeline, default_range, start_emulator
from tests.services.postgres import Postgres, fresh_database, postgres_cluster

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: -start_weight(item))


# ---- warehouses built once per session -----------------------------------------------------


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


LONG_MONTHS = 24
# The first two demo organizations: what the 24-month report tests check (weekly bars, legible
# axes, a page per organization) depends on the length of the history, not on their number.
LONG_ORGANIZATIONS = 2


def build_long_warehouse(root: Path) -> None:
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


@pytest.fixture(scope="session")
def long_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 months of two demo organizations (`build_long_warehouse`), built once, read-only."""
    return shared_build(tmp_path_factory, "long", build_long_warehouse) / "warehouse"


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
