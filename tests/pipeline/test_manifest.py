"""The slice manifest without Dagster: crash states, adoption of old warehouses, verify codes."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from common.errors import ManifestError
from pipelines.cli import main
from tests.services.warehouse_files import garble
from warehouse.files import commit_temporary, write_temporary
from warehouse.manifest import (
    MANIFEST_NAME,
    OrganizationSums,
    check_warehouse,
    reconcile_warehouse,
    record_for,
)
from warehouse.parquet_store import ParquetStore, to_arrow
from warehouse.schema import CREDIT_USAGE

T0 = datetime(2026, 10, 1)


def usage(orgs: dict[str, float], interval: str = "day") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "organization_id": org,
                "organization_name": org,
                "interval": interval,
                "scope": "organization",
                "start_date": T0,
                "end_date": T0,
                "credits": credits,
                "loaded_at": T0,
            }
            for org, credits in orgs.items()
        ]
    )


PARTITION = {"interval": "day", "month": "2026-10"}


def store_with_slice(tmp_path: Path) -> ParquetStore:
    store = ParquetStore(tmp_path)
    store.replace_partition(CREDIT_USAGE, PARTITION, usage({"a": 1.5, "b": 2.0}))
    return store


def store_with_two_slices(tmp_path: Path) -> ParquetStore:
    """October (organizations a and b) and November (c)."""
    store = store_with_slice(tmp_path)
    store.replace_partition(
        CREDIT_USAGE, {"interval": "day", "month": "2026-11"}, usage({"c": 0.25})
    )
    return store


def test_manifest_records_rows_credits_and_digest(tmp_path: Path) -> None:
    store = store_with_slice(tmp_path)
    manifest = json.loads((store.table_dir(CREDIT_USAGE) / MANIFEST_NAME).read_text())
    entry = manifest["slices"]["interval=day/month=2026-10/data.parquet"]
    assert entry["pending"] is None
    assert entry["committed"]["rows"] == 2
    assert entry["committed"]["organizations"]["b"] == {"rows": 1, "credits": 2.0}
    assert len(entry["committed"]["sha256"]) == 64


def test_a_manifest_rewritten_by_another_writer_is_read_anew(tmp_path: Path) -> None:
    store = store_with_slice(tmp_path)
    manifest = store.manifest(CREDIT_USAGE)
    key = "interval=day/month=2026-10/data.parquet"
    first = manifest.load()
    first[key].removing = True  # a caller's change to its entries is its own
    assert manifest.load()[key].removing is False
    text = json.loads(manifest.path.read_text())
    text["slices"][key]["committed"]["rows"] = 7  # another process's write: other bytes
    manifest.path.write_text(json.dumps(text))
    assert manifest.load()[key].committed.rows == 7


def test_sums_read_back_equal_those_written_and_unread_ones_are_saved_unchanged(
    tmp_path: Path,
) -> None:
    store = store_with_two_slices(tmp_path)
    manifest = store.manifest(CREDIT_USAGE)
    before = manifest.path.read_bytes()
    entries = manifest.load()
    october = entries["interval=day/month=2026-10/data.parquet"].committed
    assert dict(october.organizations) == {
        "a": OrganizationSums(1, 1.5),
        "b": OrganizationSums(1, 2.0),
    }
    assert "c" not in october.organizations and len(october.organizations) == 2
    manifest.save(entries)  # November's sums were never read: saved as they were stored
    assert manifest.path.read_bytes() == before
    # compact JSON with sorted keys, a slice a line
    lines = before.decode().split("\n")
    assert len(lines) == 2 + len(entries)
    canonical = json.dumps(json.loads(before), separators=(",", ":"), sort_keys=True)
    assert "".join(lines) == canonical
    text = json.loads(before)
    text["slices"]["interval=day/month=2026-10/data.parquet"]["committed"]["organizations"] = 3
    manifest.path.write_text(json.dumps(text))
    with pytest.raises(ManifestError, match="organizations is int, expected an object"):
        manifest.load()


def test_a_manifest_written_on_one_line_by_an_earlier_version_is_read_and_kept_exact(
    tmp_path: Path,
) -> None:
    store = store_with_two_slices(tmp_path)
    manifest = store.manifest(CREDIT_USAGE)
    document = json.loads(manifest.path.read_bytes())
    manifest.path.write_text(json.dumps(document, separators=(",", ":"), sort_keys=True))
    entries = manifest.load()
    november = entries["interval=day/month=2026-11/data.parquet"].committed
    assert dict(november.organizations) == {"c": OrganizationSums(1, 0.25)}
    # rewriting one slice's record keeps every other record as it was
    store.replace_partition(CREDIT_USAGE, PARTITION, usage({"a": 4.0}))
    after = json.loads(manifest.path.read_bytes())
    assert (
        after["slices"]["interval=day/month=2026-11/data.parquet"]
        == (document["slices"]["interval=day/month=2026-11/data.parquet"])
    )
    october = after["slices"]["interval=day/month=2026-10/data.parquet"]["committed"]
    assert october["organizations"] == {"a": {"rows": 1, "credits": 4.0}}
    assert manifest.path.read_bytes().count(b"\n") == 3  # a slice a line again
    assert not check_warehouse(store.root).bad


def _crash_after_stage(store: ParquetStore, frame: pd.DataFrame, rename: bool) -> None:
    """A writer killed after staging its record (and, with `rename`, after the rename)."""
    target = store.partition_path(CREDIT_USAGE, PARTITION, "data.parquet")
    arrow = to_arrow(CREDIT_USAGE, frame).drop_columns(["interval"])
    import pyarrow.parquet as pq

    tmp = write_temporary(target, lambda p: pq.write_table(arrow, p))
    store.manifest(CREDIT_USAGE).stage({target: record_for(arrow, tmp)})
    if rename:
        commit_temporary(tmp, target)


@pytest.mark.parametrize("renamed", [False, True], ids=["before-rename", "after-rename"])
def test_kill_between_slice_and_manifest_is_never_a_false_alarm(
    tmp_path: Path, renamed: bool
) -> None:
    store = store_with_slice(tmp_path)
    _crash_after_stage(store, usage({"a": 9.0}), rename=renamed)
    assert check_warehouse(store.root).bad == []
    settled = reconcile_warehouse(store.root)
    assert settled.bad == []
    expected = 1 if renamed else 2
    assert len(store.read(CREDIT_USAGE)) == expected
    # once settled, the other version is no longer accepted
    garble(store.partition_path(CREDIT_USAGE, PARTITION, "data.parquet"))
    assert [b.reason for b in check_warehouse(store.root).bad] == [
        "content differs from its manifest record"
    ]


def test_damaged_missing_and_stray_slices_are_bad(tmp_path: Path) -> None:
    store = store_with_slice(tmp_path)
    path = store.partition_path(CREDIT_USAGE, PARTITION, "data.parquet")
    garble(path)
    (bad,) = check_warehouse(store.root).bad
    assert bad.path == path and bad.organization_ids == {"a", "b"}
    path.unlink()
    assert [b.reason for b in check_warehouse(store.root).bad] == ["missing"]
    stray = path.parent / "extra.parquet"
    stray.write_bytes(b"PAR1")
    reasons = sorted(b.reason for b in check_warehouse(store.root).bad)
    assert reasons == ["missing", "not in the manifest"]


def test_a_warehouse_from_before_manifests_is_adopted_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = store_with_slice(tmp_path)
    unreadable = store.partition_path(CREDIT_USAGE, {"interval": "day", "month": "2026-09"}, "x")
    unreadable.parent.mkdir(parents=True)
    (unreadable.parent / "data.parquet").write_bytes(b"not parquet at all")
    (store.table_dir(CREDIT_USAGE) / MANIFEST_NAME).unlink()  # as written by an older version

    status = main(["verify", "--warehouse", str(tmp_path)])
    out = capsys.readouterr()
    assert status == 1
    assert "not yet recorded" in out.out and "month=2026-10" in out.out
    assert "month=2026-09" in out.out and "unreadable" in out.out

    settled = reconcile_warehouse(store.root)
    assert [p.parent.name for p in settled.adopted] == ["month=2026-10"]
    (unreadable.parent / "data.parquet").unlink()
    assert main(["verify", "--warehouse", str(tmp_path)]) == 0
    assert reconcile_warehouse(store.root).adopted == [], "adopted once only"


def test_verify_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", "--warehouse", str(tmp_path / "nothing")]) == 2
    assert "no warehouse" in capsys.readouterr().err
    store = store_with_slice(tmp_path)
    assert main(["verify", "--warehouse", str(tmp_path)]) == 0
    assert "all good" in capsys.readouterr().out
    garble(store.partition_path(CREDIT_USAGE, PARTITION, "data.parquet"))
    assert main(["verify", "--warehouse", str(tmp_path)]) == 1
    assert "month=2026-10/data.parquet" in capsys.readouterr().out


def test_forget_rewrites_good_slices_and_unblocks_the_repair_of_damaged_ones(
    tmp_path: Path,
) -> None:
    from warehouse.forget import forget_organization

    store = store_with_slice(tmp_path)
    other = {"interval": "day", "month": "2026-09"}
    store.replace_partition(CREDIT_USAGE, other, usage({"a": 4.0, "c": 1.0}))
    damaged = store.partition_path(CREDIT_USAGE, PARTITION, "data.parquet")
    garble(damaged)

    result = forget_organization(tmp_path, "a")
    assert result.rows_removed == {"credit_usage": 1}
    assert result.damaged_records_amended == [damaged]
    assert not result.published and str(damaged) in result.not_published
    remaining = store.read_file(
        CREDIT_USAGE, store.partition_path(CREDIT_USAGE, other, "x").parent / "data.parquet"
    )
    assert list(remaining.organization_id) == ["c"]
    (bad,) = check_warehouse(store.root).bad
    assert bad.path == damaged and bad.organization_ids == {"b"}


def test_a_manifest_with_garbled_sums_is_not_verified_good(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run reads a record's sums only when it needs them; verify reads them all."""
    store = store_with_slice(tmp_path)
    manifest = store.manifest(CREDIT_USAGE)
    text = manifest.path.read_bytes()
    assert text.count(b'"credits":1.5,') == 1
    manifest.path.write_bytes(text.replace(b'"credits":1.5,', b'"credits":1.5,,'))
    assert main(["verify", "--warehouse", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "_manifest.json" in err and "restore it from a backup" in err
