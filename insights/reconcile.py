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

import duckdb
import pandas as pd
import pyarrow as pa

from extraction.quality import Finding

RELATIVE_TOLERANCE = 1e-4
ABSOLUTE_TOLERANCE = 0.01


def _series(frame: pd.DataFrame) -> pd.Series:
    project = frame["project_id"].astype("object").where(frame["scope"] == "project", None)
    return frame["scope"].astype(str) + ":" + project.map(lambda v: "" if v is None else str(v))


_SERIES_SQL = (
    "CAST(scope AS VARCHAR) || ':' || CASE WHEN scope = 'project' "
    "THEN coalesce(CAST(project_id AS VARCHAR), '') ELSE '' END"
)
"""The series key of a row in SQL (organization, deleted projects, or the project's id)."""

# Per period row (in input order): how many of its days [start, stop) the organization has
# loaded, and the sum, largest value and count of the series' daily rows in those days. One range
# join in DuckDB instead of a pandas filter per row (120,000 period rows at 1,000 organizations).
_COMPARE_SQL = """
WITH org_days AS (SELECT DISTINCT org, day FROM days WHERE scope = 'organization'),
covered AS (
    SELECT p.i, count(*) AS n FROM periods AS p
    JOIN org_days AS o ON o.org = p.org AND o.day >= p.start AND o.day < p.stop
    GROUP BY p.i
),
sums AS (
    SELECT p.i, sum(d.credits) AS total, max(d.credits) AS top, count(*) AS n
    FROM periods AS p
    JOIN days AS d
      ON d.org = p.org AND d.series = p.series AND d.day >= p.start AND d.day < p.stop
    WHERE d.credits IS NOT NULL AND NOT isnan(d.credits)
    GROUP BY p.i
)
SELECT greatest(date_diff('day', p.start, p.stop), 0) AS wanted,
       coalesce(covered.n, 0) AS covered,
       coalesce(sums.total, 0.0) AS total,
       coalesce(sums.top, 0.0) AS top,
       coalesce(sums.n, 0) AS n
FROM periods AS p LEFT JOIN covered USING (i) LEFT JOIN sums USING (i)
ORDER BY p.i
"""


def _compare(periods: pd.DataFrame, daily: pd.DataFrame, last_day: pd.Timestamp) -> pd.DataFrame:
    start = pd.to_datetime(periods["start_date"]).dt.normalize()
    end = pd.to_datetime(periods["end_date"]).dt.normalize()
    frame_periods = pd.DataFrame(
        {
            "i": range(len(periods)),
            "organization_id": periods["organization_id"].astype(str).to_numpy(),
            "scope": periods["scope"].astype(str).to_numpy(),
            "project_id": periods["project_id"].astype(object).to_numpy(),
            "start": start.to_numpy(),
            "stop": end.clip(upper=last_day + timedelta(days=1)).to_numpy(),
        }
    )
    # the daily rows go to DuckDB as they are (Arrow, without copying text into Python
    # objects); the series key and the day are computed there, the same way for both sides
    columns = ["organization_id", "scope", "project_id", "start_date", "credits"]
    frame_days = pa.Table.from_pandas(daily[columns], preserve_index=False)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("period_rows", frame_periods)
        con.register("day_rows", frame_days)
        con.execute(
            f"CREATE TEMP VIEW periods AS SELECT i, CAST(organization_id AS VARCHAR) AS org, "
            f"{_SERIES_SQL} AS series, start, stop FROM period_rows"
        )
        con.execute(
            f"CREATE TEMP VIEW days AS SELECT CAST(organization_id AS VARCHAR) AS org, "
            f"{_SERIES_SQL} AS series, CAST(scope AS VARCHAR) AS scope, "
            "date_trunc('day', CAST(start_date AS TIMESTAMP)) AS day, "
            "CAST(credits AS DOUBLE) AS credits FROM day_rows"
        )
        return con.execute(_COMPARE_SQL).df()
    finally:
        con.close()


def reconcile_periods(periods: pd.DataFrame, daily: pd.DataFrame, today: date) -> Finding:
    """Compare every period row (``interval == 'month'``) with the sum of its daily rows.

    Fails naming the organization, series and period of each mismatch (first five)."""
    periods = periods[periods["interval"] == "month"] if "interval" in periods else periods
    daily = daily[daily["interval"] == "day"] if "interval" in daily else daily
    if periods.empty:
        return Finding(True, "no period rows")
    last_day = pd.Timestamp(today)
    compared = _compare(periods, daily, last_day)
    comparable = (compared["wanted"] > 0) & (compared["covered"] == compared["wanted"])
    checked = int(comparable.sum())
    skipped = len(compared) - checked
    failures: list[str] = []
    rows = periods.assign(series=_series(periods)).itertuples(index=False)
    for row, result, ok in zip(rows, compared.itertuples(index=False), comparable, strict=True):
        if not ok:
            continue
        org = str(row.organization_id)
        start = pd.Timestamp(row.start_date).normalize()
        end = pd.Timestamp(row.end_date).normalize()
        total = float(result.total)
        credits = float(row.credits)
        tolerance = max(RELATIVE_TOLERANCE * max(abs(credits), abs(total)), ABSOLUTE_TOLERANCE)
        diff = credits - total
        allowance = float(result.top) if end > last_day and result.n else 0.0
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
