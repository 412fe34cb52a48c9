"""Nothing wrong is ever published: damaged or missing slices are repaired or refused (issue 13).

The tests start from a copy of the session's demo run (the previous and the current month); the
damaged slices are of the previous month, which the next run (the current month) does not cover."""

from __future__ import annotations

import shutil
from datetime import date, timedelta

import pytest

from tests.services.emulator import Pipeline, assert_matches_emulator
from tests.services.warehouse_files import credit_totals, garble, month_slice, verify_exit
from warehouse.manifest import IntegrityError
from warehouse.publish import DATABASE_NAME, kept_path, publish


def this_month(p: Pipeline) -> date:
    return date(p.end.year, p.end.month, 1)


def test_garbled_and_deleted_months_outside_the_run_are_repulled(
    pipeline_after_demo_run: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline = pipeline_after_demo_run  # the session's demo run: the previous + current month
    previous = pipeline.start
    clean = credit_totals(pipeline)
    assert verify_exit(pipeline.warehouse, capsys)[0] == 0

    garbled = month_slice(pipeline.warehouse, "day", previous)
    garble(garbled)
    deleted = month_slice(pipeline.warehouse, "month", previous)
    shutil.rmtree(deleted.parent)
    status, output = verify_exit(pipeline.warehouse, capsys)
    assert status == 1
    assert str(garbled) in output and str(deleted) in output

    # the next run covers neither slice (a daily refresh: the current month only) ...
    summary = pipeline.run(start=this_month(pipeline))
    assert summary.success, summary.lines()
    log = capsys.readouterr().err
    assert f"re-pulling {garbled}" in log and f"re-pulling {deleted}" in log
    # ... yet re-pulls both, and publishes exactly the clean run's totals
    assert credit_totals(pipeline).equals(clean)
    assert garbled.exists() and deleted.exists()
    assert verify_exit(pipeline.warehouse, capsys)[0] == 0
    assert_matches_emulator(pipeline, previous, pipeline.end + timedelta(days=1))

    # a damaged slice that cannot be re-pulled (a resource snapshot) is never published
    snapshot = next((pipeline.warehouse / "parquet" / "resource_usage").rglob("*.parquet"))
    garble(snapshot)
    before = (pipeline.warehouse / "usage.duckdb").read_bytes()
    with pytest.raises(IntegrityError, match="not published") as error:
        publish(pipeline.warehouse)
    assert str(snapshot) in str(error.value)
    assert (pipeline.warehouse / "usage.duckdb").read_bytes() == before


def test_token_seeing_fewer_organizations_keeps_the_others_history(
    pipeline_after_demo_run: Pipeline,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from emulator.demo import OTHER_TOKEN
    from pipelines.cli import main

    pipeline = pipeline_after_demo_run  # its first run is the session's demo run
    before = credit_totals(pipeline)
    demo_orgs = set(pipeline.query("select organization_name from organizations").organization_name)

    monkeypatch.setenv("UBIOPS_API_TOKEN", OTHER_TOKEN)  # member of acme-analytics and other-team
    capsys.readouterr()
    summary = pipeline.run()
    assert summary.success, summary.lines()
    warning = next(
        line for line in capsys.readouterr().err.splitlines() if "no longer visible" in line
    )
    orgs = pipeline.query("select * from organizations order by organization_name")
    visible = set(orgs[orgs.visible].organization_name)
    hidden = orgs[~orgs.visible]
    assert visible == {"acme-analytics", "other-team"}
    assert set(hidden.organization_name) == demo_orgs - visible
    assert all(name in warning for name in hidden.organization_name)
    assert (hidden.last_seen_at < orgs[orgs.visible].last_seen_at.min()).all()
    # every usage row of the organizations this token cannot see is still there, unchanged
    after = credit_totals(pipeline)
    kept_ids = set(hidden.organization_id)
    assert (
        after[after.organization_id.isin(kept_ids)]
        .reset_index(drop=True)
        .equals(before[before.organization_id.isin(kept_ids)].reset_index(drop=True))
    )
    other_team = orgs[orgs.organization_name == "other-team"].organization_id.iloc[0]
    assert (after.organization_id == other_team).any(), "the newly visible one was loaded"

    # forgetting one on purpose removes its data everywhere, and only its data
    gone = hidden.iloc[0]
    status = main(["forget", "--organization", gone.organization_name])
    assert status == 0
    assert not kept_path(pipeline.warehouse / DATABASE_NAME).exists(), "no version holding it"
    assert gone.organization_name in capsys.readouterr().out
    for table in ("credit_usage", "organizations", "organization_users", "resource_usage"):
        n = pipeline.query(
            f"select count(*) as n from {table} where organization_id = ?", [gone.organization_id]
        ).n[0]
        assert n == 0, table
    remaining = credit_totals(pipeline)
    assert remaining.equals(
        after[after.organization_id != gone.organization_id].reset_index(drop=True)
    )
    assert verify_exit(pipeline.warehouse, capsys)[0] == 0
    assert main(["forget", "--organization", "no-such-org"]) == 2
    assert "no-such-org" in capsys.readouterr().err


def test_damaged_slice_holding_an_invisible_organization_fails_the_run_naming_it(
    pipeline_after_demo_run: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    from emulator.demo import OTHER_TOKEN

    pipeline = pipeline_after_demo_run  # the session's demo run: the previous + current month
    before = (pipeline.warehouse / "usage.duckdb").read_bytes()
    damaged = month_slice(pipeline.warehouse, "day", pipeline.start)
    garble(damaged)
    monkeypatch.setenv("UBIOPS_API_TOKEN", OTHER_TOKEN)
    summary = pipeline.run(start=this_month(pipeline))  # the damaged month is outside the run
    assert not summary.success
    assert summary.error is not None and str(damaged) in summary.error
    assert "cannot repair" in summary.error
    assert (pipeline.warehouse / "usage.duckdb").read_bytes() == before


def test_a_lost_resource_snapshot_fails_the_run_naming_it_and_prune_drops_it(
    pipeline_after_demo_run: Pipeline,
) -> None:
    """F-o: a lost `resource_usage` snapshot fails the run with one line naming the file and
    the remedy (not DuckDB's caret line); `usage-etl prune --drop-damaged` drops it, since the
    failed run's own snapshot of the same day supersedes it, and the next run succeeds."""
    import os

    from tests.services.cli import usage_etl_in_process
    from warehouse.parquet_store import ParquetStore
    from warehouse.schema import RESOURCE_USAGE

    pipeline = pipeline_after_demo_run
    store = ParquetStore(pipeline.warehouse)
    (lost,) = store.files(RESOURCE_USAGE)  # the demo run's snapshot of today
    lost.unlink()
    env = dict(os.environ)
    args = ("--warehouse", str(pipeline.warehouse), "--start", str(this_month(pipeline)))
    failed = usage_etl_in_process("run", *args, env=env)
    assert failed.code == 1
    (error,) = [x for x in failed.out.splitlines() if x.startswith("error: ")]
    assert str(lost) in error and "missing" in error, error
    assert "usage-etl prune --drop-damaged" in error, error
    # the failed step's line names the file; the run's line only points to it
    (step_line,) = [x for x in failed.err.splitlines() if "quota_alerts: ERROR failed:" in x]
    assert str(lost) in step_line, failed.err
    (run_line,) = [x for x in failed.err.splitlines() if "usage_etl: ERROR failed:" in x]
    assert "step quota_alerts failed (above)" in run_line, failed.err
    assert "Traceback" not in failed.out + failed.err

    dropped = usage_etl_in_process("prune", "--drop-damaged", *args[:2], env=env)
    assert dropped.code == 0, dropped.out + dropped.err
    assert f"dropped {lost} (missing)" in dropped.out
    assert usage_etl_in_process("verify", *args[:2], env=env).code == 0
    assert pipeline.run(start=this_month(pipeline)).success
