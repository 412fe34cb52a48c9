"""`warehouse.files`: replacing a file whose old blocks are freed by a thread of its own."""

from __future__ import annotations

import threading
from pathlib import Path

from warehouse.files import commit_temporary, remove_stale_temporaries, write_temporary


def _freeing_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("free ")]


def test_a_replaced_file_freed_later_stays_readable_to_its_reader_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    target = tmp_path / "usage.duckdb"
    target.write_bytes(b"old" * 1000)
    with open(target, "rb") as reader:  # an analyst's open session
        tmp = write_temporary(target, lambda p: p.write_bytes(b"new"))
        commit_temporary(tmp, target, free_old_later=True)
        assert target.read_bytes() == b"new"
        assert reader.read() == b"old" * 1000
    for thread in _freeing_threads():
        thread.join(timeout=30)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["usage.duckdb"]


def test_a_first_file_or_a_leftover_link_is_handled(tmp_path: Path) -> None:
    target = tmp_path / "usage.duckdb"
    tmp = write_temporary(target, lambda p: p.write_bytes(b"first"))
    commit_temporary(tmp, target, free_old_later=True)  # nothing to free: a plain rename
    assert target.read_bytes() == b"first"
    leftover = tmp_path / ".usage.duckdb.0123.retired.tmp"  # a crash before the thread ran
    leftover.write_bytes(b"old")
    assert remove_stale_temporaries(tmp_path) == 1
    assert not leftover.exists()
