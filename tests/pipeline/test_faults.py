"""The pipeline rides out what the real API does on a bad day, and fails clearly when it must.

(A response without the deleted-projects key fails the run naming it and the organization and
leaves the published warehouse as it was: tests/cli/test_cli_run_output.py, which checks that
failed run's output as well.)"""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipelines.commands.run_cmd import execute
from tests.services.emulator import Pipeline, assert_matches_emulator


def test_a_bad_day_of_transient_faults_is_ridden_out(pipeline: Pipeline) -> None:
    """One run over loopback through every kind of transient fault (a dropped connection, a
    5xx, a 429 burst, a cut-off body) and the prose spelling of the deleted-projects key: the
    run succeeds with the emulator's own numbers. Each case on its own (waits, retry counts,
    give-up messages) is a unit test of the client: tests/unit/test_ubiops_client.py."""
    faults = {"drop_connections": 1, "errors_5xx": 1, "burst_429": 1, "malformed_json": 1}
    pipeline.server.set_faults(**faults, deleted_projects_key="data_projects_deleted")
    summary = pipeline.run()
    assert summary.success, summary.lines()
    # a connection dropped while kept alive may be re-sent once by aiohttp's pool (RFC 9112
    # 9.3.1: an idempotent GET) before the client sees a failure; the rest are its retries
    assert summary.retries >= sum(faults.values()) - faults["drop_connections"]
    state = pipeline.server.fault_state()
    assert all(state[kind] == 0 for kind in faults), f"every fault was served: {state}"
    deleted = pipeline.query(
        "select sum(credits) as c from credit_usage where scope = 'deleted_projects'"
    )
    assert deleted.c[0] > 0
    assert_matches_emulator(pipeline, pipeline.start, pipeline.end + timedelta(days=1))


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
