"""Normalization alone: validated API responses in, frames shaped like the warehouse out."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import pandas as pd
import pytest

from extraction import normalize, quality
from ubiops_api.models import CreditUsage, OrganizationDetail, OrganizationUser, ResourceUsage
from warehouse.schema import (
    CREDIT_USAGE,
    ORGANIZATION_USERS,
    ORGANIZATIONS,
    RESOURCE_NAMES,
    RESOURCE_USAGE,
)

SEEN = datetime(2026, 11, 28, 6, 0)


def detail(org_id: str, name: str, subscription: str = "starter") -> OrganizationDetail:
    return OrganizationDetail.model_validate(
        {
            "id": org_id,
            "name": name,
            "subscription": subscription,
            "status": "active",
            "creation_date": "2025-01-02T03:04:05+02:00",
            "overage_usage": False,
            "two_factor_authentication_forced": True,
        }
    )


def point(start: str, end: str, value: float) -> dict[str, Any]:
    return {"start_date": start, "end_date": end, "value": value}


def usage(
    org: list[dict[str, Any]],
    projects: dict[str, list[dict[str, Any]]] | None = None,
    deleted: list[dict[str, Any]] | None = None,
    interval: str = "day",
) -> CreditUsage:
    return CreditUsage.model_validate(
        {
            "interval": interval,
            "data_organization": org,
            "data_projects": [
                {"project_id": pid, "project_name": pid.upper(), "data": data}
                for pid, data in (projects or {}).items()
            ],
            "data_deleted_projects": deleted or [],
        }
    )


def previous_orgs(*rows: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=ORGANIZATIONS.column_names)


def test_utc_naive() -> None:
    aware = datetime(2026, 11, 1, 2, 30, tzinfo=timezone(timedelta(hours=2)))
    assert normalize.utc_naive(aware) == datetime(2026, 11, 1, 0, 30)
    assert normalize.utc_naive(datetime(2026, 11, 1, 2, 30)) == datetime(2026, 11, 1, 2, 30)
    assert normalize.utc_naive(None) is None


def test_organizations_learn_their_period_from_the_current_usage_answer() -> None:
    period = usage([point("2026-11-20T00:00:00Z", "2026-12-20T00:00:00Z", 5.0)], interval="month")
    frame = normalize.organizations_frame([(detail("o1", "blue"), period)], previous_orgs(), SEEN)
    assert list(frame.columns) == ORGANIZATIONS.column_names
    row = frame.iloc[0]
    assert row.organization_id == "o1" and row.organization_name == "blue"
    assert row.period_anchor_day == 20
    assert row.period_start == datetime(2026, 11, 20) and row.period_end == datetime(2026, 12, 20)
    assert row.creation_date == datetime(2025, 1, 2, 1, 4, 5), "naive UTC"
    assert bool(row.visible) and row.first_seen_at == SEEN and row.last_seen_at == SEEN
    assert normalize.unknown_anchor_names(frame, SEEN) == []


def test_a_fragmented_answer_still_gives_the_whole_period() -> None:
    period = usage(
        [
            point("2026-10-31T00:00:00Z", "2026-11-30T00:00:00Z", 1.0),
            point("2026-11-30T00:00:00Z", "2026-11-30T12:00:00Z", 1.0),
        ],
        interval="month",
    )
    frame = normalize.organizations_frame([(detail("o1", "cobalt"), period)], previous_orgs(), SEEN)
    row = frame.iloc[0]
    assert row.period_anchor_day == 31
    assert row.period_start == datetime(2026, 10, 31)
    assert row.period_end == datetime(2026, 11, 30)


def test_no_usage_yet_gives_calendar_months_and_names_the_organization() -> None:
    frame = normalize.organizations_frame(
        [(detail("o2", "new-org"), usage([], interval="month"))], previous_orgs(), SEEN
    )
    row = frame.iloc[0]
    assert pd.isna(row.period_anchor_day)
    assert row.period_start == datetime(2026, 11, 1) and row.period_end == datetime(2026, 12, 1)
    assert normalize.unknown_anchor_names(frame, SEEN) == ["new-org"]


def test_history_survives_renames_and_invisible_organizations_are_kept() -> None:
    earlier = SEEN - timedelta(days=30)
    previous = previous_orgs(
        {
            "organization_id": "o1",
            "organization_name": "old-name",
            "subscription": "starter",
            "period_anchor_day": 20,
            "first_seen_at": earlier,
            "last_seen_at": earlier,
            "visible": True,
        },
        {
            "organization_id": "o9",
            "organization_name": "gone",
            "subscription": "free",
            "period_anchor_day": 5,
            "first_seen_at": earlier,
            "last_seen_at": earlier,
            "visible": True,
        },
    )
    period = usage([point("2026-11-20T00:00:00Z", "2026-12-20T00:00:00Z", 5.0)], interval="month")
    frame = normalize.organizations_frame([(detail("o1", "new-name"), period)], previous, SEEN)
    assert list(frame.organization_id) == ["o1", "o9"]
    renamed, gone = frame.iloc[0], frame.iloc[1]
    assert renamed.organization_name == "new-name"
    assert renamed.first_seen_at == earlier and renamed.last_seen_at == SEEN
    assert bool(renamed.visible)
    assert gone.organization_name == "gone" and not bool(gone.visible)
    assert gone.last_seen_at == earlier, "when it was last visible"
    assert normalize.unknown_anchor_names(frame, SEEN) == []


def test_nothing_visible_and_nothing_before_is_an_empty_table() -> None:
    frame = normalize.organizations_frame([], previous_orgs(), SEEN)
    assert frame.empty and list(frame.columns) == ORGANIZATIONS.column_names
    assert normalize.unknown_anchor_names(frame, SEEN) == []


def test_users_and_resources() -> None:
    user = OrganizationUser.model_validate(
        {
            "id": "u1",
            "email": "a@example.com",
            "name": "Ada",
            "admin": True,
            "join_date": "2026-01-01T10:00:00+01:00",
        }
    )
    users = normalize.users_frame([("o1", [user]), ("o2", [])], SEEN)
    assert list(users.columns) == ORGANIZATION_USERS.column_names
    assert users.to_dict("records") == [
        {
            "organization_id": "o1",
            "user_id": "u1",
            "email": "a@example.com",
            "name": "Ada",
            "surname": None,
            "status": None,
            "admin": True,
            "join_date": datetime(2026, 1, 1, 9, 0),
            "loaded_at": SEEN,
        }
    ]
    counts = dict.fromkeys(RESOURCE_NAMES, 3)
    resources = normalize.resource_usage_frame([("o1", ResourceUsage(**counts))], SEEN)
    assert list(resources.columns) == RESOURCE_USAGE.column_names
    assert resources.iloc[0].organization_id == "o1" and resources.iloc[0].observed_at == SEEN
    assert resources.iloc[0].deployments == 3
    assert normalize.users_frame([], SEEN).empty


def test_credit_usage_has_one_row_per_scope_project_and_bucket() -> None:
    day1 = point("2026-11-01T00:00:00+00:00", "2026-11-02T00:00:00+00:00", 3.0)
    day2 = point("2026-11-02T00:00:00+00:00", "2026-11-03T00:00:00+00:00", 4.5)
    answer = usage(
        [day1, day2],
        projects={"p1": [{**day1, "value": 2.0}, {**day2, "value": 4.5}]},
        deleted=[{**day1, "value": 1.0}, {**day2, "value": 0.0}],
    )
    frame = normalize.credit_usage_frame([("o1", "acme", answer)], "day", SEEN)
    assert list(frame.columns) == CREDIT_USAGE.column_names
    assert len(frame) == 6
    assert set(frame.interval) == {"day"} and set(frame.loaded_at) == {SEEN}
    by = frame.groupby(["scope", frame.project_id.fillna("")])["credits"].sum().to_dict()
    assert by == {("organization", ""): 7.5, ("project", "p1"): 6.5, ("deleted_projects", ""): 1.0}
    project = frame[frame.scope == "project"].iloc[0]
    assert project.project_name == "P1" and project.organization_name == "acme"
    assert frame.start_date.min() == datetime(2026, 11, 1)
    assert frame.start_date.dt.tz is None, "naive UTC"


def test_period_rows_sum_whatever_buckets_came_back() -> None:
    fragments = usage(
        [
            point("2026-09-30T00:00:00Z", "2026-10-30T00:00:00Z", 10.0),
            point("2026-10-30T00:00:00Z", "2026-10-31T00:00:00Z", 2.0),
        ],
        projects={
            "p1": [
                point("2026-09-30T00:00:00Z", "2026-10-30T00:00:00Z", 7.0),
                point("2026-10-30T00:00:00Z", "2026-10-31T00:00:00Z", 2.0),
            ],
            "p-empty": [],
        },
        deleted=[point("2026-09-30T00:00:00Z", "2026-10-30T00:00:00Z", 3.0)],
        interval="month",
    )
    frame = normalize.credit_period_frame(
        [("o1", "cobalt", date(2026, 9, 30), date(2026, 10, 31), fragments)], SEEN
    )
    assert list(frame.columns) == CREDIT_USAGE.column_names
    rows = {(r.scope, r.project_id or ""): r for r in frame.fillna({"project_id": ""}).itertuples()}
    assert set(rows) == {("organization", ""), ("deleted_projects", ""), ("project", "p1")}
    assert rows[("organization", "")].credits == 12.0
    assert rows[("project", "p1")].credits == 9.0
    assert rows[("deleted_projects", "")].credits == 3.0
    assert set(frame.interval) == {"month"}
    assert set(frame.start_date) == {datetime(2026, 9, 30)}
    assert set(frame.end_date) == {datetime(2026, 10, 31)}, "the requested period, whole"


def test_a_period_answered_with_no_buckets_is_zero_usage() -> None:
    frame = normalize.credit_period_frame(
        [("o1", "quiet", date(2026, 11, 1), date(2026, 12, 1), usage([], interval="month"))],
        SEEN,
    )
    assert sorted(frame.scope) == ["deleted_projects", "organization"]
    assert list(frame.credits) == [0.0, 0.0]


@pytest.mark.parametrize("frame_of", ["users", "resources", "credits", "periods"])
def test_no_answers_give_empty_frames_with_the_table_columns(frame_of: str) -> None:
    made, table = {
        "users": (lambda: normalize.users_frame([], SEEN), ORGANIZATION_USERS),
        "resources": (lambda: normalize.resource_usage_frame([], SEEN), RESOURCE_USAGE),
        "credits": (lambda: normalize.credit_usage_frame([], "day", SEEN), CREDIT_USAGE),
        "periods": (lambda: normalize.credit_period_frame([], SEEN), CREDIT_USAGE),
    }[frame_of]
    frame = made()
    assert frame.empty and list(frame.columns) == table.column_names


@pytest.mark.parametrize("frame_of", ["credits", "periods", "from_days"])
def test_empty_credit_frames_are_typed_so_checks_can_read_their_dates(frame_of: str) -> None:
    """An empty pull (no organization, no day yet) still has date columns: the checks read
    them with `.dt` (an untyped empty frame failed the run with an AttributeError)."""
    frame = {
        "credits": lambda: normalize.credit_usage_frame([], "day", SEEN),
        "periods": lambda: normalize.credit_period_frame([], SEEN),
        "from_days": lambda: normalize.credit_period_from_days([], pd.DataFrame(), SEEN),
    }[frame_of]()
    assert frame.empty and list(frame.columns) == CREDIT_USAGE.column_names
    assert pd.api.types.is_datetime64_any_dtype(frame["start_date"])
    assert pd.api.types.is_float_dtype(frame["credits"])
    registry = pd.DataFrame(
        {"organization_id": ["o1"], "organization_name": ["acme"], "creation_date": [SEEN]}
    )
    finding = quality.complete_days(frame, registry, date(2026, 11, 28), date(2026, 11, 30))
    assert not finding.passed and finding.failures == 2
    assert finding.examples == ["acme: 2 days missing from 2026-11-28"]
