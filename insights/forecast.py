"""Forecast of credit usage to the end of the current subscription period.

Owns the forecasting methods (documented in ``docs/alerts.md``, "Forecast method"). The current
period is the one containing the day after ``as_of`` (``periods.current_period``); ``as_of`` is
the last complete day of data.

``robust`` (the default) forecasts every series of an organization on its own -- each project
and the deleted-projects line -- and sums them, so a project going live or being deleted is a
step in *its* series, not noise in the total:

1. Weekday factors from the organization total (>= 14 days): per weekday, the median ratio of a
   day to the centred 7-day rolling median; clipped to [0.1, 5] and normalised to mean 1. Every
   series of the organization is deseasonalised with them.
2. Level shift: the last 35 deseasonalised days are split in two where the two segment medians
   fit best (least absolute deviations). The split is a sustained shift when the recent segment
   has >= 3 days, fits clearly better than one Theil-Sen line (>= 20 % less absolute error), the
   medians differ by more than 25 % (and 3 noise scales), and >= 80 % of the recent days (all of
   them for 3-4 days) lie beyond the midpoint of the two medians. A one- or two-day spike fails
   the last test. After a shift the level is the recent segment's median (its Theil-Sen line
   when it has >= 14 days); otherwise a Theil-Sen line over the last 28 days.
3. Declines are damped (the slope's effect decays by 10 % a day) and never go below the 20th
   percentile of the last 7 days: no extrapolation towards zero beyond what the recent days show.
4. Future days: ``max(0, level) x weekday factor``; ``forecast_total = used_so_far + sum``.
5. Interval (calibrated on ``bench/alerts.py``): normal quantiles of the remaining total with
   variance = daily noise (robust scale of day-to-day log changes of the total) + level error
   (noise / sqrt(days behind the level)) + a random-walk drift of 2.5 % of the level per day.

``theil_sen`` is the previous method (one Theil-Sen line on the total, residual bootstrap) and
``naive`` a mean-to-date extrapolation; both are kept as the bench's baselines. No forecast (NaN,
with ``reason``) before ``min_days`` days of data exist for the organization, nor when its data
are stale: its last loaded day is before ``as_of`` (a backfill of an old range), so the days
after it are unknown, not zero (``used_so_far`` NaN too, ``days_of_data`` counts up to the last
loaded day; see :func:`stale_reason`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Literal

import numpy as np
import pandas as pd

from common.periods import (
    CALENDAR_MONTHS,
    anchors_by_organization,
    current_period,
    today_after,
)
from insights.frames import (
    daily_usage,
    organization_daily,
    text_or_none,
    to_day,
    up_to,
)
from insights.quotas import QuotaConfig
from warehouse.derived_schema import QUOTA_FORECASTS

Method = Literal["robust", "theil_sen", "naive"]
FORECAST_COLUMNS: list[str] = QUOTA_FORECASTS.column_names


@dataclass(frozen=True)
class SeriesForecast:
    """Forecast of one series for one period (NaNs and a reason when there is none)."""

    used_so_far: float
    forecast_total: float
    forecast_low: float
    forecast_high: float
    daily_rate: float
    days_of_data: int
    days_elapsed: int
    days_remaining: int
    method: str
    reason: str | None


def _median(values: np.ndarray) -> float:
    """``np.median`` of a 1-d float array (the same value, bit for bit: the middle order
    statistic, or the mean of the two middle ones; NaN when there is a NaN), without its
    generic machinery: the forecast takes a few medians of a few dozen numbers per series."""
    n = len(values)
    if n == 0:
        return math.nan
    half = n // 2
    if n % 2:
        part = np.partition(values, (half, n - 1))
        middle = float(part[half])
    else:
        part = np.partition(values, (half - 1, half, n - 1))
        middle = float((part[half - 1] + part[half]) / 2.0)
    return math.nan if math.isnan(part[n - 1]) else middle


def _centred_median_7(values: np.ndarray) -> np.ndarray:
    """``pd.Series(values).rolling(7, center=True, min_periods=4).median()`` of a series of
    finite numbers (the same values): the median of each day and the 3 days either side, fewer
    at the ends."""
    n = len(values)
    if n < 7 or not np.isfinite(values).all():
        return pd.Series(values).rolling(7, center=True, min_periods=4).median().to_numpy()
    padded = np.concatenate((_INF_3, values, _INF_3))  # the days beyond the ends sort last
    ordered = np.sort(np.lib.stride_tricks.sliding_window_view(padded, 7), axis=1)
    lo, hi, odd = _window_middles(n)
    rows = np.arange(n)
    low, high = ordered[rows, lo], ordered[rows, hi]
    return np.where(odd, low, (low + high) / 2.0)


_INF_3 = np.full(3, np.inf)


@cache
def _window_middles(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each day of an ``n``-day series, the positions of the middle order statistics of
    its centred 7-day window (4 to 7 days), and whether it has an odd number of days."""
    i = np.arange(n)
    counts = np.minimum(i, 3) + 1 + np.minimum(n - 1 - i, 3)
    return (counts - 1) // 2, counts // 2, counts % 2 == 1


def _quantile(values: np.ndarray, q: float) -> float:
    """``np.quantile(values, q)`` (its default, linear method) of a short 1-d float array, the
    same value bit for bit, computed as numpy does (its virtual index, the two order statistics
    either side, its interpolation) without its generic machinery."""
    n = len(values)
    virtual = (n - 1) * q
    below = math.floor(virtual)
    if virtual >= n - 1:
        below = above = -1
    elif virtual < 0:
        below = above = 0
    else:
        above = below + 1
    ordered = np.sort(values)
    if math.isnan(ordered[-1]):
        return math.nan
    a, b = float(ordered[below]), float(ordered[above])
    t = virtual - below
    diff = b - a
    return b - diff * (1 - t) if t >= 0.5 else a + diff * t


@cache
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.triu_indices(n, k=1)``: every pair of points of an ``n``-point line fit."""
    i, j = np.triu_indices(n, k=1)
    i.flags.writeable = False
    j.flags.writeable = False
    return i, j


def _weekday_factors(y: np.ndarray, weekdays: np.ndarray) -> np.ndarray:
    factors = np.ones(7)
    if len(y) < 14:
        return factors
    base = _centred_median_7(y)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(base > 0, y / base, np.nan)
    # per weekday, the median of its ratios (those that exist): sorted by weekday then ratio,
    # the middle order statistics of each weekday's run
    keys = np.where(np.isnan(ratio), 7, weekdays)
    ordered = ratio[np.lexsort((ratio, keys))]
    counts = np.bincount(keys, minlength=8)[:7]
    starts = np.cumsum(counts) - counts
    last = len(ordered) - 1
    low = ordered[np.clip(starts + (counts - 1) // 2, 0, last)]
    high = ordered[np.clip(starts + counts // 2, 0, last)]
    medians = np.where(counts % 2 == 1, low, (low + high) / 2.0)
    factors = np.where(counts >= 2, medians, factors)
    factors = np.clip(factors, 0.1, 5.0)
    return factors / factors.mean()


SHIFT_WINDOW = 35
SHIFT_MIN_DAYS = 3
SHIFT_MIN_JUMP = 0.4
TREND_WINDOW = 28
RECENT_TREND_WINDOW = 14
SPIKE_WINDOW = 120
DRIFT_PER_DAY = 0.06
FLOOR_SHARE = 0.25
Z = {0.5: 0.6745, 0.8: 1.2816, 0.9: 1.6449, 0.95: 1.96}


@dataclass(frozen=True)
class Level:
    """Where a deseasonalised series stands: level at the last day, slope per day, and the
    level shift followed (days since it, None when there is none)."""

    level: float
    slope: float
    floor: float
    shift_days: int | None
    support_days: int


@dataclass(frozen=True)
class _SplitLayout:
    """The candidate splits of an ``n``-day series (recent segment >= ``min_days`` days,
    before it >= 3): per candidate (a row), which days are recent, and where the middle order
    statistics of each segment sit once a row is sorted with the other segment's days last."""

    ks: np.ndarray
    recent: np.ndarray
    rows: np.ndarray
    recent_middle: tuple[np.ndarray, np.ndarray]
    before_middle: tuple[np.ndarray, np.ndarray]


@cache
def _split_layout(n: int, min_days: int) -> _SplitLayout:
    ks = np.arange(min_days, n - 3)
    recent = np.arange(n)[None, :] >= (n - ks)[:, None]
    before = n - ks
    return _SplitLayout(
        ks, recent, np.arange(len(ks)), ((ks - 1) // 2, ks // 2), ((before - 1) // 2, before // 2)
    )


def _row_medians(
    ordered: np.ndarray, rows: np.ndarray, middle: tuple[np.ndarray, ...]
) -> np.ndarray:
    """Median of each sorted row whose entries of interest come first: the mean of its two
    middle order statistics (the same one twice for an odd count)."""
    lo, hi = middle
    return (ordered[rows, lo] + ordered[rows, hi]) / 2.0


def _best_split(d: np.ndarray, min_days: int) -> tuple[float, int, float, float] | None:
    """The split of ``d`` into (before, recent >= min_days days, before >= 3 days) with the
    least absolute deviation from the two segment medians: (cost, recent length, medians)."""
    n = len(d)
    layout = _split_layout(n, min_days)
    if len(layout.ks) == 0:
        return None
    recent = layout.recent
    mr = _row_medians(
        np.sort(np.where(recent, d, np.inf), axis=1), layout.rows, layout.recent_middle
    )
    mb = _row_medians(
        np.sort(np.where(recent, np.inf, d), axis=1), layout.rows, layout.before_middle
    )
    centre = np.where(recent, mr[:, None], mb[:, None])
    cost = np.abs(d - centre).sum(axis=1)
    best = int(np.argmin(cost))
    return float(cost[best]), int(layout.ks[best]), float(mr[best]), float(mb[best])


def spike_history(d: np.ndarray) -> tuple[float, float]:
    """(spikes per day, median extra credits of a spike) in a deseasonalised series: days above
    3x their centred 7-day median (and above it by more than 1 credit)."""
    if len(d) < 14:
        return 0.0, 0.0
    base = _centred_median_7(d)
    excess = d - base
    spikes = (d > 3.0 * base) & (excess > 1.0)
    if not spikes.any():
        return 0.0, 0.0
    return float(spikes.sum() / len(d)), float(_median(excess[spikes]))


def _poisson_quantile(mean: float, q: float) -> int:
    """Smallest k with P(Poisson(mean) <= k) >= q."""
    k, term = 0, float(np.exp(-mean))
    cdf = term
    while cdf < q and k < 1000:
        k += 1
        term *= mean / k
        cdf += term
    return k


def _noise_scale(d: np.ndarray) -> float:
    """Robust scale of day-to-day noise (in the series' units)."""
    if len(d) < 3:
        return 0.0
    return float(1.4826 * _median(np.abs(np.diff(d))) / np.sqrt(2.0))


def level_shift(d: np.ndarray, min_days: int = SHIFT_MIN_DAYS) -> int | None:
    """Length of the recent segment after a sustained level shift of ``d``, or None."""
    d = d[-SHIFT_WINDOW:]
    n = len(d)
    if n < min_days + 4:
        return None
    t = np.arange(n, dtype=float)
    intercept, slope = _theil_sen(t, d, min_points=7)
    line_cost = float(np.abs(d - (intercept + slope * t)).sum())
    best = _best_split(d, min_days)
    if best is None:
        return None
    cost, k, mr, mb = best
    scale = _noise_scale(d[:-k])
    jump = abs(mr - mb)
    if cost > 0.8 * line_cost or jump <= max(SHIFT_MIN_JUMP * max(mr, mb), 4.0 * scale, 1e-9):
        return None
    mid = (mr + mb) / 2.0
    recent = d[-k:]
    beyond = (recent > mid) if mr > mb else (recent < mid)
    needed = 1.0 if k <= 4 else 0.8
    return k if beyond.mean() >= needed else None


def series_level(d: np.ndarray) -> Level:
    """Level, slope and floor of a deseasonalised daily series (oldest first)."""
    n = len(d)
    recent7 = d[-7:]
    floor = _quantile(recent7, 0.2) if n else 0.0
    k = level_shift(d)
    if k is not None:
        seg = d[-k:]
        if k >= 14:
            t = np.arange(k, dtype=float)
            intercept, slope = _theil_sen(t, seg)
            return Level(intercept + slope * (k - 1), slope, floor, k, k)
        return Level(float(_median(seg)), 0.0, floor, k, k)
    best: tuple[float, float, float, int] | None = None
    for size in (TREND_WINDOW, RECENT_TREND_WINDOW):
        window = d[-size:]
        if best is not None and len(d) < size + 7:
            continue  # the short window only counts when the long one is full
        t = np.arange(len(window), dtype=float)
        intercept, slope = _theil_sen(t, window)
        slope = _shrunk(slope, window - (intercept + slope * t))
        intercept = float(_median(window - slope * t)) if len(t) else 0.0
        # which line describes the last week better: a trend that changed lately wins, but
        # only when clearly better (a 14-day slope is noisy)
        misfit = float(np.abs(window[-7:] - (intercept + slope * t[-7:])).sum()) if len(t) else 0.0
        end_level = intercept + slope * t[-1] if len(t) else 0.0
        if best is None or misfit < 0.6 * best[0]:
            best = (misfit, end_level, slope, len(window))
    assert best is not None
    return Level(best[1], best[2], floor, None, best[3])


def _shrunk(slope: float, residuals: np.ndarray) -> float:
    """The slope shrunk towards 0 by its uncertainty: x t^2 / (t^2 + 4), t = slope / its
    standard error (robust residual scale); a slope within noise barely counts."""
    n = len(residuals)
    if n < 3 or slope == 0:
        return slope
    sigma = 1.4826 * float(_median(np.abs(residuals - _median(residuals))))
    se = sigma * np.sqrt(12.0 / (n * (n * n - 1.0)))
    if se <= 0:
        return slope
    t2 = (slope / se) ** 2
    return float(slope * t2 / (t2 + 4.0))


def level_path(level: Level, horizon: int) -> np.ndarray:
    """Deseasonalised level for the next ``horizon`` days. Growth continues linearly; a decline
    continues geometrically (the same relative decline per day, at most 10 %), so it approaches
    zero but never gets there, and never goes below the floor the recent days support."""
    h = np.arange(1, horizon + 1, dtype=float)
    if level.slope >= 0 or level.level <= 0:
        return np.maximum(level.level + level.slope * h, 0.0)
    rate = max(level.slope / level.level, -0.1)
    path = level.level * np.exp(rate * h)
    return np.maximum(path, FLOOR_SHARE * min(level.floor, level.level))


def _theil_sen(t: np.ndarray, d: np.ndarray, min_points: int = 14) -> tuple[float, float]:
    if len(d) < min_points:
        return (float(_median(d)) if len(d) else 0.0), 0.0
    i, j = _pairs(len(t))
    slope = float(_median((d[j] - d[i]) / (t[j] - t[i])))
    intercept = float(_median(d - slope * t))
    return intercept, slope


def history_days_needed(lookback_days: int = 28) -> int:
    """Days of history (ending at ``as_of``) a forecast looks at: the spike history, the
    level-shift window and the trend windows; older days only count towards ``days_of_data``."""
    return max(SPIKE_WINDOW, SHIFT_WINDOW, TREND_WINDOW, lookback_days)


def component_days_needed(lookback_days: int = 28) -> int:
    """Days of history (ending at ``as_of``) the robust method looks at in each project and
    deleted-projects line of an organization (the level-shift and trend windows): only the
    organization totals (:func:`history_days_needed`) and the budgeted projects, forecast on
    their own, look further back."""
    return max(SHIFT_WINDOW, lookback_days)


def stale_reason(last_loaded: pd.Timestamp, as_of: pd.Timestamp, period_start: date) -> str:
    """Why an organization whose data end on ``last_loaded``, before ``as_of``, gets no forecast
    (nor used-so-far figure) for the period starting on ``period_start``."""
    last = f"{last_loaded:%Y-%m-%d}"
    if last_loaded < pd.Timestamp(period_start):
        return (
            f"no data for the current period (from {period_start:%Y-%m-%d}): last loaded day {last}"
        )
    missing = (as_of - last_loaded).days
    return (
        f"no data after {last} (the last loaded day): {missing} day"
        f"{'s' if missing != 1 else ''} of the current period up to {as_of:%Y-%m-%d} not loaded"
    )


def _period_days(
    as_of: pd.Timestamp, period_start: date, period_end: date
) -> tuple[pd.Timestamp, pd.Timestamp, int, int]:
    start, end = pd.Timestamp(period_start), pd.Timestamp(period_end)
    days_elapsed = max(int((as_of - start).days) + 1, 0)
    days_remaining = max(int((end - as_of).days) - 1, 0)
    return start, end, days_elapsed, days_remaining


def forecast_series(
    history: pd.Series,
    period_start: date,
    period_end: date,
    *,
    components: list[pd.Series] | None = None,
    min_days: int = 7,
    lookback_days: int = 28,
    interval: float = 0.8,
    method: Method = "robust",
    n_boot: int = 400,
    seed: int = 0,
    days_of_data: int | None = None,
) -> SeriesForecast:
    """Forecast one dense daily series (date-indexed, last index = ``as_of``) to period end.

    ``components`` (robust method): the series that add up to ``history`` (projects, deleted
    projects), each forecast on its own and summed; default: ``history`` alone.
    ``days_of_data``: the series' days of history when ``history`` holds only its last
    :func:`history_days_needed` days (default: ``len(history)``).
    """
    dates = history.index[-max(SHIFT_WINDOW, lookback_days) :]
    parts = (
        [part.reindex(dates, fill_value=0.0).to_numpy(dtype=float) for part in components]
        if components
        else None
    )
    return forecast_values(
        history.to_numpy(dtype=float),
        history.index[-1],
        period_start,
        period_end,
        components=parts,
        min_days=min_days,
        lookback_days=lookback_days,
        interval=interval,
        method=method,
        n_boot=n_boot,
        seed=seed,
        days_of_data=days_of_data,
    )


def _weekdays(as_of: pd.Timestamp, days: int, *, future: bool = False) -> np.ndarray:
    """Weekdays (Monday 0) of the ``days`` days ending on ``as_of`` (oldest first), or of the
    ``days`` days after it."""
    if future:
        return (as_of.day_of_week + 1 + np.arange(days)) % 7
    return (as_of.day_of_week - np.arange(days - 1, -1, -1)) % 7


def forecast_values(
    values: np.ndarray,
    as_of: pd.Timestamp,
    period_start: date,
    period_end: date,
    *,
    components: list[np.ndarray] | None = None,
    min_days: int = 7,
    lookback_days: int = 28,
    interval: float = 0.8,
    method: Method = "robust",
    n_boot: int = 400,
    seed: int = 0,
    days_of_data: int | None = None,
) -> SeriesForecast:
    """:func:`forecast_series` on plain arrays: ``values`` holds one credit figure per day
    ending on ``as_of`` (no gaps), each of ``components`` the same for the last
    ``max(SHIFT_WINDOW, lookback_days)`` of those days."""
    start, _, days_elapsed, days_remaining = _period_days(as_of, period_start, period_end)
    since_start = min(int((as_of - start).days) + 1, len(values))
    used = float(values[len(values) - since_start :].sum()) if since_start > 0 else 0.0
    n = len(values) if days_of_data is None else days_of_data
    if n < min_days:
        return SeriesForecast(
            used, np.nan, np.nan, np.nan, np.nan, n, days_elapsed, days_remaining, method,
            f"insufficient data: {n} of {min_days} days",
        )  # fmt: skip
    if method == "naive":
        rate = used / days_elapsed if days_elapsed > 0 else float(values[-7:].mean())
        total = used + rate * days_remaining
        return SeriesForecast(
            used, total, total, total, rate, n, days_elapsed, days_remaining, "naive", None
        )
    if method == "theil_sen":
        return _theil_sen_forecast(
            values, as_of, used, days_elapsed, days_remaining, lookback_days, interval, n_boot,
            seed, n,
        )  # fmt: skip
    y = values[-max(SHIFT_WINDOW, lookback_days) :]
    weekdays = _weekdays(as_of, len(y))
    factors = _weekday_factors(y[-lookback_days:], weekdays[-lookback_days:])
    future_factors = factors[_weekdays(as_of, days_remaining, future=True)]
    parts = components if components else [y]
    pred = np.zeros(days_remaining)
    shifted = False
    for part in parts:
        if not part.any():
            continue
        level = series_level(part / factors[weekdays])
        shifted |= level.shift_days is not None
        pred += level_path(level, days_remaining) * future_factors
    total = used + float(pred.sum())
    d_total = y / factors[weekdays]
    total_level = series_level(d_total)
    scale = _noise_scale(np.log(np.maximum(d_total[-lookback_days:], 1e-9) + 1e-6))
    scale = min(scale, 1.0)
    mean_level = float(pred.mean()) if days_remaining else 0.0
    h = float(days_remaining)
    noise_var = float(((pred * scale) ** 2).sum())
    level_var = (pred.sum() * scale / np.sqrt(max(total_level.support_days, 3))) ** 2
    drift_var = (mean_level * DRIFT_PER_DAY) ** 2 * h * (h + 1) * (2 * h + 1) / 6.0
    sd = float(np.sqrt(noise_var + level_var + drift_var))
    z = Z.get(round(interval, 2), 1.2816)
    low = max(used, total - z * sd)
    high = total + z * sd
    # spikes recur at the rate the history shows: the upper end allows for as many as the
    # interval's upper quantile of that Poisson rate over the remaining days
    rate_spikes, spike_size = spike_history(values[-SPIKE_WINDOW:])
    if days_remaining and rate_spikes > 0:
        high += _poisson_quantile(rate_spikes * h, (1 + interval) / 2) * spike_size
    rate = mean_level if days_remaining else float(_median(y[-7:]))
    name = ("per_series_" if len(parts) > 1 else "") + ("level_shift" if shifted else "trend")
    return SeriesForecast(used, total, low, high, rate, n, days_elapsed, days_remaining, name, None)


def _theil_sen_forecast(
    values: np.ndarray,
    as_of: pd.Timestamp,
    used: float,
    days_elapsed: int,
    days_remaining: int,
    lookback_days: int,
    interval: float,
    n_boot: int,
    seed: int,
    n: int,
) -> SeriesForecast:
    """The previous method: one Theil-Sen line on the total, residual bootstrap interval."""
    y = values[-lookback_days:]
    weekdays = _weekdays(as_of, len(y))
    t = np.arange(len(y), dtype=float)
    factors = _weekday_factors(y, weekdays)
    d = y / factors[weekdays]
    intercept, slope = _theil_sen(t, d)
    fitted = np.maximum(intercept + slope * t, 0.0) * factors[weekdays]
    residuals = y - fitted
    tf = len(y) - 1 + np.arange(1, days_remaining + 1, dtype=float)
    future = _weekdays(as_of, days_remaining, future=True)
    pred = np.maximum(intercept + slope * tf, 0.0) * factors[future]
    total = used + float(pred.sum())
    if days_remaining > 0:
        rng = np.random.default_rng(seed)
        draws = rng.choice(residuals, size=(n_boot, days_remaining), replace=True)
        sims = np.maximum(pred[None, :] + draws, 0.0).sum(axis=1) + used
        low, high = np.quantile(sims, [(1 - interval) / 2, (1 + interval) / 2])
        low, high = max(float(low), used), max(float(high), total)
        low = min(low, total)
    else:
        low = high = total
    rate = float(pred.mean()) if days_remaining > 0 else float(intercept + slope * t[-1])
    name = "theil_sen_weekday" if len(y) >= 14 else "median_level"
    return SeriesForecast(used, total, low, high, rate, n, days_elapsed, days_remaining, name, None)


def _budgeted_projects(
    daily: pd.DataFrame, organizations: pd.DataFrame | None, config: QuotaConfig | None
) -> list[tuple[str, str]]:
    """(organization_id, project_id) of projects that have a budget in the config."""
    if config is None:
        return []
    out: list[tuple[str, str]] = []
    names = {}
    if organizations is not None and not organizations.empty:
        names = dict(
            zip(
                organizations["organization_id"].astype(str),
                organizations["organization_name"],
                strict=True,
            )
        )
    projects = daily[daily["scope"] == "project"][
        ["organization_id", "organization_name", "project_id", "project_name"]
    ].drop_duplicates(["organization_id", "project_id"], keep="last")
    for row in projects.itertuples(index=False):
        budgets = config.project_budgets(
            row.organization_id, names.get(row.organization_id, row.organization_name)
        )
        if row.project_id in budgets or row.project_name in budgets:
            out.append((row.organization_id, row.project_id))
    return out


def _day_numbers(dates: pd.Series) -> np.ndarray:
    """Days since the epoch of naive UTC midnights."""
    return dates.to_numpy(dtype="datetime64[us]").astype("datetime64[D]").astype(np.int64)


def _dense(days: np.ndarray, credits: np.ndarray, first: int, last: int) -> np.ndarray:
    """Credits per day of ``[first, last]`` (day numbers), missing days as 0, one day's rows
    summed."""
    out = np.zeros(last - first + 1)
    np.add.at(out, days - first, credits)
    return out


def _groups(
    frame: pd.DataFrame,
    keys: list[str],
    since: int | None,
    *,
    name_column: str | None = None,
) -> Iterator[tuple]:
    """Per group of ``keys`` (sorted, missing keys last): the organization id, the day numbers
    and credits of its rows from day ``since`` on (all when None), oldest first, and the last
    row's ``name_column``."""
    if frame.empty:
        return
    codes = frame.groupby(keys, dropna=False, sort=True).ngroup().to_numpy()
    days = _day_numbers(frame["date"])
    order = np.lexsort((days, codes))
    codes, days = codes[order], days[order]
    credits = frame["credits"].to_numpy(dtype=float)[order]
    org_ids = frame["organization_id"].to_numpy()[order]
    names = frame[name_column].to_numpy()[order] if name_column else None
    bounds = np.flatnonzero(np.diff(codes)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [len(codes)]))
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        keep = slice(start, end)
        if since is not None:
            keep = slice(start + int(np.searchsorted(days[start:end], since)), end)
        group = (str(org_ids[start]), days[keep], credits[keep])
        yield (*group, names[end - 1]) if names is not None else group


def forecast_usage(
    credit_usage_daily: pd.DataFrame,
    organizations: pd.DataFrame | None = None,
    config: QuotaConfig | None = None,
    *,
    as_of: object | None = None,
    min_days: int | None = None,
    method: Method = "robust",
    lookback_days: int = 28,
    first_days: Mapping[tuple[str, str | None], pd.Timestamp] | None = None,
    last_days: Mapping[str, pd.Timestamp] | None = None,
) -> pd.DataFrame:
    """Forecast every organization (and every budgeted project) to its current period's end.

    ``as_of`` is the last complete UTC day of data (default: the latest day in the data); the
    current period is the subscription period containing the day after it (today, see
    ``periods.current_period``): on a period's first day the new period is forecast from the
    history, with nothing used yet. ``min_days`` defaults to ``config.rules.min_days_forecast``
    (else 7). Organization forecasts of the robust method sum per-series forecasts (projects,
    deleted projects). Returns :data:`FORECAST_COLUMNS`.

    ``first_days`` (``(organization_id, None)`` for an organization, ``(organization_id,
    project_id)`` for a project) gives each series' first day when ``credit_usage_daily`` holds
    only the last :func:`history_days_needed` days (``insights.usage_window``): the
    forecasts are then the same as over the whole history. ``last_days`` (organization id ->
    its last loaded day up to ``as_of``) likewise; default: its last day in the data. An
    organization whose last loaded day is before ``as_of`` gets no forecast and no
    ``used_so_far`` (NaN, ``reason`` from :func:`stale_reason`).
    """
    daily = daily_usage(credit_usage_daily)
    min_days = min_days or (config.rules.min_days_forecast if config else 7)
    interval = config.rules.forecast_interval if config else 0.8
    if as_of is None:
        if daily.empty:
            return pd.DataFrame({c: pd.Series(dtype="object") for c in FORECAST_COLUMNS})
        as_of = daily["date"].max()
    day = to_day(as_of)
    daily = up_to(daily, day)
    anchors = anchors_by_organization(organizations)
    org_daily = organization_daily(daily)
    org_names: dict[str, str] = {}
    if organizations is not None and not organizations.empty:
        org_names = dict(
            zip(
                organizations["organization_id"].astype(str),
                organizations["organization_name"],
                strict=True,
            )
        )
    org_ids = sorted(set(org_daily["organization_id"]) | set(org_names))
    if last_days is None:
        last_days = {
            str(k): pd.Timestamp(v)
            for k, v in org_daily.groupby("organization_id")["date"].max().items()
        }
    rows: list[dict[str, object]] = []

    today = today_after(day)
    last_day = _day_numbers(pd.Series([day]))[0]
    window = component_days_needed(lookback_days)
    parts_by_org: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    if method == "robust":
        series = daily[daily["scope"] != "organization"]
        for org_id, days, credits in _groups(
            series, ["organization_id", "scope", "project_id"], last_day - window + 1
        ):
            parts_by_org.setdefault(org_id, []).append((days, credits))

    def run(
        org_id: str,
        days: np.ndarray,
        credits: np.ndarray,
        name: object,
        extra: dict[str, object],
        components: list[tuple[np.ndarray, np.ndarray]] | None = None,
    ) -> None:
        period_start, period_end = current_period(today, anchors.get(org_id, CALENDAR_MONTHS))
        last_loaded = last_days.get(org_id)
        if len(days) and last_loaded is not None and last_loaded < day:
            first = (first_days or {}).get((org_id, text_or_none(extra["project_id"])))
            first_day = first if first is not None else pd.Timestamp(int(days.min()), unit="D")
            _, _, elapsed, remaining = _period_days(day, period_start, period_end)
            fc = SeriesForecast(
                np.nan, np.nan, np.nan, np.nan, np.nan,
                max((last_loaded - first_day).days + 1, 0), elapsed, remaining, method,
                stale_reason(last_loaded, day, period_start),
            )  # fmt: skip
        elif not len(days):
            n = 0
            fc = SeriesForecast(
                0.0, np.nan, np.nan, np.nan, np.nan, n,
                max((day.date() - period_start).days + 1, 0),
                max((period_end - day.date()).days - 1, 0),
                method, f"insufficient data: 0 of {min_days} days",
            )  # fmt: skip
        else:
            history = _dense(days, credits, int(days.min()), last_day)
            first = (first_days or {}).get((org_id, text_or_none(extra["project_id"])))
            days_of_data = None if first is None else (day - first).days + 1
            if method != "robust":
                index = pd.date_range(end=day, periods=len(history), freq="D", unit="us")
                fc = forecast_series(
                    pd.Series(history, index=index),
                    period_start,
                    period_end,
                    min_days=min_days,
                    lookback_days=lookback_days,
                    interval=interval,
                    method=method,
                    days_of_data=days_of_data,
                )
            else:
                first_kept = last_day - min(len(history), window) + 1
                parts = [
                    _dense(d[d >= first_kept], c[d >= first_kept], first_kept, last_day)
                    for d, c in components or []
                ]
                fc = forecast_values(
                    history,
                    day,
                    period_start,
                    period_end,
                    components=parts or None,
                    min_days=min_days,
                    lookback_days=lookback_days,
                    interval=interval,
                    days_of_data=days_of_data,
                )
        rows.append(
            {
                "organization_id": org_id,
                "organization_name": org_names.get(org_id) or name,
                **extra,
                "as_of": day,
                "period_start": pd.Timestamp(period_start),
                "period_end": pd.Timestamp(period_end),
                **fc.__dict__,
            }
        )

    org_rows = {
        org_id: (days, credits, name)
        for org_id, days, credits, name in _groups(
            org_daily, ["organization_id"], None, name_column="organization_name"
        )
    }
    no_days, no_credits = np.zeros(0, dtype=np.int64), np.zeros(0)
    for org_id in org_ids:
        days, credits, name = org_rows.get(org_id, (no_days, no_credits, None))
        run(
            org_id,
            days,
            credits,
            name,
            {"scope": "organization", "project_id": None, "project_name": None},
            parts_by_org.get(org_id),
        )
    budgeted = _budgeted_projects(daily, organizations, config)
    projects = daily[daily["scope"] == "project"]
    by_project = (
        {(str(o), str(p)): g for (o, p), g in projects.groupby(["organization_id", "project_id"])}
        if budgeted
        else {}
    )
    for org_id, project_id in budgeted:
        values = by_project[(org_id, project_id)]
        extra = {
            "scope": "project",
            "project_id": project_id,
            "project_name": values["project_name"].iloc[-1],
        }
        run(
            org_id,
            _day_numbers(values["date"]),
            values["credits"].to_numpy(dtype=float),
            values["organization_name"].iloc[-1],
            extra,
        )
    out = pd.DataFrame(rows, columns=FORECAST_COLUMNS)
    for col in ("as_of", "period_start", "period_end"):
        out[col] = out[col].astype("datetime64[us]")
    return out
