"""The whole-history facts of every usage series, kept per `credit_usage` day slice and combined,
so that a daily run reads only the slices that changed instead of the whole history.

A series is an organization total, a project or an organization's deleted-projects line
(``organization_id, scope, pkey``; ``pkey`` is the project id or ``''``). Its facts are its first
day, its first day with usage, its last day, and its latest organization and project names. Each
is an associative aggregate (min, max, the value at the latest day), so the facts of the whole
history are the facts of each day slice combined: :func:`load_slice_facts` computes one slice's
facts with one aggregate over that file, and :func:`combine` merges the slices' rows.

Per-slice facts are cached in `<warehouse>/state/series-facts/`, one Parquet file per slice
(named by a digest of the slice's path inside the table), each row tagged with its slice and the
slice's SHA-256 from the table's manifest. A run reuses the rows whose tag equals the slice's
committed digest and computes the others (a new, reloaded, restated, repaired or forgotten-from
slice), writing only their files: a daily refresh rewrites one small file whatever the length of
the history. Files of slices that no longer exist are removed. A slice with an unfinished change
in its manifest (a pending record) is computed every time and never cached. Every slice gets one
marker row (no organization) so that a slice without day rows is known to be computed. The cache
is only ever a shortcut: each file replaced atomically, unreadable or missing it is rebuilt from
the slices, and a row is used only when its digest matches. `usage-etl forget` removes the files
holding a forgotten organization (:func:`forget_organization`); the next run computes them again.

The day slices are ``interval=day/month=YYYY-MM/...``: a slice's month names the days it holds,
which :func:`day_slices` uses to pick the slices of a range of days.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd

from insights.trends import DAILY_VIEW, empty_daily_view, parquet_daily_view
from warehouse.files import atomic_write, fsync_dir
from warehouse.parquet_store import ParquetStore
from warehouse.schema import CREDIT_USAGE

log = logging.getLogger(__name__)

CACHE = Path("state") / "series-facts"
LEGACY_CACHE = Path("state") / "series-facts.parquet"
"""The single-file cache of earlier versions: removed when found."""
FACTS_TABLE = "slice_facts"
COMPUTED_TABLE = "slice_facts_computed"
"""The rows :func:`load_slice_facts` computed (or migrated) in this connection."""
FORMAT = "series-facts-1"
"""Stored in every cached row: a cache of another format is not used."""

_FACT_COLUMNS = """
    organization_id VARCHAR, scope VARCHAR, pkey VARCHAR, project_id VARCHAR,
    first_day TIMESTAMP, first_use TIMESTAMP, last_day TIMESTAMP,
    organization_name VARCHAR, organization_name_day TIMESTAMP,
    project_name VARCHAR, project_name_day TIMESTAMP
"""


@dataclass(frozen=True)
class DaySlice:
    """One file of `credit_usage` day rows: its path, its name in the table's manifest, its
    month (``YYYY-MM``, None when the path does not say) and its committed digest (None when it
    has none or a change of it is unfinished: then it is not cached)."""

    path: Path
    name: str
    month: str | None
    sha256: str | None


def day_slices(store: ParquetStore) -> list[DaySlice]:
    """Every file of `credit_usage` day rows, with its manifest digest."""
    manifest = store.manifest(CREDIT_USAGE)
    entries = manifest.load() if manifest.exists else {}
    out: list[DaySlice] = []
    for path in store.files(CREDIT_USAGE):
        name = manifest.relative(path)
        parts = name.split("/")
        if parts[0] != "interval=day":
            continue  # period rows: never day rows
        month = next((p[len("month=") :] for p in parts[1:-1] if p.startswith("month=")), None)
        entry = entries.get(name)
        sha = None
        if entry is not None and entry.pending is None and entry.committed is not None:
            sha = entry.committed.sha256
        out.append(DaySlice(path, name, month, sha))
    return out


def slices_between(slices: list[DaySlice], first: date | None, end: date | None) -> list[DaySlice]:
    """The slices that can hold days of ``[first, end)`` (None: unbounded)."""
    lo = None if first is None else f"{first.year:04d}-{first.month:02d}"
    last = None if end is None else end - pd.Timedelta(days=1)
    hi = None if last is None else f"{last.year:04d}-{last.month:02d}"
    return [
        s
        for s in slices
        if s.month is None or ((lo is None or s.month >= lo) and (hi is None or s.month <= hi))
    ]


def daily_view_over(
    con: duckdb.DuckDBPyConnection, store: ParquetStore, slices: list[DaySlice]
) -> None:
    """Create the daily view (`trends.DAILY_VIEW`) over these slices only (no rows without)."""
    if slices:
        parquet_daily_view(con, store.scan_files_sql(CREDIT_USAGE, [s.path for s in slices]))
    else:
        empty_daily_view(con)


def _slice_facts_sql(view: str, tag: str) -> str:
    """One aggregate over a daily view: each series' facts, plus the slice's marker row."""
    return f"""
        SELECT {tag}, organization_id, scope, coalesce(project_id, '') AS pkey,
               any_value(project_id) AS project_id,
               min(date) AS first_day,
               min(date) FILTER (WHERE credits > 0) AS first_use,
               max(date) AS last_day,
               arg_max(organization_name, date) FILTER (WHERE organization_name IS NOT NULL)
                   AS organization_name,
               max(date) FILTER (WHERE organization_name IS NOT NULL) AS organization_name_day,
               arg_max(project_name, date) FILTER (WHERE project_name IS NOT NULL)
                   AS project_name,
               max(date) FILTER (WHERE project_name IS NOT NULL) AS project_name_day
        FROM {view}
        GROUP BY organization_id, scope, pkey
        UNION ALL
        SELECT {tag}, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    """


def _quote(text: str | None) -> str:
    return "NULL" if text is None else "'" + text.replace("'", "''") + "'"


@dataclass
class FactsLoad:
    """What :func:`load_slice_facts` did: slices in all, and those it had to compute."""

    slices: int = 0
    computed: int = 0


def load_slice_facts(
    con: duckdb.DuckDBPyConnection, store: ParquetStore, slices: list[DaySlice]
) -> FactsLoad:
    """Make :data:`FACTS_TABLE` hold the facts of every series in each of ``slices`` (one row per
    slice and series, plus one marker row per slice with no organization): a view over the
    cache files where they are current, plus the rows computed for the rest (then cached).
    Replaces :data:`trends.DAILY_VIEW` (left over the last computed slice).

    The cached rows are read where they are used, not copied into a table: a long history's
    facts are ~100,000 rows of names and ids, and materializing them cost more than every query
    over them (each scan of the files is one aggregate)."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {COMPUTED_TABLE} (format VARCHAR, slice VARCHAR, "
        f"sha256 VARCHAR, month VARCHAR, {_FACT_COLUMNS})"
    )
    result = FactsLoad(slices=len(slices))
    cached = _read_cache(con, store, slices)
    missing = [s for s in slices if s.sha256 is None or (s.name, s.sha256) not in cached]
    for s in missing:
        parquet_daily_view(con, store.scan_files_sql(CREDIT_USAGE, [s.path]))
        tag = (
            f"{_quote(FORMAT)} AS format, {_quote(s.name)} AS slice, {_quote(s.sha256)} AS sha256,"
            f" {_quote(s.month)} AS month"
        )
        con.execute(f"INSERT INTO {COMPUTED_TABLE} {_slice_facts_sql(DAILY_VIEW, tag)}")
    result.computed = len(missing)
    _facts_view(con, cached.files)
    computed = [s for s in missing if s.sha256 is not None]
    migrated = set(cached.migrated)
    _save(con, store, computed + [s for s in slices if s.name in migrated], cached.stale)
    return result


@dataclass
class _Cached:
    keys: set[tuple[str, str]]
    stale: list[Path]
    """Cache files of no current slice (or unreadable): removed when the cache is saved."""
    migrated: list[str] = field(default_factory=list)
    """Slices whose rows came from the single-file cache of earlier versions: written to their
    own files when the cache is saved (so an upgraded warehouse computes nothing again)."""
    files: dict[Path, DaySlice] = field(default_factory=dict)
    """The cache files holding their slice's rows at its current digest."""

    def __contains__(self, key: object) -> bool:
        return key in self.keys


def _cache_dir(store: ParquetStore) -> Path:
    return store.root.parent / CACHE


def _cache_file(store: ParquetStore, slice_name: str) -> Path:
    """The cache file of one slice (its name: a digest of the slice's path)."""
    return _cache_dir(store) / f"{hashlib.sha256(slice_name.encode()).hexdigest()[:32]}.parquet"


_COLUMNS = (
    "format, slice, sha256, month, organization_id, scope, pkey, project_id, first_day, "
    "first_use, last_day, organization_name, organization_name_day, project_name, "
    "project_name_day"
)


def _cached_rows_sql(files: Iterable[Path], slices: Iterable[DaySlice]) -> str:
    """The rows of cache ``files`` tagged with one of ``slices``' current digests."""
    listing = ", ".join(_quote(str(p)) for p in files)
    wanted = ", ".join(f"({_quote(s.name)}, {_quote(s.sha256)})" for s in slices)
    return (
        f"SELECT {_COLUMNS} FROM read_parquet([{listing}]) AS c "
        f"SEMI JOIN (VALUES {wanted}) AS w(slice, sha256) "
        f"ON w.slice = c.slice AND w.sha256 = c.sha256 WHERE c.format = {_quote(FORMAT)}"
    )


def _covered(con: duckdb.DuckDBPyConnection, files: dict[Path, DaySlice]) -> set[tuple[str, str]]:
    """The (slice, digest) pairs cache ``files`` hold rows of. Every value is decoded (an
    aggregate of each column), so a damaged file fails here, where it is recomputed, rather
    than in a later query."""
    rows = con.execute(
        f"SELECT slice, sha256, {', '.join(f'min({c})' for c in _COLUMNS.split(', ')[3:])} "
        f"FROM ({_cached_rows_sql(files, files.values())}) GROUP BY slice, sha256"
    ).fetchall()
    return {(str(r[0]), str(r[1])) for r in rows}


def _facts_view(con: duckdb.DuckDBPyConnection, files: Iterable[Path]) -> None:
    """:data:`FACTS_TABLE`: the rows of the cache ``files`` (each checked by :func:`_covered` to
    hold its slice's current digest) and the computed ones. Read where used, like the slices:
    a file replaced meanwhile by another run is read whole, as it is then."""
    listing = ", ".join(_quote(str(p)) for p in files)
    cached = (
        f"SELECT {_COLUMNS} FROM read_parquet([{listing}]) WHERE format = {_quote(FORMAT)} "
        "UNION ALL "
        if listing
        else ""
    )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {FACTS_TABLE} AS "
        f"{cached}SELECT {_COLUMNS} FROM {COMPUTED_TABLE}"
    )


def _read_cache(
    con: duckdb.DuckDBPyConnection, store: ParquetStore, slices: list[DaySlice]
) -> _Cached:
    """Which (slice, digest) pairs the current cache files cover (their rows are read through
    :data:`FACTS_TABLE`), the cache files to remove (of no current slice, or unreadable) and
    the slices taken from the single-file cache of earlier versions (copied into
    :data:`COMPUTED_TABLE`)."""
    directory = _cache_dir(store)
    legacy = store.root.parent / LEGACY_CACHE
    wanted = {_cache_file(store, s.name): s for s in slices if s.sha256}
    present = sorted(directory.glob("*.parquet")) if directory.exists() else []
    stale = [p for p in present if p not in wanted]
    files = {p: wanted[p] for p in present if p in wanted}
    try:
        keys = _covered(con, files) if files else set()
    except duckdb.Error as exc:
        log.warning("series facts cache %s unreadable (%s): recomputing it", directory, exc)
        return _Cached(set(), stale + list(files) + ([legacy] if legacy.exists() else []))
    current = {p: s for p, s in files.items() if (s.name, s.sha256) in keys}
    migrated: list[str] = []
    rest = [s for s in wanted.values() if (s.name, s.sha256) not in keys]
    if legacy.exists():
        stale.append(legacy)
        try:  # one statement: on failure nothing of it is inserted
            if rest:
                _insert_legacy(con, legacy, rest)
        except duckdb.Error as exc:
            log.warning("series facts cache %s unreadable (%s): not migrated", legacy, exc)
        else:
            done = con.execute(f"SELECT DISTINCT slice, sha256 FROM {COMPUTED_TABLE}").fetchall()
            migrated = [str(r[0]) for r in done]
            keys |= {(str(a), str(b)) for a, b in done}
    return _Cached(keys, stale, migrated, current)


def _insert_legacy(con: duckdb.DuckDBPyConnection, legacy: Path, slices: list[DaySlice]) -> None:
    """Copy the rows of the single-file cache tagged with one of ``slices``' digests."""
    con.execute(f"INSERT INTO {COMPUTED_TABLE} {_cached_rows_sql([legacy], slices)}")


def forget_organization(warehouse: Path, organization_id: str) -> int:
    """Remove the cache files holding rows of ``organization_id`` (and unreadable ones, and
    the single-file cache of earlier versions); returns how many. Each is a shortcut the next
    run recomputes from the slices (which `usage-etl forget` has rewritten without it)."""
    directory = Path(warehouse) / CACHE
    files = sorted(directory.glob("*.parquet")) if directory.exists() else []
    legacy = Path(warehouse) / LEGACY_CACHE
    removed = [legacy] if legacy.exists() else []
    con = duckdb.connect(":memory:")
    try:
        for path in files:
            try:
                row = con.execute(
                    f"SELECT count(*) FROM read_parquet({_quote(str(path))}) "
                    "WHERE organization_id = ?",
                    [organization_id],
                ).fetchone()
            except duckdb.Error:
                row = None  # unreadable: recomputed anyway
            if row is None or row[0]:
                removed.append(path)
    finally:
        con.close()
    for path in removed:
        path.unlink(missing_ok=True)
    for parent in {p.parent for p in removed}:
        fsync_dir(parent)
    return len(removed)


def _save(
    con: duckdb.DuckDBPyConnection,
    store: ParquetStore,
    computed: list[DaySlice],
    stale: list[Path],
) -> None:
    """Write the cache file of each computed slice (atomically), remove the stale ones."""
    written = set()
    for s in computed:
        path = _cache_file(store, s.name)
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: Path, name: str = s.name) -> None:
            con.execute(
                f"COPY (SELECT * FROM {COMPUTED_TABLE} WHERE slice = {_quote(name)} "
                f"ORDER BY organization_id, scope, pkey) TO {_quote(str(tmp))} "
                "(FORMAT parquet, COMPRESSION zstd)"
            )

        atomic_write(path, write)
        written.add(path)
    for path in stale:
        if path not in written:
            path.unlink(missing_ok=True)


def combine(
    con: duckdb.DuckDBPyConnection, series_table: str, org_last_table: str, where: str = "TRUE"
) -> None:
    """The whole-history facts from the per-slice rows of :data:`FACTS_TABLE` (those matching
    ``where``): per series in ``series_table`` (first day, first day with usage, latest names),
    per organization its last day in ``org_last_table``."""
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE {series_table} AS
        SELECT organization_id, scope, pkey, any_value(project_id) AS project_id,
               min(first_day) AS first_day, min(first_use) AS first_use,
               arg_max(organization_name, organization_name_day)
                   FILTER (WHERE organization_name IS NOT NULL) AS organization_name,
               arg_max(project_name, project_name_day)
                   FILTER (WHERE project_name IS NOT NULL) AS project_name
        FROM {FACTS_TABLE}
        WHERE organization_id IS NOT NULL AND ({where})
        GROUP BY organization_id, scope, pkey
        """
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {org_last_table} AS SELECT organization_id, "
        f"max(last_day) AS last_day FROM {FACTS_TABLE} "
        f"WHERE organization_id IS NOT NULL AND ({where}) GROUP BY organization_id"
    )


def months_with_rows(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The months (``YYYY-MM``, sorted) with day rows in the slices of :data:`FACTS_TABLE`: from
    each slice's first to its last day (a slice holds one month). A month no slice has rows of
    was never loaded: it has no trend rows, whatever the months around it."""
    spans = con.execute(
        f"SELECT min(first_day), max(last_day) FROM {FACTS_TABLE} "
        "WHERE organization_id IS NOT NULL GROUP BY slice"
    ).fetchall()
    months: set[str] = set()
    for lo, hi in spans:
        first, last = pd.Timestamp(lo), pd.Timestamp(hi)
        year, month = first.year, first.month
        while (year, month) <= (last.year, last.month):
            months.add(f"{year:04d}-{month:02d}")
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return sorted(months)
