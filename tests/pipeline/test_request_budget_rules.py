"""The request budget's rules, unit by unit: when details are due, which periods are asked for,
and that a period summed from its days is the row an API answer for that period gives."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

from assets.credit_usage import (
    is_daily_refresh,
    months_of_days,
    plan_periods,
    touching_periods,
)
from assets.reconciliation_ledger import PendingPeriod, ledger_path, read_pending, write_pending
from assets.resources import UbiOpsApi
from common import settings
from common.errors import SettingsError
from extraction.endpoints import PeriodKey
from extraction.fanout import Org
from extraction.normalize import (
    credit_period_frame,
    credit_period_from_days,
    credit_usage_frame,
    details_due,
)
from ubiops_api.models import CreditUsage, OrganizationItem

NOW = datetime(2026, 11, 20, 6, 15)
ITEM = OrganizationItem(id="o-1", name="acme")


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (None, "new"),
        ({"organization_name": "old-acme", "details_refreshed_at": NOW}, "renamed"),
        ({"organization_name": "acme", "details_refreshed_at": None}, "never read"),
        (
            {"organization_name": "acme", "details_refreshed_at": datetime(2026, 11, 13, 6, 15)},
            "over 7 days old",
        ),
        ({"organization_name": "acme", "details_refreshed_at": datetime(2026, 11, 14)}, None),
    ],
)
def test_details_are_due_only_when_they_can_have_changed(
    stored: dict | None, expected: str | None
) -> None:
    assert details_due(ITEM, stored, NOW, 7) == expected


def test_max_age_setting_is_a_resource_field_read_from_the_environment() -> None:
    assert UbiOpsApi.from_env({}).details_max_age_days == 7
    assert UbiOpsApi.from_env({"USAGE_DETAILS_MAX_AGE_DAYS": "2"}).details_max_age_days == 2
    assert UbiOpsApi.from_env({}, details_max_age_days=0).details_max_age_days == 0
    with pytest.raises(settings.SettingsError, match="USAGE_DETAILS_MAX_AGE_DAYS='weekly'"):
        UbiOpsApi.from_env({"USAGE_DETAILS_MAX_AGE_DAYS": "weekly"})


def _answer(start: date, end: date, days: bool) -> CreditUsage:
    """Usage of two projects (one with nothing used) and deleted projects, per day or as one."""
    span = pd.date_range(start, end, freq="D", inclusive="left")
    stamps = [(d, d + pd.Timedelta(days=1)) for d in span] if days else [(span[0], end)]

    def points(per_day: float) -> list[dict]:
        n = 1 if days else len(span)
        return [
            {"start_date": f"{a:%Y-%m-%d}T00:00:00Z", "end_date": f"{pd.Timestamp(b):%Y-%m-%d}"
             "T00:00:00Z", "value": per_day * n}
            for a, b in stamps
        ]  # fmt: skip

    return CreditUsage.model_validate(
        {
            "interval": "day" if days else "month",
            "data_organization": points(3.25),
            "data_projects": [
                {"project_id": "p-1", "project_name": "one", "data": points(3.0)},
                {"project_id": "p-2", "project_name": "two", "data": points(0.0)},
            ],
            "data_deleted_projects": points(0.25),
        }
    )


def test_a_period_summed_from_its_days_is_the_row_of_its_api_answer() -> None:
    start, end = date(2026, 10, 20), date(2026, 11, 20)
    daily = credit_usage_frame([("o-1", "acme", _answer(start, end, days=True))], "day", NOW)
    derived = credit_period_from_days([("o-1", "acme", start, end)], daily, NOW)
    asked = credit_period_frame([("o-1", "acme", start, end, _answer(start, end, days=False))], NOW)
    order = ["scope", "project_id"]
    assert (
        derived.sort_values(order, ignore_index=True)
        .astype(str)
        .equals(asked.sort_values(order, ignore_index=True).astype(str))
    ), (derived, asked)
    assert derived.loc[derived.scope == "organization", "credits"].item() == pytest.approx(
        3.25 * 31
    )


def test_a_period_whose_days_have_no_project_still_gets_its_rows() -> None:
    """An organization without projects yet (its days only organization and deleted-projects
    usage): the organization and deleted-projects rows, no project row, as the API answers."""
    start, end = date(2026, 10, 20), date(2026, 11, 20)
    daily = credit_usage_frame([("o-1", "acme", _answer(start, end, days=True))], "day", NOW)
    no_projects = daily[daily["scope"] != "project"]
    derived = credit_period_from_days([("o-1", "acme", start, end)], no_projects, NOW)
    assert sorted(derived["scope"]) == ["deleted_projects", "organization"], derived
    assert derived["project_id"].isna().all(), "organization-level rows name no project"
    assert derived.loc[derived.scope == "organization", "credits"].item() == pytest.approx(
        3.25 * 31
    )


def test_periods_are_asked_for_only_to_reconcile() -> None:
    today = date(2026, 11, 28)
    org = Org("o-1", "acme")
    closed = PeriodKey(org, date(2026, 10, 1), date(2026, 10, 20), date(2026, 11, 20))
    current = PeriodKey(org, date(2026, 11, 1), date(2026, 11, 20), date(2026, 12, 20))
    gap = PeriodKey(Org("o-2", "blue"), date(2026, 11, 1), date(2026, 11, 20), date(2026, 12, 20))
    daily = credit_usage_frame(
        [("o-1", "acme", _answer(date(2026, 10, 1), date(2026, 11, 29), days=True))], "day", NOW
    )
    never_checked = daily.iloc[0:0]
    plan = plan_periods([closed, current, gap], daily, never_checked, set(), today)
    assert plan.derived == [closed, current]
    assert set(plan.requested) == {closed, gap}, "closed: once to reconcile; o-2: no days loaded"

    checked = credit_period_frame(
        [("o-1", "acme", closed.start, closed.end, _answer(closed.start, closed.end, False))],
        datetime(2026, 11, 21),  # loaded after the period closed
    )
    plan = plan_periods([closed, current], daily, checked, set(), today)
    assert plan.requested == [] and plan.derived == [closed, current]

    plan = plan_periods([closed, current], daily, checked, {"o-1"}, today)
    assert plan.requested == [current], "details re-read: the current period is reconciled"


def test_a_period_begun_before_the_run_is_recomputed_only_from_stored_days() -> None:
    today = date(2026, 11, 5)
    acme, blue = Org("o-1", "acme"), Org("o-2", "blue")
    registry = pd.DataFrame(
        {"organization_id": ["o-1", "o-2"], "period_anchor_day": [20, 1]},
    )
    touching = [
        PeriodKey(*t) for t in touching_periods([acme, blue], registry, [date(2026, 11, 1)])
    ]
    assert touching == [PeriodKey(acme, date(2026, 10, 1), date(2026, 10, 20), date(2026, 11, 20))]
    assert touching_periods([acme], registry, [date(2026, 10, 1), date(2026, 11, 1)]) == [
        (acme, date(2026, 9, 1), date(2026, 9, 20), date(2026, 10, 20))
    ], "a period of a month in the run is the run's own; only the first month looks back"

    days = credit_usage_frame(
        [("o-1", "acme", _answer(date(2026, 10, 1), date(2026, 11, 6), days=True))], "day", NOW
    )
    plan = plan_periods([], days, days.iloc[0:0], set(), today, touching)
    assert plan.derived == touching and plan.requested == [], "its days are stored: summed"
    plan = plan_periods(
        [], days[days.start_date >= "2026-11-01"], days.iloc[0:0], set(), today, touching
    )
    assert plan.derived == [] and plan.requested == [], "days missing: left as stored, not asked"


def test_older_closed_periods_are_confirmed_at_most_a_limit_a_run_oldest_first() -> None:
    today = date(2027, 1, 28)  # periods that ended before December 1 are "older"
    org = Org("o-1", "acme")
    august, september, october = (
        PeriodKey(org, date(2026, m, 1), date(2026, m, 20), date(2026, m + 1, 20))
        for m in (8, 9, 10)
    )
    november = PeriodKey(org, date(2026, 11, 1), date(2026, 11, 20), date(2026, 12, 20))
    daily = credit_usage_frame(
        [("o-1", "acme", _answer(date(2026, 8, 1), date(2027, 1, 29), days=True))], "day", NOW
    )
    never_checked = daily.iloc[0:0]
    plan = plan_periods([october, september, november], daily, never_checked, set(), today, limit=1)
    assert plan.requested == [september, november] and plan.deferred == [october], (
        "the oldest within the limit, and the one closed recently whatever the limit"
    )
    assert plan.derived == [october, september, november], "every row is the sum of its days"
    assert set(plan.all) == {october, september, november}
    plan = plan_periods([october, september], daily, never_checked, set(), today, limit=0)
    assert plan.requested == [] and plan.deferred == [september, october]

    # a later run over October only: September's row is not rewritten, August (pending since an
    # earlier run) is confirmed first, being older; October waits again
    checked = credit_period_frame(
        [("o-1", "acme", october.start, october.end, _answer(october.start, october.end, False))],
        datetime(2026, 11, 21),  # loaded after it closed, but recorded as pending
    )
    plan = plan_periods([october], daily, checked, set(), today, pending=[august, october], limit=1)
    assert plan.requested == [august] and plan.confirm_only == [august]
    assert plan.deferred == [october] and plan.all == [october], "August's stored row stays"

    gone = daily[daily.start_date >= "2026-09-01"]
    plan = plan_periods([], gone, checked, set(), today, pending=[august], limit=5)
    assert plan.requested == [] and plan.gone == [august], "its days were forgotten"


def test_a_run_reads_the_daily_slices_of_its_periods_only() -> None:
    """A backfill's oldest waiting confirmations lie months before its own range: the run reads
    the daily slices those periods span and its own, not every month in between (at 5,000
    organizations the months between held gigabytes)."""
    org = Org("o-1", "acme")
    waiting = PeriodKey(org, date(2025, 1, 1), date(2025, 1, 15), date(2025, 2, 15))
    own = PeriodKey(org, date(2026, 9, 1), date(2026, 9, 15), date(2026, 10, 15))
    calendar = PeriodKey(Org("o-2", "blue"), date(2026, 9, 1), date(2026, 9, 1), date(2026, 10, 1))
    current = PeriodKey(org, date(2026, 11, 1), date(2026, 11, 15), date(2026, 12, 15))
    today = date(2026, 11, 20)
    assert months_of_days([waiting, own, calendar, current], today) == {
        date(2025, 1, 1),
        date(2025, 2, 1),
        date(2026, 9, 1),
        date(2026, 10, 1),
        date(2026, 11, 1),
    }, "a period's days run to the day before its end, and no further than today"
    assert months_of_days([current], date(2026, 11, 14)) == set(), "not begun: no day to read"


def test_the_pending_periods_file_round_trips_and_a_damaged_one_is_named(tmp_path: Path) -> None:
    assert read_pending(tmp_path) == set()
    waiting = {
        PendingPeriod(date(2026, 9, 20), "o-1", date(2026, 10, 20)),
        PendingPeriod(date(2026, 8, 20), "o-1", date(2026, 9, 20)),
    }
    write_pending(tmp_path, waiting)
    assert read_pending(tmp_path) == waiting
    write_pending(tmp_path, set())
    assert not ledger_path(tmp_path).exists(), "nothing pending: no file"

    ledger_path(tmp_path).write_text('{"periods": [{"organization_id": "o-1"}]}')
    with pytest.raises(RuntimeError, match=r"periods-to-reconcile\.json: unreadable; expected"):
        read_pending(tmp_path)


def test_only_backfills_confirm_older_closed_periods_unless_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    today = date(2026, 11, 28)
    assert is_daily_refresh([date(2026, 10, 1), date(2026, 11, 1)], today)
    assert not is_daily_refresh([date(2026, 9, 1), date(2026, 10, 1)], today)
    monkeypatch.delenv("USAGE_RECONCILE_PER_RUN", raising=False)
    unset = UbiOpsApi.from_env().reconcile_per_run
    assert settings.reconcile_limit(unset, daily_refresh=True) == 0
    assert settings.reconcile_limit(unset, daily_refresh=False) == 500
    monkeypatch.setenv("USAGE_RECONCILE_PER_RUN", "40")
    assert settings.reconcile_limit(UbiOpsApi.from_env().reconcile_per_run, True) == 40
    monkeypatch.setenv("USAGE_RECONCILE_PER_RUN", "-1")
    with pytest.raises(SettingsError, match="USAGE_RECONCILE_PER_RUN='-1': expected a whole"):
        UbiOpsApi.from_env()
