"""The warehouse IO manager alone: an asset's rows land as slices of its table, where the hand
plumbing put them (same files, same bytes), re-writes are identical, other organizations' rows
are kept, a damaged slice is refused or rebuilt, and a bad frame fails in one line without
touching what is stored."""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
from dagster import (
    MonthlyPartitionsDefinition,
    OutputContext,
    PartitionKeyRange,
    build_output_context,
)

from assets.io_manager import (
    Merge,
    Slices,
    Snapshot,
    Tables,
    WarehouseIOManager,
    writes_table,
)
from common.errors import SchemaError
from warehouse.derived_schema import QUOTA_FORECASTS, QUOTA_STATUS
from warehouse.parquet_store import ParquetStore
from warehouse.schema import CREDIT_USAGE, ORGANIZATION_USERS, ORGANIZATIONS, RESOURCE_USAGE

LOADED = datetime(2026, 11, 28, 6)
MONTHS = MonthlyPartitionsDefinition(start_date="2025-01-01")


def usage(org: str, interval: str, spans: list[tuple[str, str]], credits: float) -> pd.DataFrame:
    starts = [pd.Timestamp(s) for s, _ in spans]
    ends = [pd.Timestamp(e) for _, e in spans]
    return pd.DataFrame(
        {
            "organization_id": org,
            "organization_name": org.upper(),
            "interval": interval,
            "scope": "organization",
            "project_id": None,
            "project_name": None,
            "start_date": starts,
            "end_date": ends,
            "credits": credits,
            "loaded_at": LOADED,
        }
    )


def orgs(*ids: str, visible: bool = True) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "organization_id": list(ids),
            "organization_name": [i.upper() for i in ids],
            "first_seen_at": LOADED,
            "last_seen_at": LOADED,
            "visible": visible,
        }
    )


def members(org: str, *emails: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "organization_id": org,
            "user_id": [f"u-{e}" for e in emails],
            "email": list(emails),
            "admin": False,
            "loaded_at": LOADED,
        }
    )


def periods_context(first: str, last: str) -> OutputContext:
    return build_output_context(
        asset_key="credit_usage_periods",
        asset_partitions_def=MONTHS,
        asset_partition_key_range=PartitionKeyRange(first, last),
        definition_metadata=writes_table(CREDIT_USAGE, interval="month"),
    )


def table_context(asset: str, metadata: dict[str, str]) -> OutputContext:
    return build_output_context(asset_key=asset, definition_metadata=metadata)


def write(manager: WarehouseIOManager, context: OutputContext, value: object) -> OutputContext:
    """Hand `value` to the manager in `context` (closed after: it holds an ephemeral instance)."""
    with context:
        manager.handle_output(context, value)
    return context


# one output context a write, as in a run
def january() -> OutputContext:
    return periods_context("2026-01-01", "2026-01-01")


def registry() -> OutputContext:
    return table_context("organizations", writes_table(ORGANIZATIONS))


def users() -> OutputContext:
    return table_context("organization_users", writes_table(ORGANIZATION_USERS))


def snapshots() -> OutputContext:
    return table_context("resource_usage", writes_table(RESOURCE_USAGE))


def digests(root: Path) -> dict[str, str]:
    """The table files' digests (manifests hold when they were written)."""
    parquet = root / "parquet"
    return {
        str(p.relative_to(parquet)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(parquet.rglob("*"))
        if p.suffix == ".parquet" and not p.name.startswith(".")
    }


def test_an_unpartitioned_asset_replaces_its_table_and_records_the_row_count(
    tmp_path: Path,
) -> None:
    manager = WarehouseIOManager(tmp_path)
    write(manager, registry(), orgs("a", "b"))
    context = write(manager, registry(), orgs("c"))
    store = ParquetStore(tmp_path)
    assert store.files(ORGANIZATIONS) == [tmp_path / "parquet/organizations/data.parquet"]
    assert list(store.read(ORGANIZATIONS).organization_id) == ["c"]
    assert not store.check(ORGANIZATIONS).bad, "the write is recorded in the table's manifest"
    logged = context.get_logged_metadata()
    assert logged["dagster/row_count"].value == 1


def test_rewriting_the_same_rows_gives_the_same_files(tmp_path: Path) -> None:
    manager = WarehouseIOManager(tmp_path)
    rows = Slices({"2026-01-01": usage("a", "month", [("2026-01-15", "2026-02-15")], 3.0)})
    write(manager, periods_context("2026-01-01", "2026-01-01"), rows)
    first = digests(tmp_path)
    write(manager, periods_context("2026-01-01", "2026-01-01"), rows)
    assert digests(tmp_path) == first


def test_partition_keys_map_to_month_slices_exactly_where_the_hand_plumbing_put_them(
    tmp_path: Path,
) -> None:
    """A subscription period that starts in January and ends in February belongs to January's
    slice (the key it is handed under), as `ParquetStore.replace_partitions` wrote it before;
    so does a row the API answered for January's request that starts in December: rows are
    never re-split by their dates."""
    january = pd.concat(
        [
            usage("a", "month", [("2026-01-15", "2026-02-15")], 3.0),
            usage("b", "month", [("2026-01-01", "2026-02-01")], 5.0),
            usage("c", "month", [("2025-12-20", "2026-01-20")], 4.0),
        ],
        ignore_index=True,
    )
    february = usage("a", "month", [("2026-02-15", "2026-03-15")], 7.0)
    by_hand, managed = tmp_path / "by_hand", tmp_path / "managed"
    ParquetStore(by_hand).replace_partitions(
        CREDIT_USAGE,
        [
            ({"interval": "month", "month": "2026-01"}, january),
            ({"interval": "month", "month": "2026-02"}, february),
        ],
    )
    write(
        WarehouseIOManager(managed),
        periods_context("2026-01-01", "2026-02-01"),
        Slices({"2026-01-01": january, "2026-02-01": february}),
    )
    written = digests(managed)
    assert sorted(written) == [
        "credit_usage/interval=month/month=2026-01/data.parquet",
        "credit_usage/interval=month/month=2026-02/data.parquet",
    ]
    assert written == digests(by_hand)
    stored = ParquetStore(managed).read(CREDIT_USAGE, "organization_id = 'c'")
    assert len(stored) == 1 and stored.start_date[0] == pd.Timestamp("2025-12-20")


def test_a_repair_key_beyond_the_run_is_written_and_a_missing_run_key_is_an_error(
    tmp_path: Path,
) -> None:
    manager = WarehouseIOManager(tmp_path)
    repair = Slices(
        {
            "2026-03-01": usage("a", "month", [("2026-03-01", "2026-04-01")], 1.0),
            "2025-06-01": usage("a", "month", [("2025-06-01", "2025-07-01")], 2.0),
        }
    )
    write(manager, periods_context("2026-03-01", "2026-03-01"), repair)
    assert (tmp_path / "parquet/credit_usage/interval=month/month=2025-06/data.parquet").exists()
    with pytest.raises(SchemaError, match="no rows given for partition"):
        write(manager, periods_context("2026-03-01", "2026-04-01"), repair)


def test_replacing_some_organizations_keeps_the_others_rows(tmp_path: Path) -> None:
    manager = WarehouseIOManager(tmp_path)
    both = pd.concat(
        [
            usage("a", "month", [("2026-01-01", "2026-02-01")], 1.0),
            usage("b", "month", [("2026-01-01", "2026-02-01")], 2.0),
        ],
        ignore_index=True,
    )
    write(manager, january(), Slices({"2026-01-01": both}))
    fresh = usage("a", "month", [("2026-01-01", "2026-02-01")], 10.0)
    write(manager, january(), Slices({"2026-01-01": fresh}, {"2026-01-01": {"a"}}))
    stored = ParquetStore(tmp_path).read(CREDIT_USAGE).set_index("organization_id")["credits"]
    assert stored.to_dict() == {"a": 10.0, "b": 2.0}


def test_a_damaged_slice_that_held_other_organizations_is_refused_and_left_alone(
    tmp_path: Path,
) -> None:
    manager = WarehouseIOManager(tmp_path)
    both = pd.concat(
        [
            usage("a", "month", [("2026-01-01", "2026-02-01")], 1.0),
            usage("b", "month", [("2026-01-01", "2026-02-01")], 2.0),
        ],
        ignore_index=True,
    )
    write(manager, january(), Slices({"2026-01-01": both}))
    path = tmp_path / "parquet/credit_usage/interval=month/month=2026-01/data.parquet"
    path.write_bytes(b"not parquet")
    fresh = usage("a", "month", [("2026-01-01", "2026-02-01")], 10.0)
    with pytest.raises(RuntimeError, match=r"cannot repair .*month=2026-01.*organization\(s\) b"):
        write(manager, january(), Slices({"2026-01-01": fresh}, {"2026-01-01": {"a"}}))
    assert path.read_bytes() == b"not parquet"
    write(manager, january(), Slices({"2026-01-01": both}, {"2026-01-01": {"a", "b"}}))
    assert not ParquetStore(tmp_path).check(CREDIT_USAGE).bad, "pulling every organization repairs"


def test_a_damaged_registry_table_is_rebuilt_from_the_fresh_rows(tmp_path: Path) -> None:
    manager = WarehouseIOManager(tmp_path)
    write(manager, users(), Slices.whole(members("a", "x@a"), organizations={"a"}))
    write(manager, users(), Slices.whole(members("b", "y@b"), organizations={"b"}))
    (tmp_path / "parquet/organization_users/data.parquet").write_bytes(b"torn")
    write(
        manager, users(), Slices.whole(members("b", "z@b"), organizations={"b"}, damaged="rebuild")
    )
    assert list(ParquetStore(tmp_path).read(ORGANIZATION_USERS).email) == ["z@b"]


def test_a_bad_frame_is_one_clear_line_and_leaves_the_stored_slice(tmp_path: Path) -> None:
    manager = WarehouseIOManager(tmp_path)
    write(
        manager,
        january(),
        Slices({"2026-01-01": usage("a", "month", [("2026-01-01", "2026-02-01")], 1.0)}),
    )
    before = digests(tmp_path)
    bad = usage("a", "month", [("2026-01-01", "2026-02-01")], 9.0).drop(columns=["start_date"])
    bad["credit"] = 9.0
    with pytest.raises(SchemaError) as raised:
        write(manager, january(), Slices({"2026-01-01": bad}, {"2026-01-01": {"a"}}))
    message = str(raised.value)
    assert "\n" not in message
    assert "table credit_usage" in message and "asset credit_usage_periods" in message
    assert "missing required column(s) start_date" in message
    assert "unknown column(s) credit" in message
    assert "expected columns: " + ", ".join(CREDIT_USAGE.column_names) in message
    assert digests(tmp_path) == before


def test_a_value_of_the_wrong_type_names_the_table_and_leaves_it(tmp_path: Path) -> None:
    manager = WarehouseIOManager(tmp_path)
    write(manager, registry(), orgs("a"))
    before = digests(tmp_path)
    wrong = orgs("b")
    wrong["first_seen_at"] = "yesterday-ish"
    with pytest.raises(SchemaError, match="table organizations") as raised:
        write(manager, registry(), wrong)
    assert "\n" not in str(raised.value)
    with pytest.raises(SchemaError, match="expected a DataFrame, Slices"):
        write(manager, registry(), [1, 2])
    assert digests(tmp_path) == before


def test_one_frame_for_a_run_over_several_partitions_is_an_error(tmp_path: Path) -> None:
    frame = usage("a", "month", [("2026-01-01", "2026-02-01")], 1.0)
    with pytest.raises(SchemaError, match="returns Slices"):
        write(WarehouseIOManager(tmp_path), periods_context("2026-01-01", "2026-02-01"), frame)
    assert not (tmp_path / "parquet").exists()


def test_merge_sees_the_stored_rows_under_the_lock(tmp_path: Path) -> None:
    manager = WarehouseIOManager(tmp_path)
    write(manager, registry(), orgs("a", "b"))

    def hide_b_add_c(stored: pd.DataFrame) -> pd.DataFrame:
        stored = stored.copy()
        stored.loc[stored.organization_id == "b", "visible"] = False
        return pd.concat([stored, orgs("c")], ignore_index=True)

    write(manager, registry(), Merge(hide_b_add_c))
    stored = ParquetStore(tmp_path).read(ORGANIZATIONS).set_index("organization_id")["visible"]
    assert stored.to_dict() == {"a": True, "b": False, "c": True}


def test_a_snapshot_is_appended_and_tables_are_replaced_whole(tmp_path: Path) -> None:
    manager = WarehouseIOManager(tmp_path)
    snapshot = pd.DataFrame({"organization_id": ["a"], "observed_at": [LOADED], "projects": [3]})
    for name in ("snapshot-1.parquet", "snapshot-2.parquet"):
        write(manager, snapshots(), Snapshot(snapshot, {"observed_date": "2026-11-28"}, name))
    assert len(ParquetStore(tmp_path).files(RESOURCE_USAGE)) == 2
    with pytest.raises(SchemaError, match="exists already"):
        write(
            manager,
            snapshots(),
            Snapshot(snapshot, {"observed_date": "2026-11-28"}, "snapshot-1.parquet"),
        )
    empty = ParquetStore.empty
    write(
        manager,
        table_context("quota_alerts", {}),
        Tables(((QUOTA_FORECASTS, empty(QUOTA_FORECASTS)), (QUOTA_STATUS, empty(QUOTA_STATUS)))),
    )
    store = ParquetStore(tmp_path)
    assert store.files(QUOTA_FORECASTS) and store.files(QUOTA_STATUS)


def test_an_asset_without_a_declared_table_is_told_how_to_declare_one(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match=r"no warehouse table declared.*writes_table"):
        write(WarehouseIOManager(tmp_path), table_context("mystery", {}), orgs("a"))
    with pytest.raises(ValueError, match="not partition keys"):
        writes_table(ORGANIZATIONS, interval="day")
