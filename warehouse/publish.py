"""Publishing the analysts' DuckDB file, `<warehouse>/usage.duckdb`, atomically and by slice.

Every publish builds a new file next to `usage.duckdb` (a temporary file), checkpoints, closes and
fsyncs it, and renames it over `usage.duckdb`. Before anything is built every slice is checked
against its table's manifest (`manifest.py`): a missing, unreadable, unrecorded or changed slice
stops the publish with an `IntegrityError` naming the files, and the previous `usage.duckdb` stays
as it was. The check is quick (only files changed since they were last hashed are read) except
for the first publish of a warehouse, which hashes everything.

Two ways to build the new file, and the run log says which one was taken:
- **incremental** (the usual case): a previous version is updated and only the partitions whose
  slices changed are replaced in it, in one transaction: `DELETE` the partition's rows
  (`parquet_store.partition_predicate`), `INSERT` them from the partition's files. The file
  records which slice digests each table holds in the schema `usage_etl` (`usage_etl.slices`,
  `usage_etl.tables` with each table's contract digest, `usage_etl.state`), updated in the same
  transaction, so any earlier version can be brought up to date. Before committing, every
  table's row count and every replaced partition's row count must equal its manifest records.
  The version updated is, in order of preference:
  1. **the kept previous file**, `.usage.duckdb.previous`: each publish keeps the file it
     replaces there (a hard link: no copy, no extra write), and the next publish renames it to
     a temporary name and updates it, so a daily refresh writes only what changed instead of
     copying and fsyncing the whole file (hundreds of MB at 24 months of 1,000 organizations).
     It is only used when nobody can be reading it: it is not open in this process (by inode,
     under any name: `/proc/self/fd`) and DuckDB can lock it for writing (an analyst's
     session in another process, read-only, holds a shared lock on the version it opened,
     which makes that fail; POSIX locks belong to a process and go when it closes any
     descriptor of the file, so a process that reads `usage.duckdb` and publishes itself,
     while another process publishes after it, is the one case these checks miss: the
     pipeline's own readers close before any publish). Otherwise, or when it cannot be
     updated (see below), it is dropped, and
  2. **a copy of `usage.duckdb`** (a kernel file copy) is updated instead;
- **full rebuild**: every table created from all its Parquet files. Taken when there is no
  previous file, its recorded state is missing or unreadable, a table's contract (columns, types,
  comments) or the DuckDB version changed, a write-ahead log lies next to it (someone wrote to
  it), more than half of the file is free space (replaced rows free blocks that later publishes
  reuse: the file settles below twice its rebuilt size; this keeps it there), more than half of
  its stored rows are deleted ones (the incremental path does not vacuum: merging row groups
  recompressed much of the big tables on every publish), or the incremental result fails its
  row-count checks.
A publish that replaced much (a backfill, a full rebuild) keeps a copy of the new file instead
of the version it replaced (`KEPT_COPY_AFTER_SHARE`): the next daily refresh then finds it up to
date, and the long run pays for the copy, not the short one.
Either way the views of `views/*.sql` are dropped and created anew and the tables carry column
comments from `schema.py`, so both paths give the same tables, rows, views and comments (row
order aside, which SQL does not promise).

Consequences, for both paths:
- an analyst holding `usage.duckdb` open (read-only) keeps reading the previous, complete version
  and never blocks a run (the copy only reads it); the next connection sees the new one;
- a crash at any instant leaves the previous file in place (or the new one, once renamed);
- the warehouse holds up to two versions of the file on disk (the published one and the kept
  previous one, sharing no blocks once the next publish has updated it). `forget` and `prune`
  publish with `keep_previous=False`: the version still holding what they removed is not kept.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from warehouse.files import (
    atomic_write,
    commit_temporary,
    discard_temporary,
    fsync_file,
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
    updated: str = ""  # incremental: "the kept previous file" or "a copy"

    def line(self) -> str:
        """One short line: which path, how much (the reason for a rebuild: `reason`)."""
        rows = f"{len(self.rows)} tables, {sum(self.rows.values()):,} rows"
        if self.incremental:
            return (
                f"by slice ({self.updated} updated), {len(self.replaced)} partition(s) "
                f"replaced; {rows}"
            )
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


def _directory(key: str) -> str:
    """The partition directory of slice `key` (a relative POSIX path): `Path(key).parent`, as
    text, without building a path (the unit checks below run it for every slice and unit)."""
    return key.rpartition("/")[0] or "."


def _units(t: Table, keys: Iterable[str]) -> dict[str, dict[str, str] | None]:
    """Slice keys grouped into what is replaced together: `{unit: partition values}` where the
    unit is a partition directory, or `{"": None}` for the whole table."""
    if not t.partition_by:
        return {"": None}
    units: dict[str, dict[str, str] | None] = {}
    for key in keys:
        directory = _directory(key)
        values = dict(part.split("=", 1) for part in directory.split("/") if "=" in part)
        if partition_predicate(t, values) is None:
            return {"": None}
        units[directory] = values
    return units


def _in_unit(t: Table, slices: dict[str, tuple[str, int]], unit: str) -> dict[str, str]:
    """`{slice: sha256}` of the slices in `unit` (every slice for the whole-table unit "")."""
    return {k: sha for k, (sha, _) in slices.items() if not unit or _directory(k) == unit}


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


def _changed_units(
    t: Table, old: dict[str, tuple[str, int]], new: dict[str, tuple[str, int]]
) -> list[tuple[str, dict[str, str] | None]]:
    """The units of `t` (see `_units`) whose slices differ between `old` and `new`, in order;
    none when the table's slices are the same."""
    if _in_unit(t, old, "") == _in_unit(t, new, ""):
        return []
    return [
        (unit, values)
        for unit, values in sorted(_units(t, set(old) | set(new)).items())
        if _in_unit(t, old, unit) != _in_unit(t, new, unit)
    ]


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
        changed = _changed_units(t, old, new)
        if not changed:
            continue
        touched.append(t.name)
        for unit, values in changed:
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


def _rows_to_replace(old: Published, new: Published) -> int:
    """The rows an update from `old` to `new` deletes and inserts (by unit replaced)."""
    rows = 0
    for t in ALL_TABLES:
        before, after = old[t.name], new[t.name]
        for unit, _ in _changed_units(t, before, after):
            rows += sum(before[k][1] for k in _in_unit(t, before, unit))
            rows += sum(after[k][1] for k in _in_unit(t, after, unit))
    return rows


KEPT_MAX_EXTRA_SHARE = 0.05
"""The kept previous file is updated when it needs at most this share of the live rows replaced
(deleted and inserted) beyond what a copy of the published file needs: a daily refresh after a
daily refresh needs none, both replace the same months. Copying a file (~1 s a 500 MB on ext4,
with its fsync) is cheaper than replacing more."""

KEPT_COPY_AFTER_SHARE = 0.25
"""A publish that replaced (deleted and inserted) more than this share of the live rows (a
backfill, a full rebuild) keeps a copy of the new file instead of the version it replaced: the
next daily refresh, which replaces other months, finds it up to date, and the long run pays for
the copy, not the short one. A daily refresh replaces its current months (~8% of the rows at 24
months, twice that at 12): it keeps the version it replaced, a hard link."""


def _live_rows(wanted: Published) -> int:
    return sum(n for slices in wanted.values() for _, n in slices.values())


def _update_file(
    tmp: Path,
    store: ParquetStore,
    wanted: Published,
    views_sql: list[str] | None,
    *,
    than_copy_of: Published | None = None,
) -> tuple[list[str], Published]:
    """Replace what changed in `tmp`, a version published earlier; returns what it replaced and
    the state the file recorded before. StateUnusable when it cannot be (its state, its free
    space, its row counts, or it cannot be opened for writing), or, given the state of the
    published file (`than_copy_of`), when updating a copy of that would replace far fewer rows."""
    try:
        con = duckdb.connect(str(tmp))
    except duckdb.Error as exc:
        raise StateUnusable(f"previous file unreadable ({str(exc).splitlines()[0]})") from None
    with _building(con, tmp):
        con.execute(f"SET max_vacuum_tasks = {VACUUM_TASKS}")
        published = _read_state(con)
        if than_copy_of is not None:
            extra = _rows_to_replace(published, wanted) - _rows_to_replace(than_copy_of, wanted)
            if extra > KEPT_MAX_EXTRA_SHARE * _live_rows(wanted):
                raise StateUnusable(f"{extra:,} more rows to replace than in a copy")
        _check_free_space(con, published)
        con.execute("BEGIN")
        replaced = _update(con, store, published, wanted)
        _drop_views(con)
        _finish(con, views_sql)
    return replaced, published


def _build_incremental(
    tmp: Path,
    previous: Path,
    store: ParquetStore,
    wanted: Published,
    views_sql: list[str] | None,
) -> tuple[list[str], Published]:
    """Copy `previous` to `tmp` and replace what changed (see `_update_file`)."""
    if Path(str(previous) + ".wal").exists():
        raise StateUnusable("a write-ahead log lies next to the previous file (it was written to)")
    copy_file(previous, tmp)
    return _update_file(tmp, store, wanted, views_sql)


# ------------------------------------------------------------ the previous version, kept
KEPT, COPY = "the kept previous file", "a copy"  # what an incremental publish updated


@dataclass
class _Updated:
    """A new version under a temporary name (fsynced): what it replaced, and the state the
    published file it replaces records."""

    tmp: Path
    replaced: list[str]
    replaces: Published


def kept_path(target: Path) -> Path:
    """Where the version a publish replaced is kept for the next one (see the module doc)."""
    return target.parent / f".{target.name}.previous"


def _open_in_this_process(path: Path) -> bool | None:
    """Whether this process holds `path`'s file open, under any name (by device and inode);
    None where the system cannot tell (no `/proc/self/fd`)."""
    wanted = path.stat()
    try:
        entries = list(os.scandir("/proc/self/fd"))
    except OSError:
        return None
    for entry in entries:
        try:
            held = os.stat(entry.path)
        except OSError:  # closed meanwhile, or not a file
            continue
        if (held.st_dev, held.st_ino) == (wanted.st_dev, wanted.st_ino):
            return True
    return False


def _state_of(path: Path) -> Published:
    """The slices the published file at `path` records (read-only)."""
    con = duckdb.connect(":memory:")
    try:
        literal = str(path).replace("'", "''")
        con.execute(f"ATTACH '{literal}' AS published (READ_ONLY)")
        con.execute("USE published")
        return _read_state(con)
    finally:
        con.close()


def _why_not_kept(target: Path, kept: Path) -> str | None:
    """Why the kept previous file must not be updated in place, or None when it may be."""
    if os.path.samefile(kept, target):
        return "it is the published file itself (a publish stopped between linking and renaming)"
    if Path(str(kept) + ".wal").exists():
        return "a write-ahead log lies next to it (it was written to)"
    if Path(str(target) + ".wal").exists():  # the copy's path rebuilds the file: see there
        return f"a write-ahead log lies next to {target.name}"
    held = _open_in_this_process(kept)
    if held is None:
        return "this system cannot tell whether this process holds it open"
    if held:
        return "this process holds it open (a reader of that version)"
    return None


def _update_kept(
    target: Path, store: ParquetStore, wanted: Published, views_sql: list[str] | None
) -> _Updated | None:
    """The kept previous file brought up to date under a temporary name; None, with the kept
    file dropped, when there is none or it may not or cannot be updated (an analyst may still
    read it: DuckDB refuses to lock it for writing)."""
    kept = kept_path(target)
    try:
        why = _why_not_kept(target, kept)
    except FileNotFoundError:
        return None
    if why is None:
        try:
            current = _state_of(target)
        except (StateUnusable, duckdb.Error) as exc:  # a copy of it fails too: rebuilt whole
            why = f"{target.name} has no usable state ({str(exc).splitlines()[0]})"
    if why is not None:
        log.info("%s not updated (%s): dropped, updating a copy of %s", kept, why, target.name)
        kept.unlink(missing_ok=True)
        return None
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    os.rename(kept, tmp)  # a crash from here on leaves a temporary, which the next run removes
    try:
        replaced, _ = _update_file(tmp, store, wanted, views_sql, than_copy_of=current)
        fsync_file(tmp)
    except StateUnusable as exc:
        log.info("%s not updated (%s): dropped, updating a copy of %s", kept, exc, target.name)
        tmp.unlink()  # a reader holding it open keeps reading it
        return None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return _Updated(tmp, replaced, current)


def _keep_a_copy(target: Path) -> None:
    """Keep a copy of the file just published for the next publish to update."""
    kept = kept_path(target)
    kept.unlink(missing_ok=True)
    commit_temporary(write_temporary(kept, lambda tmp: copy_file(target, tmp)), kept)


def _swap_in(update: _Updated, target: Path, wanted: Published, *, keep_previous: bool) -> None:
    """Rename the new version over `target`, keeping (see `KEPT_COPY_AFTER_SHARE`) the version it
    replaces (a hard link, made first) or, when that replaced much, a copy of the new one."""
    kept = kept_path(target)
    kept.unlink(missing_ok=True)  # normally gone already (renamed, or dropped)
    small = _rows_to_replace(update.replaces, wanted) <= KEPT_COPY_AFTER_SHARE * _live_rows(wanted)
    if keep_previous and small:
        with contextlib.suppress(OSError):  # no hard links here: nothing is kept
            os.link(target, kept)
    try:
        commit_temporary(update.tmp, target)
    except BaseException:
        kept.unlink(missing_ok=True)
        raise
    if keep_previous and not small:
        _keep_a_copy(target)


def publish_database(
    warehouse: Path,
    views_sql: list[str] | None = None,
    *,
    incremental: bool = True,
    keep_previous: bool = True,
) -> PublishResult:
    """Publish `usage.duckdb` from the Parquet files: by slice when it can, else rebuilt whole.

    `views_sql` are `CREATE VIEW` statements added after the tables (inside the transaction:
    one failing fails the publish). With `views_sql=None` (the default) the documented analyst
    views of `warehouse.views` are created for the tables that exist, each on its own after the
    tables are committed: a view that cannot be built is logged and skipped rather than failing
    the run. `views_sql=[]` publishes no views. Either way the file is only swapped in when
    complete. `incremental=False` forces the full rebuild. `keep_previous=False` keeps no
    previous version (after removing data on purpose). Callers hold the warehouse
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
        new = _update_kept(target, store, wanted, views_sql)
        updated = KEPT if new is not None else COPY
        if new is None:
            copied: list[tuple[list[str], Published]] = []

            def update(tmp: Path) -> None:
                copied.append(_build_incremental(tmp, target, store, wanted, views_sql))

            try:
                tmp = write_temporary(target, update)
                new = _Updated(tmp, *copied[0])
            except StateUnusable as exc:
                reason = str(exc)
                log.warning("%s cannot be updated by slice, rebuilding it: %s", target, reason)
        if new is not None:
            try:
                _swap_in(new, target, wanted, keep_previous=keep_previous)
            finally:
                discard_temporary(new.tmp)  # gone once renamed; removed if the rename failed
            rows = {t.name: sum(n for _, n in wanted[t.name].values()) for t in ALL_TABLES}
            return PublishResult(rows, True, "", new.replaced, check.hashed, updated)
    counts: dict[str, int] = {}

    def build(tmp: Path) -> None:
        counts.update(_build_full(tmp, store, wanted, views_sql))

    atomic_write(target, build)
    if keep_previous:
        _keep_a_copy(target)  # the version it replaced is of no use to the next publish
    else:
        kept_path(target).unlink(missing_ok=True)
    return PublishResult(counts, False, reason, files_hashed=check.hashed)


def publish(
    warehouse: Path, views_sql: list[str] | None = None, *, keep_previous: bool = True
) -> dict[str, int]:
    """Publish `usage.duckdb` (see `publish_database`); returns rows per table."""
    return publish_database(warehouse, views_sql, keep_previous=keep_previous).rows
