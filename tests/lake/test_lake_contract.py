"""The data contract, checked the same way on both backends: the demo warehouse as published
locally (`usage.duckdb`) and as published to a shared lake (PostgreSQL catalog + S3 on
loopback) by the writers' own path (`lake_sync.publish_up`).

Both must hold every contract table with its documented columns (types' nullability and
descriptions from `warehouse/schema.py` / `warehouse/derived_schema.py`), every analyst view
with the registry's columns, nothing undocumented, and the views must give the same answers.
One lake serves the whole module: it is built once from the session's demo warehouse, the
module's tests run on one xdist worker (so it is built once in the session), and each backend's
read-only connection is opened once and shared by the tests that only read through it."""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

import warehouse.derived_schema  # noqa: F401  (registers the derived tables in the contract)
from tests.services.postgres import Postgres, fresh_database
from tests.services.s3 import S3Server
from warehouse import views
from warehouse.dictionary import Relation, read_catalog, undocumented
from warehouse.lake import LakeConfig
from warehouse.lake_sync import SNAPSHOT_KEY, publish_up
from warehouse.publish import connect_readonly
from warehouse.schema import ALL_TABLES

NUMERIC = ("DOUBLE", "BIGINT", "INTEGER", "HUGEINT")

# One worker builds the module's lake (a publish of the whole demo warehouse): spread over two
# workers, both would build it.
pytestmark = pytest.mark.xdist_group("lake_contract")


@pytest.fixture(scope="module")
def lake_env(
    demo_warehouse: Path,
    lake_postgres: Postgres,
    lake_s3: S3Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, str]:
    """A lake holding the demo warehouse, published once for the module."""
    database = fresh_database(lake_postgres, "contract")
    bucket = f"contract-{uuid.uuid4().hex[:8]}"
    lake_s3.create_bucket(bucket)
    env = {
        "USAGE_LAKE_CATALOG": (
            f"postgresql://{database.user}:{database.password}@{database.host}:"
            f"{database.port}/{database.database}"
        ),
        "USAGE_LAKE_DATA": f"s3://{bucket}/usage",
        **lake_s3.env(),
    }
    copy = tmp_path_factory.mktemp("contract") / "warehouse"
    shutil.copytree(demo_warehouse, copy)
    config = LakeConfig.from_env(env)
    assert config is not None
    report = publish_up(copy, config)
    assert report.published, "nothing was published to the lake"
    return env


@pytest.fixture(scope="module")
def lake_reader(
    demo_warehouse: Path, lake_env: dict[str, str]
) -> Iterator[duckdb.DuckDBPyConnection]:
    """The lake as analysts read it (`connect_readonly` with the lake), opened once for the
    module: attaching loads and checks the DuckDB extensions, seconds of CPU each time."""
    con = connect_readonly(demo_warehouse, LakeConfig.from_env(lake_env))
    try:
        yield con
    finally:
        con.close()


@pytest.fixture(scope="module", params=["local", "lake"])
def catalog(
    request: pytest.FixtureRequest, demo_warehouse: Path
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection as analysts get it (`connect_readonly`), on one backend; the
    tests only read through it, so one per backend serves the module."""
    if request.param == "lake":
        yield request.getfixturevalue("lake_reader")
        return
    con = connect_readonly(demo_warehouse)
    try:
        yield con
    finally:
        con.close()


def documented_catalog(con: duckdb.DuckDBPyConnection) -> list[Relation]:
    """The catalog with its comments; in the lake a view's column descriptions come from
    `meta.view_columns` (DuckLake cannot comment on a view's columns)."""
    found = read_catalog(con)
    in_lake = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'meta' "
        "AND table_name = 'view_columns'"
    ).fetchone()
    if not in_lake or not in_lake[0]:
        return found
    described = {
        (str(v), str(c)): str(d)
        for v, c, d in con.execute(
            "SELECT view_name, column_name, description FROM meta.view_columns"
        ).fetchall()
    }
    return [
        dataclasses.replace(
            r,
            columns=tuple(
                dataclasses.replace(c, description=described.get((r.name, c.name)))
                if r.kind == "view"
                else c
                for c in r.columns
            ),
        )
        for r in found
    ]


def relations(con: duckdb.DuckDBPyConnection) -> dict[str, Relation]:
    return {r.name: r for r in documented_catalog(con)}


def test_every_table_view_and_column_is_described(catalog: duckdb.DuckDBPyConnection) -> None:
    found = documented_catalog(catalog)
    assert undocumented(found) == []
    assert {r.name for r in found if r.kind == "view"} == {v.name for v in views.VIEWS}


def test_view_columns_match_the_registry(catalog: duckdb.DuckDBPyConnection) -> None:
    published = {n: r for n, r in relations(catalog).items() if r.kind == "view"}
    assert set(published) == {v.name for v in views.VIEWS}
    for name, relation in published.items():
        registered = views.view(name)
        assert [c.name for c in relation.columns] == registered.column_names, name
        assert relation.description == registered.description, name
        assert [c.description for c in relation.columns] == [
            c.description for c in registered.columns
        ], name


def test_tables_keep_the_contract(catalog: duckdb.DuckDBPyConnection) -> None:
    """Every contract table is there with the contract's columns in order, their nullability
    (keys NOT NULL) and descriptions; the lake adds only its slice keys (partition values and
    the snapshot file), as ordinary documented columns after the contract's."""
    published = {n: r for n, r in relations(catalog).items() if r.kind == "table"}
    for t in ALL_TABLES:
        assert t.name in published, f"{t.name} is not published"
        columns = published[t.name].columns
        contract = [(c.name, c.nullable, c.description) for c in t.columns]
        assert [(c.name, c.nullable, c.description) for c in columns[: len(contract)]] == contract
        slice_keys = {k for k in t.partition_by if k not in t.column_names} | {SNAPSHOT_KEY}
        assert {c.name for c in columns[len(contract) :]} <= slice_keys, t.name
        assert published[t.name].description == t.description


def test_both_backends_answer_alike(
    demo_warehouse: Path, lake_reader: duckdb.DuckDBPyConnection
) -> None:
    """The same question, asked of every view and table, gets the same answer on both."""
    local = duckdb.connect(str(demo_warehouse / "usage.duckdb"), read_only=True)
    lake = lake_reader
    try:
        names = [*(t.name for t in ALL_TABLES), *(v.name for v in views.VIEWS)]
        for name in names:
            found = relations(local)[name].columns
            sums = [f'sum("{c.name}")' for c in found if c.data_type in NUMERIC]
            sql = f'SELECT count(*), {", ".join(sums) or "0"} FROM "{name}"'
            # floating-point sums depend on the order rows are read in: equal to 1e-12 relative
            expected = local.execute(sql).fetchone()
            assert lake.execute(sql).fetchone() == pytest.approx(expected, rel=1e-12), name
    finally:
        local.close()
