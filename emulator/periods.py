"""Calendar arithmetic for usage periods: date parsing, anchored months, buckets.

Owns every rule about *when* a usage bucket starts and ends:

* query dates in the three spellings the SDK sends (``2024-03-01``, ``2024-03-01T00:00:00Z``,
  ``2024-03-01 00:00:00``), always read as UTC;
* month steps anchored on a day of the month, clamped to short months (anchor 31 gives
  Feb 28/29, Apr 30, ...);
* the current subscription period around ``now``;
* the bucket list for ``interval`` ``day`` or ``month``, end exclusive, omitting buckets that
  start after ``now``.

Usage is kept per UTC day, so bucket boundaries are whole days (times of day are dropped).
"""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta

INTERVALS: tuple[str, ...] = ("day", "month")


def parse_query_date(text: str) -> date:
    """Parse a ``start_date``/``end_date`` query value into a UTC calendar day.

    Accepts ``YYYY-MM-DD``, ``YYYY-MM-DDTHH:MM:SS[.ffffff][Z|+00:00]`` and
    ``YYYY-MM-DD HH:MM:SS``. Aware values are converted to UTC first; the time of day is
    dropped. Raises ``ValueError`` on anything else.
    """
    raw = text.strip()
    if not raw:
        raise ValueError("empty date")
    if len(raw) == 10:
        return date.fromisoformat(raw)
    parsed = datetime.fromisoformat(raw.replace("z", "Z"))
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC)
    return parsed.date()


def parse_iso_datetime(text: str) -> datetime:
    """Parse an ISO 8601 date or datetime (``Z`` allowed) into an aware UTC datetime."""
    parsed = datetime.fromisoformat(text.strip())
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def days_in_month(year: int, month: int) -> int:
    """Number of days in ``year``-``month``."""
    return calendar.monthrange(year, month)[1]


def add_months(day: date, months: int, anchor_day: int | None = None) -> date:
    """Shift ``day`` by ``months`` calendar months, landing on ``anchor_day`` (default: its day).

    The day is clamped to the target month's length: anchor 31 plus one month from Jan 31 is
    Feb 28 (or 29), and the following step returns to Mar 31.
    """
    anchor = day.day if anchor_day is None else anchor_day
    index = day.year * 12 + (day.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    return date(year, month, min(anchor, days_in_month(year, month)))


def current_period(today: date, anchor_day: int) -> tuple[date, date]:
    """The subscription period ``[start, end)`` containing ``today`` for months anchored on
    ``anchor_day`` (e.g. anchor 20: the 20th of one month to the 20th of the next)."""
    start = add_months(date(today.year, today.month, 1), 0, anchor_day)
    if start > today:
        start = add_months(date(today.year, today.month, 1), -1, anchor_day)
    return start, add_months(start, 1, anchor_day)


def period_index_start(anchor_start: date, k: int) -> date:
    """Start of the ``k``-th month bucket of a series anchored on ``anchor_start``."""
    return add_months(anchor_start, k, anchor_start.day)


def buckets(
    start: date, end: date, interval: str, today: date, anchor_day: int | None = None
) -> list[tuple[date, date]]:
    """Buckets ``[(start, end), ...]`` covering ``[start, end)``, end exclusive.

    ``day``: one bucket per day. ``month``: buckets start at ``start`` and step one calendar
    month anchored on ``anchor_day`` (default ``start.day``: an explicit range is bucketed in
    months counted from its start date, so ``Sep 30 -> Oct 31`` gives ``Sep 30 -> Oct 30`` and
    ``Oct 30 -> Oct 31``); the last bucket is cut at ``end``. Buckets that start after ``today``
    (the day containing ``now``) are omitted.
    """
    if interval not in INTERVALS:
        raise ValueError(f"unknown interval {interval!r}")
    out: list[tuple[date, date]] = []
    if interval == "day":
        last = min(end, today + timedelta(days=1))
        current = start
        while current < last:
            out.append((current, current + timedelta(days=1)))
            current += timedelta(days=1)
        return out
    k = 0
    current = start
    anchor_start = start if anchor_day is None else start.replace(day=1)
    while current < end and current <= today:
        if anchor_day is None:
            step = period_index_start(start, k + 1)
        else:
            step = add_months(anchor_start, k + 1, anchor_day)
        nxt = min(step, end)
        out.append((current, nxt))
        current = nxt
        k += 1
    return out


def format_day(day: date) -> str:
    """``YYYY-MM-DDT00:00:00Z`` for a UTC calendar day."""
    return f"{day.isoformat()}T00:00:00Z"


def format_datetime(moment: datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``-style UTC string (microseconds only when non-zero)."""
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat() + "Z"


def midnight(day: date) -> datetime:
    """Aware UTC datetime at the start of ``day``."""
    return datetime.combine(day, time.min, tzinfo=UTC)
