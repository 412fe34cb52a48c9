"""The shared lake (DuckLake: catalog on a real PostgreSQL, data on a real S3 server on loopback).

What a team relies on: both libpq spellings of the catalog work; a bad catalog, unreachable S3,
bad credentials or a missing bucket is one clear line without secrets; slices are replaced in
one snapshot; two writer processes land together; `kill -9` mid-commit leaves the old or the new
snapshot; readers attach read-only; every commit is history that can be read back.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from tests.lake.conftest import Lake
from tests.lake.writer import slice_rows
from warehouse import lake as lake_module
from warehouse.lake import (
    LakeConfig,
    LakeConfigError,
    LakeError,
    LakeTables,
    check,
    connect,
    parse_catalog,
    totals_history,
)
from warehouse.schema import CREDIT_USAGE, ORGANIZATIONS, Table

REPO = Path(__file__).resolve().parents[2]


def month_totals(config: LakeConfig) -> dict[str, tuple[int, float, float]]:
    """Per month: rows, min and max credits (a slice written whole has min == max)."""
    con = connect(config, read_only=True)
    try:
        rows = con.execute(
            "SELECT month, count(*), min(credits), max(credits) FROM credit_usage GROUP BY month"
        ).fetchall()
    finally:
        con.close()
    return {m: (int(n), float(lo), float(hi)) for m, n, lo, hi in rows}


def test_both_libpq_spellings_name_the_same_catalog() -> None:
    url = parse_catalog("postgresql://ana:s3cret@db.internal:6543/usage?sslmode=require")
    keywords = parse_catalog("dbname=usage host=db.internal port=6543 user=ana password=s3cret")
    assert set(url.split()) == set(keywords.split()) | {"sslmode=require"}
    for bad, expected in [
        ("mysql://ana:s3cret@db/usage", "not PostgreSQL"),
        ("host=db user=ana password=s3cret", "no database named"),
        ("dbname=usage colour=blue", "colour"),
    ]:
        with pytest.raises(LakeConfigError, match=expected) as raised:
            parse_catalog(bad)
        assert "s3cret" not in str(raised.value)


def test_one_variable_without_the_other_is_a_clear_error() -> None:
    assert LakeConfig.from_env({}) is None
    with pytest.raises(LakeConfigError, match=r"USAGE_LAKE_CATALOG \(--lake-catalog\) is not"):
        LakeConfig.from_env({"USAGE_LAKE_DATA": "s3://bucket/usage"})
    with pytest.raises(LakeConfigError, match=r"USAGE_LAKE_DATA \(--lake-data\) is not"):
        LakeConfig.from_env({"USAGE_LAKE_CATALOG": "dbname=usage"})


def test_a_good_lake_passes_the_up_front_check(lake: Lake) -> None:
    check(lake.config)


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"USAGE_LAKE_CATALOG": "wrong-port"}, "cannot attach the lake"),
        ({"USAGE_LAKE_CATALOG": "wrong-password"}, "cannot attach the lake"),
        ({"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "cannot write to the lake's data path"),
        ({"USAGE_LAKE_DATA": "s3://no-such-bucket/usage"}, "cannot"),
        ({"AWS_ENDPOINT_URL": "closed-port"}, "cannot"),
    ],
)
def test_bad_configuration_is_one_line_without_secrets(
    lake: Lake, change: dict[str, str], expected: str
) -> None:
    env = dict(lake.env)
    for key, value in change.items():
        if value == "wrong-port":
            env[key] = env[key].replace(f":{lake.postgres.port}/", ":1/")
        elif value == "wrong-password":
            env[key] = env[key].replace(lake.postgres.password, "not-the-password")
        elif value == "closed-port":
            env[key] = "http://127.0.0.1:1"
        else:
            env[key] = value
    config = LakeConfig.from_env(env)
    assert config is not None
    with pytest.raises(LakeError) as raised:
        check(config)
    message = str(raised.value)
    assert expected in message
    assert "\n" not in message
    for secret in (lake.postgres.password, lake.s3.secret, "not-the-password", "not-the-secret"):
        assert secret not in message


def test_slices_are_replaced_in_one_snapshot_each_and_kept_as_history(lake: Lake) -> None:
    con = connect(lake.config)
    tables = LakeTables(con, lake.config)
    for credits in (1.0, 2.0):
        tables.replace_slices(
            CREDIT_USAGE,
            [
                ({"interval": "day", "month": "2026-09"}, slice_rows("2026-09", 30, credits)),
                ({"interval": "day", "month": "2026-10"}, slice_rows("2026-10", 31, credits)),
            ],
        )
    tables.replace_slices(
        CREDIT_USAGE, [({"interval": "day", "month": "2026-10"}, slice_rows("2026-10", 31, 5.0))]
    )
    assert month_totals(lake.config) == {
        "2026-09": (30, 2.0, 2.0),
        "2026-10": (31, 5.0, 5.0),
    }
    history = totals_history(
        con, "credit_usage", {"credits": "sum(credits)"}, "month = ?", ["2026-10"]
    )
    assert [round(h.values["credits"], 6) for h in history] == [31.0, 62.0, 155.0]
    assert [round(h.changes["credits"], 6) for h in history] == [31.0, 31.0, 93.0]
    assert [h.snapshot_id for h in history] == sorted(h.snapshot_id for h in history)
    comment = con.execute(
        "SELECT comment FROM duckdb_tables() WHERE table_name = 'credit_usage'"
    ).fetchone()
    assert comment is not None and comment[0] == CREDIT_USAGE.description
    con.close()


def test_readers_attach_read_only(lake: Lake) -> None:
    con = connect(lake.config)
    LakeTables(con, lake.config).replace_slices(
        CREDIT_USAGE, [({"interval": "day", "month": "2026-11"}, slice_rows("2026-11", 3, 1.0))]
    )
    con.close()
    reader = connect(lake.config, read_only=True)
    try:
        assert reader.execute("SELECT count(*) FROM credit_usage").fetchone() == (3,)
        with pytest.raises(Exception, match=r"read-only|read only"):
            reader.execute("DELETE FROM credit_usage")
    finally:
        reader.close()


def tamper(path: Path) -> None:
    """Flip one byte inside the file (its metadata footer stays intact): the signature fails."""
    with open(path, "r+b") as handle:
        handle.seek(1000)
        byte = handle.read(1)
        handle.seek(1000)
        handle.write(bytes([byte[0] ^ 0xFF]))


def test_extension_signatures_are_checked_once_per_file_and_unsigned_ones_refused(
    lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process checks each extension file's signature once; a later connection that skips
    the check still refuses an unsigned extension, and a file changed since is checked again."""
    genuine = lake_module.extension_path
    copy = tmp_path / "httpfs.duckdb_extension"
    shutil.copyfile(genuine("httpfs"), copy)
    monkeypatch.setattr(
        lake_module, "extension_path", lambda name: copy if name == "httpfs" else genuine(name)
    )
    unsigned = tmp_path / "unsigned" / "probe.duckdb_extension"  # a name not loaded yet
    unsigned.parent.mkdir()
    shutil.copyfile(copy, unsigned)
    tamper(unsigned)
    for _ in range(2):  # the copy checked, then taken as checked
        con = connect(lake.config)
        try:
            assert con.execute(
                "SELECT current_setting('allow_unsigned_extensions')"
            ).fetchone() == (False,)
            with pytest.raises(duckdb.IOException, match="signature is either missing or invalid"):
                con.execute(f"LOAD '{unsigned}'")
        finally:
            con.close()
    tamper(copy)  # changed since it was checked: checked again, and refused
    with pytest.raises(LakeConfigError, match="signature is either missing or invalid"):
        connect(lake.config)


def writer(lake: Lake, month: str, rounds: int, rows: int = 500) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.lake.writer", month, str(rounds), str(rows)],
        cwd=REPO,
        env={**os.environ, **lake.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_writer_processes_on_different_months_both_land(lake: Lake) -> None:
    first, second = writer(lake, "2026-09", 6), writer(lake, "2026-10", 6)
    outputs = [p.communicate(timeout=240) for p in (first, second)]
    for process, (out, err) in zip((first, second), outputs, strict=True):
        assert process.returncode == 0, err[-2000:]
        assert "round=6" in out
    assert month_totals(lake.config) == {
        "2026-09": (500, 6.0, 6.0),
        "2026-10": (500, 6.0, 6.0),
    }


def test_kill_9_during_a_commit_leaves_the_old_or_the_new_slice(lake: Lake) -> None:
    # the old slice, written here (only the writer that is killed needs a process of its own)
    con = connect(lake.config)
    try:
        LakeTables(con, lake.config).replace_slices(
            CREDIT_USAGE,
            [({"interval": "day", "month": "2026-08"}, slice_rows("2026-08", 2000, 1.0))],
        )
    finally:
        con.close()
    victim = writer(lake, "2026-08", 50, rows=20000)
    assert victim.stdout is not None
    victim.stdout.readline()  # round 1 committed: round 2 is being written right now
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    rows, low, high = month_totals(lake.config)["2026-08"]
    assert low == high, "a slice was left half-replaced"
    assert rows == 20000


def test_the_analysts_recipe_in_docs_loads_the_extensions_from_pypi(tmp_path: Path) -> None:
    """docs/lake.md's Python recipe for a machine that cannot download extensions, run as
    written in a fresh interpreter: the three extensions load from their PyPI packages and a
    DuckLake attaches (a local one: the point is the extensions, not the catalog)."""
    text = (REPO / "docs" / "lake.md").read_text()
    recipe = text.split("```python\n", 1)[1].split("```", 1)[0]
    check_it = (
        recipe
        + "names = {n for (n,) in con.execute("
        + "'SELECT extension_name FROM duckdb_extensions() WHERE loaded').fetchall()}\n"
        + "assert {'ducklake', 'postgres_scanner', 'httpfs'} <= names, names\n"
        + "con.execute(\"ATTACH 'ducklake:lake.ducklake' AS usage (DATA_PATH 'data/')\")\n"
        + "con.execute('CREATE TABLE usage.t AS SELECT 42 AS x')\n"
        + "print(con.execute('SELECT x FROM usage.t').fetchone()[0])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check_it],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "42"


def test_a_contract_column_added_later_is_added_to_the_lake_table(lake: Lake) -> None:
    """A lake created before `organizations.anchor_history` existed gets the column (null in
    the rows before, described like the others) and takes rows that carry it."""
    older = dataclasses.replace(
        ORGANIZATIONS, columns=tuple(c for c in ORGANIZATIONS.columns if c.name != "anchor_history")
    )
    con = connect(lake.config)
    try:
        tables = LakeTables(con, lake.config)
        tables.replace_slices(older, [({}, organization_rows(older, None))])
        tables.replace_slices(
            ORGANIZATIONS, [({}, organization_rows(ORGANIZATIONS, "9@2026-11-25"))]
        )
        column = con.execute(
            "SELECT comment FROM duckdb_columns() WHERE table_name = 'organizations' "
            "AND column_name = 'anchor_history'"
        ).fetchone()
        assert column is not None and column[0].startswith("The organization's earlier anchor")
        assert con.execute("SELECT anchor_history FROM organizations").fetchall() == [
            ("9@2026-11-25",)
        ]
    finally:
        con.close()


def organization_rows(t: Table, history: str | None) -> pa.Table:
    row = {c.name: None for c in t.columns}
    row.update(organization_id="o-1", organization_name="fjord-ml", period_anchor_day=25)
    if "anchor_history" in row:
        row["anchor_history"] = history
    return pa.Table.from_pylist([row], schema=t.arrow_schema())
