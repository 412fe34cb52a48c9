"""Durable file primitives: atomic replace of a file, and the warehouse's writer lock.

Every write in the warehouse goes through `atomic_write`: data lands in a temporary file in the
same directory, is fsynced, then renamed over the target, and the directory is fsynced. A crash at
any instant leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path


def fsync_file(path: Path) -> None:
    """Make a file's content (or, for a directory, the renames inside it) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make a rename inside `path` durable."""
    fsync_file(path)


def write_temporary(target: Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp_path)` for a temporary file next to `target`, fsync it, return its path.

    The temporary file is removed when `write` fails. Move it into place with
    `commit_temporary` (or delete it with `discard_temporary`).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        write(tmp)
        fsync_file(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def commit_temporary(tmp: Path, target: Path) -> None:
    """Atomically rename a temporary file of `write_temporary` over `target`, durably."""
    os.replace(tmp, target)
    fsync_dir(target.parent)


def discard_temporary(tmp: Path) -> None:
    tmp.unlink(missing_ok=True)


def atomic_write(target: Path, write: Callable[[Path], None]) -> None:
    """Call `write(tmp_path)`, then atomically move the result to `target`.

    The temporary file is removed when `write` fails, so failures leave nothing behind.
    """
    tmp = write_temporary(target, write)
    try:
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def remove_stale_temporaries(root: Path) -> int:
    """Delete temporaries left by a crashed writer (with the write-ahead log DuckDB keeps next to
    a database being built); returns how many were removed. Callers hold the writer lock."""
    removed = 0
    if not root.exists():
        return 0
    for tmp in [*root.rglob(".*.tmp"), *root.rglob(".*.tmp.wal")]:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed += 1
    return removed


@contextlib.contextmanager
def writer_lock(root: Path) -> Iterator[None]:
    """Serialize warehouse writers across processes (an advisory flock on `<root>/.writer.lock`).

    Readers never take it: they only ever see whole files.
    """
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".writer.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
