"""Referee tests: credit usage through the official ubiops SDK (periods, invariants, moves)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import ubiops
from ubiops.exceptions import ApiException

from emulator.demo import CREDIT_BUDGETS, SCENARIO


def _day(point_date: datetime) -> date:
    assert point_date.utcoffset().total_seconds() == 0
    return point_date.date()


def _spans(points) -> list[tuple[date, date]]:
    return [(_day(p.start_date), _day(p.end_date)) for p in points]


def _assert_invariant(usage: ubiops.OrganizationUsage) -> None:
    n = len(usage.data_organization)
    assert len(usage.data_deleted_projects) == n
    for project in usage.data_projects:
        assert isinstance(project, ubiops.OrganizationProjectUsage)
        assert _spans(project.data) == _spans(usage.data_organization)
    for i, org_point in enumerate(usage.data_organization):
        assert isinstance(org_point.value, float)
        parts = sum(p.data[i].value for p in usage.data_projects)
        parts += usage.data_deleted_projects[i].value
        assert parts == pytest.approx(org_point.value, abs=1e-6)
        assert org_point.value >= 0


@pytest.mark.parametrize(
    ("org", "start", "end"),
    [
        ("acme-analytics", date(2026, 11, 1), date(2026, 12, 1)),
        ("blue-harbor", date(2026, 11, 20), date(2026, 12, 20)),
        ("cobalt-labs", date(2026, 10, 31), date(2026, 11, 30)),
        ("delta-vision", date(2026, 11, 15), date(2026, 12, 15)),
        ("ember-free", date(2026, 11, 28), date(2026, 12, 28)),
        ("fjord-ml", date(2026, 11, 9), date(2026, 12, 9)),
    ],
)
def test_default_is_current_subscription_period(api, org, start, end) -> None:
    usage = api.organizations_usage_get(org)
    assert isinstance(usage, ubiops.OrganizationUsage)
    assert usage.interval == "month"
    assert _spans(usage.data_organization) == [(start, end)]
    _assert_invariant(usage)
    daily = api.organizations_usage_get(org, interval="day")
    assert daily.interval == "day"
    spans = _spans(daily.data_organization)
    assert spans[0][0] == start and spans[-1] == (date(2026, 11, 28), date(2026, 11, 29))
    assert len(spans) == (date(2026, 11, 29) - start).days
    assert sum(p.value for p in daily.data_organization) == pytest.approx(
        usage.data_organization[0].value, abs=1e-5
    )
    _assert_invariant(daily)


def test_explicit_month_buckets_step_from_start_day_with_clamping(api) -> None:
    usage = api.organizations_usage_get(
        "cobalt-labs", start_date="2026-01-31", end_date="2026-05-15", interval="month"
    )
    assert _spans(usage.data_organization) == [
        (date(2026, 1, 31), date(2026, 2, 28)),
        (date(2026, 2, 28), date(2026, 3, 31)),
        (date(2026, 3, 31), date(2026, 4, 30)),
        (date(2026, 4, 30), date(2026, 5, 15)),
    ]
    _assert_invariant(usage)
    default_interval = api.organizations_usage_get(
        "cobalt-labs", start_date="2026-01-31", end_date="2026-05-15"
    )
    assert default_interval.to_dict() == usage.to_dict()


def test_three_date_spellings_agree(api) -> None:
    results = [
        api.organizations_usage_get("acme-analytics", start_date=s, end_date=e, interval="day")
        for s, e in [
            ("2026-03-01", "2026-03-08"),
            ("2026-03-01T00:00:00Z", "2026-03-08T00:00:00Z"),
            ("2026-03-01 00:00:00", "2026-03-08 00:00:00"),
            (date(2026, 3, 1), date(2026, 3, 8)),
        ]
    ]
    assert all(r.to_dict() == results[0].to_dict() for r in results)
    assert len(results[0].data_organization) == 7  # end exclusive


def test_end_exclusive_and_totals_match(shared_server, api) -> None:
    usage = api.organizations_usage_get(
        "fjord-ml", start_date="2026-06-01", end_date="2026-09-01", interval="month"
    )
    assert _spans(usage.data_organization) == [
        (date(2026, 6, 1), date(2026, 7, 1)),
        (date(2026, 7, 1), date(2026, 8, 1)),
        (date(2026, 8, 1), date(2026, 9, 1)),
    ]
    truth = shared_server.totals("fjord-ml", date(2026, 6, 1), date(2026, 9, 1))
    assert truth["days"] == 92
    assert sum(p.value for p in usage.data_organization) == pytest.approx(
        truth["organization_total"], abs=1e-5
    )
    assert sum(p.value for p in usage.data_deleted_projects) == pytest.approx(
        truth["deleted_projects"], abs=1e-5
    )
    for project in usage.data_projects:
        assert sum(p.value for p in project.data) == pytest.approx(
            truth["projects"][project.project_id], abs=1e-5
        )


def test_nothing_after_now(api) -> None:
    daily = api.organizations_usage_get(
        "acme-analytics", start_date="2026-11-20", end_date="2027-02-01", interval="day"
    )
    assert _spans(daily.data_organization)[-1] == (date(2026, 11, 28), date(2026, 11, 29))
    monthly = api.organizations_usage_get(
        "acme-analytics", start_date="2026-10-01", end_date="2027-03-01", interval="month"
    )
    assert _spans(monthly.data_organization) == [
        (date(2026, 10, 1), date(2026, 11, 1)),
        (date(2026, 11, 1), date(2026, 12, 1)),
    ]
    future = api.organizations_usage_get(
        "acme-analytics", start_date="2027-01-01", end_date="2027-02-01"
    )
    assert future.data_organization == [] and future.data_deleted_projects == []
    # today's bucket holds usage up to noon only: roughly half a normal Saturday
    assert 0 < daily.data_organization[-1].value < daily.data_organization[-2].value


def test_long_range_invariant_and_project_lists(api) -> None:
    usage = api.organizations_usage_get(
        "acme-analytics", start_date="2025-09-01", end_date="2026-11-29", interval="day"
    )
    _assert_invariant(usage)
    assert len(usage.data_organization) == (date(2026, 11, 29) - date(2025, 9, 1)).days
    names = {p.project_name for p in usage.data_projects}
    assert "legacy-scoring" not in names  # deleted: only in data_deleted_projects
    assert "llm-assistant" in names
    assert sum(p.value for p in usage.data_deleted_projects) > 0
    early = api.organizations_usage_get(
        "acme-analytics", start_date="2025-09-01", end_date="2025-10-01"
    )
    assert "llm-assistant" not in {p.project_name for p in early.data_projects}


def test_weekly_seasonality_weekdays_heavier(api) -> None:
    usage = api.organizations_usage_get(
        "delta-vision", start_date="2026-06-01", end_date="2026-09-01", interval="day"
    )
    weekday = [p.value for p in usage.data_organization if p.start_date.weekday() < 5]
    weekend = [p.value for p in usage.data_organization if p.start_date.weekday() >= 5]
    assert sum(weekday) / len(weekday) > 1.8 * sum(weekend) / len(weekend)


def test_scenario_budgets(api) -> None:
    """Linear run-rate projection of the current period over whole days (today counted in full:
    the emulator's clock is at noon, so today's usage so far is half of it): only blue-harbor
    exceeds its budget."""
    now = datetime(2026, 11, 28, 12, tzinfo=UTC)
    today_fraction = 0.5
    for entry in SCENARIO:
        if not entry["demo_user_member"]:
            continue
        point = api.organizations_usage_get(entry["name"]).data_organization[0]
        start, end = _day(point.start_date), _day(point.end_date)
        days = api.organizations_usage_get(
            entry["name"], start_date=str(start), end_date=str(end), interval="day"
        ).data_organization
        complete = sum(p.value for p in days if _day(p.start_date) < now.date())
        (today,) = [p.value for p in days if _day(p.start_date) == now.date()]
        so_far = complete + today / today_fraction
        days_so_far = (now.date() - start).days + 1
        projected = so_far * (end - start).days / days_so_far
        ratio = projected / CREDIT_BUDGETS[entry["subscription"]]
        assert (ratio > 1.0) == entry["over_budget"], entry["name"]
        assert ratio == pytest.approx(entry["projected_ratio"], rel=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"interval": "week"}, "interval"),
        ({"interval": "DAY"}, "interval"),
        ({"start_date": "2026-13-01", "end_date": "2026-12-01"}, "Invalid date"),
        ({"start_date": "yesterday", "end_date": "2026-12-01"}, "Invalid date"),
        ({"start_date": "2026-05-01", "end_date": "2026-05-01"}, "before"),
        ({"start_date": "2026-06-01", "end_date": "2026-05-01"}, "before"),
        ({"start_date": "2026-05-01"}, "both"),
        ({"end_date": "2026-05-01"}, "both"),
    ],
)
def test_usage_bad_parameters(api, kwargs, fragment) -> None:
    with pytest.raises(ApiException) as exc:
        api.organizations_usage_get("acme-analytics", **kwargs)
    assert exc.value.status == 400
    assert fragment in exc.value.get_body_message()


def test_usage_unknown_and_foreign_org(api) -> None:
    for name in ("ghost", "other-team"):
        with pytest.raises(ApiException) as exc:
            api.organizations_usage_get(name)
        assert exc.value.status == 404


def test_deleted_project_history_moves(fresh_server, fresh_api) -> None:
    kwargs = {"start_date": "2025-12-01", "end_date": "2026-11-29", "interval": "month"}
    before = fresh_api.organizations_usage_get("fjord-ml", **kwargs)
    target = next(p for p in before.data_projects if p.project_name == "fjord-train")
    fresh_server.delete_project("fjord-ml", target.project_id)
    after = fresh_api.organizations_usage_get("fjord-ml", **kwargs)
    assert target.project_id not in {p.project_id for p in after.data_projects}
    _assert_invariant(after)
    for i, point in enumerate(after.data_deleted_projects):
        expected = before.data_deleted_projects[i].value + target.data[i].value
        assert point.value == pytest.approx(expected, abs=1e-5)
        assert after.data_organization[i].value == pytest.approx(
            before.data_organization[i].value, abs=1e-9
        )
    assert fresh_api.organizations_resource_usage("fjord-ml").projects == 1


def test_rename_keeps_usage_and_id(fresh_server, fresh_api) -> None:
    before = fresh_api.organizations_get("cobalt-labs")
    usage = fresh_api.organizations_usage_get("cobalt-labs").to_dict()
    assert fresh_server.rename_organization("cobalt-labs", "cobalt-2") == before.id
    assert fresh_api.organizations_get("cobalt-2").id == before.id
    assert fresh_api.organizations_usage_get("cobalt-2").to_dict() == usage


def test_usage_today_adds_to_todays_bucket(fresh_server, fresh_api) -> None:
    before = fresh_api.organizations_usage_get("ember-free", interval="day")
    project_id = fresh_server.add_usage_today("ember-free", 123.5)
    after = fresh_api.organizations_usage_get("ember-free", interval="day")
    assert after.data_organization[-1].value == pytest.approx(
        before.data_organization[-1].value + 123.5, abs=1e-6
    )
    project = next(p for p in after.data_projects if p.project_id == project_id)
    assert project.data[-1].value >= 123.5
    _assert_invariant(after)


def test_determinism_per_seed(server_factory, api_for) -> None:
    first = server_factory(seed=11)
    second = server_factory(seed=11)
    third = server_factory(seed=12)

    def snapshot(srv) -> tuple:
        client = api_for(srv.base_url, srv.token)
        usage = client.organizations_usage_get(
            "acme-analytics", start_date="2026-01-01", end_date="2026-11-29", interval="day"
        )
        return ([o.id for o in client.organizations_list()], usage.to_dict())

    seen = snapshot(first)  # one snapshot of the first server, compared with both others
    assert seen == snapshot(second)
    assert seen != snapshot(third)
