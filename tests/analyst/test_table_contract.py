"""One table contract (warehouse/schema.py, warehouse/derived_schema.py): the published
database, the resource names and the views derive from it."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

import warehouse.derived_schema  # noqa: F401 - registers the derived tables
from insights import quotas
from warehouse.schema import ALL_TABLES, RESOURCE_NAMES, RESOURCE_USAGE, Column, Table, sql_type


def test_published_tables_have_the_contract_columns_types_and_nullability(
    demo_warehouse: Path,
) -> None:
    con = duckdb.connect(str(demo_warehouse / "usage.duckdb"), read_only=True)
    try:
        for table in ALL_TABLES:
            rows = con.execute(
                "SELECT column_name, data_type, is_nullable, comment FROM duckdb_columns() "
                "WHERE table_name = ? ORDER BY column_index",
                [table.name],
            ).fetchall()
            expected = [
                (c.name, sql_type(c.type), c.nullable, c.description) for c in table.columns
            ]
            assert rows == expected, table.name
    finally:
        con.close()


def test_resource_names_are_the_count_columns_of_resource_usage() -> None:
    counts = [c.name for c in RESOURCE_USAGE.columns if c.type == pa.int64()]
    assert list(RESOURCE_NAMES) == counts
    assert quotas.RESOURCE_NAMES is RESOURCE_NAMES


def test_the_resource_view_unpivots_exactly_the_contract_resources(demo_warehouse: Path) -> None:
    con = duckdb.connect(str(demo_warehouse / "usage.duckdb"), read_only=True)
    try:
        shown = con.execute(
            "SELECT DISTINCT resource FROM resource_counts_over_time ORDER BY resource"
        ).fetchall()
    finally:
        con.close()
    assert [r for (r,) in shown] == sorted(RESOURCE_NAMES)


def test_a_table_with_a_doubled_column_or_an_undeclared_key_is_refused() -> None:
    column = Column("a", pa.string(), "A.")
    with pytest.raises(ValueError, match="table t: columns declared twice: a"):
        Table("t", "T.", (column, column))
    with pytest.raises(ValueError, match="key columns not declared: b"):
        Table("t", "T.", (column,), key=("b",))
