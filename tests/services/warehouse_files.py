"""Helpers for tests that damage or inspect a warehouse's files: garble a file, find a month's
Parquet slice, read the published credit totals, query `usage.duckdb` read-only, run
`usage-etl verify`."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tests.services.emulator import Pipeline


def garble(path: Path, offset_fraction: float = 0.5, length: int = 4) -> None:
    """Overwrite `length` bytes in the middle of a file (the issue's "garble 4 bytes")."""
    data = bytearray(path.read_bytes())
    at = int(len(data) * offset_fraction)
    data[at : at + length] = bytes(255 - b for b in data[at : at + length])
    path.write_bytes(bytes(data))


def query_published(warehouse: Path, sql: str) -> list[tuple]:
    """The rows of `sql` over the warehouse's published `usage.duckdb`, opened read-only as an
    analyst would."""
    con = duckdb.connect(str(warehouse / "usage.duckdb"), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def credit_totals(p: Pipeline) -> pd.DataFrame:
    """Published credit_usage per interval, month and organization (what analysts see)."""
    return p.query(
        """select interval, strftime(start_date, '%Y-%m') as month, organization_id, scope,
                  count(*) as n, round(sum(credits), 4) as credits
           from credit_usage group by all order by all"""
    )


def verify_exit(warehouse: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`usage-etl verify --warehouse W`: (exit status, stdout + stderr)."""
    from pipelines.cli import main

    capsys.readouterr()
    status = main(["verify", "--warehouse", str(warehouse)])
    out = capsys.readouterr()
    return status, out.out + out.err


def month_slice(warehouse: Path, interval: str, month: date) -> Path:
    return (
        warehouse
        / "parquet"
        / "credit_usage"
        / f"interval={interval}"
        / f"month={month:%Y-%m}"
        / "data.parquet"
    )
