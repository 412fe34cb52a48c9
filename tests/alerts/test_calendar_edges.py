"""The subscription calendar's edges: anchor learning, whole-period rows, zero-bucket periods,
reconciliation, limit_date within the period, and a quota change mid-period."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd
import pytest

from alerting.evaluate import compute_alerts
from alerting.store import AlertStore
from common.periods import (
    AnchorSchedule,
    current_period,
    learn_anchor,
    organization_anchor,
    organization_schedule,
    parse_anchor_history,
    periods_starting_in,
    schedule_period_containing,
    schedule_periods_starting_in,
    today_after,
)
from extraction.normalize import (
    AnchorChange,
    anchor_changes,
    credit_period_frame,
    credit_usage_frame,
    organizations_frame,
    unknown_anchor_names,
)
from insights.quotas import parse_quotas
from insights.reconcile import reconcile_periods
from ubiops_api.models import CreditUsage, OrganizationDetail
from warehouse.schema import ORGANIZATIONS

from .conftest import organizations_frame as orgs_frame
from .conftest import usage_frame

SEEN = datetime(2026, 11, 28, 6, 0)


def point(start: str, end: str, value: float) -> dict[str, object]:
    return {"start_date": f"{start}T00:00:00Z", "end_date": f"{end}T00:00:00Z", "value": value}


def usage(org: list, projects: list | None = None, deleted: list | None = None) -> CreditUsage:
    return CreditUsage.model_validate(
        {
            "interval": "month",
            "data_organization": org,
            "data_projects": projects or [],
            "data_deleted_projects": deleted if deleted is not None else [],
        }
    )


def detail(name: str, org_id: str) -> OrganizationDetail:
    return OrganizationDetail.model_validate(
        {
            "id": org_id,
            "name": name,
            "creation_date": "2024-01-01T00:00:00Z",
            "status": "active",
            "subscription": "starter",
            "two_factor_authentication_forced": False,
            "overage_usage": False,
        }
    )


@pytest.mark.parametrize(
    ("start", "end", "earlier", "anchor"),
    [
        ("2026-11-20", "2026-12-20", None, 20),
        ("2026-02-28", "2026-03-31", None, 31),  # clamped start: the end tells
        ("2026-02-28", "2026-03-28", None, 28),
        ("2026-02-28", "2026-03-30", None, 30),
        ("2024-02-29", "2024-03-29", None, 29),  # leap February
        ("2026-02-28", "2026-03-28", 30, 28),  # the end beats what was learnt before
        ("2026-02-28", "2026-03-15", 30, 30),  # a fragment: the anchor learnt earlier settles it
        ("2026-04-30", None, 31, 31),
        (None, None, 12, None),  # no buckets: unknown
    ],
)
def test_learn_anchor(start, end, earlier, anchor) -> None:
    assert learn_anchor(start, end, earlier) == anchor


def test_periods_starting_in_and_current_period_over_februaries() -> None:
    assert periods_starting_in(2024, 2, 31) == [(date(2024, 2, 29), date(2024, 3, 31))]
    assert periods_starting_in(2025, 2, 30) == [(date(2025, 2, 28), date(2025, 3, 30))]
    assert periods_starting_in(2025, 1, 31) == [(date(2025, 1, 31), date(2025, 2, 28))]
    # the current period is the one containing today, the day after the last complete day
    assert today_after("2026-11-27") == date(2026, 11, 28)
    assert current_period(today_after("2026-11-27"), 28) == (date(2026, 11, 28), date(2026, 12, 28))
    assert organization_anchor({"period_anchor_day": None, "period_start": None}) == 1


def test_an_anchor_change_cuts_the_running_period_and_keeps_the_earlier_ones() -> None:
    nov = date(2026, 11, 25)
    schedule = AnchorSchedule(25, ((9, nov),))
    assert schedule_periods_starting_in(2026, 10, schedule) == [
        (date(2026, 10, 9), date(2026, 11, 9))
    ]
    assert schedule_periods_starting_in(2026, 11, schedule) == [
        (date(2026, 11, 9), nov),  # the period running on the change day ends on it
        (nov, date(2026, 12, 25)),
    ]
    assert schedule_periods_starting_in(2027, 1, schedule) == [
        (date(2027, 1, 25), date(2027, 2, 25))
    ]
    assert schedule_period_containing(date(2026, 11, 24), schedule) == (date(2026, 11, 9), nov)
    assert schedule_period_containing(nov, schedule) == (nov, date(2026, 12, 25))
    # two changes: each stretch keeps its own anchor; without changes, the plain calendar
    two = AnchorSchedule(31, ((9, nov), (25, date(2027, 2, 28))))
    assert schedule_periods_starting_in(2027, 2, two) == [
        (date(2027, 2, 25), date(2027, 2, 28)),
        (date(2027, 2, 28), date(2027, 3, 31)),
    ]
    assert schedule_periods_starting_in(2027, 1, two) == [(date(2027, 1, 25), date(2027, 2, 25))]
    assert schedule_period_containing(date(2027, 2, 27), two) == (
        date(2027, 2, 25),
        date(2027, 2, 28),
    )
    assert schedule_periods_starting_in(2025, 2, AnchorSchedule(31)) == periods_starting_in(
        2025, 2, 31
    )
    row = {"period_anchor_day": 25, "anchor_history": "9@2026-11-25"}
    assert organization_schedule(row) == schedule
    assert organization_schedule({"period_anchor_day": 7, "anchor_history": None}).earlier == ()
    with pytest.raises(ValueError, match=r"anchor_history '9-2026-11-25': expected day@YYYY-MM-DD"):
        parse_anchor_history("9-2026-11-25")
    with pytest.raises(ValueError, match="increasing order"):
        parse_anchor_history("9@2026-11-25,12@2026-10-12")


def test_a_new_anchor_learnt_goes_into_the_history_from_its_first_period() -> None:
    empty = pd.DataFrame(columns=ORGANIZATIONS.column_names)
    before = organizations_frame(
        [(detail("fjord-ml", "o-1"), usage([point("2026-11-09", "2026-12-09", 5.0)]))], empty, SEEN
    )
    assert before.loc[0, "period_anchor_day"] == 9 and pd.isna(before.loc[0, "anchor_history"])
    later = datetime(2026, 11, 30, 6, 0)
    after = organizations_frame(
        [(detail("fjord-ml", "o-1"), usage([point("2026-11-25", "2026-12-25", 1.0)]))],
        before,
        later,
    )
    assert after.loc[0, "period_anchor_day"] == 25
    assert after.loc[0, "anchor_history"] == "9@2026-11-25"
    assert anchor_changes(before, after) == [AnchorChange("fjord-ml", 9, 25, date(2026, 11, 25))]
    # the same anchor again (a carried row, or a re-read): history kept, nothing changed
    again = organizations_frame(
        [(detail("fjord-ml", "o-1"), usage([point("2026-11-25", "2026-12-25", 2.0)]))],
        after,
        later,
    )
    assert again.loc[0, "anchor_history"] == "9@2026-11-25"
    assert anchor_changes(after, again) == []


def test_unknown_anchor_gets_calendar_months_and_is_named() -> None:
    previous = pd.DataFrame(columns=ORGANIZATIONS.column_names)
    frame = organizations_frame(
        [
            (detail("fresh-org", "o-1"), usage([])),  # answered without buckets
            (detail("known-org", "o-2"), usage([point("2026-10-31", "2026-11-30", 5.0)])),
        ],
        previous,
        SEEN,
    ).set_index("organization_id")
    assert pd.isna(frame.loc["o-1", "period_anchor_day"])
    assert frame.loc["o-1", "period_start"] == pd.Timestamp("2026-11-01")
    assert frame.loc["o-1", "period_end"] == pd.Timestamp("2026-12-01")
    assert frame.loc["o-2", "period_anchor_day"] == 31
    assert unknown_anchor_names(frame.reset_index(), SEEN) == ["fresh-org"]


def test_fragmented_answer_becomes_one_row_per_period_and_zero_buckets_are_zero() -> None:
    fragmented = usage(
        [point("2025-09-30", "2025-10-30", 100.0), point("2025-10-30", "2025-10-31", 4.5)],
        [
            {
                "project_id": "p1",
                "project_name": "one",
                "data": [
                    point("2025-09-30", "2025-10-30", 60.0),
                    point("2025-10-30", "2025-10-31", 4.5),
                ],
            }
        ],
        [point("2025-09-30", "2025-10-30", 40.0), point("2025-10-30", "2025-10-31", 0.0)],
    )
    frame = credit_period_frame(
        [
            ("o-1", "cobalt", date(2025, 9, 30), date(2025, 10, 31), fragmented),
            ("o-1", "cobalt", date(2025, 10, 31), date(2025, 11, 30), usage([])),
        ],
        SEEN,
    )
    rows = frame.set_index(["start_date", "scope"])["credits"]
    assert len(frame[frame.start_date == pd.Timestamp("2025-09-30")]) == 3
    assert rows[(pd.Timestamp("2025-09-30"), "organization")] == 104.5
    assert rows[(pd.Timestamp("2025-09-30"), "project")] == 64.5
    assert set(frame.end_date) == {pd.Timestamp("2025-10-31"), pd.Timestamp("2025-11-30")}
    # the period answered with no buckets is stored as zero usage, not missing
    assert rows[(pd.Timestamp("2025-10-31"), "organization")] == 0.0
    assert rows[(pd.Timestamp("2025-10-31"), "deleted_projects")] == 0.0


def test_reconciliation_names_organization_and_period() -> None:
    days = [
        point(f"2025-10-{d:02d}", f"2025-10-{d + 1:02d}", 10.0) if d < 31 else
        point("2025-10-31", "2025-11-01", 10.0)
        for d in range(1, 32)
    ]  # fmt: skip
    daily = credit_usage_frame([("o-1", "cobalt", usage(days, deleted=days))], "day", SEEN)
    good = usage(
        [point("2025-10-01", "2025-11-01", 310.0)],
        deleted=[point("2025-10-01", "2025-11-01", 310.0)],
    )
    bad = usage(
        [point("2025-10-01", "2025-11-01", 300.0)],
        deleted=[point("2025-10-01", "2025-11-01", 310.0)],
    )
    period = (date(2025, 10, 1), date(2025, 11, 1))
    ok = reconcile_periods(
        credit_period_frame([("o-1", "cobalt", *period, good)], SEEN), daily, date(2026, 1, 1)
    )
    assert ok.passed and "2 period rows compared" in ok.description
    wrong = reconcile_periods(
        credit_period_frame([("o-1", "cobalt", *period, bad)], SEEN), daily, date(2026, 1, 1)
    )
    assert not wrong.passed and wrong.failures == 1
    assert wrong.examples == [
        "cobalt (o-1) organization, period 2025-10-01 -> 2025-11-01: period row 300.0000 != sum "
        "of its days 310.0000"
    ]
    # a period whose days are not all loaded is not comparable (not a failure)
    later = (date(2025, 10, 15), date(2025, 11, 15))
    partial = reconcile_periods(
        credit_period_frame([("o-1", "cobalt", *later, good)], SEEN), daily, date(2026, 1, 1)
    )
    assert partial.passed and "2 not comparable" in partial.description


def test_limit_date_only_within_the_current_period() -> None:
    config = parse_quotas({"subscriptions": {"free": {"credit_budget": 1000}}})
    orgs = orgs_frame(("o1", "free", "2024-03-01", "2024-04-01"))
    slow = usage_frame("o1", "2024-02-01", {"p1": [20.0] * 40})  # 620 a period: never this period
    status = compute_alerts(slow, orgs, config, as_of="2024-03-11").status.iloc[0]
    assert pd.isna(status.limit_date) and pd.isna(status.days_until_limit)
    assert status.limit_outlook == "not reached this period"
    fast = usage_frame("o1", "2024-02-01", {"p1": [50.0] * 40})  # 1000 reached on Mar 20
    status = compute_alerts(fast, orgs, config, as_of="2024-03-11").status.iloc[0]
    assert status.limit_date == pd.Timestamp("2024-03-20")
    assert status.limit_outlook == "reached this period"


def test_quota_change_mid_period_reevaluates_without_duplicates(tmp_path) -> None:
    orgs = orgs_frame(("o1", "free", "2024-03-01", "2024-04-01"))
    data = usage_frame("o1", "2024-02-01", {"p1": [30.0] * 40})  # Mar 1..10: 300 used, 930 pace
    rules = {"credit_actual_thresholds": [25], "credit_forecast_thresholds": [80, 100]}

    def candidates(budget: float) -> pd.DataFrame:
        config = parse_quotas(
            {"subscriptions": {"free": {"credit_budget": budget}}, "rules": rules}
        )
        return compute_alerts(data, orgs, config, as_of="2024-03-10").candidates

    now = datetime(2024, 3, 11, 6)
    with AlertStore(tmp_path / "alerts.sqlite") as store:
        store.sync(candidates(1000), ["log"], now)  # 30 % used, forecast 93 %
        first = store.outbox_frame()
        assert sorted(first.alert_key) == [
            "o1||credit_actual|25|2024-03-01",
            "o1||credit_forecast|80|2024-03-01",
        ]
        # the budget is raised a little mid-period: same alerts, new numbers, no new message
        store.sync(candidates(1100), ["log"], now)
        assert len(store.outbox_frame()) == len(first)
        alerts = store.alerts_frame().set_index("alert_key")
        assert alerts.loc["o1||credit_forecast|80|2024-03-01", "limit"] == 1100
        # the budget is cut: the forecast now crosses 100 %: one new alert, one message
        report = store.sync(candidates(900), ["log"], now)
        assert report.opened == ["o1||credit_forecast|100|2024-03-01"]
        assert len(store.outbox_frame()) == len(first) + 1
        # the same file again: nothing new
        store.sync(candidates(900), ["log"], now)
        assert len(store.outbox_frame()) == len(first) + 1
