"""`usage-etl verify`: check every stored slice of a warehouse against its manifest.

Read only and lock free (a run may be writing meanwhile: a slice between its staged and committed
record is accepted, see `warehouse/manifest.py`). Exit 0 when every slice is good, 1 with the list
of missing, unreadable, unrecorded or changed slices (and, for a `resource_usage` snapshot, the
remedy: `usage-etl prune --drop-damaged`), 2 when there is no warehouse. In lake mode it
also attaches the shared lake read-only and says which snapshot it is at (exit 2 when it
cannot be attached).
"""

from __future__ import annotations

import argparse
import sys

from common import settings
from common.errors import WarehouseError


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "verify",
        help="check the stored Parquet slices against their manifests",
        description=(
            "Check every Parquet slice of the warehouse against its table's manifest (file "
            "digest, rows and credits per organization). Exit 1 listing the bad slices: the "
            "next run re-pulls damaged credit_usage months and refuses to publish otherwise."
        ),
    )
    parser.add_argument("--warehouse", help="warehouse directory (USAGE_WAREHOUSE, ./data)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from common.errors import SNAPSHOT_REMEDY
    from warehouse.manifest import ManifestError, check_warehouse

    warehouse = settings.warehouse_dir(args.warehouse)
    root = warehouse / "parquet"
    if not root.is_dir():
        raise WarehouseError(f"no warehouse at {warehouse}: expected a parquet/ directory")
    try:
        check = check_warehouse(root)
    except ManifestError as exc:
        print(f"usage-etl verify: {exc}", file=sys.stderr)
        return 1
    for path in check.unadopted:
        print(f"not yet recorded (written before manifests; the next run adopts it): {path}")
    if check.bad:
        print(f"{len(check.bad)} bad slice(s) in {warehouse}:", file=sys.stderr)
        for bad in check.bad:
            print(f"bad slice: {bad.describe()}")
        if any(bad.table == "resource_usage" for bad in check.bad):
            print(f"a damaged resource_usage snapshot: {SNAPSHOT_REMEDY}", file=sys.stderr)
        return 1
    print(f"{check.slices} slices in {len(check.tables)} tables verified: all good")
    _describe_lake(args)
    return 0


def _describe_lake(args: argparse.Namespace) -> None:
    """In lake mode: that the lake answers, its current snapshot and the slices it records."""
    from pipelines.commands import warehouse_location
    from warehouse.lake import lake_summary

    config = warehouse_location(args).lake_config()
    if config is not None:
        print(lake_summary(config))
