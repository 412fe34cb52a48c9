"""What an admin sees when the daily rate changes: does the credit_forecast alert fire, and when.

Budget 1000 credits per calendar-month period (March 2024). Every organization runs at 20
credits a day (620 a period, 62 %) until something happens; the alert is the ``credit_forecast``
rule at 100 % of the budget, evaluated each morning on the data up to the day before.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alerting.evaluate import compute_alerts
from insights.forecast import forecast_usage
from insights.quotas import parse_quotas

from .conftest import organizations_frame, usage_frame

CONFIG = parse_quotas(
    {
        "subscriptions": {"free": {"credit_budget": 1000}},
        "rules": {"credit_forecast_thresholds": [100], "min_days_forecast": 7},
    }
)
ORGS = organizations_frame(("o1", "free", "2024-03-01", "2024-04-01"))
HISTORY = "2024-02-01"  # 29 days before the period
EVENT = 39  # index of 2024-03-11, the day the rate changes


def noisy(level: float, days: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return level * rng.lognormal(0.0, 0.08, days)


def first_alert(usage: pd.DataFrame, method: str = "robust", last: int = 30) -> int | None:
    """Days after the event (0 = the event day's own data) of the first forecast alert."""
    for after in range(0, last):
        as_of = pd.Timestamp(HISTORY) + pd.Timedelta(days=EVENT + after)
        cand = compute_alerts(
            usage,
            ORGS,
            CONFIG,
            as_of=as_of,
            rules=("credit_forecast",),
            method=method,  # type: ignore[arg-type]
        ).candidates
        if len(cand):
            return after + 1  # days of data at the new level
    return None


def forecast_on(usage: pd.DataFrame, days_after: int, method: str = "robust") -> pd.Series:
    as_of = pd.Timestamp(HISTORY) + pd.Timedelta(days=EVENT + days_after - 1)
    return forecast_usage(usage, ORGS, CONFIG, as_of=as_of, method=method).iloc[0]  # type: ignore[arg-type]


def test_step_up_of_a_project_alerts_within_three_days() -> None:
    days = 60
    p1 = noisy(20.0, days)
    p1[EVENT:] *= 3.0  # a deployment scaled up: 60 credits a day from Mar 11
    usage = usage_frame("o1", HISTORY, {"p1": list(p1)})
    fired = first_alert(usage)  # searched once, asserted twice
    assert fired is not None and fired <= 3
    # before the shift is 3 days old nothing fires: two days could still be a spike
    assert fired == 3
    # the previous method kept the old level for a week (none in the first 6 days: the same
    # verdict as searching 30 days for `None or >= 7`)
    old = first_alert(usage, method="theil_sen", last=6)
    assert old is None or old >= 7


def test_new_project_going_live_alerts_within_three_days() -> None:
    days = 60
    new = np.zeros(days)
    new[EVENT:] = noisy(45.0, days - EVENT, seed=2)
    usage = usage_frame("o1", HISTORY, {"p1": list(noisy(20.0, days)), "new": list(new)})
    fired = first_alert(usage)
    assert fired is not None and fired <= 3
    fc = forecast_on(usage, 3)
    assert fc.method == "per_series_level_shift"
    assert fc.forecast_low <= fc.forecast_total <= fc.forecast_high


@pytest.mark.parametrize("spike_days", [1, 2])
def test_one_or_two_day_spike_changes_nothing(spike_days: int) -> None:
    days = 60
    p1 = noisy(20.0, days)
    p1[EVENT : EVENT + spike_days] = 150.0  # 7.5x for one or two days, then back to normal
    usage = usage_frame("o1", HISTORY, {"p1": list(p1)})
    # the spike's own credits (up to 260) count, the level does not move: 620 + 260 < 1000
    assert first_alert(usage) is None
    fc = forecast_on(usage, spike_days)  # as of the spike's last day
    normal = forecast_on(usage_frame("o1", HISTORY, {"p1": list(noisy(20.0, days))}), spike_days)
    extra = 130.0 * spike_days
    assert fc.forecast_total == pytest.approx(normal.forecast_total + extra, rel=0.05)


def _falling(usage_after: dict[str, np.ndarray], deleted: np.ndarray | None = None) -> pd.DataFrame:
    return usage_frame(
        "o1", HISTORY, {k: list(v) for k, v in usage_after.items()},
        deleted=None if deleted is None else list(deleted),
    )  # fmt: skip


def test_project_scaled_to_zero_clears_the_forecast_within_three_days() -> None:
    days = 60
    big = noisy(30.0, days, seed=3)
    big[EVENT:] = 0.0  # the big project's deployment is scaled to zero on Mar 11
    usage = _falling({"small": noisy(10.0, days), "big": big})
    before = forecast_on(usage, 0)  # 40 a day: 1240 > 1000 -> the forecast alert is active
    assert before.forecast_total > 1000
    after = forecast_on(usage, 3)  # three days at 10 a day: follows the drop
    expected = before.used_so_far + 40 * 0 + 3 * 10 + 18 * 10  # used + 3 days + rest of March
    assert after.forecast_total == pytest.approx(expected, rel=0.08)
    assert after.forecast_total < 1000
    # the previous method still forecasts over budget three days later
    assert forecast_on(usage, 3, method="theil_sen").forecast_total > 1000


def test_deleted_project_history_moves_to_deleted_line_and_forecast_follows() -> None:
    days = 60
    gone = noisy(30.0, days, seed=4)
    gone[EVENT:] = 0.0  # deleted on Mar 11: its usage shows on the deleted-projects line
    usage = _falling({"small": noisy(10.0, days)}, deleted=gone)
    assert forecast_on(usage, 0).forecast_total > 1000
    after = forecast_on(usage, 3)
    assert after.forecast_total < 1000 and after.method == "per_series_level_shift"


def test_decline_is_not_extrapolated_below_what_recent_days_support() -> None:
    days = 60
    t = np.arange(days, dtype=float)
    p1 = 40.0 * np.exp(-0.03 * t)  # a steady decline: 40 -> ~12 a day by Mar 11
    usage = usage_frame("o1", HISTORY, {"p1": list(p1)})
    fc = forecast_on(usage, 1)
    truth = float(p1[: EVENT + 21].sum() - p1[:29].sum())  # what March really uses
    assert fc.forecast_total == pytest.approx(truth, rel=0.05)
    remaining_truth = float(p1[EVENT + 1 : EVENT + 21].sum())
    assert fc.forecast_total - fc.used_so_far >= 0.85 * remaining_truth
    assert fc.forecast_low >= fc.used_so_far and fc.forecast_high > fc.forecast_total
