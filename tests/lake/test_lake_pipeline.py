"""`usage-etl` on a shared lake, end to end: two hosts' runs at once as separate processes, a
real PostgreSQL catalog and a real S3 server, the emulator on loopback (two of the demo
organizations: the lake's behaviour does not depend on how many there are). The analyst's
reading commands run through the CLI's `main()` in the test's process, each with its host's
environment. Both runs are processes of their own: the emulator serves from a thread of the
test's process, and a run going on in that process meanwhile would starve it under load (a
request timed out).

What a team sees: two writers on different month ranges both land; an analyst's machine with
no local warehouse queries the lake, reads the report and the alerts; a lake that cannot be
reached is exit 2 before any API request, with nothing written.

Then a third host, with no warehouse and no memory of its own, loads the last two months again
after a complete day got late usage, and so restates a period across a quota threshold: the
alert notes it, what the previous loads saw coming from the lake's snapshot; `usage-etl
history` on the analyst's machine shows the restating load and what it changed, in the period
row and the daily rows alike. That host runs in the test's process (nothing else runs
meanwhile) and names the lake with `--lake-catalog` / `--lake-data` instead of
USAGE_LAKE_CATALOG / USAGE_LAKE_DATA (the analyst too, from a machine with no local
warehouse), so the same run also shows that the flags do what the variables do, and that a
catalog password given on the command line appears nowhere: not in the output, the logs, the
Dagster run storage (events, metadata) nor the warehouse. Besides what the CLI prints, whatever
reaches the process's stdout and stderr file descriptors during the run (C-level writes,
handlers holding the original streams) is captured (`capfd`) and checked for the password too,
as a subprocess's whole output would be; the first two hosts, which created the lake from the
variables, are checked for the password the same way (their processes' whole output, their
directories). (The restatement, history and flag checks had a test of their own,
tests/lake/test_lake_restatement.py, with its own lake and two more runs; the flag checks
before that a run of their own, tests/lake/test_lake_flags.py.)
"""

from __future__ import annotations

import csv
import io
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
from tests.services.restatement import add_late_usage, write_quotas
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


def csv_rows(done: subprocess.CompletedProcess[str]) -> list[list[str]]:
    assert done.returncode == 0, done.stderr[-3000:]
    return list(csv.reader(io.StringIO(done.stdout)))[1:]


def files_containing(root: Path, secret: str) -> list[Path]:
    needle = secret.encode()
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def with_flags(
    env: dict[str, str], flags: list[str], *args: str
) -> subprocess.CompletedProcess[str]:
    """`usage-etl ARGS FLAGS` in this process with `env` minus the USAGE_LAKE_* variables: the
    lake named by the flags alone."""
    bare = {k: v for k, v in env.items() if not k.startswith("USAGE_LAKE_")}
    done = usage_etl_in_process(*args, *flags, env=bare)
    return subprocess.CompletedProcess(["usage-etl", *args], done.code, done.out, done.err)


def assert_flags_work_and_never_show_the_password(
    team: Team, flags: list[str], password: str
) -> None:
    """`verify` and an analyst's `query` (no local warehouse) find the lake by the flags alone;
    bad ones are exit 2 with one line, the password never echoed."""
    verify = with_flags(team.env("server-host"), flags, "verify")
    assert verify.returncode == 0, verify.stderr
    assert "shared lake answers" in verify.stdout and "slices recorded" in verify.stdout
    assert password not in verify.stdout + verify.stderr

    # another machine, no local warehouse: the flags alone find the lake
    reader = team.env("reader")
    query = with_flags(reader, flags, "query", "select count(*) AS n from credit_usage",
                       "--format", "csv")  # fmt: skip
    assert query.returncode == 0, query.stderr
    assert int(query.stdout.strip().splitlines()[1]) > 0
    assert not (team.tmp / "reader" / "warehouse" / "usage.duckdb").exists()
    verbose = with_flags(reader, flags, "query", "select * from no_such_table", "--verbose")
    assert verbose.returncode == 2
    assert password not in verbose.stdout + verbose.stderr

    # one flag without the other: one line naming both, exit 2
    half = with_flags(reader, flags[:2], "query", "select 1")
    assert half.returncode == 2
    assert half.stderr.strip().splitlines() == [
        "usage-etl query: USAGE_LAKE_CATALOG (--lake-catalog) is set but USAGE_LAKE_DATA "
        "(--lake-data) is not: expected an s3:// URL or a directory for the lake's data files"
    ]
    # an unreachable catalog named on the command line: exit 2, the password not echoed
    wrong = flags[1].replace(f":{team.lake.postgres.port}/", ":1/")
    bad = with_flags(reader, ["--lake-catalog", wrong, *flags[2:]], "query", "select 1")
    assert bad.returncode == 2
    assert "cannot attach the lake" in bad.stderr
    assert password not in bad.stdout + bad.stderr


@pytest.mark.timeout(900)
def test_two_hosts_share_one_lake_and_analysts_read_it_from_anywhere(
    team: Team, capfd: pytest.CaptureFixture[str]
) -> None:
    today = datetime.now(UTC).date()
    older, last, current = months(today)
    backfill = team.start(
        "backfill-host", "run", "--start", str(older), "--end", str(current - date.resolution)
    )
    daily = team.start("server-host", "run", "--start", str(current), "--end", str(today))
    password = team.lake.postgres.password
    for process in (backfill, daily):
        done = team.finish(process)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "publishing to the shared lake" in done.stderr
        assert password not in done.stdout + done.stderr  # the lake created, its password unseen
    for host in ("backfill-host", "server-host"):
        assert files_containing(team.tmp / host, password) == []

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

    a_third_host_restates_a_period_naming_the_lake_by_flags(team, today, capfd)


def current_period_used(team: Team, today: date) -> tuple[str, str, date]:
    """From the lake, as the two loads left it: the organization whose current subscription
    period (begun before yesterday) used the most credits, over 100, through yesterday (the
    last complete day, the period total an evaluation compares with a budget); that total as
    the query prints it, and the period's first day."""
    as_of = today - date.resolution
    ((name, used, start),) = csv_rows(
        team.ask(
            "analyst-laptop", "query",
            "SELECT p.organization_name, sum(d.credits), strftime(p.start_date, '%Y-%m-%d') "
            "FROM credit_usage p JOIN credit_usage d USING (organization_id) "
            "WHERE p.interval = 'month' AND p.scope = 'organization' "
            "AND d.interval = 'day' AND d.scope = 'organization' "
            f"AND p.start_date <= DATE '{today}' AND DATE '{today}' < p.end_date "
            f"AND p.start_date < DATE '{as_of}' "
            f"AND d.start_date >= p.start_date AND d.start_date < DATE '{today}' "
            "GROUP BY ALL HAVING sum(d.credits) > 100 ORDER BY 2 DESC LIMIT 1",
            "--format", "csv",
        )
    )  # fmt: skip
    return name, used, date.fromisoformat(start)


def a_third_host_restates_a_period_naming_the_lake_by_flags(
    team: Team, today: date, capfd: pytest.CaptureFixture[str]
) -> None:
    """Late usage for a day both loads counted as complete, loaded by a host that has no
    memory of its own, moves the period total across the budget: the note on the alert, and
    `usage-etl history`, come from the lake. That host names the lake by flags only."""
    name, used, period_start = current_period_used(team, today)
    as_of = today - date.resolution
    budget = round(float(used) / 0.95, 2)  # 95 % used: the 80 % alert, not the 100 % one
    quotas = write_quotas(team.tmp / "quotas.yaml", {name: budget})
    late = round(0.10 * budget, 2)  # -> 105 %; whole cents: the note's rounding to cents is exact
    add_late_usage(team.server.state, name, as_of, late)

    flags = ["--lake-catalog", team.lake.env["USAGE_LAKE_CATALOG"], "--lake-data",
             team.lake.env["USAGE_LAKE_DATA"]]  # fmt: skip
    password = team.lake.postgres.password
    assert password and password in flags[1]
    last = months(today)[1]
    capfd.readouterr()
    third = with_flags(
        team.env("late-host"), flags,
        "run", "--start", str(last), "--end", str(today), "--quotas", str(quotas),
    )  # fmt: skip
    beside = capfd.readouterr()  # what went to the file descriptors, not through the CLI
    assert third.returncode == 0, third.stderr[-3000:]
    assert "publishing to the shared lake" in third.stderr
    assert password not in third.stdout + third.stderr
    assert password not in beside.out + beside.err
    assert files_containing(team.tmp / "late-host", password) == []
    assert_flags_work_and_never_show_the_password(team, flags, password)

    ((status, note),) = csv_rows(
        team.ask(
            "analyst-laptop", "query",
            "SELECT status, restatement FROM quota_alerts WHERE organization_name = "
            f"'{name}' AND rule = 'credit_actual' AND threshold = 100",
            "--format", "csv",
        )
    )  # fmt: skip
    assert status in ("open", "notified")
    assert f"period total moved from {float(used):,.2f} to " in note
    assert f"changed by +{late:,.2f}" in note
    assert f"{100:g}% of the" in note

    # the restated period, load by load, from the analyst's machine: the loads that wrote its
    # rows (the server host's of this month; the backfill host's too when the period began
    # last month), then the restating one
    period = f"{period_start:%Y-%m}"
    history = team.ask("analyst-laptop", "history", "--organization", name, "--period", period)
    assert history.returncode == 0, history.stderr
    lines = history.stdout.strip().splitlines()
    loads = 2 if period_start >= date(today.year, today.month, 1) else 3
    assert lines[-1] == f"({loads} loads changed these totals)", history.stdout
    assert lines[-2].count(f"+{late:,.2f}") == 2  # the period row and the daily rows, alike


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
