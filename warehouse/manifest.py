"""The storage layer's integrity record: which slices a table has, and what each must contain.

A *slice* is one stored Parquet file of a table (`parquet/<table>/.../<name>.parquet`): a
`credit_usage` month of one interval, one `resource_usage` snapshot, an unpartitioned table's
`data.parquet`. Every table directory holds one manifest, `parquet/<table>/_manifest.json`
(underscore-prefixed, so engines reading the directory ignore it), that records each slice by its
path relative to the table directory:

    {"format": 1, "table": "credit_usage", "slices": {
       "interval=day/month=2026-10/data.parquet": {
          "committed": {"rows": 1581, "bytes": 40213, "sha256": "…", "written_at": "…",
                        "organizations": {"<organization_id>": {"rows": 310, "credits": 5120.5}}},
          "pending": null, "removing": false}}}

The file is compact JSON with sorted keys, one slice per line (between the opening and closing
lines of `slices`): a manifest of a long history is mostly per-organization sums, and a line
keeps the text of its record, so a run that rewrites a few slices' records neither encodes the
others again nor keeps their sums as objects it never reads. A full check (`usage-etl verify`)
reads every record's sums, so a garbled manifest is found then, not first by a repair that
needs them.

- `sha256` and `bytes` are the file digest: a slice is good when its file hashes to the recorded
  digest. Any flipped byte, a truncated, missing or replaced file is caught.
- `rows` and `organizations` (rows and, for tables with a `credits` column, the credit sum per
  organization) are the content that matters. They say what a damaged slice held (which
  organizations' data a repair must bring back) and are what an engine that rewrites files (a
  later DuckLake backend, incremental publishing) compares instead of the digest.

Writing (callers hold the warehouse `writer_lock`): the new file is written to a temporary file
and fsynced; its record is *staged* (`pending`) in the manifest (atomic rewrite); the temporary
file is renamed over the slice; then the record is *committed*. Removing a slice stages
`removing` first. A crash between any two steps leaves a slice that matches either its committed
or its pending record, or is absent with nothing committed, and `check` accepts exactly those
(`reconcile` then writes the settled state). So a `kill -9` never makes a legitimate slice look
bad, and a file matching neither record is never accepted.

A file on disk that the manifest does not know is *unrecorded* (bad). A table directory without a
manifest predates manifests: `reconcile` adopts its readable files once (recording their digest
and content) and reports them; unreadable ones stay unrecorded, hence bad.

What checking costs. A *full* check hashes every file (`usage-etl verify`, the first publish of
a warehouse, `forget`). A *quick* check (what a run does, several times) hashes only files that
changed since they were last hashed: each table directory keeps a cache of digests,
`parquet/<table>/_digests.json`, keyed by the file's identity and change stamps (device, inode,
size, mtime and ctime in ns). A cached digest is trusted only when all of these are unchanged,
the file's stamps are older than its hashing by at least `RACY_SECONDS` (a write in the same
clock tick as the hashing could otherwise keep the stamps: git's "racy clean" rule) and the
hashing is younger than `REHASH_AFTER` (so a file is re-read at least weekly); and it can only
find a slice good: a slice is called bad only on a fresh hash. Any write, rename over, `touch` or
`utime` changes ctime, so a quick check misses only damage no write made (the disk corrupting
bytes in place): `usage-etl verify` and the weekly re-hash find that. The cache is only ever a
shortcut: losing or garbling it costs a re-hash, never a false alarm.

Nothing here knows Dagster or the API; `ParquetStore` writes through it, `publish` refuses to
publish a warehouse with a bad slice, `usage-etl verify` reports them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from common.errors import IntegrityError as IntegrityError  # re-exported for importers
from common.errors import ManifestError
from warehouse.files import atomic_write

MANIFEST_NAME = "_manifest.json"
DIGESTS_NAME = "_digests.json"
FORMAT = 1
RACY_SECONDS = 2.0
REHASH_AFTER = 7 * 24 * 3600.0


@dataclass(frozen=True)
class OrganizationSums:
    """What one organization contributes to a slice."""

    rows: int
    credits: float | None = None


class StoredOrganizationSums(Mapping[str, OrganizationSums]):
    """A record's per-organization sums as its manifest stores them (their JSON object, or its
    text as read from a manifest line), made into :class:`OrganizationSums` on first use.

    A manifest of a long history holds a sum per organization per slice (48,000 for 1,000
    organizations' 24 months of `credit_usage`), and a run loads every manifest to check digests
    and stage writes while reading the sums of a few slices at most. Unread, they are neither
    parsed nor encoded: they are saved back as they were read."""

    __slots__ = ("_parsed", "_stored", "_text")

    def __init__(self, stored: dict[str, dict[str, Any]] | None, text: str | None = None) -> None:
        if stored is None and text is None:
            raise TypeError("organizations: neither an object nor its text")
        if stored is not None and not isinstance(stored, dict):
            raise TypeError(f"organizations is {type(stored).__name__}, expected an object")
        self._stored = stored
        self._text = text
        self._parsed: dict[str, OrganizationSums] | None = None

    def _json(self) -> dict[str, dict[str, Any]]:
        if self._stored is None:
            try:
                stored = json.loads(self._text or "")
            except ValueError as exc:
                stored = exc
            if not isinstance(stored, dict):
                found = "unreadable" if isinstance(stored, ValueError) else type(stored).__name__
                raise ManifestError(
                    f"a manifest record's organizations are {found}, expected an object; "
                    "restore the manifest from a backup, or delete it to re-adopt the table's "
                    "readable files"
                )
            self._stored = stored
        return self._stored

    def _sums(self) -> dict[str, OrganizationSums]:
        if self._parsed is None:
            self._parsed = {
                k: OrganizationSums(int(v["rows"]), v.get("credits"))
                for k, v in self._json().items()
            }
        return self._parsed

    def __getitem__(self, organization_id: str) -> OrganizationSums:
        return self._sums()[organization_id]

    def __contains__(self, organization_id: object) -> bool:
        return organization_id in self._json()

    def __iter__(self) -> Iterator[str]:
        return iter(self._json())

    def __len__(self) -> int:
        return len(self._json())

    def to_json(self) -> dict[str, dict[str, Any]]:
        return self._json()

    @property
    def text(self) -> str | None:
        """The stored text, while it has not been parsed (None after, or when read parsed)."""
        return self._text if self._stored is None else None


def _json_text(value: object) -> str:
    """How the manifest stores a value: compact JSON with sorted keys (json's C encoder)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _organizations_json(sums: Mapping[str, OrganizationSums]) -> dict[str, dict[str, Any]]:
    if isinstance(sums, StoredOrganizationSums):
        return sums.to_json()
    return {k: {"rows": v.rows, "credits": v.credits} for k, v in sums.items()}


@dataclass(frozen=True)
class SliceRecord:
    """The recorded identity and content of one slice file."""

    rows: int
    bytes: int
    sha256: str
    organizations: Mapping[str, OrganizationSums] = field(default_factory=dict)
    written_at: str = ""
    adopted: bool = False

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rows": self.rows,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "written_at": self.written_at,
            "organizations": _organizations_json(self.organizations),
        }
        if self.adopted:
            out["adopted"] = True
        return out

    @cached_property
    def json_text(self) -> str:
        """:meth:`to_json` as the manifest stores it, made once per record (records are
        immutable, and the manifest of a long history is saved twice per slice write)."""
        return _json_text(self.to_json())

    @classmethod
    def from_json(cls, data: dict[str, Any], sums_text: str | None = None) -> SliceRecord:
        """The record of `data`; `sums_text`: its organizations' text, parsed on first use
        (`data` then holds none)."""
        return cls(
            rows=int(data["rows"]),
            bytes=int(data["bytes"]),
            sha256=str(data["sha256"]),
            organizations=(
                StoredOrganizationSums(None, sums_text)
                if sums_text is not None
                else StoredOrganizationSums(data.get("organizations", {}))
            ),
            written_at=str(data.get("written_at", "")),
            adopted=bool(data.get("adopted", False)),
        )

    @classmethod
    def from_text(cls, text: str) -> SliceRecord | None:
        """The record stored as `text` (compact, sorted keys), its sums left as text: the keys
        before `organizations` hold numbers and booleans, those after it numbers and strings,
        so the object's bounds are found without reading it. None when `text` is not laid out
        so."""
        key = '"organizations":'
        start = text.find(key)
        end = text.rfind('},"rows":')
        if start < 0 or end < start:
            return None
        sums = text[start + len(key) : end + 1]
        if not (sums.startswith("{") and sums.endswith("}")):
            return None
        try:
            data = json.loads(f"{text[:start]}{key}null{text[end + 1 :]}")
        except ValueError:
            return None  # bounds found inside another value: the caller parses it whole
        if not isinstance(data, dict) or set(data) - {
            "adopted",
            "bytes",
            "organizations",
            "rows",
            "sha256",
            "written_at",
        }:
            return None
        record = cls.from_json(data, sums)
        record.__dict__["json_text"] = text  # as read: saved back unchanged
        return record


@dataclass
class Entry:
    """One slice in the manifest: its committed record and an in-flight change, if any."""

    committed: SliceRecord | None = None
    pending: SliceRecord | None = None
    removing: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "committed": self.committed.to_json() if self.committed else None,
            "pending": self.pending.to_json() if self.pending else None,
            "removing": self.removing,
        }

    def json_text(self) -> str:
        """``_json_text(self.to_json())``, from the records' own texts."""
        committed = self.committed.json_text if self.committed else "null"
        pending = self.pending.json_text if self.pending else "null"
        removing = "true" if self.removing else "false"
        return f'{{"committed":{committed},"pending":{pending},"removing":{removing}}}'

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Entry:
        committed, pending = data.get("committed"), data.get("pending")
        return cls(
            SliceRecord.from_json(committed) if committed else None,
            SliceRecord.from_json(pending) if pending else None,
            bool(data.get("removing", False)),
        )


@dataclass(frozen=True)
class BadSlice:
    """A slice that must not be published, and why."""

    table: str
    path: Path
    reason: str
    record: SliceRecord | None = None

    @property
    def organization_ids(self) -> set[str]:
        """The organizations the slice held when it was last good (empty if unknown)."""
        return set(self.record.organizations) if self.record else set()

    def describe(self) -> str:
        return f"{self.path} ({self.reason})"


@dataclass
class CheckResult:
    """The outcome of checking one table's files against its manifest."""

    table: str
    good: dict[str, SliceRecord] = field(default_factory=dict)
    bad: list[BadSlice] = field(default_factory=list)
    unadopted: list[Path] = field(default_factory=list)
    adopted: list[Path] = field(default_factory=list)
    settled: bool = True
    hashed: int = 0
    reused: int = 0


def file_digest(path: Path) -> tuple[int, str]:
    """(size in bytes, sha256 hex) of a file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _stamp(stat: os.stat_result) -> list[int]:
    """What changes whenever a file's bytes can have changed (ctime cannot be set by a user)."""
    return [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]


class DigestCache:
    """The digests of a table's files as last hashed, keyed by their change stamps.

    `digest(path)` hashes the file unless a cached digest is still trustworthy (see the module
    docstring); `save()` writes the cache atomically when it changed, and never fails a caller
    (a read-only warehouse, a concurrent writer removing the temporary file: the cache is only
    a shortcut).
    """

    def __init__(self, table_dir: Path) -> None:
        self.path = Path(table_dir) / DIGESTS_NAME
        self.entries: dict[str, dict[str, Any]] = {}
        self.hashed = 0
        self.reused = 0
        self._changed = False
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            data = json.loads(self.path.read_text())
            if data.get("format") == FORMAT and isinstance(data.get("files"), dict):
                self.entries = data["files"]

    def digest(self, path: Path, key: str, *, full: bool) -> tuple[tuple[int, str], bool]:
        """((size, sha256) of `path`, whether it came from the cache): from the cache when
        quick checking allows it."""
        try:
            before = os.stat(path)
        except OSError:
            before = None
        cached = self.entries.get(key)
        if (
            not full
            and before is not None
            and isinstance(cached, dict)
            and self._fresh(cached, before)
        ):
            self.reused += 1
            return (int(cached["stamp"][2]), str(cached["sha256"])), True
        started = time.time_ns()
        size, sha = file_digest(path)
        self.hashed += 1
        after = os.stat(path)
        if before is not None and _stamp(before) == _stamp(after):  # not changed while hashing
            self.entries[key] = {"stamp": _stamp(after), "sha256": sha, "hashed_at_ns": started}
            self._changed = True
        return (size, sha), False

    @staticmethod
    def _fresh(cached: dict[str, Any], stat: os.stat_result) -> bool:
        try:
            hashed_at = int(cached["hashed_at_ns"])
            if list(cached["stamp"]) != _stamp(stat) or not isinstance(cached["sha256"], str):
                return False
        except (KeyError, TypeError, ValueError):
            return False
        racy = hashed_at - int(RACY_SECONDS * 1e9)
        young = time.time_ns() - hashed_at < int(REHASH_AFTER * 1e9)
        return stat.st_mtime_ns < racy and stat.st_ctime_ns < racy and young

    def save(self, keep: Iterable[str]) -> None:
        """Write the cache (only entries of files still present) if anything changed."""
        kept = set(keep)
        if set(self.entries) - kept:
            self.entries = {k: v for k, v in self.entries.items() if k in kept}
            self._changed = True
        if not self._changed:
            return
        text = json.dumps({"format": FORMAT, "files": self.entries}, sort_keys=True)
        with contextlib.suppress(OSError):
            atomic_write(self.path, lambda tmp: tmp.write_text(text))
        self._changed = False


def content_sums(arrow: pa.Table) -> dict[str, OrganizationSums]:
    """Rows (and credit sums, where the table has `credits`) per `organization_id`."""
    if "organization_id" not in arrow.column_names or arrow.num_rows == 0:
        return {}
    aggregations = [("organization_id", "count")]
    if "credits" in arrow.column_names:
        aggregations.append(("credits", "sum"))
    grouped = arrow.group_by("organization_id").aggregate(aggregations).to_pylist()
    out = {}
    for row in sorted(grouped, key=lambda r: str(r["organization_id"])):
        credits = row.get("credits_sum")
        out[str(row["organization_id"])] = OrganizationSums(
            int(row["organization_id_count"]), None if credits is None else float(credits)
        )
    return out


def record_for(arrow: pa.Table, path: Path, *, adopted: bool = False) -> SliceRecord:
    """The record of `path`, a file just written from (or read as) `arrow`."""
    size, digest = file_digest(path)
    return SliceRecord(
        rows=arrow.num_rows,
        bytes=size,
        sha256=digest,
        organizations=content_sums(arrow),
        written_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        adopted=adopted,
    )


def _readable_record(path: Path) -> SliceRecord | None:
    """Read a whole Parquet file; its record, or None when it cannot be read."""
    try:
        arrow = pq.read_table(path)
        if "credits" in arrow.column_names:
            pc.sum(arrow.column("credits"))  # decode every page of the column that matters
    except (OSError, pa.ArrowException, ValueError):
        return None
    return record_for(arrow, path, adopted=True)


_HEAD = f'{{"format":{FORMAT},"slices":{{\n'
"""The manifest's text before its first slice line."""


def _tail(table: str) -> str:
    """The manifest's text after its last slice line (`table` sorts after `slices`)."""
    return f'\n}},"table":{_json_text(table)}}}'


_ENTRY_HEAD = '{"committed":'
_SETTLED_TAILS = (',"pending":null,"removing":false}', ',"pending":null,"removing":true}')


def _parse_lines(text: bytes, table: str) -> dict[str, Entry] | None:
    """The entries of a manifest written a slice a line (by :meth:`TableManifest.save`), each
    settled record keeping the text it was read from; None for any other layout."""
    head, tail = _HEAD.encode(), _tail(table).encode()
    if not (text.startswith(head) and text.endswith(tail)):
        return None
    body = text[len(head) : len(text) - len(tail)]
    entries: dict[str, Entry] = {}
    for raw in body.split(b"\n") if body else []:
        line = raw.decode().removesuffix(",")
        # a settled slice (no change in flight): `"<key>":{"committed":<record>,"pending":null,
        # "removing":...}`, its record read without its sums
        colon = line.find(f":{_ENTRY_HEAD}")
        settled = next((t for t in _SETTLED_TAILS if line.endswith(t)), None)
        if colon > 0 and settled is not None:
            key = json.loads(line[:colon])
            start = colon + 1 + len(_ENTRY_HEAD)
            record_text = line[start : len(line) - len(settled)]
            record = SliceRecord.from_text(record_text) if record_text.startswith("{") else None
            if isinstance(key, str) and record is not None:
                entries[key] = Entry(record, None, settled.endswith("true}"))
                continue
        try:
            ((key, data),) = json.loads(f"{{{line}}}").items()
        except ValueError:
            return None  # not a slice a line after all: parsed whole (and judged) by the caller
        entries[key] = Entry.from_json(data)
    return entries


class _Parsed:
    """The entries of the manifests this process last parsed or saved, by the SHA-256 of their
    bytes: a step reads a table's manifest several times (checks, staging, committing, the
    slices a derived table depends on), and parsing one of a long history is the dear part.
    Reused only for the very same bytes; the caller gets its own `Entry` objects (records are
    immutable and shared)."""

    def __init__(self) -> None:
        self._by_path: dict[Path, tuple[str, dict[str, Entry]]] = {}

    @staticmethod
    def _copy(entries: dict[str, Entry]) -> dict[str, Entry]:
        return {k: Entry(e.committed, e.pending, e.removing) for k, e in entries.items()}

    def get(self, path: Path, text: bytes) -> dict[str, Entry] | None:
        cached = self._by_path.get(path)
        if cached is None or cached[0] != hashlib.sha256(text).hexdigest():
            return None
        return self._copy(cached[1])

    def put(self, path: Path, text: bytes, entries: dict[str, Entry]) -> None:
        self._by_path[path] = (hashlib.sha256(text).hexdigest(), self._copy(entries))


_PARSED = _Parsed()


class TableManifest:
    """The manifest of one table directory (`<table_dir>/_manifest.json`)."""

    def __init__(self, table_dir: Path, table_name: str) -> None:
        self.table_dir = Path(table_dir)
        self.table = table_name
        self.path = self.table_dir / MANIFEST_NAME

    # ------------------------------------------------------------------ storage
    @property
    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> dict[str, Entry]:
        """The entries by relative path ({} when there is no manifest yet).

        Parsed once per content: a manifest whose bytes are those last parsed or saved by this
        process is not parsed again (see :class:`_Parsed`)."""
        if not self.path.exists():
            return {}
        try:
            text = self.path.read_bytes()
            entries = _PARSED.get(self.path, text)
            if entries is None:
                entries = _parse_lines(text, self.table)
                if entries is None:  # not one slice per line (written by an earlier version)
                    data = json.loads(text)
                    if data.get("format") != FORMAT:
                        raise ValueError(f"format {data.get('format')!r}, expected {FORMAT}")
                    entries = {k: Entry.from_json(v) for k, v in data["slices"].items()}
                _PARSED.put(self.path, text, entries)
            return entries
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self._unreadable(exc) from None

    def _unreadable(self, exc: Exception) -> ManifestError:
        return ManifestError(
            f"manifest {self.path} is unreadable ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); restore it from a backup, or "
            "delete it to re-adopt the table's readable files"
        )

    def _read_sums(self, entries: dict[str, Entry]) -> None:
        """Read every record's per-organization sums, which :meth:`load` leaves as text until
        used: a full check (`usage-etl verify`) finds a garbled manifest, not only a run that
        needs the sums of a damaged slice to repair it."""
        try:
            for entry in entries.values():
                for record in (entry.committed, entry.pending):
                    if record is not None:
                        list(record.organizations.values())  # parsed, or the error
        except (ManifestError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise self._unreadable(exc) from None

    def save(self, entries: dict[str, Entry]) -> None:
        # compact, sorted keys, a slice a line (module docstring), made from each entry's text:
        # a record's text is made once (or kept from the file it was read from), so saving the
        # manifest of a long history (twice per slice write) does not encode every slice's
        # sums again
        slices = ",\n".join(f"{_json_text(k)}:{entries[k].json_text()}" for k in sorted(entries))
        text = f"{_HEAD}{slices}{_tail(self.table)}".encode()
        atomic_write(self.path, lambda tmp: tmp.write_bytes(text))
        _PARSED.put(self.path, text, entries)

    def files(self) -> list[Path]:
        if not self.table_dir.exists():
            return []
        return sorted(p for p in self.table_dir.rglob("*.parquet") if not p.name.startswith("."))

    def relative(self, path: Path) -> str:
        return Path(path).relative_to(self.table_dir).as_posix()

    # ------------------------------------------------------------------ writing
    def stage(self, records: dict[Path, SliceRecord], removals: Iterable[Path] = ()) -> None:
        """Record what is about to be renamed into place (or removed); before the renames."""
        entries = self._entries_for_writing()
        for path, record in records.items():
            entry = entries.setdefault(self.relative(path), Entry())
            entry.pending, entry.removing = record, False
        for path in removals:
            entry = entries.setdefault(self.relative(path), Entry())
            entry.pending, entry.removing = None, True
        self.save(entries)

    def commit(self, written: Iterable[Path] = (), removed: Iterable[Path] = ()) -> None:
        """Settle staged changes whose renames (or removals) have happened."""
        entries = self.load()
        for path in written:
            entry = entries.get(self.relative(path))
            if entry is not None and entry.pending is not None:
                entries[self.relative(path)] = Entry(committed=entry.pending)
        for path in removed:
            entries.pop(self.relative(path), None)
        self.save(entries)

    def amend_committed(self, path: Path, record: SliceRecord) -> None:
        """Replace a slice's committed record without touching the file (see `forget.py`)."""
        entries = self.load()
        entries[self.relative(path)] = Entry(committed=record)
        self.save(entries)

    def _entries_for_writing(self) -> dict[str, Entry]:
        """Current entries; a table without a manifest adopts its readable files first."""
        if self.exists:
            return self.load()
        entries: dict[str, Entry] = {}
        for path in self.files():
            record = _readable_record(path)
            if record is not None:
                entries[self.relative(path)] = Entry(committed=record)
        return entries

    # ----------------------------------------------------------------- checking
    def check(self, *, full: bool = False) -> CheckResult:
        """Compare the files with the manifest, changing nothing but the digest cache.

        `good` maps each acceptable slice to the record it matches; files of a table without a
        manifest are `unadopted` when readable, bad when not. `full` hashes every file; otherwise
        files unchanged since they were last hashed are not read again (module docstring).
        """
        result = CheckResult(self.table)
        if not self.exists:
            for path in self.files():
                record = _readable_record(path)
                if record is None:
                    result.bad.append(BadSlice(self.table, path, "unreadable"))
                else:
                    result.unadopted.append(path)
                    result.good[self.relative(path)] = record
            result.settled = not result.unadopted
            return result
        entries = self.load()
        if full:
            self._read_sums(entries)
        on_disk = {self.relative(p): p for p in self.files()}
        cache = DigestCache(self.table_dir)
        for key, entry in sorted(entries.items()):
            path = self.table_dir / key
            if entry.pending is not None or entry.removing:
                result.settled = False
            if key not in on_disk:
                if entry.removing or entry.committed is None:
                    continue  # removed, or a write that never reached its rename
                result.bad.append(BadSlice(self.table, path, "missing", entry.committed))
                continue
            records = [r for r in (entry.committed, entry.pending) if r is not None]
            found, cached = cache.digest(path, key, full=full)
            match = self._matching(found, records)
            if match is None and cached:  # only a fresh hash may call a slice bad
                match = self._matching(cache.digest(path, key, full=True)[0], records)
            if match is not None:
                result.good[key] = match
            else:
                reason = "content differs from its manifest record"
                result.bad.append(
                    BadSlice(self.table, path, reason, entry.committed or entry.pending)
                )
        for key, path in sorted(on_disk.items()):
            if key not in entries:
                result.bad.append(BadSlice(self.table, path, "not in the manifest"))
        cache.save(on_disk)
        result.hashed, result.reused = cache.hashed, cache.reused
        return result

    @staticmethod
    def _matching(found: tuple[int, str], records: list[SliceRecord]) -> SliceRecord | None:
        return next((r for r in records if (r.bytes, r.sha256) == found), None)

    def reconcile(self, *, full: bool = False) -> CheckResult:
        """`check`, then write the settled state (callers hold the writer lock).

        Adopts the readable files of a table without a manifest; resolves changes a crash left
        half-done. Bad slices keep their committed record, so they stay bad until rewritten.
        """
        result = self.check(full=full)
        if result.settled:
            return result
        old = self.load() if self.exists else {}
        entries: dict[str, Entry] = {}
        for key, record in result.good.items():
            entries[key] = Entry(committed=record)
        for bad in result.bad:
            key = self.relative(bad.path)
            if key in old and bad.record is not None:
                entries[key] = Entry(committed=bad.record)
        self.save(entries)
        result.adopted, result.unadopted = result.unadopted, []
        result.settled = True
        return result


@dataclass
class WarehouseCheck:
    """Check results of every table directory under `<warehouse>/parquet/`."""

    tables: dict[str, CheckResult] = field(default_factory=dict)

    @property
    def bad(self) -> list[BadSlice]:
        return [b for r in self.tables.values() for b in r.bad]

    @property
    def adopted(self) -> list[Path]:
        return [p for r in self.tables.values() for p in r.adopted]

    @property
    def unadopted(self) -> list[Path]:
        return [p for r in self.tables.values() for p in r.unadopted]

    @property
    def slices(self) -> int:
        return sum(len(r.good) + len(r.bad) for r in self.tables.values())

    @property
    def hashed(self) -> int:
        """Files read and hashed by this check (the others' digests came from the cache)."""
        return sum(r.hashed for r in self.tables.values())


def table_manifests(parquet_root: Path) -> list[TableManifest]:
    """One manifest per table directory (every directory directly under `parquet/`)."""
    root = Path(parquet_root)
    if not root.exists():
        return []
    return [
        TableManifest(d, d.name)
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith((".", "_"))
    ]


def check_warehouse(parquet_root: Path, *, full: bool = True) -> WarehouseCheck:
    """Check every table, changing nothing (safe while a run writes); hashes every file unless
    `full=False`."""
    return WarehouseCheck({m.table: m.check(full=full) for m in table_manifests(parquet_root)})


def reconcile_warehouse(parquet_root: Path, *, full: bool = False) -> WarehouseCheck:
    """Check every table and settle its manifest (adoption, half-done changes); under the lock.
    Quick (files unchanged since last hashed are not re-read) unless `full=True`."""
    return WarehouseCheck({m.table: m.reconcile(full=full) for m in table_manifests(parquet_root)})
