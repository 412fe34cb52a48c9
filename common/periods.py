"""The subscription calendar: THE place that says which period contains day D for organization O.

UbiOps resets credits every subscription period. Periods are months anchored on the
subscription start day (anchor 20: the 20th to the 20th). Anchors 29-31 clamp to the last day
of shorter months: anchor 31 gives ... Jan 31 -> Feb 28 (29 in leap years) -> Mar 31 -> Apr 30.
A period is the half-open interval ``[start, end)`` of calendar dates (UTC midnight).

Owns: the anchor arithmetic (:func:`period_containing`, :func:`periods_starting_in`, ...),
learning an organization's anchor from the API's current-period answer (:func:`learn_anchor`),
the anchor of an ``organizations`` row (:func:`organization_anchor`: the learnt
``period_anchor_day``; calendar months, anchor 1, when it could not be learnt), an
organization's anchors over time (:class:`AnchorSchedule`, from ``organizations.anchor_history``)
and "the current period" of an evaluation (:func:`current_period`: the period containing
*today*, the day after the last complete day of data). Every table, view, report section, CLI
output and alert takes its periods from here (the stored period rows and the period views by
the anchor schedule; trends, the backtest and the alerts' previous-period comparison by the
current anchor: docs/alerts.md).

An anchor change (a new subscription with another start day) applies from the start of the
first period the API reports under the new anchor (the change day); periods before it keep the
anchor they were billed under, and the period that was running on the change day ends on it
(a short period): anchor 9 changed to 25 on Nov 25 gives ... Oct 9 -> Nov 9, Nov 9 -> Nov 25,
Nov 25 -> Dec 25 ...

All functions accept ``datetime.date``, ``datetime.datetime`` or ``pandas.Timestamp``; the time
of day is ignored. They return ``datetime.date``.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
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


CALENDAR_MONTHS = 1
"""The anchor used for an organization whose anchor could not be learnt: calendar months."""


def current_period(today: DateLike, anchor_day: int) -> tuple[date, date]:
    """The current subscription period on ``today`` (the UTC day in progress).

    Analytics run on complete days (``as_of`` = today - 1) but the period they report on is the
    one containing *today*: on the first day of a period the new period is current, with nothing
    used yet, and the ended period's alerts expire.
    """
    return period_containing(today, anchor_day)


def today_after(as_of: DateLike) -> date:
    """The day after the last complete day ``as_of``: the day whose period is current."""
    return date.fromordinal(to_date(as_of).toordinal() + 1)


def periods_starting_in(year: int, month: int, anchor_day: int) -> list[tuple[date, date]]:
    """The subscription periods that start in a calendar month (always exactly one)."""
    start = anchored_date(year, month, anchor_day)
    ny, nm = shift_month(year, month, 1)
    return [(start, anchored_date(ny, nm, anchor_day))]


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


def anchor_candidates(period_start: DateLike) -> list[int]:
    """Every anchor day whose period could start on ``period_start`` (several only for a start
    on the last day of a month shorter than 31 days: Feb 28 fits anchors 28-31 in 2023)."""
    start = to_date(period_start)
    if not is_last_day_of_month(start):
        return [start.day]
    return list(range(start.day, 32))


def learn_anchor(
    period_start: DateLike | None,
    period_end: DateLike | None = None,
    previous_anchor: int | None = None,
) -> int | None:
    """The anchor day told by the API's current period ``[start, end)``; None when unknown.

    An unambiguous start gives the anchor. A clamped start (the last day of a short month) is
    resolved by, in order: the end, when it is exactly one anchored month later for exactly one
    candidate; the anchor learnt earlier, when it is a candidate; the end's day, when the end
    fits a candidate; else the start's day.
    """
    if _missing(period_start):
        return None
    start = to_date(period_start)  # type: ignore[arg-type]
    candidates = anchor_candidates(start)
    if len(candidates) == 1:
        return candidates[0]
    if not _missing(period_end):
        end = to_date(period_end)  # type: ignore[arg-type]
        fitting = [a for a in candidates if period_containing(start, a) == (start, end)]
        if len(fitting) == 1:
            return fitting[0]
        if previous_anchor in fitting:
            return previous_anchor
    if previous_anchor in candidates:
        return previous_anchor
    return anchor_from_period(start, None if _missing(period_end) else period_end)  # type: ignore[arg-type]


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


@dataclass(frozen=True)
class AnchorSchedule:
    """An organization's anchors over time: ``earlier`` are ``(anchor, until)`` pairs, oldest
    first (``anchor`` applied before ``until``, exclusive, and from the previous pair's
    ``until`` on); ``anchor`` applies from the last ``until`` on (always, without changes)."""

    anchor: int
    earlier: tuple[tuple[int, date], ...] = ()

    def segments(self) -> list[tuple[int, date | None, date | None]]:
        """``(anchor, from, until)`` of each stretch of time with one anchor (None: unbounded)."""
        out: list[tuple[int, date | None, date | None]] = []
        since: date | None = None
        for anchor, until in self.earlier:
            out.append((anchor, since, until))
            since = until
        out.append((self.anchor, since, None))
        return out


def schedule_period_containing(day: DateLike, schedule: AnchorSchedule) -> tuple[date, date]:
    """The period ``[start, end)`` containing ``day`` under an anchor schedule: the period of
    the anchor in force on ``day``, cut at the anchor changes around it."""
    d = to_date(day)
    for anchor, since, until in schedule.segments():
        if (since is None or since <= d) and (until is None or d < until):
            start, end = period_containing(d, anchor)
            return max(start, since or start), min(end, until or end)
    raise AssertionError("the segments of a schedule cover every day")  # pragma: no cover


def schedule_periods_starting_in(
    year: int, month: int, schedule: AnchorSchedule
) -> list[tuple[date, date]]:
    """The periods of an anchor schedule that start in a calendar month: one, or two when an
    anchor change falls in the month (the short period the change cuts, and the new anchor's)."""
    if not schedule.earlier:
        return periods_starting_in(year, month, schedule.anchor)
    first = date(year, month, 1)
    after = date(*shift_month(year, month, 1), 1)
    starts = {anchored_date(year, month, a) for a, _, _ in schedule.segments()}
    starts |= {until for _, until in schedule.earlier if first <= until < after}
    out = {schedule_period_containing(day, schedule) for day in starts}
    return sorted(p for p in out if first <= p[0] < after)


def format_anchor_history(earlier: Iterable[tuple[int, date]]) -> str | None:
    """``organizations.anchor_history`` text of earlier anchors: ``9@2026-11-25,...``; None when
    there are none."""
    text = ",".join(f"{anchor}@{until.isoformat()}" for anchor, until in earlier)
    return text or None


def parse_anchor_history(text: Any) -> tuple[tuple[int, date], ...]:
    """The ``(anchor, until)`` pairs of an ``organizations.anchor_history`` value (none when
    null); ValueError naming the value when it is not ``day@YYYY-MM-DD`` entries."""
    if _missing(text) or not str(text).strip():
        return ()
    pairs: list[tuple[int, date]] = []
    for entry in str(text).split(","):
        try:
            day, until = entry.strip().split("@")
            pair = (int(day), date.fromisoformat(until))
        except ValueError:
            raise ValueError(
                f"anchor_history {text!r}: expected day@YYYY-MM-DD entries separated by commas"
            ) from None
        if not 1 <= pair[0] <= 31 or (pairs and pair[1] <= pairs[-1][1]):
            raise ValueError(
                f"anchor_history {text!r}: anchor days within 1..31, dates in increasing order"
            )
        pairs.append(pair)
    return tuple(pairs)


def organization_schedule(row: Any) -> AnchorSchedule:
    """The anchor schedule of an ``organizations`` row: its earlier anchors
    (``anchor_history``), then its current anchor (:func:`organization_anchor`)."""
    get = row.get if hasattr(row, "get") else lambda k, d=None: getattr(row, k, d)
    return AnchorSchedule(organization_anchor(row), parse_anchor_history(get("anchor_history")))


def organization_anchor(row: Any) -> int:
    """Anchor day of an ``organizations`` row: the learnt ``period_anchor_day``; without it, the
    anchor of ``period_start``/``period_end``; calendar months (1) when nothing is known."""
    get = row.get if hasattr(row, "get") else lambda k, d=None: getattr(row, k, d)
    learnt = get("period_anchor_day", None)
    if not _missing(learnt):
        return int(learnt)
    start = get("period_start", None)
    if not _missing(start):
        end = get("period_end", None)
        return anchor_from_period(start, None if _missing(end) else end)
    return CALENDAR_MONTHS


def anchors_by_organization(organizations: pd.DataFrame | None) -> dict[str, int]:
    """organization_id -> anchor day, for every row of the ``organizations`` frame."""
    if organizations is None or organizations.empty:
        return {}
    return {
        str(row["organization_id"]): organization_anchor(row)
        for row in organizations.to_dict("records")
    }
