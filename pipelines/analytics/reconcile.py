"""Period reconciliation: each subscription-period row against the sum of that period's days.

``credit_usage`` holds two answers of the API for the same credits: daily rows and one row per
subscription period. :func:`reconcile_periods` compares, per organization, series (organization
total, each project, deleted projects) and period, the period row with the sum of its daily
rows. A period is only compared when the daily rows cover all of its days up to today (a
backfill of a few months may load periods whose last days are not loaded as days); those are
counted as not comparable, not as failures. Tolerance: 1e-4 relative (at least 0.01 credits).
The current period was read a moment after its days, so its row may exceed the days' sum by at
most one day's usage (the largest day of the series in the period): usage of today kept coming.
"""

from __future__ import annotations

from datetime import date, timedelta

import pandas as pd

from pipelines.quality import Finding

RELATIVE_TOLERANCE = 1e-4
ABSOLUTE_TOLERANCE = 0.01


def _series(frame: pd.DataFrame) -> pd.Series:
    project = frame["project_id"].astype("object").where(frame["scope"] == "project", None)
    return frame["scope"].astype(str) + ":" + project.map(lambda v: "" if v is None else str(v))


def reconcile_periods(periods: pd.DataFrame, daily: pd.DataFrame, today: date) -> Finding:
    """Compare every period row (``interval == 'month'``) with the sum of its daily rows.

    Fails naming the organization, series and period of each mismatch (first five)."""
    periods = periods[periods["interval"] == "month"] if "interval" in periods else periods
    daily = daily[daily["interval"] == "day"] if "interval" in daily else daily
    if periods.empty:
        return Finding(True, "no period rows")
    days = daily.assign(
        series=_series(daily), day=pd.to_datetime(daily["start_date"]).dt.normalize()
    )
    covered = {
        str(org): set(group["day"])
        for org, group in days[days["scope"] == "organization"].groupby("organization_id")
    }
    by_series = {
        (str(org), s): group.set_index("day")["credits"].astype(float)
        for (org, s), group in days.groupby(["organization_id", "series"])
    }
    rows = periods.assign(series=_series(periods))
    checked = skipped = 0
    failures: list[str] = []
    last_day = pd.Timestamp(today)
    for row in rows.itertuples(index=False):
        org = str(row.organization_id)
        start = pd.Timestamp(row.start_date).normalize()
        end = pd.Timestamp(row.end_date).normalize()
        stop = min(end, last_day + timedelta(days=1))
        wanted = pd.date_range(start, stop, freq="D", inclusive="left")
        have = covered.get(org, set())
        if len(wanted) == 0 or not all(d in have for d in wanted):
            skipped += 1
            continue
        checked += 1
        values = by_series.get((org, row.series))
        in_period = (
            values[(values.index >= start) & (values.index < stop)]
            if values is not None
            else pd.Series(dtype=float)
        )
        total = float(in_period.sum())
        credits = float(row.credits)
        tolerance = max(RELATIVE_TOLERANCE * max(abs(credits), abs(total)), ABSOLUTE_TOLERANCE)
        diff = credits - total
        allowance = float(in_period.max()) if end > last_day and len(in_period) else 0.0
        if -tolerance <= diff <= tolerance + allowance:
            continue
        who = row.organization_name if isinstance(row.organization_name, str) else org
        line = row.series.rstrip(":") if row.scope != "project" else f"project {row.project_id}"
        failures.append(
            f"{who} ({org}) {line}, period {start:%Y-%m-%d} -> {end:%Y-%m-%d}: period row "
            f"{credits:.4f} != sum of its days {total:.4f}"
        )
    description = f"{checked} period rows compared with their days, {skipped} not comparable"
    return Finding(not failures, description, len(failures), failures[:5])
