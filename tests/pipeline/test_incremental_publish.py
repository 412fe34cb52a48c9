"""Publishing `usage.duckdb` by slice: the same database as a full rebuild, crash-safe at every
step, invisible to an open analyst session, and rebuilt whole when its recorded state is damaged.
The kept previous file is updated instead of a copy only when nobody can be reading it.

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
from warehouse.publish import (
    COPY,
    DATABASE_NAME,
    KEPT,
    connect_readonly,
    kept_path,
    publish_database,
)
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


@pytest.fixture(autouse=True)
def kept_file_always_worth_updating(monkeypatch: pytest.MonkeyPatch) -> None:
    """In these tiny warehouses any month is a large share of the rows: the kept previous file is
    updated however far behind it is, and a publish keeps the version it replaced however much
    it replaced, unless a test sets the real shares
    (`test_after_a_backfill_a_copy_is_kept_and_a_version_far_behind_is_not_updated`)."""
    monkeypatch.setattr(publisher, "KEPT_MAX_EXTRA_SHARE", float("inf"))
    monkeypatch.setattr(publisher, "KEPT_COPY_AFTER_SHARE", float("inf"))


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
    assert result.line() == (
        "by slice (the kept previous file updated), 4 partition(s) replaced; 9 tables, 770 rows"
    )
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


def change_another_month(store: ParquetStore) -> None:
    """A later run: an older month re-pulled with other numbers."""
    store.replace_partition(
        CREDIT_USAGE,
        {"interval": "day", "month": "2026-08"},
        usage_month("2026-08", ["a", "b"], scale=3),
    )


def test_the_kept_previous_file_two_versions_behind_is_brought_up_to_date(
    store: ParquetStore, tmp_path: Path
) -> None:
    path = root_of(store) / DATABASE_NAME
    kept = kept_path(path)
    assert contents(kept) == contents(path), "a full rebuild keeps a copy of what it built"
    assert not os.path.samefile(kept, path)
    change_one_month(store)
    first = publish_database(root_of(store))
    assert first.incremental and first.updated == KEPT
    assert kept.exists() and not os.path.samefile(kept, path)
    change_another_month(store)
    second = publish_database(root_of(store))
    assert second.incremental and second.updated == KEPT, second
    # the kept file held the version `first` replaced: both runs' partitions were replaced in it
    assert sorted(second.replaced) == [
        "credit_usage/interval=day/month=2026-08",
        "credit_usage/interval=day/month=2026-10",
        "organizations",
        "project_usage_trends/month=2026-10",
        "resource_usage/observed_date=2026-10-21",
    ]
    assert second.line().startswith("by slice (the kept previous file updated), 5 partition(s)")
    expected = full_rebuild_of(root_of(store), tmp_path)
    assert contents(path) == expected
    assert contents(kept) != expected, "the version `second` replaced is kept"
    assert not list(path.parent.glob(".*.tmp*"))
    # a kept file that is the published one (a publish stopped between linking and renaming)
    kept.unlink()
    os.link(path, kept)
    third = publish_database(root_of(store))
    assert third.incremental and third.updated == COPY
    assert contents(path) == expected
    # removing data on purpose (forget, prune) keeps no version that still holds it
    store.replace_table(ORGANIZATIONS, organizations(["a", "b"], datetime(2026, 10, 22)))
    assert publish_database(root_of(store), keep_previous=False).updated == KEPT
    assert not kept.exists()


def test_after_a_backfill_a_copy_is_kept_and_a_version_far_behind_is_not_updated(
    store: ParquetStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publisher, "KEPT_MAX_EXTRA_SHARE", 0.2)
    monkeypatch.setattr(publisher, "KEPT_COPY_AFTER_SHARE", 0.5)
    path = root_of(store) / DATABASE_NAME
    kept = kept_path(path)
    before_backfill = path.read_bytes()
    for month in MONTHS:  # a backfill: every month re-pulled with other numbers
        store.replace_partition(
            CREDIT_USAGE,
            {"interval": "day", "month": month},
            usage_month(month, ["a", "b", "c"], scale=5),
        )
    assert publish_database(root_of(store)).incremental
    assert contents(kept) == contents(path), "it replaced much: a copy of the new file is kept"
    store.replace_table(ORGANIZATIONS, organizations(["a", "b", "c"], datetime(2026, 10, 22)))
    daily = publish_database(root_of(store))
    assert daily.updated == KEPT and daily.replaced == ["organizations"]
    # a kept version a whole backfill behind (left by an interrupted copy, or an older release)
    kept.unlink()
    kept.write_bytes(before_backfill)
    store.replace_table(ORGANIZATIONS, organizations(["a", "b", "c"], datetime(2026, 10, 23)))
    later = publish_database(root_of(store))
    assert later.incremental and later.updated == COPY and later.replaced == ["organizations"]
    assert contents(path) == full_rebuild_of(root_of(store), tmp_path)


def test_an_open_analyst_session_keeps_its_snapshot(store: ParquetStore) -> None:
    """Its version is replaced, then kept; a later publish must not update it in place while
    the session (in this process: DuckDB's locks do not tell) still reads it."""
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
        assert _held_open_here(kept_path(path)), "the session's version is the kept one"
        change_another_month(store)
        again = publish_database(root_of(store))
        assert again.incremental and again.updated == COPY, "the reader's version is not updated"
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
    assert after is not None and before is not None and after != before
    assert publish_database(root_of(store)).updated == KEPT, "once the readers are gone"


def _held_open_here(path: Path) -> bool:
    """Whether this process holds a descriptor on `path`'s file."""
    wanted = path.stat()
    for entry in os.scandir("/proc/self/fd"):
        try:
            held = os.stat(entry.path)
        except OSError:
            continue
        if (held.st_dev, held.st_ino) == (wanted.st_dev, wanted.st_ino):
            return True
    return False


READER = """
import sys
from warehouse.readonly import connect_readonly
con = connect_readonly(sys.argv[1])
sql = "SELECT count(*), sum(credits) FROM credit_usage"
for _ in sys.stdin:
    print(con.execute(sql).fetchone(), flush=True)
"""


def test_a_reader_in_another_process_keeps_its_version_across_two_publishes(
    store: ParquetStore,
) -> None:
    import subprocess
    import sys

    root = root_of(store)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert reader.stdin is not None and reader.stdout is not None

    def ask() -> str:
        assert reader.stdin is not None and reader.stdout is not None
        reader.stdin.write("?\n")
        reader.stdin.flush()
        return reader.stdout.readline()

    try:
        before = ask()
        assert before.startswith("(")
        change_one_month(store)
        assert publish_database(root).updated == KEPT  # the full build's copy
        change_another_month(store)
        again = publish_database(root)  # the kept file is the reader's: DuckDB cannot lock it
        assert again.incremental and again.updated == COPY
        assert ask() == before
    finally:
        reader.stdin.close()
        reader.wait(timeout=60)
    assert reader.returncode == 0
    assert publish_database(root).updated == KEPT, "once the reader is gone"


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
    # the kept version from before is compact: it takes the deletions too, by slice
    assert publish_database(root_of(store)).updated == KEPT
    compacted = publish_database(root_of(store))  # both versions now hold the deleted rows
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
    from the flow's first step on (the integrity check before it writes files too)."""

    def __init__(self, step: str, first: str) -> None:
        self.step, self.first = step, first
        self.armed = False

    def at(self, name: str) -> None:
        self.armed = self.armed or name.startswith(self.first)
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


# Every kind of step of an incremental publish, in order: updating a copy of the published file
# or the kept previous one (renamed to a temporary first); both keep the file they replace.
UPDATE_STEPS = [
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
    "os.link",
    "commit_temporary",
    "fsync_dir",
]
STEPS = {
    "copy": ["copy_file", *UPDATE_STEPS],
    # the same update (the copy's steps above), of the kept file under a temporary name: the
    # rename, the commit, and every step from the fsync on
    "kept": ["os.rename", "sql COMMIT", *UPDATE_STEPS[UPDATE_STEPS.index("os.fsync") :]],
}


def _publish_and_die(root: Path, step: str, first: str) -> None:
    """In a forked child: publish, killed at `step` (exit 0 when the step never came)."""
    import warehouse.files as files

    killer = Killer(step, first)
    real_connect = duckdb.connect
    publisher.copy_file = killer.wrap("copy_file", publisher.copy_file)  # type: ignore[assignment]
    publisher.commit_temporary = killer.wrap(  # type: ignore[assignment]
        "commit_temporary", publisher.commit_temporary
    )
    files.os.fsync = killer.wrap("os.fsync", os.fsync)  # type: ignore[assignment]
    publisher.os.rename = killer.wrap("os.rename", os.rename)  # type: ignore[assignment]
    publisher.os.link = killer.wrap("os.link", os.link)  # type: ignore[assignment]
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


@pytest.mark.parametrize("flow", ["copy", "kept"])
def test_kill_9_at_every_step_of_an_incremental_publish(
    store: ParquetStore, tmp_path: Path, flow: str
) -> None:
    root = root_of(store)
    path = root / DATABASE_NAME
    kept = kept_path(path)
    previous = path.read_bytes()
    change_one_month(store)
    expected_new = full_rebuild_of(root, tmp_path)
    killed = []
    for step in STEPS[flow]:
        if flow == "copy":
            kept.unlink(missing_ok=True)
        elif not kept.exists() or os.path.samefile(kept, path):
            kept.unlink(missing_ok=True)  # what the previous kill left: a kept version again
            kept.write_bytes(previous)
        status = run_forked(lambda step=step: _publish_and_die(root, step, STEPS[flow][0]))
        assert status in (-signal.SIGKILL, 0), (step, status)
        if status == -signal.SIGKILL:
            killed.append(step)
        if step != "fsync_dir":  # killed before the rename: the previous file, byte for byte
            assert path.read_bytes() == previous, f"killed at {step}"
    assert killed == STEPS[flow], "every step was reached and killed"
    assert contents(path) == expected_new, "killed after the rename: the new file, whole"
    assert os.path.samefile(kept, path) is False and kept.read_bytes() == previous
    assert remove_stale_temporaries(root) > 0, "the killed publishes left temporaries"
    assert not list(root.glob(".*.tmp*")), "their copies and write-ahead logs are cleaned up"
    result = publish_database(root)
    assert result.incremental and result.updated == KEPT, result
    assert contents(path) == expected_new
