"""Publishing the analysts' DuckDB file, `<warehouse>/usage.duckdb`, atomically and by slice.

Every publish builds a new file next to `usage.duckdb` (a temporary file), checkpoints, closes and
fsyncs it, and renames it over `usage.duckdb`. Before anything is built every slice is checked
against its table's manifest (`manifest.py`): a missing, unreadable, unrecorded or changed slice
stops the publish with an `IntegrityError` naming the files, and the previous `usage.duckdb` stays
as it was. The check is quick (only files changed since they were last hashed are read) except
for the first publish of a warehouse, which hashes everything.

Two ways to build the new file, and the run log says which one was taken:
- **incremental** (the usual case): the previous `usage.duckdb` is copied (a kernel file copy)
  and only the partitions whose slices changed are replaced in the copy, in one transaction:
  `DELETE` the partition's rows (`parquet_store.partition_predicate`), `INSERT` them from the
  partition's files. The file records which slice digests each table holds in the schema
  `usage_etl` (`usage_etl.slices`, `usage_etl.tables` with each table's contract digest,
  `usage_etl.state`), updated in the same transaction. Before committing, every table's row count
  and every replaced partition's row count must equal its manifest records;
- **full rebuild**: every table created from all its Parquet files. Taken when there is no
  previous file, its recorded state is missing or unreadable, a table's contract (columns, types,
  comments) or the DuckDB version changed, a write-ahead log lies next to it (someone wrote to
  it), more than half of the file is free space (replaced rows free blocks that later publishes
  reuse: the file settles below twice its rebuilt size; this keeps it there), more than half of
  its stored rows are deleted ones (the incremental path does not vacuum: merging row groups
  recompressed much of the big tables on every publish), or the incremental result fails its
  row-count checks.
Either way the views of `views/*.sql` are dropped and created anew and the tables carry column
comments from `schema.py`, so both paths give the same tables, rows, views and comments (row
order aside, which SQL does not promise).

Consequences, for both paths:
- an analyst holding `usage.duckdb` open (read-only) keeps reading the previous, complete version
  and never blocks a run (the copy only reads it); the next connection sees the new one;
- a crash at any instant leaves the previous file in place (or the new one, once renamed).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from warehouse.files import (
    atomic_write,
    commit_temporary,
    discard_temporary,
    write_temporary,
)
from warehouse.manifest import IntegrityError, SliceRecord, reconcile_warehouse
from warehouse.parquet_store import ParquetStore, partition_predicate
from warehouse.readonly import DATABASE_NAME, cap_memory
from warehouse.readonly import connect_readonly as connect_readonly  # re-exported
from warehouse.schema import ALL_TABLES, Table, sql_type
from warehouse.views import create_views

log = logging.getLogger(__name__)

STATE_SCHEMA = "usage_etl"
STATE_FORMAT = 1


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def table_ddl(t: Table) -> list[str]:
    """`CREATE TABLE` for `t` with its documented columns, then its comments."""
    columns = ", ".join(
        f'"{c.name}" {sql_type(c.type)}{"" if c.nullable else " NOT NULL"}' for c in t.columns
    )
    statements = [
        f'CREATE TABLE "{t.name}" ({columns})',
        f'COMMENT ON TABLE "{t.name}" IS {_quote(t.description)}',
    ]
    statements += [
        f'COMMENT ON COLUMN "{t.name}"."{c.name}" IS {_quote(c.description)}' for c in t.columns
    ]
    return statements


def contract_digest(t: Table) -> str:
    """What the published table's shape and comments follow from: a change forces a rebuild."""
    return hashlib.sha256("\n".join(table_ddl(t)).encode()).hexdigest()


def _insert(con: duckdb.DuckDBPyConnection, t: Table, source_sql: str) -> None:
    names = ", ".join(f'"{c}"' for c in t.column_names)
    con.execute(f'INSERT INTO "{t.name}" ({names}) SELECT {names} FROM {source_sql}')


def _count(con: duckdb.DuckDBPyConnection, sql: str, params: list[object] | None = None) -> int:
    row = con.execute(sql, params or []).fetchone()
    return int(row[0]) if row else 0


def create_table(con: duckdb.DuckDBPyConnection, t: Table, source_sql: str | None) -> int:
    """Create `t` in `con` with its documented columns and fill it from `source_sql`."""
    for statement in table_ddl(t):
        con.execute(statement)
    if source_sql is None:
        return 0
    _insert(con, t, source_sql)
    return _count(con, f'SELECT count(*) FROM "{t.name}"')


@dataclass
class PublishResult:
    """What a publish did: rows per table, which path it took and what it replaced."""

    rows: dict[str, int]
    incremental: bool
    reason: str = ""
    replaced: list[str] = field(default_factory=list)
    files_hashed: int = 0

    def line(self) -> str:
        """One short line: which path, how much (the reason for a rebuild: `reason`)."""
        rows = f"{len(self.rows)} tables, {sum(self.rows.values()):,} rows"
        if self.incremental:
            return f"by slice, {len(self.replaced)} partition(s) replaced; {rows}"
        return f"rebuilt whole; {rows}"


class StateUnusable(Exception):
    """The previous file cannot be updated in place (the message says why)."""


# ------------------------------------------------------------------ the slices each table holds
Published = dict[str, dict[str, tuple[str, int]]]  # table -> slice key -> (sha256, rows)


def _wanted(good: dict[str, dict[str, SliceRecord]]) -> Published:
    return {
        t.name: {key: (r.sha256, r.rows) for key, r in good.get(t.name, {}).items()}
        for t in ALL_TABLES
    }


def _write_state(con: duckdb.DuckDBPyConnection, wanted: Published, tables: Iterable[str]) -> None:
    """(Re)write the recorded slices of `tables` and every table's contract (in a transaction)."""
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA}")
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {STATE_SCHEMA}.state "
        "(format INTEGER NOT NULL, duckdb_version VARCHAR NOT NULL)"
    )
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {STATE_SCHEMA}.tables "
        "(table_name VARCHAR NOT NULL, contract VARCHAR NOT NULL)"
    )
    con.execute(
        f"CREATE TABLE IF NOT EXISTS {STATE_SCHEMA}.slices (table_name VARCHAR NOT NULL, "
        "slice VARCHAR NOT NULL, sha256 VARCHAR NOT NULL, rows BIGINT NOT NULL)"
    )
    con.execute(
        f"COMMENT ON TABLE {STATE_SCHEMA}.slices IS 'Bookkeeping of the publisher: the Parquet "
        "slices (by digest) each table holds, so the next run replaces only what changed.'"
    )
    con.execute(f"DELETE FROM {STATE_SCHEMA}.state")
    con.execute(
        f"INSERT INTO {STATE_SCHEMA}.state VALUES (?, ?)", [STATE_FORMAT, duckdb.__version__]
    )
    con.execute(f"DELETE FROM {STATE_SCHEMA}.tables")
    con.executemany(
        f"INSERT INTO {STATE_SCHEMA}.tables VALUES (?, ?)",
        [[t.name, contract_digest(t)] for t in ALL_TABLES],
    )
    for name in tables:
        con.execute(f"DELETE FROM {STATE_SCHEMA}.slices WHERE table_name = ?", [name])
        rows = [[name, key, sha, n] for key, (sha, n) in sorted(wanted[name].items())]
        if rows:
            con.executemany(f"INSERT INTO {STATE_SCHEMA}.slices VALUES (?, ?, ?, ?)", rows)


def _read_state(con: duckdb.DuckDBPyConnection) -> Published:
    """The recorded slices, after checking the recorded format, DuckDB version and contracts."""
    try:
        state = con.execute(f"SELECT format, duckdb_version FROM {STATE_SCHEMA}.state").fetchall()
        contracts = dict(
            con.execute(f"SELECT table_name, contract FROM {STATE_SCHEMA}.tables").fetchall()
        )
        rows = con.execute(
            f"SELECT table_name, slice, sha256, rows FROM {STATE_SCHEMA}.slices"
        ).fetchall()
    except duckdb.Error as exc:
        raise StateUnusable(f"no readable publish state ({str(exc).splitlines()[0]})") from None
    if state != [(STATE_FORMAT, duckdb.__version__)]:
        raise StateUnusable(
            f"publish state {state} is not format {STATE_FORMAT} of DuckDB {duckdb.__version__}"
        )
    changed = sorted(
        t.name for t in ALL_TABLES if contracts.get(t.name) != contract_digest(t)
    ) + sorted(set(contracts) - {t.name for t in ALL_TABLES})
    if changed:
        raise StateUnusable(f"table contract changed: {', '.join(changed)}")
    published: Published = {t.name: {} for t in ALL_TABLES}
    for table_name, key, sha, n in rows:
        if table_name not in published:
            raise StateUnusable(f"publish state names an unknown table {table_name!r}")
        published[table_name][str(key)] = (str(sha), int(n))
    for t in ALL_TABLES:  # the recorded slices must account for every row the table holds
        expected = sum(n for _, n in published[t.name].values())
        held = _count(con, f'SELECT count(*) FROM "{t.name}"')
        if held != expected:
            raise StateUnusable(
                f"table {t.name} holds {held:,} rows, its recorded slices {expected:,}"
            )
    return published


# ------------------------------------------------------------------ building a new file
PUBLISH_MEMORY_LIMIT = "256MB"
"""What the publishing connection may hold in memory (DuckDB's default is 80% of the machine).
Without it, the blocks of the copied file a publish reads (the partition filters, row counts,
the checkpoint) stayed cached in the run's process, growing with the history; beyond it DuckDB
evicts them, and spills what a query cannot evict to a temporary directory."""


@contextlib.contextmanager
def _building(con: duckdb.DuckDBPyConnection, path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """`con`, the connection to the file being built at `path`, configured: UTC, no progress bar
    on the run's stderr for a long INSERT, memory bounded by :data:`PUBLISH_MEMORY_LIMIT`
    (spilling under the system's temporary directory, removed afterwards); closed (and any WAL
    removed) on leaving."""
    with tempfile.TemporaryDirectory(prefix="usage-publish-") as spill:
        try:
            con.execute("SET TimeZone='UTC'")
            con.execute("SET enable_progress_bar = false")
            cap_memory(con, PUBLISH_MEMORY_LIMIT, spill)
            yield con
        finally:
            _close(con, path)


def _drop_views(con: duckdb.DuckDBPyConnection) -> None:
    names = con.execute(
        "SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = 'main' "
        "AND database_name = current_database()"
    ).fetchall()
    for (name,) in names:
        con.execute(f'DROP VIEW "{name}"')


def _finish(con: duckdb.DuckDBPyConnection, views_sql: list[str] | None) -> None:
    """Views (inside the open transaction when given as SQL), COMMIT, checkpoint."""
    for statement in views_sql or []:
        con.execute(statement)
    con.execute("COMMIT")
    if views_sql is None:
        try:  # all views in one transaction (one commit instead of one per statement) ...
            con.execute("BEGIN")
            create_views(con, strict=True)
            con.execute("COMMIT")
        except duckdb.Error:  # ... unless one fails: then each on its own, skipping failures
            with contextlib.suppress(duckdb.Error):  # (a failed COMMIT leaves no transaction)
                con.execute("ROLLBACK")
            create_views(con, strict=False)
    con.execute("CHECKPOINT")


def _close(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    con.close()
    wal = Path(str(path) + ".wal")
    if wal.exists():  # defensive: a checkpointed, closed database leaves no WAL
        os.remove(wal)


def _build_full(
    tmp: Path, store: ParquetStore, wanted: Published, views_sql: list[str] | None
) -> dict[str, int]:
    counts: dict[str, int] = {}
    with _building(duckdb.connect(str(tmp)), tmp) as con:
        con.execute("BEGIN")
        for t in ALL_TABLES:
            counts[t.name] = create_table(con, t, store.scan_sql(t))
        _write_state(con, wanted, wanted)
        _finish(con, views_sql)
    return counts


def copy_file(source: Path, target: Path) -> None:
    """Copy a file in the kernel (`copy_file_range`: a reflink where the filesystem can)."""
    with open(source, "rb") as src, open(target, "wb") as dst:
        try:
            remaining = os.fstat(src.fileno()).st_size
            while remaining > 0:
                done = os.copy_file_range(src.fileno(), dst.fileno(), remaining)
                if done == 0:
                    break
                remaining -= done
            return
        except OSError:  # not supported between these filesystems: an ordinary copy
            src.seek(0)
            dst.seek(0)
            dst.truncate()
        shutil.copyfileobj(src, dst, 1 << 20)


def _units(t: Table, keys: Iterable[str]) -> dict[str, dict[str, str] | None]:
    """Slice keys grouped into what is replaced together: `{unit: partition values}` where the
    unit is a partition directory, or `{"": None}` for the whole table."""
    if not t.partition_by:
        return {"": None}
    units: dict[str, dict[str, str] | None] = {}
    for key in keys:
        directory = Path(key).parent.as_posix()
        values = dict(part.split("=", 1) for part in directory.split("/") if "=" in part)
        if partition_predicate(t, values) is None:
            return {"": None}
        units[directory] = values
    return units


def _in_unit(t: Table, slices: dict[str, tuple[str, int]], unit: str) -> dict[str, str]:
    """`{slice: sha256}` of the slices in `unit` (every slice for the whole-table unit "")."""
    return {
        k: sha for k, (sha, _) in slices.items() if not unit or Path(k).parent.as_posix() == unit
    }


def _replace_unit(
    con: duckdb.DuckDBPyConnection,
    store: ParquetStore,
    t: Table,
    where: tuple[str, list[object]],
    new: dict[str, tuple[str, int]],
    label: str,
) -> None:
    """DELETE the unit's rows and INSERT them from its slice files; its row count must match."""
    condition, params = where
    files = [store.table_dir(t) / k for k in sorted(new)]
    if condition == "TRUE":  # the whole table: dropped and created anew frees its blocks at once
        con.execute(f'DROP TABLE "{t.name}"')
        create_table(con, t, store.scan_files_sql(t, files) if files else None)
    else:
        con.execute(f'DELETE FROM "{t.name}" WHERE {condition}', params)
        if files:
            _insert(con, t, store.scan_files_sql(t, files))
    expected = sum(n for _, n in new.values())
    held = _count(con, f'SELECT count(*) FROM "{t.name}" WHERE {condition}', params)
    if held != expected:
        raise StateUnusable(
            f"{label} holds {held:,} rows after replacing it, its slices {expected:,}"
        )


def _update(
    con: duckdb.DuckDBPyConnection,
    store: ParquetStore,
    published: Published,
    wanted: Published,
) -> list[str]:
    """Replace, in the open transaction, the partitions whose slices changed; returns them."""
    replaced: list[str] = []
    touched: list[str] = []
    for t in ALL_TABLES:
        old, new = published[t.name], wanted[t.name]
        if _in_unit(t, old, "") == _in_unit(t, new, ""):
            continue
        touched.append(t.name)
        for unit, values in sorted(_units(t, set(old) | set(new)).items()):
            if _in_unit(t, old, unit) == _in_unit(t, new, unit):
                continue
            where: tuple[str, list[object]] | None = (
                ("TRUE", []) if values is None else partition_predicate(t, values)
            )
            assert where is not None  # _units only keeps partitions with a predicate
            slices = {k: new[k] for k in _in_unit(t, new, unit)}
            label = f"{t.name}/{unit}" if unit else t.name
            _replace_unit(con, store, t, where, slices, label)
            replaced.append(label)
        expected = sum(n for _, n in new.values())
        held = _count(con, f'SELECT count(*) FROM "{t.name}"')
        if held != expected:
            raise StateUnusable(f"table {t.name} holds {held:,} rows, its slices {expected:,}")
    _write_state(con, wanted, touched)
    return replaced


DEAD_ROWS_MIN = 1_000_000
"""Deleted rows never make a rebuild below this many (a small warehouse stays incremental)."""


def _check_free_space(con: duckdb.DuckDBPyConnection, published: Published) -> None:
    """Replaced rows free blocks that later publishes reuse, and leave deleted rows in row groups
    they shared with rows that stay (incremental publishes do not vacuum, see
    :data:`VACUUM_TASKS`); should more than half of the file be free space, or more than half
    of the stored rows deleted ones, it is rebuilt to compact it."""
    row = con.execute("SELECT used_blocks, free_blocks FROM pragma_database_size()").fetchone()
    if row and int(row[1]) > max(int(row[0]), 64):
        raise StateUnusable(
            f"{int(row[1])} of {int(row[0]) + int(row[1])} blocks are free space: rebuilt to "
            "compact the file"
        )
    live = sum(n for slices in published.values() for _, n in slices.values())
    stored = 0
    for t in ALL_TABLES:  # the rows of each row group's first column, deleted ones included
        stored += _count(
            con,
            "SELECT coalesce(sum(count), 0) FROM pragma_storage_info(?) "
            "WHERE column_id = 0 AND column_path = '[0]'",
            [t.name],
        )
    if stored - live > max(live, DEAD_ROWS_MIN):
        raise StateUnusable(
            f"{stored - live:,} of {stored:,} stored rows are deleted ones: rebuilt to compact "
            "the file"
        )


VACUUM_TASKS = 0
"""Row-group merges DuckDB may do when the updated copy is checkpointed (its default is 100).
A vacuum recompresses every row group it merges: on a 24-month warehouse the checkpoint of a
daily refresh's publish merged hundreds of blocks of `project_usage_trends` and `credit_usage`
(~10 s of CPU, the bulk of the step) to save a few. Without it, replaced rows stay as deleted
rows in the row groups they shared with rows that stay (a whole row group of replaced rows is
still dropped); `_check_free_space` rebuilds the file once they outnumber the live rows."""


def _build_incremental(
    tmp: Path,
    previous: Path,
    store: ParquetStore,
    wanted: Published,
    views_sql: list[str] | None,
) -> list[str]:
    """Copy `previous` to `tmp` and replace what changed; StateUnusable when it cannot be."""
    if Path(str(previous) + ".wal").exists():
        raise StateUnusable("a write-ahead log lies next to the previous file (it was written to)")
    copy_file(previous, tmp)
    try:
        con = duckdb.connect(str(tmp))
    except duckdb.Error as exc:
        raise StateUnusable(f"previous file unreadable ({str(exc).splitlines()[0]})") from None
    with _building(con, tmp):
        con.execute(f"SET max_vacuum_tasks = {VACUUM_TASKS}")
        published = _read_state(con)
        _check_free_space(con, published)
        con.execute("BEGIN")
        replaced = _update(con, store, published, wanted)
        _drop_views(con)
        _finish(con, views_sql)
    return replaced


def publish_database(
    warehouse: Path, views_sql: list[str] | None = None, *, incremental: bool = True
) -> PublishResult:
    """Publish `usage.duckdb` from the Parquet files: by slice when it can, else rebuilt whole.

    `views_sql` are `CREATE VIEW` statements added after the tables (inside the transaction:
    one failing fails the publish). With `views_sql=None` (the default) the documented analyst
    views of `warehouse.views` are created for the tables that exist, each on its own after the
    tables are committed: a view that cannot be built is logged and skipped rather than failing
    the run. `views_sql=[]` publishes no views. Either way the file is only swapped in when
    complete. `incremental=False` forces the full rebuild. Callers hold the warehouse
    `writer_lock` (the manifests are settled here).
    """
    warehouse = Path(warehouse)
    store = ParquetStore(warehouse)
    target = warehouse / DATABASE_NAME
    first = not target.exists()
    check = reconcile_warehouse(store.root, full=first)
    if check.bad:
        raise IntegrityError(check.bad, f"{target} not published")
    wanted = _wanted({name: result.good for name, result in check.tables.items()})

    reason = "no previous file" if first else "asked for"
    if not first and incremental:
        replaced: list[str] = []

        def update(tmp: Path) -> None:
            replaced.extend(_build_incremental(tmp, target, store, wanted, views_sql))

        try:
            tmp = write_temporary(target, update)
        except StateUnusable as exc:
            reason = str(exc)
            log.warning("%s cannot be updated by slice, rebuilding it: %s", target, reason)
        else:
            try:
                commit_temporary(tmp, target, free_old_later=True)
            finally:
                discard_temporary(tmp)  # gone once renamed; removed if the rename failed
            rows = {t.name: sum(n for _, n in wanted[t.name].values()) for t in ALL_TABLES}
            return PublishResult(rows, True, "", replaced, check.hashed)
    counts: dict[str, int] = {}

    def build(tmp: Path) -> None:
        counts.update(_build_full(tmp, store, wanted, views_sql))

    atomic_write(target, build)
    return PublishResult(counts, False, reason, files_hashed=check.hashed)


def publish(warehouse: Path, views_sql: list[str] | None = None) -> dict[str, int]:
    """Publish `usage.duckdb` (see `publish_database`); returns rows per table."""
    return publish_database(warehouse, views_sql).rows
