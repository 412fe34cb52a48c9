"""Quota status: credit use and forecast against budget, resource counts against limits.

One row per organization (and budgeted project) for credits and one row per organization and
limited resource (the ``quota_status`` table). ``days_until_limit`` is the number of days from
``as_of`` until the limit is reached at the current pace (0 when already reached, NaN when the
pace is zero or unknown); ``limit_date`` is that day. Credits reset every subscription period, so
for credits both are only set when the limit is reached within the current period; otherwise
``limit_outlook`` says ``not reached this period`` (``reached`` when it already is, ``reached
this period`` when ``limit_date`` is set, ``no limit`` without one; resources: ``not in sight``
when the pace never gets there within ten years). Credit pace = the forecast's daily rate
(mean-to-date when there is no forecast). Credits of an organization whose data end before
``as_of`` (the forecast's ``used_so_far`` is NaN, see ``forecast.stale_reason``) are not
measured: ``value``, ``used_pct`` and the pace are NaN, ``status`` is ``no_data`` and
``limit_outlook`` ``no data``, and no credit alert can fire. Resource pace = the least-squares
slope of the counts observed over the last 30 days (only growth counts).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from common.periods import anchors_by_organization, period_containing
from insights.frames import text_or_none, to_day, to_naive_utc
from insights.quotas import RESOURCE_NAMES, QuotaConfig
from warehouse.derived_schema import QUOTA_STATUS

MAX_HORIZON_DAYS = 3650  # beyond ten years at the current pace: "not in sight" (NaN)
STATUS_COLUMNS: list[str] = QUOTA_STATUS.column_names
RESOURCE_WINDOW_DAYS = 30
"""Resource pace: the slope of the counts observed over this many days before the latest."""
MIN_SLOPE_SPAN_DAYS = 1.0
"""A resource's pace per day needs observations at least this many days apart."""
NOT_THIS_PERIOD = "not reached this period"
NO_DATA = "no_data"
"""Status of credits whose current period is not loaded up to ``as_of`` (stale data: the
forecast's ``reason`` says from when): nothing is measured, so nothing is 'ok' either."""


def _days_until(value: float, limit: float, rate: float) -> float:
    if value >= limit:
        return 0.0
    if not rate or math.isnan(rate) or rate <= 1e-9:
        return math.nan
    days = math.ceil((limit - value) / rate)
    return float(days) if days <= MAX_HORIZON_DAYS else math.nan


def _status(value: float, limit: float | None, forecast: float) -> str:
    if limit is None or (isinstance(limit, float) and math.isnan(limit)):
        return "no_limit"
    if math.isnan(value):
        return NO_DATA
    if value >= limit:
        return "exceeded"
    if not math.isnan(forecast) and forecast >= limit:
        return "forecast_exceeds"
    if limit > 0 and value >= 0.8 * limit:
        return "warning"
    return "ok"


def _pct(value: float, limit: float | None) -> float:
    if limit is None or limit <= 0 or math.isnan(value):
        return math.nan
    return 100.0 * value / limit


def quota_status(
    forecasts: pd.DataFrame,
    organizations: pd.DataFrame,
    config: QuotaConfig,
    resource_usage: pd.DataFrame | None = None,
    *,
    as_of: object | None = None,
    observation_counts: dict[str, int] | None = None,
) -> pd.DataFrame:
    """Credit and resource status per organization; columns are :data:`STATUS_COLUMNS`.

    ``forecasts`` is the output of :func:`insights.forecast.forecast_usage`.
    ``as_of`` (for resources) defaults to the forecasts' ``as_of``, else the latest observation.
    ``observation_counts`` (organization id -> observations up to ``as_of``) when
    ``resource_usage`` holds only each organization's last :data:`RESOURCE_WINDOW_DAYS` days
    (``usage_window.load_resource_window``); default: the rows given.
    """
    orgs = {str(r["organization_id"]): r for r in organizations.to_dict("records")}
    anchors = anchors_by_organization(organizations)
    rows: list[dict[str, object]] = []
    for fc in forecasts.to_dict("records"):
        org_id = str(fc["organization_id"])
        org = orgs.get(org_id, {})
        name = org.get("organization_name", fc.get("organization_name"))
        subscription = org.get("subscription")
        if fc["scope"] == "organization":
            limit = config.credit_budget(org_id, name, subscription)
        else:
            budgets = config.project_budgets(org_id, name)
            pid, pname = text_or_none(fc["project_id"]), text_or_none(fc["project_name"])
            limit = budgets.get(pid or "", budgets.get(pname or ""))
        used = float(fc["used_so_far"])
        forecast = float(fc["forecast_total"])
        rate = float(fc["daily_rate"])
        if math.isnan(rate) and fc["days_elapsed"]:
            rate = used / float(fc["days_elapsed"])
        days = _days_until(used, limit, rate) if limit is not None else math.nan
        as_of_day = pd.Timestamp(fc["as_of"])
        period_end = pd.Timestamp(fc["period_end"])
        if not math.isnan(days) and as_of_day + pd.Timedelta(days=days) >= period_end:
            days = math.nan  # credits reset at the period's end: not reached this period
        if limit is None:
            outlook = "no limit"
        elif math.isnan(used):
            outlook = "no data"
        elif used >= limit:
            outlook = "reached"
        else:
            outlook = NOT_THIS_PERIOD if math.isnan(days) else "reached this period"
        rows.append(
            {
                "organization_id": org_id,
                "organization_name": name,
                "subscription": subscription,
                "scope": fc["scope"],
                "project_id": fc["project_id"],
                "project_name": fc["project_name"],
                "metric": "credits",
                "as_of": as_of_day,
                "period_start": fc["period_start"],
                "period_end": fc["period_end"],
                "value": used,
                "limit": limit,
                "used_pct": _pct(used, limit),
                "forecast_total": forecast,
                "forecast_low": float(fc["forecast_low"]),
                "forecast_high": float(fc["forecast_high"]),
                "forecast_pct": _pct(forecast, limit),
                "days_of_data": fc["days_of_data"],
                "daily_rate": rate,
                "days_until_limit": days,
                "limit_date": as_of_day + pd.Timedelta(days=days) if not math.isnan(days) else None,
                "limit_outlook": outlook,
                "status": _status(used, limit, forecast),
            }
        )
    if resource_usage is not None and not resource_usage.empty:
        if as_of is None and not forecasts.empty:
            as_of = forecasts["as_of"].max()
        rows.extend(
            _resource_rows(resource_usage, orgs, anchors, config, as_of, observation_counts or {})
        )
    out = pd.DataFrame(rows, columns=STATUS_COLUMNS)
    for col in ("as_of", "period_start", "period_end", "limit_date"):
        out[col] = pd.to_datetime(out[col]).astype("datetime64[us]")
    out["limit"] = out["limit"].astype(float)
    return out


def _segment_slopes(x: np.ndarray, y: np.ndarray, firsts: list[int], ends: list[int]) -> np.ndarray:
    """The least-squares slope of ``y`` over ``x`` (days) in each segment ``[firsts[i],
    ends[i])`` (what ``np.polyfit(x, y, 1)[0]`` gives, but exactly 0 for a constant ``y``), NaN
    where the segment has fewer than 2 points or spans less than :data:`MIN_SLOPE_SPAN_DAYS`
    (a pace per day from snapshots minutes apart would be noise: one deployment more in 10
    minutes is not 144 a day). One pass over all segments: polyfit's general solver cost
    ~0.2 ms a call, one per organization and resource."""
    lo, hi = np.asarray(firsts, dtype=np.int64), np.asarray(ends, dtype=np.int64)
    sizes = hi - lo
    segment = np.repeat(np.arange(len(sizes)), sizes)
    offsets = np.cumsum(sizes) - sizes
    at = lo[segment] + np.arange(int(sizes.sum())) - offsets[segment]
    xs, ys = x[at], y[at]
    mean_x = np.bincount(segment, xs, len(sizes)) / sizes
    mean_y = np.bincount(segment, ys, len(sizes)) / sizes
    dx = xs - mean_x[segment]
    sxx = np.bincount(segment, dx * dx, len(sizes))
    sxy = np.bincount(segment, dx * (ys - mean_y[segment]), len(sizes))
    spread = np.maximum.reduceat(xs, offsets) - np.minimum.reduceat(xs, offsets)
    usable = (sizes >= 2) & (spread >= MIN_SLOPE_SPAN_DAYS)
    return np.where(usable, sxy / np.where(usable, sxx, 1.0), np.nan)


def _resource_rows(
    resource_usage: pd.DataFrame,
    orgs: dict[str, dict[str, object]],
    anchors: dict[str, int],
    config: QuotaConfig,
    as_of: object | None,
    counts: dict[str, int],
) -> list[dict[str, object]]:
    usage = resource_usage.copy()
    usage["organization_id"] = usage["organization_id"].astype(str)
    usage["observed_at"] = to_naive_utc(usage["observed_at"])
    if as_of is not None:
        usage = usage[usage["observed_at"] < to_day(as_of) + pd.Timedelta(days=1)]
    rows: list[dict[str, object]] = []
    if usage.empty:
        return rows
    # by organization (sorted), each one's observations in time order (as a stable groupby of
    # the time-sorted rows): one pass of numpy slices instead of a frame per organization
    usage = usage.sort_values("observed_at")
    usage = usage.iloc[np.argsort(usage["organization_id"].to_numpy(), kind="stable")]
    org_ids = usage["organization_id"].to_numpy()
    observed_at = usage["observed_at"].to_numpy()
    bounds = np.flatnonzero(org_ids[1:] != org_ids[:-1]) + 1
    starts = np.concatenate(([0], bounds)).tolist()
    ends = np.concatenate((bounds, [len(usage)])).tolist()
    latest = np.repeat(observed_at[np.asarray(ends) - 1], np.asarray(ends) - np.asarray(starts))
    # days from each organization's latest observation (<= 0)
    x_all = pd.Series(observed_at - latest).dt.total_seconds().to_numpy() / 86400.0
    counts_of = {r: usage[r].to_numpy(dtype=float) for r in RESOURCE_NAMES if r in usage.columns}
    window = np.timedelta64(RESOURCE_WINDOW_DAYS, "D")
    firsts = [  # each organization's first observation within the window of its latest
        start + int(np.searchsorted(observed_at[start:end], observed_at[end - 1] - window))
        for start, end in zip(starts, ends, strict=True)
    ]
    slopes = {r: _segment_slopes(x_all, c, firsts, ends) for r, c in counts_of.items()}
    for i, (start, end) in enumerate(zip(starts, ends, strict=True)):
        org_id = str(org_ids[start])
        org = orgs.get(org_id, {})
        name = org.get("organization_name")
        limits = config.resource_limits(org_id, name, org.get("subscription"))  # type: ignore[arg-type]
        observed = pd.Timestamp(observed_at[end - 1])
        period_start, period_end = period_containing(observed, anchors.get(org_id, 1))
        for resource, counts_all in counts_of.items():
            value = float(counts_all[end - 1])
            limit = limits.get(resource)
            slope = float(slopes[resource][i])
            days = _days_until(value, limit, slope) if limit is not None else math.nan
            rows.append(
                {
                    "organization_id": org_id,
                    "organization_name": name,
                    "subscription": org.get("subscription"),
                    "scope": "organization",
                    "project_id": None,
                    "project_name": None,
                    "metric": resource,
                    "as_of": observed,
                    "period_start": pd.Timestamp(period_start),
                    "period_end": pd.Timestamp(period_end),
                    "value": value,
                    "limit": float(limit) if limit is not None else None,
                    "used_pct": _pct(value, limit),
                    "forecast_total": math.nan,
                    "forecast_low": math.nan,
                    "forecast_high": math.nan,
                    "forecast_pct": math.nan,
                    "days_of_data": counts.get(org_id, end - start),
                    "daily_rate": slope,
                    "days_until_limit": days,
                    "limit_date": observed.normalize() + pd.Timedelta(days=days)
                    if not math.isnan(days)
                    else None,
                    "limit_outlook": "no limit"
                    if limit is None
                    else "reached"
                    if value >= limit
                    else "not in sight"
                    if math.isnan(days)
                    else "reached at this pace",
                    "status": _status(value, limit, math.nan),
                }
            )
    return rows
