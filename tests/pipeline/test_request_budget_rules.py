"""The request budget's rules, unit by unit: when details are due, which periods are asked for,
and that a period summed from its days is the row an API answer for that period gives."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest

from assets.credit_usage import plan_periods
from common import settings
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


def test_max_age_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("USAGE_DETAILS_MAX_AGE_DAYS", raising=False)
    assert settings.details_max_age_days() == 7
    monkeypatch.setenv("USAGE_DETAILS_MAX_AGE_DAYS", "2")
    assert settings.details_max_age_days() == 2
    monkeypatch.setenv("USAGE_DETAILS_MAX_AGE_DAYS", "weekly")
    with pytest.raises(settings.SettingsError, match="USAGE_DETAILS_MAX_AGE_DAYS='weekly'"):
        settings.details_max_age_days()


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
    assert plan.requested == [closed, gap], "closed: once to reconcile; o-2: no days loaded"

    checked = credit_period_frame(
        [("o-1", "acme", closed.start, closed.end, _answer(closed.start, closed.end, False))],
        datetime(2026, 11, 21),  # loaded after the period closed
    )
    plan = plan_periods([closed, current], daily, checked, set(), today)
    assert plan.requested == [] and plan.derived == [closed, current]

    plan = plan_periods([closed, current], daily, checked, {"o-1"}, today)
    assert plan.requested == [current], "details re-read: the current period is reconciled"
