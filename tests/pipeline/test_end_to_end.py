"""The whole pipeline against the emulator: the warehouse must hold the emulator's own numbers,
and a second run over the same data changes nothing. The first run of every test here is the
session's demo run (tests/services/demo_run.py), which records what its summary said."""

from __future__ import annotations

from datetime import timedelta

import duckdb
import pytest

from tests.services.demo_run import DemoBuild
from tests.services.emulator import TOLERANCE, Pipeline, assert_matches_emulator


def table_snapshot(p: Pipeline, table: str, order: str) -> list[tuple]:
    frame = p.query(f"select * exclude (loaded_at) from {table} order by {order}")
    return [tuple(r) for r in frame.itertuples(index=False)]


def test_run_loads_what_the_emulator_serves(
    demo_build: DemoBuild, pipeline_after_demo_run: Pipeline
) -> None:
    """The first run is the session's demo run (the run a fresh `pipeline.run()` makes: the
    previous and the current month of the seed-11 organizations, into an empty warehouse and
    Dagster home), held to an emulator in the state it loaded from: one run fewer."""
    pipeline = pipeline_after_demo_run
    summary = demo_build.summary
    assert summary["success"], summary
    assert not summary["failed_checks"]
    caller = pipeline.server.state.user_for_token(pipeline.server.token)
    assert summary["organizations"] == len(pipeline.server.state.list_organizations(caller))
    assert_matches_emulator(pipeline, pipeline.start, pipeline.end + timedelta(days=1))

    periods = pipeline.query(
        """select o.organization_name, c.start_date, c.end_date, c.credits
           from credit_usage c join organizations o using (organization_id)
           where c.interval = 'month' and c.scope = 'organization'"""
    )
    assert len(periods) > 0
    for row in periods.itertuples():
        truth = pipeline.server.totals(
            row.organization_name, row.start_date.date(), row.end_date.date()
        )
        assert row.credits == pytest.approx(truth["organization_total"], abs=TOLERANCE)

    users = pipeline.query(
        "select organization_id, count(*) as n from organization_users group by 1"
    )
    resources = pipeline.query("select organization_id, users from resource_usage")
    assert dict(zip(users.organization_id, users.n, strict=True)) == dict(
        zip(resources.organization_id, resources.users, strict=True)
    )


def test_a_rerun_changes_no_table_sends_no_alert_again_and_spares_an_open_reader(
    pipeline_after_demo_run: Pipeline,
) -> None:
    """A second run over the same range on the same API data (the first is the session's demo
    run): the same tables, one more resource snapshot, no alert queued or sent again, a fresh
    report; an analyst's session open on the database meanwhile neither fails the run nor
    sees it change under them. (One run checks all of this: each run costs seconds.)"""
    pipeline = pipeline_after_demo_run
    first = table_snapshot(pipeline, "credit_usage", "all")
    outbox = pipeline.query("select alert_key, channel, status from alert_outbox")
    delivered = int((outbox.status == "delivered").sum())
    reader = duckdb.connect(str(pipeline.warehouse / "usage.duckdb"), read_only=True)
    try:
        before = reader.execute("select count(*), max(loaded_at) from credit_usage").fetchone()
        summary = pipeline.run()
        assert summary.success, "an open read-only session must not make the run fail"
        # the open session keeps its consistent snapshot ...
        again = reader.execute("select count(*), max(loaded_at) from credit_usage").fetchone()
        assert again == before
    finally:
        reader.close()
    # ... and a new session sees the new run
    assert before is not None
    latest = pipeline.query("select max(loaded_at) as t from credit_usage").t[0]
    assert latest > before[1]

    assert table_snapshot(pipeline, "credit_usage", "all") == first
    snapshots = pipeline.query("select count(distinct observed_at) as n from resource_usage")
    assert snapshots.n[0] == 2, "resource usage keeps one snapshot per run"

    requeued = pipeline.query("select alert_key, channel, status from alert_outbox")
    assert len(requeued) == len(outbox), "a re-run must not queue the same alerts again"
    assert (requeued.status == "delivered").sum() == delivered
    assert (pipeline.warehouse / "report" / "index.html").stat().st_size > 10_000


def test_rename_and_project_deletion_between_runs(pipeline_after_demo_run: Pipeline) -> None:
    pipeline = pipeline_after_demo_run  # its first run is the session's demo run
    orgs = pipeline.query("select * from organizations order by organization_name")
    target = orgs.iloc[0]
    project = pipeline.query(
        """select project_id, sum(credits) as c from credit_usage
           where organization_id = ? and scope = 'project' and interval = 'day'
           group by 1 order by c desc limit 1""",
        [target.organization_id],
    ).project_id[0]
    pipeline.server.rename_organization(target.organization_name, "renamed-org")
    pipeline.server.delete_project("renamed-org", project)

    assert pipeline.run().success
    after = pipeline.query(
        "select * from organizations where organization_id = ?", [target.organization_id]
    )
    assert after.organization_name[0] == "renamed-org"
    assert after.first_seen_at[0] == target.first_seen_at, "history stays under the id"
    assert len(pipeline.query("select * from organizations")) == len(orgs)
    leftover = pipeline.query(
        "select count(*) as n from credit_usage where project_id = ?", [project]
    )
    assert leftover.n[0] == 0, "a deleted project's usage must move to deleted_projects"
    assert_matches_emulator(pipeline, pipeline.start, pipeline.end + timedelta(days=1))
