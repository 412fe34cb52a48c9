"""Reading the published warehouse: a locked-down, read-only connection (`connect_readonly`) to
`<warehouse>/usage.duckdb`, or to the shared lake, and the memory cap its queries (and the
builds) run under (`cap_memory`).

Kept apart from publishing (publish.py, which re-exports these names) so that a reader, an
analyst's `usage-etl query` above all, imports only DuckDB: the lake's module (and pandas with
it) is imported only when a lake is configured.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

if TYPE_CHECKING:
    from warehouse.lake import LakeConfig

DATABASE_NAME = "usage.duckdb"

# Readers may only read the database: no file reads or writes outside it, no extension
# downloads or autoloading, and settings locked so that SQL cannot turn any of this back on.
READONLY_CONFIG: dict[str, str | bool] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


def cap_memory(con: duckdb.DuckDBPyConnection, memory_limit: str, spill: Path | str) -> None:
    """Cap what `con` holds in memory at `memory_limit` (DuckDB's default is 80% of the
    machine); beyond it DuckDB evicts cached blocks and spills what it cannot evict to `spill`
    (an in-memory database would otherwise spill to `./.tmp`)."""
    con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET temp_directory = ?", [str(spill)])


def _bound_memory(con: duckdb.DuckDBPyConnection, memory_limit: str | None) -> None:
    """Cap the connection's memory, spilling to a directory of this process under the system's
    temporary directory."""
    if memory_limit is not None:
        cap_memory(
            con, memory_limit, Path(tempfile.gettempdir()) / f"usage-etl-spill-{os.getpid()}"
        )


def _connect_lake_readonly(
    lake: LakeConfig, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    from warehouse.lake import connect as lake_connect
    from warehouse.views import ensure_views

    con = lake_connect(lake, read_only=True)
    try:
        ensure_views(con)
        _bound_memory(con, memory_limit)
        literal = lake.data_path.replace("'", "''")
        con.execute(f"SET allowed_directories = ['{literal}']")
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con


def connect_readonly(
    warehouse: Path, lake: LakeConfig | None = None, memory_limit: str | None = None
) -> duckdb.DuckDBPyConnection:
    """A locked-down, read-only connection to the published database.

    The file is attached read-only to an in-memory database (so a reader with other settings in
    the same process, e.g. an analyst's session, does not conflict), then external access is
    disabled and the configuration locked: `COPY ... TO`, `read_csv(...)`, `ATTACH`, `INSTALL`
    and `SET` fail. Raises `WarehouseError` (a user error) when nothing has been published yet.

    Given a `lake` (the `warehouse` resource's `lake_config()`), it is the shared lake instead,
    attached read-only with the analyst views available (no local warehouse is needed), and
    locked down the same way except that the lake's data path stays readable.

    `memory_limit` (a DuckDB size such as '512MB') caps what its queries hold in memory; they
    spill to disk beyond it. Default: DuckDB's own (80% of the machine's memory).
    """
    from common.errors import WarehouseError

    if lake is not None:
        return _connect_lake_readonly(lake, memory_limit)
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
        _bound_memory(con, memory_limit)
        con.execute("SET enable_external_access = false")
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET lock_configuration = true")
    except BaseException:
        con.close()
        raise
    return con
