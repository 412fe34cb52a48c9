"""`usage-etl report`: write the HTML usage report of the warehouse (an index page plus one page
per organization, offline)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report",
        help="write the HTML report: an index of all organizations plus one page each",
        description=(
            "An index of every organization (the ones at risk first: usage against budget, "
            "forecast, open alerts) with filters and CSV export, and one page per organization "
            "(current period against budget and forecast, usage history by day/week/month, "
            "periods, projects, resources against limits, open alerts). Static files, no "
            "network needed to view them. Example: usage-etl report --out /tmp/report"
        ),
    )
    parser.add_argument("--warehouse", help="warehouse directory (USAGE_WAREHOUSE, ./data)")
    parser.add_argument(
        "--out", help="output directory (default: <warehouse>/report), replaced atomically"
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from pipelines.commands import warehouse_location
    from reports import write_report

    warehouse = warehouse_location(args)
    out = Path(args.out) if args.out else None
    path = write_report(warehouse.root, out, warehouse.lake_config())
    print(f"wrote {path.parent}", file=sys.stderr)
    print(path.resolve().as_uri())
    return 0
