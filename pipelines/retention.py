"""Retention: thin out old `resource_usage` snapshots, keep one per day; optionally old run history.

`resource_usage` grows by one Parquet file per run (`observed_date=<day>/snapshot-<stamp>.parquet`).
Policy, for `keep_days = N` and today's UTC date `T`:
- every snapshot observed on or after `T - N` days is kept;
- for each older day, only the latest snapshot of that day is kept (the one with the greatest
  `observed_at`; ties and empty files by file name), so the history analysts rely on stays daily;
- nothing else is touched: `credit_usage`, `organizations`, `organization_users` and any other
  table keep every file.

Removal is crash-safe and serialized with runs: under the warehouse's `writer_lock`, doomed files
are renamed into `<warehouse>/.trash/prune-<id>/` (same filesystem, so each rename is atomic and
readers see a file whole or not at all), the directories are fsynced, `usage.duckdb` is
republished from the remaining files (atomic swap, as a run does), and only then is the trash
deleted. A crash leaves either the file in place or in the trash; a later prune empties leftover
trash. Dagster's run history (finished runs created more than N days before now, with their
event logs) can be pruned too; runs left `STARTED` by a `usage-etl run` process that was killed
are first marked failed (`pipelines/run_owner.py`), so they are finished and pruned in turn.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from warehouse.files import fsync_dir, writer_lock
from warehouse.parquet_store import ParquetStore
from warehouse.publish import publish
from warehouse.schema import RESOURCE_USAGE

TRASH_DIR = ".trash"
PARTITION_KEY = "observed_date"


@dataclass
class PrunePlan:
    """Which `resource_usage` snapshot files stay and which go (paths are absolute)."""

    cutoff: date
    keep: list[Path] = field(default_factory=list)
    remove: list[Path] = field(default_factory=list)
    unrecognized: list[Path] = field(default_factory=list)


@dataclass
class PruneResult:
    plan: PrunePlan
    dry_run: bool
    removed_bytes: int = 0
    published: dict[str, int] | None = None
    trash_cleared: int = 0
    dagster: RunHistoryPrune | None = None

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        out = [
            f"resource_usage: kept {len(self.plan.keep)} snapshot files, {verb} "
            f"{len(self.plan.remove)} ({self.removed_bytes / 1e6:.1f} MB); every snapshot since "
            f"{self.plan.cutoff}, the last of each earlier day",
        ]
        if self.plan.unrecognized:
            out.append(
                f"left alone {len(self.plan.unrecognized)} file(s) outside "
                f"`{PARTITION_KEY}=YYYY-MM-DD/` directories"
            )
        if self.trash_cleared:
            out.append(f"emptied {self.trash_cleared} trash folder(s) left by an interrupted prune")
        if self.published is not None:
            out.append(f"republished usage.duckdb: {sum(self.published.values())} rows")
        if self.dagster is not None:
            out.extend(self.dagster.lines(self.dry_run))
        return out


@dataclass
class RunHistoryPrune:
    """What `prune_dagster_runs` did (with `dry_run`: would do)."""

    cutoff: datetime  # runs created before this moment go
    runs: int = 0  # finished runs deleted
    orphans: int = 0  # started runs whose usage-etl process is gone, marked failed

    def lines(self, dry_run: bool) -> list[str]:
        out = []
        if self.orphans:
            verb = "would mark" if dry_run else "marked"
            out.append(
                f"dagster: {verb} {self.orphans} run(s) failed that a killed usage-etl process "
                "left started"
            )
        verb = "would delete" if dry_run else "deleted"
        out.append(
            f"dagster: {verb} {self.runs} finished run(s) created before "
            f"{self.cutoff.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
        )
        return out


def cutoff_day(keep_days: int, today: date) -> date:
    """The first day whose snapshots are all kept."""
    if keep_days < 0:
        raise ValueError(f"--keep-days {keep_days}: expected 0 or more days")
    return today - timedelta(days=keep_days)


def _day_of(path: Path, table_dir: Path) -> date | None:
    """The `observed_date=` partition of a snapshot file, None if it is not directly under one."""
    if path.parent.parent != table_dir:
        return None
    key, _, value = path.parent.name.partition("=")
    if key != PARTITION_KEY:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


def _latest_observation(path: Path) -> tuple[int, object, str]:
    """Sort key of a snapshot within its day: files with rows by max `observed_at`, then name."""
    column = pq.read_table(path, columns=["observed_at"]).column("observed_at")
    latest = pc.max(column).as_py() if len(column) else None
    return (0, None, path.name) if latest is None else (1, latest, path.name)


def plan_prune(warehouse: Path, keep_days: int, today: date) -> PrunePlan:
    """Decide, without changing anything, which `resource_usage` files a prune removes."""
    store = ParquetStore(Path(warehouse))
    table_dir = store.table_dir(RESOURCE_USAGE)
    plan = PrunePlan(cutoff=cutoff_day(keep_days, today))
    old_days: dict[date, list[Path]] = defaultdict(list)
    for path in store.files(RESOURCE_USAGE):
        day = _day_of(path, table_dir)
        if day is None:
            plan.unrecognized.append(path)
        elif day >= plan.cutoff:
            plan.keep.append(path)
        else:
            old_days[day].append(path)
    for day in sorted(old_days):
        files = old_days[day]
        if len(files) == 1:
            plan.keep.append(files[0])
            continue
        ranked = sorted(files, key=_latest_observation)
        plan.keep.append(ranked[-1])
        plan.remove.extend(ranked[:-1])
    plan.keep.sort()
    plan.remove.sort()
    return plan


def clear_trash(warehouse: Path) -> int:
    """Delete trash folders left by an interrupted prune; returns how many there were."""
    trash = Path(warehouse) / TRASH_DIR
    if not trash.exists():
        return 0
    folders = [p for p in trash.iterdir() if p.is_dir()]
    for folder in folders:
        shutil.rmtree(folder)
    return len(folders)


def _move_to_trash(warehouse: Path, files: list[Path]) -> Path:
    """Rename `files` into a new trash folder (atomic per file), fsyncing every directory."""
    batch = Path(warehouse) / TRASH_DIR / f"prune-{uuid.uuid4().hex}"
    batch.mkdir(parents=True)
    fsync_dir(batch.parent)
    root = Path(warehouse)
    touched: set[Path] = set()
    for path in files:
        target = batch / path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(path, target)
        touched.add(path.parent)
        touched.add(target.parent)
    for directory in sorted(touched):
        fsync_dir(directory)
    return batch


def prune_warehouse(
    warehouse: Path, keep_days: int, *, dry_run: bool = False, today: date | None = None
) -> PruneResult:
    """Apply the retention policy to `resource_usage` and republish `usage.duckdb`.

    With `dry_run` nothing changes (not even leftover trash); the result tells what would go.
    """
    warehouse = Path(warehouse)
    today = today or datetime.now(UTC).date()
    if dry_run:
        plan = plan_prune(warehouse, keep_days, today)
        return PruneResult(plan, True, removed_bytes=sum(p.stat().st_size for p in plan.remove))
    with writer_lock(warehouse):
        cleared = clear_trash(warehouse)
        plan = plan_prune(warehouse, keep_days, today)
        result = PruneResult(plan, False, trash_cleared=cleared)
        if not plan.remove:
            return result
        result.removed_bytes = sum(p.stat().st_size for p in plan.remove)
        manifest = ParquetStore(warehouse).manifest(RESOURCE_USAGE)
        manifest.stage({}, removals=plan.remove)  # recorded first: a crash leaves no stray slice
        batch = _move_to_trash(warehouse, plan.remove)
        manifest.commit(removed=plan.remove)
        result.published = publish(warehouse, keep_previous=False)  # none holding pruned rows
        shutil.rmtree(batch)
    return result


def prune_dagster_runs(
    keep_days: int, home: Path, *, dry_run: bool = False, now: datetime | None = None
) -> RunHistoryPrune:
    """Delete finished Dagster runs created more than `keep_days` days before `now` (a moment,
    not a day: `keep_days` 0 deletes every finished run) with their event logs, after marking
    failed the runs a killed `usage-etl run` left started (`run_owner.fail_orphaned_runs`).

    Uses the instance at `home` (its `dagster.yaml`; `common.settings.dagster_home`). Asset
    materialization history goes with its runs, so the UI's "last materialized" of an asset
    untouched for longer than the window disappears too.
    """
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    from pipelines.run_owner import fail_orphaned_runs, orphaned_runs

    now = now or datetime.now(UTC)
    result = RunHistoryPrune(cutoff=now - timedelta(days=keep_days))
    finished = [
        DagsterRunStatus.SUCCESS,
        DagsterRunStatus.FAILURE,
        DagsterRunStatus.CANCELED,
    ]
    with DagsterInstance.from_config(str(home)) as instance:
        orphans = [run_id for run_id, _ in orphaned_runs(instance)]
        if dry_run:
            result.orphans = len(orphans)
        else:
            result.orphans = len(fail_orphaned_runs(instance))
        records = instance.get_run_records(
            RunsFilter(statuses=finished, created_before=result.cutoff)
        )
        result.runs = len(records)
        if dry_run:
            if orphans:  # they would be finished by then: deleted as well when old enough
                old = RunsFilter(run_ids=orphans, created_before=result.cutoff)
                result.runs += len(instance.get_run_records(old))
            return result
        for record in records:
            instance.delete_run(record.dagster_run.run_id)
        return result
