"""Robust daily usage anomalies per series (organization, project, deleted projects).

Expected value of a day: the median of the same weekday over the previous ``window_days``
(the weekday baseline), once >= 3 such days exist. Scale: 1.4826 x the median absolute
deviation of the previous ``window_days`` days from their own weekday baselines (from the
median of the previous days before any same weekday exists), floored at 5% of the expected
value and at 1 credit, so flat series do not divide by zero. A day is an anomaly when ``|robust
z| >= sensitivity`` AND ``|credits - expected| >= min_impact`` credits (the floor that keeps tiny
projects from paging anyone) AND at least ``min_history_days`` of history exist. Only past days
are used for each day's baseline (no look-ahead).

Short history (fewer than 3 earlier same weekdays in the window, e.g. 14-20 days): the weekday
pattern is not known well enough for either baseline on its own. The median of the 1-2 earlier
same weekdays follows the pattern (a Saturday is compared with Saturdays) but one unusual day
among them moves it; the median of all previous days is robust to that but blind to the
pattern (a normal weekend is far below it). So a day must be an anomaly against both: the
expected value is whichever of the two is nearer the day's credits (NaN-free: the all-days
median when there is no earlier same weekday). A normal weekend is near the earlier weekends;
a spike or a weekday dropping to zero is far from both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from insights.frames import DAILY_COLUMNS, daily_usage, dense_series_frame

ANOMALY_COLUMNS: list[str] = [
    *DAILY_COLUMNS,
    "expected",
    "scale",
    "robust_z",
    "impact",
    "is_anomaly",
    "direction",
]


def _grouped_rolling_median(
    values: pd.Series, keys: list[pd.Series], window: int, min_periods: int
) -> pd.Series:
    rolled = values.groupby(keys).rolling(window, min_periods=min_periods).median()
    return rolled.reset_index(level=list(range(len(keys))), drop=True).reindex(values.index)


def detect_anomalies(
    credit_usage_daily: pd.DataFrame,
    *,
    sensitivity: float = 4.0,
    min_impact: float = 50.0,
    window_days: int = 28,
    min_history_days: int = 14,
    only_anomalies: bool = False,
) -> pd.DataFrame:
    """Score every series and day (see module doc); columns are :data:`ANOMALY_COLUMNS`."""
    daily = daily_usage(credit_usage_daily)
    if daily.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in ANOMALY_COLUMNS})
    out = dense_series_frame(daily)
    sid = out["series_id"]
    weekday = out["date"].dt.day_of_week
    y = out["credits"]
    weeks = max(window_days // 7, 1)
    same_day = y.groupby([sid, weekday]).shift(1)
    weekday_median = _grouped_rolling_median(same_day, [sid, weekday], weeks, 1)
    same_days = (
        same_day.notna().astype(float).groupby([sid, weekday]).rolling(weeks, min_periods=1).sum()
    )
    same_days = same_days.reset_index(level=[0, 1], drop=True).reindex(y.index)
    previous = y.groupby(sid).shift(1)
    all_days = _grouped_rolling_median(previous, [sid], window_days, 1)
    # short history: the nearer of the two baselines (an anomaly must stand out from both)
    nearer = weekday_median.where(
        (y - weekday_median).abs() <= (y - all_days).abs(), all_days
    ).fillna(all_days)
    expected = weekday_median.where(same_days >= 3, nearer)
    # the scale from each day's deviation from the weekday baseline (the all-days median before
    # any same weekday): not from the nearer baseline, whose deviations are biased low
    deviation = (y - weekday_median.fillna(all_days)).abs().groupby(sid).shift(1)
    mad = _grouped_rolling_median(deviation, [sid], window_days, 7)
    scale = np.maximum.reduce(
        [
            np.nan_to_num(1.4826 * mad.to_numpy(), nan=np.inf),
            0.05 * np.nan_to_num(expected.to_numpy()),
            np.ones(len(out)),
        ]
    )
    out["expected"] = expected
    out["scale"] = scale
    out["robust_z"] = (y - expected) / scale
    out["impact"] = y - expected
    history = y.groupby(sid).cumcount()
    out["is_anomaly"] = (
        (out["robust_z"].abs() >= sensitivity)
        & (out["impact"].abs() >= min_impact)
        & (history >= min_history_days)
    ).fillna(False)
    out["direction"] = np.where(out["impact"] >= 0, "spike", "drop")
    out["date"] = out["date"].astype("datetime64[us]")
    if only_anomalies:
        out = out[out["is_anomaly"]].reset_index(drop=True)
    return out[ANOMALY_COLUMNS].reset_index(drop=True)
