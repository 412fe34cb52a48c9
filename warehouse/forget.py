"""Removing one organization's data from the warehouse on purpose (`usage-etl forget`).

Runs never delete an organization's history because the token stopped seeing it (partial
visibility is not deletion, see `assets/organizations.py`); this is the explicit way. Under the
writer lock, every slice whose manifest record holds the organization is rewritten without its
rows (a recorded change, like any write), then `usage.duckdb` is republished. A damaged slice
cannot be read, so the organization is taken out of its record instead: the next run, which
re-pulls the damaged month, then no longer needs that organization's rows to rebuild it. The
alert state (`state/alerts.sqlite`, the record of notifications sent) is not touched.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import InputError
from warehouse.files import writer_lock
from warehouse.manifest import IntegrityError, reconcile_warehouse
from warehouse.parquet_store import ParquetStore
from warehouse.publish import publish
from warehouse.schema import ALL_TABLES, ORGANIZATIONS, Table


@dataclass
class ForgetResult:
    organization_id: str
    organization_name: str
    rows_removed: dict[str, int] = field(default_factory=dict)
    damaged_records_amended: list[Path] = field(default_factory=list)
    published: bool = False
    not_published: str = ""


def resolve_organization(warehouse: Path, name_or_id: str) -> tuple[str, str]:
    """(id, name) of the organization called or identified by `name_or_id`; ValueError if none."""
    organizations = ParquetStore(Path(warehouse)).read(ORGANIZATIONS)
    match = organizations[
        (organizations["organization_id"] == name_or_id)
        | (organizations["organization_name"] == name_or_id)
    ]
    if match.empty:
        known = ", ".join(sorted(organizations["organization_name"])) or "none"
        raise InputError(
            f"--organization {name_or_id!r}: no such organization in the warehouse "
            f"(expected a name or id; known: {known})"
        )
    row = match.iloc[0]
    return str(row["organization_id"]), str(row["organization_name"])


def _table(name: str) -> Table | None:
    return next((t for t in ALL_TABLES if t.name == name), None)


def forget_organization(warehouse: Path, organization_id: str, name: str = "") -> ForgetResult:
    """Remove every row of `organization_id` from every table, then republish."""
    warehouse = Path(warehouse)
    store = ParquetStore(warehouse)
    result = ForgetResult(organization_id, name)
    with writer_lock(warehouse):
        check = reconcile_warehouse(store.root, full=True)
        for table_name, table_check in check.tables.items():
            t = _table(table_name)
            if t is None or "organization_id" not in t.column_names:
                continue
            manifest = store.manifest(t)
            rewrites = []
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
                    kept = dict(bad.record.organizations)
                    kept.pop(organization_id)
                    manifest.amend_committed(
                        bad.path, dataclasses.replace(bad.record, organizations=kept)
                    )
                    result.damaged_records_amended.append(bad.path)
        try:
            publish(warehouse, keep_previous=False)  # no version still holding it is kept
            result.published = True
        except IntegrityError as exc:
            result.not_published = str(exc)
    return result
