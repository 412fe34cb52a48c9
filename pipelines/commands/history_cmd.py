"""`usage-etl history --organization NAME --period YYYY-MM`: how a period's totals were restated.

Usage gets restated: a deleted project's usage moves to deleted projects, late data lands, a
month is re-pulled. On the shared lake every load is a snapshot, so this command shows, load by
load, the organization's subscription-period total (the API's period row) and the sum of its
daily rows in that period, with what each load changed. The local warehouse replaces slices in
place and keeps no history: there the command says so and shows the current totals.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import timedelta

PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "history",
        help="how an organization's period totals changed from load to load (lake)",
        description=(
            "Show, snapshot by snapshot, how an organization's subscription-period total and "
            "the sum of its daily rows changed as loads restated them. Needs the shared lake "
            "(USAGE_LAKE_CATALOG, USAGE_LAKE_DATA); on the local warehouse it shows the current "
            "totals and says that no history is kept."
        ),
        epilog="example: usage-etl history --organization acme-analytics --period 2026-10",
    )
    parser.add_argument("--organization", required=True, help="organization name or id")
    parser.add_argument(
        "--period", required=True, help="the month the subscription period starts in, YYYY-MM"
    )
    parser.add_argument("--warehouse", help="warehouse directory (USAGE_WAREHOUSE, ./data)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from common.errors import InputError
    from pipelines.commands import warehouse_location
    from warehouse.lake import totals_history
    from warehouse.readonly import connect_readonly

    if not PERIOD.match(args.period):
        raise InputError(f"--period {args.period!r}: expected a month as YYYY-MM")
    warehouse = warehouse_location(args)
    lake = warehouse.lake_config()
    con = connect_readonly(warehouse.root, lake)
    try:
        found = con.execute(
            "SELECT organization_id, organization_name FROM organizations "
            "WHERE organization_id = ? OR organization_name = ? LIMIT 1",
            [args.organization, args.organization],
        ).fetchone()
        if found is None:
            raise InputError(
                f"--organization {args.organization!r}: no such organization in the warehouse"
            )
        org_id, org_name = str(found[0]), str(found[1])
        period = con.execute(
            "SELECT start_date, end_date FROM credit_usage WHERE organization_id = ? AND "
            "interval = 'month' AND scope = 'organization' AND strftime(start_date, '%Y-%m') = ? "
            "ORDER BY start_date LIMIT 1",
            [org_id, args.period],
        ).fetchone()
        if period is None:
            raise InputError(
                f"--period {args.period}: no subscription period of {org_name} starts in that "
                "month in the warehouse"
            )
        start, end = period
        where = (
            "organization_id = ? AND scope = 'organization' AND ((interval = 'month' AND "
            "start_date = ?) OR (interval = 'day' AND start_date >= ? AND start_date < ?))"
        )
        totals = {
            "period_row": "sum(credits) FILTER (WHERE interval = 'month')",
            "daily_rows": "sum(credits) FILTER (WHERE interval = 'day')",
        }
        last = end - timedelta(days=1)  # end_date is exclusive; people read the last day
        print(f"{org_name} ({org_id}), subscription period {start:%Y-%m-%d} .. {last:%Y-%m-%d}")
        if lake is None:
            row = con.execute(
                f"SELECT {', '.join(f'coalesce({v}, 0)' for v in totals.values())}, "
                f"max(loaded_at) FROM credit_usage WHERE {where}",
                [org_id, start, start, end],
            ).fetchone()
            assert row is not None
            print(
                f"current: period row {row[0]:,.2f} credits, daily rows {row[1]:,.2f} credits, "
                f"loaded {row[2]:%Y-%m-%d %H:%M} UTC"
            )
            print(
                "history: not kept by the local warehouse (each load replaces its slices in "
                "place); the shared lake keeps every load as a snapshot (docs/lake.md, History)",
                file=sys.stderr,
            )
            return 0
        history = totals_history(con, "credit_usage", totals, where, [org_id, start, start, end])
        print(f"{'snapshot':>8}  {'committed (UTC)':<19}  {'period row':>14}  {'change':>12}"
              f"  {'daily rows':>14}  {'change':>12}")  # fmt: skip
        for entry in history:
            print(
                f"{entry.snapshot_id:>8}  {entry.snapshot_time:%Y-%m-%d %H:%M:%S}  "
                f"{entry.values['period_row']:>14,.2f}  {entry.changes['period_row']:>+12,.2f}  "
                f"{entry.values['daily_rows']:>14,.2f}  {entry.changes['daily_rows']:>+12,.2f}"
            )
        print(changed_line(len(history)))
        return 0
    finally:
        con.close()


def changed_line(loads: int) -> str:
    """The closing line: how many loads changed the totals shown."""
    return f"({loads} load{'' if loads == 1 else 's'} changed these totals)"
