"""Building the report: read the published warehouse once, write the index and one page per
organization into a fresh directory, and swap it in atomically.

Owns `build_report` (the pages in memory, for tests and previews), `write_report` (the directory
`<warehouse>/report/` with `index.html` and `organizations/<id>.html`), the processes that write
the organization pages of a large report in parallel (forked after the warehouse is read, so each
inherits what it renders; they render and write pages, nothing else) and the atomic directory
swap: pages are written into a sibling temporary directory, fsynced, and exchanged with the old
report in one `renameat2(RENAME_EXCHANGE)` (Linux), or by two renames elsewhere; a crash at any
instant leaves the old report or the new one (never a mix), and leftovers of a crashed build are
removed by the next one.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import multiprocessing
import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from common import settings
from common.errors import InputError, WarehouseError
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
# The organization pages are written by several processes from this many on (at 1,000
# organizations rendering them is most of the report's time, and each page is independent).
PARALLEL_FROM_PAGES = 200
MAX_PAGE_WORKERS = 4


@dataclass(frozen=True)
class ReportData:
    """What the report shows, read from the warehouse once: every page renders from it."""

    views: set[str]
    alerts: list[data.Alert]
    orgs: list[data.Organization]
    history: data.History
    details: dict[str, data.Detail]
    resources: dict[str, list[tuple[str, float, float | None]]]
    generated_at: datetime

    def org_page(self, index: int) -> tuple[str, str]:
        """(relative path, HTML) of the `index`-th organization's page."""
        o = self.orgs[index]
        oid = o.organization_id
        return (
            f"{pages.ORG_DIR}/{pages.org_filename(oid)}",
            pages.render_org(
                o,
                history=self.history,
                detail=self.details.get(oid) or data.Detail(),
                resources=self.resources.get(oid, []),
                alerts_known="open_alerts" in self.views,
                generated_at=self.generated_at,
            ),
        )


def load_report_data(
    warehouse: Path, generated_at: datetime | None = None, lake: LakeConfig | None = None
) -> ReportData:
    """Read everything the report shows from the warehouse (or the shared `lake`), once."""
    con = connect_readonly(Path(warehouse), lake, memory_limit=MEMORY_LIMIT)
    try:
        views = data.available_views(con)
        basis = data.prepare_usage(con)
        alerts = data.load_alerts(con, views)
        orgs = data.load_organizations(con, views, alerts)
        history = data.load_history(con, basis)
        details = data.load_details(con, history.last)
        resources = data.load_resources(con)
    finally:
        con.close()
    return ReportData(
        views, alerts, orgs, history, details, resources, generated_at or datetime.now(UTC)
    )


def _first_pages(report: ReportData) -> list[tuple[str, str]]:
    """The index and the open alerts page."""
    r = report
    return [
        ("index.html", pages.render_index(r.orgs, r.alerts, r.history, r.generated_at)),
        (pages.ALERTS_PAGE, pages.render_alerts(r.alerts, r.history, r.generated_at)),
    ]


def iter_pages(
    warehouse: Path, generated_at: datetime | None = None, lake: LakeConfig | None = None
) -> Iterator[tuple[str, str]]:
    """(relative path, HTML) of every page of the report: the index, the open alerts, then one
    page per organization. Reads the warehouse (or the shared `lake`) once, up front."""
    report = load_report_data(warehouse, generated_at, lake)
    yield from _first_pages(report)
    for i in range(len(report.orgs)):
        yield report.org_page(i)


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


def page_workers(organizations: int) -> int:
    """How many processes write the organization pages: one per CPU this process may use (at
    most MAX_PAGE_WORKERS) from PARALLEL_FROM_PAGES pages on, else one (a fork costs more than
    it saves on a small report). Only on Linux: elsewhere Python does not fork by default (on
    macOS a forked child may crash in system libraries), so one process writes them."""
    if organizations < PARALLEL_FROM_PAGES or not sys.platform.startswith("linux"):
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), MAX_PAGE_WORKERS))


# The report being written by forked page workers: set before they fork, so that each inherits
# it (nothing is pickled); only read in them.
_forked_report: tuple[ReportData, Path] | None = None


def _write_org_pages(indexes: range, report: ReportData, root: Path) -> set[Path]:
    """Write the organization pages `indexes` under `root`; returns the directories written."""
    written = set()
    for i in indexes:
        relative, html = report.org_page(i)
        path = root / relative
        _write_file(path, html)
        written.add(path.parent)
    return written


def _write_org_pages_forked(indexes: range) -> set[Path]:
    assert _forked_report is not None, "a page worker runs only in a process forked to write"
    return _write_org_pages(indexes, *_forked_report)


def _write_org_pages_in_parallel(report: ReportData, root: Path, workers: int) -> set[Path]:
    """Write every organization page with `workers` forked processes, each taking every
    `workers`-th organization (pages cost alike, so the shares do too). An error in a worker is
    raised here, after the others finish."""
    global _forked_report
    _forked_report = (report, root)
    # the inherited objects stay shared: no collection in a worker touches them; a process
    # that froze its start-up heap itself (`usage-etl run`) keeps it frozen
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            shares = [range(k, len(report.orgs), workers) for k in range(workers)]
            return set().union(*pool.map(_write_org_pages_forked, shares))
    finally:
        if not frozen_before:
            gc.unfreeze()
        _forked_report = None


def write_report(
    warehouse: Path,
    out: Path | None = None,
    lake: LakeConfig | None = None,
    *,
    workers: int | None = None,
    generated_at: datetime | None = None,
) -> Path:
    """Write the report into the directory `out` (default `<warehouse>/report/`) atomically;
    returns the path of its `index.html`. `workers`: the processes writing the organization
    pages (default `page_workers`); the pages are the same whatever their number."""
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
    label = "warehouse" if out is None else "directory of the report output"
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WarehouseError(
            f"{label} {parent}: cannot write there ({exc.strerror}); expected a writable directory"
        ) from None
    settings.check_writable(parent, label)  # a read-only warehouse: one line, exit 2
    _clean_leftovers(parent, target)
    tmp = parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
    try:
        tmp.mkdir()
        report = load_report_data(Path(warehouse), generated_at, lake)
        workers = page_workers(len(report.orgs)) if workers is None else workers
        written_dirs = {tmp}
        for relative, html in _first_pages(report):
            _write_file(tmp / relative, html)
        if workers > 1 and len(report.orgs) > 1:
            written_dirs |= _write_org_pages_in_parallel(report, tmp, workers)
        else:
            written_dirs |= _write_org_pages(range(len(report.orgs)), report, tmp)
        for directory in written_dirs:
            fsync_dir(directory)
        _swap_in(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
        raise
    return target / "index.html"
