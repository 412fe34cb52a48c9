"""Subscription-period arithmetic: anchor day, month clamping, period containing a date.

UbiOps resets credits every subscription period. Periods are months anchored on the
subscription start day (anchor 20: the 20th to the 20th). Anchors 29-31 clamp to the last day
of shorter months: anchor 31 gives ... Jan 31 -> Feb 28 (29 in leap years) -> Mar 31 -> Apr 30.
A period is the half-open interval ``[start, end)`` of calendar dates (UTC midnight).

All functions accept ``datetime.date``, ``datetime.datetime`` or ``pandas.Timestamp``; the time
of day is ignored. They return ``datetime.date``.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime
from typing import Any

import pandas as pd

DateLike = date | datetime | pd.Timestamp | str


def to_date(value: DateLike) -> date:
    """Calendar date of a date-like value (naive values are taken as UTC)."""
    if isinstance(value, pd.Timestamp):
        if value.tzinfo is not None:
            value = value.tz_convert("UTC").tz_localize(None)
        return value.date()
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return to_date(pd.Timestamp(value))


def last_day_of_month(year: int, month: int) -> int:
    """Number of days of a month."""
    return calendar.monthrange(year, month)[1]


def is_last_day_of_month(day: date) -> bool:
    """True on the last day of a month."""
    return day.day == last_day_of_month(day.year, day.month)


def anchored_date(year: int, month: int, anchor_day: int) -> date:
    """The anchor day in a month, clamped to the month's last day."""
    if not 1 <= anchor_day <= 31:
        raise ValueError(f"anchor day must be within 1..31, got {anchor_day}")
    return date(year, month, min(anchor_day, last_day_of_month(year, month)))


def shift_month(year: int, month: int, months: int) -> tuple[int, int]:
    """(year, month) moved by a number of months."""
    index = year * 12 + (month - 1) + months
    return index // 12, index % 12 + 1


def period_containing(day: DateLike, anchor_day: int) -> tuple[date, date]:
    """The subscription period ``[start, end)`` that contains ``day``."""
    d = to_date(day)
    start = anchored_date(d.year, d.month, anchor_day)
    if d < start:
        y, m = shift_month(d.year, d.month, -1)
        start = anchored_date(y, m, anchor_day)
    y, m = shift_month(start.year, start.month, 1)
    return start, anchored_date(y, m, anchor_day)


def previous_period(day: DateLike, anchor_day: int) -> tuple[date, date]:
    """The period just before the one containing ``day``."""
    start, _ = period_containing(day, anchor_day)
    return period_containing(date.fromordinal(start.toordinal() - 1), anchor_day)


def next_period(day: DateLike, anchor_day: int) -> tuple[date, date]:
    """The period just after the one containing ``day``."""
    _, end = period_containing(day, anchor_day)
    return period_containing(end, anchor_day)


def periods_between(first: DateLike, last: DateLike, anchor_day: int) -> list[tuple[date, date]]:
    """All periods overlapping the closed date range ``[first, last]``, in order."""
    out: list[tuple[date, date]] = []
    start, end = period_containing(first, anchor_day)
    stop = to_date(last)
    while start <= stop:
        out.append((start, end))
        start, end = period_containing(end, anchor_day)
    return out


def anchor_from_period(period_start: DateLike, period_end: DateLike | None = None) -> int:
    """Infer the anchor day from a known period ``[start, end)``.

    A clamped start (e.g. Feb 28 for anchor 31) is ambiguous on its own; the end date resolves
    it (Feb 28 -> Mar 31 means anchor 31, Feb 28 -> Mar 28 means anchor 28).
    """
    start = to_date(period_start)
    anchor = start.day
    if period_end is not None and is_last_day_of_month(start):
        end = to_date(period_end)
        anchor = 31 if is_last_day_of_month(end) else max(anchor, end.day)
    return anchor


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def organization_anchor(row: Any) -> int:
    """Anchor day of an ``organizations`` row: from period_start/end, else creation_date, else 1."""
    get = row.get if hasattr(row, "get") else lambda k, d=None: getattr(row, k, d)
    start = get("period_start", None)
    if not _missing(start):
        end = get("period_end", None)
        return anchor_from_period(start, None if _missing(end) else end)
    created = get("creation_date", None)
    if not _missing(created):
        return to_date(created).day
    return 1


def anchors_by_organization(organizations: pd.DataFrame | None) -> dict[str, int]:
    """organization_id -> anchor day, for every row of the ``organizations`` frame."""
    if organizations is None or organizations.empty:
        return {}
    return {
        str(row["organization_id"]): organization_anchor(row)
        for row in organizations.to_dict("records")
    }
