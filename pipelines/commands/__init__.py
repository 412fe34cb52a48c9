"""One module per `usage-etl` subcommand: each has `add_parser(subparsers)`; and what they
share: the `warehouse` resource built from a command's flags (`warehouse_resource`)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from assets.resources import Warehouse


def warehouse_resource(args: argparse.Namespace) -> Warehouse:
    """The `warehouse` resource (assets/resources.py) as this command sees it: the environment
    (USAGE_WAREHOUSE, USAGE_LAKE_*, the AWS variables) with the command's `--warehouse`,
    `--lake-catalog` and `--lake-data` on top. Built once per command; its `lake_config()` is
    the shared lake every part of the command uses (None without one)."""
    from assets.resources import Warehouse

    return Warehouse.from_env(
        path=getattr(args, "warehouse", None),
        lake_catalog=getattr(args, "lake_catalog", None),
        lake_data=getattr(args, "lake_data", None),
    )
