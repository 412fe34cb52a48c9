"""`usage-etl` on a shared lake, end to end: two hosts' runs at once as separate processes, a
real PostgreSQL catalog and a real S3 server, the emulator on loopback (two of the demo
organizations: the lake's behaviour does not depend on how many there are). The analyst's
reading commands run through the CLI's `main()` in the test's process, each with its host's
environment. Both runs are processes of their own: the emulator serves from a thread of the
test's process, and a run going on in that process meanwhile would starve it under load (a
request timed out).

What a team sees: two writers on different month ranges both land; an analyst's machine with
no local warehouse queries the lake, reads the report and the alerts; a lake that cannot be
reached is exit 2 before any API request, with nothing written. (A re-pull that restates a
period showing up in `usage-etl history` had a third run here, a later daily run of the
server host: the restatement test's second load, by another host, shows it now,
tests/lake/test_lake_restatement.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

import warehouse.derived_schema  # noqa: F401  (registers the derived tables in the contract)
from common.periods import shift_month
from emulator.server import EmulatorServer
from tests.lake.conftest import Lake
from tests.services.cli import usage_etl_in_process
from tests.services.emulator import start_emulator
from warehouse.lake import connect
from warehouse.schema import ALL_TABLES

REPO = Path(__file__).resolve().parents[2]
USAGE_ETL = [sys.executable, "-m", "pipelines.cli"]


@dataclass
class Team:
    """The emulator plus the environment of each 'host' (its own warehouse and Dagster home)."""

    server: EmulatorServer
    lake: Lake
    tmp: Path
    logs: dict[int, Path] = field(default_factory=dict)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def env(self, host: str) -> dict[str, str]:
        return {
            **os.environ,
            **self.lake.env,
            "UBIOPS_API_HOST": self.server.base_url,
            "UBIOPS_API_TOKEN": self.server.token,
            "USAGE_WAREHOUSE": str(self.tmp / host / "warehouse"),
            "DAGSTER_HOME": str(self.tmp / host / "dagster"),
        }

    def start(self, host: str, *args: str) -> subprocess.Popen[str]:
        """Start `usage-etl ARGS` as `host`. Its stderr goes to a file, so that a run writing
        much while the test waits on another never stalls on a full pipe."""
        log = self.tmp / f"stderr-{len(self.logs)}.log"
        with open(log, "w") as handle:
            process = subprocess.Popen(
                [*USAGE_ETL, *args], cwd=REPO, env=self.env(host), text=True,
                stdout=subprocess.PIPE, stderr=handle,
            )  # fmt: skip
        self.logs[process.pid] = log
        self.processes.append(process)
        return process

    def stop(self) -> None:
        """Kill any run still going (a test that failed before waiting for it)."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.communicate()

    def finish(self, process: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
        out, _ = process.communicate(timeout=600)
        err = self.logs[process.pid].read_text()
        return subprocess.CompletedProcess(process.args, process.returncode, out, err)

    def run(self, host: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.finish(self.start(host, *args))

    def ask(self, host: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`usage-etl ARGS` as `host` through the CLI's `main()` in this process: for the
        analysts' reading commands (the writers' runs stay separate processes, as two hosts)."""
        done = usage_etl_in_process(*args, env=self.env(host))
        return subprocess.CompletedProcess(["usage-etl", *args], done.code, done.out, done.err)


# The first two demo organizations: every run and reading command works on all of them, and
# what is checked (months, a restated period, the contract, the report) needs no more.
TEAM_ORGANIZATIONS = 2


@pytest.fixture
def team(lake: Lake, tmp_path: Path) -> Iterator[Team]:
    with start_emulator(organizations=TEAM_ORGANIZATIONS) as server:
        team = Team(server, lake, tmp_path)
        try:
            yield team
        finally:
            team.stop()


def assert_lake_keeps_the_contract(lake: Lake) -> None:
    """Every contract table the runs wrote is in the lake with the contract's columns, types'
    nullability and descriptions, as in `usage.duckdb`; the analyst views are there too."""
    con = connect(lake.config, read_only=True)
    try:
        columns = con.execute(
            "SELECT table_name, column_name, comment, is_nullable FROM duckdb_columns() "
            "WHERE database_name = 'usage' AND schema_name = 'main'"
        ).fetchall()
        views = {
            str(v)
            for (v,) in con.execute(
                "SELECT view_name FROM duckdb_views() WHERE database_name = 'usage'"
            ).fetchall()
        }
    finally:
        con.close()
    found: dict[str, dict[str, tuple[str, bool]]] = {}
    for table, column, comment, nullable in columns:
        found.setdefault(str(table), {})[str(column)] = (str(comment), bool(nullable))
    written = [t for t in ALL_TABLES if t.name in found]
    assert {t.name for t in written} >= {"organizations", "credit_usage", "resource_usage"}
    for t in written:
        for c in t.columns:
            assert found[t.name][c.name] == (c.description, c.nullable), f"{t.name}.{c.name}"
    assert {"usage_against_budget", "period_usage_by_organization"} <= views


def months(today: date) -> tuple[date, date, date]:
    """First days of: two months ago, last month, this month."""
    firsts = [date(*shift_month(today.year, today.month, -n), 1) for n in (2, 1, 0)]
    return firsts[0], firsts[1], firsts[2]


@pytest.mark.timeout(900)
def test_two_hosts_share_one_lake_and_analysts_read_it_from_anywhere(team: Team) -> None:
    today = datetime.now(UTC).date()
    older, last, current = months(today)
    backfill = team.start(
        "backfill-host", "run", "--start", str(older), "--end", str(current - date.resolution)
    )
    daily = team.start("server-host", "run", "--start", str(current), "--end", str(today))
    for process in (backfill, daily):
        done = team.finish(process)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "publishing to the shared lake" in done.stderr

    query = team.ask(
        "analyst-laptop", "query",
        "select month, count(*) from credit_usage where interval = 'day' group by 1 order by 1",
        "--format", "csv",
    )  # fmt: skip
    assert query.returncode == 0, query.stderr
    assert not (team.tmp / "analyst-laptop" / "warehouse" / "usage.duckdb").exists()
    loaded = [line.split(",")[0] for line in query.stdout.strip().splitlines()[1:]]
    assert loaded == [f"{older:%Y-%m}", f"{last:%Y-%m}", f"{current:%Y-%m}"]

    assert_lake_keeps_the_contract(team.lake)
    alerts = team.ask("analyst-laptop", "alerts")
    assert alerts.returncode == 0, alerts.stderr
    assert "open alerts" in alerts.stdout.splitlines()[0]
    views = team.ask("analyst-laptop", "query", "select count(*) from usage_against_budget")
    assert views.returncode == 0, views.stderr
    report = team.ask("analyst-laptop", "report", "--out", str(team.tmp / "report"))
    assert report.returncode == 0, report.stderr
    assert (team.tmp / "report" / "index.html").stat().st_size > 10_000


def test_an_unreachable_lake_is_exit_2_before_any_api_request(team: Team) -> None:
    env_catalog = team.lake.env["USAGE_LAKE_CATALOG"]
    team.lake.env["USAGE_LAKE_CATALOG"] = env_catalog.replace(f":{team.lake.postgres.port}/", ":1/")
    team.server.set_faults(errors_5xx=1)  # spent by the first API request, if any is made
    result = team.ask("server-host", "run")
    assert result.returncode == 2
    assert (
        result.stderr.strip().splitlines()[-1].startswith("usage-etl run: cannot attach the lake")
    )
    assert team.lake.postgres.password not in result.stderr + result.stdout
    assert not (team.tmp / "server-host" / "warehouse" / "parquet").exists()
    assert team.server.fault_state()["errors_5xx"] == 1
