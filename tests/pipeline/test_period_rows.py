"""Period rows of closed periods are confirmed with the API a few a run, against the emulator
on loopback: a backfill's older periods are left pending, daily refreshes keep their budget.

(A subscription period anchored on the 20th runs from the 20th of one month to the 20th of the
next: its row lives in the partition of the month it starts in. That a day of the current month
corrected by the API still reaches the row of the period that began in the previous month, when
a daily refresh loads only the current month, is checked on the daily refresh of
tests/pipeline/test_request_budget.py.)
"""

from __future__ import annotations

import json
from datetime import date

import pytest

from common.periods import shift_month
from tests.services.emulator import TOLERANCE, Pipeline


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
