"""Per-project and per-organization daily usage trends (the ``project_usage_trends`` table),
computed in DuckDB SQL with window functions where the data is.

One row per series and day. A series is an organization total (``scope='organization'``), a
project (``scope='project'``) or the organization's deleted-projects line
(``scope='deleted_projects'``). Missing days are filled with 0 from the series' first day to
the organization's last day with data, so a project that stops reporting shows up as dormant.

A day is *loaded* for an organization when it has at least one `credit_usage` day row that day
(organization total, project or deleted-projects line): the API returns a row of 0 credits for
an organization without usage, so a day between an organization's first and last day without
any row was never loaded (a backfill of older months, then the default range, leaves the months
between unloaded). Such a *gap* is not zero usage: its days get no rows, and every series of the
organization restarts after it as it starts at the organization's first day: the 7- and 30-day
means, week-over-week, period-to-date and the previous period's same day see only the days since
the gap, and a series used before the gap becomes dormant after `DORMANT_DAYS` loaded days
without usage (``is_new`` still knows the series' first use before the gap).

The computation reads daily rows from a relation with the analytics columns
(:data:`insights.frames.DAILY_COLUMNS`): the ``credit_usage`` Parquet files
(:func:`parquet_daily_view`) or an in-memory frame (:func:`project_usage_trends`). It is done
for a range of output days at a time: a day's row needs at most the two calendar months before
its own (30-day mean, week-over-week, the previous subscription period's same day), plus a few
per-series facts over the whole history (first day, first day with usage, latest names, the
organization's last day): :func:`prepare_series` aggregates them over a frame;
`insights.series_facts` keeps them per Parquet day slice, so that a run reads only
the slices that changed. So the cost of a range does not grow with the history;
`insights.derived_slices` decides which months to recompute.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta

import duckdb
import pandas as pd
import pyarrow as pa

from common.periods import (
    CALENDAR_MONTHS,
    anchors_by_organization,
    periods_starting_in,
    shift_month,
)
from insights.frames import daily_usage, frame_sharing_text
from warehouse.derived_schema import PROJECT_USAGE_TRENDS
from warehouse.publish import cap_memory

TREND_COLUMNS: list[str] = PROJECT_USAGE_TRENDS.column_names
NEW_DAYS = 14
DORMANT_DAYS = 14
LOOKBACK_MONTHS = 2
"""Calendar months before an output day's month that its row can depend on: the 30-day mean
and week-over-week reach back 29 and 13 days, and the previous subscription period starts at the
earliest on the first day of the month before the period's own start month."""

ORGANIZATION_CHUNK = 250
"""Organizations computed by one query of :func:`trends_between`: the window functions hold
every row of the query's days in memory, so a query covers a bounded number of organizations
(about 1 MB of DuckDB memory per organization and month of days read)."""

EXACT = "DECIMAL(38, 12)"
"""The type the window sums add up in: exact (integers underneath), so a day's 7- and 30-day
sums and period-to-date do not depend on how many rows the window functions saw (a month
computed alone, or inside a 12-month backfill, gave sums differing in the last bit of a double);
credits have at most micro-credit precision, and 10^26 credits fit."""
DAILY_VIEW = "trend_daily"
SERIES_TABLE = "trend_series"
ORG_LAST_TABLE = "trend_org_last"
ANCHOR_TABLE = "trend_anchor"
VALS_TABLE = "trend_vals"
IDS_TABLE = "trend_ids"
DAYS_TABLE = "trend_days"


@contextmanager
def derived_connection(memory_limit: str = "2GB") -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection for the derived computations: UTC, bounded memory (beyond
    the limit DuckDB spills to a temporary directory of its own, removed afterwards). The limit is
    a cap, not a reservation: a daily refresh stays far below it, while the window functions of
    a 12-month backfill at 1,000 organizations ran out of memory at 512 MB (they do not spill
    entirely)."""
    with tempfile.TemporaryDirectory(prefix="usage-derived-") as spill:
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone='UTC'")
            cap_memory(con, memory_limit, spill)
            yield con
        finally:
            con.close()


def parquet_daily_view(con: duckdb.DuckDBPyConnection, credit_usage_sql: str) -> None:
    """Create the view of daily rows (analytics columns) over a ``credit_usage`` scan
    expression (``ParquetStore.scan_sql``): interval 'day', project columns only for projects,
    the day as UTC midnight, null credits as 0."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW {DAILY_VIEW} AS
        SELECT CAST(organization_id AS VARCHAR) AS organization_id,
               CAST(organization_name AS VARCHAR) AS organization_name,
               CAST(scope AS VARCHAR) AS scope,
               CASE WHEN scope = 'project' THEN CAST(project_id AS VARCHAR) END AS project_id,
               CASE WHEN scope = 'project' THEN CAST(project_name AS VARCHAR) END AS project_name,
               CAST(date_trunc('day', start_date) AS TIMESTAMP) AS date,
               coalesce(CAST(credits AS DOUBLE), 0.0) AS credits
        FROM {credit_usage_sql} AS c
        WHERE c.interval = 'day'
        """
    )


def empty_daily_view(con: duckdb.DuckDBPyConnection) -> None:
    """Create the view of daily rows with no rows (no day slice covers the days asked for)."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW {DAILY_VIEW} AS
        SELECT CAST(NULL AS VARCHAR) AS organization_id, CAST(NULL AS VARCHAR) AS organization_name,
               CAST(NULL AS VARCHAR) AS scope, CAST(NULL AS VARCHAR) AS project_id,
               CAST(NULL AS VARCHAR) AS project_name, CAST(NULL AS TIMESTAMP) AS date,
               CAST(NULL AS DOUBLE) AS credits
        WHERE false
        """
    )


def frame_daily_view(con: duckdb.DuckDBPyConnection, credit_usage: pd.DataFrame) -> None:
    """Create the view of daily rows over an in-memory ``credit_usage`` (or daily) frame."""
    daily = daily_usage(credit_usage)
    con.register("trend_daily_frame", daily)
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {DAILY_VIEW} AS SELECT organization_id, "
        "organization_name, scope, project_id, project_name, CAST(date AS TIMESTAMP) AS date, "
        "CAST(credits AS DOUBLE) AS credits FROM trend_daily_frame"
    )


def prepare_series(con: duckdb.DuckDBPyConnection, anchors: dict[str, int] | None = None) -> None:
    """The whole-history facts of every series, in temporary tables (one streaming aggregate
    over the daily view): first day, first day with usage, latest organization and project
    names; each organization's last day with data; each organization's period anchor."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {SERIES_TABLE} AS
        SELECT organization_id, scope, coalesce(project_id, '') AS pkey,
               any_value(project_id) AS project_id,
               min(date) AS first_day,
               min(date) FILTER (WHERE credits > 0) AS first_use,
               arg_max(organization_name, date) FILTER (WHERE organization_name IS NOT NULL)
                   AS organization_name,
               arg_max(project_name, date) FILTER (WHERE project_name IS NOT NULL)
                   AS project_name
        FROM {DAILY_VIEW}
        GROUP BY organization_id, scope, pkey
        """
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {ORG_LAST_TABLE} AS SELECT organization_id, "
        f"max(date) AS last_day FROM {DAILY_VIEW} GROUP BY organization_id"
    )
    anchor_table(con, anchors)


def anchor_table(con: duckdb.DuckDBPyConnection, anchors: dict[str, int] | None) -> None:
    """Each organization's period anchor, as the temporary table :data:`ANCHOR_TABLE`."""
    frame = pd.DataFrame(
        {
            "organization_id": pd.Series(list((anchors or {}).keys()), dtype=object),
            "anchor": pd.Series(list((anchors or {}).values()), dtype="int64"),
        }
    )
    con.register("trend_anchor_frame", frame)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {ANCHOR_TABLE} AS SELECT CAST(organization_id AS VARCHAR) "
        "AS organization_id, CAST(anchor AS INTEGER) AS anchor FROM trend_anchor_frame"
    )
    con.unregister("trend_anchor_frame")


def has_organization_rows(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether the data have organization totals at all (:func:`prepare_series` first)."""
    row = con.execute(
        f"SELECT count(*) FROM {SERIES_TABLE} WHERE scope = 'organization'"
    ).fetchone()
    return bool(row and row[0])


def lookback_start(first_output_day: date) -> date:
    """The first day whose rows an output day on or after ``first_output_day`` can need."""
    year, month = shift_month(first_output_day.year, first_output_day.month, -LOOKBACK_MONTHS)
    return date(year, month, 1)


def _calendar(con: duckdb.DuckDBPyConnection, start: date, end: date) -> None:
    """Period start and previous period start per anchor and day of ``[start, end)``, from the
    one subscription calendar (`periods.py`), as a temporary table."""
    row = con.execute(f"SELECT list(DISTINCT anchor) FROM {ANCHOR_TABLE}").fetchone()
    anchors = sorted({CALENDAR_MONTHS, *((row[0] if row else None) or [])})
    days = pd.date_range(start, end - timedelta(days=1), freq="D", unit="us")
    frames = []
    for anchor in anchors:
        # the periods starting from two months before the range to its end, from the calendar
        starts: list[date] = []
        year, month = shift_month(start.year, start.month, -2)
        while date(year, month, 1) <= end:
            starts.extend(s for s, _ in periods_starting_in(year, month, anchor))
            year, month = shift_month(year, month, 1)
        bounds = pd.DatetimeIndex(sorted(starts)).astype("datetime64[us]")
        index = bounds.searchsorted(days, side="right") - 1
        frames.append(
            pd.DataFrame(
                {
                    "anchor": anchor,
                    "date": days,
                    "period_start": bounds[index],
                    "prev_start": bounds[index - 1],
                }
            )
        )
    frame = pd.concat(frames, ignore_index=True)
    for column in ("date", "period_start", "prev_start"):
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[us]")
    frame["anchor"] = frame["anchor"].astype("int64")
    con.register("trend_calendar_frame", frame)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE trend_calendar AS SELECT CAST(anchor AS INTEGER) AS anchor, "
        "date, period_start, prev_start FROM trend_calendar_frame"
    )
    con.unregister("trend_calendar_frame")


def trends_between(
    con: duckdb.DuckDBPyConnection,
    start: date,
    end: date,
    *,
    new_days: int = NEW_DAYS,
    dormant_days: int = DORMANT_DAYS,
) -> pd.DataFrame:
    """The trend rows of the days in ``[start, end)`` (columns :data:`TREND_COLUMNS`, sorted by
    organization, date, scope, project), reading only the daily rows from
    :func:`lookback_start` on. Needs :func:`prepare_series` on the same view first.

    The window functions see narrow rows: an integer series number (numbered in the output's
    order: organization, scope, project), an integer organization number, the day, the
    credits and the period bounds; names and whole-history facts are joined to the result
    afterwards. Each series is a complete day series from its first day read, so the same day
    of the previous period is a fixed number of rows back (that period's length); that day is
    the first its organization's anchor needs (the previous period's start, or 29 days back),
    not the lookback's first day: a calendar-month organization's refresh of one month reads
    two months of rows, not three."""
    first = lookback_start(start)
    _calendar(con, first, end)
    # the organization total a share is taken of: the organization rows; only data with none
    # at all (in-memory frames of projects alone) adds up the parts
    organization_rows = has_organization_rows(con)
    org_total = "org_credits" if organization_rows else "parts_credits"
    query = f"""
    WITH reach AS (
        -- per anchor, the first day the range's rows need: the previous period's start (for
        -- the same day of the previous period) or 29 days back (the 30-day mean)
        SELECT anchor, greatest($first, least(prev_start, $start - INTERVAL 29 DAY)) AS day
        FROM trend_calendar WHERE date = $start
    ),
    series AS (
        SELECT i.sid, i.oid, i.scope = 'organization' AS is_org, i.first_day, i.last_day,
               i.anchor, greatest(i.first_day, coalesce(r.day, $first)) AS read_from
        FROM {IDS_TABLE} AS i LEFT JOIN reach AS r USING (anchor)
        WHERE i.oid BETWEEN $lo AND $hi
    ),
    dense AS (
        -- the organization's loaded days from the series' first day read: a segment (days
        -- since the last gap) is a complete day series
        SELECT s.sid, s.oid, s.is_org, s.first_day, s.anchor, t.date, t.seg,
               CASE WHEN t.last_gap IS NULL THEN s.read_from
                    ELSE greatest(s.read_from, t.last_gap + INTERVAL 1 DAY) END AS read_from,
               CASE WHEN t.last_gap IS NULL THEN s.first_day
                    ELSE greatest(s.first_day, t.last_gap + INTERVAL 1 DAY) END AS seg_first
        FROM series AS s
        JOIN {DAYS_TABLE} AS t ON t.oid = s.oid AND t.date >= s.read_from
    ),
    filled AS (
        SELECT d.sid, d.oid, d.is_org, d.date, d.seg, d.seg_first, d.read_from,
               coalesce(v.credits, 0.0) AS credits, c.period_start,
               datediff('day', c.period_start, d.date) AS period_day,
               datediff('day', c.prev_start, c.period_start) AS prev_days
        FROM dense AS d
        LEFT JOIN {VALS_TABLE} AS v ON v.sid = d.sid AND v.date = d.date
        JOIN trend_calendar AS c ON c.anchor = d.anchor AND c.date = d.date
    ),
    windowed AS (
        SELECT sid, oid, seg, date, credits, period_start, period_day, prev_days, read_from,
            datediff('day', seg_first, date) AS pos,
            sum(exact) OVER (PARTITION BY sid, seg ORDER BY date
                             ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS sum7,
            sum(exact) OVER (PARTITION BY sid, seg ORDER BY date
                             ROWS BETWEEN 29 PRECEDING AND CURRENT ROW) AS sum30,
            sum(exact) OVER (PARTITION BY sid, seg, period_start ORDER BY date
                             ROWS UNBOUNDED PRECEDING) AS period_to_date,
            max(CASE WHEN credits > 0 THEN date END) OVER (
                PARTITION BY sid, seg ORDER BY date ROWS UNBOUNDED PRECEDING) AS last_use,
            max(CASE WHEN is_org THEN credits END) OVER (PARTITION BY oid, date) AS org_credits,
            CAST(sum(CASE WHEN NOT is_org THEN exact END) OVER (
                PARTITION BY oid, date) AS DOUBLE) AS parts_credits,
            rank() OVER (PARTITION BY oid, date, is_org ORDER BY credits DESC) AS credit_rank
        FROM (SELECT *, CAST(credits AS {EXACT}) AS exact FROM filled)
    ),
    lagged AS (
        SELECT *,
            lag(sum7, 7) OVER (PARTITION BY sid, seg ORDER BY date) AS prev7,
            -- the same day of the previous period: prev_days rows back (a segment is a
            -- complete day series; none when that day is before the segment)
            CASE WHEN period_day < prev_days
                 THEN lag(period_to_date, prev_days) OVER (PARTITION BY sid, seg ORDER BY date)
                 END AS prev_period_to_date
        FROM windowed
    )
    SELECT
        i.organization_id, i.organization_name, i.scope,
        CASE WHEN i.scope = 'project' THEN i.project_id END AS project_id,
        CASE WHEN i.scope = 'project' THEN i.project_name END AS project_name,
        t.date, t.credits,
        CAST(t.sum7 AS DOUBLE) / least(t.pos + 1, 7) AS mean_7d,
        CAST(t.sum30 AS DOUBLE) / least(t.pos + 1, 30) AS mean_30d,
        CASE WHEN t.pos >= 13 AND t.prev7 > 0
             THEN CAST(t.sum7 - t.prev7 AS DOUBLE) / CAST(t.prev7 AS DOUBLE) END AS wow_change,
        t.period_start, CAST(t.period_to_date AS DOUBLE) AS period_to_date,
        CASE WHEN t.prev_period_to_date > 0
             THEN CAST(t.period_to_date - t.prev_period_to_date AS DOUBLE)
                  / CAST(t.prev_period_to_date AS DOUBLE) END
            AS pop_change,
        CASE WHEN t.{org_total} > 0 THEN t.credits / t.{org_total} END AS share_of_org,
        CASE WHEN i.scope <> 'organization' THEN CAST(t.credit_rank AS DOUBLE) END
            AS rank_in_org,
        coalesce(i.first_use IS NOT NULL AND t.date >= i.first_use
                 AND datediff('day', i.first_use, t.date) < $new_days, false) AS is_new,
        coalesce(datediff('day', coalesce(t.last_use, CASE WHEN i.first_use < t.read_from
                                                      THEN t.read_from - INTERVAL 1 DAY END),
                          t.date) >= $dormant_days, false) AS is_dormant
    FROM lagged AS t
    JOIN {IDS_TABLE} AS i ON i.sid = t.sid
    WHERE t.date >= $start
    ORDER BY t.oid, t.date, t.sid
    """
    first_at = pd.Timestamp(first).to_pydatetime()
    end_at = pd.Timestamp(end).to_pydatetime()
    params = {
        "first": first_at,
        "start": pd.Timestamp(start).to_pydatetime(),
        "new_days": new_days,
        "dormant_days": dormant_days,
    }
    # the series alive in the range, numbered, the days read summed per series and day, and
    # each organization's loaded days: once for all the organization groups
    _series_ids(con, first_at, end_at)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {VALS_TABLE} AS
        SELECT i.sid, v.date, v.credits
        FROM (
            SELECT organization_id, scope, coalesce(project_id, '') AS pkey, date,
                   sum(credits) AS credits
            FROM {DAILY_VIEW}
            WHERE date >= $first AND date < $end
            GROUP BY ALL
        ) AS v
        JOIN {IDS_TABLE} AS i USING (organization_id, scope, pkey)
        """,
        {"first": first_at, "end": end_at},
    )
    _organization_days(con, first_at, end_at, gaps=organization_rows)
    text = ("organization_id", "organization_name", "scope", "project_id", "project_name")
    frames = []
    for lo, hi in _organization_chunks(con):
        arrow = con.execute(query, {**params, "lo": lo, "hi": hi}).to_arrow_table()
        frames.append(_typed(frame_sharing_text(arrow, text)))
        del arrow
    if not frames:
        frames.append(_typed(frame_sharing_text(_empty_result(con, query, params), text)))
    con.execute(f"DROP TABLE {DAYS_TABLE}")
    con.execute(f"DROP TABLE {VALS_TABLE}")
    con.execute(f"DROP TABLE {IDS_TABLE}")
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


def _series_ids(con: duckdb.DuckDBPyConnection, first: datetime, end: datetime) -> None:
    """The series alive in ``[first, end)`` with their whole-history facts, as the temporary
    table :data:`IDS_TABLE`, numbered: ``sid`` in the output's order (organization, scope,
    project), ``oid`` per organization in id order; ``anchor`` the organization's period
    anchor (calendar months when unknown)."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {IDS_TABLE} AS
        SELECT s.organization_id, s.scope, s.pkey, s.project_id, s.organization_name,
               s.project_name, s.first_day, s.first_use, o.last_day,
               CAST(coalesce(a.anchor, {CALENDAR_MONTHS}) AS INTEGER) AS anchor,
               CAST(row_number() OVER (
                   ORDER BY s.organization_id, s.scope,
                            CASE WHEN s.scope = 'project' THEN s.project_id END NULLS LAST,
                            s.pkey) AS INTEGER) AS sid,
               CAST(dense_rank() OVER (ORDER BY s.organization_id) AS INTEGER) AS oid
        FROM {SERIES_TABLE} AS s JOIN {ORG_LAST_TABLE} AS o USING (organization_id)
        LEFT JOIN {ANCHOR_TABLE} AS a ON a.organization_id = s.organization_id
        WHERE s.first_day < $end AND o.last_day >= $first
        """,
        {"first": first, "end": end},
    )


def _organization_days(
    con: duckdb.DuckDBPyConnection, first: datetime, end: datetime, *, gaps: bool
) -> None:
    """The loaded days (see module doc) of each organization of :data:`IDS_TABLE` in
    ``[first, end)``, up to its last day, as the temporary table :data:`DAYS_TABLE`: ``oid``,
    ``date``, ``seg`` (the number of gap days before it in the range: its segment) and
    ``last_gap`` (the latest gap day before it in the range; NULL when none). One row per
    organization and day, so the gaps cost a window over days, not over series. Without
    ``gaps`` (data without organization totals, which only in-memory frames of projects alone
    lack) every day is loaded: a day without project rows is a day without usage."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {DAYS_TABLE} AS
        WITH span AS (
            SELECT oid, greatest(min(first_day), $first) AS lo,
                   least(max(last_day), $end - INTERVAL 1 DAY) AS hi
            FROM {IDS_TABLE} GROUP BY oid
        ),
        loaded AS (
            SELECT DISTINCT i.oid, v.date
            FROM {VALS_TABLE} AS v JOIN {IDS_TABLE} AS i USING (sid)
        ),
        days AS (
            SELECT s.oid, d.date, l.date IS NOT NULL OR NOT $gaps AS loaded
            FROM (SELECT oid, unnest(generate_series(lo, hi, INTERVAL 1 DAY)) AS date
                  FROM span WHERE lo <= hi) AS d
            JOIN span AS s USING (oid)
            LEFT JOIN loaded AS l ON l.oid = d.oid AND l.date = d.date
        ),
        counted AS (
            SELECT oid, date, loaded,
                   CAST(count(*) FILTER (WHERE NOT loaded) OVER w AS INTEGER) AS seg,
                   max(CASE WHEN NOT loaded THEN date END) OVER w AS last_gap
            FROM days
            WINDOW w AS (PARTITION BY oid ORDER BY date ROWS UNBOUNDED PRECEDING)
        )
        SELECT oid, date, seg, last_gap FROM counted WHERE loaded
        """,
        {"first": first, "end": end, "gaps": gaps},
    )


def _organization_chunks(con: duckdb.DuckDBPyConnection) -> list[tuple[int, int]]:
    """``(lowest, highest)`` organization numbers (``oid`` of :data:`IDS_TABLE`) of
    consecutive groups of at most :data:`ORGANIZATION_CHUNK` organizations, in the order the
    rows are sorted: each group is one query, so its memory does not grow with the number of
    organizations (every window partitions by organization or by series)."""
    row = con.execute(f"SELECT max(oid) FROM {IDS_TABLE}").fetchone()
    count = int(row[0]) if row and row[0] is not None else 0
    return [
        (lo, min(lo + ORGANIZATION_CHUNK - 1, count))
        for lo in range(1, count + 1, ORGANIZATION_CHUNK)
    ]


def _empty_result(
    con: duckdb.DuckDBPyConnection, query: str, params: dict[str, object]
) -> pa.Table:
    """The query's result with no rows (its columns and types), for a range without series."""
    return con.execute(query, {**params, "lo": 1, "hi": 0}).to_arrow_table()


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """The analytics conventions: naive UTC ``datetime64[us]`` days, object ids and names."""
    for column in ("date", "period_start"):
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[us]")
    for column in ("organization_id", "organization_name", "scope", "project_id", "project_name"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    for column in ("is_new", "is_dormant"):
        frame[column] = frame[column].astype(bool)
    return frame[TREND_COLUMNS]


def project_usage_trends(
    credit_usage_daily: pd.DataFrame,
    organizations: pd.DataFrame | None = None,
    *,
    new_days: int = NEW_DAYS,
    dormant_days: int = DORMANT_DAYS,
) -> pd.DataFrame:
    """Daily trends per series of an in-memory frame (see module doc); columns are
    :data:`TREND_COLUMNS`. The pipeline computes the stored table month by month from the
    Parquet files instead (`insights.derived_slices`); both run the same SQL.

    - ``mean_7d`` / ``mean_30d``: trailing means over the days of the series (min 1 day).
    - ``wow_change``: last 7 days' sum vs the 7 days before, as a fraction (NaN if no base).
    - ``period_to_date`` / ``pop_change``: credits so far in the subscription period vs the same
      number of days of the previous period (anchors from ``organizations``; calendar months
      when unknown).
    - ``share_of_org``: the series' credits / the organization total that day (org rows: 1).
    - ``rank_in_org``: 1 = largest project/deleted line that day (org rows: NaN).
    - ``is_new``: first day with usage is within the last ``new_days`` days.
    - ``is_dormant``: had usage, none in the last ``dormant_days`` days.
    """
    with derived_connection() as con:
        frame_daily_view(con, credit_usage_daily)
        prepare_series(con, anchors_by_organization(organizations))
        row = con.execute(
            f"SELECT min(first_day), max(last_day) FROM {SERIES_TABLE}, {ORG_LAST_TABLE}"
        ).fetchone()
        if row is None or row[0] is None:
            return pd.DataFrame({c: pd.Series(dtype="object") for c in TREND_COLUMNS})
        first, last = pd.Timestamp(row[0]).date(), pd.Timestamp(row[1]).date()
        return trends_between(
            con, first, last + timedelta(days=1), new_days=new_days, dormant_days=dormant_days
        )
