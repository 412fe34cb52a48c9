"""The one line an error is shown as (`common.errors.one_line`): what went wrong, never the SQL
context or the caret DuckDB appends (F-o: `error: quota_alerts: ^`)."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from common.errors import one_line
from pipelines.console import short_error


def duckdb_error(sql: str) -> str:
    con = duckdb.connect()
    try:
        with pytest.raises(duckdb.Error) as caught:
            con.execute(sql)
    finally:
        con.close()
    return f"{type(caught.value).__module__}.{type(caught.value).__name__}: {caught.value}\n"


def test_a_multi_line_duckdb_error_is_shown_by_its_first_line(tmp_path: Path) -> None:
    missing = tmp_path / "snapshot-1.parquet"
    text = duckdb_error(f"SELECT *\nFROM read_parquet(['{missing}'])")
    assert len(text.strip().splitlines()) > 1 and text.strip().endswith("^")  # DuckDB's shape
    for line in (one_line(text), short_error(text)):
        assert "IOException" in line and str(missing) in line, line
    binder = duckdb_error("SELECT nope FROM range(3)")
    assert "nope" in one_line(binder) and not one_line(binder).startswith("LINE")


def test_a_traceback_is_shown_by_its_exception_line() -> None:
    trace = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad x\n'
    assert one_line(trace) == "ValueError: bad x"
    assert one_line("") == "" and short_error("") == "failed"
