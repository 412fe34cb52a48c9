"""The alert state of a writer of the shared lake, kept in step with the lake's copy of it.

Every writer of a lake keeps its own alert state (``state/alerts.sqlite``, see
:mod:`alerting.state`); the lake's ``quota_alerts`` and ``alert_outbox`` are the copy all
writers share. So that a message is sent once across writers, and the lake says what was
delivered:

- every commit of those two tables is a merge (:func:`merged_alert_tables`, written through
  :class:`warehouse.lake_sync.MergedTables`): inside the lake transaction, the lake's rows are
  taken into the local state first (:meth:`alerting.store.AlertStore.reconcile`: delivered
  there is delivered here, another writer's live claim is respected, its failures, backoffs
  and cancellations are taken, unknown alerts and messages are added), and the local state,
  which then knows everything the lake knew, is written. A commit never turns a delivered
  message back into a pending one, and a conflict with another writer's commit re-runs the
  merge on the newer snapshot;
- a delivery pass (:func:`deliver_through_lake`) first **claims** its messages in the lake (a
  small commit marking them ``sending`` with the claim time), sends only those, then commits
  the outcome (a second small commit: ``delivered``, or back to ``pending`` with the error).
  Another writer's pass that starts meanwhile sees the claim and leaves those messages alone
  until they are delivered, released, or the claim is older than the lease (300 s: a writer
  that died after claiming).

What remains at least once: a writer whose outcome commit fails after sending (the lake
unreachable, or conflicting commits six times in a row) keeps the delivered state locally and
publishes it with its next commit; until then the lake holds its claim, and a writer passing
after the lease has expired sends those messages again (same ``webhook-id`` /
``idempotency_key``). A claim commit that fails sends nothing (the messages stay pending).

Which channels each writer delivers: a writer claims only the messages of channels its quota
file configures, so the channels of another writer's quota file are its business. Every run's
main commit records this writer's (``meta.alert_channels``: writer, channel, when), so that
`usage-etl alerts --retry` on one writer tells the pending messages it leaves to another writer
(a channel recorded by a writer that committed within `WRITER_CHANNELS_MAX_AGE`) from those no
writer delivers (:func:`channels_of_other_writers`).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from alerting.delivery import DeliveryReport, deliver_configured
from alerting.store import AlertStore
from common.errors import LakeError, one_line
from insights.quotas import QuotaConfig
from warehouse.derived_schema import ALERT_OUTBOX, QUOTA_ALERTS
from warehouse.files import writer_lock
from warehouse.lake import LakeConfig, connect, existing_tables
from warehouse.lake_sync import MergedTables, publish_up
from warehouse.parquet_store import to_arrow
from warehouse.schema import now_utc

logger = logging.getLogger("alerting")

ALERT_TABLES = (QUOTA_ALERTS, ALERT_OUTBOX)


ALERT_CHANNELS_DDL = (
    "CREATE TABLE IF NOT EXISTS meta.alert_channels (writer VARCHAR NOT NULL, channel VARCHAR "
    "NOT NULL, recorded_at TIMESTAMP NOT NULL)"
)
# A writer whose runs have not committed for this long is not counted as delivering its
# channels (a host taken out of service keeps its last record).
WRITER_CHANNELS_MAX_AGE = timedelta(days=7)


def writer_name(warehouse: Path, lake: LakeConfig | None = None) -> str:
    """How the lake names a writer: the lake's `writer` (`USAGE_LAKE_WRITER`: one name for every
    run of a deployment whose run workers are containers, each with a host and a working copy of
    its own), else its host and its working copy (two copies on one host are two writers)."""
    if lake is not None and lake.writer:
        return lake.writer
    return f"{socket.gethostname()}:{Path(warehouse).resolve()}"


@dataclass(frozen=True)
class WriterChannel:
    """A channel a writer's quota file configured, as of that writer's last run commit."""

    writer: str
    channel: str
    recorded_at: datetime


def _record_channels(
    con: duckdb.DuckDBPyConnection, writer: str, channels: Collection[str], at: datetime
) -> None:
    """Replace ``writer``'s channels in ``meta.alert_channels`` (inside the commit), and drop
    those of writers silent for longer than `WRITER_CHANNELS_MAX_AGE` (no longer counted: a
    run container is a writer of its own, so they would pile up, a row per channel per run)."""
    con.execute(ALERT_CHANNELS_DDL)
    con.execute(
        "DELETE FROM meta.alert_channels WHERE writer = ? OR recorded_at < ?",
        [writer, at - WRITER_CHANNELS_MAX_AGE],
    )
    if channels:
        con.executemany(
            "INSERT INTO meta.alert_channels VALUES (?, ?, ?)",
            [(writer, name, at) for name in sorted(set(channels))],
        )


def _writer_channels(con: duckdb.DuckDBPyConnection) -> list[WriterChannel]:
    """Every writer's recorded channels (none before a run recorded any)."""
    present = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'usage' "
        "AND schema_name = 'meta' AND table_name = 'alert_channels'"
    ).fetchone()
    if not present or not present[0]:
        return []
    rows = con.execute("SELECT writer, channel, recorded_at FROM meta.alert_channels").fetchall()
    return [WriterChannel(str(w), str(c), pd.Timestamp(t).to_pydatetime()) for w, c, t in rows]


def channels_of_other_writers(
    recorded: list[WriterChannel], me: str, now: datetime | None = None
) -> dict[str, list[str]]:
    """Per channel, the other writers (not ``me``) whose runs configure it, counting only
    writers that recorded it within `WRITER_CHANNELS_MAX_AGE` of ``now``."""
    since = (now or now_utc()) - WRITER_CHANNELS_MAX_AGE
    found: dict[str, list[str]] = {}
    for row in recorded:
        if row.writer != me and row.recorded_at >= since:
            found.setdefault(row.channel, []).append(row.writer)
    return {name: sorted(set(writers)) for name, writers in found.items()}


def _lake_rows(con: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The lake's ``quota_alerts`` and ``alert_outbox`` (empty before the first commit; a
    contract column the lake's table does not have yet, e.g. ``next_attempt_at`` before this
    writer's first commit added it, is empty)."""
    present = existing_tables(con)
    frames = []
    for t in ALERT_TABLES:
        if ("main", t.name) in present:
            rows = con.execute(f'SELECT * FROM "{t.name}"').df()
            frames.append(rows.reindex(columns=t.column_names))
        else:
            frames.append(pd.DataFrame(columns=t.column_names))
    return frames[0], frames[1]


def take_in_lake_state(
    lake: LakeConfig, store: AlertStore, now: datetime | None = None
) -> list[WriterChannel]:
    """Take the lake's alert state into ``store`` (read-only: nothing is committed), so what
    other writers recorded (delivered, claimed, failed, backing off, cancelled) is known here
    before this writer acts on it, e.g. `usage-etl alerts --all-failed` putting back the
    messages another writer gave up on; returns the channels every writer's runs configure.
    Raises `LakeError` when the lake cannot be read."""
    con = connect(lake, read_only=True)
    try:
        alerts, outbox = _lake_rows(con)
        recorded = _writer_channels(con)
    except duckdb.Error as exc:  # attached, but a read failed (object store, catalog)
        reason = lake.scrub(one_line(str(exc)) or type(exc).__name__)
        raise LakeError(f"the lake's alert tables could not be read: {reason}") from None
    finally:
        con.close()
    store.reconcile(alerts, outbox, now or now_utc())
    return recorded


def merged_alert_tables(
    store: AlertStore,
    now: datetime | None = None,
    *,
    claim: list[str] | None = None,
    own_claims: frozenset[str] = frozenset(),
    ignore_backoff: bool = False,
    channels: list[str] | None = None,
    configured: tuple[str, Collection[str]] | None = None,
) -> MergedTables:
    """The alert tables as a merged commit of ``store`` (see the module docstring).

    ``configured``: (`writer_name`, the channels its quota file configures), recorded in
    ``meta.alert_channels`` in the same commit (a run's main commit).

    ``claim``: when given, it is filled (inside the transaction, anew on every retry) with the
    idempotency keys this pass claims: every message of the local state a delivery pass may
    send now (``ignore_backoff``: due or not), once the lake's rows are taken in; they are
    written ``sending`` at ``now``; ``channels``: only messages of these channels are claimed
    (the ones this writer configures: another writer's channels stay free for it).
    ``own_claims``: the keys this writer claimed earlier in the pass (its own claims in the
    lake, not another writer's)."""

    def merge(con: duckdb.DuckDBPyConnection) -> Mapping[str, pa.Table]:
        at = now or now_utc()
        alerts, outbox = _lake_rows(con)
        taken = store.reconcile(alerts, outbox, at, own_claims=own_claims)
        if taken.delivered_elsewhere or taken.claimed_elsewhere:
            logger.info(
                "alert state: %d message(s) delivered and %d claimed by other writers of the lake",
                taken.delivered_elsewhere,
                taken.claimed_elsewhere,
            )
        if configured is not None:
            _record_channels(con, configured[0], configured[1], at)
        mine = store.outbox_frame()
        if claim is not None:
            claim[:] = store.deliverable_keys(at, ignore_backoff=ignore_backoff, channels=channels)
            claimed = mine["idempotency_key"].isin(claim)
            mine.loc[claimed, "status"] = "sending"
            mine.loc[claimed, "claimed_at"] = pd.Timestamp(at)
        return {
            QUOTA_ALERTS.name: to_arrow(QUOTA_ALERTS, store.alerts_frame()),
            ALERT_OUTBOX.name: to_arrow(ALERT_OUTBOX, mine),
        }

    return MergedTables(ALERT_TABLES, merge)


def commit_alert_state(
    warehouse: Path,
    lake: LakeConfig,
    store: AlertStore,
    now: datetime | None = None,
    *,
    claim: list[str] | None = None,
    own_claims: frozenset[str] = frozenset(),
    ignore_backoff: bool = False,
    channels: list[str] | None = None,
    configured: Collection[str] | None = None,
) -> int | None:
    """One small lake commit of the alert tables alone (merged, see above), under the writer
    lock; returns the snapshot. ``configured``: the channels this writer's runs configure, to
    record (see `merged_alert_tables`). Raises `LakeError` when it could not commit."""
    merged = merged_alert_tables(
        store,
        now,
        claim=claim,
        own_claims=own_claims,
        ignore_backoff=ignore_backoff,
        channels=channels,
        configured=None if configured is None else (writer_name(warehouse, lake), configured),
    )
    with writer_lock(warehouse):
        report = publish_up(warehouse, lake, tables=[], merged=merged, views=False)
    return report.snapshot


@dataclass
class LakeDelivery:
    """A delivery pass through the lake: the local report, what was claimed, what went wrong
    with the lake (each one line, no secret)."""

    report: DeliveryReport
    claimed: int = 0
    problems: list[str] = field(default_factory=list)


def deliver_through_lake(
    warehouse: Path,
    lake: LakeConfig,
    store: AlertStore,
    config: QuotaConfig,
    organization_users: pd.DataFrame | None = None,
    *,
    ignore_backoff: bool = False,
) -> LakeDelivery:
    """Claim in the lake, send what was claimed, commit the outcome (see the module
    docstring). Never raises for the lake: a failed claim sends nothing, a failed outcome
    commit is reported (the messages went out; the local state knows it)."""
    claimed: list[str] = []
    now = now_utc()
    mine = config.channels.enabled()
    if not store.deliverable_keys(now, ignore_backoff=ignore_backoff, channels=mine):
        return LakeDelivery(DeliveryReport(pending=store.pending_count()))
    try:
        commit_alert_state(
            warehouse,
            lake,
            store,
            now,
            claim=claimed,
            ignore_backoff=ignore_backoff,
            channels=mine,
        )
    except LakeError as exc:
        problem = (
            f"alert delivery skipped: could not claim the messages in the shared lake ({exc}); "
            f"they stay pending and are sent by a later pass"
        )
        logger.warning(problem)
        return LakeDelivery(DeliveryReport(pending=store.pending_count()), 0, [problem])
    report = deliver_configured(
        store, config, organization_users, ignore_backoff=ignore_backoff, only=set(claimed)
    )
    delivery = LakeDelivery(report, len(claimed))
    if not claimed:
        return delivery
    try:
        commit_alert_state(warehouse, lake, store, own_claims=frozenset(claimed))
    except LakeError as exc:
        problem = (
            f"the delivery state of {len(claimed)} claimed message(s) was not committed to the "
            f"shared lake ({exc}): it is kept here and committed by this writer's next run; "
            "another writer may send them again once their claim is older than the lease"
        )
        logger.warning(problem)
        delivery.problems.append(problem)
    return delivery
