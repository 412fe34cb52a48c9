"""Forecast of credit usage to the end of the current subscription period.

Owns the forecasting method (documented in ``docs/alerts.md``):

1. The last ``lookback_days`` (28) days of the daily series up to ``as_of`` form the window.
2. Weekday factors (when >= 14 days): median, per weekday, of the ratio of each day to the
   centred 7-day rolling median; clipped to [0.1, 5] and normalised to mean 1.
3. The deseasonalised series gets a Theil-Sen line (median of pairwise slopes, breakdown point
   ~29%, so a one-off spike moves neither level nor slope); with < 14 days the level is the
   median and the slope 0.
4. Remaining days are predicted as ``max(0, level(t) * factor(weekday))``; the total adds the
   credits used so far in the period.
5. Prediction interval: a seeded bootstrap of the window's residuals summed over the remaining
   days; its ``(1 - interval)/2`` and ``(1 + interval)/2`` quantiles give low/high.

No forecast (NaN, with ``reason``) before ``min_days`` days of data exist for the series. The
``naive`` method (mean-to-date extrapolation) exists as the bench's baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd

from pipelines.analytics.frames import daily_usage, dense_days, organization_daily, to_day
from pipelines.analytics.periods import anchors_by_organization, period_containing
from pipelines.quotas import QuotaConfig

Method = Literal["robust", "naive"]
FORECAST_COLUMNS: list[str] = [
    "organization_id",
    "organization_name",
    "scope",
    "project_id",
    "project_name",
    "as_of",
    "period_start",
    "period_end",
    "used_so_far",
    "forecast_total",
    "forecast_low",
    "forecast_high",
    "daily_rate",
    "days_of_data",
    "days_elapsed",
    "days_remaining",
    "method",
    "reason",
]


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


def _weekday_factors(y: np.ndarray, weekdays: np.ndarray) -> np.ndarray:
    factors = np.ones(7)
    if len(y) < 14:
        return factors
    base = pd.Series(y).rolling(7, center=True, min_periods=4).median().to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(base > 0, y / base, np.nan)
    for w in range(7):
        r = ratio[(weekdays == w) & ~np.isnan(ratio)]
        if len(r) >= 2:
            factors[w] = float(np.median(r))
    factors = np.clip(factors, 0.1, 5.0)
    return factors / factors.mean()


def _theil_sen(t: np.ndarray, d: np.ndarray) -> tuple[float, float]:
    if len(d) < 14:
        return float(np.median(d)), 0.0
    i, j = np.triu_indices(len(t), k=1)
    slope = float(np.median((d[j] - d[i]) / (t[j] - t[i])))
    intercept = float(np.median(d - slope * t))
    return intercept, slope


def forecast_series(
    history: pd.Series,
    period_start: date,
    period_end: date,
    *,
    min_days: int = 7,
    lookback_days: int = 28,
    interval: float = 0.8,
    method: Method = "robust",
    n_boot: int = 400,
    seed: int = 0,
) -> SeriesForecast:
    """Forecast one dense daily series (date-indexed, last index = ``as_of``) to period end."""
    as_of = history.index[-1]
    start = pd.Timestamp(period_start)
    end = pd.Timestamp(period_end)
    used = float(history[history.index >= start].sum())
    days_elapsed = int((as_of - start).days) + 1
    days_remaining = max(int((end - as_of).days) - 1, 0)
    n = len(history)
    if n < min_days:
        return SeriesForecast(
            used, np.nan, np.nan, np.nan, np.nan, n, days_elapsed, days_remaining, method,
            f"insufficient data: {n} of {min_days} days",
        )  # fmt: skip
    if method == "naive":
        rate = used / days_elapsed if days_elapsed > 0 else 0.0
        total = used + rate * days_remaining
        return SeriesForecast(
            used, total, total, total, rate, n, days_elapsed, days_remaining, "naive", None
        )
    y = history.to_numpy(dtype=float)[-lookback_days:]
    dates = history.index[-len(y) :]
    weekdays = np.asarray(dates.day_of_week)
    t = np.arange(len(y), dtype=float)
    factors = _weekday_factors(y, weekdays)
    d = y / factors[weekdays]
    intercept, slope = _theil_sen(t, d)
    fitted = np.maximum(intercept + slope * t, 0.0) * factors[weekdays]
    residuals = y - fitted
    future = pd.date_range(as_of + pd.Timedelta(days=1), periods=days_remaining, freq="D")
    tf = len(y) - 1 + np.arange(1, days_remaining + 1, dtype=float)
    pred = np.maximum(intercept + slope * tf, 0.0) * factors[np.asarray(future.day_of_week)]
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


def forecast_usage(
    credit_usage_daily: pd.DataFrame,
    organizations: pd.DataFrame | None = None,
    config: QuotaConfig | None = None,
    *,
    as_of: object | None = None,
    min_days: int | None = None,
    method: Method = "robust",
    lookback_days: int = 28,
) -> pd.DataFrame:
    """Forecast every organization (and every budgeted project) to its current period's end.

    ``as_of`` is the last complete UTC day of data (default: the latest day in the data); the
    current period is the subscription period containing it. ``min_days`` defaults to
    ``config.rules.min_days_forecast`` (else 7). Returns :data:`FORECAST_COLUMNS`.
    """
    daily = daily_usage(credit_usage_daily)
    min_days = min_days or (config.rules.min_days_forecast if config else 7)
    interval = config.rules.forecast_interval if config else 0.8
    if as_of is None:
        if daily.empty:
            return pd.DataFrame({c: pd.Series(dtype="object") for c in FORECAST_COLUMNS})
        as_of = daily["date"].max()
    day = to_day(as_of)
    daily = daily[daily["date"] <= day]
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
    rows: list[dict[str, object]] = []

    def run(org_id: str, values: pd.DataFrame, extra: dict[str, object]) -> None:
        period_start, period_end = period_containing(day, anchors.get(org_id, 1))
        if values.empty:
            history = pd.Series([], dtype=float, index=pd.DatetimeIndex([], dtype="datetime64[us]"))
            n = 0
            fc = SeriesForecast(
                0.0, np.nan, np.nan, np.nan, np.nan, n,
                (day.date() - period_start).days + 1, max((period_end - day.date()).days - 1, 0),
                method, f"insufficient data: 0 of {min_days} days",
            )  # fmt: skip
        else:
            history = dense_days(values.set_index("date")["credits"], values["date"].min(), day)
            fc = forecast_series(
                history,
                period_start,
                period_end,
                min_days=min_days,
                lookback_days=lookback_days,
                interval=interval,
                method=method,
            )
        rows.append(
            {
                "organization_id": org_id,
                "organization_name": org_names.get(org_id)
                or (values["organization_name"].iloc[-1] if not values.empty else None),
                **extra,
                "as_of": day,
                "period_start": pd.Timestamp(period_start),
                "period_end": pd.Timestamp(period_end),
                **fc.__dict__,
            }
        )

    by_org = {str(k): g for k, g in org_daily.groupby("organization_id", sort=False)}
    empty = org_daily.iloc[0:0]
    for org_id in org_ids:
        values = by_org.get(org_id, empty)
        run(org_id, values, {"scope": "organization", "project_id": None, "project_name": None})
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
        run(org_id, values, extra)
    out = pd.DataFrame(rows, columns=FORECAST_COLUMNS)
    for col in ("as_of", "period_start", "period_end"):
        out[col] = out[col].astype("datetime64[us]")
    return out
