"""`usage-etl query`: read-only SQL, or a ready query of docs/queries.sql, on the warehouse.

The database is opened read-only and locked down (`warehouse.readonly.connect_readonly`): no file
is read or written outside it, no extension is installed or loaded, settings cannot be changed.
`--out` is the only way to write a file. Because runs publish by swapping in a new file, a query
works (on the last published snapshot) while a run is in progress. An analyst who needs more
(other files, extensions, their own tables) opens a copy of `usage.duckdb` in DuckDB directly
(README, "Querying").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.errors import InputError, QueryError

FORMATS = ("table", "csv", "json", "parquet")
LOCKED_HINT = (
    " (usage-etl query only reads the warehouse: write results with --out FILE; for other "
    "files or extensions open a copy of usage.duckdb in DuckDB itself)"
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "query",
        help="run read-only SQL (or a ready query) against the warehouse",
        description=(
            "Run one SQL statement, or a ready query from docs/queries.sql (--list, --name), "
            "on the published warehouse, read-only. Prints a table, or CSV/JSON/Parquet."
        ),
    )
    parser.add_argument("sql", nargs="?", help='SQL, e.g. "select * from organizations"')
    parser.add_argument("--list", action="store_true", help="list the ready queries and exit")
    parser.add_argument("--name", metavar="NAME", help="run the ready query NAME (see --list)")
    parser.add_argument("--warehouse", help="warehouse directory (USAGE_WAREHOUSE, ./data)")
    parser.add_argument(
        "--format", choices=FORMATS, default=None, help="default: table, or from --out's suffix"
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        help="write the result to FILE (.csv .json .parquet; .txt: the table as text)",
    )
    parser.add_argument("--max-rows", type=int, default=200, metavar="N", help="table: rows shown")
    parser.set_defaults(handler=handle)


def output_format(fmt: str | None, out: str | None) -> str:
    if fmt:
        if fmt == "parquet" and not out:
            raise InputError("--format parquet: expected --out FILE as well")
        return fmt
    suffix = Path(out).suffix.lower().lstrip(".") if out else ""
    if suffix in ("csv", "json", "parquet"):
        return suffix
    if suffix not in ("", "txt"):
        raise InputError(
            f"--out {out}: no format for .{suffix}: expected .csv, .json, .parquet or .txt "
            "(the table as text), or --format"
        )
    return "table"


def _statement(args: argparse.Namespace) -> str:
    from pipelines import ready_queries

    if args.name and args.sql:
        raise InputError("give either SQL or --name NAME, not both")
    if args.name:
        return ready_queries.find(args.name).sql
    if not args.sql or not args.sql.strip():
        raise InputError('expected SQL, --name NAME or --list (e.g. "select * from organizations")')
    return str(args.sql)


def list_ready_queries() -> int:
    from pipelines import ready_queries

    queries = ready_queries.load()
    width = max(len(q.name) for q in queries)
    for query in queries:
        print(f"{query.name.ljust(width)}  {query.question}")
    print(f"\nrun one: usage-etl query --name {queries[0].name}", file=sys.stderr)
    return 0


def handle(args: argparse.Namespace) -> int:
    if args.list:
        return list_ready_queries()
    if args.max_rows < 1:
        raise InputError(f"--max-rows {args.max_rows}: expected 1 or more")
    fmt = output_format(args.format, args.out)
    sql = _statement(args)
    if args.out:
        out_dir = Path(args.out).expanduser().resolve().parent
        if not out_dir.is_dir():
            raise InputError(f"--out {args.out}: directory {out_dir} does not exist")

    import duckdb

    from pipelines.commands import warehouse_location
    from warehouse.readonly import connect_readonly

    warehouse = warehouse_location(args)
    con = connect_readonly(warehouse.root, warehouse.lake_config())
    try:
        try:
            statements = len(con.extract_statements(sql))
            if statements > 1:  # DuckDB would run them all and show only the last one's rows
                raise QueryError(
                    f"expected one SQL statement, got {statements}: run each with its own "
                    "usage-etl query (or combine them with WITH, UNION or a join)"
                )
            relation = con.sql(sql)
        except duckdb.PermissionException as exc:
            raise QueryError(str(exc).splitlines()[0] + LOCKED_HINT) from None
        except duckdb.Error as exc:
            raise QueryError(str(exc).splitlines()[0]) from None
        if relation is None:
            return 0
        return _emit(relation, fmt, args)
    finally:
        con.close()


def _emit(relation: object, fmt: str, args: argparse.Namespace) -> int:
    from pipelines import render

    columns = list(relation.columns)  # type: ignore[attr-defined]
    types = [str(t) for t in relation.types]  # type: ignore[attr-defined]
    if fmt == "table" and not args.out:
        rows = relation.limit(args.max_rows + 1).fetchall()  # type: ignore[attr-defined]
        total = len(rows)
        if total > args.max_rows:
            total = relation.aggregate("count(*)").fetchall()[0][0]  # type: ignore[attr-defined]
            rows = rows[: args.max_rows]
        print(render.render_table(columns, types, rows, total))
        return 0
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = relation.to_arrow_table()  # type: ignore[attr-defined]
        render.write_file_atomically(Path(args.out), lambda p: pq.write_table(table, p))
    else:
        rows = relation.fetchall()  # type: ignore[attr-defined]
        writers = {"csv": render.write_csv, "json": render.write_json}
        if not args.out:
            writers[fmt](columns, rows, sys.stdout)
            return 0

        def write(path: Path) -> None:
            with open(path, "w", encoding="utf-8", newline="") as out:
                if fmt in writers:
                    writers[fmt](columns, rows, out)
                else:
                    out.write(render.render_table(columns, types, rows) + "\n")

        render.write_file_atomically(Path(args.out), write)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0
