"""Retention (`usage-etl prune`): old resource_usage snapshots thin out to one a day, nothing else.

History is built with the ParquetStore API (snapshot files with distinct `observed_at` on chosen
days), on top of a real pipeline run where the other tables matter, so the tables analysts rely on
can be compared before and after byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from common import settings
from pipelines import retention
from pipelines.cli import main
from tests.services.cli import held_run, usage_etl_in_process
from tests.services.emulator import Pipeline
from tests.services.warehouse_files import query_published
from warehouse.files import writer_lock
from warehouse.parquet_store import ParquetStore
from warehouse.publish import DATABASE_NAME, kept_path, publish
from warehouse.schema import RESOURCE_USAGE

TODAY = date(2026, 11, 28)
ORGS = ["org-a", "org-b"]


def write_snapshot(
    warehouse: Path, observed_at: datetime, orgs: list[str] = ORGS, name: str | None = None
) -> Path:
    """One resource_usage snapshot file, as the `resource_usage` asset writes it."""
    frame = pd.DataFrame(
        {
            "organization_id": orgs,
            "observed_at": [observed_at] * len(orgs),
            "projects": [observed_at.hour] * len(orgs),
            "users": [observed_at.minute] * len(orgs),
        }
    )
    store = ParquetStore(warehouse)
    filename = name or f"snapshot-{observed_at:%Y%m%dT%H%M%S%f}.parquet"
    partition = {"observed_date": observed_at.date().isoformat()}
    store.append_file(RESOURCE_USAGE, partition, filename, frame)
    return store.partition_path(RESOURCE_USAGE, partition, filename)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute)


def build_history(warehouse: Path, today: date) -> dict[str, list[Path]]:
    """Snapshots on five days; returns the files a 3-day prune keeps and removes."""
    keep: list[Path] = []
    remove: list[Path] = []
    # Day -10: three runs; the 18:00 one is the day's last.
    d = today - timedelta(days=10)
    remove += [write_snapshot(warehouse, at(d, 6)), write_snapshot(warehouse, at(d, 12))]
    keep.append(write_snapshot(warehouse, at(d, 18)))
    # Day -5: the file name sorts last but holds the earlier observation: observed_at decides.
    d = today - timedelta(days=5)
    keep.append(write_snapshot(warehouse, at(d, 23, 59), name="snapshot-a-late.parquet"))
    remove.append(write_snapshot(warehouse, at(d, 1), name="snapshot-z-early.parquet"))
    # Day -4: a single snapshot stays.
    keep.append(write_snapshot(warehouse, at(today - timedelta(days=4), 6)))
    # Day -3 (the cutoff), day -1 and today: everything stays.
    for offset in (3, 1, 0):
        d = today - timedelta(days=offset)
        keep += [write_snapshot(warehouse, at(d, 6)), write_snapshot(warehouse, at(d, 7))]
    return {"keep": sorted(keep), "remove": sorted(remove)}


def parquet_files(warehouse: Path) -> dict[str, str]:
    """Every Parquet file under the warehouse (relative path -> sha256)."""
    root = warehouse / "parquet"
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.parquet"))
    }


def test_plan_keeps_recent_days_whole_and_the_last_snapshot_of_older_days(tmp_path: Path) -> None:
    expected = build_history(tmp_path, TODAY)
    plan = retention.plan_prune(tmp_path, 3, TODAY)
    assert plan.cutoff == TODAY - timedelta(days=3)
    assert plan.keep == expected["keep"]
    assert plan.remove == expected["remove"]
    assert not plan.unrecognized


def test_plan_edge_cases(tmp_path: Path) -> None:
    assert retention.plan_prune(tmp_path, 3, TODAY).keep == []  # no warehouse yet
    with pytest.raises(ValueError, match="keep-days"):
        retention.cutoff_day(-1, TODAY)
    build_history(tmp_path, TODAY)
    everything = retention.plan_prune(tmp_path, 365, TODAY)
    assert everything.remove == []
    only_today = retention.plan_prune(tmp_path, 0, TODAY)
    days = {p.parent.name for p in only_today.keep}
    assert len(only_today.keep) == len(days) + 1  # one a day, plus today's second snapshot


def test_prune_removes_exactly_the_planned_files_and_republishes(tmp_path: Path) -> None:
    expected = build_history(tmp_path, TODAY)
    publish(tmp_path)
    publish(tmp_path)  # the first version is kept for the next publish to update
    kept = kept_path(tmp_path / DATABASE_NAME)
    assert kept.exists()
    before = query_published(tmp_path, "select count(*) from resource_usage")[0][0]
    result = retention.prune_warehouse(tmp_path, 3, today=TODAY)
    assert not kept.exists(), "no version holding the pruned rows is kept"
    assert sorted(ParquetStore(tmp_path).files(RESOURCE_USAGE)) == expected["keep"]
    assert not any(p.exists() for p in expected["remove"])
    assert result.published is not None
    assert result.published["resource_usage"] == before - len(ORGS) * len(expected["remove"])
    rows = query_published(
        tmp_path,
        """select cast(observed_at as date) as day, count(distinct observed_at)
           from resource_usage group by 1 order by 1""",
    )
    assert rows == [
        (TODAY - timedelta(days=10), 1),
        (TODAY - timedelta(days=5), 1),
        (TODAY - timedelta(days=4), 1),
        (TODAY - timedelta(days=3), 2),
        (TODAY - timedelta(days=1), 2),
        (TODAY, 2),
    ]
    latest_day5 = query_published(
        tmp_path,
        f"select max(observed_at) from resource_usage "
        f"where cast(observed_at as date) = '{TODAY - timedelta(days=5)}'",
    )[0][0]
    assert latest_day5 == at(TODAY - timedelta(days=5), 23, 59)
    assert not any((tmp_path / retention.TRASH_DIR).iterdir())
    # A second prune finds nothing more to do and leaves the database alone.
    again = retention.prune_warehouse(tmp_path, 3, today=TODAY)
    assert again.plan.remove == [] and again.published is None


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    expected = build_history(tmp_path, TODAY)
    publish(tmp_path)
    files = parquet_files(tmp_path)
    database = (tmp_path / DATABASE_NAME).read_bytes()
    result = retention.prune_warehouse(tmp_path, 3, dry_run=True, today=TODAY)
    assert result.plan.remove == expected["remove"]
    assert result.removed_bytes > 0
    assert parquet_files(tmp_path) == files
    assert (tmp_path / DATABASE_NAME).read_bytes() == database
    assert "would remove 3" in result.lines()[0]


def test_trash_left_by_an_interrupted_prune_is_emptied(tmp_path: Path) -> None:
    build_history(tmp_path, TODAY)
    leftover = tmp_path / retention.TRASH_DIR / "prune-crashed" / "parquet" / "x.parquet"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half-deleted")
    result = retention.prune_warehouse(tmp_path, 3, today=TODAY)
    assert result.trash_cleared == 1
    assert not (tmp_path / retention.TRASH_DIR / "prune-crashed").exists()
    assert any("trash" in line for line in result.lines())


def test_prune_waits_for_the_writer_lock(tmp_path: Path) -> None:
    expected = build_history(tmp_path, TODAY)
    finished = threading.Event()
    errors: list[BaseException] = []

    def prune() -> None:
        try:
            retention.prune_warehouse(tmp_path, 3, today=TODAY)
        except BaseException as exc:
            errors.append(exc)
        finally:
            finished.set()

    with writer_lock(tmp_path):
        worker = threading.Thread(target=prune)
        worker.start()
        assert not finished.wait(0.5), "prune ran while a writer held the lock"
        assert all(p.exists() for p in expected["remove"])
    assert finished.wait(60)
    worker.join()
    assert not errors
    assert not any(p.exists() for p in expected["remove"])


def test_prune_after_real_runs_leaves_analyst_tables_unchanged(
    pipeline_after_demo_run: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    from dagster import DagsterInstance

    # a private copy of the session's demo run: its warehouse and its Dagster run history
    warehouse = pipeline_after_demo_run.warehouse
    # Older history, as earlier runs would have left it, for the organizations just loaded.
    orgs = [r[0] for r in query_published(warehouse, "select organization_id from organizations")]
    today = datetime.now(UTC).date()
    old: list[Path] = []
    for offset in (40, 39):
        day = today - timedelta(days=offset)
        old += [write_snapshot(warehouse, at(day, h), orgs) for h in (6, 12, 18)]
    others_before = {
        k: v for k, v in parquet_files(warehouse).items() if not k.startswith("resource_usage/")
    }
    credit_before = query_published(warehouse, "select * from credit_usage order by all")
    orgs_before = query_published(warehouse, "select * from organizations order by all")
    users_before = query_published(warehouse, "select * from organization_users order by all")

    code = main(["prune", "--keep-days", "30", "--warehouse", str(warehouse)])
    assert code == 0
    out = capsys.readouterr().out
    assert "removed 4 (" in out and "republished usage.duckdb" in out

    remaining = ParquetStore(warehouse).files(RESOURCE_USAGE)
    assert [p for p in old if p in remaining] == [old[2], old[5]]  # the 18:00 of each day
    others_after = {
        k: v for k, v in parquet_files(warehouse).items() if not k.startswith("resource_usage/")
    }
    assert others_after == others_before
    assert query_published(warehouse, "select * from credit_usage order by all") == credit_before
    assert query_published(warehouse, "select * from organizations order by all") == orgs_before
    assert (
        query_published(warehouse, "select * from organization_users order by all") == users_before
    )
    per_day = query_published(
        warehouse,
        "select cast(observed_at as date), count(distinct observed_at) from resource_usage "
        "group by 1 order by 1",
    )
    assert per_day[:2] == [(today - timedelta(days=40), 1), (today - timedelta(days=39), 1)]
    assert per_day[-1] == (today, 1)  # this run's snapshot

    # Dagster run history: nothing is older than a day; with a window of 0 days the run goes.
    home = settings.dagster_home(warehouse)
    environ = dict(os.environ)
    history = ["--dagster-history", "--dry-run", "--warehouse", str(warehouse)]
    assert main(["prune", "--keep-days", "0", *history]) == 0
    # the cutoff is a moment (now), not a day: the run created minutes ago is before it
    said = re.search(
        r"^dagster: would delete 1 finished run\(s\) created before (.+) UTC$",
        capsys.readouterr().out,
        re.M,
    )
    assert said, "the line names the moment runs were created before"
    with DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        created = instance.get_run_record_by_id(run.run_id).create_timestamp
    assert created.replace(tzinfo=UTC) < datetime.fromisoformat(said[1]).replace(tzinfo=UTC)
    assert dict(os.environ) == environ, "prune opens the instance at its home, env untouched"
    assert retention.prune_dagster_runs(1, home).runs == 0
    with DagsterInstance.from_config(str(home)) as instance:
        assert len(instance.get_runs()) == 1
    later = datetime.now(UTC) + timedelta(seconds=1)
    assert retention.prune_dagster_runs(0, home, dry_run=True, now=later).runs == 1
    assert retention.prune_dagster_runs(0, home, now=later).runs == 1
    with DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_runs() == []


@pytest.mark.long
def test_a_run_killed_outright_is_marked_failed_and_pruned(tmp_path: Path) -> None:
    """`kill -9` of a `usage-etl run` mid-step leaves its Dagster run STARTED (nothing records
    its end); `prune --dagster-history` marks it failed (Dagster's `report_run_failed`: its
    process is gone) and, being finished then, prunes it with the others."""
    from dagster import DagsterInstance, DagsterRunStatus

    with held_run(tmp_path) as held:
        env, warehouse = held.env, held.warehouse
        os.killpg(held.process.pid, signal.SIGKILL)
        held.process.wait(timeout=60)
    with DagsterInstance.from_config(str(tmp_path / "dagster")) as instance:
        (run,) = instance.get_runs()
        assert run.status == DagsterRunStatus.STARTED, "what a killed run leaves behind"

    args = ["prune", "--keep-days", "0", "--dagster-history", "--warehouse", str(warehouse)]
    dry = usage_etl_in_process(*args, "--dry-run", env=env)
    assert dry.code == 0, dry
    assert "dagster: would mark 1 run(s) failed that a killed usage-etl process left started" in (
        dry.out
    )
    assert "dagster: would delete 1 finished run(s) created before " in dry.out
    with DagsterInstance.from_config(str(tmp_path / "dagster")) as instance:
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED

    done = usage_etl_in_process(*args, env=env)
    assert done.code == 0, done
    assert "dagster: marked 1 run(s) failed that a killed usage-etl process left started" in (
        done.out
    )
    assert "dagster: deleted 1 finished run(s) created before " in done.out
    with DagsterInstance.from_config(str(tmp_path / "dagster")) as instance:
        assert instance.get_runs() == []


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["prune", "--keep-days", "-1", "--warehouse", str(tmp_path)]) == 2
    assert "expected 0 to 36,500 days" in capsys.readouterr().err
    assert main(["prune", "--keep-days", "3", "--warehouse", str(tmp_path / "none")]) == 2
    assert "no warehouse" in capsys.readouterr().err
    build_history(tmp_path, datetime.now(UTC).date())
    assert main(["prune", "--keep-days", "3", "--warehouse", str(tmp_path), "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "would remove 3" in captured.out
    assert captured.err.count("would remove parquet/resource_usage/") == 3


# ---- damaged snapshots: left alone by retention, dropped on purpose -------------------------


def manifest_names(warehouse: Path) -> set[str]:
    return set(ParquetStore(warehouse).manifest(RESOURCE_USAGE).load())


def test_drop_damaged_drops_a_superseded_snapshot_and_keeps_a_days_last_unless_all(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A lost snapshot followed by an intact one of the same day goes with `--drop-damaged`;
    a damaged one holding a day's last observation stays (exit 1, named) until `all`; intact
    files are never touched, and the removals go through the manifest."""
    day = TODAY - timedelta(days=1)
    lost = write_snapshot(tmp_path, at(day, 6))
    kept_after_lost = write_snapshot(tmp_path, at(day, 12))
    # the day's last snapshot for org-b: org-a has a later one, org-b does not
    last_of_b = write_snapshot(tmp_path, at(TODAY, 6))
    write_snapshot(tmp_path, at(TODAY, 7), orgs=["org-a"])
    publish(tmp_path)
    lost.unlink()
    last_of_b.write_bytes(last_of_b.read_bytes()[:100])  # truncated: unreadable
    intact_before = {k: v for k, v in parquet_files(tmp_path).items() if "T06" not in k}
    warehouse = ["--warehouse", str(tmp_path)]

    # retention alone leaves both alone and says so (a truncated file used to crash it)
    assert main(["prune", "--keep-days", "0", *warehouse]) == 1
    out = capsys.readouterr().out
    assert "left alone 2 damaged snapshot(s)" in out and lost.name in out
    assert "--drop-damaged" in out
    assert {lost.name, last_of_b.name} <= {Path(k).name for k in manifest_names(tmp_path)}

    assert main(["prune", "--drop-damaged", "--dry-run", *warehouse]) == 1
    assert f"would drop {lost}" in capsys.readouterr().out
    assert lost.name in {Path(k).name for k in manifest_names(tmp_path)}  # nothing changed

    assert main(["prune", "--drop-damaged", *warehouse]) == 1  # the day's last one remains
    out = capsys.readouterr().out
    assert f"dropped {lost} (missing)" in out
    assert f"kept {last_of_b}" in out and f"last snapshot of {TODAY}" in out and "org-b" in out
    assert "--drop-damaged all" in out
    names = {Path(k).name for k in manifest_names(tmp_path)}
    assert lost.name not in names and last_of_b.name in names
    assert kept_after_lost.exists()

    assert main(["prune", "--drop-damaged", "all", *warehouse]) == 0
    out = capsys.readouterr().out
    assert f"dropped {last_of_b}" in out and "org-b" in out and "lost" in out
    assert "republished usage.duckdb" in out
    assert not last_of_b.exists() and last_of_b.name not in manifest_names(tmp_path)
    assert parquet_files(tmp_path) == intact_before  # every intact file as it was
    assert main(["verify", *warehouse]) == 0
    assert not list((tmp_path / retention.TRASH_DIR).glob("*"))  # the trash emptied


def test_drop_damaged_leaves_an_unrecorded_file_and_intact_files_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = write_snapshot(tmp_path, at(TODAY, 6))
    write_snapshot(tmp_path, at(TODAY, 7))
    stray = first.parent / "snapshot-stray.parquet"
    stray.write_bytes(b"not parquet")
    before = parquet_files(tmp_path)
    assert main(["prune", "--drop-damaged", "all", "--warehouse", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"left alone {stray}" in out and "dropped 0 damaged" in out
    assert parquet_files(tmp_path) == before


def test_prune_needs_keep_days_or_drop_damaged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_snapshot(tmp_path, at(TODAY, 6))
    assert main(["prune", "--warehouse", str(tmp_path)]) == 2
    assert "expected --keep-days N (or only --drop-damaged)" in capsys.readouterr().err
    assert main(["prune", "--drop-damaged", "--dagster-history", "--warehouse", str(tmp_path)]) == 2
    assert "--dagster-history needs --keep-days" in capsys.readouterr().err
