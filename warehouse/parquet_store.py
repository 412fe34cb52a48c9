"""The Parquet side of the warehouse: one directory a table under `<warehouse>/parquet/`.

Layout (readable by any engine; hive-style `key=value` directories where a table is partitioned):
- unpartitioned tables: `parquet/<table>/data.parquet`, replaced whole;
- `credit_usage`: `parquet/credit_usage/interval=<day|month>/month=<YYYY-MM>/data.parquet`, one
  file per interval and calendar month of `start_date`, replaced whole when that slice is reloaded;
- `resource_usage`: `parquet/resource_usage/observed_date=<YYYY-MM-DD>/<stamp>.parquet`, one file
  per snapshot, appended.
Partition values live in the directory names only (a column named like a partition key is taken
out of the file and put back on read). Every file is written atomically (see `files.py`).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.files import atomic_write
from warehouse.schema import Table


class SchemaError(ValueError):
    """A frame does not fit its table's contract."""


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

    def _write(self, t: Table, frame: pd.DataFrame, target: Path) -> int:
        arrow = to_arrow(t, frame)
        stored = arrow.drop_columns([k for k in t.partition_by if k in arrow.column_names])
        atomic_write(target, lambda tmp: pq.write_table(stored, tmp, compression="zstd"))
        return arrow.num_rows

    def replace_table(self, t: Table, frame: pd.DataFrame) -> int:
        """Replace an unpartitioned table whole; returns the row count written."""
        if t.partition_by:
            raise SchemaError(f"table {t.name} is partitioned; use replace_partition")
        return self._write(t, frame, self.table_dir(t) / "data.parquet")

    def replace_partition(self, t: Table, partition: dict[str, str], frame: pd.DataFrame) -> int:
        """Replace exactly one partition's file (an empty frame leaves an empty, loaded slice)."""
        return self._write(t, frame, self.partition_path(t, partition, "data.parquet"))

    def append_file(
        self, t: Table, partition: dict[str, str], filename: str, frame: pd.DataFrame
    ) -> int:
        """Add one more file to a partition (snapshot tables such as resource_usage)."""
        target = self.partition_path(t, partition, filename)
        if target.exists():
            raise SchemaError(f"table {t.name}: {target.name} exists already")
        return self._write(t, frame, target)

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
        listing = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
        hive = "true" if t.partition_by else "false"
        columns = ", ".join(f'"{c}"' for c in t.column_names)
        return (
            f"(SELECT {columns} FROM read_parquet([{listing}], hive_partitioning={hive}, "
            "union_by_name=true))"
        )

    def read(self, t: Table, where: str = "", params: list[object] | None = None) -> pd.DataFrame:
        """The table as a pandas frame (optionally filtered by a SQL `where` clause)."""
        sql = self.scan_sql(t)
        if sql is None:
            return to_arrow(t, pd.DataFrame(columns=t.column_names)).to_pandas()
        query = f"SELECT * FROM {sql} AS t" + (f" WHERE {where}" if where else "")
        con = duckdb.connect()
        try:
            con.execute("SET TimeZone='UTC'")
            arrow = con.sql(query, params=params or None).to_arrow_table()
        finally:
            con.close()
        return _cast(t, arrow).to_pandas()
