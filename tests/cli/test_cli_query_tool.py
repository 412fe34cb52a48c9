"""`usage-etl query`: ready queries, DuckDB-like rendering, exports, a tool that only reads.

The lockdown cases reproduce issue 13.5 as written: `COPY ... TO` over a warehouse slice,
`read_csv('/etc/passwd')`, `INSTALL httpfs`: each is one line and exit 2, and nothing is
written. `--out` still writes CSV, JSON and Parquet.

The console script runs as a subprocess for an unknown query name (exit 2 and one line, end to
end) and to show that a query never imports Dagster (each query an analyst runs is a new
interpreter: resolving the warehouse through the Dagster resource cost seconds); the other
cases call the CLI's `main()` in process with the same arguments and environment
(`usage_etl_in_process`): the same exit code and lines, without a new interpreter (and its
imports of DuckDB and pandas) for each.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipelines import ready_queries
from pipelines.cli import main
from pipelines.render import format_value, render_table
from tests.services.cli import (
    assert_one_line_error,
    clean_env,
    imported_modules,
    usage_etl,
    usage_etl_in_process,
    without_import_times,
)


def test_list_shows_every_ready_query_with_its_question(capsys) -> None:
    assert main(["query", "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = [q.name for q in ready_queries.load()]
    assert len(names) >= 10
    assert [line.split()[0] for line in out] == names
    assert all(len(line.split()) > 3 for line in out), "each name comes with its question"


def test_unknown_ready_query_names_the_known_ones() -> None:
    done = usage_etl("query", "--name", "no_such_query")
    assert_one_line_error(done, 2, "no_such_query", "top_projects_this_period")


def test_every_ready_query_runs_by_name(demo_warehouse: Path, capsys) -> None:
    for query in ready_queries.load():
        code = main(["query", "--warehouse", str(demo_warehouse), "--name", query.name])
        captured = capsys.readouterr()
        assert code == 0, (query.name, captured.err)
        assert captured.out.splitlines()[-1].endswith(("rows", "row")), query.name


def test_table_renders_like_duckdb(empty_warehouse: Path, capsys) -> None:
    sql = (
        "select 'a' as name, 1234567 as n, 1234.5::double as x, 0.000123::double as small, "
        "NULL::double as missing, DATE '2026-11-01' as day, "
        "TIMESTAMP '2026-11-01 00:00:00' as midnight, TIMESTAMP '2026-11-01 13:45:00' as t"
    )
    assert main(["query", "--warehouse", str(empty_warehouse), sql]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("│ a "))
    cells = [c.strip() for c in row.strip("│").split("│")]
    assert cells == [
        "a",
        "1,234,567",
        "1,234.5",
        "0.000123",
        "NULL",
        "2026-11-01",
        "2026-11-01",
        "2026-11-01 13:45:00",
    ]
    assert "nan" not in out and "00:00:00" not in out
    assert out.splitlines()[-1] == "1 row"


def test_long_results_say_how_many_rows_there_are() -> None:
    text = render_table(["n"], ["BIGINT"], [(i,) for i in range(3)], total=12345)
    assert text.splitlines()[-1].startswith("12,345 rows (3 shown")
    assert format_value(2.0) == "2" and format_value(-0.5) == "-0.5"


def test_csv_and_json_on_stdout(empty_warehouse: Path, capsys) -> None:
    sql = "select 'x,y' as label, 1.5::double as v, NULL::int as n"
    assert main(["query", "--warehouse", str(empty_warehouse), "--format", "csv", sql]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows == [["label", "v", "n"], ["x,y", "1.5", ""]]
    assert main(["query", "--warehouse", str(empty_warehouse), "--format", "json", sql]) == 0
    assert json.loads(capsys.readouterr().out) == [{"label": "x,y", "v": 1.5, "n": None}]


@pytest.mark.parametrize("suffix", ["csv", "json", "parquet"])
def test_out_writes_the_file_in_the_format_of_its_suffix(
    demo_warehouse: Path, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"top.{suffix}"
    args = ["--warehouse", str(demo_warehouse), "--name", "top_projects_this_period"]
    code = main(["query", *args, "--out", str(out)])
    assert code == 0
    if suffix == "parquet":
        table = pq.read_table(out)
        assert table.num_rows > 0 and "project_name" in table.column_names
    elif suffix == "json":
        records = json.loads(out.read_text())
        assert records and "project_name" in records[0]
    else:
        assert out.read_text().splitlines()[0].startswith("organization_name,project_name")
    assert [p.name for p in tmp_path.iterdir()] == [out.name], "no temporary file left"
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask, "readable as any file the user writes"


def test_out_with_a_suffix_of_no_known_format_is_refused(
    empty_warehouse: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "result.xlsx"
    code = main(["query", "--warehouse", str(empty_warehouse), "--out", str(out), "select 1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert ".xlsx" in err and ".csv" in err and not out.exists()
    assert (
        main(
            [
                "query",
                "--warehouse",
                str(empty_warehouse),
                "--out",
                str(out.with_suffix(".txt")),
                "select 42 as x",
            ]
        )
        == 0
    )
    assert "42" in out.with_suffix(".txt").read_text()


def _slice(warehouse: Path) -> Path:
    return next((warehouse / "parquet" / "credit_usage").rglob("*.parquet"))


@pytest.mark.parametrize(
    ("sql", "words"),
    [
        ("COPY (SELECT 42 AS x) TO '{target}'", ["Permission Error", "--out"]),
        ("COPY (SELECT 42 AS x) TO '{slice}' (FORMAT parquet)", ["Permission Error"]),
        ("SELECT * FROM read_csv('/etc/passwd')", ["Permission Error", "/etc/passwd"]),
        ("SELECT * FROM '{slice}'", ["Permission Error"]),
        ("INSTALL httpfs", ["Permission Error"]),
        ("LOAD httpfs", ["disabled"]),
        ("SET enable_external_access = true", ["locked"]),
        ("ATTACH '{target}' AS other", ["Permission Error"]),
    ],
)
def test_the_query_tool_only_reads(
    demo_warehouse: Path, tmp_path: Path, sql: str, words: list[str]
) -> None:
    slice_file = _slice(demo_warehouse)
    before = slice_file.read_bytes()
    target = tmp_path / "leak.csv"
    statement = sql.format(target=target, slice=slice_file)
    done = usage_etl_in_process("query", "--warehouse", str(demo_warehouse), statement)
    assert_one_line_error(done, 2, *words)
    assert not target.exists()
    assert slice_file.read_bytes() == before, "a warehouse slice was overwritten"


def test_errors_in_sql_are_one_line(empty_warehouse: Path) -> None:
    done = usage_etl_in_process(
        "query", "--warehouse", str(empty_warehouse), "select * from nowhere"
    )
    assert_one_line_error(done, 2, "nowhere")


def test_several_statements_are_refused_before_any_runs(empty_warehouse: Path) -> None:
    """DuckDB runs every statement and returns the last one's rows: the first ones would run
    unseen. One statement (a trailing `;` is fine), else one line, exit 2, nothing run."""
    for sql in ("select 1; select 2", "select sleep_ms(5000); select 2;"):
        done = usage_etl_in_process("query", "--warehouse", str(empty_warehouse), sql)
        assert_one_line_error(done, 2, "expected one SQL statement, got 2")
    done = usage_etl_in_process("query", "--warehouse", str(empty_warehouse), "select 41 + 1;")
    assert done.code == 0 and "42" in done.out, done


def test_no_warehouse_yet_is_one_line(tmp_path: Path) -> None:
    done = usage_etl_in_process("query", "--warehouse", str(tmp_path), "select 1")
    assert_one_line_error(done, 2, "usage-etl run")


@pytest.mark.parametrize("lake", [False, True], ids=["warehouse", "lake-settings"])
def test_a_query_does_not_import_dagster(empty_warehouse: Path, lake: bool) -> None:
    """Where the warehouse and the lake are is resolved without Dagster (warehouse/location.py):
    an answered query (which needs no pandas either), and a lake half-configured in the
    environment (the same one-line error as ever, without the catalog's password)."""
    password = "pw-never-shown-62"
    extra = {"PYTHONPROFILEIMPORTTIME": "1"}
    if lake:
        extra["USAGE_LAKE_CATALOG"] = f"postgresql://lake:{password}@127.0.0.1:1/lake"
    sql = "select count(*) as n from organizations"
    done = usage_etl(
        "query", "--warehouse", str(empty_warehouse), "--format", "csv", sql, env=clean_env(**extra)
    )
    imported = imported_modules(done.err)
    assert "duckdb" in imported, "the import profile was not read"
    assert not {name for name in imported if name.split(".")[0] == "dagster"}
    errors = without_import_times(done.err).splitlines()
    if lake:
        assert done.code == 2 and done.out == ""
        assert errors == [
            "usage-etl query: USAGE_LAKE_CATALOG (--lake-catalog) is set but USAGE_LAKE_DATA "
            "(--lake-data) is not: expected an s3:// URL or a directory for the lake's data files"
        ]
        assert password not in done.err
    else:
        assert done.code == 0, errors
        assert done.out.splitlines() == ["n", "0"]
        assert "pandas" not in imported, "only the lake needs pandas (warehouse/readonly.py)"
