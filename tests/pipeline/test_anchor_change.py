"""A subscription change (a new anchor day) against the emulator on loopback: the periods an
organization was billed in keep their anchor, the period running on the change day ends on it,
the new anchor applies from then on, and the run says so.

The change is made as an organization admin makes it, with the API's own PATCH of the
organization (`subscription` and `subscription_start_date`); the emulator then reports the
current period on the new anchor, as the API does.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import pytest

import warehouse.schema
from common.periods import AnchorSchedule, schedule_periods_starting_in, shift_month
from tests.services.emulator import TOLERANCE, Pipeline, start_emulator

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


def stored_periods(p: Pipeline, name: str) -> list[tuple[date, date, float]]:
    frame = p.query(
        """select c.start_date, c.end_date, c.credits
           from credit_usage c join organizations o using (organization_id)
           where c.interval = 'month' and c.scope = 'organization' and o.organization_name = ?
           order by c.start_date""",
        [name],
    )
    return [(r.start_date.date(), r.end_date.date(), float(r.credits)) for r in frame.itertuples()]


@pytest.fixture
def pipeline_on_the_5th(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    """A `pipeline` whose emulator and runs live on the 5th of the previous month (a past day,
    so its months are partitions; the emulator's clock stands there, the pipeline's runs on
    from it): a change on the 20th of the month before is then first seen by a run over the
    current month only, whatever the real date."""
    real = datetime.now(UTC)
    y, m = shift_month(real.year, real.month, -1)
    frozen = datetime(y, m, 5, 6, 15, tzinfo=UTC)

    offset = frozen - real

    class Clock(datetime):  # the real clock moved back: it still runs (snapshot names differ)
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def, override]
            return datetime.now(tz) + offset

    monkeypatch.setattr(warehouse.schema, "datetime", Clock)  # the pipeline's now_utc()
    with start_emulator(now=frozen) as server:
        monkeypatch.setenv("UBIOPS_API_HOST", server.base_url)
        monkeypatch.setenv("UBIOPS_API_TOKEN", server.token)
        monkeypatch.setenv("USAGE_WAREHOUSE", str(tmp_path / "warehouse"))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
        today = frozen.date()
        yield Pipeline(tmp_path / "warehouse", server, date(today.year, today.month, 1), today)


def test_a_change_first_seen_by_a_run_after_its_month_recuts_the_period_it_ended(
    pipeline_on_the_5th: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """28 -> 20 on the 20th of the previous month, first seen by a run over the current month
    only (the daily schedule's range after day 3, or a late details re-read): that run loads no
    day of the month before the change's, yet the period begun there on the 28th and running on
    the 20th is cut on the 20th; no two stored periods overlap, each is the sum of its days."""
    p = pipeline_on_the_5th
    name, old_anchor = "ember-free", 28
    today = p.end  # the 5th
    previous = shift_month(today.year, today.month, -1)
    since = date(*previous, 20)  # the new anchor's current period on the 5th starts then
    began = date(*shift_month(today.year, today.month, -2), old_anchor)
    first = date(*shift_month(today.year, today.month, -4), 1)
    summary = p.run(first, today)
    assert summary.success and not summary.failed_checks, summary.lines()
    assert (began, date(*previous, old_anchor)) in [(s, e) for s, e, _ in stored_periods(p, name)]

    answer = httpx.patch(
        f"{p.server.base_url}/organizations/{name}",
        headers={"Authorization": f"Token {p.server.token}"},
        json={"subscription_start_date": since.isoformat()},  # same (free) subscription
    )
    assert answer.status_code == 200, answer.text
    monkeypatch.setenv("USAGE_DETAILS_MAX_AGE_DAYS", "0")
    summary = p.run(p.start, today)  # the current month only
    assert summary.success and not summary.failed_checks, summary.lines()
    history = p.query(
        "select anchor_history from organizations where organization_name = ?", [name]
    ).iloc[0, 0]
    assert history == f"{old_anchor}@{since}"

    periods = stored_periods(p, name)
    for (_, end, _), (start, _, _) in itertools.pairwise(periods):
        assert end <= start, f"stored periods overlap: {periods}"
    schedule = AnchorSchedule(since.day, ((old_anchor, since),))
    for start, end, _ in periods:
        assert (start, end) in schedule_periods_starting_in(start.year, start.month, schedule)
    spans = [(s, e) for s, e, _ in periods]
    assert (began, since) in spans and (since, date(today.year, today.month, 20)) in spans
    for start, end, credits in periods:  # every day of them was loaded by the first run
        truth = p.server.totals(name, start, min(end, today + timedelta(days=1)))
        assert credits == pytest.approx(truth["organization_total"], abs=TOLERANCE), start
    shown = p.query(
        """select period_start, period_end from period_usage_by_organization
           where organization_name = ? order by period_start""",
        [name],
    )
    views = [
        (s.date(), e.date()) for s, e in zip(shown.period_start, shown.period_end, strict=True)
    ]
    assert (began, since) in views and all(
        e <= s for (_, e), (s, _) in itertools.pairwise(views)
    ), f"the period views show overlapping periods: {views}"
