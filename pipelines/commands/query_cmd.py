"""`usage-etl query "SQL"`: run read-only SQL against the published warehouse.

The database is opened read-only; because runs publish by swapping in a new file, a query works
(on the last published snapshot) while a run is in progress.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import duckdb
from tabulate import tabulate

from pipelines import settings
from warehouse.publish import connect_readonly

FORMATS = ("table", "csv", "parquet")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("query", help="run read-only SQL against the warehouse")
    parser.add_argument("sql", help='SQL, e.g. "select * from organizations"')
    parser.add_argument("--warehouse", help="warehouse directory (USAGE_WAREHOUSE, ./data)")
    parser.add_argument("--format", choices=FORMATS, default=None, help="default: table")
    parser.add_argument("--out", help="write to this file (format from its suffix if not given)")
    parser.add_argument("--max-rows", type=int, default=200, help="table output: rows shown")
    parser.set_defaults(handler=handle)


def output_format(fmt: str | None, out: str | None) -> str:
    if fmt:
        if fmt == "parquet" and not out:
            raise ValueError("--format parquet: expected --out FILE as well")
        return fmt
    if out and Path(out).suffix.lower() in (".csv", ".parquet"):
        return Path(out).suffix.lower().lstrip(".")
    return "table"


def handle(args: argparse.Namespace) -> int:
    fmt = output_format(args.format, args.out)
    con = connect_readonly(settings.warehouse_dir(args.warehouse))
    try:
        try:
            relation = con.sql(args.sql)
        except duckdb.Error as exc:
            raise ValueError(str(exc).splitlines()[0]) from None
        if relation is None:
            return 0
        if fmt == "parquet":
            relation.write_parquet(args.out)
            print(f"wrote {args.out}", file=sys.stderr)
            return 0
        if fmt == "csv":
            if args.out:
                relation.write_csv(args.out)
                print(f"wrote {args.out}", file=sys.stderr)
            else:
                relation.to_df().to_csv(sys.stdout, index=False)
            return 0
        frame = relation.limit(args.max_rows + 1).to_df()
        shown = frame.head(args.max_rows)
        print(tabulate(shown, headers="keys", tablefmt="simple", showindex=False, floatfmt=".4f"))
        if len(frame) > args.max_rows:
            print(f"... more rows (showing {args.max_rows}; use --max-rows or --out)")
        else:
            print(f"({len(frame)} rows)")
        return 0
    finally:
        con.close()
