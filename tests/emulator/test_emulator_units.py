"""Unit tests: period arithmetic, data generation, CLI parsing (no server)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import numpy as np
import pytest

from emulator import cli, periods
from emulator.demo import SCENARIO, build_state
from emulator.model import MICRO

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)


def test_add_months_clamps_and_returns_to_anchor() -> None:
    jan31 = date(2026, 1, 31)
    assert periods.add_months(jan31, 1) == date(2026, 2, 28)
    assert periods.add_months(jan31, 2) == date(2026, 3, 31)
    assert periods.add_months(date(2024, 1, 30), 1) == date(2024, 2, 29)
    assert periods.add_months(date(2026, 12, 15), 1) == date(2027, 1, 15)
    assert periods.add_months(date(2026, 1, 15), -1) == date(2025, 12, 15)


@pytest.mark.parametrize(
    ("today", "anchor", "expected"),
    [
        (date(2020, 12, 1), 20, (date(2020, 11, 20), date(2020, 12, 20))),
        (date(2026, 11, 20), 20, (date(2026, 11, 20), date(2026, 12, 20))),
        (date(2026, 3, 1), 31, (date(2026, 2, 28), date(2026, 3, 31))),
        (date(2026, 2, 27), 31, (date(2026, 1, 31), date(2026, 2, 28))),
        (date(2026, 5, 1), 1, (date(2026, 5, 1), date(2026, 6, 1))),
        (date(2024, 2, 29), 30, (date(2024, 2, 29), date(2024, 3, 30))),
    ],
)
def test_current_period(today, anchor, expected) -> None:
    assert periods.current_period(today, anchor) == expected


def test_parse_query_date_spellings() -> None:
    for text in (
        "2024-03-01",
        "2024-03-01T00:00:00Z",
        "2024-03-01 00:00:00",
        "2024-03-01T05:00:00+00:00",
    ):
        assert periods.parse_query_date(text) == date(2024, 3, 1)
    for bad in ("", "03/01/2024", "2024-02-30"):
        with pytest.raises(ValueError):
            periods.parse_query_date(bad)


def test_buckets_day_and_month() -> None:
    today = date(2026, 11, 28)
    days = periods.buckets(date(2026, 11, 26), date(2026, 12, 5), "day", today)
    assert days[-1] == (date(2026, 11, 28), date(2026, 11, 29)) and len(days) == 3
    months = periods.buckets(date(2026, 8, 31), date(2026, 11, 10), "month", today)
    assert months == [
        (date(2026, 8, 31), date(2026, 9, 30)),
        (date(2026, 9, 30), date(2026, 10, 31)),
        (date(2026, 10, 31), date(2026, 11, 10)),
    ]


def test_generation_is_deterministic_and_calibrated() -> None:
    a = build_state(seed=3, now=NOW)
    b = build_state(seed=3, now=NOW)
    for org_a, org_b in zip(a.orgs.values(), b.orgs.values(), strict=True):
        assert org_a.id == org_b.id
        assert np.array_equal(org_a.usage, org_b.usage)
    names = [o.name for o in a.orgs.values()]
    assert names == [entry["name"] for entry in SCENARIO]
    anchors = {o.name: o.anchor_day for o in a.orgs.values()}
    assert anchors["acme-analytics"] == 1 and anchors["cobalt-labs"] == 31
    for org in a.orgs.values():
        assert org.usage.dtype == np.int64 and (org.usage >= 0).all()
        assert org.usage.shape == (len(org.projects), a.n_days)
        assert a.n_days >= 13 * 31
        for project in org.projects:
            before = (project.created - a.day0).days
            assert org.usage[project.row, :before].sum() == 0
            if project.deleted_at is not None:
                after = (project.deleted_at.date() - a.day0).days + 1
                assert org.usage[project.row, after:].sum() == 0


def test_the_past_does_not_depend_on_the_hour_the_emulator_starts() -> None:
    """Two emulators started the same day serve the same complete days (a re-run of the demo
    against a restarted emulator changes nothing already complete); today's usage grows with
    the clock, and a later day is a different data set (the window ends on its own today)."""
    morning = build_state(seed=3, now=NOW.replace(hour=0, minute=5))
    evening = build_state(seed=3, now=NOW.replace(hour=23, minute=40))
    for early, late in zip(morning.orgs.values(), evening.orgs.values(), strict=True):
        assert np.array_equal(early.usage[:, :-1], late.usage[:, :-1]), early.name
        assert (early.usage[:, -1] <= late.usage[:, -1]).all(), early.name
    today = {o.name: int(o.usage[:, -1].sum()) for o in evening.orgs.values()}
    earlier = {o.name: int(o.usage[:, -1].sum()) for o in morning.orgs.values()}
    assert sum(today.values()) > 10 * sum(earlier.values()) > 0


def test_a_longer_history_has_usage_in_every_month() -> None:
    """`--history-months 36`: the projects there from the start are as old as the window, so
    every month served has usage (they were ~16 months old: earlier months served zeros), and
    the months the default window covers get the same projects' days."""
    state = build_state(now=NOW, history_months=36)
    assert state.day0 < date(2023, 12, 1)
    for org in state.list_organizations(state.users[state.tokens["demo-token"]]):
        month = date(2023, 12, 1)
        while month < date(2026, 11, 1):
            following = periods.add_months(month, 1)
            total = state.totals(org.name, month, following)["organization_total"]
            assert total > 0, (org.name, month)
            month = following
    default = build_state(now=NOW)
    assert default.day0 > date(2025, 7, 1), "the default window is shorter than the projects"


def test_scaled_generation() -> None:
    state = build_state(seed=1, organizations=40, now=NOW)
    demo_user = state.users[state.tokens["demo-token"]]
    orgs = state.list_organizations(demo_user)
    assert len(orgs) == 40
    assert len(state.orgs) == 41  # plus other-team
    for org in orgs:
        assert 1 <= len(org.members) <= 4
        assert org.members[demo_user.id].admin
        assert 1 <= org.anchor_day <= 31
    total = sum(int(o.usage.sum()) for o in orgs) / MICRO
    assert total > 0
    assert build_state(seed=1, organizations=3, now=NOW).list_organizations(demo_user)[2].name == (
        "cobalt-labs"
    )


def test_cli_parser_builds_config() -> None:
    args = cli.build_parser().parse_args(
        [
            "--port",
            "0",
            "--seed",
            "5",
            "--organizations",
            "50",
            "--rate-limit",
            "0",
            "--now",
            "2026-11-28T12:00:00Z",
            "--fault-5xx",
            "2",
            "--fault-deleted-projects-key",
            "data_projects_deleted",
        ]
    )
    config = cli.config_from_args(args)
    assert (config.seed, config.organizations, config.rate_limit_per_minute) == (5, 50, 0)
    assert config.fixed_now() == NOW
    assert config.faults.errors_5xx == 2
    assert config.faults.deleted_projects_key == "data_projects_deleted"
    assert args.port == 0 and args.host == "127.0.0.1"
