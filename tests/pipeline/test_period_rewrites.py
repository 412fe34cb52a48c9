"""What a periods run rewrites after an anchor change, unit by unit: stored rows an anchor change
cut are re-cut wherever they are, and rewriting an organization's rows of a month never drops
the row of a period the run does not rebuild."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest

from assets.credit_usage import (
    _frames_to_write,
    misaligned_periods,
    months_around_anchor_changes,
    period_requests,
    plan_periods,
    touching_periods,
)
from extraction.endpoints import PeriodKey
from extraction.fanout import Org
from extraction.normalize import credit_period_frame, credit_usage_frame
from tests.pipeline.test_request_budget_rules import _answer

NOW = datetime(2026, 12, 10, 6, 15)
ACME = Org("o-1", "acme")


def _stored(periods: list[tuple[date, date]], loaded_at: datetime = NOW) -> pd.DataFrame:
    return credit_period_frame(
        [("o-1", "acme", s, e, _answer(s, e, days=False)) for s, e in periods], loaded_at
    )


def test_a_stored_period_cut_by_an_anchor_change_is_rewritten_from_any_run() -> None:
    """28 -> 25 on Nov 25, first seen by a run over December: the October row Oct 28 - Nov 28
    overlaps Nov 25 - Dec 25; the run re-cuts it to Oct 28 - Nov 25."""
    today = date(2026, 12, 5)
    registry = pd.DataFrame(
        {
            "organization_id": ["o-1"],
            "period_anchor_day": [25],
            "anchor_history": ["28@2026-11-25"],
        }
    )
    december = [date(2026, 12, 1)]
    assert period_requests([ACME], registry, december, today)[0] == []
    assert touching_periods([ACME], registry, december) == [
        (ACME, date(2026, 11, 1), date(2026, 11, 25), date(2026, 12, 25))
    ], "the October period is not touched by December's days"
    assert months_around_anchor_changes([ACME], registry) == [
        date(2026, 10, 1),
        date(2026, 11, 1),
    ]
    stored = _stored(
        [
            (date(2026, 9, 28), date(2026, 10, 28)),
            (date(2026, 10, 28), date(2026, 11, 28)),
            (date(2026, 11, 28), date(2026, 12, 28)),
        ]
    )
    assert misaligned_periods([ACME], registry, stored, today) == [
        (ACME, date(2026, 10, 1), date(2026, 10, 28), date(2026, 11, 25)),
        (ACME, date(2026, 11, 1), date(2026, 11, 25), date(2026, 12, 25)),
    ]
    aligned = _stored(
        [
            (date(2026, 10, 28), date(2026, 11, 25)),
            (date(2026, 11, 25), date(2026, 12, 25)),
        ]
    )
    assert misaligned_periods([ACME], registry, aligned, today) == []
    assert misaligned_periods([], registry, stored, today) == [], "invisible: not rebuilt"
    unchanged = registry.assign(anchor_history=[None])
    assert misaligned_periods([ACME], unchanged, stored, today) == [], "no change: not its job"


def test_rewriting_a_month_keeps_the_rows_of_the_periods_not_rebuilt() -> None:
    """9 -> 25 on Nov 25, a run over December with a day of Nov 25 - Dec 10 missing: November's
    rows are rewritten for Nov 9 - Nov 25 (its days are all stored); the stored row of
    Nov 25 - Dec 25 (with its project lines) stays."""
    today = date(2026, 12, 10)
    registry = pd.DataFrame(
        {
            "organization_id": ["o-1"],
            "period_anchor_day": [25],
            "anchor_history": ["9@2026-11-25"],
        }
    )
    touching = [PeriodKey(*t) for t in touching_periods([ACME], registry, [date(2026, 12, 1)])]
    short = PeriodKey(ACME, date(2026, 11, 1), date(2026, 11, 9), date(2026, 11, 25))
    running = PeriodKey(ACME, date(2026, 11, 1), date(2026, 11, 25), date(2026, 12, 25))
    assert touching == [short, running]
    daily = credit_usage_frame(
        [("o-1", "acme", _answer(date(2026, 11, 1), date(2026, 12, 11), days=True))], "day", NOW
    )
    daily = daily[daily["start_date"].dt.date != date(2026, 12, 3)].reset_index(drop=True)
    stored = _stored([(short.start, short.end), (running.start, running.end)])
    plan = plan_periods([], daily, stored, set(), today, touching)
    assert plan.all == [short], "only the period whose days are all stored is rebuilt"

    frames = _frames_to_write(plan, {}, daily, stored)
    november = frames[date(2026, 11, 1)]
    got = november.sort_values(["start_date", "scope", "project_id"], ignore_index=True)
    assert sorted({(pd.Timestamp(s).date(), pd.Timestamp(e).date()) for s, e in zip(
        got["start_date"], got["end_date"], strict=True)}) == [
        (short.start, short.end),
        (running.start, running.end),
    ]  # fmt: skip
    kept = got[got["start_date"].dt.date == running.start]
    want = stored[stored["start_date"].dt.date == running.start]
    assert len(kept) == len(want) == 4, "organization, two projects, deleted projects"
    assert kept["credits"].sum() == pytest.approx(want["credits"].sum())
    assert set(kept["loaded_at"]) == set(want["loaded_at"]), "kept as stored, not re-dated"


def test_a_kept_row_never_overlaps_a_rewritten_period() -> None:
    """A stored row of a period the schedule no longer has (Nov 9 - Dec 9 after 9 -> 25 on
    Nov 25) goes when the month is rewritten: the periods that replace it overlap it."""
    today = date(2026, 12, 10)
    short = PeriodKey(ACME, date(2026, 11, 1), date(2026, 11, 9), date(2026, 11, 25))
    running = PeriodKey(ACME, date(2026, 11, 1), date(2026, 11, 25), date(2026, 12, 25))
    daily = credit_usage_frame(
        [("o-1", "acme", _answer(date(2026, 11, 1), date(2026, 12, 11), days=True))], "day", NOW
    )
    stored = _stored([(date(2026, 11, 9), date(2026, 12, 9))], datetime(2026, 12, 9, 6))
    plan = plan_periods([short, running], daily, stored, set(), today)
    frames = _frames_to_write(plan, {}, daily, stored)
    november = frames[date(2026, 11, 1)]
    org = november[november["scope"] == "organization"]
    assert sorted(
        (pd.Timestamp(s).date(), pd.Timestamp(e).date())
        for s, e in zip(org["start_date"], org["end_date"], strict=True)
    ) == [(short.start, short.end), (running.start, running.end)]
