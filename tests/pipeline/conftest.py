"""Fixtures for end-to-end pipeline tests: a loopback emulator and an isolated warehouse.

The emulator's clock is frozen at the moment the fixture starts, so its data do not move while a
test runs, and the pipeline's "today" is the emulator's today.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from emulator.server import EmulatorConfig, EmulatorServer
from pipelines.analytics.periods import shift_month
from pipelines.commands.run_cmd import RunSummary, execute


@dataclass
class Pipeline:
    warehouse: Path
    server: EmulatorServer
    start: date
    end: date

    def run(self, start: date | None = None, end: date | None = None) -> RunSummary:
        return execute(start or self.start, end or self.end, log_level="WARNING")

    def query(self, sql: str, params: list[object] | None = None) -> pd.DataFrame:
        con = duckdb.connect(str(self.warehouse / "usage.duckdb"), read_only=True)
        try:
            return con.execute(sql, params or []).df()
        finally:
            con.close()


def start_emulator(**overrides: object) -> EmulatorServer:
    config = EmulatorConfig(
        seed=11,
        rate_limit_per_minute=0,
        now=datetime.now(UTC).replace(microsecond=0),
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return EmulatorServer(config, host="127.0.0.1", port=0)


@pytest.fixture
def pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    warehouse = tmp_path / "warehouse"
    with start_emulator() as server:
        monkeypatch.setenv("UBIOPS_API_HOST", server.base_url)
        monkeypatch.setenv("UBIOPS_API_TOKEN", server.token)
        monkeypatch.setenv("USAGE_WAREHOUSE", str(warehouse))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
        today = datetime.now(UTC).date()
        py, pm = shift_month(today.year, today.month, -1)
        yield Pipeline(warehouse, server, date(py, pm, 1), today)


def garble(path: Path, offset_fraction: float = 0.5, length: int = 4) -> None:
    """Overwrite `length` bytes in the middle of a file (the issue's "garble 4 bytes")."""
    data = bytearray(path.read_bytes())
    at = int(len(data) * offset_fraction)
    data[at : at + length] = bytes(255 - b for b in data[at : at + length])
    path.write_bytes(bytes(data))


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
