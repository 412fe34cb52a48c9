"""Publishing the analysts' DuckDB file, `<warehouse>/usage.duckdb`, atomically.

The DuckDB file is rebuilt from the Parquet files (the source of truth) into a temporary file,
checkpointed, closed, fsynced and renamed over `usage.duckdb`. Before anything is built every
slice is checked against its table's manifest (`manifest.py`): a missing, unreadable, unrecorded
or changed slice stops the publish with an `IntegrityError` naming the files, and the previous
`usage.duckdb` stays as it was. Consequences:
- an analyst holding `usage.duckdb` open (read-only) keeps reading the previous, complete version
  and never blocks a run; the next connection sees the new one;
- a crash at any instant leaves the previous file in place;
- tables carry column comments from `schema.py`, so `duckdb_columns()` documents itself;
- the analyst views of `views/*.sql` (with their comments) are added for the tables that exist.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

from warehouse.files import atomic_write
from warehouse.lake import LakeConfig
from warehouse.lake import connect as lake_connect
from warehouse.manifest import IntegrityError, reconcile_warehouse
from warehouse.parquet_store import ParquetStore
from warehouse.schema import ALL_TABLES, Table, sql_type
from warehouse.views import create_views, ensure_views

DATABASE_NAME = "usage.duckdb"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def create_table(con: duckdb.DuckDBPyConnection, t: Table, source_sql: str | None) -> int:
    """Create `t` in `con` with its documented columns and fill it from `source_sql`."""
    columns = ", ".join(
        f'"{c.name}" {sql_type(c.type)}{"" if c.nullable else " NOT NULL"}' for c in t.columns
    )
    con.execute(f'CREATE TABLE "{t.name}" ({columns})')
    con.execute(f'COMMENT ON TABLE "{t.name}" IS {_quote(t.description)}')
    for c in t.columns:
        con.execute(f'COMMENT ON COLUMN "{t.name}"."{c.name}" IS {_quote(c.description)}')
    if source_sql is None:
        return 0
    names = ", ".join(f'"{c}"' for c in t.column_names)
    con.execute(f'INSERT INTO "{t.name}" ({names}) SELECT {names} FROM {source_sql}')
    row = con.execute(f'SELECT count(*) FROM "{t.name}"').fetchone()
    return int(row[0]) if row else 0


def publish(warehouse: Path, views_sql: list[str] | None = None) -> dict[str, int]:
    """Rebuild `usage.duckdb` from the Parquet files; returns rows per table.

    `views_sql` are `CREATE VIEW` statements added after the tables (inside the transaction:
    one failing fails the publish). With `views_sql=None` (the default) the documented analyst
    views of `warehouse.views` are created for the tables that exist, each on its own after the
    tables are committed: a view that cannot be built is logged and skipped rather than failing
    the run. `views_sql=[]` publishes no views. Either way the file is only swapped in when
    complete. Callers hold the warehouse `writer_lock` (the manifests are settled here).
    """
    warehouse = Path(warehouse)
    store = ParquetStore(warehouse)
    counts: dict[str, int] = {}
    check = reconcile_warehouse(store.root)
    if check.bad:
        raise IntegrityError(check.bad, f"{warehouse / DATABASE_NAME} not published")

    def build(tmp: Path) -> None:
        con = duckdb.connect(str(tmp))
        try:
            con.execute("SET TimeZone='UTC'")
            con.execute("BEGIN")
            for t in ALL_TABLES:
                counts[t.name] = create_table(con, t, store.scan_sql(t))
            for statement in views_sql or []:
                con.execute(statement)
            con.execute("COMMIT")
            if views_sql is None:
                create_views(con, strict=False)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        wal = Path(str(tmp) + ".wal")
        if wal.exists():  # defensive: a checkpointed, closed database leaves no WAL
            os.remove(wal)

    atomic_write(warehouse / DATABASE_NAME, build)
    return counts


# Readers may only read the database: no file reads or writes outside it, no extension
# downloads or autoloading, and settings locked so that SQL cannot turn any of this back on.
READONLY_CONFIG: dict[str, str | bool] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


def _connect_lake_readonly(lake: LakeConfig) -> duckdb.DuckDBPyConnection:
    con = lake_connect(lake, read_only=True)
    try:
        ensure_views(con)
        literal = lake.data_path.replace("'", "''")
        con.execute(f"SET allowed_directories = ['{literal}']")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def connect_readonly(warehouse: Path) -> duckdb.DuckDBPyConnection:
    """A locked-down, read-only connection to the published database.

    The file is attached read-only to an in-memory database (so a reader with other settings in
    the same process, e.g. an analyst's session, does not conflict), then external access is
    disabled and the configuration locked: `COPY ... TO`, `read_csv(...)`, `ATTACH`, `INSTALL`
    and `SET` fail. Raises `WarehouseError` (a user error) when nothing has been published yet.

    In lake mode (`USAGE_LAKE_CATALOG` / `USAGE_LAKE_DATA` set) it is the shared lake instead,
    attached read-only with the analyst views available (no local warehouse is needed), and
    locked down the same way except that the lake's data path stays readable.
    """
    from pipelines.errors import WarehouseError

    lake = LakeConfig.from_env()
    if lake is not None:
        return _connect_lake_readonly(lake)
    path = Path(warehouse) / DATABASE_NAME
    if not path.exists():
        raise WarehouseError(
            f"no warehouse at {path}: run `usage-etl run` first (or pass --warehouse)"
        )
    con = duckdb.connect(":memory:", config=dict(READONLY_CONFIG))
    try:
        literal = str(path).replace("'", "''")
        con.execute(f"ATTACH '{literal}' AS usage (READ_ONLY)")
        con.execute("USE usage")
        con.execute("SET enable_external_access = false")
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con
