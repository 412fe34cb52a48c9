"""Removing one organization's data from the warehouse on purpose (`usage-etl forget`).

Runs never delete an organization's history because the token stopped seeing it (partial
visibility is not deletion, see `assets/organizations.py`); this is the explicit way. Under the
writer lock, every slice whose manifest record holds the organization is rewritten without its
rows (a recorded change, like any write; `alert_outbox`, which has no organization column, loses
the messages of the organization's alerts), the `organizations` registry last, then `usage.duckdb`
is republished: rebuilt whole as a new file (never updated in place, whose free blocks would
still hold the removed rows) and no previous version kept. A damaged slice cannot be read, so
the organization is taken out of its record instead: the next run, which re-pulls the damaged
month, then no longer needs that organization's rows to rebuild it.

The rest of what names the organization (the alert state, the series facts, the report, the
notifications log) lives in rooms above this one; `pipelines/commands/forget_cmd.py` removes it
around `forget_slices` and `republish`, under the same lock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from common.errors import InputError, WarehouseError
from warehouse.derived_schema import ALERT_OUTBOX, QUOTA_ALERTS
from warehouse.files import remove_stale_temporaries, writer_lock
from warehouse.manifest import IntegrityError, reconcile_warehouse
from warehouse.parquet_store import ParquetStore
from warehouse.publish import publish_database
from warehouse.readonly import connect_readonly
from warehouse.schema import ALL_TABLES, ORGANIZATIONS, Table


@dataclass
class ForgetResult:
    organization_id: str
    organization_name: str
    rows_removed: dict[str, int] = field(default_factory=dict)
    damaged_records_amended: list[Path] = field(default_factory=list)
    temporaries_removed: int = 0
    published: bool = False
    not_published: str = ""


def _published_organizations(warehouse: Path) -> list[tuple[str, str]]:
    """(id, name) of the organizations the published `usage.duckdb` holds (none without one)."""
    try:
        con = connect_readonly(warehouse)
    except WarehouseError:
        return []
    try:
        rows = con.execute("SELECT organization_id, organization_name FROM organizations")
        return [(str(i), str(n)) for i, n in rows.fetchall()]
    except duckdb.Error:
        return []
    finally:
        con.close()


def resolve_organization(warehouse: Path, name_or_id: str) -> tuple[str, str]:
    """(id, name) of the organization called or identified by `name_or_id`: from the registry
    slice, else from the published `usage.duckdb` (a forget interrupted after rewriting the
    registry and before republishing is finished by running it again); InputError if none."""
    organizations = ParquetStore(Path(warehouse)).read(ORGANIZATIONS)
    known = [
        (str(i), str(n))
        for i, n in zip(
            organizations["organization_id"], organizations["organization_name"], strict=True
        )
    ]

    def candidates() -> Iterator[tuple[str, str]]:
        yield from known
        yield from _published_organizations(Path(warehouse))  # read only when needed

    for organization_id, name in candidates():
        if name_or_id in (organization_id, name):
            return organization_id, name
    names = ", ".join(sorted(n for _, n in known)) or "none"
    raise InputError(
        f"--organization {name_or_id!r}: no such organization in the warehouse "
        f"(expected a name or id; known: {names})"
    )


def _table(name: str) -> Table | None:
    return next((t for t in ALL_TABLES if t.name == name), None)


def _alert_keys(store: ParquetStore, organization_id: str) -> set[str]:
    """The keys of the organization's alerts in the warehouse copy of the alert state."""
    alerts = store.read(QUOTA_ALERTS)
    if alerts.empty:
        return set()
    return set(alerts.loc[alerts["organization_id"] == organization_id, "alert_key"])


def forget_slices(warehouse: Path, organization_id: str, result: ForgetResult) -> None:
    """Rewrite every slice holding `organization_id` without its rows (the `organizations`
    registry last), counting them in `result`. The caller holds the writer lock."""
    store = ParquetStore(warehouse)
    check = reconcile_warehouse(store.root, full=True)
    alert_keys = _alert_keys(store, organization_id)
    order = sorted(check.tables.items(), key=lambda item: item[0] == ORGANIZATIONS.name)
    for table_name, table_check in order:
        t = _table(table_name)
        if t is None:
            continue
        manifest = store.manifest(t)
        rewrites = []
        if t.name == ALERT_OUTBOX.name:  # no organization column: its messages by alert key
            for key in table_check.good if alert_keys else ():
                path = manifest.table_dir / key
                frame = store.read_file(t, path)
                kept = frame[~frame["alert_key"].isin(alert_keys)]
                if len(kept) < len(frame):
                    rewrites.append((path, kept))
                    result.rows_removed[t.name] = (
                        result.rows_removed.get(t.name, 0) + len(frame) - len(kept)
                    )
        elif "organization_id" in t.column_names:
            for key, record in table_check.good.items():
                if organization_id in record.organizations:
                    path = manifest.table_dir / key
                    frame = store.read_file(t, path)
                    rewrites.append((path, frame[frame["organization_id"] != organization_id]))
                    result.rows_removed[t.name] = (
                        result.rows_removed.get(t.name, 0)
                        + record.organizations[organization_id].rows
                    )
        if rewrites:
            store.write_files(t, rewrites)
        for bad in table_check.bad:
            if bad.record is not None and organization_id in bad.record.organizations:
                kept_sums = dict(bad.record.organizations)
                kept_sums.pop(organization_id)
                manifest.amend_committed(
                    bad.path, dataclasses.replace(bad.record, organizations=kept_sums)
                )
                result.damaged_records_amended.append(bad.path)


def republish(warehouse: Path, result: ForgetResult) -> None:
    """Republish `usage.duckdb` rebuilt whole as a new file, keeping no previous version and
    removing temporaries a crashed writer left (any of them may hold the organization). The
    caller holds the writer lock."""
    result.temporaries_removed = remove_stale_temporaries(warehouse)
    try:
        publish_database(warehouse, incremental=False, keep_previous=False)
        result.published = True
    except IntegrityError as exc:
        result.not_published = str(exc)


def forget_organization(warehouse: Path, organization_id: str, name: str = "") -> ForgetResult:
    """Remove every row of `organization_id` from every table, then republish (under the
    writer lock)."""
    warehouse = Path(warehouse)
    result = ForgetResult(organization_id, name)
    with writer_lock(warehouse):
        forget_slices(warehouse, organization_id, result)
        republish(warehouse, result)
    return result
