"""Fixtures for operations tests: a PostgreSQL server for the session, an emulator environment.

The PostgreSQL machinery itself lives in `tests/services/postgres.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from pipelines.analytics.periods import shift_month
from tests.pipeline.conftest import start_emulator
from tests.services.postgres import (
    Postgres,
    free_port,
    fresh_database,
    missing,
    postgres_cluster,
)

REPO = Path(__file__).resolve().parents[2]
__all__ = ["Postgres", "free_port", "missing"]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """A PostgreSQL cluster for the test session, stopped and deleted afterwards."""
    with postgres_cluster() as server:
        yield server


@pytest.fixture
def postgres(postgres_server: Postgres) -> Postgres:
    """An empty database of its own for each test, on the session's server."""
    return fresh_database(postgres_server, "dagster")


@dataclass
class EmulatorEnv:
    """The emulator on loopback and an isolated warehouse, exported through the environment."""

    warehouse: Path
    dagster_home: Path
    env: dict[str, str]
    start: date
    end: date


@pytest.fixture
def emulator_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorEnv]:
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
        today = datetime.now(UTC).date()
        py, pm = shift_month(today.year, today.month, -1)
        yield EmulatorEnv(tmp_path / "warehouse", tmp_path / "dagster", env, date(py, pm, 1), today)
