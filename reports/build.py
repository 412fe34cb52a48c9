"""Building the report: read the published warehouse once, write the index and one page per
organization into a fresh directory, and swap it in atomically.

Owns `build_report` (the pages in memory, for tests and previews), `write_report` (the directory
`<warehouse>/report/` with `index.html` and `organizations/<id>.html`) and the atomic directory
swap: pages are written into a sibling temporary directory, fsynced, and exchanged with the old
report in one `renameat2(RENAME_EXCHANGE)` (Linux), or by two renames elsewhere; a crash at any
instant leaves the old report or the new one (never a mix), and leftovers of a crashed build are
removed by the next one.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from common.errors import InputError
from reports import data, pages
from warehouse.files import fsync_dir
from warehouse.publish import connect_readonly

if TYPE_CHECKING:
    from warehouse.lake import LakeConfig

REPORT_DIR = Path("report")
REPORT_PATH = REPORT_DIR / "index.html"
# The report's queries group every day of the history. DuckDB's default (80% of the machine)
# took a 1,000-organization x 24-month build to a 1.26 GB peak; 256 MB to 0.5 GB, no slower.
# What the connection holds up to its cap is mostly warehouse blocks it read, which grow with
# the history: at 300 organizations x 24 months the peak was 345 MB at 256 MB, 294 MB at 128 MB
# and 234 MB at 64 MB, all at the same CPU.
MEMORY_LIMIT = "128MB"
_TMP_PREFIX = ".report-build-"
_OLD_PREFIX = ".report-old-"
_REPORT_ENTRIES = ("alerts.html", "organizations")


def iter_pages(
    warehouse: Path, generated_at: datetime | None = None, lake: LakeConfig | None = None
) -> Iterator[tuple[str, str]]:
    """(relative path, HTML) of every page of the report: the index, the open alerts, then one
    page per organization. Reads the warehouse (or the shared `lake`) once, up front."""
    generated_at = generated_at or datetime.now(UTC)
    con = connect_readonly(Path(warehouse), lake, memory_limit=MEMORY_LIMIT)
    try:
        views = data.available_views(con)
        alerts = data.load_alerts(con, views)
        orgs = data.load_organizations(con, views, alerts)
        history = data.load_history(con)
        details = data.load_details(con, history.last)
        resources = data.load_resources(con)
    finally:
        con.close()
    yield "index.html", pages.render_index(orgs, alerts, history, generated_at)
    yield pages.ALERTS_PAGE, pages.render_alerts(alerts, history, generated_at)
    for o in orgs:
        oid = o.organization_id
        yield (
            f"{pages.ORG_DIR}/{pages.org_filename(oid)}",
            pages.render_org(
                o,
                history=history,
                detail=details.get(oid) or data.Detail(),
                resources=resources.get(oid, []),
                alerts_known="open_alerts" in views,
                generated_at=generated_at,
            ),
        )


def build_report(warehouse: Path) -> dict[str, str]:
    """Every page of the report, by relative path (the index is `index.html`)."""
    return dict(iter_pages(Path(warehouse)))


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two directory entries (Linux renameat2 RENAME_EXCHANGE); False when the
    platform cannot."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return result == 0


def _swap_in(new: Path, target: Path) -> None:
    """Make the directory `new` the directory `target`, removing the old one."""
    if not target.exists():
        os.rename(new, target)
    elif _exchange(new, target):
        shutil.rmtree(new)  # `new` now holds the old report
    else:  # two renames: a crash in between leaves the old report beside, restored next time
        old = target.parent / f"{_OLD_PREFIX}{uuid.uuid4().hex}"
        os.rename(target, old)
        os.rename(new, target)
        shutil.rmtree(old)
    fsync_dir(target.parent)


def _clean_leftovers(parent: Path, target: Path) -> None:
    """Remove what a crashed build left: temporary trees; restore a report lost mid-swap."""
    for leftover in sorted(parent.glob(f"{_OLD_PREFIX}*")):
        if not target.exists():
            os.rename(leftover, target)
        else:
            shutil.rmtree(leftover, ignore_errors=True)
    for leftover in parent.glob(f"{_TMP_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _is_report_dir(path: Path) -> bool:
    """Whether `path` is a directory the report may replace: empty, or a previous report."""
    if not path.is_dir():
        return False
    names = {p.name for p in path.iterdir()}
    return not names or ("index.html" in names and names <= {"index.html", *_REPORT_ENTRIES})


def _write_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def write_report(warehouse: Path, out: Path | None = None, lake: LakeConfig | None = None) -> Path:
    """Write the report into the directory `out` (default `<warehouse>/report/`) atomically;
    returns the path of its `index.html`."""
    target = Path(out) if out is not None else Path(warehouse) / REPORT_DIR
    if target.suffix.lower() in (".html", ".htm"):
        raise InputError(
            f"report output {target} looks like a file: the report is a directory "
            "(index.html plus one page per organization); pass a directory"
        )
    if target.exists() and not _is_report_dir(target):
        raise InputError(
            f"report output {target} exists and is not a report directory (expected an empty "
            "directory or one holding index.html, alerts.html and organizations/ only); "
            "it is left as it is"
        )
    parent = target.parent
    parent.mkdir(parents=True, exist_ok=True)
    _clean_leftovers(parent, target)
    tmp = parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
    try:
        tmp.mkdir()
        written_dirs = {tmp}
        for relative, html in iter_pages(Path(warehouse), lake=lake):
            path = tmp / relative
            _write_file(path, html)
            written_dirs.add(path.parent)
        for directory in written_dirs:
            fsync_dir(directory)
        _swap_in(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    return target / "index.html"
