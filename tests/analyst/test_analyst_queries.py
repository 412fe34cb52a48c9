"""Every query of docs/queries.sql runs against a demo warehouse and returns the columns it
promises, with rows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from warehouse.publish import connect_readonly

QUERIES = Path(__file__).resolve().parents[2] / "docs" / "queries.sql"


def parse_queries() -> list[tuple[str, list[str], str]]:
    out = []
    for block in re.split(r"\n(?=-- name: )", QUERIES.read_text())[1:]:
        name = re.search(r"^-- name: (\S+)", block, re.M)
        question = re.search(r"^-- question: \S", block, re.M)
        columns = re.search(r"^-- columns: (.+)$", block, re.M)
        assert name and question and columns, block[:200]
        out.append((name.group(1), [c.strip() for c in columns.group(1).split(",")], block))
    return out


def test_a_dozen_named_documented_queries() -> None:
    queries = parse_queries()
    names = [q[0] for q in queries]
    assert len(queries) >= 12
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(("name", "columns", "sql"), parse_queries(), ids=lambda v: str(v)[:40])
def test_query_returns_rows(demo_warehouse: Path, name: str, columns: list[str], sql: str) -> None:
    con = connect_readonly(demo_warehouse)
    try:
        frame = con.execute(sql).df()
    finally:
        con.close()
    assert list(frame.columns) == columns, name
    assert len(frame) > 0, name


def test_top_projects_are_projects_that_used_credits(demo_warehouse: Path) -> None:
    """A line with no credits this period (the demo's ember-free has an empty deleted-projects
    line) is no top project, and the ranks run 1, 2, 3 at most per organization."""
    (sql,) = [sql for name, _, sql in parse_queries() if name == "top_projects_this_period"]
    con = connect_readonly(demo_warehouse)
    try:
        frame = con.execute(sql).df()
        empty = con.execute(
            "SELECT count(*) FROM period_usage_by_project WHERE is_current_period AND credits = 0"
        ).fetchone()
    finally:
        con.close()
    assert empty is not None and empty[0] > 0, "the demo has an empty line this period"
    assert (frame["credits"] > 0).all(), frame
    assert frame.groupby("organization_name")["rank"].max().le(3).all()
