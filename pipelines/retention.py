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

Damaged snapshots. A snapshot file that is missing, unreadable or differs from its manifest
record (`warehouse/manifest.py`) cannot be read and keeps every run from publishing; the API
cannot give a past snapshot back. Retention leaves such files alone (it ranks only intact ones).
`drop_damaged` (``usage-etl prune --drop-damaged``) removes them from the table: after a full
check under the writer lock (every file hashed: an intact file is never dropped), each damaged
snapshot whose organizations all have an intact snapshot later the same day (by file name, which
is the snapshot's time) is *superseded*: it holds no observation retention would keep, and goes.
One that holds some organization's last snapshot of its day is kept and named, unless asked for
``all``; then it goes and the output names the day and organizations that lose their last
observation of that day. Only slices with a manifest record are dropped (a file the manifest
does not know is left alone). The removal is staged in the manifest first, like every removal.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from common.errors import SNAPSHOT_REMEDY, IntegrityError, one_line
from warehouse.files import fsync_dir, writer_lock
from warehouse.manifest import BadSlice, CheckResult
from warehouse.parquet_store import ParquetStore
from warehouse.publish import publish
from warehouse.schema import RESOURCE_USAGE

TRASH_DIR = ".trash"
PARTITION_KEY = "observed_date"
DROP_SUPERSEDED = "superseded"
DROP_ALL = "all"
DROP_CHOICES = (DROP_SUPERSEDED, DROP_ALL)


@dataclass
class PrunePlan:
    """Which `resource_usage` snapshot files stay and which go (paths are absolute)."""

    cutoff: date
    keep: list[Path] = field(default_factory=list)
    remove: list[Path] = field(default_factory=list)
    unrecognized: list[Path] = field(default_factory=list)


@dataclass
class Dropped:
    """A damaged snapshot and the organizations whose last snapshot of its day it holds (no
    intact snapshot of theirs later that day): empty when it is superseded."""

    bad: BadSlice
    day: date
    last_of_day: list[str] = field(default_factory=list)


@dataclass
class DropPlan:
    """What `--drop-damaged` does with each damaged `resource_usage` snapshot."""

    mode: str
    drop: list[Dropped] = field(default_factory=list)
    keep: list[Dropped] = field(default_factory=list)
    """Damaged, but the last snapshot of its day for some organization (mode superseded)."""
    left_alone: list[BadSlice] = field(default_factory=list)
    """Damaged files the manifest has no record of, or outside `observed_date=` directories."""


@dataclass
class PruneResult:
    plan: PrunePlan | None
    dry_run: bool
    removed_bytes: int = 0
    published: dict[str, int] | None = None
    trash_cleared: int = 0
    dagster: RunHistoryPrune | None = None
    damaged: list[BadSlice] = field(default_factory=list)
    """Damaged snapshots found (retention leaves them alone)."""
    drop: DropPlan | None = None
    not_published: str | None = None
    """Why `usage.duckdb` was not republished after a removal (damaged slices remain)."""

    @property
    def ok(self) -> bool:
        """Nothing is left that keeps a run from publishing, as far as this prune saw."""
        remaining = self.drop.keep + self.drop.left_alone if self.drop else self.damaged
        return not remaining and self.not_published is None

    def lines(self) -> list[str]:
        verb = "would remove" if self.dry_run else "removed"
        out = self._drop_lines()
        if self.drop is None and self.damaged:
            out.append(
                f"resource_usage: left alone {len(self.damaged)} damaged snapshot(s): "
                + "; ".join(b.describe() for b in self.damaged)
                + f". {SNAPSHOT_REMEDY[:1].upper()}{SNAPSHOT_REMEDY[1:]}"
            )
        if self.plan is None:
            return out + self._tail_lines()
        out.append(
            f"resource_usage: kept {len(self.plan.keep)} snapshot files, {verb} "
            f"{len(self.plan.remove)} ({self.removed_bytes / 1e6:.1f} MB); every snapshot since "
            f"{self.plan.cutoff}, the last of each earlier day",
        )
        if self.plan.unrecognized:
            out.append(
                f"left alone {len(self.plan.unrecognized)} file(s) outside "
                f"`{PARTITION_KEY}=YYYY-MM-DD/` directories"
            )
        return out + self._tail_lines()

    def _drop_lines(self) -> list[str]:
        if self.drop is None:
            return []
        verb = "would drop" if self.dry_run else "dropped"
        out = [
            f"resource_usage: {verb} {len(self.drop.drop)} damaged snapshot(s), kept "
            f"{len(self.drop.keep) + len(self.drop.left_alone)} damaged"
        ]
        for each in self.drop.drop:
            line = f"{verb} {each.bad.describe()}"
            if each.last_of_day:
                line += (
                    f": the last snapshot of {each.day} of {len(each.last_of_day)} "
                    f"organization(s) ({', '.join(each.last_of_day)}), whose observations of "
                    "that day are lost"
                )
            out.append(line)
        for each in self.drop.keep:
            out.append(
                f"kept {each.bad.describe()}: the last snapshot of {each.day} of "
                f"{len(each.last_of_day)} organization(s) ({', '.join(each.last_of_day)}); "
                "restore it from a backup, or drop it and that day's last observation with "
                "`usage-etl prune --drop-damaged all`"
            )
        for bad in self.drop.left_alone:
            out.append(
                f"left alone {bad.describe()}: not a recorded `{PARTITION_KEY}=YYYY-MM-DD/` "
                "snapshot; remove or restore it by hand"
            )
        return out

    def _tail_lines(self) -> list[str]:
        out = []
        if self.trash_cleared:
            out.append(f"emptied {self.trash_cleared} trash folder(s) left by an interrupted prune")
        if self.published is not None:
            out.append(f"republished usage.duckdb: {sum(self.published.values())} rows")
        if self.not_published is not None:
            out.append(f"usage.duckdb not republished: {self.not_published}")
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


def plan_prune(
    warehouse: Path, keep_days: int, today: date, damaged: Collection[Path] = ()
) -> PrunePlan:
    """Decide, without changing anything, which `resource_usage` files a prune removes; the
    ``damaged`` files are left alone (neither ranked nor removed)."""
    store = ParquetStore(Path(warehouse))
    table_dir = store.table_dir(RESOURCE_USAGE)
    plan = PrunePlan(cutoff=cutoff_day(keep_days, today))
    old_days: dict[date, list[Path]] = defaultdict(list)
    for path in store.files(RESOURCE_USAGE):
        if path in damaged:
            continue
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


def plan_drop(check: CheckResult, table_dir: Path, mode: str) -> DropPlan:
    """What `--drop-damaged` (``mode``: superseded or all) does with each damaged snapshot of
    a `resource_usage` check (see module doc)."""
    plan = DropPlan(mode)
    later: dict[date, list[tuple[str, set[str]]]] = defaultdict(list)
    for key, record in check.good.items():
        day = _day_of(table_dir / key, table_dir)
        if day is not None:
            held = {o for o, sums in record.organizations.items() if sums.rows}
            later[day].append((Path(key).name, held))
    for bad in check.bad:
        day = _day_of(bad.path, table_dir)
        if bad.record is None or day is None:
            plan.left_alone.append(bad)
            continue
        covered = {o for name, held in later[day] if name > bad.path.name for o in held}
        held = {o for o, sums in bad.record.organizations.items() if sums.rows}
        each = Dropped(bad, day, sorted(held - covered))
        if each.last_of_day and mode != DROP_ALL:
            plan.keep.append(each)
        else:
            plan.drop.append(each)
    return plan


def prune_warehouse(
    warehouse: Path,
    keep_days: int | None,
    *,
    dry_run: bool = False,
    today: date | None = None,
    drop_damaged: str | None = None,
) -> PruneResult:
    """Apply the retention policy to `resource_usage` (unless ``keep_days`` is None), drop its
    damaged snapshots (``drop_damaged``: superseded or all; see module doc) and republish
    `usage.duckdb` when something went.

    With `dry_run` nothing changes (not even leftover trash); the result tells what would go.
    """
    warehouse = Path(warehouse)
    today = today or datetime.now(UTC).date()
    store = ParquetStore(warehouse)
    manifest = store.manifest(RESOURCE_USAGE)
    full = drop_damaged is not None  # dropping needs every file hashed: never an intact one
    with contextlib.nullcontext() if dry_run else writer_lock(warehouse):
        cleared = 0 if dry_run else clear_trash(warehouse)
        check = manifest.check(full=full) if dry_run else manifest.reconcile(full=full)
        damaged = [b.path for b in check.bad]
        plan = None if keep_days is None else plan_prune(warehouse, keep_days, today, damaged)
        result = PruneResult(plan, dry_run, trash_cleared=cleared, damaged=check.bad)
        if drop_damaged is not None:
            result.drop = plan_drop(check, store.table_dir(RESOURCE_USAGE), drop_damaged)
        dropped = [each.bad.path for each in result.drop.drop] if result.drop else []
        doomed = (plan.remove if plan else []) + dropped
        result.removed_bytes = sum(p.stat().st_size for p in doomed if p.exists())
        if dry_run or not doomed:
            return result
        manifest.stage({}, removals=doomed)  # recorded first: a crash leaves no stray slice
        batch = _move_to_trash(warehouse, [p for p in doomed if p.exists()])
        manifest.commit(removed=doomed)
        try:
            result.published = publish(warehouse, keep_previous=False)  # none with removed rows
        except IntegrityError as exc:  # damaged slices remain: the next good run publishes
            result.not_published = one_line(str(exc))
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
