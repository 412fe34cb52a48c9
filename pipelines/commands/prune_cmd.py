"""`usage-etl prune`: apply the retention policy to the warehouse (and optionally run history),
and drop lost or damaged `resource_usage` snapshots.

Keeps every `resource_usage` snapshot of the last `--keep-days` days and the last snapshot of each
earlier day; `--drop-damaged` removes damaged snapshots that a later intact snapshot of the same
day supersedes (`--drop-damaged all`: also those holding a day's last observation, said per day);
never touches the other tables; republishes `usage.duckdb`. Exit 1 when damaged snapshots remain
(or the database could not be republished). See `pipelines/retention.py` and docs/operations.md.
"""

from __future__ import annotations

import argparse
import sys

from common import settings
from common.errors import InputError, WarehouseError

MAX_KEEP_DAYS = 36_500  # a hundred years: "keep everything", still a valid date arithmetic


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "prune",
        help="thin out old resource_usage snapshots to one a day (retention)",
        description=(
            "Remove raw resource_usage snapshot files older than --keep-days days, keeping the "
            "latest snapshot of each older day, and/or (--drop-damaged) snapshot files that are "
            "missing, unreadable or differ from their manifest record, then republish "
            "usage.duckdb. credit_usage, organizations and organization_users are never "
            "touched. Runs under the warehouse writer lock, so it waits for a running pipeline "
            "to finish writing. Exit 1 when damaged snapshots remain."
        ),
        epilog=(
            "example: usage-etl prune --keep-days 30; after a lost snapshot: usage-etl prune "
            "--drop-damaged --dry-run, then without --dry-run"
        ),
    )
    parser.add_argument(
        "--keep-days",
        type=int,
        metavar="N",
        help="keep every snapshot of the last N days (0: only today's)",
    )
    parser.add_argument(
        "--drop-damaged",
        nargs="?",
        const="superseded",
        choices=("superseded", "all"),
        metavar="superseded|all",
        help=(
            "drop damaged snapshots (every file is hashed first: an intact one is never "
            "dropped): those a later intact snapshot of the same day supersedes (default), or "
            "`all`, including one holding a day's last observation of some organization"
        ),
    )
    parser.add_argument("--warehouse", help="warehouse directory (USAGE_WAREHOUSE, ./data)")
    parser.add_argument("--dry-run", action="store_true", help="only report what would be removed")
    parser.add_argument(
        "--dagster-history",
        action="store_true",
        help=(
            "also delete finished Dagster runs (and their event logs) created more than N days "
            "ago (N x 24 hours before now) from the instance at DAGSTER_HOME (default "
            "<warehouse>/dagster), after marking failed the runs a killed usage-etl run left "
            "started"
        ),
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    if args.keep_days is None and (args.drop_damaged is None or args.dagster_history):
        needs = "--dagster-history needs" if args.dagster_history else "expected"
        raise InputError(f"{needs} --keep-days N (or only --drop-damaged)")
    if args.keep_days is not None and not 0 <= args.keep_days <= MAX_KEEP_DAYS:
        raise InputError(f"--keep-days {args.keep_days}: expected 0 to {MAX_KEEP_DAYS:,} days")
    warehouse = settings.warehouse_dir(args.warehouse)
    if warehouse.exists() and not warehouse.is_dir():
        raise WarehouseError(f"warehouse {warehouse}: is a file; expected a directory")
    if not (warehouse / "parquet").is_dir():
        raise WarehouseError(f"no warehouse at {warehouse}: nothing to prune")
    if not args.dry_run:
        settings.writable_warehouse(warehouse)

    from pipelines import retention

    result = retention.prune_warehouse(
        warehouse, args.keep_days, dry_run=args.dry_run, drop_damaged=args.drop_damaged
    )
    if args.dagster_history:
        home = settings.dagster_home(warehouse)
        result.dagster = retention.prune_dagster_runs(args.keep_days, home, dry_run=args.dry_run)
    for line in result.lines():
        print(line)
    if args.dry_run and result.plan is not None:
        for path in result.plan.remove:
            print(f"  would remove {path.relative_to(warehouse)}", file=sys.stderr)
    return 0 if result.ok else 1
