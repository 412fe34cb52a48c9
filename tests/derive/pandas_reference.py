"""The pandas computation of `project_usage_trends` as it was before the derived tables moved to
DuckDB SQL: the reference the SQL results are compared with (issue 9: "numbers identical before
and after"). Kept verbatim apart from its name; not used by the pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd

from common.periods import (
    anchors_by_organization,
    period_containing,
    previous_period,
)
from insights.frames import daily_usage, dense_series_frame
from insights.trends import TREND_COLUMNS


def _pct_change(current: pd.Series, previous: pd.Series) -> pd.Series:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = (current - previous) / previous
    return out.where(previous > 0)


def reference_trends(
    credit_usage_daily: pd.DataFrame,
    organizations: pd.DataFrame | None = None,
    *,
    new_days: int = 14,
    dormant_days: int = 14,
) -> pd.DataFrame:
    """Daily trends per series (see module doc); columns are :data:`TREND_COLUMNS`.

    - ``mean_7d`` / ``mean_30d``: trailing means over days present (min 1 day).
    - ``wow_change``: last 7 days' sum vs the 7 days before, as a fraction (NaN if no base).
    - ``period_to_date`` / ``pop_change``: credits so far in the subscription period vs the same
      number of days of the previous period (anchors from ``organizations``; calendar months
      when unknown).
    - ``share_of_org``: the series' credits / the organization total that day (org rows: 1).
    - ``rank_in_org``: 1 = largest project/deleted line that day (org rows: NaN).
    - ``is_new``: first day with usage is within the last ``new_days`` days.
    - ``is_dormant``: had usage, none in the last ``dormant_days`` days.
    """
    daily = daily_usage(credit_usage_daily)
    if daily.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in TREND_COLUMNS})
    out = dense_series_frame(daily)
    sid = out["series_id"]
    credits = out["credits"]
    group = credits.groupby(sid)
    pos = group.cumcount()
    cum = group.cumsum()

    def trailing_sum(days: int) -> pd.Series:
        before = cum.groupby(sid).shift(days).fillna(0.0)
        return cum - before

    out["mean_7d"] = trailing_sum(7) / np.minimum(pos + 1, 7)
    out["mean_30d"] = trailing_sum(30) / np.minimum(pos + 1, 30)
    last7 = trailing_sum(7).where(pos >= 6)
    out["wow_change"] = _pct_change(last7, last7.groupby(sid).shift(7))
    _period_columns(out, anchors_by_organization(organizations))
    used = credits > 0
    first_use = out["date"].where(used).groupby(sid).transform("min")
    last_use = out["date"].where(used).groupby(sid).ffill()
    out["is_new"] = used.groupby(sid).transform("any") & (
        (out["date"] >= first_use) & ((out["date"] - first_use).dt.days < new_days)
    )
    out["is_dormant"] = last_use.notna() & ((out["date"] - last_use).dt.days >= dormant_days)
    out["is_new"] = out["is_new"].fillna(False).astype(bool)
    totals = out[out["scope"] == "organization"].set_index(["organization_id", "date"])["credits"]
    if totals.empty:
        parts = out[out["scope"] != "organization"]
        totals = parts.groupby(["organization_id", "date"])["credits"].sum()
    index = pd.MultiIndex.from_frame(out[["organization_id", "date"]])
    org_total = totals.groupby(level=[0, 1]).sum().reindex(index).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        share = out["credits"].to_numpy() / org_total
    out["share_of_org"] = np.where(org_total > 0, share, np.nan)
    sub = out["scope"] != "organization"
    out["rank_in_org"] = np.nan
    out.loc[sub, "rank_in_org"] = (
        out[sub].groupby(["organization_id", "date"])["credits"].rank(method="min", ascending=False)
    )
    out["date"] = out["date"].astype("datetime64[us]")
    out = out.sort_values(["organization_id", "date", "scope", "project_id"], ignore_index=True)
    return out[TREND_COLUMNS]


def _period_columns(frame: pd.DataFrame, anchors: dict[str, int]) -> None:
    """Add period_start, period_to_date and pop_change in place (dense, sorted frame)."""
    pairs = frame[["organization_id", "date"]].drop_duplicates()
    starts: dict[tuple[str, pd.Timestamp], pd.Timestamp] = {}
    previous: dict[tuple[str, pd.Timestamp], pd.Timestamp] = {}
    for org_id, day in pairs.itertuples(index=False):
        anchor = anchors.get(str(org_id), 1)
        start, _ = period_containing(day, anchor)
        starts[(org_id, day)] = pd.Timestamp(start)
        previous[(org_id, day)] = pd.Timestamp(previous_period(day, anchor)[0])
    keys = list(zip(frame["organization_id"], frame["date"], strict=True))
    frame["period_start"] = pd.Series([starts[k] for k in keys], index=frame.index).astype(
        "datetime64[us]"
    )
    prev_start = pd.Series([previous[k] for k in keys], index=frame.index).astype("datetime64[us]")
    offset = (frame["date"] - frame["period_start"]).dt.days
    frame["period_to_date"] = frame.groupby(["series_id", "period_start"])["credits"].cumsum()
    lookup = pd.Series(
        frame["period_to_date"].to_numpy(),
        index=pd.MultiIndex.from_arrays([frame["series_id"], frame["period_start"], offset]),
    )
    wanted = pd.MultiIndex.from_arrays([frame["series_id"], prev_start, offset])
    base = pd.Series(lookup.reindex(wanted).to_numpy(), index=frame.index)
    frame["pop_change"] = _pct_change(frame["period_to_date"], base)
