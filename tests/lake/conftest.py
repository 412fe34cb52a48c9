"""Fixtures for the shared-lake tests: a real PostgreSQL catalog and a real S3 server on loopback.

One PostgreSQL cluster (the session's `postgres_server`, shared with the Dagster-instance tests)
and one S3 server serve the session (per xdist worker); each test gets an empty catalog database
and an empty bucket of its own, and the `USAGE_LAKE_*` / AWS variables naming them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.services.postgres import Postgres, fresh_database
from tests.services.s3 import S3Server, s3_server
from warehouse.lake import LakeConfig


@pytest.fixture(scope="session")
def lake_postgres(postgres_server: Postgres) -> Postgres:
    """The session's PostgreSQL cluster (tests/conftest.py): catalogs are databases on it."""
    return postgres_server


@pytest.fixture(scope="session")
def lake_s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@dataclass(frozen=True)
class Lake:
    """An empty lake: its environment variables, its parsed configuration, its parts."""

    env: dict[str, str]
    config: LakeConfig
    postgres: Postgres
    s3: S3Server
    bucket: str


@pytest.fixture
def lake(lake_postgres: Postgres, lake_s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> Lake:
    database = fresh_database(lake_postgres, "lake")
    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    lake_s3.create_bucket(bucket)
    env = {
        "USAGE_LAKE_CATALOG": (
            f"postgresql://{database.user}:{database.password}@{database.host}:"
            f"{database.port}/{database.database}"
        ),
        "USAGE_LAKE_DATA": f"s3://{bucket}/usage",
        **lake_s3.env(),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    config = LakeConfig.from_env(env)
    assert config is not None
    return Lake(env, config, database, lake_s3, bucket)
