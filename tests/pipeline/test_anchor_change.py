"""A subscription change (a new anchor day) against the emulator on loopback: the periods an
organization was billed in keep their anchor, the period running on the change day ends on it,
the new anchor applies from then on, and the run says so.

The change is made as an organization admin makes it, with the API's own PATCH of the
organization (`subscription` and `subscription_start_date`); the emulator then reports the
current period on the new anchor, as the API does.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import httpx
import pytest

from common.periods import shift_month
from tests.services.emulator import TOLERANCE, Pipeline

ORGANIZATION = "fjord-ml"


def period_rows(p: Pipeline) -> list[tuple[date, date, float]]:
    frame = p.query(
        """select period_start, period_end, credits from period_usage_by_organization
           where organization_name = ? order by period_start""",
        [ORGANIZATION],
    )
    return [
        (r.period_start.date(), r.period_end.date(), float(r.credits)) for r in frame.itertuples()
    ]


def assert_same(got: list[tuple[date, date, float]], want: list[tuple[date, date, float]]) -> None:
    assert [(s, e) for s, e, _ in got] == [(s, e) for s, e, _ in want]
    assert [c for _, _, c in got] == pytest.approx([c for _, _, c in want], abs=TOLERANCE)


def change_day(today: date, old_anchor: int) -> date:
    """A day 4 to 10 days ago whose day of month is not the old anchor and fits every month
    (so the emulator's new current period starts exactly on it)."""
    for back in range(4, 11):
        day = today - timedelta(days=back)
        if day.day != old_anchor and day.day <= 28:
            return day
    raise AssertionError("unreachable: 7 consecutive days hold one that fits")


def test_a_new_anchor_keeps_the_billed_periods_and_cuts_the_running_one(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    p = pipeline
    today = p.end
    first = date(*shift_month(today.year, today.month, -3), 1)
    summary = p.run(first, today)
    assert summary.success and not summary.failed_checks, summary.lines()
    old_anchor = int(
        p.query(
            "select period_anchor_day from organizations where organization_name = ?",
            [ORGANIZATION],
        ).iloc[0, 0]
    )
    billed = period_rows(p)
    since = change_day(today, old_anchor)
    assert any(s < since < e for s, e, _ in billed), "the change falls inside a stored period"

    answer = httpx.patch(
        f"{p.server.base_url}/organizations/{ORGANIZATION}",
        headers={"Authorization": f"Token {p.server.token}"},
        json={"subscription": "professional", "subscription_start_date": since.isoformat()},
    )
    assert answer.status_code == 200, answer.text
    capfd.readouterr()
    monkeypatch.setenv("USAGE_DETAILS_MAX_AGE_DAYS", "0")  # the details (and anchor) re-read now
    summary = p.run()  # the default range: the previous and the current month
    assert summary.success and not summary.failed_checks, summary.lines()
    said = capfd.readouterr().err
    assert f"organization {ORGANIZATION}: subscription anchor day changed" in said
    assert f"{old_anchor} -> {since.day} from {since}" in said

    after = period_rows(p)
    cut = next(s for s, e, _ in billed if s < since < e)
    # the periods closed before the change are exactly as billed
    closed = [r for r in billed if r[1] <= cut]
    assert closed, "periods closed before the change"
    assert_same([r for r in after if r[1] <= cut], closed)
    # the period running on the change day ends on it; the new anchor's period starts on it
    tail = [r for r in after if r[0] >= cut]
    assert [(s, e) for s, e, _ in tail] == [
        (cut, since),
        (since, date(*shift_month(since.year, since.month, 1), since.day)),
    ]
    for start, end, credits in tail:  # each the sum of its own days
        truth = p.server.totals(ORGANIZATION, start, min(end, today + timedelta(days=1)))
        assert credits == pytest.approx(truth["organization_total"], abs=TOLERANCE), start
    # no day between the first period and today is left out of a period, none is in two
    assert all(e == s for (_, e, _), (s, _, _) in itertools.pairwise(after))
    current = p.query(
        """select period_start, period_end, period_anchor_day, anchor_history
           from organizations where organization_name = ?""",
        [ORGANIZATION],
    ).iloc[0]
    assert current.period_start.date() == since and current.period_anchor_day == since.day
    assert current.anchor_history == f"{old_anchor}@{since}"

    # a later backfill over the whole history re-cuts nothing: same periods, same credits
    monkeypatch.delenv("USAGE_DETAILS_MAX_AGE_DAYS")
    capfd.readouterr()
    summary = p.run(first, today)
    assert summary.success and not summary.failed_checks, summary.lines()
    assert_same(period_rows(p), after)
    assert "anchor day changed" not in capfd.readouterr().err
