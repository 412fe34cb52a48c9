"""The shared lake: a DuckLake whose catalog lives in PostgreSQL and whose data files live on
S3-compatible object storage (or a local directory).

This module owns everything the lake needs and nothing else:
- `LakeConfig`: where the lake is (`USAGE_LAKE_CATALOG`, `USAGE_LAKE_DATA`, the standard AWS
  variables), parsed and validated, with a redacted form safe for logs;
- `connect`: a DuckDB connection with the signed `ducklake`, `postgres_scanner` and `httpfs`
  extensions loaded from their PyPI packages (never downloaded, never unsigned), the S3 secret
  created and the lake attached as `usage` (read-only for readers). DuckDB checks an
  extension's signature by hashing its whole file (~100 MB for the three, ~0.6 s of CPU) on every
  database it is loaded into; a process checks each file once (`_ExtensionLoader`);
- `write_transaction`: one unit of work committed as one snapshot, retried as a whole with
  jittered backoff when another writer's commit conflicts, a bounded number of times;
- `LakeTables`: replace a table's slice (delete the slice's rows, insert the new ones) inside
  such a transaction, create tables from the data contract, read them back;
- `totals_history`: how totals changed from snapshot to snapshot (DuckLake keeps every
  commit as a snapshot that can be queried `AT (VERSION => n)`).

Secrets (the catalog password, the S3 secret key) never leave this module in clear: every error
raised here is scrubbed of them, and `LakeConfig.redacted()` is what logs may show.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import duckdb
import pandas as pd
import pyarrow as pa

from common.errors import LakeConfigError, LakeConflictError, LakeError
from warehouse.schema import Table, sql_type

CATALOG_ALIAS = "usage"
# How messages name the two settings (the environment variable, or the equivalent flag).
CATALOG_SETTING = "USAGE_LAKE_CATALOG (--lake-catalog)"
DATA_SETTING = "USAGE_LAKE_DATA (--lake-data)"
WRITER_SETTING = "USAGE_LAKE_WRITER"
EXTENSIONS = ("ducklake", "postgres_scanner", "httpfs")
_PACKAGES = {
    "ducklake": "duckdb_extension_ducklake",
    "postgres_scanner": "duckdb_extension_postgres_scanner",
    "httpfs": "duckdb_extension_httpfs",
}
# libpq keywords we pass through from a URL's query string (`?sslmode=require`, ...).
_LIBPQ_KEYWORDS = {
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "application_name",
    "options",
    "target_session_attrs",
}

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LakeConfig:
    """Where the lake is. `catalog` is libpq key=value text; `data_path` an s3:// URL or a dir."""

    catalog: str = field(repr=False)  # libpq text: may hold the password
    data_path: str
    s3_endpoint: str | None = None
    s3_key_id: str | None = None
    s3_secret: str | None = field(default=None, repr=False)
    s3_region: str | None = None
    s3_session_token: str | None = field(default=None, repr=False)
    writer: str | None = None  # USAGE_LAKE_WRITER: this writer's name (alerting/lake_state.py)

    @property
    def on_s3(self) -> bool:
        return self.data_path.startswith("s3://")

    def secrets(self) -> list[str]:
        """Every secret value this configuration holds (to scrub from messages)."""
        values = [self.s3_secret, self.s3_session_token, _conninfo(self.catalog).get("password")]
        return [v for v in values if v]

    def redacted(self) -> str:
        """A one-line description safe for logs: no password, no secret key."""
        parts = _conninfo(self.catalog)
        shown = " ".join(f"{k}={v}" for k, v in parts.items() if k != "password")
        endpoint = f" via {self.s3_endpoint}" if self.on_s3 and self.s3_endpoint else ""
        return f"DuckLake catalog [{shown}], data at {self.data_path}{endpoint}"

    def scrub(self, text: str) -> str:
        for secret in self.secrets():
            text = text.replace(secret, "***")
        return text

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LakeConfig | None:
        """The lake named by `USAGE_LAKE_CATALOG` / `USAGE_LAKE_DATA`; None when neither is set.

        Setting only one of them is an error (a lake needs both a catalog and a data path)."""
        env = os.environ if environ is None else environ
        catalog = (env.get("USAGE_LAKE_CATALOG") or "").strip()
        data = (env.get("USAGE_LAKE_DATA") or "").strip()
        if not catalog and not data:
            return None
        if not catalog:
            raise LakeConfigError(
                f"{DATA_SETTING} is set but {CATALOG_SETTING} is not: expected a PostgreSQL "
                "connection string for the lake's catalog"
            )
        if not data:
            raise LakeConfigError(
                f"{CATALOG_SETTING} is set but {DATA_SETTING} is not: expected an s3:// URL or "
                "a directory for the lake's data files"
            )
        endpoint = (env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or "").strip()
        return cls(
            catalog=parse_catalog(catalog),
            data_path=parse_data_path(data),
            s3_endpoint=endpoint or None,
            s3_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            s3_secret=env.get("AWS_SECRET_ACCESS_KEY") or None,
            s3_region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
            s3_session_token=env.get("AWS_SESSION_TOKEN") or None,
            writer=(env.get(WRITER_SETTING) or "").strip() or None,
        )


def _conninfo(text: str) -> dict[str, str]:
    """Split libpq key=value text (values may be single-quoted) into a dict."""
    out: dict[str, str] = {}
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        eq = text.find("=", i)
        if eq < 0:
            raise LakeConfigError(
                f"{CATALOG_SETTING}: expected `key=value` pairs such as `dbname=lake host=db` "
                f"or a postgresql:// URL; word {len(out) + 1} has no `=`"
            )
        key = text[i:eq].strip()
        i = eq + 1
        if i < n and text[i] == "'":
            i += 1
            value_chars: list[str] = []
            while i < n and text[i] != "'":
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                value_chars.append(text[i])
                i += 1
            if i >= n:
                raise LakeConfigError(f"{CATALOG_SETTING}: unterminated quote in the {key} value")
            i += 1
            value = "".join(value_chars)
        else:
            start = i
            while i < n and not text[i].isspace():
                i += 1
            value = text[start:i]
        out[key] = value
    return out


def _quote_value(value: str) -> str:
    if value and all(c.isalnum() or c in "._-/:@" for c in value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def parse_catalog(text: str) -> str:
    """Normalize either libpq form to key=value text with at least `dbname`.

    `postgresql://user:pass@host:port/db?sslmode=require` and `dbname=db host=h user=u` both
    work; anything else is a one-line error that does not echo a password."""
    text = text.strip()
    if text.startswith(("postgresql://", "postgres://")):
        url = urlsplit(text)
        parts: dict[str, str] = {}
        if url.hostname:
            parts["host"] = unquote(url.hostname)
        try:
            port = url.port
        except ValueError:
            raise LakeConfigError(
                f"{CATALOG_SETTING}: the URL's port is not a number; expected "
                "postgresql://user:password@host:port/database"
            ) from None
        if port:
            parts["port"] = str(port)
        if url.path.strip("/"):
            parts["dbname"] = unquote(url.path.strip("/"))
        if url.username:
            parts["user"] = unquote(url.username)
        if url.password:
            parts["password"] = unquote(url.password)
        for key, value in parse_qsl(url.query):
            if key not in _LIBPQ_KEYWORDS:
                raise LakeConfigError(
                    f"{CATALOG_SETTING}: unknown connection parameter {key!r} in the URL"
                )
            parts[key] = value
    elif "://" in text:
        scheme = text.split("://", 1)[0]
        raise LakeConfigError(
            f"{CATALOG_SETTING}: scheme {scheme!r} is not PostgreSQL; expected "
            "postgresql://user:password@host:port/database or `dbname=... host=...`"
        )
    else:
        parts = _conninfo(text)
        unknown = sorted(set(parts) - _LIBPQ_KEYWORDS)
        if unknown:
            raise LakeConfigError(
                f"{CATALOG_SETTING}: unknown connection parameter(s) {', '.join(unknown)}; "
                "expected libpq keywords such as dbname, host, port, user, password"
            )
    if not parts.get("dbname"):
        raise LakeConfigError(
            f"{CATALOG_SETTING}: no database named; expected postgresql://host/DATABASE or "
            "`dbname=DATABASE host=...`"
        )
    return " ".join(f"{k}={_quote_value(v)}" for k, v in parts.items())


def parse_data_path(text: str) -> str:
    """An `s3://bucket/prefix/` URL (trailing slash added) or an absolute local directory."""
    text = text.strip()
    if text.startswith("s3://"):
        url = urlsplit(text)
        if not url.netloc:
            raise LakeConfigError(
                f"{DATA_SETTING} {text!r}: no bucket; expected s3://BUCKET/optional/prefix"
            )
        return text if text.endswith("/") else text + "/"
    if "://" in text:
        raise LakeConfigError(
            f"{DATA_SETTING} {text!r}: expected an s3:// URL or a local directory"
        )
    path = Path(text).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise LakeConfigError(f"{DATA_SETTING} {text!r}: is a file; expected a directory")
    return str(path) + os.sep


def extension_path(name: str) -> Path:
    """The signed extension binary shipped by its PyPI package for this DuckDB version."""
    package = _PACKAGES[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise LakeConfigError(
            f"the DuckDB extension {name!r} is not installed: expected the Python package "
            f"{package.replace('_', '-')}=={duckdb.__version__}"
        )
    root = Path(next(iter(spec.submodule_search_locations))) / "extensions"
    found = root / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not found.exists():
        shipped = sorted(p.name for p in root.glob("v*"))
        raise LakeConfigError(
            f"the DuckDB extension {name!r} is built for DuckDB {', '.join(shipped) or '?'}, "
            f"not {duckdb.__version__}: pin both to the same version"
        )
    return found


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _s3_secret_sql(config: LakeConfig) -> str:
    options = ["TYPE s3"]
    if config.s3_key_id:
        options.append(f"KEY_ID {_sql_text(config.s3_key_id)}")
    if config.s3_secret:
        options.append(f"SECRET {_sql_text(config.s3_secret)}")
    if config.s3_session_token:
        options.append(f"SESSION_TOKEN {_sql_text(config.s3_session_token)}")
    options.append(f"REGION {_sql_text(config.s3_region or 'us-east-1')}")
    if config.s3_endpoint:
        endpoint = urlsplit(config.s3_endpoint)
        if not endpoint.netloc:
            raise LakeConfigError(
                f"AWS_ENDPOINT_URL={config.s3_endpoint!r}: expected http(s)://host[:port]"
            )
        options.append(f"ENDPOINT {_sql_text(endpoint.netloc)}")
        options.append(f"USE_SSL {'true' if endpoint.scheme == 'https' else 'false'}")
        options.append("URL_STYLE 'path'")
    return f"CREATE OR REPLACE SECRET usage_lake_s3 ({', '.join(options)})"


_NO_AUTOLOADING: dict[str, str | bool] = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}


class _ExtensionLoader:
    """Opens DuckDB databases with the lake's extensions loaded, checking each extension's
    signature once per process instead of once per database.

    DuckDB verifies a signature on every `LOAD` into a new database (it hashes the whole file)
    and has no cache of its own. The first database of a process loads the extensions with
    checking on, as DuckDB always does; once all three loaded, their files (device, inode, size,
    modification time) are remembered as verified. A later database whose extension files are
    still those opens with `allow_unsigned_extensions` for its three `LOAD`s only, then turns
    it off again (DuckDB lets a running database restrict that setting, never relax it): the
    libraries are already in the process, mapped from the files that passed the check, so what
    runs is what was verified, and nothing loaded afterwards escapes the check. A file that
    changed since (an upgrade) is checked again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._verified: dict[Path, tuple[int, int, int, int]] = {}

    @staticmethod
    def _identity(path: Path) -> tuple[int, int, int, int]:
        st = path.stat()
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def open(self) -> duckdb.DuckDBPyConnection:
        """A new in-memory database with the three extensions loaded (signatures checked)."""
        paths = [extension_path(name) for name in EXTENSIONS]
        with self._lock:
            checked = all(self._verified.get(p) == self._identity(p) for p in paths)
        con = duckdb.connect(
            config={**_NO_AUTOLOADING, "allow_unsigned_extensions": True}
            if checked
            else dict(_NO_AUTOLOADING)
        )
        try:
            for path in paths:
                con.execute(f"LOAD {_sql_text(str(path))}")
            if checked:
                con.execute("SET allow_unsigned_extensions = false")
        except BaseException:
            con.close()
            raise
        if not checked:
            with self._lock:
                self._verified.update({p: self._identity(p) for p in paths})
        return con


_EXTENSIONS = _ExtensionLoader()


def connect(config: LakeConfig, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A connection with the lake attached as `usage` (and selected with USE).

    Extensions are loaded from their packages with signature checking on (once per process and
    file, see `_ExtensionLoader`); nothing is installed or auto-loaded from the network. Every
    failure is a `LakeError` naming what failed."""
    try:
        con = _EXTENSIONS.open()
    except duckdb.Error as exc:
        raise LakeConfigError(
            f"cannot load the lake's DuckDB extensions: {_first_line(config, exc)}"
        ) from None
    try:
        con.execute("SET TimeZone='UTC'")
        if config.on_s3:
            con.execute(_s3_secret_sql(config))
        options = [f"DATA_PATH {_sql_text(config.data_path)}"]
        if read_only:
            options.append("READ_ONLY")
        attach = (
            f"ATTACH {_sql_text('ducklake:postgres:' + config.catalog)} AS {CATALOG_ALIAS} "
            f"({', '.join(options)})"
        )
        for attempt in range(1, 6):
            try:
                con.execute(attach)
                break
            except duckdb.Error as exc:
                # Two writers attaching a brand-new catalog at once race to create its tables;
                # the loser finds them half-made. Attaching again sees the winner's catalog.
                if attempt == 5 or not _initialization_race(exc):
                    raise
                time.sleep(0.2 * attempt * (0.5 + random.random()))
        con.execute(f"USE {CATALOG_ALIAS}")
    except LakeError:
        con.close()
        raise
    except duckdb.Error as exc:
        con.close()
        raise LakeConfigError(
            f"cannot attach the lake ({config.redacted()}): {_first_line(config, exc)}"
        ) from None
    return con


def lake_summary(config: LakeConfig) -> str:
    """One line: the lake (redacted), its current snapshot and how many slices it records."""
    con = connect(config, read_only=True)
    try:
        snapshot = con.execute(
            f"SELECT max(snapshot_id), max(snapshot_time) FROM "
            f"ducklake_snapshots({_sql_text(CATALOG_ALIAS)})"
        ).fetchone()
        has_meta = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE database_name = ? AND schema_name = "
            "'meta' AND table_name = 'slices'",
            [CATALOG_ALIAS],
        ).fetchone()
        slices = (
            con.execute("SELECT count(*) FROM meta.slices").fetchone()
            if has_meta and has_meta[0]
            else (0,)
        )
    finally:
        con.close()
    sid, when = snapshot if snapshot else (None, None)
    at = f"snapshot {sid} of {when:%Y-%m-%d %H:%M:%S} UTC" if sid is not None else "no snapshot"
    count = int(slices[0]) if slices else 0
    return f"shared lake answers: {config.redacted()}; {at}; {count} slices recorded"


def _initialization_race(exc: BaseException) -> bool:
    text = str(exc)
    return "Failed to initialize DuckLake" in text and (
        "duplicate key" in text or "already exists" in text
    )


def check(config: LakeConfig) -> None:
    """Prove up front that the catalog answers and the data path takes a write.

    Raises `LakeConfigError` with one line naming what failed (catalog unreachable, bad
    credentials, missing bucket, ...). The write test overwrites one small file of a fixed name
    in the data path (removed again when the data path is a local directory)."""
    con = connect(config)
    probe = f"{config.data_path}_usage_etl_write_check.parquet"  # one fixed name, overwritten
    try:
        con.execute(f"COPY (SELECT 1 AS ok) TO {_sql_text(probe)} (FORMAT parquet)")
    except duckdb.Error as exc:
        raise LakeConfigError(
            f"cannot write to the lake's data path {config.data_path}: {_first_line(config, exc)}"
        ) from None
    finally:
        con.close()
    if not config.on_s3:
        Path(probe).unlink(missing_ok=True)


def _first_line(config: LakeConfig, exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return config.scrub(text)


def is_conflict(exc: BaseException) -> bool:
    """Whether a failed commit lost a race against another writer (worth retrying whole)."""
    text = str(exc).lower()
    return "conflict" in text or "another transaction" in text


def write_transaction(
    con: duckdb.DuckDBPyConnection,
    work: Callable[[duckdb.DuckDBPyConnection], T],
    config: LakeConfig,
    attempts: int = 6,
    base_delay: float = 0.2,
    on_retry: Callable[[int, str], None] | None = None,
) -> tuple[T, int]:
    """Run `work` in one transaction (one lake snapshot); returns its result and the retries.

    A conflicting commit is retried as a whole (DuckLake drops the transaction when COMMIT
    fails) after a jittered exponential pause, at most `attempts` times in all; then
    `LakeConflictError`. Any other failure rolls back and raises a `LakeError`: either way the
    lake stays at its previous snapshot."""
    for attempt in range(1, attempts + 1):
        try:
            con.execute("BEGIN TRANSACTION")
            result = work(con)
            con.execute("COMMIT")
            return result, attempt - 1
        except duckdb.Error as exc:
            _rollback_quietly(con)
            if not is_conflict(exc):
                raise LakeError(f"lake write failed: {_first_line(config, exc)}") from None
            if attempt == attempts:
                raise LakeConflictError(
                    f"lake write gave up after {attempts} conflicting attempts "
                    f"(another writer kept changing the same table): {_first_line(config, exc)}"
                ) from None
            if on_retry is not None:
                on_retry(attempt, _first_line(config, exc))
            time.sleep(base_delay * (2 ** (attempt - 1)) * (0.5 + random.random()))
        except BaseException:
            _rollback_quietly(con)
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def _rollback_quietly(con: duckdb.DuckDBPyConnection) -> None:
    with contextlib.suppress(duckdb.Error):  # after a failed COMMIT it is already gone
        con.execute("ROLLBACK")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lake_columns(t: Table, extra_keys: tuple[str, ...] = ()) -> list[tuple[str, str, str, bool]]:
    """(name, SQL type, description, nullable) of `t` as stored in the lake.

    In the lake a table's slice keys are ordinary columns, so that a slice is the rows matching
    them and any DuckDB client can filter on them: the contract's columns, then each partition
    key the contract does not hold (`credit_usage.month`), then `extra_keys` (`snapshot`, the
    file a snapshot table's rows came from)."""
    columns = [(c.name, sql_type(c.type), c.description, c.nullable) for c in t.columns]
    known = {c.name for c in t.columns}
    for key in (*t.partition_by, *extra_keys):
        if key not in known:
            known.add(key)
            columns.append((key, "VARCHAR", f"Slice key `{key}` of the table in the lake.", False))
    return columns


def existing_tables(con: duckdb.DuckDBPyConnection) -> set[tuple[str, str]]:
    """`{(schema, table)}` of every table the lake holds (one catalog read)."""
    rows = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = ?",
        [CATALOG_ALIAS],
    ).fetchall()
    return {(str(schema), str(table)) for schema, table in rows}


# A DELETE names at most this many slices (a longer OR chain would cost more to plan).
_SLICES_PER_DELETE = 200


@dataclass
class LakeTables:
    """The warehouse's tables inside the lake, written slice by slice."""

    con: duckdb.DuckDBPyConnection
    config: LakeConfig
    retries: int = 0

    def ensure(self, t: Table, extra_keys: tuple[str, ...] = ()) -> None:
        """Create `t` with its documented columns when it does not exist yet."""
        self.ensure_all([(t, extra_keys)])

    def ensure_all(self, wanted: list[tuple[Table, tuple[str, ...]]]) -> None:
        """Create each table of `wanted` (with its extra slice keys) that does not exist yet,
        and add to an existing one the nullable contract columns it lacks (a column added to
        the contract later, e.g. `organizations.anchor_history`: null in the rows before):
        one catalog read, and one transaction for all of it."""
        present = existing_tables(self.con)
        missing: dict[str, tuple[Table, tuple[str, ...]]] = {}
        for t, extra_keys in wanted:
            if ("main", t.name) not in present and t.name not in missing:
                missing[t.name] = (t, extra_keys)
        added = self._columns_to_add([t for t, _ in wanted if ("main", t.name) in present])
        if not missing and not added:
            return

        def create(con: duckdb.DuckDBPyConnection) -> None:
            for name, column, kind, description in added:
                con.execute(f"ALTER TABLE {_ident(name)} ADD COLUMN {_ident(column)} {kind}")
                con.execute(
                    f"COMMENT ON COLUMN {_ident(name)}.{_ident(column)} IS {_sql_text(description)}"
                )
            for t, extra_keys in missing.values():
                columns = lake_columns(t, extra_keys)
                body = ", ".join(
                    f"{_ident(n)} {kind}{'' if nullable else ' NOT NULL'}"
                    for n, kind, _, nullable in columns
                )
                con.execute(f"CREATE TABLE IF NOT EXISTS {_ident(t.name)} ({body})")
                con.execute(f"COMMENT ON TABLE {_ident(t.name)} IS {_sql_text(t.description)}")
                for name, _, description, _ in columns:
                    con.execute(
                        f"COMMENT ON COLUMN {_ident(t.name)}.{_ident(name)} IS "
                        f"{_sql_text(description)}"
                    )

        _, retries = write_transaction(self.con, create, self.config)
        self.retries += retries

    def _columns_to_add(self, tables: list[Table]) -> list[tuple[str, str, str, str]]:
        """(table, column, SQL type, description) of each nullable contract column that the
        lake's existing `tables` lack (a non-nullable one cannot be added to stored rows: the
        insert fails naming it)."""
        if not tables:
            return []
        rows = self.con.execute(
            "SELECT table_name, column_name FROM duckdb_columns() "
            "WHERE database_name = ? AND schema_name = 'main'",
            [CATALOG_ALIAS],
        ).fetchall()
        have = {(str(t), str(c)) for t, c in rows}
        return [
            (t.name, name, kind, description)
            for t in {t.name: t for t in tables}.values()
            for name, kind, description, nullable in lake_columns(t)
            if nullable and (t.name, name) not in have
        ]

    @staticmethod
    def delete_in_transaction(
        con: duckdb.DuckDBPyConnection, t: Table, keys: dict[str, str]
    ) -> None:
        """Delete the slice's rows (inside the caller's transaction)."""
        LakeTables.delete_slices_in_transaction(con, t, [keys])

    @staticmethod
    def delete_slices_in_transaction(
        con: duckdb.DuckDBPyConnection, t: Table, slices: list[dict[str, str]]
    ) -> None:
        """Delete the rows of every slice of `t` in `slices` (inside the caller's
        transaction): one DELETE for up to `_SLICES_PER_DELETE` slices named by the same keys,
        so the table's files are scanned once, not once a slice."""
        by_keys: dict[tuple[str, ...], list[dict[str, str]]] = {}
        for keys in slices:
            by_keys.setdefault(tuple(keys), []).append(keys)
        for names, group in by_keys.items():
            if not names:  # the whole table is one slice
                con.execute(f"DELETE FROM {_ident(t.name)}")
                continue
            match = "(" + " AND ".join(f"{_ident(k)} = ?" for k in names) + ")"
            for at in range(0, len(group), _SLICES_PER_DELETE):
                chunk = group[at : at + _SLICES_PER_DELETE]
                con.execute(
                    f"DELETE FROM {_ident(t.name)} WHERE " + " OR ".join([match] * len(chunk)),
                    [keys[k] for keys in chunk for k in names],
                )

    @staticmethod
    def insert_in_transaction(
        con: duckdb.DuckDBPyConnection, t: Table, keys: dict[str, str], arrow: pa.Table
    ) -> int:
        """Insert the slice's rows `arrow` (contract columns; the caller's transaction), its
        key values filled in as columns."""
        staged = arrow
        for key, value in keys.items():
            if key not in staged.column_names:
                staged = staged.append_column(key, pa.array([value] * staged.num_rows, pa.string()))
        names = [*t.column_names, *(k for k in keys if k not in t.column_names)]
        view = "_usage_slice_rows"
        con.register(view, staged)
        try:
            columns = ", ".join(_ident(n) for n in names)
            con.execute(f"INSERT INTO {_ident(t.name)} ({columns}) SELECT {columns} FROM {view}")
        finally:
            con.unregister(view)
        return staged.num_rows

    @staticmethod
    def replace_in_transaction(
        con: duckdb.DuckDBPyConnection, t: Table, keys: dict[str, str], arrow: pa.Table
    ) -> int:
        """Replace the slice's rows by `arrow` (contract columns; the caller's transaction)."""
        LakeTables.delete_in_transaction(con, t, keys)
        return LakeTables.insert_in_transaction(con, t, keys, arrow)

    def replace_slices(self, t: Table, slices: list[tuple[dict[str, str], pa.Table]]) -> int:
        """Replace each slice (rows matching its key values) by its Arrow rows, all in ONE
        snapshot: a reader sees every slice old or every slice new, never a mix."""
        extra = tuple(k for k in (slices[0][0] if slices else {}) if k not in t.partition_by)
        self.ensure(t, extra)

        def work(con: duckdb.DuckDBPyConnection) -> int:
            self.delete_slices_in_transaction(con, t, [k for k, _ in slices])
            return sum(self.insert_in_transaction(con, t, k, a) for k, a in slices)

        written, retries = write_transaction(self.con, work, self.config)
        self.retries += retries
        return written

    def read(self, t: Table, where: str = "", params: list[object] | None = None) -> pd.DataFrame:
        """The table's contract columns (optionally filtered) as pandas."""
        columns = ", ".join(_ident(c.name) for c in t.columns)
        sql = f"SELECT {columns} FROM {_ident(t.name)}" + (f" WHERE {where}" if where else "")
        return self.con.execute(sql, params or []).df()


VIEW_COLUMNS_DDL = (
    "CREATE TABLE IF NOT EXISTS meta.view_columns (view_name VARCHAR NOT NULL, column_name "
    "VARCHAR NOT NULL, position INTEGER NOT NULL, description VARCHAR NOT NULL)"
)


def create_lake_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """(Re)create the analyst views in the lake, inside the caller's transaction.

    DuckLake keeps a comment on a view but not on a view's columns (`COMMENT ON COLUMN` on a
    view fails with "Cannot comment on columns for entry ... it is not a table"), so each view
    gets its comment and its columns' descriptions go to `meta.view_columns` (view, column,
    position, description), replaced in the same transaction. Returns the views made."""
    from warehouse import views

    tables = views.live_tables(con)
    con.execute("CREATE SCHEMA IF NOT EXISTS meta")
    con.execute(VIEW_COLUMNS_DDL)
    con.execute("DELETE FROM meta.view_columns")
    made: list[str] = []
    for v in views.applicable_views(tables):
        select = views.select_sql(v, tables)
        try:
            con.execute(f"CREATE OR REPLACE VIEW {_ident(v.name)} AS {select}")
        except duckdb.BinderException as exc:  # as when publishing locally: skip, say so
            log.warning("lake view %s skipped: %s", v.name, str(exc).splitlines()[0])
            continue
        con.execute(f"COMMENT ON VIEW {_ident(v.name)} IS {_sql_text(v.description)}")
        con.executemany(
            "INSERT INTO meta.view_columns VALUES (?, ?, ?, ?)",
            [[v.name, c.name, i, c.description] for i, c in enumerate(v.columns, start=1)],
        )
        made.append(v.name)
    return made


@dataclass(frozen=True)
class SnapshotTotals:
    """The totals as of one snapshot that changed at least one of them."""

    snapshot_id: int
    snapshot_time: datetime
    values: dict[str, float]
    changes: dict[str, float]


def totals_history(
    con: duckdb.DuckDBPyConnection,
    table: str,
    totals: dict[str, str],
    where: str,
    params: list[object],
) -> list[SnapshotTotals]:
    """How each aggregate of `totals` (name -> SQL such as `sum(credits)`) over the rows of
    `table` matching `where` changed across the lake's snapshots: one entry per snapshot that
    changed any of them, oldest first. DuckLake keeps every commit, so this is exact."""
    snapshots = con.execute(
        f"SELECT snapshot_id, snapshot_time FROM ducklake_snapshots({_sql_text(CATALOG_ALIAS)}) "
        "ORDER BY snapshot_id"
    ).fetchall()
    select = ", ".join(f"coalesce({sql}, 0)" for sql in totals.values())
    history: list[SnapshotTotals] = []
    previous: dict[str, float] | None = None
    for snapshot_id, snapshot_time in snapshots:
        try:
            row = con.execute(
                f"SELECT count(*), {select} FROM {_ident(table)} "
                f"AT (VERSION => {int(snapshot_id)}) WHERE {where}",
                params,
            ).fetchone()
        except duckdb.Error:
            continue  # the table did not exist yet at that snapshot
        if row is None or (int(row[0]) == 0 and previous is None):
            continue
        values = {name: float(v) for name, v in zip(totals, row[1:], strict=True)}
        before = previous or dict.fromkeys(totals, 0.0)
        if previous is None or any(abs(values[k] - before[k]) > 1e-9 for k in totals):
            history.append(
                SnapshotTotals(
                    snapshot_id=int(snapshot_id),
                    snapshot_time=snapshot_time,
                    values=values,
                    changes={k: values[k] - before[k] for k in totals},
                )
            )
        previous = values
    return history
