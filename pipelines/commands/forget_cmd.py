"""`usage-etl forget`: remove one organization's data from the warehouse on purpose.

A run keeps the stored history of organizations the token no longer sees (and warns naming them);
this command is how an operator removes one deliberately. See `warehouse/forget.py`.
"""

from __future__ import annotations

import argparse
import sys

from common import settings
from common.errors import WarehouseError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "forget",
        help="remove an organization's data from the warehouse on purpose",
        description=(
            "Remove every row of one organization (usage, snapshots, members, registry row, "
            "derived tables) from the warehouse's Parquet slices and republish usage.duckdb. "
            "If the token still sees the organization, the next run loads it again for the "
            "months it covers. Runs under the warehouse writer lock."
        ),
    )
    parser.add_argument(
        "--organization", required=True, metavar="NAME|ID", help="organization name or id"
    )
    parser.add_argument("--warehouse", help="warehouse directory (USAGE_WAREHOUSE, ./data)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from warehouse.forget import forget_organization, resolve_organization

    warehouse = settings.warehouse_dir(args.warehouse)
    if not (warehouse / "parquet").is_dir():
        raise WarehouseError(f"no warehouse at {warehouse}: expected a parquet/ directory")
    organization_id, name = resolve_organization(warehouse, args.organization)
    result = forget_organization(warehouse, organization_id, name)
    removed = ", ".join(f"{k}={v}" for k, v in sorted(result.rows_removed.items())) or "none"
    print(f"forgot {name} ({organization_id}): rows removed: {removed}")
    for path in result.damaged_records_amended:
        print(f"damaged slice {path} no longer needs {name}'s rows to be repaired")
    if result.published:
        print("republished usage.duckdb")
        return 0
    print(f"usage-etl forget: not republished: {result.not_published}", file=sys.stderr)
    return 1
