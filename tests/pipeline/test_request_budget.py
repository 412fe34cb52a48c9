"""The request budget, against the emulator on loopback with every API request recorded.

- a daily refresh after a first run asks the organization list plus, per organization, only its
  resources and the current month's daily usage (2 requests), and the summary says so;
- its period rows are summed from the days and equal the API's own period totals, including
  the row of a period begun in the previous month (outside the refresh's partition) when the
  API corrects one of its days in this month;
- details, members and the anchor are re-read for every organization once they are older than
  `USAGE_DETAILS_MAX_AGE_DAYS`, and for a renamed and a new organization only otherwise;
- `period_reconciliation` still compares the API's period answers with the days and blocks the
  run when they disagree (checked in the same run as the maximum age, which asks for them).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from common.periods import period_containing
from emulator.server import EmulatorServer
from tests.services.demo_run import DemoBuild, copy_demo_run
from tests.services.emulator import TOLERANCE, Pipeline, start_emulator


class RecordingApp:
    """ASGI wrapper around the emulator that records each API request as (kind, organization)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v2.1/"):
            with self._lock:
                self.seen.append(self.kind(scope))
        await self.app(scope, receive, send)

    @staticmethod
    def kind(scope: dict) -> tuple[str, str]:
        parts = scope["path"].split("/")[2:]  # organizations, {name}, endpoint
        if len(parts) == 1:
            return "list", ""
        if len(parts) == 2:
            return "details", parts[1]
        query = parse_qs(scope.get("query_string", b"").decode())
        if parts[2] == "usage":
            interval = query.get("interval", ["month"])[0]
            dated = "start_date" in query
            return (f"usage {interval}" if dated else "current period"), parts[1]
        return parts[2], parts[1]

    def take(self) -> list[tuple[str, str]]:
        with self._lock:
            seen, self.seen = self.seen, []
        return seen


@pytest.fixture
def recorded_after_demo_run(
    demo_build: DemoBuild, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Pipeline, RecordingApp]]:
    """A first run of the previous month through today (a private copy of the session's demo
    run), an emulator in the state it loaded from behind a recorder that sees only what comes
    after, and the current month as the next run's range (a daily refresh)."""
    warehouse = copy_demo_run(demo_build, tmp_path)
    server: EmulatorServer = start_emulator(now=demo_build.now)
    recorder = RecordingApp(server.app)
    server.app = recorder
    with server:
        monkeypatch.setenv("UBIOPS_API_HOST", server.base_url)
        monkeypatch.setenv("UBIOPS_API_TOKEN", server.token)
        monkeypatch.setenv("USAGE_WAREHOUSE", str(warehouse))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
        monkeypatch.delenv("USAGE_DETAILS_MAX_AGE_DAYS", raising=False)
        today = demo_build.now.date()
        yield Pipeline(warehouse, server, date(today.year, today.month, 1), today), recorder


def per_kind(seen: list[tuple[str, str]]) -> Counter[str]:
    return Counter(kind for kind, _ in seen)


def period_rows(p: Pipeline, organization_id: str, start: date) -> dict[tuple[str, str], float]:
    rows = p.query(
        """select scope, coalesce(project_id, '') as project_id, credits from credit_usage
           where interval = 'month' and organization_id = ? and start_date = ?""",
        [organization_id, start],
    )
    return {(r.scope, r.project_id): r.credits for r in rows.itertuples()}


def test_daily_refresh_makes_two_requests_per_organization(
    recorded_after_demo_run: tuple[Pipeline, RecordingApp],
) -> None:
    pipeline, recorder = recorded_after_demo_run  # the first run: the session's demo run
    assert recorder.take() == []

    # the API corrects a day of this month in a period that began in the previous month
    # (anchor 20: the 20th to the 20th): the refresh loads only this month's partition, yet the
    # period's row (in the previous month's partition) must follow its days
    this_month = pipeline.start
    org = next(o for o in pipeline.server.state.orgs.values() if o.anchor_day == 20)
    start, end = period_containing(this_month, org.anchor_day)
    assert start < this_month < end, "the period begins in the previous month"
    before = period_rows(pipeline, org.id, start)
    assert before, "the first run (previous and current month) wrote the period's row"
    project = pipeline.server.add_usage(org.name, this_month, 125.0)

    summary = pipeline.run()  # the daily refresh: the current month
    assert summary.success and not summary.failed_checks, summary.lines()
    seen = recorder.take()
    n = summary.organizations
    assert n == 6
    assert per_kind(seen) == {"list": 1, "resources": n, "usage day": n}, per_kind(seen)
    assert summary.requests == len(seen) == 1 + 2 * n, "recomputing the row asks nothing more"
    assert f"{(1 + 2 * n) / n:.2f} per organization" in summary.lines()[0]

    # the period rows of this refresh were summed from the days: equal to the API's totals
    periods = pipeline.query(
        """select o.organization_name, c.start_date, c.end_date, c.credits
           from credit_usage c join organizations o using (organization_id)
           where c.interval = 'month' and c.scope = 'organization'"""
    )
    assert len(periods) >= n
    for row in periods.itertuples():
        truth = pipeline.server.totals(
            row.organization_name, row.start_date.date(), row.end_date.date()
        )
        assert row.credits == pytest.approx(truth["organization_total"], abs=1e-6), row

    # the corrected period's rows moved by the correction, were replaced (not duplicated) and
    # hold the API's totals so far
    after = period_rows(pipeline, org.id, start)
    for key in (("organization", ""), ("project", project)):
        assert after[key] == pytest.approx(before[key] + 125.0, abs=TOLERANCE), key
    truth = pipeline.server.totals(org.name, start, min(end, pipeline.end + timedelta(days=1)))
    assert after[("organization", "")] == pytest.approx(truth["organization_total"], abs=TOLERANCE)
    assert after[("deleted_projects", "")] == pytest.approx(
        truth["deleted_projects"], abs=TOLERANCE
    )
    duplicated = pipeline.query(
        """select scope, project_id, count(*) as n from credit_usage
           where interval = 'month' and organization_id = ? and start_date = ?
           group by all having count(*) > 1""",
        [org.id, start],
    )
    assert duplicated.empty, "the recomputed rows replaced the stale ones"


def test_details_reread_on_max_age_rename_and_new_organization(
    recorded_after_demo_run: tuple[Pipeline, RecordingApp], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, recorder = recorded_after_demo_run  # the first run: the session's demo run
    server = pipeline.server

    # 1. details older than the maximum age: every organization is re-read, and its current
    # period reconciled; the API's period total disagrees with the days, so the blocking check
    # catches it (the registry is written before the checks, the usage tables are not)
    honest = server.state.usage

    def inflated(
        user: Any, name: str, start: str | None, end: str | None, interval: str | None, **kw: Any
    ) -> dict:
        body = honest(user, name, start, end, interval, **kw)
        if start and interval in (None, "", "month") and body["data_organization"]:
            extra = {**body["data_organization"][0], "value": 50.0}
            body["data_organization"][0]["value"] += 50.0  # more in total, and as much more
            body[kw.get("deleted_key", "data_deleted_projects")].append(extra)  # still adds up
        return body

    server.state.usage = inflated
    monkeypatch.setenv("USAGE_DETAILS_MAX_AGE_DAYS", "0")
    summary = pipeline.run()
    assert any(b.endswith(":period_reconciliation") for b in summary.blocked), summary.lines()
    counts = per_kind(recorder.take())
    n = summary.organizations
    assert n == 6
    assert counts["details"] == counts["users"] == counts["current period"] == n, counts
    server.state.usage = honest
    monkeypatch.delenv("USAGE_DETAILS_MAX_AGE_DAYS")

    # 2. a rename and a new organization: only those two are re-read
    caller = server.state.user_for_token(server.token)
    renamed = sorted(o.name for o in server.state.list_organizations(caller))[0]
    server.rename_organization(renamed, "renamed-org")
    server.state.create_organization(caller, {"name": "brand-new", "subscription": "free"})
    summary = pipeline.run()
    assert summary.success and not summary.failed_checks, summary.lines()
    assert summary.organizations == 7
    seen = recorder.take()
    reread = {"details", "users", "current period"}
    assert {(k, o) for k, o in seen if k in reread} == {
        (k, o) for k in reread for o in ("renamed-org", "brand-new")
    }
    assert {o for k, o in seen if k == "usage month"} <= {"renamed-org", "brand-new"}
    stamps = pipeline.query(
        "select organization_name, details_refreshed_at, last_seen_at from organizations"
    ).set_index("organization_name")
    assert (
        stamps.loc["renamed-org", "details_refreshed_at"] == stamps.loc["renamed-org"].last_seen_at
    )
    untouched = stamps.drop(["renamed-org", "brand-new"])
    assert (untouched.details_refreshed_at < untouched.last_seen_at).all()
