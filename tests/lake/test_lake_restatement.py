"""On the shared lake, a load by another host that restates a complete day across a quota
threshold notes it on the alert: what the previous load saw comes from the lake's snapshot
(the second host has no memory of its own). Real PostgreSQL, S3, emulator; each host's commands
through the CLI's `main()` with that host's environment (separate processes, as two machines, are
tests/lake/test_lake_pipeline.py's)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from emulator.model import MICRO
from tests.lake.conftest import Lake
from tests.lake.test_lake_pipeline import TEAM_ORGANIZATIONS, Team
from tests.pipeline.test_restatement_notes import write_quotas
from tests.services.emulator import start_emulator


@pytest.fixture
def team(lake: Lake, tmp_path: Path) -> Iterator[Team]:
    with start_emulator(organizations=TEAM_ORGANIZATIONS) as server:
        yield Team(server, lake, tmp_path)


def csv_rows(done) -> list[list[str]]:
    assert done.returncode == 0, done.stderr[-3000:]
    return list(csv.reader(io.StringIO(done.stdout)))[1:]


@pytest.mark.timeout(900)
def test_a_restatement_loaded_by_another_host_is_noted_from_the_lake(
    team: Team, tmp_path: Path
) -> None:
    today = datetime.now(UTC).date()
    last_month = date(today.year, today.month, 1) - date.resolution
    months = ("--start", str(last_month.replace(day=1)), "--end", str(today))
    quotas = write_quotas(tmp_path / "quotas.yaml", {})
    first = team.ask("server-host", "run", *months, "--quotas", str(quotas))
    assert first.returncode == 0, first.stderr[-3000:]
    ((name, used, as_of),) = csv_rows(
        team.ask(
            "analyst", "query",
            "SELECT organization_name, value, strftime(as_of, '%Y-%m-%d') FROM quota_status "
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
