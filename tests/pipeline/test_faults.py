"""The pipeline rides out what the real API does on a bad day, and fails clearly when it must.

(A response without the deleted-projects key fails the run naming it and the organization and
leaves the published warehouse as it was: tests/cli/test_cli_run_output.py, which checks that
failed run's output as well.)

The bad day's run also carries the checks of a run's settings
(tests/pipeline/test_settings_resources.py): it gets its warehouse and Dagster home as resource
overrides, none through the environment, leaves `os.environ` as it was and stores only the name
of the token's variable (one run instead of two: each costs seconds).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dagster import DagsterInstance
from dagster._serdes import serialize_value

from pipelines.commands.run_cmd import execute
from tests.services.emulator import Pipeline, assert_matches_emulator, default_range, start_emulator


def test_a_bad_day_of_transient_faults_is_ridden_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One run over loopback through every kind of transient fault (a dropped connection, a
    5xx, a 429 burst, a cut-off body) and the prose spelling of the deleted-projects key: the
    run succeeds with the emulator's own numbers. Each case on its own (waits, retry counts,
    give-up messages) is a unit test of the client: tests/unit/test_ubiops_client.py."""
    secret = "Token house-secret-7d2a9"
    warehouse, home = tmp_path / "warehouse", tmp_path / "dagster"
    for name in ("USAGE_WAREHOUSE", "DAGSTER_HOME", "USAGE_QUOTAS", "UBIOPS_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with start_emulator(token=secret.removeprefix("Token ")) as server:
        monkeypatch.setenv("UBIOPS_API_HOST", server.base_url)
        monkeypatch.setenv("UBIOPS_API_TOKEN", secret)
        pipeline = Pipeline(warehouse, server, *default_range(datetime.now(UTC).date()))
        faults = {"drop_connections": 1, "errors_5xx": 1, "burst_429": 1, "malformed_json": 1}
        server.set_faults(**faults, deleted_projects_key="data_projects_deleted")
        before = dict(os.environ)
        summary = execute(
            pipeline.start,
            pipeline.end,
            log_level="WARNING",
            overrides={"warehouse": {"path": str(warehouse)}},
            dagster_home=home,
        )
        assert dict(os.environ) == before, "a run must not write the process environment"
        assert summary.success, summary.lines()
        # a connection dropped while kept alive may be re-sent once by aiohttp's pool (RFC 9112
        # 9.3.1: an idempotent GET) before the client sees a failure; the rest are its retries
        assert summary.retries >= sum(faults.values()) - faults["drop_connections"]
        state = server.fault_state()
        assert all(state[kind] == 0 for kind in faults), f"every fault was served: {state}"
        deleted = pipeline.query(
            "select sum(credits) as c from credit_usage where scope = 'deleted_projects'"
        )
        assert deleted.c[0] > 0
        assert_matches_emulator(pipeline, pipeline.start, pipeline.end + timedelta(days=1))

    # settings as resources: the overrides were used, and only the token's name was stored
    assert (warehouse / "usage.duckdb").exists(), "the warehouse override was used"
    with DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(summary.run_id)
        assert run is not None
        stored = serialize_value(run)
        stored += serialize_value(instance.get_job_snapshot(run.job_snapshot_id))
        plan_id = run.execution_plan_snapshot_id
        stored += serialize_value(instance.get_execution_plan_snapshot(plan_id))
        stored += "".join(str(e) for e in instance.all_logs(summary.run_id))
    assert "UBIOPS_API_TOKEN" in stored, "the job snapshot names the variable"
    assert secret.removeprefix("Token ") not in stored


def test_bad_token_fails_fast_without_leaking_it(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "not-the-right-token-5f1e"
    monkeypatch.setenv("UBIOPS_API_TOKEN", secret)
    summary = execute(pipeline.start, pipeline.end, log_level="INFO")
    assert not summary.success
    assert summary.error is not None and "401" in summary.error
    assert "GET /organizations" in summary.error
    out = capsys.readouterr()
    assert secret not in out.out + out.err + "\n".join(summary.lines())
    home = pipeline.warehouse.parent / "dagster"
    for path in home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
