"""The analysts' views in `usage.duckdb`: one SQL file per view in this folder, and their loader.

A view file `<name>.sql` reads top to bottom as its documentation, then its query:

    -- What the view shows (becomes the view's COMMENT; may span several lines).
    --
    -- requires: credit_usage, organizations     (the view is made only when these tables or
                                                  views exist; a view after those it requires)
    -- optional: quota_status                    (read when present, an empty stand-in if not)
    --
    -- column_name: what it means (becomes the column's COMMENT; continues on lines
    --     indented by four spaces)
    --
    SELECT ...

The columns are listed in the view's order; the loader selects exactly those from the query, so
a view's columns are always the documented ones. A part several views share is a view of its own
that they require (`project_names`, `project_credit_lines`), documented like any other. Tables
are read by the names and columns the pipeline writes (`warehouse/schema.py`,
`warehouse/derived_schema.py`). `create_views` makes the
views in a database file with their comments, `ensure_views` makes missing ones as TEMP views on
a read-only connection. Knows nothing of Dagster or HTTP.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import duckdb

log = logging.getLogger(__name__)

VIEWS_DIR = Path(__file__).parent
DELETED_PROJECTS_LABEL = "Deleted projects"  # the name of the deleted-projects line in views
_ENTRY = re.compile(r"^(\w+):\s*(.*)$")
_CONTINUATION = "    "


class ViewFileError(ValueError):
    """A view file's leading comment is malformed; the message names the file and the line."""


@dataclass(frozen=True)
class ViewColumn:
    """One column of an analyst view and what it means."""

    name: str
    description: str


@dataclass(frozen=True)
class View:
    """An analyst view: its documentation, the tables it needs and its query, from its file."""

    name: str
    description: str
    columns: tuple[ViewColumn, ...]
    requires: tuple[str, ...]
    optional: tuple[str, ...]
    query: str

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def parse_view(path: Path) -> View:
    """The view defined by one SQL file (see the module docstring for the format)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header: list[str] = []
    for line in lines:
        if not line.startswith("--"):
            break
        header.append(line[3:] if line.startswith("-- ") else line[2:])
    query = "\n".join(lines[len(header) :]).strip().rstrip(";").strip()
    description: list[str] = []
    entries: list[list[str]] = []  # [name, text...]
    at = 0
    while at < len(header) and header[at].strip():
        description.append(header[at].strip())
        at += 1
    for number, text in enumerate(header[at:], start=at + 1):
        if not text.strip():
            continue
        if text.startswith(_CONTINUATION) and entries:
            entries[-1].append(text.strip())
            continue
        match = _ENTRY.match(text)
        if match is None:
            raise ViewFileError(
                f"{path.name} line {number}: expected `name: description` or a continuation "
                f"indented by four spaces, got {text!r}"
            )
        entries.append([match.group(1), match.group(2).strip()])
    meta = {name: " ".join(parts) for name, *parts in entries if name in ("requires", "optional")}
    columns = tuple(
        ViewColumn(name, " ".join(parts))
        for name, *parts in entries
        if name not in ("requires", "optional")
    )
    if not description or not columns or not query or "requires" not in meta:
        raise ViewFileError(
            f"{path.name}: expected a description, `requires:`, one `column: description` line "
            "per column and a query"
        )
    return View(
        name=path.stem,
        description=" ".join(description),
        columns=columns,
        requires=_names(meta["requires"]),
        optional=_names(meta.get("optional", "")),
        query=query,
    )


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


@cache
def load_views() -> tuple[View, ...]:
    """Every view file of this folder, by name."""
    return tuple(parse_view(p) for p in sorted(VIEWS_DIR.glob("*.sql")))


VIEWS: tuple[View, ...] = load_views()


def view(name: str) -> View:
    """The view called `name`; KeyError naming the known views otherwise."""
    for v in VIEWS:
        if v.name == name:
            return v
    raise KeyError(f"unknown view {name!r}; expected one of: {', '.join(v.name for v in VIEWS)}")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _stand_in(table_name: str) -> str:
    """An empty relation with a contract table's columns and types (for `optional:` tables)."""
    from warehouse import derived_schema  # noqa: F401 - registers the derived tables
    from warehouse.schema import sql_type, table

    columns = ", ".join(
        f'CAST(NULL AS {sql_type(c.type)}) AS "{c.name}"' for c in table(table_name).columns
    )
    return f'"{table_name}" AS (SELECT {columns} WHERE false)'


def applicable_views(existing_tables: Iterable[str]) -> list[View]:
    """The views whose required tables (and required views) all exist, each after the views it
    requires, so creating them in this order works."""
    available = set(existing_tables)
    pending = list(VIEWS)
    ordered: list[View] = []
    while True:
        ready = [v for v in pending if set(v.requires) <= available]
        if not ready:
            return ordered
        ordered.extend(ready)
        available.update(v.name for v in ready)
        pending = [v for v in pending if v not in ready]


def select_sql(v: View, existing_tables: Iterable[str]) -> str:
    """The SELECT behind `v`, with exactly its documented columns in their order."""
    tables = set(existing_tables)
    stand_ins = [_stand_in(t) for t in v.optional if t not in tables]
    with_clause = f"WITH {', '.join(stand_ins)} " if stand_ins else ""
    names = ", ".join(f'"{c}"' for c in v.column_names)
    return f"{with_clause}SELECT {names} FROM (\n{v.query}\n) AS v"


def create_sql(v: View, existing_tables: Iterable[str], *, temporary: bool = False) -> str:
    """`CREATE VIEW` for `v` followed by its `COMMENT ON` statements (one SQL string)."""
    kind = "TEMP VIEW" if temporary else "VIEW"
    statements = [f'CREATE OR REPLACE {kind} "{v.name}" AS {select_sql(v, existing_tables)}']
    if not temporary:  # comments are catalog entries of the database file
        statements.append(f'COMMENT ON VIEW "{v.name}" IS {_quote(v.description)}')
        statements.extend(
            f'COMMENT ON COLUMN "{v.name}"."{c.name}" IS {_quote(c.description)}' for c in v.columns
        )
    return ";\n".join(statements) + ";"


def view_statements(existing_tables: set[str]) -> list[str]:
    """SQL for every view whose tables exist: one string per view (CREATE + its comments)."""
    return [create_sql(v, existing_tables) for v in applicable_views(existing_tables)]


def live_tables(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """Base tables of the main schema and their columns, read from the database itself."""
    rows = con.execute(
        """
        SELECT c.table_name, c.column_name
        FROM duckdb_columns() AS c
        JOIN duckdb_tables() AS t
          ON t.table_oid = c.table_oid
        WHERE t.schema_name = 'main' AND NOT t.internal AND NOT t.temporary
        """
    ).fetchall()
    out: dict[str, set[str]] = {}
    for table_name, column_name in rows:
        out.setdefault(str(table_name), set()).add(str(column_name))
    return out


def create_views(con: duckdb.DuckDBPyConnection, *, strict: bool = False) -> list[str]:
    """Create (or replace) the documented views for the tables `con` has; returns their names.

    With `strict=False` a view that cannot be built is logged and skipped, so the analyst
    database is still published with the other views.
    """
    tables = live_tables(con)
    made: list[str] = []
    for v in applicable_views(tables):
        try:
            con.execute(create_sql(v, tables))
        except duckdb.Error as exc:
            if strict:
                raise
            log.warning("view %s skipped: %s", v.name, str(exc).splitlines()[0])
            continue
        made.append(v.name)
    return made


def ensure_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Make every applicable view usable on `con` (read-only is fine): views the database lacks
    are created as TEMP views. Returns the names of the views available afterwards."""
    existing = {
        str(r[0])
        for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    }
    tables = live_tables(con)
    available: list[str] = []
    for v in applicable_views(tables):
        if v.name not in existing:
            try:
                con.execute(create_sql(v, tables, temporary=True))
            except duckdb.Error as exc:
                log.warning("view %s unavailable: %s", v.name, str(exc).splitlines()[0])
                continue
        available.append(v.name)
    return available
