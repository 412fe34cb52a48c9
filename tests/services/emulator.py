"""The emulator on loopback for pipeline tests, and the checks that compare a warehouse with it.

`start_emulator()` makes a server with the tests' seed and a clock frozen at the moment it is
called (its data do not move while a test runs, and the pipeline's "today" is the emulator's).
`Pipeline` is a loopback emulator plus an isolated warehouse, with `run()` and `query()`;
`assert_matches_emulator()` holds a warehouse to the emulator's own totals.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from common.periods import shift_month
from emulator.server import EmulatorConfig, EmulatorServer
from pipelines.commands.run_cmd import RunSummary, execute

TOLERANCE = 1e-3


def start_emulator(**overrides: object) -> EmulatorServer:
    """An emulator (seed 11, no rate limit, clock frozen now) not yet started: use `with`."""
    config = EmulatorConfig(
        seed=11,
        rate_limit_per_minute=0,
        now=datetime.now(UTC).replace(microsecond=0),
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return EmulatorServer(config, host="127.0.0.1", port=0)


def default_range(today: date) -> tuple[date, date]:
    """The `usage-etl run` default: the first day of the previous month through today."""
    year, month = shift_month(today.year, today.month, -1)
    return date(year, month, 1), today


@dataclass
class Pipeline:
    """A loopback emulator and an isolated warehouse (the environment points at both)."""

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


@dataclass
class EmulatorEnv:
    """The emulator on loopback and an isolated warehouse, exported through the environment."""

    warehouse: Path
    dagster_home: Path
    env: dict[str, str]
    start: date
    end: date


def assert_matches_emulator(p: Pipeline, start: date, end_exclusive: date) -> None:
    """Daily credits per organization, project and deleted projects equal the emulator's totals."""
    orgs = p.query("select organization_id, organization_name from organizations")
    assert len(orgs) > 0
    for org in orgs.itertuples():
        truth = p.server.totals(org.organization_name, start, end_exclusive)
        rows = p.query(
            """select scope, coalesce(project_id, '') as project_id, sum(credits) as credits
               from credit_usage
               where interval = 'day' and organization_id = ?
                 and start_date >= ? and start_date < ?
               group by all""",
            [org.organization_id, start, end_exclusive],
        )
        by_scope = {(r.scope, r.project_id): r.credits for r in rows.itertuples()}
        assert by_scope.get(("organization", ""), 0.0) == pytest.approx(
            truth["organization_total"], abs=TOLERANCE
        ), org.organization_name
        assert by_scope.get(("deleted_projects", ""), 0.0) == pytest.approx(
            truth["deleted_projects"], abs=TOLERANCE
        )
        projects = {k[1]: v for k, v in by_scope.items() if k[0] == "project"}
        for project_id, credits in truth["projects"].items():
            assert projects.get(project_id, 0.0) == pytest.approx(credits, abs=TOLERANCE)
        assert set(projects) <= set(truth["projects"]), "a deleted project is still listed"


class HoldingApp:
    """ASGI wrapper around the emulator that holds the daily usage requests until released
    (`reached` says one arrived; `held` counts them): the run is then mid-step, waiting on the
    API, after the organizations step wrote its slice. `run_requests` counts the API requests
    of the run's own client (its User-Agent; not the preflight probe's)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.reached = threading.Event()
        self.release = threading.Event()
        self.held = 0
        self.run_requests = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        daily = b"interval=day" in scope.get("query_string", b"")
        if scope["type"] == "http" and scope["path"].startswith("/v2.1/"):
            agent = dict(scope.get("headers") or []).get(b"user-agent", b"")
            self.run_requests += agent.startswith(b"ubiops-usage/")
        if scope["type"] == "http" and scope["path"].endswith("/usage") and daily:
            self.held += 1
            self.reached.set()
            while not self.release.is_set():
                await asyncio.sleep(0.02)
        await self.app(scope, receive, send)
