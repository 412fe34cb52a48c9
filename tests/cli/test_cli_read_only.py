"""A warehouse the command cannot write (a read-only copy, backup or mount), as a user meets it:
the commands that only read it work (`alerts` lists from the warehouse's copy of the alert
state), and those that write it (`report` into the warehouse, `forget`, `alerts --retry`) say
so in one line naming the directory, exit 2, before changing anything, like `run` and `prune`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.services.cli import assert_one_line_error, usage_etl, usage_etl_read_only


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under `root` (relative path) and the SHA-256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_alerts_lists_a_read_only_warehouse_as_a_writable_one(demo_warehouse_copy: Path) -> None:
    warehouse = str(demo_warehouse_copy)
    writable = usage_etl("alerts", "--all", "--warehouse", warehouse)
    assert writable.code == 0 and "alerts: " in writable.out.splitlines()[0], writable
    read_only = usage_etl_read_only(
        demo_warehouse_copy, "alerts", "--all", "--warehouse", warehouse
    )
    assert read_only.code == 0, read_only
    assert read_only.out == writable.out
    assert read_only.err.strip() == (
        f"usage-etl alerts: warehouse {warehouse} is read-only here: listed from its tables "
        f"quota_alerts and alert_outbox (the copy of {warehouse}/state/alerts.sqlite made by "
        "the last run or delivery)"
    )


def test_commands_that_write_say_so_in_one_line(demo_warehouse_copy: Path) -> None:
    warehouse = str(demo_warehouse_copy)
    before = tree_digest(demo_warehouse_copy)
    for args, where in (
        (("report",), warehouse),
        (("forget", "--organization", "delta-vision"), warehouse),
        (("alerts", "--retry"), f"alert state directory {warehouse}/state"),
    ):
        done = usage_etl_read_only(demo_warehouse_copy, *args, "--warehouse", warehouse)
        assert_one_line_error(done, 2, where, "cannot write there", "expected a writable")
        assert done.err.startswith(f"usage-etl {args[0]}: "), done.err
    assert tree_digest(demo_warehouse_copy) == before
