"""One module per `usage-etl` subcommand: each has `add_parser(subparsers)`; and what they
share: where the warehouse is, from a command's flags (`warehouse_location`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from warehouse.location import WarehouseLocation


def warehouse_location(args: argparse.Namespace) -> WarehouseLocation:
    """The warehouse as this command sees it, resolved like the `warehouse` resource
    (assets/resources.py) but without importing Dagster (warehouse/location.py): the
    environment (USAGE_WAREHOUSE, USAGE_LAKE_*, the AWS variables) with the command's
    `--warehouse`, `--lake-catalog` and `--lake-data` on top. Built once per command; its
    `lake_config()` is the shared lake every part of the command uses (None without one)."""
    from warehouse.location import WarehouseLocation

    return WarehouseLocation.from_env(
        path=getattr(args, "warehouse", None),
        lake_catalog=getattr(args, "lake_catalog", None),
        lake_data=getattr(args, "lake_data", None),
    )
