"""Inline SVG charts for the HTML report, drawn in Python (no JavaScript, no network).

Owns the three chart kinds of the report: the subscription-period chart (cumulative credits,
forecast band, budget line), the stacked daily-credits bars per project line, and the resource
counts against limits. Every text that reaches the SVG is escaped here; every chart carries
`data-chart` (its kind) so tests can find it, and data marks carry `class="mark"`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from html import escape

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
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 64, 16, 16, 30


def fmt_credits(value: float) -> str:
    """1234.5 -> '1,235'; 12.34 -> '12.3'; small values keep two decimals."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    return f"{value:,.2f}"


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
    return math.ceil(value / step) * step, step


def _tick_label(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:,.0f}" if value >= 1 else f"{value:g}"


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
        width = (self.right - self.left) / self.slots
        return self.left + ((day - self.first).days + fraction) * width

    def slot_width(self) -> float:
        return (self.right - self.left) / self.slots

    def y(self, value: float) -> float:
        return self.bottom - (value / self.y_max) * (self.bottom - self.top)


def _axes(frame: _Frame, step: float) -> list[str]:
    parts: list[str] = []
    value = 0.0
    while value <= frame.y_max + 1e-9:
        y = frame.y(value)
        parts.append(
            f'<line class="grid" x1="{frame.left:.1f}" x2="{frame.right:.1f}" '
            f'y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{frame.left - 6:.1f}" y="{y + 4:.1f}" '
            f'text-anchor="end">{escape(_tick_label(value))}</text>'
        )
        value += step
    slots = frame.slots
    every = 7 if slots > 21 else (2 if slots > 10 else 1)
    for i in range(0, slots, every):
        day = frame.first + timedelta(days=i)
        x = frame.x(day, 0.5)
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{frame.bottom + 18:.1f}" '
            f'text-anchor="middle">{escape(day.strftime("%b %d"))}</text>'
        )
    parts.append(
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
    """HTML legend: (label, color, style) with style 'box', 'line' or 'dash'."""
    spans = []
    for label, color, style in items:
        spans.append(
            f'<span class="key"><span class="swatch {escape(style)}" '
            f'style="--c:{escape(color)}"></span>{escape(label)}</span>'
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

    `daily` holds (day, credits) inside [period_start, period_end); `period_end` is exclusive.
    """
    last_slot = period_end - timedelta(days=1)
    days = sorted((d, c) for d, c in daily if period_start <= d <= last_slot)
    cumulative: list[tuple[date, float]] = []
    total = 0.0
    for d, c in days:
        total += c
        cumulative.append((d, total))

    def finite(v: float | None) -> float | None:
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)

    budget, forecast_total = finite(budget), finite(forecast_total)
    forecast_low, forecast_high = finite(forecast_low), finite(forecast_high)
    peak = max([total] + [v for v in (budget, forecast_total, forecast_low, forecast_high) if v])
    y_max, step = _nice_max(peak * 1.05)
    height = 240
    frame = _Frame(height, period_start, last_slot, y_max)
    body = _axes(frame, step)
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
                f'fill-opacity="0.18" stroke="none"><title>'
                f"{escape(f'forecast band {fmt_credits(forecast_low)} to ')}"
                f"{escape(fmt_credits(forecast_high))} credits</title></polygon>"
            )
        if forecast_total is not None and last_day < last_slot:
            body.append(
                f'<path class="mark forecast" d="M{here_x:.1f},{frame.y(last_total):.1f} '
                f'L{end_x:.1f},{frame.y(forecast_total):.1f}" stroke="{FORECAST_COLOR}" '
                f'stroke-width="2" stroke-dasharray="6 4" fill="none"><title>'
                f"forecast {escape(fmt_credits(forecast_total))} credits</title></path>"
            )
        points = [f"{frame.x(period_start):.1f},{frame.y(0):.1f}"] + [
            f"{frame.x(d, 1.0):.1f},{frame.y(v):.1f}" for d, v in cumulative
        ]
        area = "M" + " L".join(points) + f" L{here_x:.1f},{frame.y(0):.1f} Z"
        body.append(f'<path d="{area}" fill="{ACTUAL_COLOR}" fill-opacity="0.08" stroke="none"/>')
        body.append(
            f'<path class="mark actual" d="M{" L".join(points)}" stroke="{ACTUAL_COLOR}" '
            f'stroke-width="2.5" fill="none"><title>used so far '
            f"{escape(fmt_credits(last_total))} credits</title></path>"
        )
        body.append(
            f'<circle cx="{here_x:.1f}" cy="{frame.y(last_total):.1f}" r="3.5" '
            f'fill="{ACTUAL_COLOR}"/>'
        )
    if budget is not None:
        y = frame.y(budget)
        body.append(
            f'<line class="mark budget" x1="{frame.left:.1f}" x2="{frame.right:.1f}" '
            f'y1="{y:.1f}" y2="{y:.1f}" stroke="{BUDGET_COLOR}" stroke-width="1.5" '
            f'stroke-dasharray="3 3"><title>budget {escape(fmt_credits(budget))} credits'
            f"</title></line>"
            f'<text class="note" x="{frame.left + 6:.1f}" y="{y - 5:.1f}" '
            f'fill="{BUDGET_COLOR}">budget {escape(fmt_credits(budget))}</text>'
        )
    return _svg("period", height, label, body)


def stacked_daily_chart(
    days: Sequence[date],
    series: Sequence[tuple[str, str, Sequence[float]]],
    *,
    label: str,
) -> str:
    """Stacked daily bars: `series` = (name, color, credits per day aligned with `days`)."""
    if not days:
        return _svg("stacked", 60, label, ['<text class="note" x="10" y="30">no data</text>'])
    totals = [sum(s[2][i] for s in series) for i in range(len(days))]
    y_max, step = _nice_max(max(totals) * 1.05 if totals else 1.0)
    height = 240
    frame = _Frame(height, days[0], days[-1], y_max)
    body = _axes(frame, step)
    width = frame.slot_width()
    gap = min(2.0, width * 0.2)
    for i, day in enumerate(days):
        base = 0.0
        for name, color, values in series:
            value = values[i]
            if value <= 0:
                continue
            y_top, y_bottom = frame.y(base + value), frame.y(base)
            body.append(
                f'<rect class="mark" x="{frame.x(day) + gap / 2:.2f}" y="{y_top:.2f}" '
                f'width="{max(width - gap, 0.5):.2f}" height="{max(y_bottom - y_top, 0.3):.2f}" '
                f'fill="{escape(color)}"><title>{escape(name)}, {day:%Y-%m-%d}: '
                f"{escape(fmt_credits(value))} credits</title></rect>"
            )
            base += value
    return _svg("stacked", height, label, body)


def resource_chart(rows: Sequence[tuple[str, float, float | None]], *, label: str) -> str:
    """Horizontal bars per resource: (resource, count, limit or None)."""
    row_h = 26
    height = 12 + row_h * max(len(rows), 1)
    label_w = 150
    left, right = label_w, WIDTH - 120
    scale_max = max([max(count, limit or 0.0) for _, count, limit in rows] + [1.0])
    body: list[str] = []
    for i, (resource, count, limit) in enumerate(rows):
        y = 8 + i * row_h
        body.append(
            f'<text class="tick" x="{left - 10}" y="{y + 14}" text-anchor="end">'
            f"{escape(resource.replace('_', ' '))}</text>"
        )
        if limit:
            color = "#16a34a"
            pct = 100.0 * count / limit
            if pct >= 90:
                color = BUDGET_COLOR
            elif pct >= 75:
                color = FORECAST_COLOR
            full = (right - left) * min(count / limit, 1.0)
            body.append(
                f'<rect x="{left}" y="{y + 3}" width="{right - left}" height="16" rx="3" '
                f'fill="#e2e8f0"/>'
                f'<rect class="mark" x="{left}" y="{y + 3}" width="{max(full, 1.0):.1f}" '
                f'height="16" rx="3" fill="{color}"><title>{escape(resource)}: '
                f"{count:,.0f} of {limit:,.0f}</title></rect>"
                f'<text class="value" x="{right + 8}" y="{y + 15}">{count:,.0f} / {limit:,.0f}'
                f" ({pct:.0f}%)</text>"
            )
        else:
            full = (right - left) * count / scale_max
            body.append(
                f'<rect class="mark" x="{left}" y="{y + 3}" width="{max(full, 1.0):.1f}" '
                f'height="16" rx="3" fill="{OTHER_COLOR}"><title>{escape(resource)}: '
                f"{count:,.0f} (no limit known)</title></rect>"
                f'<text class="value" x="{left + full + 8:.1f}" y="{y + 15}">{count:,.0f}</text>'
            )
    return _svg("resources", height, label, body)
