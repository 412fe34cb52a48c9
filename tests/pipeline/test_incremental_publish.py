"""Publishing `usage.duckdb` by slice: the same database as a full rebuild, crash-safe at every
step, invisible to an open analyst session, and rebuilt whole when its recorded state is damaged.

The warehouses here are written through `ParquetStore` (no API run): a few organizations, four
months of `credit_usage` (days and periods), organizations, resource snapshots and one derived
table, so each test takes well under a second.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

import warehouse.publish as publisher
from warehouse import schema
from warehouse.derived_schema import PROJECT_USAGE_TRENDS
from warehouse.files import remove_stale_temporaries
from warehouse.parquet_store import ParquetStore
from warehouse.publish import DATABASE_NAME, connect_readonly, publish_database
from warehouse.schema import CREDIT_USAGE, ORGANIZATIONS, RESOURCE_USAGE

MONTHS = ["2026-07", "2026-08", "2026-09", "2026-10"]


def usage_month(
    month: str, orgs: list[str], interval: str = "day", scale: float = 1.0
) -> pd.DataFrame:
    """Organization and project rows for every day (or one period) of `month`."""
    first = datetime.fromisoformat(month + "-01")
    days = [first + timedelta(days=i) for i in range(28)] if interval == "day" else [first]
    rows = []
    for n, org in enumerate(orgs):
        for day in days:
            end = day + (timedelta(days=1) if interval == "day" else timedelta(days=30))
            credits = scale * (n + 1) * (1 + day.day / 10)
            common = {
                "organization_id": org,
                "organization_name": f"name-{org}",
                "interval": interval,
            }
            common |= {"start_date": day, "end_date": end, "loaded_at": first}
            rows.append(common | {"scope": "organization", "credits": credits})
            rows.append(
                common
                | {
                    "scope": "project",
                    "project_id": f"p-{org}",
                    "project_name": "main",
                    "credits": credits,
                }
            )
    return pd.DataFrame(rows)


def organizations(orgs: list[str], seen: datetime) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "organization_id": o,
                "organization_name": f"name-{o}",
                "visible": True,
                "last_seen_at": seen,
            }
            for o in orgs
        ]
    )


def snapshot(store: ParquetStore, at: datetime, orgs: list[str]) -> None:
    frame = pd.DataFrame(
        [{"organization_id": o, "observed_at": at, "projects": i} for i, o in enumerate(orgs)]
    )
    store.append_file(
        RESOURCE_USAGE, {"observed_date": f"{at:%Y-%m-%d}"}, f"snapshot-{at:%H%M%S}.parquet", frame
    )


def trends(orgs: list[str], scale: float) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "organization_id": o,
                "scope": "organization",
                "date": datetime(2026, 10, 1),
                "credits": scale * i,
            }
            for i, o in enumerate(orgs)
        ]
    )


def build(root: Path) -> ParquetStore:
    """Four months of a small warehouse."""
    store = ParquetStore(root)
    orgs = ["a", "b", "c"]
    for month in MONTHS:
        for interval in ("day", "month"):
            store.replace_partition(
                CREDIT_USAGE,
                {"interval": interval, "month": month},
                usage_month(month, orgs, interval),
            )
    store.replace_table(ORGANIZATIONS, organizations(orgs, datetime(2026, 10, 20)))
    snapshot(store, datetime(2026, 10, 19, 6), orgs)
    snapshot(store, datetime(2026, 10, 20, 6), orgs)
    store.replace_partition(PROJECT_USAGE_TRENDS, {"month": "2026-10"}, trends(orgs, 1.0))
    return store


def change_one_month(store: ParquetStore) -> None:
    """What a daily refresh does: one month re-pulled (a new organization in it), a snapshot."""
    orgs = ["a", "b", "c", "d"]
    store.replace_partition(
        CREDIT_USAGE, {"interval": "day", "month": "2026-10"}, usage_month("2026-10", orgs, scale=2)
    )
    store.replace_table(ORGANIZATIONS, organizations(orgs, datetime(2026, 10, 21)))
    snapshot(store, datetime(2026, 10, 21, 6), orgs)
    store.replace_partition(PROJECT_USAGE_TRENDS, {"month": "2026-10"}, trends(orgs, 2.0))


def contents(path: Path) -> dict[str, Any]:
    """Everything an analyst can see: tables and their rows, views, every comment and type."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = con.execute(
            "SELECT schema_name, table_name, comment FROM duckdb_tables() "
            "WHERE database_name = current_database() ORDER BY ALL"
        ).fetchall()
        out: dict[str, Any] = {"tables": tables}
        out["columns"] = con.execute(
            "SELECT schema_name, table_name, column_name, column_index, data_type, is_nullable, "
            "comment FROM duckdb_columns() WHERE database_name = current_database() ORDER BY ALL"
        ).fetchall()
        out["views"] = con.execute(
            "SELECT view_name, sql, comment FROM duckdb_views() WHERE NOT internal "
            "AND database_name = current_database() ORDER BY ALL"
        ).fetchall()
        for schema_name, name, _ in tables:
            out[f"{schema_name}.{name}"] = con.execute(
                f'SELECT * FROM "{schema_name}"."{name}" ORDER BY ALL'
            ).fetchall()
        for name, _, _ in out["views"]:
            out[f"view {name}"] = con.execute(f'SELECT * FROM "{name}" ORDER BY ALL').fetchall()
        return out
    finally:
        con.close()


def full_rebuild_of(root: Path, tmp: Path) -> dict[str, Any]:
    """The contents a from-scratch rebuild of `root`'s Parquet files gives (on a copy)."""
    import shutil

    copy = tmp / "full"
    shutil.copytree(root / "parquet", copy / "parquet")
    result = publish_database(copy)
    assert not result.incremental and result.reason == "no previous file"
    return contents(copy / DATABASE_NAME)


@pytest.fixture(scope="module")
def published_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small warehouse built and published once for the module (read-only: each test gets
    a copy from `store`)."""
    root = tmp_path_factory.mktemp("published") / "warehouse"
    build(root)
    first = publish_database(root)
    assert not first.incremental
    return root


@pytest.fixture
def store(published_warehouse: Path, tmp_path: Path) -> ParquetStore:
    """A private copy of the published four-month warehouse."""
    import shutil

    copy = tmp_path / "warehouse"
    shutil.copytree(published_warehouse, copy)
    return ParquetStore(copy)


def root_of(store: ParquetStore) -> Path:
    return store.root.parent


def test_one_month_change_is_published_by_slice_and_equals_a_full_rebuild(
    store: ParquetStore, tmp_path: Path
) -> None:
    change_one_month(store)
    result = publish_database(root_of(store))
    assert result.incremental, result.reason
    assert sorted(result.replaced) == [
        "credit_usage/interval=day/month=2026-10",
        "organizations",
        "project_usage_trends/month=2026-10",
        "resource_usage/observed_date=2026-10-21",
    ]
    assert result.line() == "by slice, 4 partition(s) replaced; 9 tables, 770 rows"
    published = contents(root_of(store) / DATABASE_NAME)
    assert published == full_rebuild_of(root_of(store), tmp_path)
    assert published["main.credit_usage"] != [], "the comparison compares rows"
    # the replaced month holds the new rows and only them
    con = duckdb.connect(str(root_of(store) / DATABASE_NAME), read_only=True)
    try:
        per_org = con.execute(
            "SELECT organization_id, count(*) FROM credit_usage WHERE interval = 'day' "
            "AND start_date >= '2026-10-01' GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    finally:
        con.close()
    assert per_org == [("a", 56), ("b", 56), ("c", 56), ("d", 56)]


def test_removed_slices_and_an_unchanged_warehouse(store: ParquetStore, tmp_path: Path) -> None:
    unchanged = publish_database(root_of(store))
    assert unchanged.incremental and unchanged.replaced == []
    # a pruned snapshot and a forgotten month: their rows go too
    manifest = store.manifest(RESOURCE_USAGE)
    gone = store.files(RESOURCE_USAGE)[0]
    manifest.stage({}, removals=[gone])
    gone.unlink()
    manifest.commit(removed=[gone])
    result = publish_database(root_of(store))
    assert result.incremental, result.reason
    assert result.replaced == ["resource_usage/observed_date=2026-10-19"]
    assert contents(root_of(store) / DATABASE_NAME) == full_rebuild_of(root_of(store), tmp_path)


def test_an_open_analyst_session_keeps_its_snapshot(store: ParquetStore) -> None:
    path = root_of(store) / DATABASE_NAME
    sql = "SELECT count(*), sum(credits) FROM credit_usage"
    plain = duckdb.connect(str(path), read_only=True)
    locked = connect_readonly(root_of(store))
    try:
        before = plain.execute(sql).fetchone()
        assert locked.execute(sql).fetchone() == before
        change_one_month(store)
        result = publish_database(root_of(store))
        assert result.incremental, result.reason
        assert plain.execute(sql).fetchone() == before
        assert locked.execute(sql).fetchone() == before
        assert plain.execute("SELECT count(*) FROM organizations").fetchone() == (3,)
    finally:
        plain.close()
        locked.close()
    fresh = connect_readonly(root_of(store))
    try:
        after = fresh.execute(sql).fetchone()
    finally:
        fresh.close()
    assert after is not None and before is not None and after[0] > before[0]


def _tamper(path: Path, *statements: str) -> None:
    con = duckdb.connect(str(path))
    try:
        for statement in statements:
            con.execute(statement)
        con.execute("CHECKPOINT")
    finally:
        con.close()


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda p: _tamper(p, "DROP SCHEMA usage_etl CASCADE"), "no readable publish state"),
        (lambda p: _tamper(p, "DELETE FROM usage_etl.state"), "is not format"),
        (
            lambda p: _tamper(p, "DELETE FROM credit_usage WHERE organization_id = 'b'"),
            "table credit_usage holds",
        ),
        (
            lambda p: _tamper(p, "UPDATE usage_etl.slices SET rows = rows + 1"),
            "holds",
        ),
        (lambda p: p.write_bytes(b"not a database at all" * 100), "previous file unreadable"),
    ],
    ids=["no-state", "no-format", "rows-deleted", "counts-wrong", "not-duckdb"],
)
def test_a_damaged_recorded_state_falls_back_to_a_full_rebuild(
    store: ParquetStore, tmp_path: Path, damage: Callable[[Path], None], reason: str
) -> None:
    path = root_of(store) / DATABASE_NAME
    damage(path)
    change_one_month(store)
    result = publish_database(root_of(store))
    assert not result.incremental
    assert reason in result.reason
    assert result.line().startswith("rebuilt whole; ")
    assert contents(path) == full_rebuild_of(root_of(store), tmp_path)
    assert not list(path.parent.glob(".*.tmp")), "the abandoned copy was removed"


def test_a_changed_table_contract_or_a_wal_rebuilds_everything(
    store: ParquetStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed = dataclasses.replace(ORGANIZATIONS, description="Organizations, described anew.")
    tables = [renamed if t is ORGANIZATIONS else t for t in schema.ALL_TABLES]
    monkeypatch.setattr(publisher, "ALL_TABLES", tables)
    result = publish_database(root_of(store))
    assert not result.incremental and result.reason == "table contract changed: organizations"
    con = duckdb.connect(str(root_of(store) / DATABASE_NAME), read_only=True)
    try:
        comment = con.execute(
            "SELECT comment FROM duckdb_tables() WHERE table_name = 'organizations'"
        ).fetchone()
    finally:
        con.close()
    assert comment == ("Organizations, described anew.",)
    assert publish_database(root_of(store)).incremental, "then by slice again"

    (root_of(store) / (DATABASE_NAME + ".wal")).write_bytes(b"")
    result = publish_database(root_of(store))
    assert not result.incremental and "write-ahead log" in result.reason


def test_deleted_rows_outnumbering_live_ones_rebuild_the_file(
    store: ParquetStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publisher, "DEAD_ROWS_MIN", 0)  # the real floor is a million rows
    for month in MONTHS[:3]:  # most of the day rows replaced by none: deleted, not vacuumed
        store.replace_partition(
            CREDIT_USAGE, {"interval": "day", "month": month}, store.empty(CREDIT_USAGE)
        )
    emptied = publish_database(root_of(store))
    assert emptied.incremental, emptied.reason
    compacted = publish_database(root_of(store))
    assert not compacted.incremental and "deleted ones" in compacted.reason
    assert contents(root_of(store) / DATABASE_NAME) == full_rebuild_of(root_of(store), tmp_path)
    assert publish_database(root_of(store)).incremental  # compact again: by slice


def test_rows_outside_their_partition_are_caught_and_rebuilt(
    store: ParquetStore, tmp_path: Path
) -> None:
    """A slice holding rows of another month cannot be replaced by partition: the row counts
    after replacing say so, and the file is rebuilt whole (still correct)."""
    stray = usage_month("2026-09", ["z"])  # September rows in the October file
    october = usage_month("2026-10", ["a", "b", "c"])
    store.replace_partition(
        CREDIT_USAGE, {"interval": "day", "month": "2026-10"}, pd.concat([october, stray])
    )
    result = publish_database(root_of(store))
    assert not result.incremental
    assert "credit_usage/interval=day/month=2026-10 holds" in result.reason
    assert contents(root_of(store) / DATABASE_NAME) == full_rebuild_of(root_of(store), tmp_path)


# ---------------------------------------------------------------------------- crash safety
class Killer:
    """Kills this (forked) process with SIGKILL just before the first step whose name matches,
    from the copy of the previous file on (the integrity check before it writes files too)."""

    def __init__(self, step: str) -> None:
        self.step = step
        self.armed = False

    def at(self, name: str) -> None:
        self.armed = self.armed or name.startswith("copy_file")
        if self.armed and name.startswith(self.step):
            os.kill(os.getpid(), signal.SIGKILL)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.at(f"{name} {args[0] if args and isinstance(args[0], str) else ''}")
            return fn(*args, **kwargs)

        return wrapped


class KillingConnection:
    def __init__(self, con: duckdb.DuckDBPyConnection, killer: Killer) -> None:
        self._con, self._killer = con, killer

    def execute(self, sql: str, *args: Any) -> Any:
        self._killer.at(f"sql {sql}")
        self._con.execute(sql, *args)
        return self

    def executemany(self, sql: str, *args: Any) -> Any:
        self._killer.at(f"sql {sql}")
        self._con.executemany(sql, *args)
        return self

    def fetchone(self) -> Any:
        return self._con.fetchone()

    def fetchall(self) -> Any:
        return self._con.fetchall()

    def close(self) -> None:
        self._killer.at("close")
        self._con.close()


# Every kind of step of an incremental publish, in order.
STEPS = [
    "copy_file",
    "connect",
    "sql SET TimeZone",
    "sql SELECT format",
    "sql BEGIN",
    'sql DELETE FROM "credit_usage"',
    'sql INSERT INTO "credit_usage"',
    'sql DROP TABLE "organizations"',
    'sql CREATE TABLE "organizations"',
    "sql CREATE SCHEMA IF NOT EXISTS usage_etl",
    "sql INSERT INTO usage_etl.slices",
    "sql DROP VIEW",
    "sql COMMIT",
    "sql CREATE OR REPLACE VIEW",
    "sql CHECKPOINT",
    "close",
    "os.fsync",
    "commit_temporary",
    "fsync_dir",
]


def _publish_and_die(root: Path, step: str) -> None:
    """In a forked child: publish, killed at `step` (exit 0 when the step never came)."""
    import warehouse.files as files

    killer = Killer(step)
    real_connect = duckdb.connect
    publisher.copy_file = killer.wrap("copy_file", publisher.copy_file)  # type: ignore[assignment]
    publisher.commit_temporary = killer.wrap(  # type: ignore[assignment]
        "commit_temporary", publisher.commit_temporary
    )
    files.os.fsync = killer.wrap("os.fsync", os.fsync)  # type: ignore[assignment]
    files.fsync_dir = killer.wrap("fsync_dir", files.fsync_dir)  # type: ignore[assignment]

    def connect(*args: Any, **kwargs: Any) -> Any:
        killer.at("connect")
        return KillingConnection(real_connect(*args, **kwargs), killer)

    publisher.duckdb.connect = connect  # type: ignore[assignment]
    publish_database(root)


def run_forked(fn: Callable[[], None]) -> int:
    """Run `fn` in a forked child; its exit status (or -signal)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        code = 0
        try:
            fn()
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 3
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def test_kill_9_at_every_step_of_an_incremental_publish(
    store: ParquetStore, tmp_path: Path
) -> None:
    root = root_of(store)
    path = root / DATABASE_NAME
    previous = path.read_bytes()
    change_one_month(store)
    expected_new = full_rebuild_of(root, tmp_path)
    killed = []
    for step in STEPS:
        status = run_forked(lambda step=step: _publish_and_die(root, step))
        assert status in (-signal.SIGKILL, 0), (step, status)
        if status == -signal.SIGKILL:
            killed.append(step)
        if step != "fsync_dir":  # killed before the rename: the previous file, byte for byte
            assert path.read_bytes() == previous, f"killed at {step}"
    assert killed == STEPS, "every step was reached and killed"
    assert contents(path) == expected_new, "killed after the rename: the new file, whole"
    assert remove_stale_temporaries(root) > 0, "the killed publishes left temporaries"
    assert not list(root.glob(".*.tmp*")), "their copies and write-ahead logs are cleaned up"
    result = publish_database(root)
    assert result.incremental, result.reason
    assert contents(path) == expected_new
