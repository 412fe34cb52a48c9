"""The report's HTML pages: the index (every organization, the ones at risk first, and every
open alert) and one small page per organization.

Owns the layout: the page frame (CSP, style, script), the filter bar, tables that sort, filter
and export as CSV (each cell carries its raw value in `data-v` for both), and the organization
page's sections (current period against budget and forecast, usage history by day/week/month,
subscription periods, credits per period and project, resources against limits, open alerts).
Every text from the warehouse is HTML-escaped here or in `charts`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import lru_cache
from hashlib import sha256
from html import escape

import pandas as pd

from reports import charts
from reports.data import (
    NO_DATA,
    RECENT_DAYS,
    RECENT_PERIODS,
    RISK_LABELS,
    STATUS_RISK,
    Alert,
    Chart,
    Detail,
    History,
    Line,
    Organization,
)
from reports.formatting import (
    MISSING,
    fmt_day,
    fmt_number,
    fmt_pct,
    fmt_period,
    raw_number,
)
from reports.inline import head_tags, script_tag

ORG_DIR = "organizations"
ALERTS_PAGE = "alerts.html"
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")
_UNSAFE = re.compile(r"[&<>\"']")


def org_filename(organization_id: str) -> str:
    """The organization page's file name: its id when that is a safe file name, else a hash."""
    if _SAFE.match(organization_id) and ".." not in organization_id:
        return f"{organization_id}.html"
    return f"org-{sha256(organization_id.encode('utf-8')).hexdigest()[:24]}.html"


# --- building blocks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """A table column: its header, its CSV name, and how it sorts: 'text', 'date', 'number'
    (right-aligned) or 'rank' (sorts as a number, left-aligned: risk and severity pills)."""

    label: str
    name: str
    kind: str = "text"
    total: bool = False


@dataclass
class Row:
    """A table row: (cell HTML, raw value or None) per column, plus filter attributes."""

    cells: list[tuple[str, str | None]]
    attrs: dict[str, str] = field(default_factory=dict)


def _attr(text: str) -> str:
    """`text` escaped for an attribute value (most raw values are digits and dates: as is)."""
    return escape(text) if _UNSAFE.search(text) else text


def num_cell(value: object) -> tuple[str, str]:
    # a formatted number is digits, separators, a sign or an en dash: nothing to escape
    return fmt_number(value), raw_number(value)


def pct_cell(value: object) -> tuple[str, str]:
    return fmt_pct(value), raw_number(value)


def text_cell(value: object) -> tuple[str, str | None]:
    return escape("" if value is None else str(value)), None


def pill(text: str, cls: str) -> str:
    return f'<span class="pill {cls}">{escape(text)}</span>'


def risk_pill(level: int) -> str:
    return pill(RISK_LABELS[level], f"r{level}")


def organization_risk_pill(o: Organization) -> str:
    """Its risk, or 'no data' rather than 'ok' when its current period is not loaded."""
    return pill("no data", "") if o.unmeasured else risk_pill(o.risk)


def table(
    table_id: str,
    title: str,
    columns: Sequence[Column],
    rows: Sequence[Row],
    *,
    csv_file: str,
    note: str = "",
    empty: str = "Nothing to show.",
    collapsed: bool = False,
) -> str:
    """A card with a titled, sortable, filterable table and its CSV export button; a
    `collapsed` table opens on a click (filters, sorting and export work either way)."""
    head = "".join(
        f'<th data-type="{c.kind}" data-name="{escape(c.name)}"'
        + (' class="num"' if c.kind == "number" else "")
        + f">{escape(c.label)}</th>"
        for c in columns
    )
    # each column's opening of a cell, made once (a page at 24 months has thousands of cells)
    opens = [
        "<td" + {"number": ' class="num"', "date": ' class="nowrap"'}.get(c.kind, "")
        for c in columns
    ]
    body = []
    for row in rows:
        attrs = "".join(f' data-{k}="{_attr(v)}"' for k, v in row.attrs.items())
        cells = "".join(
            f'{open_} data-v="{_attr(raw)}">{html}</td>'
            if raw is not None
            else f"{open_}>{html}</td>"
            for open_, (html, raw) in zip(opens, row.cells, strict=True)
        )
        body.append(f"<tr{attrs}>{cells}</tr>")
    foot = ""
    if any(c.total for c in columns):
        first_total = next(i for i, c in enumerate(columns) if c.total)
        tds = [f'<td colspan="{first_total}">Total of shown rows</td>'] if first_total else []
        for i, c in enumerate(columns):
            if i < first_total:
                continue
            if c.total:
                total = sum(float(r.cells[i][1] or 0) for r in rows)
                tds.append(f'<td class="num" data-sum="{i}">{escape(fmt_number(total))}</td>')
            else:
                tds.append("<td></td>")
        foot = "<tfoot><tr>" + "".join(tds) + "</tr></tfoot>"
    content = (
        f'<div class="scroll"><table id="{escape(table_id)}" data-table><thead><tr>{head}'
        f"</tr></thead><tbody>{''.join(body)}</tbody>{foot}</table></div>"
        if rows
        else f'<p class="empty">{escape(empty)}</p>'
    )
    if rows and collapsed:
        content = f"<details><summary>Show the {len(rows):,} rows</summary>{content}</details>"
    button = (
        f'<button type="button" data-csv="{escape(table_id)}" data-file="{escape(csv_file)}">'
        "Export CSV</button>"
        if rows
        else ""
    )
    count = f"{len(rows):,} row{'' if len(rows) == 1 else 's'}"
    return (
        f'<section class="card"><div class="table-head"><h2>{escape(title)}</h2>'
        f'<span class="sub" data-count="{escape(table_id)}">{count}</span>{button}'
        f"</div>{note}{content}</section>"
    )


def filter_bar(*, organizations: bool, first: date | None, last: date | None) -> str:
    """Organization/risk filters (index only) and the date range, applied by the script."""
    parts = []
    if organizations:
        parts.append(
            '<label>Organization<input type="search" data-filter="org" '
            'placeholder="name or id" aria-label="filter by organization"></label>'
            '<label>Risk<select data-filter="risk" aria-label="filter by risk">'
            '<option value="">all</option><option value="1">watch or worse</option>'
            '<option value="2">at risk or worse</option><option value="3">critical</option>'
            "</select></label>"
        )
    bounds = ""
    if first and last:
        bounds = f' min="{first.isoformat()}" max="{last.isoformat()}"'
    parts.append(
        f'<label>From<input type="date" data-filter="from"{bounds} aria-label="from day"></label>'
        f'<label>To<input type="date" data-filter="to"{bounds} aria-label="to day"></label>'
        '<button type="button" data-reset>Clear filters</button>'
    )
    return '<div class="card filters off">' + "".join(parts) + "</div>"


def page(title: str, header: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"{head_tags()}<title>{escape(title)}</title></head><body>"
        f"<header>{header}</header><main>{body}</main>{script_tag()}</body></html>\n"
    )


def _generated(generated_at: datetime, history: History, charted: str | None = None) -> str:
    span = ""
    if history.first and history.last:
        charted = charted or f"charted per {history.grain}"
        span = f"; data from {history.first.isoformat()} to {history.last.isoformat()}, {charted}"
    return (
        f'<div class="sub">Generated {generated_at:%Y-%m-%d %H:%M} UTC from the warehouse'
        f"{escape(span)}. All days are UTC days; amounts are credits as reported by the API."
        f'</div><div class="sub basis">{escape(history.basis.label())}</div>'
    )


def _through(history: History) -> str:
    """' through DAY' of the report's last complete day ('' when there is no data)."""
    through = history.basis.through
    return f" through {through.isoformat()}" if through else ""


def _figure(value: str, label: str) -> str:
    return f'<div class="figure"><b>{escape(value)}</b><span>{escape(label)}</span></div>'


def _colored(lines: Sequence[Line]) -> list[tuple[str, str, list[float]]]:
    """(name, color, values) of chart lines: projects take the palette in order, 'Other
    projects' and 'Deleted projects' their own grays (the same on both of a page's charts)."""
    colored: list[tuple[str, str, list[float]]] = []
    i = 0
    for name, kind, values in lines:
        if kind == "deleted":
            color = charts.DELETED_COLOR
        elif kind == "other":
            color = charts.OTHER_COLOR
        else:
            color = charts.PALETTE[i % len(charts.PALETTE)]
            i += 1
        colored.append((name, color, values))
    return colored


def _history_section(
    buckets: Sequence[charts.Bucket],
    colored: Sequence[tuple[str, str, list[float]]],
    *,
    grain: str,
    label: str,
    kind: str = "history",
) -> str:
    """A stacked history chart with its legend."""
    svg = charts.history_chart(buckets, colored, grain=grain, label=label, kind=kind)
    legend = charts.legend_html([(n, c, "box") for n, c, _ in colored]) if colored else ""
    return svg + legend


# --- the index ------------------------------------------------------------------------------------


def _alert_rows(alerts: Sequence[Alert], *, link_prefix: str | None) -> list[Row]:
    severity_level = {"critical": 3, "warning": 2, "info": 1}
    rows = []
    for a in alerts:
        level = severity_level.get(a.severity, 1)
        org_html = escape(a.organization_name)
        if link_prefix is not None:
            org_html = (
                f'<a href="{link_prefix}{escape(org_filename(a.organization_id))}">{org_html}</a>'
            )
        opened = pd.Timestamp(a.opened_at) if a.opened_at is not None else None
        opened_text = "" if opened is None or pd.isna(opened) else f"{opened:%Y-%m-%d %H:%M}"
        cells: list[tuple[str, str | None]] = [
            (pill(a.severity or "-", f"r{level}"), str(level)),
        ]
        if link_prefix is not None:
            cells.append((org_html, a.organization_name))
        cells += [
            text_cell(a.rule),
            text_cell(a.subject),
            (escape(fmt_period(a.period_start, a.period_end)), fmt_day(a.period_start)),
            (escape(opened_text), opened_text),
            text_cell(a.explanation),
        ]
        attrs = {
            "org": f"{a.organization_name} {a.organization_id}".lower(),
            "risk": str(level),
        }
        if a.period_start:
            attrs["from"] = a.period_start.isoformat()
            attrs["to"] = fmt_day(a.period_end) if a.period_end else a.period_start.isoformat()
        rows.append(Row(cells, attrs))
    return rows


def _alert_columns(with_org: bool) -> list[Column]:
    cols = [Column("severity", "severity", "rank")]
    if with_org:
        cols.append(Column("organization", "organization"))
    return [
        *cols,
        Column("rule", "rule"),
        Column("about", "subject"),
        Column("subscription period", "period", "date"),
        Column("opened (UTC)", "opened_at", "date"),
        Column("explanation", "explanation"),
    ]


def render_index(
    orgs: Sequence[Organization],
    alerts: Sequence[Alert],
    history: History,
    generated_at: datetime,
) -> str:
    """The overview page: key figures, credits of all organizations, the organizations table
    (the ones at risk first) and every open alert."""
    header = (
        "<h1>UbiOps credit usage</h1>"
        + _generated(generated_at, history)
        + f'<div class="nav"><a href="{ALERTS_PAGE}">All open alerts ({len(alerts):,})</a></div>'
    )
    if not orgs:
        return page(
            "UbiOps credit usage report",
            header,
            '<p class="empty">No organizations in the warehouse yet.</p>',
        )
    levels = [o.risk for o in orgs]
    figures = (
        '<div class="figures">'
        + _figure(f"{len(orgs):,}", "organizations")
        + _figure(f"{levels.count(3):,}", "critical")
        + _figure(f"{levels.count(2):,}", "at risk")
        + _figure(f"{len(alerts):,}", "open alerts")
        + _figure(
            fmt_number(sum(o.used or 0.0 for o in orgs)),
            f"credits in current periods{_through(history)}",
        )
        + "</div>"
    )
    chart = _history_section(
        history.buckets,
        [("All organizations", charts.PALETTE[0], history.totals)],
        grain=history.grain,
        label="credits of all organizations",
    )
    chart_card = (
        f'<section class="card chart-card"><h2>All organizations: credits per '
        f"{escape(history.grain)}</h2>{chart}</section>"
    )
    org_columns = [
        Column("risk", "risk", "rank"),
        Column("organization", "organization"),
        Column("subscription", "subscription"),
        Column("current period", "period_start", "date"),
        Column("credits used", "credits_used", "number", total=True),
        Column("budget", "budget", "number"),
        Column("used", "used_pct", "number"),
        Column("forecast", "forecast", "number"),
        Column("forecast vs budget", "forecast_pct", "number"),
        Column("budget used up in", "days_until_budget", "number"),
        Column("open alerts", "open_alerts", "number", total=True),
    ]
    rows = []
    for o in orgs:
        link = f'<a href="{ORG_DIR}/{escape(org_filename(o.organization_id))}">{escape(o.name)}</a>'
        days = o.days_until_budget
        days_text = MISSING if days is None else ("used up" if days <= 0 else f"{days:,.0f} days")
        rows.append(
            Row(
                [
                    (organization_risk_pill(o), str(o.risk)),
                    (link, o.name),
                    text_cell(o.subscription or MISSING),
                    (escape(fmt_period(o.period_start, o.period_end)), fmt_day(o.period_start)),
                    num_cell(o.used),
                    num_cell(o.budget),
                    pct_cell(o.used_pct),
                    num_cell(o.forecast),
                    pct_cell(o.forecast_pct),
                    (escape(days_text), raw_number(days)),
                    (str(len(o.alerts)), str(len(o.alerts))),
                ],
                {"org": f"{o.name} {o.organization_id}".lower(), "risk": str(o.risk)},
            )
        )
    body = (
        figures
        + filter_bar(organizations=True, first=history.first, last=history.last)
        + chart_card
        + table(
            "organizations",
            "Organizations, the ones at risk first",
            org_columns,
            rows,
            csv_file="organizations.csv",
            note='<p class="sub">Credits, budget and forecast are for each organization\'s '
            "current subscription period. Click a header to sort, a name for the details.</p>",
        )
    )
    return page("UbiOps credit usage report", header, body)


def render_alerts(alerts: Sequence[Alert], history: History, generated_at: datetime) -> str:
    """Every open alert of every organization, most severe first (a page of its own, so the
    index stays light at thousands of alerts)."""
    header = (
        '<div class="sub"><a href="index.html">&larr; all organizations</a></div>'
        "<h1>Open alerts</h1>" + _generated(generated_at, history)
    )
    body = filter_bar(organizations=True, first=history.first, last=history.last) + table(
        "alerts",
        "Open alerts, the most severe first",
        _alert_columns(with_org=True),
        _alert_rows(alerts, link_prefix=f"{ORG_DIR}/"),
        csv_file="open-alerts.csv",
        note='<p class="sub">The date range keeps the alerts whose subscription period '
        "overlaps it.</p>",
        empty="No open alerts.",
    )
    return page("Open alerts: UbiOps credit usage", header, body)


# --- an organization's page -----------------------------------------------------------------------


def _period_section(o: Organization, days: list[tuple[date, float]], through: str) -> str:
    if not o.period_start or not o.period_end:
        return '<p class="empty">No current subscription period known.</p>'
    svg = charts.period_chart(
        period_start=o.period_start,
        period_end=o.period_end,
        daily=days,
        budget=o.budget,
        forecast_total=o.forecast,
        forecast_low=o.forecast_low,
        forecast_high=o.forecast_high,
        label=f"{o.name}: cumulative credits in the current subscription period",
    )
    keys = [("used so far (cumulative credits)", charts.ACTUAL_COLOR, "line")]
    if o.forecast is not None:
        keys.append(("forecast", charts.FORECAST_COLOR, "dash"))
    if o.forecast_low is not None:
        keys.append(("forecast band", charts.FORECAST_COLOR, "band"))
    if o.budget is not None:
        keys.append(("budget", charts.BUDGET_COLOR, "dash"))
    if o.status is None:
        note = '<p class="empty">No budget or forecast published yet (quota_status).</p>'
    elif o.status == NO_DATA:
        note = (
            '<p class="empty">No credit usage loaded for this period up to the last complete '
            "day (the warehouse's data end before it): no used-so-far figure and no forecast "
            "(quota_forecasts.reason says from when).</p>"
        )
    else:
        parts = [f"used {fmt_number(o.used)} credits{through}"]
        if o.forecast is not None:
            parts.append(f"forecast {fmt_number(o.forecast)} credits for the period")
        if o.budget is not None:
            parts.append(f"budget {fmt_number(o.budget)} credits")
        if o.days_until_budget is not None:
            d = o.days_until_budget
            parts.append("budget already used up" if d <= 0 else f"budget used up in {d:,.0f} days")
        status = o.status.replace("_", " ")
        cls = {3: "bad", 2: "warn", 1: "warn"}.get(STATUS_RISK.get(o.status, 0), "ok")
        note = f'<p class="sub">{escape("; ".join(parts))} {pill(status, cls)}</p>'
    return (
        f'<section class="card chart-card"><h2>Current subscription period: '
        f"{escape(fmt_period(o.period_start, o.period_end))}</h2>"
        + svg
        + charts.legend_html(keys)
        + note
        + "</section>"
    )


def _daily_rows(chart: Chart, colored: Sequence[tuple[str, str, list[float]]]) -> list[Row]:
    """One table row per day, newest first: the credits and each line's."""
    rows = []
    for i, bucket in enumerate(chart.buckets):
        values = [v[i] for _, _, v in colored]
        day = bucket.start.isoformat()
        cells = [(day, day), num_cell(sum(values)), *(num_cell(v) for v in values)]
        rows.append(Row(cells, {"from": day, "to": day}))
    rows.reverse()
    return rows


@lru_cache(maxsize=8192)
def _period_texts(start: object, end: object) -> tuple[str, str, str]:
    """A period's cell (escaped), first day and end day: the same few hundred periods recur on
    every page (subscriptions start on one of 31 days), so each is formatted once a process."""
    return escape(fmt_period(start, end)), fmt_day(start), fmt_day(end)


def _period_rows(periods: Sequence[dict], through: str = "") -> list[Row]:
    """One table row per subscription period, newest first, with the organization's credits
    (per project: the chart's tooltips and the per-project table); the current period's credits
    are those of its complete days (`through` the report's last one)."""
    rows = []
    for p in periods:
        label, start, end = _period_texts(p["period_start"], p["period_end"])
        cells = [
            (label, start),
            text_cell(f"current{through}" if p["is_current_period"] else ""),
            num_cell(p["credits"]),
        ]
        rows.append(Row(cells, {"from": start, "to": end}))
    return rows


def render_org(
    o: Organization,
    *,
    history: History,
    detail: Detail,
    resources: list[tuple[str, float, float | None]],
    alerts_known: bool,
    generated_at: datetime,
) -> str:
    """One organization's page: a bounded window of detail (its current period, its last
    RECENT_DAYS days by project, its last RECENT_PERIODS periods per project) and its whole
    history per subscription period by project."""
    stem = org_filename(o.organization_id)[:-5]
    header = (
        '<div class="sub"><a href="../index.html">&larr; all organizations</a></div>'
        f"<h1>{escape(o.name)} {organization_risk_pill(o)}</h1>"
        f'<div class="sub">{escape(o.subscription or "no subscription")} subscription; '
        f"organization id {escape(o.organization_id)}</div>"
        + _generated(
            generated_at,
            history,
            f"per day for the last {RECENT_DAYS} days and per subscription period before",
        )
    )
    recent, by_period = detail.recent, detail.by_period
    # both charts and tables color and name the same lines (the organization's top projects)
    recent_colored = _colored(recent.lines)
    period_colored = _colored(by_period.lines)
    recent_card = (
        f'<section class="card chart-card"><h2>Credits per day by project, last {RECENT_DAYS} '
        "days</h2>"
        + (
            _history_section(
                recent.buckets,
                recent_colored,
                grain="day",
                label=f"{o.name}: credits per day by project, last {RECENT_DAYS} days",
            )
            if recent.lines
            else f'<p class="empty">No daily usage in the last {RECENT_DAYS} days.</p>'
        )
        + "</section>"
    )
    period_card = (
        '<section class="card chart-card"><h2>Credits per subscription period by project</h2>'
        + (
            _history_section(
                by_period.buckets,
                period_colored,
                grain="subscription period",
                label=f"{o.name}: credits per subscription period by project",
                kind="period-history",
            )
            if by_period.buckets
            else '<p class="empty">No subscription periods loaded.</p>'
        )
        + "</section>"
    )
    project_rows = []
    for p in detail.period_projects:
        label, start, end = _period_texts(p["period_start"], p["period_end"])
        share = p["share_of_organization"]
        cells = [
            (label, start),
            text_cell(p["project_name"]),
            num_cell(p["credits"]),
            pct_cell(None if share is None else 100.0 * share),
        ]
        project_rows.append(Row(cells, {"from": start, "to": end}))
    if resources:
        resource_html = charts.resource_chart(
            resources, label=f"{o.name}: resource counts against limits"
        )
        if all(limit is None for _, _, limit in resources):
            resource_html += '<p class="empty">No resource limits known: counts only.</p>'
    else:
        resource_html = '<p class="empty">No resource counts observed.</p>'
    body = (
        filter_bar(organizations=False, first=history.first, last=history.last)
        + _period_section(o, detail.days, _through(history))
        + recent_card
        + table(
            "usage",
            f"Credits per day, last {RECENT_DAYS} days",
            [
                Column("day", "day", "date"),
                Column("credits", "credits", "number", total=True),
                *(Column(name, name, "number", total=True) for name, _, _ in recent_colored),
            ],
            _daily_rows(recent, recent_colored) if recent.lines else [],
            csv_file=f"{stem}-credits-per-day.csv",
            empty=f"No daily usage in the last {RECENT_DAYS} days.",
            collapsed=True,
        )
        + period_card
        + table(
            "periods",
            "Credits per subscription period",
            [
                Column("subscription period", "period_start", "date"),
                Column("", "is_current"),
                Column("credits", "credits", "number", total=True),
            ],
            _period_rows(detail.periods, _through(history)),
            csv_file=f"{stem}-periods.csv",
            note='<p class="sub">The whole history of whole periods: each the sum of its days, '
            "or, when they are not all loaded, the API's answer for the whole period (which "
            "may include days after the loaded range). A period begun before the first loaded "
            "day is not listed: its loaded days are in the daily views and in the view "
            "period_usage_by_organization (is_partial).</p>",
            empty="No subscription periods loaded.",
        )
        + table(
            "period-projects",
            f"Credits per project, last {RECENT_PERIODS} subscription periods",
            [
                Column("subscription period", "period_start", "date"),
                Column("project", "project"),
                Column("credits", "credits", "number", total=True),
                Column("share of organization", "share_pct", "number"),
            ],
            project_rows,
            csv_file=f"{stem}-period-projects.csv",
            note='<p class="sub">Every project; the chart and the table above group all but '
            "the organization's top projects (by credits in these periods) as other "
            "projects.</p>",
            empty="No project usage loaded.",
            collapsed=True,
        )
        + '<section class="card chart-card"><h2>Resources against limits</h2>'
        + resource_html
        + "</section>"
        + (
            table(
                "org-alerts",
                "Open alerts",
                _alert_columns(with_org=False),
                _alert_rows(o.alerts, link_prefix=None),
                csv_file=f"{stem}-open-alerts.csv",
                empty="No open alerts.",
            )
            if alerts_known
            else ""
        )
    )
    return page(f"{o.name}: UbiOps credit usage", header, body)
