"""The data dictionary: everything published is described, and docs/data-dictionary.md is the
generator's current output for a demo warehouse."""

from __future__ import annotations

from pathlib import Path

import duckdb

from pipelines.cli import main
from warehouse import views
from warehouse.dictionary import generate, read_catalog, read_warehouse, undocumented

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "data-dictionary.md"


def test_every_table_view_and_column_is_described(demo_warehouse: Path) -> None:
    relations = read_warehouse(demo_warehouse)
    assert undocumented(relations) == []
    names = {r.name for r in relations if r.kind == "view"}
    assert names == {v.name for v in views.VIEWS}  # every registered view


def test_view_columns_match_the_registry(demo_warehouse: Path) -> None:
    published = {r.name: r for r in read_warehouse(demo_warehouse) if r.kind == "view"}
    for name, relation in published.items():
        assert [c.name for c in relation.columns] == views.view(name).column_names


def test_undocumented_column_is_reported() -> None:
    con = duckdb.connect()
    con.execute("CREATE TABLE t (a INTEGER, b INTEGER)")
    con.execute("COMMENT ON TABLE t IS 'a table'")
    con.execute("COMMENT ON COLUMN t.a IS 'documented'")
    con.execute("CREATE VIEW v AS SELECT a FROM t")
    assert undocumented(read_catalog(con)) == ["t.b", "v", "v.a"]


def test_committed_dictionary_is_up_to_date(demo_warehouse: Path) -> None:
    expected = generate(demo_warehouse)
    assert COMMITTED.read_text(encoding="utf-8") == expected, (
        "docs/data-dictionary.md is out of date: run "
        "`usage-etl dictionary --demo --out docs/data-dictionary.md`"
    )


def test_dictionary_command(demo_warehouse: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "dd.md"
    assert main(["dictionary", "--warehouse", str(demo_warehouse), "--out", str(out)]) == 0
    assert out.read_text().startswith("# Data dictionary")
    assert (
        main(["dictionary", "--warehouse", str(demo_warehouse), "--out", str(out), "--check"]) == 0
    )
    out.write_text("stale")
    assert (
        main(["dictionary", "--warehouse", str(demo_warehouse), "--out", str(out), "--check"]) == 1
    )
