"""`warehouse.files`: replacing a file atomically, and cleaning what a crashed writer left."""

from __future__ import annotations

from pathlib import Path

import pytest

from warehouse.files import commit_temporary, remove_stale_temporaries, write_temporary


def test_a_replaced_file_stays_readable_to_its_reader_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "usage.duckdb"
    target.write_bytes(b"old" * 1000)
    with open(target, "rb") as reader:  # an analyst's open session
        tmp = write_temporary(target, lambda p: p.write_bytes(b"new"))
        commit_temporary(tmp, target)
        assert target.read_bytes() == b"new"
        assert reader.read() == b"old" * 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["usage.duckdb"]


def test_a_failed_write_leaves_nothing_and_leftovers_are_cleaned(tmp_path: Path) -> None:
    target = tmp_path / "usage.duckdb"

    def fail(path: Path) -> None:
        path.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_temporary(target, fail)
    assert list(tmp_path.iterdir()) == []
    leftover = tmp_path / ".usage.duckdb.0123.tmp"  # a crash between writing and renaming
    leftover.write_bytes(b"old")
    (tmp_path / ".usage.duckdb.0123.tmp.wal").write_bytes(b"log")
    kept = tmp_path / ".usage.duckdb.previous"  # not a temporary: the next publish's to judge
    kept.write_bytes(b"previous")
    assert remove_stale_temporaries(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [".usage.duckdb.previous"]
