"""On the shared lake, a load by another host that restates a complete day across a quota
threshold notes it on the alert: what the previous load saw comes from the lake's snapshot
(the second host has no memory of its own). Real PostgreSQL, S3, emulator; each host's commands
through the CLI's `main()` with that host's environment (separate processes, as two machines, are
tests/lake/test_lake_pipeline.py's).

The first host names the lake with `--lake-catalog` / `--lake-data` instead of USAGE_LAKE_CATALOG
/ USAGE_LAKE_DATA (the analyst too, from a machine with no local warehouse), so the same run also
shows that the flags do what the variables do, and that a catalog password given on the command
line appears nowhere: not in the output, the logs, the Dagster run storage (events, metadata) nor
the warehouse. Besides what the CLI prints, whatever reaches the process's stdout and stderr file
descriptors during the run (C-level writes, handlers holding the original streams) is captured
(`capfd`) and checked for the password too, as a subprocess's whole output would be. (These
checks had a run of their own, tests/lake/test_lake_flags.py.)

The second load restates a period, and `usage-etl history` on the analyst's machine shows the
two loads and what the second changed, in the period row and the daily rows alike (once a
third run of tests/lake/test_lake_pipeline.py, a later daily run of its server host).
"""

from __future__ import annotations

import csv
import io
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from emulator.model import MICRO
from tests.lake.conftest import Lake
from tests.lake.test_lake_pipeline import TEAM_ORGANIZATIONS, Team
from tests.pipeline.test_restatement_notes import write_quotas
from tests.services.cli import usage_etl_in_process
from tests.services.emulator import start_emulator


@pytest.fixture
def team(lake: Lake, tmp_path: Path) -> Iterator[Team]:
    with start_emulator(organizations=TEAM_ORGANIZATIONS) as server:
        yield Team(server, lake, tmp_path)


def csv_rows(done) -> list[list[str]]:
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
def test_a_restatement_loaded_by_another_host_is_noted_from_the_lake(
    team: Team, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    flags = ["--lake-catalog", team.lake.env["USAGE_LAKE_CATALOG"], "--lake-data",
             team.lake.env["USAGE_LAKE_DATA"]]  # fmt: skip
    password = team.lake.postgres.password
    assert password and password in flags[1]
    today = datetime.now(UTC).date()
    last_month = date(today.year, today.month, 1) - date.resolution
    months = ("--start", str(last_month.replace(day=1)), "--end", str(today))
    quotas = write_quotas(tmp_path / "quotas.yaml", {})
    capfd.readouterr()
    first = with_flags(team.env("server-host"), flags, "run", *months, "--quotas", str(quotas))
    beside = capfd.readouterr()  # what went to the file descriptors, not through the CLI
    assert first.returncode == 0, first.stderr[-3000:]
    assert "publishing to the shared lake" in first.stderr
    assert password not in first.stdout + first.stderr
    assert password not in beside.out + beside.err
    assert files_containing(tmp_path / "server-host", password) == []
    assert_flags_work_and_never_show_the_password(team, flags, password)

    ((name, used, as_of, period),) = csv_rows(
        with_flags(
            team.env("analyst"), flags, "query",
            "SELECT organization_name, value, strftime(as_of, '%Y-%m-%d'), "
            "strftime(period_start, '%Y-%m') FROM quota_status "
            "WHERE metric = 'credits' AND scope = 'organization' AND period_start < as_of "
            "AND value > 100 "
            "ORDER BY value DESC LIMIT 1",
            "--format", "csv",
        )
    )  # fmt: skip
    budget = round(float(used) / 0.95, 2)
    write_quotas(quotas, {name: budget})
    state = team.server.state
    with state.lock:  # late usage for a day the first load counted as complete
        org = state.org_by_name(name)
        day = (date.fromisoformat(as_of) - state.day0).days
        late = round(0.10 * budget, 2)  # whole cents: the note's rounding to cents is exact
        org.usage[org.live_projects()[0].row, day] += round(late * MICRO)

    second = team.ask("backfill-host", "run", *months, "--quotas", str(quotas))
    assert second.returncode == 0, second.stderr[-3000:]
    ((status, note),) = csv_rows(
        team.ask(
            "analyst", "query",
            "SELECT status, restatement FROM quota_alerts WHERE organization_name = "
            f"'{name}' AND rule = 'credit_actual' AND threshold = 100",
            "--format", "csv",
        )
    )  # fmt: skip
    assert status in ("open", "notified")
    assert f"period total moved from {float(used):,.2f} to " in note
    assert f"changed by +{late:,.2f}" in note
    assert f"{100:g}% of the" in note

    # the restated period, load by load, from the analyst's machine
    history = team.ask("analyst", "history", "--organization", name, "--period", period)
    assert history.returncode == 0, history.stderr
    lines = history.stdout.strip().splitlines()
    assert lines[-1] == "(2 loads changed these totals)"
    assert lines[-2].count(f"+{late:,.2f}") == 2  # the period row and the daily rows, alike
