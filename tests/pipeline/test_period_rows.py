"""Period rows follow their days across month partitions, against the emulator on loopback.

A subscription period anchored on the 20th runs from the 20th of one month to the 20th of the
next: its row lives in the partition of the month it starts in. The daily schedule loads only
the current month after the 3rd; a day of the current month corrected by the API must still
reach the row of the period that began in the previous month.
"""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from common.periods import period_containing, shift_month
from tests.services.emulator import TOLERANCE, Pipeline


def period_rows(p: Pipeline, organization_id: str, start: date) -> dict[tuple[str, str], float]:
    rows = p.query(
        """select scope, coalesce(project_id, '') as project_id, credits from credit_usage
           where interval = 'month' and organization_id = ? and start_date = ?""",
        [organization_id, start],
    )
    return {(r.scope, r.project_id): r.credits for r in rows.itertuples()}


def test_a_corrected_day_reaches_the_row_of_a_period_begun_in_the_previous_month(
    pipeline_after_demo_run: Pipeline,
) -> None:
    p = pipeline_after_demo_run
    today = p.end
    this_month = date(today.year, today.month, 1)
    org = next(o for o in p.server.state.orgs.values() if o.anchor_day == 20)
    start, end = period_containing(this_month, org.anchor_day)
    assert start < this_month < end, "the period begins in the previous month"
    before = period_rows(p, org.id, start)
    assert before, "the first run (previous and current month) wrote the period's row"

    # the API restates a day of the period's second month, then a run loads only this month
    project = p.server.add_usage(org.name, this_month, 125.0)
    summary = p.run(this_month, today)
    assert summary.success and not summary.failed_checks, summary.lines()
    n = summary.organizations
    assert summary.requests == 1 + 2 * n, "recomputing the row from its days asks nothing more"

    after = period_rows(p, org.id, start)
    assert after[("organization", "")] == pytest.approx(
        before[("organization", "")] + 125.0, abs=TOLERANCE
    )
    assert after[("project", project)] == pytest.approx(
        before[("project", project)] + 125.0, abs=TOLERANCE
    )
    truth = p.server.totals(org.name, start, min(end, today + timedelta(days=1)))
    assert after[("organization", "")] == pytest.approx(truth["organization_total"], abs=TOLERANCE)
    assert after[("deleted_projects", "")] == pytest.approx(
        truth["deleted_projects"], abs=TOLERANCE
    )
    duplicated = p.query(
        """select scope, project_id, count(*) as n from credit_usage
           where interval = 'month' and organization_id = ? and start_date = ?
           group by all having count(*) > 1""",
        [org.id, start],
    )
    assert duplicated.empty, "the recomputed rows replaced the stale ones"


def test_a_backfill_confirms_older_closed_periods_a_few_a_run_and_daily_refreshes_keep_budget(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = pipeline
    today = p.end
    this_month = date(today.year, today.month, 1)
    previous = date(*shift_month(today.year, today.month, -1), 1)
    first = date(*shift_month(today.year, today.month, -4), 1)
    monkeypatch.setenv("USAGE_RECONCILE_PER_RUN", "1")
    summary = p.run(first, today)
    assert summary.success and not summary.failed_checks, summary.lines()
    ledger = p.warehouse / "state" / "periods-to-reconcile.json"
    pending = json.loads(ledger.read_text())["periods"]
    older = p.query(
        """select organization_id, start_date from credit_usage
           where interval = 'month' and scope = 'organization' and end_date < ?""",
        [previous],
    )
    assert len(pending) == len(older) - 1 >= 5, "one older period confirmed, the others pending"
    assert all(date.fromisoformat(p["end"]) < previous for p in pending), (
        "periods closed since the previous month began are always confirmed"
    )
    periods = p.query(
        """select o.organization_name, c.start_date, c.end_date, c.credits
           from credit_usage c join organizations o using (organization_id)
           where c.interval = 'month' and c.scope = 'organization'"""
    )
    for row in periods.itertuples():  # pending or not, every row is exact: the sum of its days
        truth = p.server.totals(row.organization_name, row.start_date.date(), row.end_date.date())
        assert row.credits == pytest.approx(truth["organization_total"], abs=TOLERANCE), row

    # by default a daily refresh keeps to its budget and leaves the backlog alone
    monkeypatch.delenv("USAGE_RECONCILE_PER_RUN")
    summary = p.run(this_month, today)
    assert summary.success and not summary.failed_checks, summary.lines()
    assert summary.requests == 1 + 2 * summary.organizations
    assert len(json.loads(ledger.read_text())["periods"]) == len(pending)

    # asked to, a daily refresh confirms what is pending, up to the limit, and nothing else
    monkeypatch.setenv("USAGE_RECONCILE_PER_RUN", "100")
    summary = p.run(this_month, today)
    assert summary.success and not summary.failed_checks, summary.lines()
    assert summary.requests == 1 + 2 * summary.organizations + len(pending)
    assert not ledger.exists(), "nothing left to confirm"
    summary = p.run(this_month, today)
    assert summary.requests == 1 + 2 * summary.organizations, "each period confirmed once"
