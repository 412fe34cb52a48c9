"""The Parquet side of the warehouse: one directory a table under `<warehouse>/parquet/`.

Layout (readable by any engine; hive-style `key=value` directories where a table is partitioned):
- unpartitioned tables: `parquet/<table>/data.parquet`, replaced whole;
- `credit_usage`: `parquet/credit_usage/interval=<day|month>/month=<YYYY-MM>/data.parquet`, one
  file per interval and calendar month of `start_date`, replaced whole when that slice is reloaded;
- `resource_usage`: `parquet/resource_usage/observed_date=<YYYY-MM-DD>/<stamp>.parquet`, one file
  per snapshot, appended.
Partition values live in the directory names only (a column named like a partition key is taken
out of the file and put back on read). Every file is written atomically (see `files.py`) and
recorded in its table's manifest (`parquet/<table>/_manifest.json`, see `manifest.py`) in the same
step: callers hold the warehouse `writer_lock` while writing. Reading a table whose older files
lack a column added to the contract since gives nulls for it.

Where a partition key is not a column, `PARTITION_EXPRESSIONS` says how it follows from a row
(`month` is the calendar month of `start_date`); `partition_predicate` turns a partition's values
into the SQL condition that finds its rows in an engine that holds rows without their file names
(the published DuckDB file, updated by partition in `publish.py`).
"""

from __future__ import annotations

import os
import threading
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from common.errors import SchemaError
from warehouse.files import commit_temporary, discard_temporary, write_temporary
from warehouse.manifest import CheckResult, TableManifest, record_for
from warehouse.schema import Table

# How a partition key that is not a column follows from a row of its table: the timestamp
# column whose calendar month (or day) the key's value is.
PARTITION_EXPRESSIONS: dict[tuple[str, str], tuple[str, str]] = {
    ("credit_usage", "month"): ("start_date", "month"),
    ("resource_usage", "observed_date"): ("observed_at", "day"),
    ("project_usage_trends", "month"): ("date", "month"),
}


# The in-memory DuckDB database this process reads Parquet with, and the process it belongs to
# (a forked child opens its own). A cursor on it is a connection of its own (safe in its thread)
# and costs ~0.4 ms of CPU, where a new database (`duckdb.connect()`) costs ~20 ms: a run reads
# slices about twenty times. It keeps no file contents between reads (as a new database would
# not): every read sees the files as they are.
_reading_database: tuple[int, duckdb.DuckDBPyConnection] | None = None
_reading_database_lock = threading.Lock()


def _reading_cursor() -> duckdb.DuckDBPyConnection:
    """A new connection (close it after use) to this process's in-memory reading database."""
    global _reading_database
    with _reading_database_lock:
        if _reading_database is None or _reading_database[0] != os.getpid():
            config = {"enable_external_file_cache": False}
            _reading_database = (os.getpid(), duckdb.connect(config=config))
        return _reading_database[1].cursor()


def _period(value: str, unit: str) -> tuple[datetime, datetime] | None:
    """[start, end) of the calendar month `YYYY-MM` or day `YYYY-MM-DD`; None if malformed."""
    try:
        if unit == "month":
            start = datetime.strptime(value, "%Y-%m")
            y, m = (start.year, start.month + 1) if start.month < 12 else (start.year + 1, 1)
            return start, datetime(y, m, 1)
        start = datetime.strptime(value, "%Y-%m-%d")
        return start, start + timedelta(days=1)
    except ValueError:
        return None


def partition_predicate(t: Table, values: dict[str, str]) -> tuple[str, list[object]] | None:
    """`(SQL condition, parameters)` selecting the rows of one partition of `t`, or None when a
    partition key neither is a column nor has a `PARTITION_EXPRESSIONS` entry. Month and day
    keys become ranges of their timestamp column, which an engine answers from its min/max
    statistics instead of evaluating every row."""
    if set(values) != set(t.partition_by):
        return None
    terms: list[str] = []
    params: list[object] = []
    for key in t.partition_by:
        if key in t.column_names:
            terms.append(f'"{key}" = ?')
            params.append(values[key])
            continue
        column, unit = PARTITION_EXPRESSIONS.get((t.name, key), ("", ""))
        bounds = _period(values[key], unit) if column in t.column_names else None
        if bounds is None:
            return None
        terms.append(f'"{column}" >= ? AND "{column}" < ?')
        params.extend(bounds)
    return " AND ".join(terms), params


def to_arrow(t: Table, frame: pd.DataFrame) -> pa.Table:
    """Coerce `frame` to the table's Arrow schema: column order, types, nullability.

    Missing nullable columns become nulls; a missing or null non-nullable column is an error that
    names the table and the column.
    """
    frame = frame.copy()
    for column in t.columns:
        if column.name not in frame.columns:
            if not column.nullable:
                raise SchemaError(f"table {t.name}: required column {column.name!r} is missing")
            frame[column.name] = None
    frame = frame[t.column_names]
    try:
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
        arrow = _cast(t, arrow)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SchemaError(f"table {t.name}: {first_line}") from exc
    for column in t.columns:
        if not column.nullable and arrow.column(column.name).null_count:
            raise SchemaError(f"table {t.name}: column {column.name!r} has nulls; expected none")
    return arrow


@cache
def _empty_arrow(t: Table) -> pa.Table:
    """The table's Arrow schema with no rows, made once per table (Arrow tables are immutable;
    every run asks for several, and coercing an empty frame costs milliseconds each time)."""
    return to_arrow(t, pd.DataFrame(columns=t.column_names))


def _cast(t: Table, arrow: pa.Table) -> pa.Table:
    columns = []
    for column in t.columns:
        values = arrow.column(column.name)
        if pa.types.is_timestamp(values.type) and values.type.tz is not None:
            values = values.cast(pa.timestamp(values.type.unit))
        if pa.types.is_null(values.type):
            values = pa.nulls(len(values), type=column.type)
        columns.append(values.cast(column.type))
    return pa.Table.from_arrays(columns, schema=t.arrow_schema())


def _write_parquet(arrow: pa.Table, path: Path) -> None:
    pq.write_table(arrow, path, compression="zstd")


class ParquetStore:
    """Reads and writes the Parquet files of a warehouse directory."""

    def __init__(self, warehouse: Path) -> None:
        self.root = Path(warehouse) / "parquet"

    def table_dir(self, t: Table) -> Path:
        return self.root / t.name

    def partition_path(self, t: Table, partition: dict[str, str], filename: str) -> Path:
        missing = [k for k in t.partition_by if k not in partition]
        if missing:
            raise SchemaError(f"table {t.name}: partition value(s) {missing} not given")
        path = self.table_dir(t)
        for key in t.partition_by:
            value = str(partition[key])
            if not value or "/" in value or value.startswith("."):
                raise SchemaError(f"table {t.name}: bad partition value {key}={value!r}")
            path = path / f"{key}={value}"
        return path / filename

    def manifest(self, t: Table) -> TableManifest:
        return TableManifest(self.table_dir(t), t.name)

    def check(self, t: Table) -> CheckResult:
        """The table's files against its manifest (read only; see `TableManifest.check`)."""
        return self.manifest(t).check()

    def write_files(self, t: Table, files: list[tuple[Path, pd.DataFrame]]) -> int:
        """Replace (or create) several files of `t` as one recorded change; returns rows written.

        Each file is written to a temporary file, the records are staged in the manifest, the
        files are renamed into place, and the records committed (see `manifest.py`).
        """
        written: list[tuple[Path, Path]] = []
        records = {}
        rows = 0
        try:
            for target, frame in files:
                arrow = to_arrow(t, frame)
                stored = arrow.drop_columns([k for k in t.partition_by if k in arrow.column_names])
                tmp = write_temporary(
                    target, lambda path, table=stored: _write_parquet(table, path)
                )
                written.append((tmp, target))
                records[target] = record_for(stored, tmp)
                rows += arrow.num_rows
            manifest = self.manifest(t)
            manifest.stage(records)
            for tmp, target in written:
                commit_temporary(tmp, target)
        finally:
            for tmp, _ in written:
                discard_temporary(tmp)
        manifest.commit(written=[target for _, target in written])
        return rows

    def _write(self, t: Table, frame: pd.DataFrame, target: Path) -> int:
        return self.write_files(t, [(target, frame)])

    def replace_table(self, t: Table, frame: pd.DataFrame) -> int:
        """Replace an unpartitioned table whole; returns the row count written."""
        if t.partition_by:
            raise SchemaError(f"table {t.name} is partitioned; use replace_partition")
        return self._write(t, frame, self.table_dir(t) / "data.parquet")

    def replace_partition(self, t: Table, partition: dict[str, str], frame: pd.DataFrame) -> int:
        """Replace exactly one partition's file (an empty frame leaves an empty, loaded slice)."""
        return self._write(t, frame, self.partition_path(t, partition, "data.parquet"))

    def replace_partitions(
        self, t: Table, partitions: list[tuple[dict[str, str], pd.DataFrame]]
    ) -> int:
        """Replace several partitions' files as one recorded change."""
        files = [(self.partition_path(t, p, "data.parquet"), f) for p, f in partitions]
        return self.write_files(t, files)

    def append_file(
        self, t: Table, partition: dict[str, str], filename: str, frame: pd.DataFrame
    ) -> int:
        """Add one more file to a partition (snapshot tables such as resource_usage)."""
        target = self.partition_path(t, partition, filename)
        if target.exists():
            raise SchemaError(f"table {t.name}: {target.name} exists already")
        return self._write(t, frame, target)

    def read_file(self, t: Table, path: Path) -> pd.DataFrame:
        """One file of `t` as a frame with the table's columns (partition values put back)."""
        return self._read_sql(t, self.scan_files_sql(t, [Path(path)]))

    def files(self, t: Table) -> list[Path]:
        directory = self.table_dir(t)
        if not directory.exists():
            return []
        return sorted(p for p in directory.rglob("*.parquet") if not p.name.startswith("."))

    def scan_sql(self, t: Table) -> str | None:
        """A DuckDB table expression over the table's files, None when it has none."""
        files = self.files(t)
        if not files:
            return None
        return self.scan_files_sql(t, files)

    def scan_files_sql(self, t: Table, files: list[Path]) -> str:
        """A DuckDB table expression over some files of `t` (the table's columns, in order)."""
        listing = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
        hive = "true" if t.partition_by else "false"
        present: set[str] = set(t.partition_by)
        for path in files:
            present.update(pq.read_schema(path).names)
        columns = ", ".join(
            f'"{c.name}"' if c.name in present else f'NULL AS "{c.name}"' for c in t.columns
        )
        return (
            f"(SELECT {columns} FROM read_parquet([{listing}], hive_partitioning={hive}, "
            "union_by_name=true))"
        )

    @staticmethod
    def empty(t: Table) -> pd.DataFrame:
        """A frame with the table's columns and no rows (a new frame each call)."""
        return _empty_arrow(t).to_pandas()

    def read(self, t: Table, where: str = "", params: list[object] | None = None) -> pd.DataFrame:
        """The table as a pandas frame (optionally filtered by a SQL `where` clause)."""
        return self._read_sql(t, self.scan_sql(t), where, params)

    def _read_sql(
        self, t: Table, sql: str | None, where: str = "", params: list[object] | None = None
    ) -> pd.DataFrame:
        if sql is None:
            return self.empty(t)
        query = f"SELECT * FROM {sql} AS t" + (f" WHERE {where}" if where else "")
        con = _reading_cursor()
        try:
            con.execute("SET TimeZone='UTC'")
            arrow = con.sql(query, params=params or None).to_arrow_table()
        finally:
            con.close()
        return _cast(t, arrow).to_pandas()
