"""Restatements that move a period total across a quota threshold, and the note alerts carry.

Usage gets restated: late data lands for days already loaded, a month is re-pulled, the API
corrects a day. When a load changes an organization's subscription-period total *for days the
previous load had already counted as complete*, and that change (not the new days) moves the
total across a `credit_actual` threshold, the organization's `credit_actual` alert for the period
gets a note, e.g.

    restated on 2026-11-28 06:15 UTC: period total moved from 9,512.40 to 10,746.90 credits
    (threshold 10,000.00 = 100% of the 10,000 budget; days 2026-11-01..2026-11-26 changed by
    +1,234.50 since the load of 2026-11-27 06:14 UTC)

The note is written on the alert the load opens (an upward restatement) or resolves (a
downward one) before its messages are queued, so the notification carries it, and it stays in
`quota_alerts.restatement` for the period.

What the previous load saw comes from:
- the shared lake (`USAGE_LAKE_*` set): the lake's current snapshot, which this run has not
  committed to yet, i.e. the last load of any writer; per organization and period, the days
  complete at the time its rows were loaded (`loaded_at`);
- the local warehouse: the alert state (`<warehouse>/state/alerts.sqlite`, table
  `period_totals`) remembers, per organization and current period, the total through the last
  complete day as the previous evaluation computed it. Only that latest total is kept, not the
  rows behind it nor earlier loads (the local warehouse replaces slices in place); a lost state
  file forgets it, so the first load after that cannot note a restatement.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

import duckdb
import numpy as np
import pandas as pd

from alerting.store import AlertStore, LoadedTotal
from common.errors import LakeError
from warehouse.lake import LakeConfig
from warehouse.schema import now_utc

log = logging.getLogger(__name__)
RULE = "credit_actual"
EPSILON = 0.005  # credits: below half a cent a total has not changed


@dataclass(frozen=True)
class Restatement:
    """A load that restated days already loaded and so moved a total across a threshold."""

    organization_id: str
    period_start: str
    previous: LoadedTotal
    restated_total: float  # the same days' total now
    total: float  # the period total now (through the last complete day)
    threshold_pct: float
    threshold_credits: float
    budget: float
    restated_at: datetime

    @property
    def change(self) -> float:
        return self.restated_total - self.previous.total

    @property
    def alert_group(self) -> str:
        return f"{self.organization_id}||{RULE}|{self.period_start}"

    def note(self) -> str:
        previous_at = pd.Timestamp(self.previous.loaded_at)
        return (
            f"restated on {self.restated_at:%Y-%m-%d %H:%M} UTC: period total moved from "
            f"{self.previous.total:,.2f} to {self.total:,.2f} credits (threshold "
            f"{self.threshold_credits:,.2f} = {self.threshold_pct:g}% of the {self.budget:,.0f} "
            f"budget; days {self.period_start}..{self.previous.through_day} changed by "
            f"{self.change:+,.2f} since the load of {previous_at:%Y-%m-%d %H:%M} UTC)"
        )


@dataclass
class RestatementCheck:
    """What one evaluation found, and the totals to remember for the next one."""

    restatements: list[Restatement] = field(default_factory=list)
    totals: list[LoadedTotal] = field(default_factory=list)

    def notes(self) -> dict[str, str]:
        """Alert group -> note, as `AlertStore.sync(notes=...)` takes them."""
        return {r.alert_group: r.note() for r in self.restatements}


def _day(value: object) -> date:
    return pd.Timestamp(value).date()


@dataclass(frozen=True)
class _DayRows:
    """One organization's organization-total day rows, in their order: day numbers (days
    since the epoch) and credits (missing as 0)."""

    days: np.ndarray
    credits: np.ndarray

    def total(self, first: date, last: date) -> float:
        """Credits of the days from `first` through `last`."""
        keep = (self.days >= _day_number(first)) & (self.days <= _day_number(last))
        return float(self.credits[keep].sum())


def _day_number(day: date) -> int:
    return int(np.datetime64(day, "D").astype(np.int64))


def _org_daily(daily: pd.DataFrame) -> dict[str, _DayRows]:
    """Organization-total day rows by organization id."""
    if daily.empty:
        return {}
    rows = daily[daily["scope"] == "organization"] if "scope" in daily else daily
    if "interval" in rows:
        rows = rows[rows["interval"] == "day"]
    if rows.empty:
        return {}
    starts = pd.to_datetime(rows["start_date"])
    if starts.dt.tz is not None:
        starts = starts.dt.tz_localize(None)  # its wall-clock day, as `.dt.date` gives it
    days = starts.to_numpy(dtype="datetime64[us]").astype("datetime64[D]").astype(np.int64)
    credits = np.nan_to_num(rows["credits"].to_numpy(dtype=float), nan=0.0)
    org_ids = rows["organization_id"].astype(str).to_numpy()
    order = np.argsort(org_ids, kind="stable")
    org_ids, days, credits = org_ids[order], days[order], credits[order]
    bounds = np.flatnonzero(org_ids[1:] != org_ids[:-1]) + 1
    starts_at = np.concatenate(([0], bounds)).tolist()
    ends_at = np.concatenate((bounds, [len(org_ids)])).tolist()
    return {
        str(org_ids[a]): _DayRows(days[a:b], credits[a:b])
        for a, b in zip(starts_at, ends_at, strict=True)
    }


def _total(days: _DayRows | None, first: date, last: date) -> float:
    """Credits of the organization-total day rows from `first` through `last`."""
    return 0.0 if days is None else days.total(first, last)


def _organization_credit_rows(status: pd.DataFrame) -> pd.DataFrame:
    """The `quota_status` rows of organizations' credit totals (one per current period)."""
    return status[(status["metric"] == "credits") & (status["scope"] == "organization")]


def check_restatements(
    status: pd.DataFrame,
    daily: pd.DataFrame,
    previous: Mapping[tuple[str, str], LoadedTotal],
    thresholds: Iterable[float],
    now: datetime | None = None,
) -> RestatementCheck:
    """Compare this evaluation with what the previous load saw.

    `status` is the `quota_status` table (its organization credit rows give each current
    period, its last complete day `as_of`, the used total `value` and the budget `limit`);
    `daily` the `credit_usage` day rows; `previous` the previous load's totals by (organization
    id, period start); `thresholds` the `credit_actual` thresholds in percent."""
    now = now or now_utc()
    loaded_at = pd.Timestamp(now).isoformat(sep=" ")
    levels = sorted({float(t) for t in thresholds})
    by_org = _org_daily(daily)
    out = RestatementCheck()
    if status.empty:
        return out
    rows = _organization_credit_rows(status)
    for row in rows.to_dict("records"):
        org = str(row["organization_id"])
        start, as_of = _day(row["period_start"]), _day(row["as_of"])
        if as_of < start:
            continue
        days = by_org.get(org)
        total = _total(days, start, as_of)
        out.totals.append(LoadedTotal(org, start.isoformat(), as_of.isoformat(), total, loaded_at))
        before = previous.get((org, start.isoformat()))
        limit = row.get("limit")
        if before is None or limit is None or not math.isfinite(float(limit)) or limit <= 0:
            continue
        through = min(_day(before.through_day), as_of)
        if through < start:
            continue
        restated = _total(days, start, through)
        change = restated - before.total
        if abs(change) < EPSILON:
            continue
        without = total - change  # where the total would be had nothing been restated
        low, high = sorted((without, total))
        crossed = [t for t in levels if low < float(limit) * t / 100 <= high]
        if not crossed:
            continue
        pct = max(crossed)
        out.restatements.append(
            Restatement(
                organization_id=org,
                period_start=start.isoformat(),
                previous=before,
                restated_total=restated,
                total=total,
                threshold_pct=pct,
                threshold_credits=float(limit) * pct / 100,
                budget=float(limit),
                restated_at=pd.Timestamp(now).to_pydatetime(),
            )
        )
    return out


def previous_from_lake(
    status: pd.DataFrame, config: LakeConfig | None
) -> dict[tuple[str, str], LoadedTotal] | None:
    """What the lake's current snapshot (the last load of any writer) holds for each current
    period: per organization, the days that were complete when its rows were loaded, and their
    total. None when no lake is configured (`config` None)."""
    from warehouse.lake import connect

    if config is None or status.empty:
        return None
    periods = _organization_credit_rows(status)
    wanted = pd.DataFrame(
        {
            "organization_id": periods["organization_id"].astype(str),
            "period_start": pd.to_datetime(periods["period_start"]).astype("datetime64[us]"),
        }
    ).drop_duplicates()
    con = connect(config, read_only=True)
    try:
        exists = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'usage' "
            "AND schema_name = 'main' AND table_name = 'credit_usage'"
        ).fetchone()
        if not exists or not exists[0]:
            return {}
        con.register("_wanted_periods", wanted)
        # the rows of each period the lake holds; the days complete when they were loaded
        rows = con.execute(
            """
            WITH rows AS (
                SELECT c.organization_id, w.period_start, c.start_date, c.credits, c.loaded_at
                FROM credit_usage c JOIN _wanted_periods w
                  ON c.organization_id = w.organization_id AND c.start_date >= w.period_start
                WHERE c.interval = 'day' AND c.scope = 'organization'
            ), loads AS (
                SELECT organization_id, period_start,
                       CAST(min(loaded_at) AS DATE) - 1 AS through_day,
                       max(loaded_at) AS loaded_at
                FROM rows GROUP BY ALL
            )
            SELECT l.organization_id, l.period_start, l.through_day, l.loaded_at,
                   coalesce(sum(r.credits) FILTER (WHERE CAST(r.start_date AS DATE)
                                                   <= l.through_day), 0) AS total
            FROM loads l JOIN rows r USING (organization_id, period_start)
            GROUP BY ALL
            """
        ).fetchall()
    finally:
        con.close()
    return {
        (str(org), _day(start).isoformat()): LoadedTotal(
            organization_id=str(org),
            period_start=_day(start).isoformat(),
            through_day=pd.Timestamp(through).date().isoformat(),
            total=float(total),
            loaded_at=pd.Timestamp(loaded).isoformat(sep=" "),
        )
        for org, start, through, loaded, total in rows
    }


def check_load(
    store: AlertStore,
    status: pd.DataFrame,
    daily: pd.DataFrame,
    thresholds: Iterable[float],
    now: datetime | None = None,
    lake: LakeConfig | None = None,
) -> RestatementCheck:
    """The restatements of this load against the previous one (the `lake`'s snapshot when a lake
    is given, else the totals the alert state remembered): pass `.notes()` and `.totals`
    to `AlertStore.sync`."""
    try:
        previous = previous_from_lake(status, lake)
    except (LakeError, duckdb.Error) as exc:  # a note is not worth failing the alerts over
        log.warning("restatement check: the lake did not answer (%s); comparing with the "
                    "totals this warehouse remembered", exc)  # fmt: skip
        previous = None
    if previous is None:
        previous = store.loaded_totals()
    return check_restatements(status, daily, previous, thresholds, now)


__all__ = ["Restatement", "RestatementCheck", "check_load", "check_restatements"]
