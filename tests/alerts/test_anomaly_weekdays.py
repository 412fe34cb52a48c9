"""The anomaly rule on short histories (2-4 weeks): an ordinary weekend is not an anomaly, a
spike or a weekday dropping to zero is, from the first day the rule judges (``min_history_days``
= 14)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from insights.anomalies import detect_anomalies

from .conftest import usage_frame

WEEKDAY_CREDITS = 200.0


def weekly(start: str, days: int, weekend_share: float, seed: int) -> np.ndarray:
    """A normal weekly pattern: ~200 credits on weekdays, ``weekend_share`` of it on Saturday
    and Sunday, 10 % multiplicative noise."""
    dates = pd.date_range(start, periods=days, freq="D")
    level = np.where(dates.day_of_week >= 5, weekend_share, 1.0) * WEEKDAY_CREDITS
    return level * np.random.default_rng(seed).lognormal(0.0, 0.1, days)


def scores(start: str, values: np.ndarray) -> pd.DataFrame:
    usage = usage_frame("o1", start, {"p1": list(values)})
    scored = detect_anomalies(usage, sensitivity=4, min_impact=50, min_history_days=14)
    return scored[scored["scope"] == "organization"].set_index("date")


@pytest.mark.parametrize("weekend_share", [0.3, 0.4])
@pytest.mark.parametrize("start", [f"2026-10-0{d}" for d in range(1, 8)])  # every weekday first
def test_a_normal_weekly_pattern_has_no_anomaly_in_its_first_four_weeks(
    start: str, weekend_share: float
) -> None:
    for seed in range(3):
        scored = scores(start, weekly(start, 28, weekend_share, seed))
        flagged = scored[scored["is_anomaly"]]
        assert flagged.empty, (seed, flagged[["credits", "expected", "robust_z"]])
        # the first weekend judged is compared with the earlier weekends, not with weekdays
        judged = scored.iloc[14:]
        weekend = judged[judged.index.day_of_week >= 5]
        assert (weekend["expected"] < 0.6 * WEEKDAY_CREDITS).all()


def first_judged(start: str, weekday: int) -> int:
    """Index of the first day with 14 days of history that falls on ``weekday``."""
    dates = pd.date_range(start, periods=28, freq="D")
    return next(i for i in range(14, 28) if dates[i].day_of_week == weekday)


@pytest.mark.parametrize("weekday", range(7))
def test_a_spike_is_caught_on_the_first_day_judged(weekday: int) -> None:
    start = "2026-10-01"
    values = weekly(start, 28, 0.3, seed=1)
    day = first_judged(start, weekday)
    values[day] = 4 * WEEKDAY_CREDITS
    scored = scores(start, values[: day + 1])
    flagged = scored[scored["is_anomaly"]]
    assert list(flagged.index) == [pd.Timestamp(start) + pd.Timedelta(days=day)]
    assert flagged["direction"].iloc[0] == "spike"


@pytest.mark.parametrize("weekday", range(5))
def test_a_weekday_dropping_to_zero_is_caught_on_the_first_day_judged(weekday: int) -> None:
    start = "2026-10-01"
    values = weekly(start, 28, 0.3, seed=2)
    day = first_judged(start, weekday)
    values[day] = 0.0
    scored = scores(start, values[: day + 1])
    flagged = scored[scored["is_anomaly"]]
    assert list(flagged.index) == [pd.Timestamp(start) + pd.Timedelta(days=day)]
    assert flagged["direction"].iloc[0] == "drop"


def test_a_spike_before_the_rule_judges_does_not_make_the_next_week_a_drop() -> None:
    # a 4x Wednesday in week 2 (not judged yet): the next Wednesday, back to normal, has only
    # two earlier Wednesdays, one of them the spike; it is not an anomaly
    start = "2026-10-01"  # a Thursday
    values = weekly(start, 28, 0.3, seed=0)
    spike = 13  # 2026-10-14, a Wednesday
    assert pd.Timestamp(start) + pd.Timedelta(days=spike) == pd.Timestamp("2026-10-14")
    values[spike] = 4 * WEEKDAY_CREDITS
    scored = scores(start, values)
    assert not scored["is_anomaly"].any()
    assert scored.loc["2026-10-21", "expected"] < 1.3 * WEEKDAY_CREDITS
