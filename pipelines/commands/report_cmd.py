"""`usage-etl report`: write the self-contained HTML usage report of the warehouse."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipelines import settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report",
        help="write a self-contained HTML report (charts per organization)",
        description=(
            "Per organization: credits in the current subscription period against the budget "
            "with the forecast band, daily credits by project, resources against limits and "
            "open alerts. One HTML file, no network needed to view it."
        ),
    )
    parser.add_argument("--warehouse", help="warehouse directory (USAGE_WAREHOUSE, ./data)")
    parser.add_argument("--out", help="output file (default: <warehouse>/report/index.html)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from pipelines.report import write_report

    warehouse = settings.warehouse_dir(args.warehouse)
    path = write_report(warehouse, Path(args.out) if args.out else None)
    print(f"wrote {path}", file=sys.stderr)
    print(path.resolve().as_uri())
    return 0
