"""`deploy/dagster.yaml` against a real PostgreSQL: a pipeline run lands in its storage.

The production instance file is copied unchanged into a temporary `DAGSTER_HOME`; only the
`DAGSTER_PG_*` variables point it at the throwaway server. The whole job runs against the emulator
through that instance, then the run, its materializations and the writer pool are read back both
through Dagster and with plain SQL, and a later run adds to the same history.

`dagster instance concurrency set/get` run through the `dagster` CLI's entry point in the test's
process, with the same arguments and environment (a new interpreter would only add seconds of
imports). `dagster schedule start -w workspace.yaml` stays a process of its own: it starts a code
server for the workspace, which a finished command process leaves to exit and be reaped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import psycopg2.extensions
import pytest
import yaml
from click.testing import CliRunner, Result
from dagster import AssetKey

from pipelines.commands.run_cmd import execute
from pipelines.definitions import defs
from tests.services.cli import REPO, environment
from tests.services.emulator import EmulatorEnv
from tests.services.postgres import Postgres

DEPLOY_CONFIG = REPO / "deploy" / "dagster.yaml"
DAGSTER_CLI = Path(sys.executable).with_name("dagster")


@pytest.fixture
def production_home(
    postgres: Postgres, emulator_env: EmulatorEnv, monkeypatch: pytest.MonkeyPatch
) -> EmulatorEnv:
    shutil.copy(DEPLOY_CONFIG, emulator_env.dagster_home / "dagster.yaml")
    for key, value in postgres.env().items():
        monkeypatch.setenv(key, value)
        emulator_env.env[key] = value
    return emulator_env


def test_deploy_config_keeps_secrets_out_of_the_file() -> None:
    config = yaml.safe_load(DEPLOY_CONFIG.read_text())
    db = config["storage"]["postgres"]["postgres_db"]
    assert db == {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "username": {"env": "DAGSTER_PG_USER"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "db_name": {"env": "DAGSTER_PG_DB"},
        "scheme": "postgresql+psycopg2",
    }
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["concurrency"]["pools"]["default_limit"] == 1
    assert config["concurrency"]["runs"]["max_concurrent_runs"] >= 1


@pytest.mark.emulator(organizations=1)  # the runs and their storage are the point, not the data
def test_run_is_recorded_in_postgres(postgres: Postgres, production_home: EmulatorEnv) -> None:
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
    from dagster._core.run_coordinator import QueuedRunCoordinator
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    summary = execute(production_home.start, production_home.end, log_level="WARNING")
    assert summary.success, summary.lines()
    assert not summary.failed_checks

    expected_keys = {
        key.to_user_string() for key in defs.resolve_asset_graph().get_all_asset_keys()
    }
    with DagsterInstance.get() as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        runs = instance.get_runs(RunsFilter(job_name="usage_etl"))
        assert len(runs) == 1
        run = runs[0]
        assert run.status == DagsterRunStatus.SUCCESS
        for key in expected_keys:
            record = instance.get_latest_materialization_event(AssetKey.from_user_string(key))
            assert record is not None, f"no materialization of {key} in PostgreSQL"
            assert record.run_id == run.run_id

        # The writer pool: one slot, initialised from `pools: default_limit` when the
        # `usage_database` step claimed it, and free again after the run.
        concurrency = instance.get_concurrency_config()
        assert concurrency.pool_config.default_pool_limit == 1
        assert concurrency.run_queue_config is not None
        assert concurrency.run_queue_config.max_concurrent_runs == 2
        info = instance.event_log_storage.get_concurrency_info("warehouse_writer")
        assert info.slot_count == 1
        assert info.active_slot_count == 0
        assert info.pending_step_count == 0

    # The same facts in plain SQL: the tables dagster-postgres created, in the configured database.
    con = postgres.connect()
    try:
        with con.cursor() as cur:
            cur.execute("select run_id, pipeline_name, status from runs")
            assert cur.fetchall() == [(run.run_id, "usage_etl", "SUCCESS")]
            cur.execute(
                """select distinct asset_key from event_logs
                   where run_id = %s and dagster_event_type = 'ASSET_MATERIALIZATION'""",
                [run.run_id],
            )
            stored = {row[0] for row in cur.fetchall()}
            assert stored == {AssetKey.from_user_string(k).to_string() for k in expected_keys}
            assert _pool_rows(cur) == [("warehouse_writer", 1, True)]
            cur.execute(
                """select count(*), count(run_id) from concurrency_slots
                   where concurrency_key = 'warehouse_writer' and not deleted"""
            )
            assert cur.fetchone() == (1, 0), "expected one slot, free after the run"
    finally:
        con.close()

    # The documented operator command pins the limit explicitly, and reads it back.
    set_limit = dagster_cli("instance", "concurrency", "set", "warehouse_writer", "1")
    assert set_limit.exit_code == 0, set_limit.output
    get_limit = dagster_cli("instance", "concurrency", "get", "warehouse_writer")
    assert get_limit.exit_code == 0, get_limit.output
    assert "warehouse_writer" in get_limit.output, get_limit.output
    con = postgres.connect()
    try:
        with con.cursor() as cur:
            assert _pool_rows(cur) == [("warehouse_writer", 1, False)], get_limit.output
    finally:
        con.close()

    # The instance is shared: a later run (as from another process) adds to the same history.
    assert execute(production_home.end, production_home.end, log_level="WARNING").success
    with DagsterInstance.get() as instance:
        later = instance.get_runs(RunsFilter(job_name="usage_etl"))
    assert len(later) == 2
    assert run.run_id in {r.run_id for r in later}


def dagster_cli(*args: str) -> Result:
    """`dagster ARGS` through the CLI's entry point in this process, from the repository root,
    with this process's environment (the fixtures set `DAGSTER_HOME` and `DAGSTER_PG_*`), for
    commands that start no process of their own."""
    from dagster._cli import cli

    with environment(dict(os.environ)):
        return CliRunner().invoke(cli, list(args), prog_name="dagster", catch_exceptions=False)


def _pool_rows(cur: psycopg2.extensions.cursor) -> list[tuple]:
    cur.execute(
        """select concurrency_key, "limit", using_default_limit from concurrency_limits
           where concurrency_key = 'warehouse_writer'"""
    )
    return cur.fetchall()


@pytest.mark.emulator(organizations=1)  # nothing runs: the API is never asked
def test_schedule_is_turned_on_in_postgres(
    postgres: Postgres, production_home: EmulatorEnv
) -> None:
    """The documented `dagster schedule start` stores the schedule's state in PostgreSQL."""
    env = {**os.environ, **production_home.env}
    started = subprocess.run(
        [str(DAGSTER_CLI), "schedule", "start", "daily_usage_refresh", "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
        check=False,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    con = postgres.connect()
    try:
        with con.cursor() as cur:
            cur.execute("select instigator_type, status from instigators")
            assert cur.fetchall() == [("SCHEDULE", "RUNNING")]
    finally:
        con.close()
    from dagster import DagsterInstance
    from dagster._core.scheduler.instigation import InstigatorStatus

    with DagsterInstance.get() as instance:
        states = {s.name: s.status for s in instance.all_instigator_state()}
    assert states == {"daily_usage_refresh": InstigatorStatus.RUNNING}
