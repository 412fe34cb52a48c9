"""Subscription-period arithmetic: periods run from an anchor day of the month to the same day
of the next month (UbiOps anchors them on the subscription start day, not on calendar months).
Anchor days 29-31 clamp to the last day of shorter months (anchor 31: Jan 31, Feb 28, Mar 31).
"""

from __future__ import annotations

import calendar
from datetime import date, datetime


def clamp_day(year: int, month: int, day: int) -> date:
    return date(year, month, min(day, calendar.monthrange(year, month)[1]))


def add_months(year: int, month: int, months: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def anchor_day(period_start: date | datetime, period_end: date | datetime) -> int:
    """The anchor day implied by one reported period (a clamped end shows the larger anchor)."""
    return max(period_start.day, period_end.day)


def period_starting_in(anchor: int, year: int, month: int) -> tuple[date, date]:
    """The subscription period that starts in calendar month `year-month`: [start, end)."""
    ny, nm = add_months(year, month, 1)
    return clamp_day(year, month, anchor), clamp_day(ny, nm, anchor)


def period_containing(anchor: int, day: date) -> tuple[date, date]:
    """The subscription period [start, end) that contains `day`."""
    start, end = period_starting_in(anchor, day.year, day.month)
    if day < start:
        py, pm = add_months(day.year, day.month, -1)
        start, end = period_starting_in(anchor, py, pm)
    return start, end
