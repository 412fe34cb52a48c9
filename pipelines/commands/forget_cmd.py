"""`usage-etl forget`: remove one organization's data on purpose, everywhere the product keeps it.

A run keeps the stored history of organizations the token no longer sees (and warns naming them);
this command is how an operator removes one deliberately. Under the warehouse writer lock it
empties prune's leftover trash, rewrites the Parquet slices without the organization
(`warehouse/forget.py`), deletes it from the alert state (`alerting/state.py`: alerts, their
messages, period totals; the SQLite file vacuumed), removes the series-facts cache files holding
it (`insights/series_facts.py`), drops its records from the notifications log, and republishes
`usage.duckdb` as a new file; then it rewrites the report (`<warehouse>/report/`) from that file.
Each of these writes is atomic on its own (the mechanism each store already uses); a crash in
between leaves each store before or after, and running the command again finishes the rest (the
organization is still found in the published file until the last write). What stays is listed
in docs/operations.md. The shared lake is not supported yet: the command refuses it.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from common import settings
from common.errors import InputError, WarehouseError

NOTIFICATIONS_LOG = Path("state") / "notifications.log"
"""Where `usage-etl run` writes the log channel's records (`run_cmd.quiet_library_logs`)."""

_RECORD_START = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} ")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "forget",
        help="remove an organization's data from the warehouse on purpose",
        description=(
            "Remove every trace of one organization from the warehouse: its rows in every "
            "table (usage, snapshots, members, registry row, derived tables, alerts and their "
            "messages) and Parquet slice, its alert state (state/alerts.sqlite), its series "
            "facts, its records in state/notifications.log, and its report page; usage.duckdb "
            "is republished as a new file and the report rewritten. If the token still sees "
            "the organization, the next run loads it again for the months it covers. Runs "
            "under the warehouse writer lock. Not for the shared lake."
        ),
        epilog="example: usage-etl forget --organization delta-vision --warehouse /srv/usage",
    )
    parser.add_argument(
        "--organization", required=True, metavar="NAME|ID", help="organization name or id"
    )
    parser.add_argument("--warehouse", help="warehouse directory (USAGE_WAREHOUSE, ./data)")
    parser.set_defaults(handler=handle)


def forget_log_records(path: Path, needles: tuple[str, ...]) -> int:
    """Rewrite the log at `path` (atomically) without the records that mention any of
    `needles` (a record is a timestamped line and the lines that continue it); returns how
    many were removed. A missing log has none."""
    from warehouse.files import atomic_write

    if not path.exists():
        return 0
    records: list[list[str]] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True):
        if _RECORD_START.match(line) or not records:
            records.append([line])
        else:
            records[-1].append(line)
    kept = [r for r in records if not any(n in "".join(r) for n in needles if n)]
    if len(kept) == len(records):
        return 0
    text = "".join(line for record in kept for line in record)
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return len(records) - len(kept)


def handle(args: argparse.Namespace) -> int:
    from alerting import state as alert_state
    from insights import series_facts
    from pipelines.commands import warehouse_location
    from pipelines.retention import clear_trash
    from reports import REPORT_DIR, write_report
    from warehouse.files import writer_lock
    from warehouse.forget import ForgetResult, forget_slices, republish, resolve_organization

    location = warehouse_location(args)
    if location.lake_config() is not None:
        raise InputError(
            "the shared lake is not supported yet (USAGE_LAKE_CATALOG / USAGE_LAKE_DATA are "
            "set): the lake would keep the organization's rows and every snapshot holding "
            "them; nothing was changed (see docs/operations.md)"
        )
    warehouse = location.root
    if not (warehouse / "parquet").is_dir():
        raise WarehouseError(f"no warehouse at {warehouse}: expected a parquet/ directory")
    settings.check_writable(warehouse)  # a read-only copy: one line, before anything is read
    organization_id, name = resolve_organization(warehouse, args.organization)
    result = ForgetResult(organization_id, name)
    with writer_lock(warehouse):
        trash = clear_trash(warehouse)
        forget_slices(warehouse, organization_id, result)
        alerts = alert_state.forget_organization(warehouse, organization_id)
        facts = series_facts.forget_organization(warehouse, organization_id)
        logged = forget_log_records(warehouse / NOTIFICATIONS_LOG, (organization_id, name))
        republish(warehouse, result)

    removed = ", ".join(f"{k}={v}" for k, v in sorted(result.rows_removed.items())) or "none"
    print(f"forgot {name} ({organization_id}): rows removed: {removed}")
    for path in result.damaged_records_amended:
        print(f"damaged slice {path} no longer needs {name}'s rows to be repaired")
    state = ", ".join(f"{k}={v}" for k, v in sorted(alerts.items())) if alerts else "no state file"
    print(f"alert state {alert_state.state_path(warehouse)}: rows removed: {state}")
    print(f"series facts cache: {facts} file(s) removed (recomputed by the next run)")
    print(f"notifications log: {logged} record(s) removed")
    if trash:
        print(f"emptied {trash} trash folder(s) left by an interrupted prune")
    if result.temporaries_removed:
        print(f"removed {result.temporaries_removed} temporary file(s) left by a crashed writer")
    if not result.published:
        print(f"usage-etl forget: not republished: {result.not_published}", file=sys.stderr)
        print(
            "usage-etl forget: report not rewritten (it still shows the organization)",
            file=sys.stderr,
        )
        return 1
    print("republished usage.duckdb (rebuilt as a new file; no previous version kept)")
    report = warehouse / REPORT_DIR
    if report.exists():
        write_report(warehouse)
        print(f"rewrote the report {report} (no page of {name} left)")
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or warehouse / "dagster")
    if dagster_home.is_dir():
        print(
            f"not touched: Dagster's run history in {dagster_home} (past runs' logs may name "
            f"{name}); `usage-etl prune --dagster-history --keep-days N` deletes old runs"
        )
    return 0
