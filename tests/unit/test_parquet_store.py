"""The Parquet store alone: layout, coercion to the table contract, replacing exactly one slice,
appending snapshots, reading back (partition values and added columns), clear errors."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from warehouse.parquet_store import ParquetStore, SchemaError, to_arrow
from warehouse.schema import CREDIT_USAGE, ORGANIZATIONS, RESOURCE_USAGE

LOADED = datetime(2026, 11, 28, 6)


def credit_rows(org: str, month: str, credits: list[float], interval: str = "day") -> pd.DataFrame:
    days = pd.date_range(f"{month}-01", periods=len(credits), freq="D")
    return pd.DataFrame(
        {
            "organization_id": org,
            "organization_name": org.upper(),
            "interval": interval,
            "scope": "organization",
            "project_id": None,
            "project_name": None,
            "start_date": days,
            "end_date": days + pd.Timedelta(days=1),
            "credits": credits,
            "loaded_at": LOADED,
        }
    )


def org_rows(*ids: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "organization_id": list(ids),
            "organization_name": [i.upper() for i in ids],
            "first_seen_at": LOADED,
            "last_seen_at": LOADED,
            "visible": True,
        }
    )


def test_unpartitioned_table_is_one_file_replaced_whole(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    assert store.read(ORGANIZATIONS).empty
    assert list(store.read(ORGANIZATIONS).columns) == ORGANIZATIONS.column_names
    assert store.replace_table(ORGANIZATIONS, org_rows("a", "b")) == 2
    assert store.replace_table(ORGANIZATIONS, org_rows("c")) == 1
    assert store.files(ORGANIZATIONS) == [tmp_path / "parquet" / "organizations" / "data.parquet"]
    frame = store.read(ORGANIZATIONS)
    assert list(frame.organization_id) == ["c"]
    assert list(frame.columns) == ORGANIZATIONS.column_names
    assert frame.subscription.isna().all(), "missing nullable columns are stored as nulls"
    assert store.check(ORGANIZATIONS).bad == []
    with pytest.raises(
        SchemaError, match="table credit_usage is partitioned; use replace_partition"
    ):
        store.replace_table(CREDIT_USAGE, credit_rows("a", "2026-10", [1.0]))


def test_replacing_a_slice_touches_exactly_that_slice(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    october = {"interval": "day", "month": "2026-10"}
    november = {"interval": "day", "month": "2026-11"}
    store.replace_partitions(
        CREDIT_USAGE,
        [
            (october, credit_rows("a", "2026-10", [1.0, 2.0])),
            (november, credit_rows("a", "2026-11", [3.0])),
        ],
    )
    path = store.partition_path(CREDIT_USAGE, october, "data.parquet")
    assert path == (
        tmp_path / "parquet" / "credit_usage" / "interval=day" / "month=2026-10" / "data.parquet"
    )
    assert "interval" not in pq.read_schema(path).names, "partition values live in the path"
    untouched = store.partition_path(CREDIT_USAGE, november, "data.parquet").read_bytes()

    assert store.replace_partition(CREDIT_USAGE, october, credit_rows("b", "2026-10", [5.0])) == 1
    frame = store.read(CREDIT_USAGE)
    assert list(frame.columns) == CREDIT_USAGE.column_names
    assert sorted(zip(frame.organization_id, frame.credits, strict=True)) == [
        ("a", 3.0),
        ("b", 5.0),
    ]
    assert set(frame.interval) == {"day"}, "the partition value is put back on read"
    assert store.partition_path(CREDIT_USAGE, november, "data.parquet").read_bytes() == untouched
    filtered = store.read(CREDIT_USAGE, "organization_id = ?", ["b"])
    assert list(filtered.credits) == [5.0]
    assert store.check(CREDIT_USAGE).bad == []


def test_an_empty_frame_leaves_an_empty_loaded_slice(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    partition = {"interval": "month", "month": "2026-11"}
    assert store.replace_partition(CREDIT_USAGE, partition, ParquetStore.empty(CREDIT_USAGE)) == 0
    assert store.partition_path(CREDIT_USAGE, partition, "data.parquet").exists()
    assert store.read(CREDIT_USAGE).empty


def test_snapshots_are_appended_never_overwritten(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    snapshot = pd.DataFrame({"organization_id": ["a"], "observed_at": [LOADED], "projects": [3]})
    day = {"observed_date": "2026-11-28"}
    store.append_file(RESOURCE_USAGE, day, "0600.parquet", snapshot)
    store.append_file(RESOURCE_USAGE, day, "0700.parquet", snapshot.assign(projects=4))
    with pytest.raises(SchemaError, match=r"0600\.parquet exists already"):
        store.append_file(RESOURCE_USAGE, day, "0600.parquet", snapshot)
    frame = store.read(RESOURCE_USAGE)
    assert sorted(frame.projects) == [3, 4]
    one = store.read_file(RESOURCE_USAGE, store.files(RESOURCE_USAGE)[0])
    assert list(one.columns) == RESOURCE_USAGE.column_names and len(one) == 1


@pytest.mark.parametrize(
    ("partition", "message"),
    [
        ({"interval": "day"}, r"partition value\(s\) \['month'\] not given"),
        ({"interval": "day", "month": "../x"}, "bad partition value month='../x'"),
        ({"interval": "", "month": "2026-11"}, "bad partition value interval=''"),
        ({"interval": ".hidden", "month": "2026-11"}, "bad partition value"),
    ],
)
def test_bad_partition_values_are_refused(
    tmp_path: Path, partition: dict[str, str], message: str
) -> None:
    with pytest.raises(SchemaError, match=message):
        ParquetStore(tmp_path).partition_path(CREDIT_USAGE, partition, "data.parquet")


def test_frames_are_coerced_to_the_contract_or_refused_naming_table_and_column() -> None:
    frame = credit_rows("a", "2026-11", [1.0])[reversed(CREDIT_USAGE.column_names)]
    frame["start_date"] = frame.start_date.dt.tz_localize("UTC")
    arrow = to_arrow(CREDIT_USAGE, frame)
    assert arrow.schema == CREDIT_USAGE.arrow_schema(), "column order and types"
    assert arrow.schema.field("start_date").type.tz is None, "timestamps become naive UTC"

    with pytest.raises(SchemaError, match="table credit_usage: required column 'credits'"):
        to_arrow(CREDIT_USAGE, credit_rows("a", "2026-11", [1.0]).drop(columns="credits"))
    nulls = credit_rows("a", "2026-11", [1.0]).assign(organization_id=None)
    with pytest.raises(SchemaError, match="column 'organization_id' has nulls; expected none"):
        to_arrow(CREDIT_USAGE, nulls)
    with pytest.raises(SchemaError, match=r"^table credit_usage: "):
        to_arrow(CREDIT_USAGE, credit_rows("a", "2026-11", [1.0]).assign(credits="lots"))


def test_files_written_before_a_column_was_added_read_it_as_null(tmp_path: Path) -> None:
    store = ParquetStore(tmp_path)
    target = store.table_dir(ORGANIZATIONS) / "data.parquet"
    target.parent.mkdir(parents=True)
    old = to_arrow(ORGANIZATIONS, org_rows("a")).drop_columns(["period_anchor_day"])
    pq.write_table(old, target)
    frame = store.read(ORGANIZATIONS)
    assert list(frame.columns) == ORGANIZATIONS.column_names
    assert frame.period_anchor_day.isna().all()
    assert pa.types.is_integer(
        to_arrow(ORGANIZATIONS, frame).schema.field("period_anchor_day").type
    ), "and it still fits the contract"
