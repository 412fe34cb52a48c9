"""The period views (`period_usage_by_organization`, `period_usage_by_project`, the ready query
`deleted_projects_share`) over a run whose range starts and ends inside subscription periods:
the period begun before the first loaded day is a row of its own, flagged `is_partial` and
counted from its loaded days; the last period carries the API's whole-period answer and says
how many of its days are loaded; and the loaded days add up, per organization, to the daily
credits. Also: the calendar the views compute in SQL (`day_periods`) is `common/periods.py`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from common.periods import (
    organization_anchor,
    organization_schedule,
    period_containing,
    schedule_period_containing,
)
from pipelines.ready_queries import find
from tests.services.emulator import TOLERANCE, Pipeline, start_emulator
from warehouse.views import view

NOW = datetime(2024, 4, 20, 12, 0, tzinfo=UTC)
START, END = date(2024, 1, 15), date(2024, 3, 10)  # inside the periods of anchors 2..31
FIRST_DAY, LAST_DAY = date(2024, 1, 1), date(2024, 3, 31)  # the months the run loads


@pytest.fixture
def odd_range(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pipeline]:
    """`usage-etl run --start 2024-01-15 --end 2024-03-10` against an emulator whose clock is
    2024-04-20 12:00 UTC."""
    with start_emulator(now=NOW) as server:
        monkeypatch.setenv("UBIOPS_API_HOST", server.base_url)
        monkeypatch.setenv("UBIOPS_API_TOKEN", server.token)
        monkeypatch.setenv("USAGE_WAREHOUSE", str(tmp_path / "warehouse"))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
        p = Pipeline(tmp_path / "warehouse", server, START, END)
        summary = p.run()
        assert summary.success and not summary.failed_checks, summary.lines()
        yield p


def test_period_views_keep_every_loaded_day_and_flag_the_partial_period(
    odd_range: Pipeline,
) -> None:
    p = odd_range
    orgs = p.query("select * from organizations")
    daily = p.query(
        """select organization_id, scope, sum(credits) as credits, count(*) as days
           from credit_usage where interval = 'day' group by all"""
    )
    periods = p.query("select * from period_usage_by_organization order by period_start")
    stored = p.query(
        """select organization_id, cast(start_date as date) as period_start,
                  cast(end_date as date) as period_end, credits
           from credit_usage where interval = 'month' and scope = 'organization'"""
    )
    lines = p.query("select * from period_usage_by_project")
    assert len(orgs) >= 6
    partial_seen = 0
    for org in orgs.to_dict("records"):
        oid, name = org["organization_id"], org["organization_name"]
        rows = periods[periods.organization_id == oid]
        own = daily[daily.organization_id == oid]
        total = own[own.scope == "organization"].iloc[0]
        # the loaded days add up, row by row of the views, to the daily credits
        assert rows.credits_in_loaded_days.sum() == pytest.approx(total.credits, abs=TOLERANCE)
        assert rows.days_loaded.sum() == total.days == (LAST_DAY - FIRST_DAY).days + 1
        mine = lines[lines.organization_id == oid]
        for row in rows.to_dict("records"):  # the lines of a period add up to its credits
            same = mine[mine.period_start == row["period_start"]]
            assert same.credits.sum() == pytest.approx(row["credits"], abs=TOLERANCE), row
            assert set(same.is_partial) == {row["is_partial"]}

        anchor = organization_anchor(org)
        first_start, first_end = period_containing(FIRST_DAY, anchor)
        first = rows.iloc[0]
        assert (first.period_start.date(), first.period_end.date()) == (first_start, first_end)
        loaded_days = (first_end - FIRST_DAY).days
        truth = p.server.totals(name, FIRST_DAY, first_end)["organization_total"]
        assert first.credits == pytest.approx(truth, abs=TOLERANCE)
        assert first.days_loaded == loaded_days
        assert first.days_in_period == (first_end - first_start).days
        assert bool(first.is_partial) == (first_start < FIRST_DAY), name
        partial_seen += bool(first.is_partial)
        assert not rows.iloc[1:].is_partial.any(), name

        # every other row is the stored whole-period row, one for one
        whole = rows[~rows.is_partial]
        mine_stored = stored[stored.organization_id == oid].sort_values("period_start")
        assert list(whole.period_start) == list(mine_stored.period_start)
        assert list(whole.credits) == pytest.approx(list(mine_stored.credits), abs=TOLERANCE)

        # the last period: the API's answer for all of it, days after the loaded range included
        last = rows.iloc[-1]
        start, end = last.period_start.date(), last.period_end.date()
        assert start <= LAST_DAY < end
        whole_period = p.server.totals(name, start, end)["organization_total"]
        held = p.server.totals(name, start, LAST_DAY + timedelta(days=1))["organization_total"]
        assert last.credits == pytest.approx(whole_period, abs=TOLERANCE)
        assert last.credits_in_loaded_days == pytest.approx(held, abs=TOLERANCE)
        assert last.days_loaded == (LAST_DAY - start).days + 1
        after = end > LAST_DAY + timedelta(days=1)  # all but anchor 1's end after the range
        assert (last.days_loaded < last.days_in_period) == after, name
        assert (whole_period > held) == after, name
    assert 0 < partial_seen < len(orgs), "anchor 1 starts on the first loaded day, others not"


def test_deleted_projects_share_lists_the_partial_period(odd_range: Pipeline) -> None:
    sql = find("deleted_projects_share").sql
    share = odd_range.query(sql)
    assert "is_partial" in share.columns
    partial = share[share.is_partial]
    assert len(partial) and all(d.date() < FIRST_DAY for d in partial.period_start)


def test_the_views_calendar_is_the_pipeline_calendar() -> None:
    """`day_periods` puts a day without a stored period row in the period the pipeline's
    calendar gives it (`schedule_period_containing`), for every anchor day over two years (a leap
    February included) and an organization whose anchor changed twice, and takes the anchor as
    `organization_anchor` does when it was not learnt."""
    days = pd.date_range("2023-01-01", "2024-12-31", freq="D", unit="us")
    organizations = [
        {
            "organization_id": f"a{a}",
            "period_anchor_day": a,
            "period_start": None,
            "period_end": None,
        }
        for a in range(1, 32)
    ] + [  # not learnt: the anchor of the current period, or calendar months
        {
            "organization_id": "feb29-mar31",
            "period_anchor_day": None,
            "period_start": pd.Timestamp("2024-02-29"),
            "period_end": pd.Timestamp("2024-03-31"),
        },
        {
            "organization_id": "feb29-mar30",
            "period_anchor_day": None,
            "period_start": pd.Timestamp("2024-02-29"),
            "period_end": pd.Timestamp("2024-03-30"),
        },
        {
            "organization_id": "on-the-17th",
            "period_anchor_day": None,
            "period_start": pd.Timestamp("2024-05-17"),
            "period_end": pd.Timestamp("2024-06-17"),
        },
        {
            "organization_id": "unknown",
            "period_anchor_day": None,
            "period_start": None,
            "period_end": None,
        },
        {  # anchor 9 until 2023-06-20, 31 until 2024-02-10, then 17
            "organization_id": "changed-twice",
            "period_anchor_day": 17,
            "period_start": None,
            "period_end": None,
            "anchor_history": "9@2023-06-20,31@2024-02-10",
        },
    ]
    orgs = pd.DataFrame(organizations).astype({"period_anchor_day": "Int16"})
    orgs["anchor_history"] = orgs["anchor_history"].astype("string")
    orgs["period_start"] = pd.to_datetime(orgs["period_start"])
    orgs["period_end"] = pd.to_datetime(orgs["period_end"])
    credit_usage = pd.DataFrame(
        [
            {
                "organization_id": o["organization_id"],
                "interval": "day",
                "scope": "organization",
                "project_id": None,
                "start_date": d,
                "end_date": d + pd.Timedelta(days=1),
                "credits": 1.0,
            }
            for o in organizations
            for d in days
        ]
    )
    con = duckdb.connect()
    con.register("organizations", orgs)
    con.register("credit_usage", credit_usage)
    got = con.execute(view("day_periods").query).df()
    records = orgs.astype(object).where(orgs.notna(), None).to_dict("records")
    anchors = {o["organization_id"]: organization_anchor(o) for o in records}
    assert sorted(set(anchors.values())) == list(range(1, 32))
    assert anchors["feb29-mar31"] == 31 and anchors["unknown"] == 1
    schedules = {o["organization_id"]: organization_schedule(o) for o in records}
    assert len(schedules["changed-twice"].earlier) == 2
    pairs = zip(got.organization_id, got.day, strict=True)
    expected = [schedule_period_containing(day, schedules[org]) for org, day in pairs]
    actual = [(s.date(), e.date()) for s, e in zip(got.period_start, got.period_end, strict=True)]
    assert len(actual) == len(organizations) * len(days)
    assert actual == expected
    assert not got.has_period_row.any()
