"""`usage-etl query`: readable tables, CSV on stdout, Parquet files, and reads during a publish."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from pipelines.cli import main
from warehouse.publish import publish

SQL = "select organization_name, credits from period_usage_by_organization order by 1, 2"


def test_table_output_is_readable(demo_warehouse: Path, capsys) -> None:
    assert main(["query", "--warehouse", str(demo_warehouse), SQL]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].strip("│ ").split() == ["organization_name", "│", "credits"]
    assert out[2].strip("│ ").split() == ["varchar", "│", "double"]
    assert any(line.startswith("│ acme-analytics") for line in out)
    assert out[-1].endswith(" rows")


def test_csv_to_stdout(demo_warehouse: Path, capsys) -> None:
    assert main(["query", "--warehouse", str(demo_warehouse), "--format", "csv", SQL]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(frame.columns) == ["organization_name", "credits"]
    assert len(frame) >= 6 and frame["credits"].dtype.kind == "f"


def test_parquet_out(demo_warehouse: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.parquet"
    assert main(["query", "--warehouse", str(demo_warehouse), "--out", str(out), SQL]) == 0
    table = pq.read_table(out)
    assert table.column_names == ["organization_name", "credits"]
    assert table.num_rows >= 6


def test_query_works_while_the_database_is_republished(demo_warehouse_copy: Path, capsys) -> None:
    """Readers open the last published file; publishing swaps in a new one without blocking.

    The publisher keeps republishing until the reader has run its queries, so they overlap
    whatever either side's speed (a first query that imports Dagster takes longer than a few
    publishes of the demo)."""
    demo_warehouse = demo_warehouse_copy  # republished here
    errors: list[BaseException] = []
    reading_done = threading.Event()
    published: list[int] = []

    def republish() -> None:
        try:
            while len(published) < 3 or not reading_done.is_set():
                publish(demo_warehouse)
                published.append(1)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=republish)
    thread.start()
    codes = []
    try:
        while len(codes) < 3:
            codes.append(
                main(
                    [
                        "query",
                        "--warehouse",
                        str(demo_warehouse),
                        "select count(*) from credit_usage",
                    ]
                )
            )
    finally:
        reading_done.set()
        thread.join()
    assert errors == []
    assert set(codes) == {0}, capsys.readouterr().err
    assert len(published) >= 3
