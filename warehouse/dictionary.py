"""The data dictionary, generated from the live schema of a published `usage.duckdb`.

Owns reading the catalog (`duckdb_tables()`, `duckdb_views()`, `duckdb_columns()` and their
comments) into `Relation`s, finding undocumented tables, views and columns, and rendering the
Markdown committed as `docs/data-dictionary.md`. Keys and Parquet layouts come from
`warehouse.schema` for the tables registered there. The output is deterministic (no dates, sorted
relations) so a test can compare the committed file with a regenerated one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from warehouse import schema as table_schema
from warehouse.readonly import DATABASE_NAME, connect_readonly

if TYPE_CHECKING:
    from warehouse.lake import LakeConfig

HEADER = """\
# Data dictionary

<!-- Generated file: do not edit by hand. Regenerate with
       usage-etl dictionary --demo --out docs/data-dictionary.md
     (runs the pipeline once against the bundled emulator's demo data in a temporary directory
     and documents the published database), or from an existing warehouse with
       usage-etl dictionary --warehouse DIR --out docs/data-dictionary.md
     `tests/analyst/test_data_dictionary.py` fails when this file is out of date or when a table,
     view or column has no description. Descriptions live in `warehouse/schema.py` and
     `warehouse/derived_schema.py` (tables) and `warehouse/views/*.sql` (views). -->

Everything below is read from the live catalog of `<warehouse>/usage.duckdb`
(`duckdb_tables()`, `duckdb_views()`, `duckdb_columns()`), so it is what an analyst gets.
All times are UTC. Query with `usage-etl query "SQL"`; ready-made questions are in
[`queries.sql`](queries.sql). Derived tables and the views built on them appear once the
pipeline publishes them.
"""


@dataclass(frozen=True)
class ColumnDoc:
    name: str
    data_type: str
    nullable: bool
    description: str | None


@dataclass(frozen=True)
class Relation:
    """A table or view of the published database, with its documentation."""

    name: str
    kind: str  # "table" | "view"
    description: str | None
    columns: tuple[ColumnDoc, ...]


def read_catalog(con: duckdb.DuckDBPyConnection) -> list[Relation]:
    """Tables then views of the main schema (each sorted by name), with their comments."""
    relations: list[Relation] = []
    listing = con.execute(
        """
        SELECT 'table' AS kind, table_name AS name, comment, table_oid AS oid
        FROM duckdb_tables()
        WHERE schema_name = 'main' AND NOT internal AND NOT temporary
        UNION ALL
        SELECT 'view', view_name, comment, view_oid
        FROM duckdb_views()
        WHERE schema_name = 'main' AND NOT internal AND NOT temporary
        ORDER BY kind, name
        """
    ).fetchall()
    for kind, name, comment, oid in listing:
        rows = con.execute(
            """
            SELECT column_name, data_type, is_nullable, comment
            FROM duckdb_columns()
            WHERE table_oid = ?
            ORDER BY column_index
            """,
            [oid],
        ).fetchall()
        columns = tuple(
            ColumnDoc(str(c), str(t), bool(n), str(d) if d else None) for c, t, n, d in rows
        )
        relations.append(Relation(str(name), str(kind), str(comment) if comment else None, columns))
    return relations


def read_warehouse(warehouse: Path, lake: LakeConfig | None = None) -> list[Relation]:
    """The catalog of `<warehouse>/usage.duckdb`, or of the shared `lake` when given
    (WarehouseError before the first run)."""
    con = connect_readonly(warehouse, lake)
    try:
        return read_catalog(con)
    finally:
        con.close()


def undocumented(relations: list[Relation]) -> list[str]:
    """`table` / `table.column` names without a description; empty when all are documented."""
    missing: list[str] = []
    for r in relations:
        if not (r.description or "").strip():
            missing.append(r.name)
        missing.extend(f"{r.name}.{c.name}" for c in r.columns if not (c.description or "").strip())
    return missing


def _cell(text: str | None) -> str:
    return (text or "").replace("|", "\\|").replace("\n", " ").strip()


def _table_notes(name: str) -> list[str]:
    try:
        t = table_schema.table(name)
    except KeyError:
        return []
    notes: list[str] = []
    if t.key:
        notes.append("Key: " + ", ".join(f"`{k}`" for k in t.key) + ".")
    layout = f"`parquet/{t.name}/`"
    if t.partition_by:
        layout += " partitioned by " + ", ".join(f"`{p}`" for p in t.partition_by)
    notes.append(f"Parquet: {layout}.")
    return notes


def render_markdown(relations: list[Relation]) -> str:
    """The data dictionary as Markdown (deterministic for a given catalog)."""
    out = [HEADER]
    for kind, title in (("table", "Tables"), ("view", "Views")):
        group = [r for r in relations if r.kind == kind]
        if not group:
            continue
        out.append(f"## {title}\n")
        out.extend(f"- [`{r.name}`](#{r.name}): {_cell(r.description)}" for r in group)
        out.append("")
    for r in relations:
        out.append(f"## {r.name}\n")
        out.append(f"*{r.kind}*. {_cell(r.description)}\n")
        notes = _table_notes(r.name) if r.kind == "table" else []
        if notes:
            out.append(" ".join(notes) + "\n")
        out.append("| column | type | nullable | description |")
        out.append("|---|---|---|---|")
        for c in r.columns:
            nullable = "yes" if c.nullable else "no"
            out.append(f"| `{c.name}` | {c.data_type} | {nullable} | {_cell(c.description)} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def generate(warehouse: Path) -> str:
    """The data dictionary of the warehouse's published database, as Markdown."""
    return render_markdown(read_warehouse(warehouse))


__all__ = [
    "DATABASE_NAME",
    "ColumnDoc",
    "Relation",
    "generate",
    "read_catalog",
    "read_warehouse",
    "render_markdown",
    "undocumented",
]
