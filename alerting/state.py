"""Where the alert state lives, its copy in the warehouse, and recovering it when it is lost.

The state (alert lifecycle and notification outbox) is ``<warehouse>/state/alerts.sqlite``
(:class:`alerting.store.AlertStore`). After every evaluation and every delivery pass,
:func:`record_tables` copies it into the warehouse's Parquet tables ``quota_alerts`` and
``alert_outbox`` (atomically, under the writer lock). :func:`open_state` opens the state and,
when the file is missing or empty while the warehouse holds alert rows, rebuilds it from that
copy and says so: delivered messages stay delivered, so nothing already sent is sent again.
:func:`forget_organization` removes one organization from the state (`usage-etl forget`).
On a shared lake that copy is the lake's (fetched when the run starts), and the state is kept in
step with it at every commit (:mod:`alerting.lake_state`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alerting.store import AlertStore
from warehouse.derived_schema import ALERT_OUTBOX, QUOTA_ALERTS
from warehouse.files import writer_lock
from warehouse.parquet_store import ParquetStore

logger = logging.getLogger("alerting")


def state_path(warehouse: Path) -> Path:
    """The alert state file of a warehouse."""
    return Path(warehouse) / "state" / "alerts.sqlite"


@dataclass
class OpenedState:
    """An open alert store and, when it had to be rebuilt, what was recovered."""

    store: AlertStore
    recovered: str | None = None


@contextmanager
def open_state(warehouse: Path) -> Iterator[OpenedState]:
    """Open the alert state of ``warehouse``, restoring it from the warehouse copy when it is
    missing (logged as a warning, and reported in ``recovered``)."""
    path = state_path(warehouse)
    existed = path.exists()
    store = AlertStore(path)
    try:
        recovered = None
        if store.is_empty():
            parquet = ParquetStore(warehouse)
            alerts = parquet.read(QUOTA_ALERTS)
            if len(alerts):
                outbox = parquet.read(ALERT_OUTBOX)
                n_alerts, n_messages = store.restore(alerts, outbox)
                what = "missing" if not existed else "empty"
                recovered = (
                    f"alert state {path} was {what}: recovered {n_alerts} alerts and "
                    f"{n_messages} messages from the warehouse tables (delivered messages are "
                    "not sent again)"
                )
                logger.warning(recovered)
        yield OpenedState(store, recovered)
    finally:
        store.close()


def record_tables(warehouse: Path, store: AlertStore) -> tuple[int, int]:
    """Copy the state into the warehouse's ``quota_alerts`` and ``alert_outbox`` Parquet
    tables; returns their row counts."""
    alerts, outbox = store.alerts_frame(), store.outbox_frame()
    parquet = ParquetStore(warehouse)
    with writer_lock(warehouse):
        parquet.replace_table(QUOTA_ALERTS, alerts)
        parquet.replace_table(ALERT_OUTBOX, outbox)
    return len(alerts), len(outbox)


def publish_state(warehouse: Path, store: AlertStore) -> None:
    """Copy the state into the warehouse tables and re-publish ``usage.duckdb`` so analysts see
    the delivery state (after a delivery pass that changed something)."""
    from warehouse.files import remove_stale_temporaries
    from warehouse.publish import publish

    record_tables(warehouse, store)
    with writer_lock(warehouse):
        remove_stale_temporaries(warehouse)
        publish(warehouse)


def forget_organization(warehouse: Path, organization_id: str) -> dict[str, int]:
    """Delete every row of ``organization_id`` from the alert state (alerts, their messages,
    period totals; see :meth:`AlertStore.forget_organization`); rows deleted per table. A
    warehouse without a state file has nothing to forget: none is created."""
    path = state_path(warehouse)
    if not path.exists():
        return {}
    with AlertStore(path) as store:
        return store.forget_organization(organization_id)
