"""Which months of `project_usage_trends` a run recomputes, and replacing exactly those.

`project_usage_trends` is stored by calendar month (`parquet/project_usage_trends/month=YYYY-MM/
data.parquet`). A month's rows depend on (see `insights.trends`):

- the `credit_usage` day slices of that month and the two before it (rolling windows and the
  previous subscription period reach back at most that far), by their manifest digests;
- per series alive in that range: its latest names, its first day and first day with usage
  (clipped to the range: earlier values give the same rows), its organization's last day
  (clipped to the month's end) and period anchor; digested by one SQL aggregate over the
  per-slice facts of `insights.series_facts` (only the day slices that changed since
  the last run are read for them);
- the algorithm (:data:`ALGORITHM`) and its parameters.

These make the month's *fingerprint*. Next to the slices, `_derived_from.json` records per month
the fingerprint it was computed from and the digest of the slice written. A month is recomputed
when its fingerprint or its slice's digest (in the table's manifest) differs from the record,
or it has none: so it works however the run was launched (a partition backfill, the CLI, `dg`,
a lake sync that replaced a slice, `usage-etl forget`), and a daily refresh that reloaded the
current month recomputes that month only. The months with rows are those with day rows (a month
never loaded, between two loaded ranges, has none: see the gaps in `insights.trends`); months
that no longer have rows are removed, as is the single-file table written before the table was
sliced. Recomputing a month reads only the
day slices of that month and the two before it: a daily refresh reads the last three months and
the changed slices, whatever the length of the history.

Slices are written first and the record after (under the writer lock): a crash in between
leaves a record that no longer matches, so the next run recomputes those months.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from common.periods import CALENDAR_MONTHS, shift_month
from insights.series_facts import (
    FactsLoad,
    combine,
    daily_view_over,
    day_slices,
    load_slice_facts,
    months_with_rows,
    slices_between,
)
from insights.trends import (
    ANCHOR_TABLE,
    DORMANT_DAYS,
    NEW_DAYS,
    ORG_LAST_TABLE,
    SERIES_TABLE,
    anchor_table,
    derived_connection,
    has_organization_rows,
    lookback_start,
    trends_between,
)
from warehouse.derived_schema import PROJECT_USAGE_TRENDS
from warehouse.files import atomic_write, writer_lock
from warehouse.parquet_store import ParquetStore
from warehouse.schema import CREDIT_USAGE

ALGORITHM = "project_usage_trends/sql-3"
"""The trends computation: part of the fingerprint. `sql-2` adds the window sums up exactly
(`insights.trends.EXACT`); `sql-3` leaves the days an organization has no rows at all (never
loaded) out instead of counting them as days without usage, and restarts its series after them;
months of `sql-1` and `sql-2` are recomputed once."""
RECORD_NAME = "_derived_from.json"
CONTEXT_FORMAT = "series-hash-2"
"""How a month's context digest is made (:func:`_context_hashes`): part of the fingerprint.
`series-hash-1` took a series never used for one used before the month's range (DuckDB's
`greatest` skips NULL), so a backfill of older months showing earlier usage of a series idle
since left the later months' dormant flags stale; its records are recomputed once."""
BATCH_MONTHS = 12
"""Consecutive months computed by one query (each query also reads the two months before, so
a 12-month backfill is one batch: 14 months of days through the window functions instead of 16
in two batches of 6); the query's memory is bounded by its organization groups
(`insights.trends.ORGANIZATION_CHUNK`)."""


@dataclass
class TrendsRefresh:
    """What one refresh of `project_usage_trends` did."""

    months: list[str] = field(default_factory=list)
    recomputed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rows_written: int = 0
    preview: pd.DataFrame | None = None
    facts: FactsLoad = field(default_factory=FactsLoad)

    @property
    def unchanged(self) -> int:
        return len(self.months) - len(self.recomputed)


def month_key(day: date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def month_bounds(key: str) -> tuple[date, date]:
    """``[first day, first day of the next month)`` of a ``YYYY-MM`` key."""
    year, month = int(key[:4]), int(key[5:7])
    ny, nm = shift_month(year, month, 1)
    return date(year, month, 1), date(ny, nm, 1)


def slice_name(key: str) -> str:
    return f"month={key}/data.parquet"


def _source_digests(store: ParquetStore) -> dict[str, str | None]:
    """Month -> sha256 of the committed `credit_usage` day slice (from its manifest)."""
    out: dict[str, str | None] = {}
    for name, entry in store.manifest(CREDIT_USAGE).load().items():
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == "interval=day" and parts[1].startswith("month="):
            record = entry.committed or entry.pending
            out[parts[1][len("month=") :]] = record.sha256 if record else None
    return out


def _months(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every month that has trend rows: the months with day rows (the months between two
    loaded ranges have none: a gap is not zero usage, see `insights.trends`)."""
    return months_with_rows(con)


def _context_hashes(con: duckdb.DuckDBPyConnection, months: list[str]) -> dict[str, str]:
    """Month -> a digest of the whole-history facts its rows depend on (see module doc): the
    sum of DuckDB's 64-bit hash of each alive series' facts (clipped to the month's range) and
    their count. One aggregate over series x months (a text rendering of the same facts, sorted
    and SHA-256'd per month, cost ~10x more at 24 months). A DuckDB whose `hash` differs makes
    every month's digest differ once: all months are recomputed, then recorded anew. (Records
    written before context digests had a format are adopted without recomputing:
    :func:`_adopt_legacy_records`; those of `series-hash-1` are recomputed once, see
    :data:`CONTEXT_FORMAT`.) A series never used stays apart from one used before the range:
    the dormant flags differ."""
    digests = _per_month(
        con,
        months,
        f"""CAST(sum(hash(s.organization_id, s.scope, s.pkey, s.organization_name,
                         s.project_name, greatest(s.first_day, m.first),
                         CASE WHEN s.first_use IS NOT NULL
                              THEN greatest(s.first_use, m.first - INTERVAL 1 DAY) END,
                         least(o.last_day, m."end"),
                         coalesce(a.anchor, {CALENDAR_MONTHS}))) AS VARCHAR)
               || '/' || CAST(count(*) AS VARCHAR)""",
    )
    return {month: f"{CONTEXT_FORMAT}:{digest}" for month, digest in digests.items()}


def _legacy_context_hashes(con: duckdb.DuckDBPyConnection, months: list[str]) -> dict[str, str]:
    """Month -> the context digest records carried before :data:`CONTEXT_FORMAT` (a SHA-256 of
    the alive series' facts as sorted text): only to adopt such records without recomputing
    their months (:func:`_adopt_legacy_records`)."""
    return _per_month(
        con,
        months,
        f"""sha256(string_agg(concat_ws('|',
               s.organization_id, s.scope, s.pkey,
               coalesce(s.organization_name, '<null>'), coalesce(s.project_name, '<null>'),
               CAST(greatest(s.first_day, m.first) AS VARCHAR),
               coalesce(CAST(greatest(s.first_use, m.first - INTERVAL 1 DAY) AS VARCHAR),
                        '<never>'),
               CAST(least(o.last_day, m."end") AS VARCHAR),
               CAST(coalesce(a.anchor, {CALENDAR_MONTHS}) AS VARCHAR)),
           chr(10) ORDER BY s.organization_id, s.scope, s.pkey))""",
    )


def _per_month(con: duckdb.DuckDBPyConnection, months: list[str], aggregate: str) -> dict[str, str]:
    """Month -> ``aggregate`` over the series alive in the range its rows read (``s``: the
    series' facts, ``o``: its organization's last day, ``a``: its anchor, ``m.first`` and
    ``m."end"``: the range)."""
    if not months:
        return {}
    frame = pd.DataFrame({"month": months})
    frame["first"] = [pd.Timestamp(lookback_start(month_bounds(k)[0])) for k in months]
    frame["end"] = [pd.Timestamp(month_bounds(k)[1]) for k in months]
    con.register("trend_context_frame", frame)
    rows = con.execute(
        f"""
        SELECT m.month, {aggregate}
        FROM trend_context_frame AS m
        JOIN {SERIES_TABLE} AS s ON s.first_day < m."end"
        JOIN {ORG_LAST_TABLE} AS o ON o.organization_id = s.organization_id
                                  AND o.last_day >= m.first
        LEFT JOIN {ANCHOR_TABLE} AS a ON a.organization_id = s.organization_id
        GROUP BY m.month
        """
    ).fetchall()
    con.unregister("trend_context_frame")
    return {str(month): str(digest) for month, digest in rows}


def _adopt_legacy_records(
    con: duckdb.DuckDBPyConnection,
    recorded: dict[str, dict[str, str]],
    legacy: list[str],
    wanted: dict[str, str],
    fingerprint_with: Callable[[str, str | None], str],
) -> list[str]:
    """Re-record, with the current fingerprint, the ``legacy`` months (recorded before
    :data:`CONTEXT_FORMAT`) whose record matches the fingerprint of the previous format: their
    rows are what this version computes, so an upgrade recomputes none of them (at 5,000
    organizations x 24 months that is a backfill's work). Changes ``recorded`` in place;
    returns the adopted months."""
    contexts = _legacy_context_hashes(con, legacy)
    adopted = []
    for key in legacy:
        entry = recorded[slice_name(key)]
        if entry.get("sources") == fingerprint_with(key, contexts.get(key)):
            entry.update(sources=wanted[key], context=CONTEXT_FORMAT)
            adopted.append(key)
    return adopted


def fingerprint(
    key: str,
    sources: dict[str, str | None],
    context: str | None,
    new_days: int,
    dormant_days: int,
    organization_rows: bool = True,
) -> str:
    """The fingerprint of a month: what its rows are computed from (see module doc).
    ``organization_rows``: whether the data have organization totals at all (else shares are
    taken of the sum of the parts)."""
    start, _ = month_bounds(key)
    needed = []
    for back in range(-2, 1):
        y, m = shift_month(start.year, start.month, back)
        needed.append(sources.get(f"{y:04d}-{m:02d}"))
    body = {
        "algorithm": ALGORITHM,
        "new_days": new_days,
        "dormant_days": dormant_days,
        "sources": needed,
        "context": context,
        "organization_rows": organization_rows,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


class DerivedRecord:
    """`_derived_from.json` of a month-sliced derived table: per slice, the fingerprint it was
    computed from and the digest of the file written."""

    def __init__(self, table_dir: Path) -> None:
        self.path = Path(table_dir) / RECORD_NAME

    def load(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text())
            slices = data["slices"]
            if not isinstance(slices, dict):
                raise TypeError("slices is not an object")
            return {str(k): dict(v) for k, v in slices.items()}
        except (OSError, ValueError, KeyError, TypeError):
            return {}  # unreadable: every month is recomputed and the record rewritten

    def save(self, slices: dict[str, dict[str, str]]) -> None:
        body = {"format": 1, "table": PROJECT_USAGE_TRENDS.name, "slices": slices}
        text = json.dumps(body, indent=1, sort_keys=True)
        atomic_write(self.path, lambda tmp: tmp.write_text(text))


def _batches(keys: Iterable[str]) -> list[list[str]]:
    """Consecutive months grouped into batches of at most :data:`BATCH_MONTHS`."""
    out: list[list[str]] = []
    for key in sorted(keys):
        if (
            out
            and len(out[-1]) < BATCH_MONTHS
            and month_bounds(out[-1][-1])[1] == month_bounds(key)[0]
        ):
            out[-1].append(key)
        else:
            out.append([key])
    return out


def refresh_trends(
    warehouse: Path,
    anchors: dict[str, int],
    *,
    new_days: int = NEW_DAYS,
    dormant_days: int = DORMANT_DAYS,
    full: bool = False,
) -> TrendsRefresh:
    """Recompute the months of `project_usage_trends` whose inputs changed (every month with
    ``full``), remove months without rows and the pre-slicing single file; see module doc.

    ``anchors`` are the organizations' period anchors (``periods.anchors_by_organization``).
    """
    warehouse = Path(warehouse)
    store = ParquetStore(warehouse)
    result = TrendsRefresh()
    table_dir = store.table_dir(PROJECT_USAGE_TRENDS)
    record = DerivedRecord(table_dir)
    sources = _source_digests(store)  # before reading data: a later change only re-triggers
    slices = day_slices(store)
    with derived_connection() as con:
        months: list[str] = []
        contexts: dict[str, str] = {}
        organization_rows = True
        if slices:
            result.facts = load_slice_facts(con, store, slices)
            combine(con, SERIES_TABLE, ORG_LAST_TABLE)
            anchor_table(con, anchors)
            months = _months(con)
            contexts = _context_hashes(con, months)
            organization_rows = has_organization_rows(con)
        result.months = months
        wanted = {
            k: fingerprint(k, sources, contexts.get(k), new_days, dormant_days, organization_rows)
            for k in months
        }
        recorded = record.load()
        legacy = [
            k for k in months if "context" not in recorded.get(slice_name(k), {"context": ""})
        ]  # recorded before CONTEXT_FORMAT
        if legacy:
            adopted = _adopt_legacy_records(
                con,
                recorded,
                legacy,
                wanted,
                lambda k, context: fingerprint(
                    k, sources, context, new_days, dormant_days, organization_rows
                ),
            )
            if adopted:
                with writer_lock(warehouse):
                    current = record.load()
                    current.update({slice_name(k): recorded[slice_name(k)] for k in adopted})
                    record.save(current)
        committed = _committed_digests(store)
        stale = [
            k
            for k in months
            if full
            or recorded.get(slice_name(k), {}).get("sources") != wanted[k]
            or committed.get(slice_name(k)) is None
            or committed.get(slice_name(k)) != recorded.get(slice_name(k), {}).get("sha256")
            or not (table_dir / slice_name(k)).exists()
        ]
        result.recomputed = stale
        for batch in _batches(stale):
            start, end = month_bounds(batch[0])[0], month_bounds(batch[-1])[1]
            daily_view_over(con, store, slices_between(slices, lookback_start(start), end))
            frame = trends_between(con, start, end, new_days=new_days, dormant_days=dormant_days)
            parts = []
            for key in batch:
                lo, hi = (pd.Timestamp(d) for d in month_bounds(key))
                part = frame[(frame["date"] >= lo) & (frame["date"] < hi)]
                parts.append(({"month": key}, part.reset_index(drop=True)))
            if result.preview is None:
                result.preview = frame.head(5)
            del frame
            with writer_lock(warehouse):
                result.rows_written += store.replace_partitions(PROJECT_USAGE_TRENDS, parts)
                done = _committed_digests(store)
                current = record.load()
                for key in batch:
                    current[slice_name(key)] = {
                        "sources": wanted[key],
                        "context": CONTEXT_FORMAT,
                        "sha256": done.get(slice_name(key), ""),
                    }
                record.save(current)
        with writer_lock(warehouse):
            result.removed = _remove_outdated(store, record, set(months))
    return result


def _committed_digests(store: ParquetStore) -> dict[str, str]:
    return {
        name: entry.committed.sha256
        for name, entry in store.manifest(PROJECT_USAGE_TRENDS).load().items()
        if entry.committed is not None
    }


def _remove_outdated(store: ParquetStore, record: DerivedRecord, months: set[str]) -> list[str]:
    """Remove slices of months without rows and the table's pre-slicing `data.parquet`
    (recorded in the manifest first, like every removal); returns the removed slice names."""
    manifest = store.manifest(PROJECT_USAGE_TRENDS)
    table_dir = store.table_dir(PROJECT_USAGE_TRENDS)
    keep = {slice_name(k) for k in months}
    outdated = [p for p in store.files(PROJECT_USAGE_TRENDS) if manifest.relative(p) not in keep]
    names = [manifest.relative(p) for p in outdated]
    if outdated:
        manifest.stage({}, removals=outdated)
        for path in outdated:
            path.unlink(missing_ok=True)
        manifest.commit(removed=outdated)
    current = record.load()
    if set(current) - keep:
        record.save({k: v for k, v in current.items() if k in keep})
    for directory in sorted({p.parent for p in outdated}, reverse=True):
        if directory != table_dir and directory.exists() and not any(directory.iterdir()):
            directory.rmdir()
    return names


def describe(result: TrendsRefresh) -> dict[str, Any]:
    """Metadata of a refresh for the asset's materialization."""
    return {
        "months": len(result.months),
        "months_recomputed": ", ".join(result.recomputed) or "-",
        "months_unchanged": result.unchanged,
        "months_removed": ", ".join(result.removed) or "-",
        "rows_written": result.rows_written,
        "day_slices_scanned_for_series_facts": f"{result.facts.computed} of {result.facts.slices}",
    }
