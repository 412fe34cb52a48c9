"""Keeping a writer's local warehouse and the shared lake in step (lake mode only).

In lake mode every writer (a scheduled run on a server, a backfill on another host) keeps its
local warehouse directory as a working copy of the lake:

1. **sync down** when a run starts: every slice another writer committed since this copy last
   saw it is fetched from the lake and written locally (atomically, as any slice), so derived
   tables are computed over the whole shared history, not only what this host loaded;
2. the run works locally exactly as in the embedded mode;
3. **publish up** at the end: every slice this copy changed since it last synced (and only
   those: slices other writers own are left alone) is written into the lake in ONE transaction,
   that is one snapshot, retried as a whole when another writer's commit conflicts.

A slice is what the local store replaces as a unit: a partition's `data.parquet`
(`credit_usage/interval=day/month=2026-10`), one appended snapshot file of a snapshot table
(`resource_usage/observed_date=2026-11-28/snapshot-...parquet`, keyed in the lake by its
`snapshot` column too), or an unpartitioned table as a whole. In the lake its partition values
are ordinary columns. What each copy last synced is kept in
`<warehouse>/state/lake-sync.json` (slice -> content digest: the SHA-256 that the slice manifest
records for the file, see `manifest.py`, so no file is hashed again here); the lake keeps the
digest of every slice it holds in `meta.slices`, updated in the same transaction as the slice's
rows. A crash anywhere leaves the lake at the previous snapshot or the new one; a run that died
after its commit but before recording it publishes the same content again (idempotent).

Merged tables (`MergedTables`): a whole table whose lake copy must not simply be replaced by
this copy's (the alert state, `alerting/lake_state.py`) is written by a merge function that runs
inside the transaction, reads the lake's rows there and returns the rows to write; the same
snapshot replaces the table, records its rows' digest in `meta.slices`, and the local copy gets
those rows after the commit. `publish_up(..., tables=[], merged=...)` commits such tables alone.

Not propagated: a local file removed on one host (`usage-etl prune`) is removed from the lake by
that host's next publish, but other hosts keep their local copy of it (they never push it back).
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.files import atomic_write
from warehouse.lake import (
    LakeConfig,
    LakeTables,
    connect,
    create_lake_views,
    write_transaction,
)
from warehouse.manifest import file_digest
from warehouse.parquet_store import ParquetStore, to_arrow
from warehouse.schema import ALL_TABLES, Table

STATE_FILE = Path("state") / "lake-sync.json"
SLICES_DDL = (
    "CREATE TABLE IF NOT EXISTS meta.slices (table_name VARCHAR NOT NULL, slice VARCHAR NOT "
    "NULL, digest VARCHAR NOT NULL, rows BIGINT NOT NULL, published_at TIMESTAMP NOT NULL, "
    "published_by VARCHAR)"
)


@dataclass(frozen=True)
class LocalSlice:
    """One slice of the local copy: its table, partition values, files and content digest."""

    table: Table
    keys: dict[str, str]
    files: tuple[Path, ...]
    digest: str

    @property
    def name(self) -> str:
        return slice_name(self.keys)


SNAPSHOT_KEY = "snapshot"
WHOLE_FILE = "data.parquet"


def slice_name(keys: dict[str, str]) -> str:
    """`interval=day/month=2026-10`; empty for an unpartitioned table."""
    return "/".join(f"{k}={v}" for k, v in keys.items())


def _label(table: str, name: str) -> str:
    return f"{table}/{name}" if name else table


def _parse_name(name: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in name.split("/")) if name else {}


def local_slices(store: ParquetStore, t: Table) -> list[LocalSlice]:
    """The table's local slices with their content digests.

    The digest is the one the table's manifest records for the file (the writer hashed it when
    it wrote it; publishing checked the file against it just before), so nothing is read again.
    A file without a settled record (none should reach here) is hashed.
    """
    root = store.table_dir(t)
    entries = store.manifest(t).load()
    out = []
    for path in store.files(t):
        relative = path.parent.relative_to(root)
        keys = _parse_name(relative.as_posix()) if relative.as_posix() != "." else {}
        if path.name != WHOLE_FILE:
            keys[SNAPSHOT_KEY] = path.name
        entry = entries.get(path.relative_to(root).as_posix())
        if entry is not None and entry.committed is not None and entry.pending is None:
            digest = entry.committed.sha256
        else:
            digest = file_digest(path)[1]
        out.append(LocalSlice(t, keys, (path,), digest))
    return out


def _read_local(local: LocalSlice) -> pa.Table:
    """The slice's rows in the table's contract schema (partition values put back)."""
    frames = [pq.read_table(path).to_pandas() for path in local.files]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for key, value in local.keys.items():
        if key in local.table.column_names:
            frame[key] = value
    return to_arrow(local.table, frame)


class SyncState:
    """What this copy last synced with the lake, saved atomically.

    Per table and slice: the lake's digest of the slice at that moment and the digest of the
    local file then (they differ when the slice was fetched: the bytes are rewritten here).
    A slice is fetched when the lake's digest moved, published when the local one moved."""

    def __init__(self, warehouse: Path) -> None:
        self.path = Path(warehouse) / STATE_FILE
        self.slices: dict[str, dict[str, dict[str, str]]] = {}
        if self.path.exists():
            try:
                self.slices = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self.slices = {}  # unreadable: everything counts as unsynced, which is safe

    def lake(self, table: str, name: str) -> str | None:
        return self.slices.get(table, {}).get(name, {}).get("lake")

    def local(self, table: str, name: str) -> str | None:
        return self.slices.get(table, {}).get(name, {}).get("local")

    def names(self, table: str) -> list[str]:
        return list(self.slices.get(table, {}))

    def record(self, table: str, name: str, lake: str | None, local: str | None) -> None:
        if lake is None or local is None:
            self.slices.get(table, {}).pop(name, None)
        else:
            self.slices.setdefault(table, {})[name] = {"lake": lake, "local": local}

    def save(self) -> None:
        text = json.dumps(self.slices, indent=1, sort_keys=True)
        atomic_write(self.path, lambda tmp: tmp.write_text(text))


@dataclass
class SyncReport:
    """What a sync moved, for logs and run metadata."""

    fetched: list[str] = field(default_factory=list)
    published: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    retries: int = 0
    snapshot: int | None = None

    def line(self) -> str:
        parts = []
        if self.fetched:
            parts.append(f"{len(self.fetched)} slice(s) fetched from the lake")
        if self.published or self.removed:
            parts.append(
                f"{len(self.published)} slice(s) published"
                + (f", {len(self.removed)} removed" if self.removed else "")
                + (f" as snapshot {self.snapshot}" if self.snapshot is not None else "")
            )
        if self.retries:
            parts.append(f"{self.retries} conflicting commit(s) retried")
        return "; ".join(parts) or "local copy and lake already in step"


def _ensure_meta(con: duckdb.DuckDBPyConnection, config: LakeConfig) -> None:
    present = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE database_name = 'usage' "
        "AND schema_name = 'meta' AND table_name = 'slices'"
    ).fetchone()
    if present and present[0]:
        return

    def create(c: duckdb.DuckDBPyConnection) -> None:
        c.execute("CREATE SCHEMA IF NOT EXISTS meta")
        c.execute(SLICES_DDL)

    write_transaction(con, create, config)


def lake_slices(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], str]:
    """`{(table, slice): digest}` of everything the lake holds."""
    rows = con.execute("SELECT table_name, slice, digest FROM meta.slices").fetchall()
    return {(str(t), str(s)): str(d) for t, s, d in rows}


_SLICE_INDEX = "__usage_slice"
_SLICES_PER_QUERY = 200


def _frames_from_lake(
    con: duckdb.DuckDBPyConnection, t: Table, slices: list[dict[str, str]]
) -> list[pd.DataFrame]:
    """The contract columns of each slice's rows (one frame a slice, in order), read with one
    query for up to `_SLICES_PER_QUERY` slices named by the same keys instead of one a slice:
    each row is tagged with the first slice whose key values it has (slices are disjoint)."""
    columns = ", ".join(f'"{c.name}"' for c in t.columns)
    frames: dict[int, pd.DataFrame] = {}
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, keys in enumerate(slices):
        groups.setdefault(tuple(keys), []).append(i)
    for names, members in groups.items():
        for at in range(0, len(members), _SLICES_PER_QUERY):
            chunk = members[at : at + _SLICES_PER_QUERY]
            match = " AND ".join(f'"{k}" = ?' for k in names) or "true"
            tag = " ".join(f"WHEN {match} THEN {i}" for i in chunk)
            frame = con.execute(
                f'SELECT * FROM (SELECT {columns}, CASE {tag} END AS "{_SLICE_INDEX}" '
                f'FROM "{t.name}") WHERE "{_SLICE_INDEX}" IS NOT NULL',
                [slices[i][k] for i in chunk for k in names],
            ).df()
            parts = dict(iter(frame.groupby(_SLICE_INDEX, sort=False)))
            for i in chunk:
                rows = parts.get(i, frame.iloc[0:0])
                frames[i] = rows.drop(columns=_SLICE_INDEX).reset_index(drop=True)
    return [frames[i] for i in range(len(slices))]


def sync_down(warehouse: Path, config: LakeConfig, tables: list[Table] | None = None) -> SyncReport:
    """Fetch every slice the lake holds in another version than this copy last synced."""
    store = ParquetStore(warehouse)
    state = SyncState(warehouse)
    report = SyncReport()
    by_name = {t.name: t for t in (tables or ALL_TABLES)}
    con = connect(config)
    try:
        _ensure_meta(con, config)
        con.execute("BEGIN TRANSACTION")  # one consistent snapshot for the whole read
        try:
            wanted: dict[str, list[tuple[str, dict[str, str], str]]] = {}
            for (table_name, name), digest in sorted(lake_slices(con).items()):
                if table_name in by_name and state.lake(table_name, name) != digest:
                    wanted.setdefault(table_name, []).append((name, _parse_name(name), digest))
            for table_name, fetched in wanted.items():
                t = by_name[table_name]
                frames = _frames_from_lake(con, t, [keys for _, keys, _ in fetched])
                for (name, keys, _), frame in zip(fetched, frames, strict=True):
                    _write_local(store, t, keys, frame)
                    report.fetched.append(_label(table_name, name))
                local = {s.name: s.digest for s in local_slices(store, t)}
                for name, _, digest in fetched:
                    state.record(table_name, name, digest, local.get(name))
        finally:
            con.execute("ROLLBACK")
    finally:
        con.close()
    state.save()
    return report


def _write_local(store: ParquetStore, t: Table, keys: dict[str, str], frame: pd.DataFrame) -> None:
    partition = {k: v for k, v in keys.items() if k != SNAPSHOT_KEY}
    if SNAPSHOT_KEY in keys:
        if not store.partition_path(t, partition, keys[SNAPSHOT_KEY]).exists():
            store.append_file(t, partition, keys[SNAPSHOT_KEY], frame)
    elif partition:
        store.replace_partition(t, partition, frame)
    else:
        store.replace_table(t, frame)


def _forget_slices(c: duckdb.DuckDBPyConnection, slices: list[tuple[str, str]]) -> None:
    """Delete the `meta.slices` records of `(table, slice)` pairs in one statement (each
    DELETE reads the whole of `meta.slices`)."""
    if not slices:
        return
    tables, names = zip(*slices, strict=True)
    pairs = pa.table(
        {"table_name": pa.array(tables, pa.string()), "slice": pa.array(names, pa.string())}
    )
    c.register("_usage_forgotten_slices", pairs)
    try:
        c.execute(
            "DELETE FROM meta.slices WHERE (table_name, slice) IN "
            "(SELECT table_name, slice FROM _usage_forgotten_slices)"
        )
    finally:
        c.unregister("_usage_forgotten_slices")


def _record_slices(c: duckdb.DuckDBPyConnection, rows: list[tuple[object, ...]]) -> None:
    """Insert `meta.slices` records (table, slice, digest, rows, published_at, published_by)
    in one statement."""
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    records = pa.table(
        {
            "table_name": pa.array(columns[0], pa.string()),
            "slice": pa.array(columns[1], pa.string()),
            "digest": pa.array(columns[2], pa.string()),
            "rows": pa.array(columns[3], pa.int64()),
            "published_at": pa.array(columns[4], pa.timestamp("us")),
            "published_by": pa.array(columns[5], pa.string()),
        }
    )
    c.register("_usage_slice_records", records)
    try:
        c.execute(
            "INSERT INTO meta.slices (table_name, slice, digest, rows, published_at, "
            "published_by) SELECT table_name, slice, digest, rows, published_at, published_by "
            "FROM _usage_slice_records"
        )
    finally:
        c.unregister("_usage_slice_records")


@dataclass(frozen=True)
class MergedTables:
    """Whole tables whose lake copy is merged with this copy's inside the commit, instead of
    replaced by it (the alert state: a message another writer delivered must stay delivered).

    `merge(con)` runs inside the transaction, again on every retry after a conflict: it reads
    the lake's rows there (the snapshot the commit replaces) and returns the rows to write, by
    table name. Each table is then replaced whole in the same snapshot, recorded in
    `meta.slices` with the digest of those rows, and written to the local copy too."""

    tables: tuple[Table, ...]
    merge: Callable[[duckdb.DuckDBPyConnection], Mapping[str, pa.Table]]


def rows_digest(rows: pa.Table) -> str:
    """SHA-256 of a table's rows (Arrow IPC bytes): the lake digest of a merged table."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rows.schema) as writer:
        writer.write_table(rows)
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


def publish_up(
    warehouse: Path,
    config: LakeConfig,
    tables: list[Table] | None = None,
    merged: MergedTables | None = None,
    views: bool = True,
) -> SyncReport:
    """Write every slice this copy changed since its last sync into the lake, in one snapshot,
    with the `merged` tables merged in (always written when given); `views`: recreate the
    analyst views in the same snapshot."""
    store = ParquetStore(warehouse)
    state = SyncState(warehouse)
    report = SyncReport()
    changed: list[LocalSlice] = []
    gone: list[tuple[Table, str]] = []
    merged_names = {t.name for t in merged.tables} if merged is not None else set()
    for t in ALL_TABLES if tables is None else tables:
        if t.name in merged_names:
            continue
        slices = local_slices(store, t)
        changed += [s for s in slices if state.local(t.name, s.name) != s.digest]
        present = {s.name for s in slices}
        gone += [(t, n) for n in state.names(t.name) if n not in present]
    if not changed and not gone and merged is None:
        return report
    con = connect(config)
    written: dict[str, tuple[pa.Table, str]] = {}
    try:
        _ensure_meta(con, config)
        lake = LakeTables(con, config)
        lake.ensure_all(
            [(s.table, (SNAPSHOT_KEY,) if SNAPSHOT_KEY in s.keys else ()) for s in changed]
            + [(t, ()) for t in (merged.tables if merged is not None else ())]
        )
        staged = [(s, _read_local(s)) for s in changed]
        host = socket.gethostname()

        def work(c: duckdb.DuckDBPyConnection) -> None:
            now = datetime.now(UTC).replace(tzinfo=None)
            deleted: dict[str, tuple[Table, list[dict[str, str]]]] = {}
            for local in changed:
                deleted.setdefault(local.table.name, (local.table, []))[1].append(local.keys)
            for t, name in gone:
                deleted.setdefault(t.name, (t, []))[1].append(_parse_name(name))
            for t, keys in deleted.values():  # one DELETE a table: its files scanned once
                lake.delete_slices_in_transaction(c, t, keys)
            for local, arrow in staged:
                lake.insert_in_transaction(c, local.table, local.keys, arrow)
            records = [(s.table.name, s.name, s.digest, a.num_rows, now, host) for s, a in staged]
            written.clear()
            if merged is not None:
                rows = merged.merge(c)
                for t in merged.tables:
                    arrow = rows[t.name]
                    lake.replace_in_transaction(c, t, {}, arrow)
                    written[t.name] = (arrow, rows_digest(arrow))
                    records.append((t.name, "", written[t.name][1], arrow.num_rows, now, host))
            _forget_slices(
                c,
                [(s.table.name, s.name) for s in changed]
                + [(t.name, n) for t, n in gone]
                + [(name, "") for name in written],
            )
            _record_slices(c, records)
            if views:
                create_lake_views(c)  # the analyst views, for any DuckDB client attaching

        _, report.retries = write_transaction(con, work, config)
        row = con.execute("SELECT max(snapshot_id) FROM ducklake_snapshots('usage')").fetchone()
        report.snapshot = int(row[0]) if row and row[0] is not None else None
    finally:
        con.close()
    for local in changed:
        state.record(local.table.name, local.name, local.digest, local.digest)
        report.published.append(_label(local.table.name, local.name))
    for t, name in gone:
        state.record(t.name, name, None, None)
        report.removed.append(_label(t.name, name))
    for t in merged.tables if merged is not None else ():
        arrow, digest = written[t.name]
        store.replace_table(t, arrow.to_pandas())  # the local copy: what the lake now holds
        local = {s.name: s.digest for s in local_slices(store, t)}
        state.record(t.name, "", digest, local.get(""))
        report.published.append(t.name)
    state.save()
    return report
