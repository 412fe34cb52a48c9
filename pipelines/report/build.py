"""The usage report: one self-contained HTML file built from the published warehouse.

Owns reading what the report shows (through the analyst views of `warehouse.views`, created as
TEMP views when the database lacks them) and laying it out: a summary table, then per
organization the subscription-period chart (budget line and forecast band when `quota_status`
exists), daily credits stacked by top projects (deleted projects their own series), resource
counts against limits (when known) and the open alerts with explanations (when `quota_alerts`
exists). No scripts, no external resources (a Content-Security-Policy forbids them); every
name is HTML-escaped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from html import escape
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from pipelines.report import charts
from warehouse.files import atomic_write
from warehouse.publish import connect_readonly
from warehouse.views import DELETED_PROJECTS_LABEL, ensure_views

TOP_PROJECTS = 5
OTHER_LABEL = "Other projects"
REPORT_PATH = Path("report") / "index.html"


@dataclass
class OrgReport:
    """Everything the report shows about one organization."""

    organization_id: str
    name: str
    subscription: str | None
    period_start: date | None
    period_end: date | None
    daily: list[tuple[date, float]] = field(default_factory=list)
    budget: dict[str, Any] | None = None
    days: list[date] = field(default_factory=list)
    series: list[tuple[str, str, list[float]]] = field(default_factory=list)
    resources: list[tuple[str, float, float | None]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)


def _date(value: object) -> date | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return pd.Timestamp(value).date()  # type: ignore[arg-type]


def _num(value: object) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _frame(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    return con.execute(sql).df()


def _stack(org_rows: pd.DataFrame) -> tuple[list[date], list[tuple[str, str, list[float]]]]:
    """Days and stacked series: top projects, other projects, deleted projects."""
    if org_rows.empty:
        return [], []
    org_rows = org_rows.copy()
    org_rows["day"] = org_rows["day"].map(_date)
    first, last = org_rows["day"].min(), org_rows["day"].max()
    days = [d.date() for d in pd.date_range(first, last, freq="D")]
    live = org_rows[org_rows["line"] == "project"]
    totals = live.groupby("project_id")["credits"].sum().sort_values(ascending=False)
    top = [pid for pid, credits in totals.items() if credits > 0][:TOP_PROJECTS]
    names = live.groupby("project_id")["project_name"].last()
    org_rows["key"] = org_rows["project_id"].where(org_rows["project_id"].isin(top), OTHER_LABEL)
    org_rows.loc[org_rows["line"] == "deleted_projects", "key"] = DELETED_PROJECTS_LABEL
    pivot = org_rows.pivot_table(index="day", columns="key", values="credits", aggfunc="sum")
    pivot = pivot.reindex(days).fillna(0.0)
    series: list[tuple[str, str, list[float]]] = []
    for i, pid in enumerate(top):
        label = str(names.get(pid) or pid)
        series.append((label, charts.PALETTE[i % len(charts.PALETTE)], list(pivot[pid])))
    for key, color in (
        (OTHER_LABEL, charts.OTHER_COLOR),
        (DELETED_PROJECTS_LABEL, charts.DELETED_COLOR),
    ):
        if key in pivot.columns and float(pivot[key].sum()) > 0:
            series.append((key, color, list(pivot[key])))
    return days, series


def load(con: duckdb.DuckDBPyConnection) -> list[OrgReport]:
    """Read the report's data from a (read-only) connection to the published database."""
    available = set(ensure_views(con))
    orgs = _frame(
        con,
        "SELECT organization_id, organization_name, subscription, period_start, period_end "
        "FROM organizations ORDER BY organization_name, organization_id",
    )
    daily = _frame(con, "SELECT organization_id, day, credits FROM daily_usage_by_organization")
    lines = _frame(
        con,
        "SELECT organization_id, line, project_id, project_name, day, credits "
        "FROM daily_usage_by_project",
    )
    budgets = (
        _frame(con, "SELECT * FROM usage_against_budget WHERE scope = 'organization'")
        if "usage_against_budget" in available
        else pd.DataFrame()
    )
    resources = _frame(
        con,
        "SELECT organization_id, resource, "
        "arg_max(resource_count, observed_at) AS resource_count, "
        "arg_max(resource_limit, observed_at) AS resource_limit "
        "FROM resource_counts_over_time GROUP BY ALL",
    )
    alerts = (
        _frame(con, "SELECT * FROM open_alerts") if "open_alerts" in available else pd.DataFrame()
    )
    reports: list[OrgReport] = []
    for org in orgs.to_dict("records"):
        oid = str(org["organization_id"])
        report = OrgReport(
            organization_id=oid,
            name=str(org["organization_name"]),
            subscription=org["subscription"] if isinstance(org["subscription"], str) else None,
            period_start=_date(org["period_start"]),
            period_end=_date(org["period_end"]),
        )
        mine = daily[daily["organization_id"] == oid]
        report.daily = sorted(
            (d, float(c)) for d, c in zip(mine["day"].map(_date), mine["credits"], strict=True)
        )
        if not budgets.empty:
            rows = budgets[budgets["organization_id"] == oid].to_dict("records")
            if rows:
                report.budget = rows[0]
                report.period_start = _date(rows[0]["period_start"]) or report.period_start
                report.period_end = _date(rows[0]["period_end"]) or report.period_end
        report.days, report.series = _stack(lines[lines["organization_id"] == oid])
        order = {name: i for i, name in enumerate(charts_order())}
        mine_res = resources[resources["organization_id"] == oid].to_dict("records")
        mine_res.sort(key=lambda r: order.get(str(r["resource"]), 99))
        report.resources = [
            (str(r["resource"]), float(r["resource_count"]), _num(r["resource_limit"]))
            for r in mine_res
            if _num(r["resource_count"]) is not None
        ]
        if not alerts.empty:
            report.alerts = alerts[alerts["organization_id"] == oid].to_dict("records")
        reports.append(report)
    return reports


def charts_order() -> tuple[str, ...]:
    from warehouse.views import RESOURCES

    return RESOURCES


# --- HTML -----------------------------------------------------------------------------------------

CSS = """
:root { --ink:#0f172a; --muted:#64748b; --line:#e2e8f0; --bg:#f8fafc; --card:#ffffff; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans",
       sans-serif; color: var(--ink); background: var(--bg); }
header { padding: 20px 32px 8px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0; }
h3 { font-size: 13px; margin: 18px 0 6px; color: var(--muted); text-transform: uppercase;
     letter-spacing: .04em; }
main { padding: 0 32px 32px; max-width: 1100px; }
.sub { color: var(--muted); }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
        padding: 18px 22px; margin: 18px 0; }
.card-head { display:flex; align-items: baseline; gap: 12px; flex-wrap: wrap; }
.pill { display:inline-block; white-space: nowrap; padding: 1px 8px; border-radius: 999px;
        font-size: 12px; background: #e2e8f0; color: #334155; }
.pill.bad { background:#fee2e2; color:#991b1b; } .pill.warn { background:#fef3c7; color:#92400e; }
.pill.ok { background:#dcfce7; color:#166534; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 8px; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { font-size: 12px; color: var(--muted); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
svg.chart { width: 100%; height: auto; display: block; }
svg .grid { stroke: #eef2f7; } svg .axis { stroke: #94a3b8; }
svg text { font: 11px system-ui, -apple-system, "DejaVu Sans", sans-serif; fill: #475569; }
svg text.note { font-weight: 600; } svg text.value { fill: #0f172a; }
.legend { display:flex; flex-wrap: wrap; gap: 6px 16px; margin: 4px 0 2px 64px;
          font-size: 12px; color: #334155; }
.key { display:inline-flex; align-items:center; gap:6px; }
.swatch { display:inline-block; width: 12px; height: 12px; border-radius: 2px;
          background: var(--c); }
.swatch.line { height: 3px; border-radius: 0; width: 16px; }
.swatch.dash { height: 0; width: 16px; border-top: 2px dashed var(--c); background: none; }
.swatch.band { opacity: .35; }
.empty { color: var(--muted); font-style: italic; margin: 4px 0; }
a { color: #1d4ed8; text-decoration: none; }
"""


def _pill(status: str | None) -> str:
    if not status:
        return ""
    cls = {"exceeded": "bad", "forecast_exceeds": "bad", "warning": "warn", "ok": "ok"}.get(
        status, ""
    )
    return f'<span class="pill {cls}">{escape(status.replace("_", " "))}</span>'


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def _summary(reports: list[OrgReport]) -> str:
    rows = []
    for i, r in enumerate(reports, start=1):
        b = r.budget or {}
        period_total = sum(
            c
            for d, c in r.daily
            if r.period_start and r.period_start <= d and (r.period_end is None or d < r.period_end)
        )
        used = _num(b.get("used_so_far"))
        used = period_total if used is None else used
        rows.append(
            "<tr>"
            f'<td><a href="#org-{i}">{escape(r.name)}</a></td>'
            f"<td>{escape(r.subscription or '-')}</td>"
            f"<td>{escape(_period_text(r))}</td>"
            f'<td class="num">{escape(charts.fmt_credits(used))}</td>'
            f'<td class="num">{escape(charts.fmt_credits(_num(b.get("budget")) or math.nan))}</td>'
            f'<td class="num">{escape(_pct(_num(b.get("forecast_pct"))))}</td>'
            f"<td>{_pill(b.get('status')) if b else ''}</td>"
            f'<td class="num">{len(r.alerts)}</td>'
            "</tr>"
        )
    return (
        '<section class="card"><h2>Organizations</h2><table><thead><tr>'
        "<th>organization</th><th>subscription</th><th>current period</th>"
        '<th class="num">credits this period</th><th class="num">budget</th>'
        '<th class="num">forecast vs budget</th><th>status</th><th class="num">open alerts</th>'
        "</tr></thead><tbody>" + "".join(rows) + "</tbody></table></section>"
    )


def _period_text(r: OrgReport) -> str:
    if not r.period_start or not r.period_end:
        return "-"
    last = r.period_end - pd.Timedelta(days=1)
    return f"{r.period_start:%Y-%m-%d} to {last:%Y-%m-%d}"


def _period_section(r: OrgReport) -> str:
    if not r.period_start or not r.period_end:
        return '<p class="empty">No current subscription period known.</p>'
    b = r.budget or {}
    svg = charts.period_chart(
        period_start=r.period_start,
        period_end=r.period_end,
        daily=r.daily,
        budget=_num(b.get("budget")),
        forecast_total=_num(b.get("forecast_total")),
        forecast_low=_num(b.get("forecast_low")),
        forecast_high=_num(b.get("forecast_high")),
        label=f"{r.name}: cumulative credits in the current subscription period",
    )
    keys = [("used so far (cumulative)", charts.ACTUAL_COLOR, "line")]
    if _num(b.get("forecast_total")) is not None:
        keys.append(("forecast", charts.FORECAST_COLOR, "dash"))
    if _num(b.get("forecast_low")) is not None:
        keys.append(("forecast band", charts.FORECAST_COLOR, "band"))
    if _num(b.get("budget")) is not None:
        keys.append(("budget", charts.BUDGET_COLOR, "dash"))
    note = ""
    if not b:
        note = '<p class="empty">No budget or forecast published yet (quota_status).</p>'
    else:
        parts = [
            f"used {charts.fmt_credits(_num(b.get('used_so_far')) or 0.0)}",
            f"forecast {charts.fmt_credits(_num(b.get('forecast_total')) or math.nan)}",
        ]
        if _num(b.get("budget")) is not None:
            parts.append(f"of budget {charts.fmt_credits(_num(b.get('budget')) or 0.0)}")
        days = _num(b.get("days_until_budget"))
        if days is not None:
            parts.append(
                "budget already used up" if days <= 0 else f"budget reached in {days:.0f} days"
            )
        note = f'<p class="sub">{escape(", ".join(parts))} {_pill(b.get("status"))}</p>'
    return (
        f"<h3>Current period: {escape(_period_text(r))}</h3>"
        + svg
        + charts.legend_html(keys)
        + note
    )


def _stacked_section(r: OrgReport) -> str:
    if not r.days:
        return '<h3>Daily credits by project</h3><p class="empty">No daily usage loaded.</p>'
    svg = charts.stacked_daily_chart(r.days, r.series, label=f"{r.name}: daily credits by project")
    keys = [(name, color, "box") for name, color, _ in r.series]
    return "<h3>Daily credits by project</h3>" + svg + charts.legend_html(keys)


def _resource_section(r: OrgReport) -> str:
    if not r.resources:
        return '<h3>Resources</h3><p class="empty">No resource counts observed.</p>'
    svg = charts.resource_chart(r.resources, label=f"{r.name}: resource counts against limits")
    note = ""
    if all(limit is None for _, _, limit in r.resources):
        note = '<p class="empty">No resource limits known (quota_status): counts only.</p>'
    return "<h3>Resources against limits</h3>" + svg + note


def _alerts_section(r: OrgReport, alerts_known: bool) -> str:
    if not alerts_known:
        return ""
    if not r.alerts:
        return '<h3>Open alerts</h3><p class="empty">No open alerts.</p>'
    rows = []
    for a in r.alerts:
        opened = a.get("opened_at")
        opened_text = (
            "" if opened is None or opened is pd.NaT else f"{pd.Timestamp(opened):%Y-%m-%d %H:%M}"
        )
        subject = a.get("project_name") or a.get("project_id") or "organization"
        rows.append(
            "<tr>"
            f"<td>{escape(str(a.get('rule') or ''))}</td>"
            f"<td>{escape(str(subject))}</td>"
            f"<td>{escape(str(a.get('status') or ''))}</td>"
            f"<td>{escape(opened_text)}</td>"
            f"<td>{escape(str(a.get('explanation') or ''))}</td>"
            "</tr>"
        )
    return (
        '<h3>Open alerts</h3><table class="alerts"><thead><tr><th>rule</th><th>subject</th>'
        "<th>status</th><th>opened (UTC)</th><th>explanation</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def render(reports: list[OrgReport], *, alerts_known: bool, generated_at: datetime) -> str:
    """The report's HTML for already-loaded data."""
    sections = []
    for i, r in enumerate(reports, start=1):
        head = (
            f'<div class="card-head"><h2>{escape(r.name)}</h2>'
            f'<span class="pill">{escape(r.subscription or "no subscription")}</span>'
            f'<span class="sub">{escape(r.organization_id)}</span></div>'
        )
        sections.append(
            f'<section class="card org" id="org-{i}" '
            f'data-organization="{escape(r.organization_id)}">'
            + head
            + _period_section(r)
            + _stacked_section(r)
            + _resource_section(r)
            + _alerts_section(r, alerts_known)
            + "</section>"
        )
    body = (
        _summary(reports) + "".join(sections)
        if reports
        else '<p class="empty">No organizations in the warehouse yet.</p>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">"
        "<title>UbiOps credit usage report</title>"
        f"<style>{CSS}</style></head><body>"
        "<header><h1>UbiOps credit usage</h1>"
        f'<div class="sub">Generated {generated_at:%Y-%m-%d %H:%M} UTC from the warehouse '
        f"snapshot; all days are UTC days; credits as reported by the API.</div></header>"
        f"<main>{body}</main></body></html>\n"
    )


def build_report(warehouse: Path) -> str:
    """The report of the warehouse's published database as one self-contained HTML page."""
    con = connect_readonly(Path(warehouse))
    try:
        reports = load(con)
        alerts_known = "open_alerts" in set(ensure_views(con))
    finally:
        con.close()
    return render(reports, alerts_known=alerts_known, generated_at=datetime.now(UTC))


def write_report(warehouse: Path, out: Path | None = None) -> Path:
    """Write the report atomically to `out` (default `<warehouse>/report/index.html`)."""
    target = Path(out) if out is not None else Path(warehouse) / REPORT_PATH
    html = build_report(Path(warehouse))
    atomic_write(target, lambda tmp: tmp.write_text(html, encoding="utf-8"))
    return target
