"""Inline SVG charts for the HTML report, drawn in Python (no chart library, no network).

Owns the chart kinds of the report: the current-period chart (cumulative credits, forecast
band, budget line), the stacked usage-history bars (by day, week, month or subscription period,
by project line), and the resource counts against limits. Axes carry their units, tick labels
use the report's one number format and are thinned to what fits. Every text that reaches the
SVG is escaped here; every chart carries `data-chart` (its kind), data marks carry
`class="mark"`, and each history bucket is a `<g class="bucket" data-from data-to>` so the
page's date filter can dim it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape

from reports.formatting import fmt_number, fmt_pct, fmt_tick

PALETTE: tuple[str, ...] = (
    "#2563eb",
    "#f59e0b",
    "#10b981",
    "#8b5cf6",
    "#ec4899",
    "#0ea5e9",
    "#84cc16",
)
OTHER_COLOR = "#94a3b8"
DELETED_COLOR = "#475569"
ACTUAL_COLOR = "#2563eb"
FORECAST_COLOR = "#f59e0b"
BUDGET_COLOR = "#dc2626"

WIDTH = 760
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 84, 16, 16, 40
GRAINS = {
    "day": "day",
    "week": "week",
    "month": "month",
    "subscription period": "subscription period",
}


def _nice_step(span: float, ticks: int = 5) -> float:
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def _nice_max(value: float) -> tuple[float, float]:
    """(axis maximum, tick step) covering `value`."""
    value = max(value, 1e-9)
    step = _nice_step(value)
    return math.ceil(value / step - 1e-9) * step, step


def time_ticks(first: date, last: date) -> list[tuple[date, str]]:
    """Tick days and labels for the days `first`..`last` (inclusive), at most ~10 labels.

    Up to 45 days: weekly ticks ('Nov 03'); up to 120 days: the 1st and the 15th ('Nov 15').
    Longer: month starts, every 1, 2, 3 or 6 months depending on the span, labelled 'Nov' with
    the year on January and on the first tick.
    """
    span = (last - first).days + 1
    if span <= 45:
        every = 7 if span > 14 else (2 if span > 7 else 1)
        return [
            (first + timedelta(days=i), (first + timedelta(days=i)).strftime("%b %d"))
            for i in range(0, span, every)
        ]
    if span <= 120:  # the 1st and the 15th of each month
        days = (first + timedelta(days=i) for i in range(span))
        return [(d, d.strftime("%b %d")) for d in days if d.day in (1, 15)]
    months = 1 if span <= 200 else 2 if span <= 400 else 3 if span <= 1100 else 6
    ticks: list[tuple[date, str]] = []
    y, m = first.year, first.month
    if first.day != 1:
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    while date(y, m, 1) <= last:
        if (m - 1) % months == 0:
            day = date(y, m, 1)
            label = day.strftime("%b %Y") if m == 1 or not ticks else day.strftime("%b")
            ticks.append((day, label))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return ticks


@dataclass
class _Frame:
    """Plot area and the scales mapping days and values into it."""

    height: int
    first: date
    last: date  # inclusive: the last day slot
    y_max: float

    @property
    def left(self) -> float:
        return MARGIN_LEFT

    @property
    def right(self) -> float:
        return WIDTH - MARGIN_RIGHT

    @property
    def top(self) -> float:
        return MARGIN_TOP

    @property
    def bottom(self) -> float:
        return self.height - MARGIN_BOTTOM

    @property
    def slots(self) -> int:
        return (self.last - self.first).days + 1

    def x(self, day: date, fraction: float = 0.0) -> float:
        """Left edge of `day`'s slot plus `fraction` of a slot."""
        return self.left + ((day - self.first).days + fraction) * self.slot_width()

    def slot_width(self) -> float:
        return (self.right - self.left) / self.slots

    def y(self, value: float) -> float:
        return self.bottom - (value / self.y_max) * (self.bottom - self.top)


def _axes(frame: _Frame, step: float, y_unit: str, *, centre_ticks: bool) -> list[str]:
    parts: list[str] = []
    value = 0.0
    while value <= frame.y_max + 1e-9:
        y = frame.y(value)
        parts.append(
            f'<line class="grid" x1="{frame.left:.1f}" x2="{frame.right:.1f}" '
            f'y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick y" x="{frame.left - 6:.1f}" y="{y + 4:.1f}" '
            f'text-anchor="end">{escape(fmt_tick(value, step))}</text>'
        )
        value += step
    mid = (frame.top + frame.bottom) / 2
    parts.append(
        f'<text class="unit" x="14" y="{mid:.1f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {mid:.1f})">{escape(y_unit)}</text>'
    )
    for day, label in time_ticks(frame.first, frame.last):
        x = frame.x(day, 0.5 if centre_ticks else 0.0)
        parts.append(
            f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{frame.bottom:.1f}" '
            f'y2="{frame.bottom + 4:.1f}"/>'
            f'<text class="tick x" x="{x:.1f}" y="{frame.bottom + 16:.1f}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    parts.append(
        f'<text class="unit" x="{frame.right:.1f}" y="{frame.height - 4:.1f}" '
        f'text-anchor="end">date (UTC)</text>'
        f'<line class="axis" x1="{frame.left:.1f}" x2="{frame.right:.1f}" '
        f'y1="{frame.bottom:.1f}" y2="{frame.bottom:.1f}"/>'
    )
    return parts


def _svg(kind: str, height: int, label: str, body: Sequence[str]) -> str:
    return (
        f'<svg class="chart" data-chart="{escape(kind)}" viewBox="0 0 {WIDTH} {height}" '
        f'role="img" aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>" + "".join(body) + "</svg>"
    )


def legend_html(items: Sequence[tuple[str, str, str]]) -> str:
    """HTML legend: (label, color, style) with style 'box', 'line', 'dash' or 'band'.

    Swatches are small inline SVGs (no style attributes, so the page's CSP needs no
    'unsafe-inline' for them).
    """
    shapes = {
        "line": '<line x1="0" y1="6" x2="16" y2="6" stroke="{c}" stroke-width="3"/>',
        "dash": '<line x1="0" y1="6" x2="16" y2="6" stroke="{c}" stroke-width="2" '
        'stroke-dasharray="4 2"/>',
        "band": '<rect x="0" y="1" width="16" height="10" fill="{c}" fill-opacity="0.3"/>',
        "box": '<rect x="2" y="0" width="12" height="12" rx="2" fill="{c}"/>',
    }
    spans = []
    for label, color, style in items:
        shape = shapes.get(style, shapes["box"]).format(c=escape(color))
        spans.append(
            f'<span class="key"><svg class="swatch" viewBox="0 0 16 12" width="16" height="12">'
            f"{shape}</svg>{escape(label)}</span>"
        )
    return '<div class="legend">' + "".join(spans) + "</div>"


def period_chart(
    *,
    period_start: date,
    period_end: date,
    daily: Sequence[tuple[date, float]],
    budget: float | None,
    forecast_total: float | None,
    forecast_low: float | None,
    forecast_high: float | None,
    label: str,
) -> str:
    """Cumulative credits in the subscription period, its forecast band and the budget line.

    `daily` holds (day, credits); days outside [period_start, period_end) are ignored.
    """
    last_slot = period_end - timedelta(days=1)
    days = sorted((d, c) for d, c in daily if period_start <= d <= last_slot)
    cumulative: list[tuple[date, float]] = []
    total = 0.0
    for d, c in days:
        total += c
        cumulative.append((d, total))
    peak = max([total] + [v for v in (budget, forecast_total, forecast_low, forecast_high) if v])
    y_max, step = _nice_max(peak * 1.05)
    height = 250
    frame = _Frame(height, period_start, last_slot, y_max)
    body = _axes(frame, step, "credits (cumulative)", centre_ticks=False)
    if cumulative:
        last_day, last_total = cumulative[-1]
        end_x = frame.x(last_slot, 1.0)
        here_x = frame.x(last_day, 1.0)
        if forecast_low is not None and forecast_high is not None and last_day < last_slot:
            band = (
                f"{here_x:.1f},{frame.y(last_total):.1f} {end_x:.1f},{frame.y(forecast_high):.1f} "
                f"{end_x:.1f},{frame.y(forecast_low):.1f}"
            )
            body.append(
                f'<polygon class="mark band" points="{band}" fill="{FORECAST_COLOR}" '
                f'fill-opacity="0.18" stroke="none"><title>forecast band '
                f"{escape(fmt_number(forecast_low))} to {escape(fmt_number(forecast_high))} "
                f"credits</title></polygon>"
            )
        if forecast_total is not None and last_day < last_slot:
            body.append(
                f'<path class="mark forecast" d="M{here_x:.1f},{frame.y(last_total):.1f} '
                f'L{end_x:.1f},{frame.y(forecast_total):.1f}" stroke="{FORECAST_COLOR}" '
                f'stroke-width="2" stroke-dasharray="6 4" fill="none"><title>'
                f"forecast {escape(fmt_number(forecast_total))} credits</title></path>"
            )
        points = [f"{frame.x(period_start):.1f},{frame.y(0):.1f}"] + [
            f"{frame.x(d, 1.0):.1f},{frame.y(v):.1f}" for d, v in cumulative
        ]
        area = "M" + " L".join(points) + f" L{here_x:.1f},{frame.y(0):.1f} Z"
        body.append(f'<path d="{area}" fill="{ACTUAL_COLOR}" fill-opacity="0.08" stroke="none"/>')
        body.append(
            f'<path class="mark actual" d="M{" L".join(points)}" stroke="{ACTUAL_COLOR}" '
            f'stroke-width="2.5" fill="none"><title>used so far '
            f"{escape(fmt_number(last_total))} credits</title></path>"
            f'<circle cx="{here_x:.1f}" cy="{frame.y(last_total):.1f}" r="3.5" '
            f'fill="{ACTUAL_COLOR}"/>'
        )
    if budget is not None:
        y = frame.y(budget)
        body.append(
            f'<line class="mark budget" x1="{frame.left:.1f}" x2="{frame.right:.1f}" '
            f'y1="{y:.1f}" y2="{y:.1f}" stroke="{BUDGET_COLOR}" stroke-width="1.5" '
            f'stroke-dasharray="3 3"><title>budget {escape(fmt_number(budget))} credits'
            f"</title></line>"
            f'<text class="note budget" x="{frame.left + 6:.1f}" y="{y - 5:.1f}">'
            f"budget {escape(fmt_number(budget))} credits</text>"
        )
    return _svg("period", height, label, body)


@dataclass(frozen=True)
class Bucket:
    """One bar of a history chart: the days `start`..`end` (inclusive) and a caption."""

    start: date
    end: date
    caption: str


def history_chart(
    buckets: Sequence[Bucket],
    series: Sequence[tuple[str, str, Sequence[float]]],
    *,
    grain: str,
    label: str,
    kind: str = "history",
) -> str:
    """Stacked bars per bucket: `series` = (name, color, credits per bucket aligned with
    `buckets`); the y axis reads 'credits per <grain>'. `kind` names the chart (`data-chart`).
    Each bar carries one tooltip with its total and every line's credits."""
    if not buckets:
        return _svg(kind, 60, label, ['<text class="note" x="10" y="30">no data</text>'])
    totals = [sum(s[2][i] for s in series) for i in range(len(buckets))]
    y_max, step = _nice_max(max(totals) * 1.05 if totals and max(totals) > 0 else 1.0)
    height = 260
    frame = _Frame(height, buckets[0].start, buckets[-1].end, y_max)
    body = _axes(frame, step, f"credits per {GRAINS.get(grain, grain)}", centre_ticks=False)
    names = [escape(name) for name, _, _ in series]
    colors = [escape(color) for _, color, _ in series]
    lines = [(names[s], colors[s], values) for s, (_, _, values) in enumerate(series)]
    scale = (frame.bottom - frame.top) / frame.y_max
    # the slot scale once (a page at 24 months draws thousands of bars: `frame.x` per edge
    # recomputed it)
    left, slot, first, bottom = frame.left, frame.slot_width(), frame.first, frame.bottom
    many = len(series) > 1
    for i, bucket in enumerate(buckets):
        x0 = left + (bucket.start - first).days * slot
        x1 = left + ((bucket.end - first).days + 1.0) * slot
        gap = min(2.0, (x1 - x0) * 0.2)
        x, width = f"{x0 + gap / 2:.1f}", f"{max(x1 - x0 - gap, 0.5):.1f}"
        marks, parts = [], []
        top = bottom  # the stack's top so far, in pixels
        for name, color, values in lines:
            value = values[i]
            if value <= 0:
                continue
            height_px = value * scale
            top -= height_px
            marks.append(
                f'<rect class="mark" x="{x}" y="{top:.1f}" width="{width}" '
                f'height="{max(height_px, 0.3):.1f}" fill="{color}"/>'
            )
            if many:
                parts.append(f"{name} {fmt_number(value)}")
        # one tooltip per bar, naming every line's credits (top of the stack last)
        title = ""
        if marks:
            total = fmt_number(sum(values[i] for _, _, values in series))
            title = (
                f"<title>{escape(bucket.caption)}: {total} credits"
                + (f" ({'; '.join(parts)})" if many else "")
                + "</title>"
            )
        body.append(
            f'<g class="bucket" data-from="{bucket.start.isoformat()}" '
            f'data-to="{bucket.end.isoformat()}">{title}' + "".join(marks) + "</g>"
        )
    return _svg(kind, height, label, body)


def resource_chart(rows: Sequence[tuple[str, float, float | None]], *, label: str) -> str:
    """Horizontal bars per resource: (resource, count, limit or None)."""
    row_h = 26
    height = 12 + row_h * max(len(rows), 1)
    label_w = 150
    left, right = label_w, WIDTH - 150
    scale_max = max([max(count, limit or 0.0) for _, count, limit in rows] + [1.0])
    body: list[str] = []
    for i, (resource, count, limit) in enumerate(rows):
        y = 8 + i * row_h
        name = resource.replace("_", " ")
        body.append(
            f'<text class="tick" x="{left - 10}" y="{y + 14}" text-anchor="end">'
            f"{escape(name)}</text>"
        )
        if limit:
            color = "#16a34a"
            pct = 100.0 * count / limit
            if pct >= 90:
                color = BUDGET_COLOR
            elif pct >= 75:
                color = FORECAST_COLOR
            full = (right - left) * min(count / limit, 1.0)
            text = f"{fmt_number(count)} of {fmt_number(limit)} ({fmt_pct(pct)})"
            body.append(
                f'<rect x="{left}" y="{y + 3}" width="{right - left}" height="16" rx="3" '
                f'fill="#e2e8f0"/>'
                f'<rect class="mark" x="{left}" y="{y + 3}" width="{max(full, 1.0):.1f}" '
                f'height="16" rx="3" fill="{color}"><title>{escape(name)}: {escape(text)}'
                f"</title></rect>"
                f'<text class="value" x="{right + 8}" y="{y + 15}">{escape(text)}</text>'
            )
        else:
            full = (right - left) * count / scale_max
            body.append(
                f'<rect class="mark" x="{left}" y="{y + 3}" width="{max(full, 1.0):.1f}" '
                f'height="16" rx="3" fill="{OTHER_COLOR}"><title>{escape(name)}: '
                f"{escape(fmt_number(count))} (no limit known)</title></rect>"
                f'<text class="value" x="{left + full + 8:.1f}" y="{y + 15}">'
                f"{escape(fmt_number(count))}</text>"
            )
    return _svg("resources", height, label, body)
