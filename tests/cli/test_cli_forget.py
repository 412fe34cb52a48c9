"""`usage-etl forget` end to end on a copy of the demo run: afterwards the organization's name
and id are nowhere under the warehouse directory, neither in any file's bytes (the published
DuckDB file with its free blocks, the SQLite alert state, Parquet slices and manifests, the
series facts, the report, the notifications log, leftovers of crashed writers) nor in any
decoded value (Parquet and DuckDB compress strings, so bytes alone could miss one), and every
other organization's rows and alerts are as they were.

Nothing under the warehouse directory is left holding it. What stays outside it (Dagster's run
history under DAGSTER_HOME, which the demo run keeps beside the warehouse) is documented in
docs/operations.md; the shared lake is refused (checked here too).
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import duckdb
import pandas as pd

from tests.services.cli import clean_env, usage_etl_in_process
from warehouse.derived_schema import ALERT_OUTBOX
from warehouse.schema import ALL_TABLES

FORGOTTEN = "delta-vision"  # a demo organization with open alerts and notified messages
OTHER = "ember-free"  # one with an alert of its own

STATE_TABLES = {  # the alert state's tables, each row's organization by SQL
    "alerts": "SELECT organization_id, * FROM alerts",
    "outbox": "SELECT a.organization_id, o.* FROM outbox o JOIN alerts a USING (alert_key)",
    "period_totals": "SELECT organization_id, * FROM period_totals",
}


def organization_id(warehouse: Path, name: str) -> str:
    with duckdb.connect(str(warehouse / "usage.duckdb"), read_only=True) as con:
        row = con.execute(
            "SELECT organization_id FROM organizations WHERE organization_name = ?", [name]
        ).fetchone()
    assert row is not None, name
    return str(row[0])


def files_holding(warehouse: Path, needles: tuple[str, ...]) -> dict[str, list[str]]:
    """Every file under `warehouse` whose bytes hold one of `needles`, and every Parquet file,
    DuckDB table and SQLite table with a value holding one (decoded), by where."""
    found: dict[str, list[str]] = {}
    for path in sorted(p for p in warehouse.rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits = [n for n in needles if n.encode() in data]
        where = str(path.relative_to(warehouse))
        if hits:
            found[where] = hits
        if path.suffix == ".parquet":
            with duckdb.connect() as con:
                for n in needles:
                    row = con.execute(
                        "SELECT count(*) FROM read_parquet(?) AS r WHERE contains(r::VARCHAR, ?)",
                        [str(path), n],
                    ).fetchone()
                    if row and row[0]:
                        found.setdefault(f"{where} (values)", []).append(n)
    with duckdb.connect(str(warehouse / "usage.duckdb"), read_only=True) as con:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables"
        ).fetchall()
        for schema, table in tables:
            for n in needles:
                row = con.execute(
                    f'SELECT count(*) FROM "{schema}"."{table}" AS r WHERE contains(r::VARCHAR, ?)',
                    [n],
                ).fetchone()
                if row and row[0]:
                    found.setdefault(f"usage.duckdb {schema}.{table}", []).append(n)
    with sqlite3.connect(warehouse / "state" / "alerts.sqlite") as db:
        dump = "\n".join(db.iterdump())
    hits = [n for n in needles if n in dump]
    if hits:
        found["state/alerts.sqlite (values)"] = hits
    return found


def others_tables(warehouse: Path, forgotten_id: str) -> dict[str, pd.DataFrame]:
    """Every published table's rows that are not the forgotten organization's, in one order."""
    frames = {}
    with duckdb.connect(str(warehouse / "usage.duckdb"), read_only=True) as con:
        for t in ALL_TABLES:
            if "organization_id" in t.column_names:
                where = "WHERE organization_id <> ?"
            elif t.name == ALERT_OUTBOX.name:
                where = (
                    "WHERE alert_key NOT IN "
                    "(SELECT alert_key FROM quota_alerts WHERE organization_id = ?)"
                )
            else:
                where = "WHERE ? IS NOT NULL"
            frames[t.name] = con.execute(
                f'SELECT * FROM "{t.name}" {where} ORDER BY ALL', [forgotten_id]
            ).df()
    return frames


def others_state(warehouse: Path, forgotten_id: str) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(warehouse / "state" / "alerts.sqlite") as db:
        return {
            table: sorted(row for row in db.execute(sql) if row[0] != forgotten_id)
            for table, sql in STATE_TABLES.items()
        }


def test_forget_leaves_no_trace_of_the_organization_and_the_others_untouched(
    demo_warehouse_copy: Path,
) -> None:
    warehouse = demo_warehouse_copy
    forgotten_id = organization_id(warehouse, FORGOTTEN)
    needles = (FORGOTTEN, forgotten_id)
    # what a `usage-etl run` writes through the log channel, and what a crashed publish leaves
    log = warehouse / "state" / "notifications.log"
    log.write_text(
        f"2026-11-29 06:15:02,101 INFO quota alert open: {FORGOTTEN} has reached 120%\n"
        "  a continuation line of that record\n"
        f"2026-11-29 06:15:02,102 INFO quota alert open: {OTHER} has reached 100%\n",
        encoding="utf-8",
    )
    shutil.copyfile(warehouse / "usage.duckdb", warehouse / ".usage.duckdb.0123abcd.tmp")

    before = files_holding(warehouse, needles)
    for where in (
        "usage.duckdb",
        ".usage.duckdb.previous",
        "state/alerts.sqlite",
        "state/notifications.log",
        "report/index.html",
        f"report/organizations/{forgotten_id}.html",
        "parquet/alert_outbox/data.parquet",
    ):  # the scan finds it where the product keeps it, so its silence afterwards means something
        assert where in before, (where, sorted(before))
    assert any(w.startswith("state/series-facts/") for w in before), sorted(before)
    tables_before = others_tables(warehouse, forgotten_id)
    state_before = others_state(warehouse, forgotten_id)
    with sqlite3.connect(warehouse / "state" / "alerts.sqlite") as db:
        forgotten_alerts = db.execute(
            "SELECT count(*) FROM alerts WHERE organization_id = ?", [forgotten_id]
        ).fetchone()[0]
    assert forgotten_alerts > 0 and tables_before["quota_alerts"].shape[0] > 0

    done = usage_etl_in_process(
        "forget", "--organization", FORGOTTEN, "--warehouse", str(warehouse)
    )
    assert done.code == 0, done.err
    assert f"forgot {FORGOTTEN} ({forgotten_id}): rows removed:" in done.out
    assert f"quota_alerts={forgotten_alerts}" in done.out
    assert f"rows removed: alerts={forgotten_alerts}, outbox=" in done.out
    assert "notifications log: 1 record(s) removed" in done.out
    assert "removed 1 temporary file(s)" in done.out
    assert "rebuilt as a new file" in done.out
    assert "rewrote the report" in done.out

    assert files_holding(warehouse, needles) == {}
    assert not (warehouse / ".usage.duckdb.previous").exists()
    assert log.read_text(encoding="utf-8").splitlines() == [
        f"2026-11-29 06:15:02,102 INFO quota alert open: {OTHER} has reached 100%"
    ]

    # everyone else's rows, alert state and report pages are as they were
    tables_after = others_tables(warehouse, forgotten_id)
    for name, frame in tables_before.items():
        pd.testing.assert_frame_equal(tables_after[name], frame, obj=name)
    assert others_state(warehouse, forgotten_id) == state_before
    pages = {p.stem for p in (warehouse / "report" / "organizations").glob("*.html")}
    others = set(tables_before["organizations"].organization_id)
    assert pages == others
    index = (warehouse / "report" / "index.html").read_text(encoding="utf-8")
    assert all(name in index for name in tables_before["organizations"].organization_name)
    alerts = usage_etl_in_process("alerts", "--warehouse", str(warehouse))
    assert alerts.code == 0 and OTHER in alerts.out and FORGOTTEN not in alerts.out
    assert usage_etl_in_process("verify", "--warehouse", str(warehouse)).code == 0

    # once forgotten, it is unknown; the shared lake is refused before anything changes
    again = usage_etl_in_process(
        "forget", "--organization", FORGOTTEN, "--warehouse", str(warehouse)
    )
    assert again.code == 2 and "no such organization" in again.err
    lake = usage_etl_in_process(
        "forget",
        "--organization",
        OTHER,
        "--warehouse",
        str(warehouse),
        env=clean_env(
            USAGE_LAKE_CATALOG="dbname=usage host=127.0.0.1", USAGE_LAKE_DATA="s3://bucket/lake/"
        ),
    )
    assert lake.code == 2 and "shared lake is not supported" in lake.err
    assert others_state(warehouse, forgotten_id) == state_before


def test_a_forget_interrupted_before_republishing_is_finished_by_running_it_again(
    demo_warehouse_copy: Path,
) -> None:
    """A crash after the slices (the registry among them) were rewritten and before the
    republish: the organization is no longer in the registry, yet the same command, by name,
    finds it in the published file and removes what is left."""
    from warehouse.files import writer_lock
    from warehouse.forget import ForgetResult, forget_slices

    warehouse = demo_warehouse_copy
    forgotten_id = organization_id(warehouse, FORGOTTEN)
    with writer_lock(warehouse):  # what the command had done when it died
        forget_slices(warehouse, forgotten_id, ForgetResult(forgotten_id, FORGOTTEN))
    registry = warehouse / "parquet" / "organizations" / "data.parquet"
    assert FORGOTTEN not in str(pd.read_parquet(registry).organization_name.tolist())
    assert files_holding(warehouse, (FORGOTTEN, forgotten_id)), "the rest still holds it"

    done = usage_etl_in_process(
        "forget", "--organization", FORGOTTEN, "--warehouse", str(warehouse)
    )
    assert done.code == 0, done.err
    assert f"forgot {FORGOTTEN} ({forgotten_id}): rows removed: none" in done.out
    assert files_holding(warehouse, (FORGOTTEN, forgotten_id)) == {}
