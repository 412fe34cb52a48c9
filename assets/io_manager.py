"""The warehouse IO manager: it alone writes an asset's rows as slices of its warehouse table.

An asset declares its table once, with `writes_table(CREDIT_USAGE, interval="day")` as its
definition metadata (and `io_manager_key=WAREHOUSE_IO_MANAGER`), and returns
`Output(value, metadata=...)`. `WarehouseIOManager.handle_output` then takes the warehouse writer
lock, reads what it must keep, and replaces the slices through `ParquetStore.write_files`: one
recorded manifest change (atomic slice replacement, digests), so a crash leaves the warehouse as
before or as after, and a re-run with the same rows writes the same files.

The asset's Dagster partitions map to slices: a partition key (a month, `2026-01-01`) becomes the
table's partition values, the key's month (`month=2026-01`, how `PARTITION_EXPRESSIONS` says the
column follows from a row) plus the values the asset fixes (`interval=day`). Rows land in the
slice of the partition key they are handed under, never re-split by their dates, so a
subscription period that spans two months stays in the month it starts in.

What an asset hands over (the value of its `Output`):
- a `pd.DataFrame`: the whole slice of an unpartitioned asset, or of a one-partition run;
- `Slices`: rows per partition key (keys beyond the run's partitions are slices the asset
  repairs), optionally replacing only the rows of given organizations and keeping the others'
  (`organizations`), with what to do with a damaged stored slice (`damaged`);
- `Snapshot`: one more file appended to a slice (`resource_usage`);
- `Merge`: the rows of an unpartitioned table as a function of the rows stored, applied under the
  lock (`organizations`: hidden organizations keep their rows, a `forget` is never undone);
- `Tables`: several unpartitioned tables replaced whole under one lock (`quota_alerts` writes
  `quota_forecasts` and `quota_status`).
A frame that does not fit the table (a required column missing, a column the table does not
have, a value of the wrong type) fails the step with one line naming the asset, the table and
the expected columns, before anything stored is touched.

Writes that stay with their asset, on purpose (documented there):
- `project_usage_trends` recomputes months in batches inside its own refresh
  (`derived_slices.refresh_trends`): each batch is written and freed before the next one is
  computed, and a record of the inputs is written with it under the same lock. Handing all
  months to this manager would hold the whole history in memory (issue 9).
- the alert state's copy (`quota_alerts`, `alert_outbox`) is written by `record_tables`
  (alerting), also used by `alert_delivery` and the CLI.
- `usage_database` publishes the DuckDB file under the writer lock: not a table slice.

Also kept by hand, and not a slice write: `organizations` settles the warehouse's manifests
under the lock before it reads (adopting pre-manifest files, reporting damaged slices).

Downstream assets depend on tables with `deps` and read them with SQL over the Parquet files
(bounded memory); `load_input` refuses, saying so.

The resource is `warehouse_io_manager` (an `@io_manager` requiring the `warehouse` resource),
not a `ConfigurableIOManager` holding a `Warehouse` field: Dagster sets a fully configured nested
resource up a second time, apart from the run's `warehouse` (a second lake sync, and command-line
overrides of `warehouse` not seen); requiring the resource key uses the one the run configured.
"""

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from dagster import (
    InitResourceContext,
    InputContext,
    IOManager,
    MetadataValue,
    OutputContext,
    io_manager,
)

from common.errors import SchemaError
from warehouse.files import writer_lock
from warehouse.manifest import BadSlice
from warehouse.parquet_store import PARTITION_EXPRESSIONS, ParquetStore
from warehouse.schema import Table, table

WAREHOUSE_IO_MANAGER = "warehouse_io_manager"
TABLE_KEY = "warehouse/table"
SLICE_KEY = "warehouse/slice"
SLICE_FILE = "data.parquet"

Damaged = Literal["refuse", "rebuild"]


def writes_table(t: Table, **fixed: str) -> dict[str, str]:
    """Definition metadata of an asset whose rows are `t`'s slices (`fixed`: the partition
    values the asset always writes, e.g. `interval="day"`)."""
    unknown = sorted(set(fixed) - set(t.partition_by))
    if unknown:
        raise ValueError(f"table {t.name}: {unknown} are not partition keys {t.partition_by}")
    return {TABLE_KEY: t.name, SLICE_KEY: "/".join(f"{k}={v}" for k, v in fixed.items())}


class TableWrite:
    """What an asset hands the IO manager besides a plain frame (the value of its `Output`)."""


@dataclass(frozen=True)
class Slices(TableWrite):
    """Rows per partition key of the asset ("" for an unpartitioned one).

    `organizations`, per key: only these organizations' stored rows are replaced, every other
    organization's rows are kept (None: the slice is replaced whole). `damaged`: what happens to
    a stored slice that is damaged: "refuse" fails (naming the file) when it held organizations
    not being replaced, else it is rebuilt from these rows; "rebuild" rebuilds it from these
    rows and warns that the rows of other organizations are not in it."""

    frames: Mapping[str, pd.DataFrame]
    organizations: Mapping[str, Collection[str]] | None = None
    damaged: Damaged = "refuse"

    @classmethod
    def whole(
        cls,
        frame: pd.DataFrame,
        organizations: Collection[str] | None = None,
        damaged: Damaged = "refuse",
    ) -> "Slices":
        """The one slice of an unpartitioned asset."""
        return cls({"": frame}, None if organizations is None else {"": organizations}, damaged)


@dataclass(frozen=True)
class Snapshot(TableWrite):
    """One more file (`filename`) in the slice `partition` of the asset's table."""

    frame: pd.DataFrame
    partition: Mapping[str, str]
    filename: str


@dataclass(frozen=True)
class Merge(TableWrite):
    """The rows of an unpartitioned table from the rows stored (read under the writer lock; a
    damaged table reads as empty, with a warning)."""

    rows: Callable[[pd.DataFrame], pd.DataFrame]


@dataclass(frozen=True)
class Tables(TableWrite):
    """Several unpartitioned tables, each replaced whole, under one lock."""

    frames: Sequence[tuple[Table, pd.DataFrame]] = field(default_factory=tuple)


@dataclass(frozen=True)
class Target:
    """Where an asset's rows go: its table and the partition values it fixes."""

    asset: str
    table: Table
    fixed: Mapping[str, str]

    def slice_of(self, partition_key: str) -> dict[str, str]:
        """The table's partition values for one of the asset's partition keys ("" if none)."""
        values = dict(self.fixed)
        for column in self.table.partition_by:
            if column in values:
                continue
            _, unit = PARTITION_EXPRESSIONS.get((self.table.name, column), ("", ""))
            if not partition_key or not unit:
                raise SchemaError(
                    f"asset {self.asset}: table {self.table.name} partition {column!r} does not "
                    "follow from the asset's partitions; expected it fixed with writes_table"
                )
            try:
                day = date.fromisoformat(partition_key[:10])
            except ValueError:
                raise SchemaError(
                    f"asset {self.asset}: partition key {partition_key!r} is not a date "
                    f"(expected YYYY-MM-DD for table {self.table.name})"
                ) from None
            values[column] = f"{day:%Y-%m}" if unit == "month" else day.isoformat()
        return values


def check_frame(asset: str, t: Table, frame: object) -> pd.DataFrame:
    """`frame` if it has the table's columns; a one-line SchemaError naming both otherwise."""
    expected = ", ".join(t.column_names)
    if not isinstance(frame, pd.DataFrame):
        raise SchemaError(
            f"asset {asset}: table {t.name} needs a pandas DataFrame, got "
            f"{type(frame).__name__}; expected columns: {expected}"
        )
    required = [c.name for c in t.columns if not c.nullable and c.name not in frame.columns]
    unknown = [c for c in frame.columns if c not in t.column_names]
    if required or unknown:
        what = "; ".join(
            ([f"missing required column(s) {', '.join(required)}"] if required else [])
            + ([f"unknown column(s) {', '.join(map(str, unknown))}"] if unknown else [])
        )
        raise SchemaError(f"asset {asset}: table {t.name}: {what}; expected columns: {expected}")
    return frame


def _text(value: object) -> str:
    return str(value.value if isinstance(value, MetadataValue) else value)


class WarehouseIOManager(IOManager):
    """Writes assets' rows as slices of the tables of the warehouse at `root` (see the module
    docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def handle_output(self, context: OutputContext, obj: object) -> None:
        asset = context.asset_key.to_user_string()
        root = self.root
        keys = list(context.asset_partition_keys) if context.has_asset_partitions else [""]
        if isinstance(obj, Tables):
            self._write_tables(context, asset, root, obj)
            return
        target = _target(asset, context.definition_metadata)
        if isinstance(obj, pd.DataFrame):
            if len(keys) != 1:
                raise SchemaError(
                    f"asset {asset}: a run over {len(keys)} partitions returns Slices (rows per "
                    "partition key), not one frame"
                )
            obj = Slices({keys[0]: obj})
        if isinstance(obj, Slices):
            files = self._write_slices(context, target, root, keys, obj)
        elif isinstance(obj, Snapshot):
            files = self._append(target, root, obj)
        elif isinstance(obj, Merge):
            files = self._merge(context, target, root, obj)
        else:
            raise SchemaError(
                f"asset {asset}: cannot write a {type(obj).__name__} to table "
                f"{target.table.name}; expected a DataFrame, Slices, Snapshot, Merge or Tables"
            )
        metadata: dict[str, Any] = {"warehouse_slices_written": len(files)}
        if not context.has_asset_partitions and not isinstance(obj, Snapshot):
            # the stored slice, not just the rows the asset handed over, is the asset's table
            stored = files[0][1]
            metadata["dagster/row_count"] = len(stored)
            if isinstance(obj, Slices) and obj.organizations is not None:
                metadata["organizations"] = int(stored["organization_id"].nunique())
        context.add_output_metadata(metadata)

    def load_input(self, context: InputContext) -> pd.DataFrame:
        raise SchemaError(
            f"asset {context.asset_key.to_user_string()}: warehouse tables are not loaded as "
            "inputs (that would hold whole history in memory); depend on the asset with `deps` "
            "and read its table with SQL over the Parquet files"
        )

    def _write_slices(
        self, context: OutputContext, target: Target, root: Path, keys: list[str], rows: Slices
    ) -> list[tuple[Path, pd.DataFrame]]:
        t = target.table
        missing = [k for k in keys if k not in rows.frames]
        if missing:
            raise SchemaError(
                f"asset {target.asset}: no rows given for partition(s) {', '.join(missing)} of "
                f"its run (table {t.name})"
            )
        frames = {k: check_frame(target.asset, t, f) for k, f in rows.frames.items()}
        store = ParquetStore(root)
        with writer_lock(root):
            damaged = {b.path: b for b in store.check(t).bad}
            files = []
            for key, frame in frames.items():
                path = store.partition_path(t, target.slice_of(key), SLICE_FILE)
                if rows.organizations is not None:
                    replaced = set(rows.organizations.get(key, ()))
                    kept = self._kept(context, store, target, path, damaged, replaced, rows)
                    frame = _concat(kept, frame)
                files.append((path, frame))
            store.write_files(t, files)
        return files

    def _kept(
        self,
        context: OutputContext,
        store: ParquetStore,
        target: Target,
        path: Path,
        damaged: dict[Path, BadSlice],
        replaced: set[str],
        rows: Slices,
    ) -> pd.DataFrame:
        """The stored rows of the slice at `path` that stay: other organizations' rows."""
        t = target.table
        bad = damaged.get(path) if t.partition_by else next(iter(damaged.values()), None)
        if bad is not None:
            if rows.damaged == "refuse":
                lost = bad.organization_ids - replaced
                if lost:
                    raise RuntimeError(
                        f"cannot repair {bad.describe()}: it held usage of organization(s) "
                        f"{', '.join(sorted(lost))} that this run did not pull (no longer "
                        "visible to the token); restore the file from a backup, or remove those "
                        "organizations on purpose with `usage-etl forget`"
                    )
            else:
                for each in damaged.values():
                    context.log.warning(
                        f"{t.name}: damaged slice {each.describe()} is rebuilt from what the API "
                        "returns now; rows of organizations the token no longer sees are not in it"
                    )
            return store.empty(t)
        if not path.exists():
            return store.empty(t)
        stored = store.read_file(t, path)
        return stored[~stored["organization_id"].isin(replaced)]

    def _append(
        self, target: Target, root: Path, snapshot: Snapshot
    ) -> list[tuple[Path, pd.DataFrame]]:
        frame = check_frame(target.asset, target.table, snapshot.frame)
        partition = {**target.fixed, **snapshot.partition}
        store = ParquetStore(root)
        with writer_lock(root):
            store.append_file(target.table, partition, snapshot.filename, frame)
        return [(store.partition_path(target.table, partition, snapshot.filename), frame)]

    def _merge(
        self, context: OutputContext, target: Target, root: Path, merge: Merge
    ) -> list[tuple[Path, pd.DataFrame]]:
        t = target.table
        if t.partition_by:
            raise SchemaError(f"asset {target.asset}: Merge writes unpartitioned tables only")
        store = ParquetStore(root)
        with writer_lock(root):
            bad = store.check(t).bad
            for each in bad:
                context.log.warning(
                    f"{t.name}: damaged slice {each.describe()} is rebuilt from what the API "
                    "returns now; rows of organizations the token no longer sees are not in it"
                )
            stored = store.empty(t) if bad else store.read(t)
            files = [
                (store.table_dir(t) / SLICE_FILE, check_frame(target.asset, t, merge.rows(stored)))
            ]
            store.write_files(t, files)
        return files

    def _write_tables(self, context: OutputContext, asset: str, root: Path, tables: Tables) -> None:
        checked = [(t, check_frame(asset, t, f)) for t, f in tables.frames]
        partitioned = [t.name for t, _ in checked if t.partition_by]
        if partitioned:
            raise SchemaError(
                f"asset {asset}: Tables writes unpartitioned tables only, not {partitioned}"
            )
        store = ParquetStore(root)
        with writer_lock(root):
            for t, frame in checked:
                store.write_files(t, [(store.table_dir(t) / SLICE_FILE, frame)])
        context.add_output_metadata(
            {"warehouse_tables_written": ", ".join(t.name for t, _ in checked)}
        )


@io_manager(
    required_resource_keys={"warehouse"},
    description="Writes assets' rows as slices of their warehouse tables, under the writer lock.",
)
def warehouse_io_manager(init_context: InitResourceContext) -> WarehouseIOManager:
    """The IO manager of the run's `warehouse` resource (one resource, set up once: in lake mode
    its setup fetches other writers' slices before anything is written)."""
    return WarehouseIOManager(init_context.resources.warehouse.root)


def _target(asset: str, metadata: Mapping[str, Any]) -> Target:
    if TABLE_KEY not in metadata:
        raise SchemaError(
            f"asset {asset}: no warehouse table declared (definition metadata "
            f"{TABLE_KEY!r}; use writes_table)"
        )
    t = table(_text(metadata[TABLE_KEY]))
    fixed = dict(
        part.split("=", 1) for part in _text(metadata.get(SLICE_KEY, "")).split("/") if part
    )
    return Target(asset, t, fixed)


def _concat(kept: pd.DataFrame, fresh: pd.DataFrame) -> pd.DataFrame:
    parts = [f for f in (kept, fresh) if not f.empty]
    return pd.concat(parts, ignore_index=True) if parts else fresh


__all__ = [
    "WAREHOUSE_IO_MANAGER",
    "Merge",
    "Slices",
    "Snapshot",
    "TableWrite",
    "Tables",
    "WarehouseIOManager",
    "check_frame",
    "warehouse_io_manager",
    "writes_table",
]
