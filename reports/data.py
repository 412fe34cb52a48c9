"""What the report shows, read from the published warehouse in a few set-wise queries.

Owns the report's reading side: the overview row of every organization (usage against budget,
forecast, open alerts, and a risk level that sorts the ones at risk first), the open alerts with
the resource or project they name and a sentence explaining them, the credits of all
organizations over the whole range (one grain, day, week or month, chosen from the span so the
index's chart has at most ~120 bars), and per organization (:class:`Detail`) a bounded window:
the daily totals of its current period, its last RECENT_DAYS days by project, its whole history
per subscription period by project (from the period rows, a few dozen per project) and its last
RECENT_PERIODS periods per project, plus the latest resource counts.

What an organization's page costs does not grow with the history: day rows are read only from
the window, and the whole history only through the period rows. The analyst views of
`warehouse.views` (TEMP views when the database lacks them) are used where they read no more
than the report needs (alerts, resources); elsewhere `credit_usage` and `quota_status` are read
with the views' definitions (project names, shares, budget figures) restricted to the window.
Aggregation happens in DuckDB, and each query runs once for all organizations.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import duckdb

from reports.charts import Bucket
from reports.formatting import as_date, finite, fmt_number, fmt_pct, fmt_period
from warehouse.schema import RESOURCE_NAMES
from warehouse.views import DELETED_PROJECTS_LABEL, ensure_views, live_tables

TOP_PROJECTS = 5
OTHER_LABEL = "Other projects"
OTHER_KEY = "\x00other"
DELETED_KEY = "\x00deleted"
DAILY_UP_TO_DAYS = 120  # spans up to this many days are charted per day
WEEKLY_UP_TO_DAYS = 3 * 366  # then per week; beyond, per calendar month

RISK_LABELS = {3: "critical", 2: "at risk", 1: "watch", 0: "ok"}
STATUS_RISK = {"exceeded": 3, "over": 3, "forecast_exceeds": 2, "warning": 1}
NO_DATA = "no_data"
"""quota_status's status of credits not measured: the organization's data end before the
evaluation day (a backfill of an older range), so there is no used-so-far figure or forecast."""
_SEVERITY_RISK = {"critical": 3, "warning": 2, "info": 1}


@dataclass
class Alert:
    """An open alert as the report shows it."""

    organization_id: str
    organization_name: str
    rule: str
    subject: str
    severity: str
    status: str
    period_start: date | None
    period_end: date | None
    opened_at: Any
    explanation: str


@dataclass
class Organization:
    """One organization's overview row."""

    organization_id: str
    name: str
    subscription: str | None
    period_start: date | None
    period_end: date | None
    used: float | None = None
    budget: float | None = None
    used_pct: float | None = None
    forecast: float | None = None
    forecast_low: float | None = None
    forecast_high: float | None = None
    forecast_pct: float | None = None
    days_until_budget: float | None = None
    status: str | None = None
    alerts: list[Alert] = field(default_factory=list)

    @property
    def risk(self) -> int:
        """3 critical, 2 at risk, 1 watch, 0 ok: the worst of the budget status and alerts."""
        levels = [STATUS_RISK.get(self.status or "", 0)]
        levels += [_SEVERITY_RISK.get(a.severity, 1) for a in self.alerts]
        return max(levels)

    @property
    def risk_label(self) -> str:
        return RISK_LABELS[self.risk]

    @property
    def unmeasured(self) -> bool:
        """Nothing to judge: its current period's credits are not loaded (and no alert)."""
        return self.status == NO_DATA and self.risk == 0

    def sort_key(self) -> tuple[float, float, float, str]:
        return (-self.risk, -(self.forecast_pct or -1.0), -(self.used_pct or -1.0), self.name)


@dataclass(frozen=True)
class Basis:
    """What the report counts: complete UTC days through `through` (the last complete day of
    data), leaving out the partial days `partial` (loaded on their own day)."""

    through: date | None
    partial: tuple[date, ...] = ()

    def label(self) -> str:
        """The sentence every page states its figures with."""
        if self.through is None:
            return "Complete UTC days only."
        text = f"Figures are through {self.through.isoformat()}, complete UTC days only"
        if self.partial:
            days = ", ".join(d.isoformat() for d in self.partial)
            text += f" ({days} was still in progress when loaded and is left out)"
        return text + ", as the budget, forecast and alerts."


@dataclass
class History:
    """Credits of all organizations over the whole range, at one grain (the index's chart)."""

    grain: str
    first: date | None
    last: date | None
    buckets: list[Bucket]
    totals: list[float]  # credits per bucket
    basis: Basis = field(default_factory=lambda: Basis(None))


Line = tuple[str, str, list[float]]
"""A chart line: (name, kind 'project'/'other'/'deleted', credits per bucket)."""


@dataclass
class Chart:
    """An organization's credits per bucket and line, top projects first."""

    grain: str  # 'day' or 'subscription period'
    buckets: list[Bucket] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)


@dataclass
class Detail:
    """What an organization's page shows beside its overview row."""

    days: list[tuple[date, float]] = field(default_factory=list)  # daily totals, last ~2 months
    recent: Chart = field(default_factory=lambda: Chart("day"))  # last RECENT_DAYS days
    by_period: Chart = field(default_factory=lambda: Chart("subscription period"))  # all periods
    periods: list[dict[str, Any]] = field(default_factory=list)  # period totals, newest first
    period_projects: list[dict[str, Any]] = field(default_factory=list)  # last RECENT_PERIODS


# The report's basis: complete UTC days, as the budget figures (`quota_status`, computed through
# the day before the run) and the alerts. A day row loaded on its own day (the day a run loads,
# still filling up) is partial: `report_usage` is the day rows of `credit_usage` without the
# partial ones, and `report_periods` its period rows each less the partial days inside it (the
# current period "through the last complete day"), so that every number of a page (headline,
# charts, tables) and of the index agrees. `report_partial_days` holds the partial rows.
#
# What this costs does not grow with the history. A day row is partial when its day is not
# before its load's day, so only a month loaded before it ended can hold one: the partial rows
# are read month by month, each month's scan bounded by constants on `start_date` and
# `loaded_at` that the storage's min/max statistics (DuckDB's row groups, DuckLake's files) use
# to skip the months loaded after they ended without reading them. `report_periods` is made
# once (the organization pages read the period rows of the whole history several times), with
# the columns they read; only the periods that can hold a partial day are joined with them.
PARTIAL_DAYS_OF_MONTH = """
    SELECT organization_id, scope, project_id, start_date, credits
    FROM credit_usage
    WHERE interval = 'day'
      AND start_date >= TIMESTAMP '{month}' AND start_date < TIMESTAMP '{next_month}'
      AND loaded_at < TIMESTAMP '{next_month}'
      AND start_date >= date_trunc('day', loaded_at)
"""
REPORT_PERIODS = """
    CREATE OR REPLACE TEMP TABLE report_periods AS
    SELECT m.organization_id, m.scope, m.project_id, m.project_name, m.start_date, m.end_date,
           greatest(m.credits - coalesce(p.credits, 0.0), 0.0) AS credits
    FROM credit_usage AS m
    LEFT JOIN (
        SELECT m.organization_id, m.scope, m.project_id, m.start_date, sum(d.credits) AS credits
        FROM credit_usage AS m
        JOIN report_partial_days AS d
          ON d.organization_id = m.organization_id AND d.scope = m.scope
         AND d.project_id IS NOT DISTINCT FROM m.project_id
         AND d.start_date >= m.start_date AND d.start_date < m.end_date
        WHERE m.interval = 'month' AND m.end_date > TIMESTAMP '{partial_from}'
        GROUP BY ALL
    ) AS p
      ON p.organization_id = m.organization_id AND p.scope = m.scope
     AND p.project_id IS NOT DISTINCT FROM m.project_id AND p.start_date = m.start_date
    WHERE m.interval = 'month'
"""
REPORT_USAGE = """
    CREATE OR REPLACE TEMP VIEW report_usage AS
    SELECT * FROM credit_usage
    WHERE interval = 'day' AND start_date < date_trunc('day', loaded_at)
"""
THROUGH_SEARCH_DAYS = 62
"""How far before the last day row the last complete day is looked for first (the whole history
only when none is found there)."""


def _month_starts(first: datetime, last: datetime) -> list[date]:
    """The first days of the calendar months from `first`'s to `last`'s."""
    months, year, month = [], first.year, first.month
    while (year, month) <= (last.year, last.month):
        months.append(date(year, month, 1))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return months


def _partial_days_sql(first: datetime | None, last: datetime | None) -> str:
    months = _month_starts(first, last) if first is not None and last is not None else []
    if not months:
        return (
            "CREATE OR REPLACE TEMP TABLE report_partial_days AS "
            "SELECT organization_id, scope, project_id, start_date, credits "
            "FROM credit_usage WHERE false"
        )
    scans = [
        PARTIAL_DAYS_OF_MONTH.format(
            month=m.isoformat(), next_month=(m + timedelta(days=32)).replace(day=1).isoformat()
        )
        for m in months
    ]
    return "CREATE OR REPLACE TEMP TABLE report_partial_days AS " + " UNION ALL ".join(scans)


def _one(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> tuple:
    """The one row of an aggregate query."""
    row = con.execute(sql, params or []).fetchone()
    assert row is not None, "an aggregate query returns one row"
    return row


def prepare_usage(con: duckdb.DuckDBPyConnection) -> Basis:
    """Make `report_usage` (complete days only), `report_partial_days` and `report_periods` on
    `con`; the basis the report states."""
    first, last = _one(con, "SELECT min(start_date), max(start_date) FROM credit_usage")
    con.execute(_partial_days_sql(first, last))
    (partial_from,) = _one(con, "SELECT min(start_date) FROM report_partial_days")
    con.execute(REPORT_PERIODS.format(partial_from=(partial_from or datetime.max).isoformat()))
    con.execute(REPORT_USAGE)
    partial = [
        as_date(d)
        for (d,) in con.execute(
            "SELECT DISTINCT CAST(start_date AS DATE) FROM report_partial_days "
            "WHERE scope = 'organization' ORDER BY 1 DESC LIMIT 3"
        ).fetchall()
    ]
    through = None
    if last is not None:
        complete = (
            "SELECT max(CAST(start_date AS DATE)) FROM credit_usage "
            "WHERE interval = 'day' AND scope = 'organization' "
            "AND start_date < date_trunc('day', loaded_at)"
        )
        since = last - timedelta(days=THROUGH_SEARCH_DAYS)
        (through,) = _one(con, complete + " AND start_date >= ?", [since])
        if through is None:
            (through,) = _one(con, complete)
    return Basis(as_date(through), tuple(sorted(d for d in partial if d)))


def _rows(
    con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | dict[str, object] | None = None
) -> list:
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def available_views(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Make the analyst views usable on `con`; the names of those available."""
    return set(ensure_views(con))


# The organization rows of the view `usage_against_budget` (its definitions, without the project
# names it joins for project rows: those are computed from the whole history), the worst
# forecast first.
ORGANIZATION_BUDGETS = """
    SELECT organization_id, CAST(period_start AS DATE) AS period_start,
           CAST(period_end AS DATE) AS period_end, value AS used_so_far, "limit" AS budget,
           CASE WHEN "limit" > 0 THEN 100.0 * value / "limit" END AS used_pct,
           forecast_total, forecast_low, forecast_high,
           CASE WHEN "limit" > 0 THEN 100.0 * forecast_total / "limit" END AS forecast_pct,
           days_until_limit AS days_until_budget, status
    FROM quota_status WHERE metric = 'credits' AND scope = 'organization'
    ORDER BY forecast_pct DESC NULLS LAST, organization_id
"""


def load_organizations(
    con: duckdb.DuckDBPyConnection, views: set[str], alerts: list[Alert]
) -> list[Organization]:
    """Every organization with its budget figures and open alerts, the ones at risk first."""
    orgs: dict[str, Organization] = {}
    for r in _rows(
        con,
        "SELECT organization_id, organization_name, subscription, period_start, period_end "
        "FROM organizations",
    ):
        oid = str(r["organization_id"])
        orgs[oid] = Organization(
            organization_id=oid,
            name=str(r["organization_name"] or oid),
            subscription=r["subscription"] if isinstance(r["subscription"], str) else None,
            period_start=as_date(r["period_start"]),
            period_end=as_date(r["period_end"]),
        )
    if "usage_against_budget" in views:
        for r in _rows(con, ORGANIZATION_BUDGETS):
            org = orgs.get(str(r["organization_id"]))
            if org is None or org.status is not None:
                continue
            org.period_start = as_date(r["period_start"]) or org.period_start
            org.period_end = as_date(r["period_end"]) or org.period_end
            org.used = finite(r["used_so_far"])
            org.budget = finite(r["budget"])
            org.used_pct = finite(r["used_pct"])
            org.forecast = finite(r["forecast_total"])
            org.forecast_low = finite(r["forecast_low"])
            org.forecast_high = finite(r["forecast_high"])
            org.forecast_pct = finite(r["forecast_pct"])
            org.days_until_budget = finite(r["days_until_budget"])
            org.status = str(r["status"]) if r["status"] else None
    # credits used in the current period when quota_status has no row for the organization
    missing = [
        o
        for o in orgs.values()
        if o.used is None and o.status is None and o.period_start is not None
    ]
    if missing:
        since = min(o.period_start for o in missing if o.period_start is not None)
        for r in _rows(
            con,
            "SELECT d.organization_id, sum(d.credits) AS used "
            "FROM report_usage AS d JOIN organizations AS o USING (organization_id) "
            "WHERE d.interval = 'day' AND d.scope = 'organization' AND d.start_date >= ? "
            "AND CAST(d.start_date AS DATE) >= CAST(o.period_start AS DATE) "
            "AND (o.period_end IS NULL OR CAST(d.start_date AS DATE) < CAST(o.period_end AS DATE)) "
            "GROUP BY ALL",
            [since],
        ):
            org = orgs.get(str(r["organization_id"]))
            if org is not None and org.used is None:
                org.used = finite(r["used"])
    for alert in alerts:
        if alert.organization_id in orgs:
            orgs[alert.organization_id].alerts.append(alert)
    return sorted(orgs.values(), key=Organization.sort_key)


def _explain(r: dict[str, Any]) -> tuple[str, str]:
    """(subject, explanation) of an alert row: the resource or project it is about, and why."""
    rule = str(r.get("rule") or "")
    metric = r.get("metric")
    if not metric and rule.startswith("resource_limit"):
        key = str(r.get("alert_key") or "")
        metric = next((res for res in RESOURCE_NAMES if f"resource_limit.{res}" in key), None)
    value, limit = finite(r.get("value")), finite(r.get("limit_value"))
    threshold, forecast = finite(r.get("threshold")), finite(r.get("forecast"))
    detail = str(r.get("explanation") or "").strip()
    title = str(r.get("title") or "").strip()
    threshold_text = f"; threshold {fmt_pct(threshold)}" if threshold is not None else ""

    def pct(v: float | None) -> str:
        return f" ({fmt_pct(100.0 * v / limit)})" if v is not None and limit else ""

    if rule.startswith("resource_limit") or (metric and metric != "credits"):
        resource = str(metric or "resource").replace("_", " ")
        subject = f"resource: {resource}"
        if value is not None and limit is not None:
            text = (
                f"{fmt_number(value)} {resource} in use against a limit of {fmt_number(limit)}"
                f"{pct(value)}{threshold_text}."
            )
        else:
            text = title or f"{resource} at or above its limit{threshold_text}."
    else:
        project = r.get("project_name") or r.get("project_id")
        subject = f"project: {project}" if project else "organization credits"
        if rule == "credit_forecast" and limit is not None:
            shown = forecast if forecast is not None else value
            text = (
                f"Forecast {fmt_number(shown)} credits for the period against a budget of "
                f"{fmt_number(limit)}{pct(shown)}{threshold_text}."
            )
        elif rule == "credit_actual" and value is not None and limit is not None:
            text = (
                f"{fmt_number(value)} credits used against a budget of {fmt_number(limit)}"
                f"{pct(value)}{threshold_text}."
            )
        else:
            text = title
    if detail and detail not in text:
        text = f"{text} {detail[0].upper()}{detail[1:]}." if text else detail
    return subject, (text or "No explanation recorded.").replace("..", ".")


def load_alerts(con: duckdb.DuckDBPyConnection, views: set[str]) -> list[Alert]:
    """Open alerts, most severe first, each naming its resource/project and explained."""
    if "open_alerts" not in views:
        return []
    columns = live_tables(con).get("quota_alerts", set())
    extra = [c for c in ("metric", "title", "period_end") if c in columns]
    join = ""
    if extra:
        picked = ", ".join(f'q."{c}" AS "q_{c}"' for c in extra)
        join = (
            f", {picked} FROM open_alerts AS a LEFT JOIN quota_alerts AS q "
            "ON q.alert_key = a.alert_key"
        )
    sql = "SELECT a.*" + (join if join else " FROM open_alerts AS a")
    alerts = []
    for r in _rows(con, sql):
        for c in extra:
            r[c] = r.pop(f"q_{c}")
        subject, explanation = _explain(r)
        alerts.append(
            Alert(
                organization_id=str(r["organization_id"]),
                organization_name=str(r["organization_name"] or r["organization_id"]),
                rule=str(r["rule"] or ""),
                subject=subject,
                severity=str(r["severity"] or ""),
                status=str(r["status"] or ""),
                period_start=as_date(r["period_start"]),
                period_end=as_date(r.get("period_end")),
                opened_at=r["opened_at"],
                explanation=explanation,
            )
        )
    order = {"critical": 0, "warning": 1, "info": 2}
    alerts.sort(key=lambda a: (order.get(a.severity, 3), a.organization_name, a.subject))
    return alerts


# What the report reads is bounded by a window, not by the history: the index's chart is the
# daily total of all organizations (one scan of the organization rows, the only read that spans
# the history); an organization's page shows its last RECENT_DAYS days per project, the daily
# totals of its current period, and per subscription period (the `credit_usage` rows with
# interval 'month', ~one row per project and month) the whole history by project and the last
# RECENT_PERIODS periods in full. Day rows are read only from the window (credit_usage is stored
# month by month, so DuckDB skips the other months' row groups).
RECENT_DAYS = 42  # an organization's daily chart and table: the last six weeks
PERIOD_DAYS = 62  # its daily totals kept for the current-period chart (a period is <= 31 days)
RECENT_PERIODS = 6  # its subscription periods listed per project (half a year)

# The project lines of every organization: each project's latest name (from its period rows
# and its day rows in the window, a day's row winning over a period's row of the same start)
# and its rank by credits over the last RECENT_PERIODS periods; the top TOP_PROJECTS get a line
# of their own, the others share OTHER_KEY.
PROJECT_LINES = """
    CREATE OR REPLACE TEMP TABLE report_project_lines AS
    WITH recent_periods AS (
        SELECT organization_id, start_date
        FROM (SELECT organization_id, start_date,
                     row_number() OVER (PARTITION BY organization_id
                                        ORDER BY start_date DESC) AS age
              FROM report_periods WHERE scope = 'organization')
        WHERE age <= $periods
    ),
    named AS (
        SELECT organization_id, project_id, project_name, epoch_us(start_date) * 2 AS recency
        FROM report_periods WHERE scope = 'project'
        UNION ALL
        SELECT organization_id, project_id, project_name, epoch_us(start_date) * 2 + 1
        FROM report_usage
        WHERE interval = 'day' AND scope = 'project' AND start_date >= $days_from
    ),
    names AS (
        SELECT organization_id, project_id, arg_max(project_name, recency) AS name
        FROM named GROUP BY ALL
    ),
    ranked AS (
        SELECT c.organization_id, c.project_id,
               row_number() OVER (PARTITION BY c.organization_id
                                  ORDER BY sum(c.credits) DESC, c.project_id) AS rank
        FROM report_periods AS c JOIN recent_periods AS p USING (organization_id, start_date)
        WHERE c.scope = 'project'
        GROUP BY c.organization_id, c.project_id HAVING sum(c.credits) > 0
    )
    SELECT n.organization_id, n.project_id, n.name, r.rank,
           CASE WHEN r.rank <= $top THEN n.project_id ELSE $other_key END AS key
    FROM names AS n LEFT JOIN ranked AS r USING (organization_id, project_id)
"""
# Credits per organization, line and bucket, as one row per organization and line holding its
# buckets' indexes and credits as two lists. A bucket is a day from $since on (`RECENT_SERIES`)
# or one of the organization's subscription periods, oldest first (`PERIOD_SERIES`).
_LINE_KEY = """
    CASE WHEN c.scope = 'deleted_projects' THEN $deleted_key
         ELSE coalesce(l.key, $other_key) END
"""
RECENT_SERIES = f"""
    WITH cells AS (
        SELECT c.organization_id, {_LINE_KEY} AS key,
               date_diff('day', CAST($since AS DATE), CAST(c.start_date AS DATE)) AS slot,
               sum(c.credits) AS credits
        FROM report_usage AS c
        LEFT JOIN report_project_lines AS l USING (organization_id, project_id)
        WHERE c.interval = 'day' AND c.scope IN ('project', 'deleted_projects')
          AND c.start_date >= $since
        GROUP BY ALL
    )
    SELECT organization_id, key, list(slot), list(credits) FROM cells GROUP BY ALL
"""
PERIOD_SERIES = f"""
    WITH periods AS (
        SELECT organization_id, start_date,
               row_number() OVER (PARTITION BY organization_id ORDER BY start_date) - 1 AS slot
        FROM report_periods WHERE scope = 'organization'
    ),
    cells AS (
        SELECT c.organization_id, {_LINE_KEY} AS key, p.slot, sum(c.credits) AS credits
        FROM report_periods AS c
        JOIN periods AS p USING (organization_id, start_date)
        LEFT JOIN report_project_lines AS l USING (organization_id, project_id)
        WHERE c.scope IN ('project', 'deleted_projects')
        GROUP BY ALL
    )
    SELECT organization_id, key, list(slot), list(credits) FROM cells GROUP BY ALL
"""
# The organization rows of the subscription periods: whole history, newest first.
PERIOD_TOTALS = """
    SELECT organization_id, CAST(start_date AS DATE) AS period_start,
           CAST(end_date AS DATE) AS period_end,
           start_date <= get_current_timestamp() AT TIME ZONE 'UTC'
               AND get_current_timestamp() AT TIME ZONE 'UTC' < end_date AS is_current_period,
           credits
    FROM report_periods WHERE scope = 'organization'
    ORDER BY organization_id, period_start DESC
"""
# Every project line's credits in the last RECENT_PERIODS periods, with its share of the
# organization's (as the view `period_usage_by_project`).
PERIOD_PROJECTS = """
    WITH totals AS (
        SELECT organization_id, start_date, credits
        FROM (SELECT organization_id, start_date, credits,
                     row_number() OVER (PARTITION BY organization_id
                                        ORDER BY start_date DESC) AS age
              FROM report_periods WHERE scope = 'organization')
        WHERE age <= $periods
    )
    SELECT c.organization_id, c.scope AS line,
           CASE WHEN c.scope = 'deleted_projects' THEN $deleted
                ELSE coalesce(l.name, c.project_name) END AS project_name,
           CAST(c.start_date AS DATE) AS period_start, CAST(c.end_date AS DATE) AS period_end,
           c.credits,
           CASE WHEN t.credits > 0 THEN c.credits / t.credits END AS share_of_organization
    FROM report_periods AS c
    JOIN totals AS t USING (organization_id, start_date)
    LEFT JOIN report_project_lines AS l USING (organization_id, project_id)
    WHERE c.scope IN ('project', 'deleted_projects')
    ORDER BY c.organization_id, period_start DESC, c.credits DESC, project_name
"""


def choose_grain(first: date | None, last: date | None) -> str:
    """'day' for spans up to ~4 months, 'week' up to ~3 years, else 'month'."""
    if first is None or last is None:
        return "day"
    span = (last - first).days + 1
    return "day" if span <= DAILY_UP_TO_DAYS else "week" if span <= WEEKLY_UP_TO_DAYS else "month"


def _day_buckets(first: date, last: date) -> list[Bucket]:
    return [
        Bucket(d, d, d.isoformat())
        for d in (first + timedelta(days=i) for i in range((last - first).days + 1))
    ]


def _buckets(grain: str, first: date, last: date) -> list[Bucket]:
    out: list[Bucket] = []
    if grain == "day":
        return _day_buckets(first, last)
    if grain == "week":
        start = first - timedelta(days=first.weekday())
        while start <= last:
            end = start + timedelta(days=6)
            out.append(_clipped(start, end, first, last, f"week of {start.isoformat()}"))
            start = end + timedelta(days=1)
        return out
    start = first.replace(day=1)
    while start <= last:
        nxt = date(start.year + start.month // 12, start.month % 12 + 1, 1)
        out.append(_clipped(start, nxt - timedelta(days=1), first, last, f"{start:%B %Y}"))
        start = nxt
    return out


def _clipped(start: date, end: date, first: date, last: date, caption: str) -> Bucket:
    """The bucket start..end cut to the data's range; its caption says when it is partial."""
    lo, hi = max(start, first), min(end, last)
    if (lo, hi) != (start, end):
        days = (hi - lo).days + 1
        caption += f" (partial: {days} day{'s' if days != 1 else ''} of data)"
    return Bucket(lo, hi, caption)


def _bucket_index(buckets: list[Bucket]) -> dict[date, int]:
    """The bucket of every day of the range."""
    index: dict[date, int] = {}
    for i, b in enumerate(buckets):
        for n in range((b.end - b.start).days + 1):
            index[b.start + timedelta(days=n)] = i
    return index


def load_history(con: duckdb.DuckDBPyConnection, basis: Basis | None = None) -> History:
    """Credits of all organizations over the whole range, at the grain its span calls for,
    on the report's `basis` (complete days: `report_usage`, see :func:`prepare_usage`).

    One scan of the organization day rows (a few columns): the report's only read that spans
    the history (besides the one finding the partial days)."""
    basis = basis or Basis(None)
    rows = con.execute(
        "SELECT CAST(start_date AS DATE) AS day, sum(credits) FROM report_usage "
        "WHERE interval = 'day' AND scope = 'organization' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    if not rows:
        return History("day", None, None, [], [], basis)
    first, last = as_date(rows[0][0]), as_date(rows[-1][0])
    assert first is not None and last is not None
    grain = choose_grain(first, last)
    buckets = _buckets(grain, first, last)
    slot = _bucket_index(buckets)
    totals = [0.0] * len(buckets)
    for day, credits in rows:
        totals[slot[as_date(day)]] += float(credits or 0.0)  # type: ignore[index]
    return History(grain, first, last, buckets, totals, basis)


def _line_meta(
    con: duckdb.DuckDBPyConnection,
) -> dict[str, dict[str, tuple[int, str]]]:
    """organization id -> line key -> (rank, name) of its top projects."""
    meta: dict[str, dict[str, tuple[int, str]]] = defaultdict(dict)
    for oid, key, name, rank in con.execute(
        "SELECT organization_id, key, name, rank FROM report_project_lines WHERE rank <= ?",
        [TOP_PROJECTS],
    ).fetchall():
        meta[str(oid)][str(key)] = (int(rank), str(name or key))
    return meta


def _series(
    con: duckdb.DuckDBPyConnection, sql: str, params: dict[str, object], size: dict[str, int] | int
) -> dict[str, dict[str, list[float]]]:
    """organization id -> line key -> credits per bucket, from RECENT_SERIES or PERIOD_SERIES;
    `size` is the number of buckets (per organization, or for all)."""
    out: dict[str, dict[str, list[float]]] = defaultdict(dict)
    params = {"deleted_key": DELETED_KEY, "other_key": OTHER_KEY, **params}
    for oid, key, slots, credits in con.execute(sql, params).fetchall():
        oid = str(oid)
        values = [0.0] * (size if isinstance(size, int) else size.get(oid, 0))
        for slot, amount in zip(slots, credits, strict=True):
            if 0 <= slot < len(values) and amount is not None:
                values[slot] += amount
        out[oid][str(key)] = values
    return out


def _lines(
    per_key: dict[str, list[float]], meta: dict[str, tuple[int, str]], size: int
) -> list[Line]:
    """The chart lines of one organization: its top projects in rank order (zeros where they
    have no credits), then 'Other projects' and 'Deleted projects' when they have any."""
    lines: list[Line] = [
        (name, "project", per_key.get(key) or [0.0] * size)
        for key, (_, name) in sorted(meta.items(), key=lambda item: item[1][0])
    ]
    for key, label, kind in (
        (OTHER_KEY, OTHER_LABEL, "other"),
        (DELETED_KEY, DELETED_PROJECTS_LABEL, "deleted"),
    ):
        values = per_key.get(key)
        if values and any(v > 0 for v in values):
            lines.append((label, kind, values))
    return lines


def _period_bucket(start: date, end: date, current: bool) -> Bucket:
    """The bar of the subscription period `[start, end)` in an organization's period chart."""
    caption = fmt_period(start, end) + (
        " (current period, complete days so far)" if current else ""
    )
    return Bucket(start, end - timedelta(days=1), caption)


def load_details(con: duckdb.DuckDBPyConnection, last: date | None) -> dict[str, Detail]:
    """Every organization's page data, read from the window ending on `last` (the last day of
    data) and from the subscription-period rows."""
    if last is None:
        return {}
    recent_from = last - timedelta(days=RECENT_DAYS - 1)
    days_from = last - timedelta(days=PERIOD_DAYS)
    con.execute(
        PROJECT_LINES,
        {
            "periods": RECENT_PERIODS,
            "days_from": min(recent_from, days_from),
            "top": TOP_PROJECTS,
            "other_key": OTHER_KEY,
        },
    )
    meta = _line_meta(con)
    details: dict[str, Detail] = defaultdict(Detail)

    for oid, day, credits in con.execute(
        "SELECT organization_id, CAST(start_date AS DATE), credits FROM report_usage "
        "WHERE interval = 'day' AND scope = 'organization' AND start_date >= ? "
        "ORDER BY organization_id, start_date",
        [days_from],
    ).fetchall():
        details[str(oid)].days.append((as_date(day), float(credits or 0.0)))  # type: ignore[arg-type]

    recent = _day_buckets(recent_from, last)
    by_day = _series(con, RECENT_SERIES, {"since": recent_from}, len(recent))
    for oid, per_key in by_day.items():
        details[oid].recent = Chart("day", recent, _lines(per_key, meta.get(oid, {}), len(recent)))

    for r in _rows(con, PERIOD_TOTALS):  # newest first
        details[str(r["organization_id"])].periods.append(r)
    sizes = {oid: len(detail.periods) for oid, detail in details.items()}
    by_period = _series(con, PERIOD_SERIES, {}, sizes)
    # the same few hundred periods recur in every organization (subscriptions start on one of
    # 31 days): each bar is made once, not once per organization and period
    bars: dict[tuple[date, date, bool], Bucket] = {}
    for oid, detail in details.items():
        buckets = []
        for p in reversed(detail.periods):
            key = (p["period_start"], p["period_end"], bool(p["is_current_period"]))
            bar = bars.get(key)
            if bar is None:
                bar = bars[key] = _period_bucket(*key)
            buckets.append(bar)
        lines = _lines(by_period.get(oid, {}), meta.get(oid, {}), len(buckets))
        detail.by_period = Chart("subscription period", buckets, lines)

    for r in _rows(
        con, PERIOD_PROJECTS, {"periods": RECENT_PERIODS, "deleted": DELETED_PROJECTS_LABEL}
    ):
        details[str(r["organization_id"])].period_projects.append(r)
    con.execute("DROP TABLE report_project_lines")
    return dict(details)


def load_resources(
    con: duckdb.DuckDBPyConnection,
) -> dict[str, list[tuple[str, float, float | None]]]:
    """The latest count (and limit, when known) of every resource per organization."""
    order = {name: i for i, name in enumerate(RESOURCE_NAMES)}
    out: dict[str, list[tuple[str, float, float | None]]] = defaultdict(list)
    for oid, resource, count, limit in con.execute(
        "SELECT organization_id, resource, "
        "arg_max(resource_count, observed_at) AS resource_count, "
        "arg_max(resource_limit, observed_at) AS resource_limit "
        "FROM resource_counts_over_time GROUP BY ALL"
    ).fetchall():
        number = finite(count)
        if number is not None:
            out[str(oid)].append((str(resource), number, finite(limit)))
    for rows in out.values():
        rows.sort(key=lambda r: order.get(r[0], 99))
    return out
