"""What the report shows, read from the published warehouse in a few set-wise queries.

Owns the report's reading side: the overview row of every organization (usage against budget,
forecast, open alerts, and a risk level that sorts the ones at risk first), the open alerts with
the resource or project they name and a sentence explaining them, and per organization the usage
history aggregated to one grain for the whole report (day, week or month, chosen from the span of
the data so a chart has at most ~120 bars), the current period's days, the subscription periods
and the latest resource counts. Everything is read through the analyst views of
`warehouse.views` (TEMP views when the database lacks them), except the daily rows the charts
aggregate, read from `credit_usage` with the views' definitions (:data:`PROJECT_LINES`); columns
only the derived tables have are read only when they exist. Aggregation happens in DuckDB, and
each query runs once for all organizations, so the cost is linear in the data, not in
organizations x data.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import duckdb

from reports.charts import Bucket
from reports.formatting import as_date, finite, fmt_number, fmt_pct
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

    def sort_key(self) -> tuple[float, float, float, str]:
        return (-self.risk, -(self.forecast_pct or -1.0), -(self.used_pct or -1.0), self.name)


@dataclass
class History:
    """Every organization's usage over the report's range, at one grain."""

    grain: str
    first: date | None
    last: date | None
    buckets: list[Bucket]
    # organization id -> [(series name, line kind, credits per bucket)], top projects first
    series: dict[str, list[tuple[str, str, list[float]]]]


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> list:
    cursor = con.execute(sql, params or [])
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def available_views(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Make the analyst views usable on `con`; the names of those available."""
    return set(ensure_views(con))


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
        for r in _rows(con, "SELECT * FROM usage_against_budget WHERE scope = 'organization'"):
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
    missing = [o for o in orgs.values() if o.used is None and o.period_start is not None]
    if missing:
        for r in _rows(
            con,
            "SELECT d.organization_id, sum(d.credits) AS used "
            "FROM daily_usage_by_organization AS d JOIN organizations AS o USING (organization_id) "
            "WHERE d.day >= CAST(o.period_start AS DATE) "
            "AND (o.period_end IS NULL OR d.day < CAST(o.period_end AS DATE)) GROUP BY ALL",
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


# The rows of the views `daily_usage_by_organization` and `daily_usage_by_project` that the
# report charts, read from `credit_usage` itself: the same days, credits and latest project
# names, without the views' ordering of the whole history and their columns the charts do not
# use (the views took ten times as long, growing with the history).
ORGANIZATION_DAYS = """
    SELECT organization_id, CAST(start_date AS DATE) AS day, credits
    FROM credit_usage WHERE interval = 'day' AND scope = 'organization'
"""
PROJECT_LINES = """
    project_names AS (
        SELECT organization_id, project_id, arg_max(project_name, start_date) AS project_name
        FROM credit_usage WHERE scope = 'project' GROUP BY organization_id, project_id
    ),
    lines AS (
        SELECT c.organization_id, c.scope AS line, c.project_id,
               CASE WHEN c.scope = 'deleted_projects' THEN $deleted
                    ELSE coalesce(p.project_name, c.project_name) END AS project_name,
               CAST(c.start_date AS DATE) AS day, c.credits
        FROM credit_usage AS c
        LEFT JOIN project_names AS p
            ON p.organization_id = c.organization_id AND p.project_id = c.project_id
        WHERE c.interval = 'day' AND c.scope IN ('project', 'deleted_projects')
    )
"""


def choose_grain(first: date | None, last: date | None) -> str:
    """'day' for spans up to ~4 months, 'week' up to ~3 years, else 'month'."""
    if first is None or last is None:
        return "day"
    span = (last - first).days + 1
    return "day" if span <= DAILY_UP_TO_DAYS else "week" if span <= WEEKLY_UP_TO_DAYS else "month"


def _buckets(grain: str, first: date, last: date) -> list[Bucket]:
    out: list[Bucket] = []
    if grain == "day":
        return [
            Bucket(d, d, d.isoformat())
            for d in (first + timedelta(days=i) for i in range((last - first).days + 1))
        ]
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


def load_history(con: duckdb.DuckDBPyConnection) -> History:
    """Credits per organization, series line and bucket: the top projects of each organization
    over the whole range, the rest as 'Other projects', deleted projects as their own line."""
    first, last = con.execute(
        f"SELECT min(day), max(day) FROM ({ORGANIZATION_DAYS})"
    ).fetchone() or (None, None)
    first, last = as_date(first), as_date(last)
    grain = choose_grain(first, last)
    if first is None or last is None:
        return History(grain, None, None, [], {})
    buckets = _buckets(grain, first, last)
    # one row per organization and line, its buckets' credits as two lists (bucket index,
    # credits): a few rows per organization to bring into Python instead of one per bucket
    con.execute("CREATE OR REPLACE TEMP TABLE report_buckets (start DATE, slot INTEGER)")
    con.executemany(
        "INSERT INTO report_buckets VALUES (?, ?)", [(b.start, i) for i, b in enumerate(buckets)]
    )
    rows = con.execute(
        f"""
        WITH {PROJECT_LINES},
        ranked AS (
            SELECT organization_id, project_id, arg_max(project_name, day) AS name,
                   row_number() OVER (PARTITION BY organization_id
                                      ORDER BY sum(credits) DESC, project_id) AS rank
            FROM lines WHERE line = 'project'
            GROUP BY organization_id, project_id
            HAVING sum(credits) > 0
        ),
        bucketed AS (
            SELECT l.organization_id,
                   CASE WHEN l.line = 'deleted_projects' THEN $deleted_key
                        WHEN r.rank <= {TOP_PROJECTS} THEN l.project_id
                        ELSE $other_key END AS key,
                   any_value(r.name) AS name,
                   min(r.rank) AS rank,
                   greatest(CAST(date_trunc('{grain}', l.day) AS DATE), DATE '{first}')
                       AS bucket,
                   sum(l.credits) AS credits
            FROM lines AS l
            LEFT JOIN ranked AS r USING (organization_id, project_id)
            GROUP BY ALL
        )
        SELECT b.organization_id, b.key, any_value(b.name) AS name, min(b.rank) AS rank,
               list(s.slot) AS slots, list(coalesce(b.credits, 0.0)) AS credits
        FROM bucketed AS b JOIN report_buckets AS s ON s.start = b.bucket
        GROUP BY b.organization_id, b.key
        """,
        {"deleted_key": DELETED_KEY, "other_key": OTHER_KEY, "deleted": DELETED_PROJECTS_LABEL},
    ).fetchall()
    con.execute("DROP TABLE report_buckets")
    values: dict[str, dict[str, list[float]]] = defaultdict(dict)
    meta: dict[str, dict[str, tuple[int, str]]] = defaultdict(dict)
    for oid, key, name, rank, slots, credits in rows:
        oid = str(oid)
        per_key = values[oid].setdefault(key, [0.0] * len(buckets))
        for slot, amount in zip(slots, credits, strict=True):
            per_key[slot] += float(amount)
        if key == DELETED_KEY:
            meta[oid][key] = (1001, DELETED_PROJECTS_LABEL)
        elif key == OTHER_KEY:
            meta[oid][key] = (1000, OTHER_LABEL)
        else:
            meta[oid][key] = (int(rank), str(name or key))
    series: dict[str, list[tuple[str, str, list[float]]]] = {}
    for oid, per_key in values.items():
        ordered = sorted(per_key, key=lambda k: meta[oid][k][0])
        series[oid] = [
            (
                meta[oid][k][1],
                "deleted" if k == DELETED_KEY else "other" if k == OTHER_KEY else "project",
                per_key[k],
            )
            for k in ordered
            if any(v > 0 for v in per_key[k]) or k not in (OTHER_KEY, DELETED_KEY)
        ]
    return History(grain, first, last, buckets, series)


def load_current_days(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[date, float]]]:
    """Daily credits of the last ~2 months per organization (enough for the current period)."""
    out: dict[str, list[tuple[date, float]]] = defaultdict(list)
    for oid, day, credits in con.execute(
        f"WITH days AS ({ORGANIZATION_DAYS}) SELECT organization_id, day, credits FROM days "
        "WHERE day >= (SELECT max(day) FROM days) - 62 ORDER BY organization_id, day"
    ).fetchall():
        out[str(oid)].append((as_date(day), float(credits or 0.0)))  # type: ignore[arg-type]
    return out


def load_periods(con: duckdb.DuckDBPyConnection) -> dict[str, list[dict[str, Any]]]:
    """Credits per subscription period per organization, newest first."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in _rows(
        con,
        "SELECT organization_id, period_start, period_end, is_current_period, credits "
        "FROM period_usage_by_organization ORDER BY organization_id, period_start DESC",
    ):
        out[str(r["organization_id"])].append(r)
    return out


def load_period_projects(con: duckdb.DuckDBPyConnection) -> dict[str, list[dict[str, Any]]]:
    """Credits per subscription period and project line per organization."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in _rows(
        con,
        "SELECT organization_id, line, project_name, period_start, period_end, credits, "
        "share_of_organization FROM period_usage_by_project "
        "ORDER BY organization_id, period_start DESC, credits DESC, project_name",
    ):
        out[str(r["organization_id"])].append(r)
    return out


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
