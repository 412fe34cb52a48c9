"""Durable alert state and notification outbox in SQLite (stdlib ``sqlite3``, WAL).

Owns the ``alerts`` and ``outbox`` tables (published to DuckDB as ``quota_alerts`` and
``alert_outbox`` through :meth:`AlertStore.alerts_frame` / :meth:`AlertStore.outbox_frame`).

Lifecycle of an alert (one row per stable key):
``open`` -> ``notified`` (first channel delivered the open event) -> ``resolved`` (condition no
longer holds; a later re-crossing re-opens it with ``occurrence + 1``). ``superseded``: a higher
threshold of the same rule, series and period fired; its pending messages are cancelled.
``expired``: the alert's subscription period ended while it was active (credits reset): closed
at the first sync after the period's end, without a ``resolved`` message; its undelivered
messages are cancelled ("period ended").

Outbox: one row per (alert key, occurrence, event ``open``|``resolved``, channel), unique on its
``idempotency_key``; status ``pending`` -> ``sending`` (claimed) -> ``delivered``, or back to
``pending`` with ``last_error`` and a ``next_attempt_at`` (backoff) when the channel failed
(retried on later runs; ``delivered_to`` remembers the targets of a multi-target channel that
already got it), ``failed`` after ``max_attempts`` (:meth:`AlertStore.resend` puts it back),
``suppressed`` (backfill: the alert's period had already ended when it was
first recorded, so nobody is paged; also a lower threshold first crossed on the way *down*
after a higher one fired in the same period) or ``cancelled`` (superseded before delivery).

Delivery guarantee: claim (own transaction) -> send -> mark delivered (own transaction).
Re-runs never duplicate a delivered row. A crash between send and mark leaves the row
``sending``; after ``lease_seconds`` it is claimed again and resent, so a receiver may see a
message twice per crash: it carries ``webhook-id`` / ``idempotency_key`` to dedupe on.
All times are naive UTC ISO strings in SQLite and naive UTC ``datetime64[us]`` in frames.

Restatements: ``period_totals`` remembers, per organization and subscription period, the
period total through the last complete day as the previous evaluation saw it (only the latest
load: no history). :func:`alerting.restatements.check_restatements` compares the next load
with it; when a load restated days already loaded so that the total moved across a quota
threshold, :meth:`AlertStore.sync` writes the note (``restatement``) on the alerts of that
rule, series and period it opens, updates or resolves, before their messages are queued.

Recovery: the warehouse keeps a copy of both tables (Parquet ``quota_alerts`` and
``alert_outbox``, written after every evaluation and delivery). :meth:`AlertStore.restore`
rebuilds a lost state file from them, so delivered messages are never sent again (a message
delivered after the last copy was written may be sent once more, with the same ids).
:meth:`AlertStore.reconcile` takes in another writer's copy (the shared lake's) into a state that
is not lost: delivered there is delivered here, a live claim there holds here, another writer's
failed attempts (``failed``, a backoff) and cancellations are taken when they are later news,
unknown rows are added, nothing delivered is downgraded (:mod:`alerting.lake_state`).
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from warehouse.derived_schema import ALERT_OUTBOX, QUOTA_ALERTS
from warehouse.schema import TS, now_utc

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    alert_key TEXT PRIMARY KEY,
    alert_group TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    organization_name TEXT,
    project_id TEXT NOT NULL DEFAULT '',
    project_name TEXT,
    rule TEXT NOT NULL,
    metric TEXT,
    threshold REAL NOT NULL,
    period_start TEXT NOT NULL,
    period_end TEXT,
    status TEXT NOT NULL,
    occurrence INTEGER NOT NULL DEFAULT 1,
    severity TEXT,
    value REAL,
    limit_value REAL,
    forecast REAL,
    title TEXT,
    explanation TEXT,
    details TEXT,
    notify_resolved INTEGER NOT NULL DEFAULT 1,
    suppressed INTEGER NOT NULL DEFAULT 0,
    first_seen_at TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    notified_at TEXT,
    resolved_at TEXT,
    updated_at TEXT NOT NULL,
    restatement TEXT
);
CREATE INDEX IF NOT EXISTS alerts_group ON alerts(alert_group);
CREATE INDEX IF NOT EXISTS alerts_status ON alerts(status);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT NOT NULL UNIQUE,
    webhook_id TEXT NOT NULL,
    alert_key TEXT NOT NULL REFERENCES alerts(alert_key),
    occurrence INTEGER NOT NULL,
    event TEXT NOT NULL,
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    payload TEXT NOT NULL,
    created_at TEXT NOT NULL,
    claimed_at TEXT,
    delivered_at TEXT,
    next_attempt_at TEXT,
    delivered_to TEXT
);
CREATE INDEX IF NOT EXISTS outbox_status ON outbox(status, channel);
CREATE TABLE IF NOT EXISTS period_totals (
    organization_id TEXT NOT NULL,
    period_start TEXT NOT NULL,
    through_day TEXT NOT NULL,
    total REAL NOT NULL,
    loaded_at TEXT NOT NULL,
    PRIMARY KEY (organization_id, period_start)
);
"""
# columns added after the first release: added to older state files when opened
_OUTBOX_ADDED = (("next_attempt_at", "TEXT"), ("delivered_to", "TEXT"))
_ALERTS_ADDED = (("restatement", "TEXT"),)
# The outbox columns the warehouse copy holds (`alert_outbox`): all but the retry bookkeeping.
_OUTBOX_COLUMNS = tuple(ALERT_OUTBOX.column_names)
_OUTBOX_TIME_COLUMNS = tuple(c.name for c in ALERT_OUTBOX.columns if c.type == TS)

ACTIVE = ("open", "notified")
# The `alert` object of every queued message (webhook JSON body, and what the other channels
# format): part of the receivers' contract (docs/alerts.md, "The message"), so a new column of
# the alerts table does not reach receivers unless it is added here.
PAYLOAD_ALERT_FIELDS = (
    "alert_key",
    "organization_id",
    "organization_name",
    "project_id",
    "project_name",
    "rule",
    "metric",
    "threshold",
    "period_start",
    "period_end",
    "severity",
    "value",
    "limit_value",
    "forecast",
    "title",
    "explanation",
    "restatement",
    "occurrence",
)
_ALERT_FIELDS = (
    "organization_name",
    "project_name",
    "metric",
    "period_end",
    "severity",
    "value",
    "limit_value",
    "forecast",
    "title",
    "explanation",
    "details",
)


def _ts(value: Any) -> str | None:
    """A time as a naive UTC ISO string (None stays None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    ts = pd.Timestamp(value)
    if pd.isna(ts):
        return None
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.isoformat(sep=" ")


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return str(value)


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(out) else out


# The alerts table's timestamp columns (stored as ISO text in SQLite).
_ALERT_TIME_COLUMNS = tuple(c.name for c in QUOTA_ALERTS.columns if c.type == TS)


_TIME_COLUMNS = frozenset({*_ALERT_TIME_COLUMNS, *_OUTBOX_TIME_COLUMNS})
# When one message appears more than once in a copy (two writers' first commits to an empty
# lake table both land), the row that got furthest wins.
_STATUS_RANK = {"delivered": 0, "sending": 1}


def _stored(column: str, raw: Any) -> Any:
    """A value of a warehouse-copy row as the state stores it (times as ISO text)."""
    if column in _TIME_COLUMNS:
        return _ts(raw)
    if isinstance(raw, bool):
        return int(raw)
    if hasattr(raw, "item"):  # numpy scalar
        raw = raw.item()
    if isinstance(raw, float) and math.isnan(raw):
        return None
    return None if raw is pd.NA or raw is pd.NaT else raw


def _latest_messages(outbox: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The rows of an ``alert_outbox`` copy by idempotency key, one each."""
    best: dict[str, dict[str, Any]] = {}
    for row in outbox.to_dict("records"):
        key = str(row["idempotency_key"])
        rank = _STATUS_RANK.get(str(row["status"]), 2)
        kept = best.get(key)
        if kept is None or rank < _STATUS_RANK.get(str(kept["status"]), 2):
            best[key] = row
    return best


def _requeued(status: object, attempts: object, last_error: object) -> bool:
    """A row ``--resend`` / ``--all-failed`` queued again: pending with a fresh attempt budget
    (0 attempts) and the error that made it fail kept. (A row never tried has no error.)"""
    return status == "pending" and not attempts and last_error is not None


def _later_attempt(
    theirs: Mapping[str, Any], here: Mapping[str, Any], requeued_here: bool = False
) -> bool:
    """Whether another copy's ``pending`` / ``failed`` row is later news than this copy's
    undelivered one (neither delivered nor cancelled). A row's ``attempts`` only grow (every
    claim adds one), except when it is queued again, which starts them over: so the copy with
    more attempts is the later one (at equal attempts, ``failed`` is later than ``pending``),
    a row queued again is later than any failed or backing-off copy of it, and a claim here
    (``sending``) that the other copy settled is settled.

    ``requeued_here``: this process queued the row again (`AlertStore.resend`), so the other
    copy's failure is the one it put back. A row queued again by an earlier process of this
    writer was committed since (the command commits it at once), so the other copy's attempts
    of it, up to giving up on it, are later news; were that row kept, each commit of a writer
    that does not deliver its channel would queue it again for the one that does."""
    mine = str(here["status"])
    if mine == "sending":
        return True
    if mine not in ("pending", "failed"):
        return False
    status = str(theirs["status"])
    attempts = int(_stored("attempts", theirs.get("attempts")) or 0)
    error = _stored("last_error", theirs.get("last_error"))
    if requeued_here and _requeued(mine, here["attempts"], here["last_error"]):
        return False  # queued again here, not yet committed: later than the lake's failure
    if _requeued(status, attempts, error):
        return mine == "failed"
    if attempts != int(here["attempts"] or 0):
        return attempts > int(here["attempts"] or 0)
    return status == "failed" and mine == "pending"


@dataclass
class ReconcileReport:
    """What :meth:`AlertStore.reconcile` took in."""

    delivered_elsewhere: int = 0
    claimed_elsewhere: int = 0
    undelivered_elsewhere: int = 0
    """Messages whose failed attempts (backoff, ``failed``) or cancellation another writer
    recorded: taken as they are there."""
    alerts_added: int = 0
    alerts_updated: int = 0
    """Alerts another writer re-opened since (a higher occurrence there): taken as they are."""
    messages_added: int = 0


@dataclass(frozen=True)
class OutboxItem:
    """A claimed outbox row: what a channel must send."""

    id: int
    idempotency_key: str
    webhook_id: str
    alert_key: str
    occurrence: int
    event: str
    channel: str
    attempts: int
    payload: dict[str, Any]
    delivered_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class LoadedTotal:
    """An organization's period total through `through_day` (inclusive) as one load saw it."""

    organization_id: str
    period_start: str  # ISO day
    through_day: str  # ISO day, the last complete day counted
    total: float
    loaded_at: str  # naive UTC ISO time of that load


@dataclass
class SyncReport:
    """What :meth:`AlertStore.sync` changed."""

    opened: list[str] = field(default_factory=list)
    reopened: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    suppressed: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)
    queued: int = 0


class AlertStore:
    """SQLite-backed alert state and outbox at ``path`` (created with its parent directory)."""

    def __init__(self, path: str | Path, *, lease_seconds: float = 300.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lease = timedelta(seconds=lease_seconds)
        self._notes: dict[str, str] = {}  # the restatement notes of the sync in progress
        # messages `resend` queued again in this process: another copy's failure of them is
        # older news until this writer commits them (see `_later_attempt`)
        self._requeued: set[str] = set()
        self._conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(SCHEMA)
        for table, added in (("outbox", _OUTBOX_ADDED), ("alerts", _ALERTS_ADDED)):
            have = {r["name"] for r in self._conn.execute(f"PRAGMA table_info({table})")}
            for column, kind in added:
                if column not in have:
                    self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    def __enter__(self) -> AlertStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # ---- alerts -------------------------------------------------------------------------
    def sync(
        self,
        candidates: pd.DataFrame,
        channels: Sequence[str] | Callable[[dict[str, Any]], Sequence[str]],
        now: datetime | None = None,
        *,
        evaluated_organizations: Iterable[str] | None = None,
        evaluated_rules: Iterable[str] | None = None,
        notes: Mapping[str, str] | None = None,
        totals: Iterable[LoadedTotal] = (),
        unjudged: Iterable[tuple[str, str]] = (),
    ) -> SyncReport:
        """Upsert the current candidate alerts idempotently and queue their messages.

        ``candidates`` is :func:`alerting.rules.evaluate_alerts` output.
        ``channels``: the channel names every new alert is queued for, or a function of the
        candidate row giving them (routing per organization).
        Active alerts that are not candidates any more are resolved (or superseded when a
        higher threshold of the same group fires) -- but only within the evaluated scope:
        pass ``evaluated_organizations`` / ``evaluated_rules`` when the evaluation covered only
        part of them (None = everything); ``unjudged`` (organization id, rule) pairs the
        evaluation could not judge (no data for the current period: its alerts are neither
        candidates nor gone) are left as they are. Alerts first recorded after their period ended
        (backfills) get ``suppressed`` outbox rows. ``notes`` (alert group -> restatement
        note) are written on the alerts of those groups this sync opens, updates or resolves,
        before their messages are queued; ``totals`` replace the remembered period totals
        (:meth:`loaded_totals`). One transaction.
        """
        self._notes = dict(notes or {})
        now_s = _ts(now or now_utc())
        assert now_s is not None
        report = SyncReport()
        records = candidates.to_dict("records") if not candidates.empty else []
        by_key = {str(r["alert_key"]): r for r in records}
        group_max: dict[str, float] = {}
        for r in records:
            group_max[r["alert_group"]] = max(group_max.get(r["alert_group"], -1.0), r["threshold"])
        orgs = (
            None if evaluated_organizations is None else {str(o) for o in evaluated_organizations}
        )
        rules = None if evaluated_rules is None else set(evaluated_rules)
        left_alone = {(str(o), str(r)) for o, r in unjudged}
        with self._tx() as db:
            for key, cand in by_key.items():
                self._upsert(db, key, cand, channels, now_s, report)
            placeholders = ",".join("?" * len(ACTIVE))
            active = db.execute(
                f"SELECT * FROM alerts WHERE status IN ({placeholders})", ACTIVE
            ).fetchall()
            for row in active:
                if row["period_end"] is not None and row["period_end"] <= now_s:
                    self._expire(db, row["alert_key"], now_s)
                    report.expired.append(row["alert_key"])
                    continue
                if row["alert_key"] in by_key:
                    continue
                if orgs is not None and row["organization_id"] not in orgs:
                    continue
                if rules is not None and row["rule"] not in rules:
                    continue
                if (row["organization_id"], row["rule"]) in left_alone:
                    continue
                if group_max.get(row["alert_group"], -1.0) > row["threshold"]:
                    self._supersede(db, row["alert_key"], now_s)
                    report.superseded.append(row["alert_key"])
                else:
                    report.queued += self._resolve(db, row, now_s)
                    report.resolved.append(row["alert_key"])
            for t in totals:
                db.execute(
                    "INSERT OR REPLACE INTO period_totals (organization_id, period_start,"
                    " through_day, total, loaded_at) VALUES (?, ?, ?, ?, ?)",
                    (t.organization_id, t.period_start, t.through_day, t.total, t.loaded_at),
                )
        return report

    def loaded_totals(self) -> dict[tuple[str, str], LoadedTotal]:
        """The remembered period totals, by (organization id, period start ISO day)."""
        rows = self._conn.execute("SELECT * FROM period_totals").fetchall()
        return {
            (r["organization_id"], r["period_start"]): LoadedTotal(
                organization_id=r["organization_id"],
                period_start=r["period_start"],
                through_day=r["through_day"],
                total=float(r["total"]),
                loaded_at=r["loaded_at"],
            )
            for r in rows
        }

    def _note(self, db: sqlite3.Connection, key: str, group: str) -> None:
        """Write the restatement note of `group` (if any) on alert `key`."""
        note = self._notes.get(group)
        if note:
            db.execute("UPDATE alerts SET restatement = ? WHERE alert_key = ?", (note, key))

    def _upsert(
        self,
        db: sqlite3.Connection,
        key: str,
        cand: dict[str, Any],
        route: Sequence[str] | Callable[[dict[str, Any]], Sequence[str]],
        now_s: str,
        report: SyncReport,
    ) -> None:
        channels = route(cand) if callable(route) else route
        values = {
            "organization_name": _text(cand.get("organization_name")),
            "project_name": _text(cand.get("project_name")),
            "metric": _text(cand.get("metric")),
            "period_end": _ts(cand.get("period_end")),
            "severity": _text(cand.get("severity")),
            "value": _num(cand.get("value")),
            "limit_value": _num(cand.get("limit")),
            "forecast": _num(cand.get("forecast")),
            "title": _text(cand.get("title")),
            "explanation": _text(cand.get("explanation")),
            "details": _text(cand.get("details")),
        }
        existing = db.execute("SELECT * FROM alerts WHERE alert_key = ?", (key,)).fetchone()
        sets = ", ".join(f"{f} = :{f}" for f in _ALERT_FIELDS)
        params = {**values, "key": key, "now": now_s}
        if existing is None:
            period_end = values["period_end"]
            # backfill (the period is over) or a step down from a higher threshold already
            # raised in this period: record the alert, page nobody
            higher = db.execute(
                "SELECT 1 FROM alerts WHERE alert_group = ? AND threshold > ? LIMIT 1",
                (cand["alert_group"], float(cand["threshold"])),
            ).fetchone()
            suppressed = int((period_end is not None and period_end <= now_s) or bool(higher))
            db.execute(
                "INSERT INTO alerts (alert_key, alert_group, organization_id, project_id, rule,"
                " threshold, period_start, status, occurrence, notify_resolved, suppressed,"
                " first_seen_at, last_seen_at, opened_at, updated_at, "
                + ", ".join(_ALERT_FIELDS)
                + ") VALUES (:key, :group, :org, :project, :rule, :threshold, :period_start,"
                " 'open', 1, :notify_resolved, :suppressed, :now, :now, :now, :now, "
                + ", ".join(f":{f}" for f in _ALERT_FIELDS)
                + ")",
                {
                    **params,
                    "group": cand["alert_group"],
                    "org": str(cand["organization_id"]),
                    "project": _text(cand.get("project_id")) or "",
                    "rule": cand["rule"],
                    "threshold": float(cand["threshold"]),
                    "period_start": _ts(cand["period_start"]),
                    "notify_resolved": int(bool(cand.get("notify_resolved", True))),
                    "suppressed": suppressed,
                },
            )
            self._note(db, key, cand["alert_group"])
            report.queued += self._queue(db, key, 1, "open", channels, now_s, bool(suppressed))
            (report.suppressed if suppressed else report.opened).append(key)
        elif existing["status"] in (*ACTIVE, "expired"):  # an expired alert stays expired
            db.execute(
                f"UPDATE alerts SET {sets}, last_seen_at = :now, updated_at = :now"
                " WHERE alert_key = :key",
                params,
            )
            self._note(db, key, cand["alert_group"])
            report.updated.append(key)
        elif existing["status"] == "superseded":
            restored = "notified" if existing["notified_at"] else "open"
            db.execute(
                f"UPDATE alerts SET {sets}, status = :status, last_seen_at = :now,"
                " updated_at = :now WHERE alert_key = :key",
                {**params, "status": restored},
            )
            self._note(db, key, cand["alert_group"])
            report.updated.append(key)
        else:  # resolved: the condition holds again -> a new occurrence
            occurrence = int(existing["occurrence"]) + 1
            period_end = values["period_end"]
            suppressed = int(period_end is not None and period_end <= now_s)
            db.execute(
                f"UPDATE alerts SET {sets}, status = 'open', occurrence = :occ,"
                " suppressed = :sup, opened_at = :now, notified_at = NULL, resolved_at = NULL,"
                " last_seen_at = :now, updated_at = :now WHERE alert_key = :key",
                {**params, "occ": occurrence, "sup": suppressed},
            )
            self._note(db, key, cand["alert_group"])
            report.queued += self._queue(
                db, key, occurrence, "open", channels, now_s, bool(suppressed)
            )
            report.reopened.append(key)

    def _expire(self, db: sqlite3.Connection, key: str, now_s: str) -> None:
        db.execute(
            "UPDATE alerts SET status = 'expired', resolved_at = ?, updated_at = ?"
            " WHERE alert_key = ?",
            (now_s, now_s, key),
        )
        db.execute(
            "UPDATE outbox SET status = 'cancelled', last_error = 'period ended'"
            " WHERE alert_key = ? AND status = 'pending'",
            (key,),
        )

    def _supersede(self, db: sqlite3.Connection, key: str, now_s: str) -> None:
        db.execute(
            "UPDATE alerts SET status = 'superseded', updated_at = ? WHERE alert_key = ?",
            (now_s, key),
        )
        db.execute(
            "UPDATE outbox SET status = 'cancelled', last_error = 'superseded by a higher"
            " threshold' WHERE alert_key = ? AND status = 'pending'",
            (key,),
        )

    def _resolve(self, db: sqlite3.Connection, row: sqlite3.Row, now_s: str) -> int:
        key = row["alert_key"]
        db.execute(
            "UPDATE alerts SET status = 'resolved', resolved_at = ?, updated_at = ?"
            " WHERE alert_key = ?",
            (now_s, now_s, key),
        )
        self._note(db, key, row["alert_group"])
        if not row["notify_resolved"]:
            return 0
        opened = db.execute(
            "SELECT channel, status FROM outbox WHERE alert_key = ? AND occurrence = ?"
            " AND event = 'open' ORDER BY id",
            (key, row["occurrence"]),
        ).fetchall()
        live = [o["channel"] for o in opened if o["status"] not in ("suppressed", "cancelled")]
        return self._queue(db, key, int(row["occurrence"]), "resolved", live, now_s, False)

    def _queue(
        self,
        db: sqlite3.Connection,
        key: str,
        occurrence: int,
        event: str,
        channels: Sequence[str],
        now_s: str,
        suppressed: bool,
    ) -> int:
        alert = dict(db.execute("SELECT * FROM alerts WHERE alert_key = ?", (key,)).fetchone())
        queued = 0
        for channel in channels:
            idem = f"{key}#{occurrence}:{event}:{channel}"
            webhook_id = "msg_" + hashlib.sha256(idem.encode()).hexdigest()[:32]
            payload = {
                "type": f"quota_alert.{event}",
                "event": event,
                "idempotency_key": idem,
                "webhook_id": webhook_id,
                "occurred_at": now_s,
                "alert": {k: alert[k] for k in PAYLOAD_ALERT_FIELDS},
                "details": json.loads(alert["details"]) if alert["details"] else {},
            }
            cur = db.execute(
                "INSERT OR IGNORE INTO outbox (idempotency_key, webhook_id, alert_key, occurrence,"
                " event, channel, status, payload, created_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    idem,
                    webhook_id,
                    key,
                    occurrence,
                    event,
                    channel,
                    "suppressed" if suppressed else "pending",
                    json.dumps(payload, sort_keys=True),
                    now_s,
                ),
            )
            queued += 0 if suppressed else cur.rowcount
        return queued

    # ---- outbox -------------------------------------------------------------------------
    def _deliverable(self, now_dt: datetime, ignore_backoff: bool) -> tuple[str, tuple[str, ...]]:
        """The SQL condition (and its parameters) of a row a delivery pass may claim now."""
        due = "1" if ignore_backoff else "(next_attempt_at IS NULL OR next_attempt_at <= ?)"
        stale = str(_ts(now_dt - self.lease))
        params = (() if ignore_backoff else (str(_ts(now_dt)),)) + (stale,)
        condition = f"((status = 'pending' AND {due}) OR (status = 'sending' AND claimed_at <= ?))"
        return condition, params

    def deliverable_keys(
        self,
        now: datetime | None = None,
        *,
        ignore_backoff: bool = False,
        channels: Collection[str] | None = None,
    ) -> list[str]:
        """The idempotency keys of every row a delivery pass at ``now`` may claim (of
        ``channels`` only, when given: the ones this writer can send through), oldest first:
        what a writer of a shared lake claims there before sending."""
        now_dt = pd.Timestamp(_ts(now or now_utc())).to_pydatetime()
        condition, params = self._deliverable(now_dt, ignore_backoff)
        if channels is not None:
            names = sorted(channels)
            if not names:
                return []
            condition += f" AND channel IN ({','.join('?' * len(names))})"
            params = (*params, *names)
        rows = self._conn.execute(
            f"SELECT idempotency_key FROM outbox WHERE {condition} ORDER BY id", params
        ).fetchall()
        return [str(r[0]) for r in rows]

    def claim_next(
        self,
        channels: Iterable[str],
        now: datetime | None = None,
        *,
        ignore_backoff: bool = False,
        only: Collection[str] | None = None,
    ) -> OutboxItem | None:
        """Claim the oldest deliverable row of one of ``channels`` (pending and due -- its
        backoff has passed, or ``ignore_backoff`` -- or ``sending`` with an expired lease after
        a crash), among the idempotency keys ``only`` when given; None when there is nothing
        to send."""
        names = list(channels)
        if not names or (only is not None and not only):
            return None
        now_dt = pd.Timestamp(_ts(now or now_utc())).to_pydatetime()
        now_s = _ts(now_dt)
        condition, params = self._deliverable(now_dt, ignore_backoff)
        marks = ",".join("?" * len(names))
        among = "" if only is None else " AND idempotency_key IN (SELECT value FROM json_each(?))"
        extra = () if only is None else (json.dumps(sorted(only)),)
        with self._tx() as db:
            row = db.execute(
                f"SELECT * FROM outbox WHERE channel IN ({marks}) AND {condition}{among}"
                " ORDER BY id LIMIT 1",
                (*names, *params, *extra),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE outbox SET status = 'sending', claimed_at = ?, attempts = attempts + 1"
                " WHERE id = ?",
                (now_s, row["id"]),
            )
        return OutboxItem(
            id=row["id"],
            idempotency_key=row["idempotency_key"],
            webhook_id=row["webhook_id"],
            alert_key=row["alert_key"],
            occurrence=row["occurrence"],
            event=row["event"],
            channel=row["channel"],
            attempts=row["attempts"] + 1,
            payload=json.loads(row["payload"]),
            delivered_to=tuple(json.loads(row["delivered_to"] or "[]")),
        )

    def mark_delivered(self, item: OutboxItem, now: datetime | None = None) -> None:
        """Record a successful send (and the alert as notified for an open event)."""
        now_s = _ts(now or now_utc())
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET status = 'delivered', delivered_at = ?, last_error = NULL,"
                " next_attempt_at = NULL WHERE id = ?",
                (now_s, item.id),
            )
            if item.event == "open":
                db.execute(
                    "UPDATE alerts SET status = CASE WHEN status = 'open' THEN 'notified'"
                    " ELSE status END, notified_at = COALESCE(notified_at, ?), updated_at = ?"
                    " WHERE alert_key = ? AND occurrence = ?",
                    (now_s, now_s, item.alert_key, item.occurrence),
                )

    def mark_failed(
        self,
        item: OutboxItem,
        error: str,
        *,
        max_attempts: int | None = None,
        retry_at: datetime | None = None,
        delivered_to: Sequence[str] = (),
    ) -> str:
        """Record a failed send: back to ``pending`` (retried from ``retry_at`` on) or
        ``failed`` once ``max_attempts`` is reached. ``delivered_to``: targets that got it.
        Returns the new status. ``error`` must hold no secret."""
        status = (
            "failed" if max_attempts is not None and item.attempts >= max_attempts else "pending"
        )
        done = sorted(set(item.delivered_to) | set(delivered_to))
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET status = ?, last_error = ?, claimed_at = NULL,"
                " next_attempt_at = ?, delivered_to = ? WHERE id = ?",
                (status, error[:500], _ts(retry_at), json.dumps(done) if done else None, item.id),
            )
        return status

    def resend(self, ids: Iterable[int] | None = None) -> int:
        """Put ``failed`` rows (all of them, or those with these ids) back to ``pending`` with
        a fresh attempt budget, due now; returns how many. On a shared lake the caller commits
        them at once (see `_later_attempt`)."""
        where = " WHERE status = 'failed'"
        params: list[int] = []
        if ids is not None:
            params = [int(i) for i in ids]
            if not params:
                return 0
            where += " AND id IN (" + ",".join("?" * len(params)) + ")"
        with self._tx() as db:
            keys = [
                str(r[0]) for r in db.execute(f"SELECT idempotency_key FROM outbox{where}", params)
            ]
            db.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = NULL"
                + where,
                params,
            )
        self._requeued.update(keys)
        return len(keys)

    def requeue_failed(self) -> int:
        """Put every ``failed`` row back to ``pending``; returns how many."""
        return self.resend()

    def outbox_row(self, outbox_id: int) -> dict[str, Any] | None:
        """One outbox row by id (without its payload), None when there is no such row."""
        row = self._conn.execute(
            "SELECT id, alert_key, event, channel, status, attempts FROM outbox WHERE id = ?",
            (int(outbox_id),),
        ).fetchone()
        return dict(row) if row is not None else None

    def pending_count(self, channels: Iterable[str] | None = None) -> int:
        """Rows still to deliver (pending or claimed)."""
        sql = "SELECT COUNT(*) FROM outbox WHERE status IN ('pending', 'sending')"
        names = list(channels) if channels is not None else None
        if names is not None:
            sql += " AND channel IN (" + ",".join("?" * len(names)) + ")"
        return int(self._conn.execute(sql, names or ()).fetchone()[0])

    def is_empty(self) -> bool:
        """True when the store holds no alert at all."""
        return self._conn.execute("SELECT 1 FROM alerts LIMIT 1").fetchone() is None

    # ---- forgetting an organization -----------------------------------------------------
    def forget_organization(self, organization_id: str) -> dict[str, int]:
        """Delete every row of ``organization_id``: its alerts, their outbox messages (whatever
        their status) and its period totals, in one transaction; returns rows deleted per
        table. The deleted content is overwritten (``secure_delete``), the file rebuilt
        (``VACUUM``) and the write-ahead log emptied, so no byte of it stays in free pages or
        in the log (``usage-etl forget``)."""
        self._conn.execute("PRAGMA secure_delete=ON")
        removed: dict[str, int] = {}
        with self._tx() as db:
            keys = "SELECT alert_key FROM alerts WHERE organization_id = ?"
            removed["outbox"] = db.execute(
                f"DELETE FROM outbox WHERE alert_key IN ({keys})", (organization_id,)
            ).rowcount
            removed["alerts"] = db.execute(
                "DELETE FROM alerts WHERE organization_id = ?", (organization_id,)
            ).rowcount
            removed["period_totals"] = db.execute(
                "DELETE FROM period_totals WHERE organization_id = ?", (organization_id,)
            ).rowcount
        self._conn.execute("VACUUM")  # atomic: the file is rewritten through the log
        self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return removed

    # ---- recovery -----------------------------------------------------------------------
    def restore(self, alerts: pd.DataFrame, outbox: pd.DataFrame) -> tuple[int, int]:
        """Fill an empty store from the warehouse copies of ``quota_alerts`` and
        ``alert_outbox`` (as written by :meth:`alerts_frame` / :meth:`outbox_frame`). Rows that
        were being sent when the copy was made come back ``pending`` (sent again once, same
        ids). Returns (alerts, messages) restored; refuses a store that holds alerts."""
        if not self.is_empty():
            raise RuntimeError(f"{self.path}: refusing to restore over existing alert state")
        alert_rows = alerts.rename(columns={"limit": "limit_value"}).to_dict("records")
        outbox_rows = outbox.to_dict("records")
        known = {r["name"] for r in self._conn.execute("PRAGMA table_info(alerts)")}
        with self._tx() as db:
            for row in alert_rows:
                cols = [c for c in row if c in known]
                db.execute(
                    f"INSERT INTO alerts ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [_stored(c, row[c]) for c in cols],
                )
            for row in outbox_rows:
                cols = [c for c in _OUTBOX_COLUMNS if c in row]
                vals = [_stored(c, row[c]) for c in cols]
                status_at = cols.index("status")
                if vals[status_at] == "sending":
                    vals[status_at] = "pending"
                db.execute(
                    f"INSERT INTO outbox ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    vals,
                )
        return len(alert_rows), len(outbox_rows)

    def reconcile(
        self,
        alerts: pd.DataFrame,
        outbox: pd.DataFrame,
        now: datetime | None = None,
        *,
        own_claims: Collection[str] = (),
    ) -> ReconcileReport:
        """Take in what another copy of the state knows (the shared lake's ``quota_alerts`` and
        ``alert_outbox``, as other writers committed them), in one transaction:

        - a message delivered there is delivered here (its alert ``notified`` for an ``open``
          event), so it is never sent again;
        - a message another writer claimed there (``sending``, its lease not expired) is
          ``sending`` here with that claim time, so no pass claims it before the lease ends;
        - a message another writer tried and could not send is as it is there: ``failed``
          (its attempts used up: listed as failed, left for ``--resend`` / ``--all-failed``,
          never sent as if new), or ``pending`` with its attempts, error and next attempt time
          (its backoff holds here too); a message cancelled there (superseded, period ended)
          is cancelled here. Whichever copy has the later attempt wins (`_later_attempt`: more
          attempts; a message queued again by ``--resend`` here is not put back to failed);
        - alerts and messages this copy does not know are added (messages get ids of this
          copy); an alert another writer re-opened since (a higher ``occurrence`` there) is
          taken as it is there, so a commit of this copy does not put its older occurrence
          back.

        ``own_claims``: idempotency keys this copy claimed there itself (left alone). Nothing
        here is ever downgraded: a message delivered here stays delivered."""
        now_dt = pd.Timestamp(_ts(now or now_utc())).to_pydatetime()
        live_after = _ts(now_dt - self.lease)
        report = ReconcileReport()
        theirs = _latest_messages(outbox)
        alert_rows = {
            str(r["alert_key"]): r
            for r in alerts.rename(columns={"limit": "limit_value"}).to_dict("records")
        }
        known_columns = {r["name"] for r in self._conn.execute("PRAGMA table_info(alerts)")}
        with self._tx() as db:
            mine = {
                r["idempotency_key"]: r
                for r in db.execute(
                    "SELECT idempotency_key, alert_key, occurrence, event, status, attempts,"
                    " last_error FROM outbox"
                )
            }
            occurrences = {
                r[0]: int(r[1]) for r in db.execute("SELECT alert_key, occurrence FROM alerts")
            }
            known_alerts = set(occurrences)
            for key, alert in alert_rows.items():
                cols = [c for c in alert if c in known_columns]
                if key in known_alerts:
                    theirs_occurrence = alert.get("occurrence")
                    if pd.isna(theirs_occurrence) or int(theirs_occurrence) <= occurrences[key]:
                        continue
                    # another writer re-opened it since: its occurrence is the alert's now
                    db.execute(
                        f"UPDATE alerts SET {', '.join(f'{c} = ?' for c in cols)}"
                        " WHERE alert_key = ?",
                        [*(_stored(c, alert[c]) for c in cols), key],
                    )
                    report.alerts_updated += 1
                    continue
                db.execute(
                    f"INSERT INTO alerts ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [_stored(c, alert[c]) for c in cols],
                )
                known_alerts.add(key)
                report.alerts_added += 1
            for key, row in theirs.items():
                status = str(row["status"])
                here = mine.get(key)
                if here is None:
                    if str(row["alert_key"]) not in known_alerts:
                        continue  # a message without its alert: nothing to attach it to
                    cols = [c for c in _OUTBOX_COLUMNS if c != "id" and c in row]
                    db.execute(
                        f"INSERT INTO outbox ({', '.join(cols)}) VALUES "
                        f"({', '.join('?' * len(cols))})",
                        [_stored(c, row[c]) for c in cols],
                    )
                    report.messages_added += 1
                    continue
                if key in own_claims or here["status"] == "delivered":
                    continue
                if status == "delivered":
                    delivered_at = _ts(row.get("delivered_at")) or _ts(now_dt)
                    db.execute(
                        "UPDATE outbox SET status = 'delivered', delivered_at = ?,"
                        " last_error = NULL, next_attempt_at = NULL WHERE idempotency_key = ?",
                        (delivered_at, key),
                    )
                    if here["event"] == "open":
                        db.execute(
                            "UPDATE alerts SET status = CASE WHEN status = 'open' THEN"
                            " 'notified' ELSE status END, notified_at = COALESCE(notified_at, ?)"
                            " WHERE alert_key = ? AND occurrence = ?",
                            (delivered_at, here["alert_key"], here["occurrence"]),
                        )
                    report.delivered_elsewhere += 1
                elif status == "sending" and here["status"] in ("pending", "failed"):
                    claimed = _ts(row.get("claimed_at"))
                    if claimed is not None and live_after is not None and claimed > live_after:
                        db.execute(
                            "UPDATE outbox SET status = 'sending', claimed_at = ?"
                            " WHERE idempotency_key = ?",
                            (claimed, key),
                        )
                        report.claimed_elsewhere += 1
                elif status == "cancelled" and here["status"] in ("pending", "failed", "sending"):
                    db.execute(
                        "UPDATE outbox SET status = 'cancelled', last_error = ?, claimed_at = NULL,"
                        " next_attempt_at = NULL WHERE idempotency_key = ?",
                        (_stored("last_error", row.get("last_error")), key),
                    )
                    report.undelivered_elsewhere += 1
                elif status in ("pending", "failed") and _later_attempt(
                    row, here, key in self._requeued
                ):
                    db.execute(
                        "UPDATE outbox SET status = ?, attempts = ?, last_error = ?,"
                        " next_attempt_at = ?, claimed_at = NULL WHERE idempotency_key = ?",
                        (
                            status,
                            int(_stored("attempts", row.get("attempts")) or 0),
                            _stored("last_error", row.get("last_error")),
                            _ts(_stored("next_attempt_at", row.get("next_attempt_at"))),
                            key,
                        ),
                    )
                    report.undelivered_elsewhere += 1
        return report

    # ---- export -------------------------------------------------------------------------
    def alerts_frame(self) -> pd.DataFrame:
        """The ``quota_alerts`` table."""
        df = pd.read_sql_query("SELECT * FROM alerts ORDER BY first_seen_at, alert_key", self._conn)
        for col in _ALERT_TIME_COLUMNS:
            df[col] = pd.to_datetime(df[col], format="ISO8601").astype("datetime64[us]")
        df["notify_resolved"] = df["notify_resolved"].astype(bool)
        df["suppressed"] = df["suppressed"].astype(bool)
        return df.rename(columns={"limit_value": "limit"})

    def outbox_frame(self) -> pd.DataFrame:
        """The ``alert_outbox`` table (without payloads' secrets: payloads hold none)."""
        df = pd.read_sql_query(
            f"SELECT {', '.join(_OUTBOX_COLUMNS)} FROM outbox ORDER BY id", self._conn
        )
        for col in _OUTBOX_TIME_COLUMNS:
            df[col] = pd.to_datetime(df[col], format="ISO8601").astype("datetime64[us]")
        return df
