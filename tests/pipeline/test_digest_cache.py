"""Integrity checks that do not re-read unchanged slices, without ever trusting a changed one.

A quick check (what a run does) hashes only the files whose change stamps moved since they were
last hashed; `usage-etl verify` and the first publish hash everything, and find damage that no
write made (simulated here by a digest cache that vouches for a file whose bytes changed).
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from pipelines.cli import main
from tests.services.warehouse_files import garble
from warehouse import manifest
from warehouse.manifest import DIGESTS_NAME, IntegrityError, check_warehouse
from warehouse.parquet_store import ParquetStore
from warehouse.publish import publish_database
from warehouse.schema import CREDIT_USAGE

MONTHS = ["2026-08", "2026-09", "2026-10"]


def usage(month: str, credits: float) -> pd.DataFrame:
    day = datetime.fromisoformat(month + "-01")
    return pd.DataFrame(
        [
            {
                "organization_id": "a",
                "organization_name": "a",
                "interval": "day",
                "scope": "organization",
                "start_date": day,
                "end_date": day,
                "credits": credits,
                "loaded_at": day,
            }
        ]
    )


def slice_path(store: ParquetStore, month: str) -> Path:
    return store.partition_path(CREDIT_USAGE, {"interval": "day", "month": month}, "data.parquet")


@pytest.fixture
def store(tmp_path: Path) -> ParquetStore:
    store = ParquetStore(tmp_path)
    for n, month in enumerate(MONTHS):
        store.replace_partition(CREDIT_USAGE, {"interval": "day", "month": month}, usage(month, n))
    return store


def cache_file(store: ParquetStore) -> Path:
    return store.table_dir(CREDIT_USAGE) / DIGESTS_NAME


def age_cache(store: ParquetStore, seconds: float) -> None:
    """Pretend every file was last hashed `seconds` later than it was (negative: earlier), as if
    the run that hashed them came that much after the files were written."""
    data = json.loads(cache_file(store).read_text())
    for entry in data["files"].values():
        entry["hashed_at_ns"] += int(seconds * 1e9)
    cache_file(store).write_text(json.dumps(data))


def test_a_quick_check_hashes_only_what_changed(store: ParquetStore) -> None:
    first = check_warehouse(store.root, full=False)
    assert first.bad == [] and first.hashed == 3
    # just hashed: a write within the same clock tick could hide, so nothing is trusted yet
    assert check_warehouse(store.root, full=False).hashed == 3
    age_cache(store, 10)
    assert check_warehouse(store.root, full=False).hashed == 0, "unchanged files are not read"
    assert check_warehouse(store.root, full=True).hashed == 3, "verify reads everything"
    age_cache(store, 10)

    store.replace_partition(
        CREDIT_USAGE, {"interval": "day", "month": "2026-09"}, usage("2026-09", 7.0)
    )
    rewritten = check_warehouse(store.root, full=False)
    assert rewritten.bad == [] and rewritten.hashed == 1

    damaged = slice_path(store, "2026-10")
    damaged.write_bytes(damaged.read_bytes() + b"x")  # any write changes the stamps
    found = check_warehouse(store.root, full=False)
    assert [b.path for b in found.bad] == [damaged] and found.hashed >= 1

    age_cache(store, -8 * 24 * 3600)  # hashed more than a week ago: read again
    assert check_warehouse(store.root, full=False).hashed == 3


def test_the_cache_never_calls_a_good_slice_bad(store: ParquetStore) -> None:
    check_warehouse(store.root)
    data = json.loads(cache_file(store).read_text())
    for entry in data["files"].values():
        entry["sha256"] = "0" * 64
        entry["hashed_at_ns"] += int(10e9)
    cache_file(store).write_text(json.dumps(data))
    assert check_warehouse(store.root, full=False).bad == []
    cache_file(store).write_text("{ garbled")
    checked = check_warehouse(store.root, full=False)
    assert checked.bad == [] and checked.hashed == 3


def test_damage_no_write_made_is_found_by_verify_and_the_first_publish(
    store: ParquetStore, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bytes that rot in place keep the file's stamps: a quick check trusts its cache then, and
    the full checks are what finds them."""
    rotten = slice_path(store, "2026-09")
    key = rotten.relative_to(store.table_dir(CREDIT_USAGE)).as_posix()
    recorded = store.manifest(CREDIT_USAGE).load()[key].committed
    assert recorded is not None
    garble(rotten)
    stat = os.stat(rotten)
    cache = {
        "format": manifest.FORMAT,
        "files": {
            key: {
                "stamp": [
                    stat.st_dev,
                    stat.st_ino,
                    stat.st_size,
                    stat.st_mtime_ns,
                    stat.st_ctime_ns,
                ],
                "sha256": recorded.sha256,
                "hashed_at_ns": time.time_ns() + int(10e9),
            }
        },
    }
    cache_file(store).write_text(json.dumps(cache))
    assert check_warehouse(store.root, full=False).bad == [], "the documented blind spot"

    assert main(["verify", "--warehouse", str(store.root.parent)]) == 1
    assert str(rotten) in capsys.readouterr().out
    with pytest.raises(IntegrityError, match="not published"):
        publish_database(store.root.parent)  # no usage.duckdb yet: the first publish is full
