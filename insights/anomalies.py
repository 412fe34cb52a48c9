"""Robust daily usage anomalies per series (organization, project, deleted projects).

Expected value of a day: the median of the same weekday over the previous ``window_days``
(needs >= 3 such days, else the median of all previous days in the window). Scale: 1.4826 x
the median absolute deviation of the previous days from their own expected values (floored at
5% of the expected value and at 1 credit, so flat series do not divide by zero). A day is an
anomaly when ``|robust z| >= sensitivity`` AND ``|credits - expected| >= min_impact`` credits
(the floor that keeps tiny projects from paging anyone) AND at least ``min_history_days`` of
history exist. Only past days are used for each day's baseline (no look-ahead).
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
    expected = _grouped_rolling_median(same_day, [sid, weekday], weeks, 3)
    previous = y.groupby(sid).shift(1)
    fallback = _grouped_rolling_median(previous, [sid], window_days, 1)
    expected = expected.fillna(fallback)
    deviation = (y - expected).abs().groupby(sid).shift(1)
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
