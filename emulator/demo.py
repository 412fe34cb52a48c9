"""The deterministic demo data set (and its scaled-up variant) loaded into a ``State``.

Owns the scenario: which organizations exist, their subscriptions and anchor days, their
projects, users and ``history_months`` (default 15) months of daily credit usage ending today
(relative to ``now``). Usage is
generated with numpy, vectorised over all projects at once (weekly seasonality, trends, noise,
one-day spikes, project creation and deletion), so 5,000 organizations take seconds.

``SCENARIO`` describes the demo organizations for the README and for alert tests;
``CREDIT_BUDGETS`` and ``RESOURCE_LIMITS`` are the suggested per-subscription quotas the demo is
calibrated against: ``blue-harbor`` is projected (linear run-rate of the current period) to end
at 160% of its budget, ``delta-vision`` sits just under its project/deployment limits, every other
member organization is projected well under 100%.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from emulator import periods
from emulator.model import MICRO, Membership, Organization, Project, User
from emulator.state import DEFAULT_HISTORY_MONTHS, State, data_window

DEFAULT_SEED: int = 7
DEFAULT_TOKEN: str = "demo-token"
"""Token of the demo user, admin of every demo organization."""
OTHER_TOKEN: str = "other-token"
"""Token of a second user: owner of ``other-team`` and a non-admin member of ``acme-analytics``."""
DEMO_EMAIL = "demo@example.com"
OTHER_EMAIL = "other@example.com"

CREDIT_BUDGETS: dict[str, float] = {
    "free": 1_000.0,
    "starter": 5_000.0,
    "professional": 20_000.0,
    "premium": 50_000.0,
    "enterprise": 100_000.0,
}
"""Suggested credits per subscription period, by subscription."""

RESOURCE_LIMITS: dict[str, dict[str, int]] = {
    "free": {"projects": 3, "deployments": 10, "users": 3},
    "starter": {"projects": 10, "deployments": 50, "users": 10},
    "professional": {"projects": 25, "deployments": 100, "users": 25},
    "premium": {"projects": 50, "deployments": 250, "users": 50},
    "enterprise": {"projects": 100, "deployments": 1000, "users": 500},
}
"""Suggested resource limits per subscription."""


# The age of a demo project that has been there from the start: older than the default data
# window (15 months, ~460 days), and as old as a longer window (`--history-months` above 16), so
# that every month served has usage.
FROM_THE_START = 500


@dataclass(frozen=True)
class ProjectSpec:
    """A demo project: share of the org's usage, trend, life span (days before today)."""

    name: str
    weight: float = 1.0
    growth: float = 0.0  # per day, relative (0.002 = +0.2 %/day)
    created_days_ago: int = FROM_THE_START
    deleted_days_ago: int | None = None
    deployments: int = 3
    spikes_days_ago: tuple[int, ...] = ()


@dataclass(frozen=True)
class OrgSpec:
    """A demo organization and what it demonstrates."""

    name: str
    subscription: str
    anchor_day: int
    projected_ratio: float
    shows: str
    projects: tuple[ProjectSpec, ...]
    period_growth: float = 0.0  # extra per-day growth inside the current period
    weekend_factor: float = 0.4
    member: bool = True
    over_budget: bool = False
    near_resource_limit: bool = False
    extra_users: tuple[tuple[str, bool], ...] = field(default=())


def _many(prefix: str, n: int, deployments: int) -> tuple[ProjectSpec, ...]:
    return tuple(
        ProjectSpec(f"{prefix}-{i:02d}", weight=1.0 + (i % 5) * 0.3, deployments=deployments)
        for i in range(1, n + 1)
    )


DEMO_ORGS: tuple[OrgSpec, ...] = (
    OrgSpec(
        "acme-analytics",
        "professional",
        1,
        0.55,
        "Calendar-month periods (anchor 1); steady growth; a project deleted 120 days ago and "
        "one created 60 days ago; other@example.com is a non-admin member.",
        (
            ProjectSpec("forecasting", 3.0, 0.0015, deployments=5, spikes_days_ago=(95,)),
            ProjectSpec("churn-model", 2.0, 0.001),
            ProjectSpec("image-tagging", 1.5, 0.002, deployments=4),
            ProjectSpec("legacy-scoring", 2.0, 0.0, deleted_days_ago=120),
            ProjectSpec("llm-assistant", 2.5, 0.004, created_days_ago=60, deployments=2),
            ProjectSpec("sandbox", 0.3, 0.0, deployments=1),
        ),
        extra_users=(("other@example.com", False), ("ana.lytics@example.com", True)),
    ),
    OrgSpec(
        "blue-harbor",
        "starter",
        20,
        1.6,
        "OVER BUDGET: steep growth inside the current period (20th to 20th); projected to end "
        "the period at about 160% of the starter budget.",
        (
            ProjectSpec("harbor-vision", 3.0, 0.001),
            ProjectSpec("harbor-nlp", 2.0, 0.001, spikes_days_ago=(70,)),
            ProjectSpec("harbor-batch", 1.0, 0.0),
        ),
        period_growth=0.07,
        over_budget=True,
        extra_users=(("bo.harbor@example.com", False),),
    ),
    OrgSpec(
        "cobalt-labs",
        "enterprise",
        31,
        0.45,
        "Anchor day 31 (clamps to 30/28/29 in short months); declining usage; two deleted "
        "projects; a one-day spike.",
        (
            ProjectSpec("cobalt-core", 4.0, -0.002, deployments=8, spikes_days_ago=(150,)),
            ProjectSpec("cobalt-research", 2.0, -0.001, deployments=6),
            ProjectSpec("cobalt-etl", 1.0, 0.0, deployments=2),
            ProjectSpec("cobalt-old-api", 2.0, 0.0, deleted_days_ago=300),
            ProjectSpec("cobalt-pilot", 1.0, 0.003, created_days_ago=200, deleted_days_ago=45),
        ),
        extra_users=(("co.balt@example.com", True), ("lab.tech@example.com", False)),
    ),
    OrgSpec(
        "delta-vision",
        "professional",
        15,
        0.6,
        "NEAR RESOURCE LIMIT: 24 of 25 projects and 96 of 100 deployments (professional); "
        "flat usage.",
        _many("vision", 24, 4),
        near_resource_limit=True,
    ),
    OrgSpec(
        "ember-free",
        "free",
        28,
        0.4,
        "Free subscription anchored on the 28th; small flat usage with one-day spikes.",
        (
            ProjectSpec("ember-demo", 1.0, 0.0, deployments=2, spikes_days_ago=(50, 130, 250)),
            ProjectSpec("ember-test", 0.5, 0.0, deployments=1),
        ),
    ),
    OrgSpec(
        "fjord-ml",
        "starter",
        9,
        0.5,
        "Anchor day 9; a project created 40 days ago and deleted 5 days ago (its whole history "
        "shows under deleted projects); spikes.",
        (
            ProjectSpec("fjord-train", 2.0, 0.0005, spikes_days_ago=(33, 210)),
            ProjectSpec("fjord-serve", 1.5, 0.0),
            ProjectSpec("fjord-experiment", 2.0, 0.01, created_days_ago=40, deleted_days_ago=5),
        ),
        weekend_factor=0.25,
    ),
    OrgSpec(
        "other-team",
        "enterprise",
        5,
        0.3,
        "Owned by other@example.com; the demo user is NOT a member (404 for the demo token).",
        (ProjectSpec("other-project", 1.0, 0.0),),
        member=False,
    ),
)

SCENARIO: list[dict[str, Any]] = [
    {
        "name": spec.name,
        "subscription": spec.subscription,
        "anchor_day": spec.anchor_day,
        "credit_budget": CREDIT_BUDGETS[spec.subscription],
        "resource_limits": RESOURCE_LIMITS[spec.subscription],
        "projected_ratio": spec.projected_ratio,
        "demo_user_member": spec.member,
        "over_budget": spec.over_budget,
        "near_resource_limit": spec.near_resource_limit,
        "shows": spec.shows,
    }
    for spec in DEMO_ORGS
]
"""Static description of the demo organizations (see ``scenario_document`` for live ids)."""


class _Ids:
    """Deterministic UUID4 strings."""

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def __call__(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))


def _subscription_start(today: date, anchor: int, months_back: int) -> date:
    """A date ``months_back`` or more months ago whose month has at least ``anchor`` days."""
    back = months_back
    while True:
        first = periods.add_months(date(today.year, today.month, 1), -back, 1)
        if periods.days_in_month(first.year, first.month) >= anchor:
            return first.replace(day=anchor)
        back += 1


def generate_usage(
    rng: np.random.Generator,
    day0: date,
    n_days: int,
    base: np.ndarray,
    growth: np.ndarray,
    weekend: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    today_fraction: float,
    sigma: float = 0.18,
    spike_rate: float = 1 / 120,
    chunk: int = 4096,
    micro: bool = False,
) -> np.ndarray:
    """Daily usage in credits (float64) ``[projects, n_days]``, vectorised over projects.

    ``base``: credits/day today; ``growth``: relative growth per day (level is
    ``base * exp(growth * (t - today))``); ``weekend``: Saturday/Sunday factor; ``start``/``end``:
    active day indices ``[start, end)``. The last column (today) is scaled by ``today_fraction``
    so there is no usage after ``now``. Processed in row chunks to bound peak memory; with
    ``micro=True`` each chunk is converted straight to ``int64`` micro-credits.
    """
    t = np.arange(n_days, dtype=np.float64) - (n_days - 1)
    weekday = (np.arange(n_days) + day0.weekday()) % 7
    is_weekend = weekday >= 5
    days = np.arange(n_days)
    out = np.empty((base.shape[0], n_days), dtype=np.int64 if micro else np.float64)
    for lo in range(0, base.shape[0], chunk):
        hi = min(lo + chunk, base.shape[0])
        exponent = np.clip(growth[lo:hi, None] * t[None, :], -8.0, 8.0)
        values = base[lo:hi, None] * np.exp(exponent)
        values *= np.where(is_weekend[None, :], weekend[lo:hi, None], 1.0)
        values *= rng.lognormal(0.0, sigma, size=(hi - lo, n_days))
        spikes = rng.random((hi - lo, n_days)) < spike_rate
        values[spikes] *= rng.uniform(3.0, 8.0, size=int(spikes.sum()))
        active = (days[None, :] >= start[lo:hi, None]) & (days[None, :] < end[lo:hi, None])
        values *= active
        values[:, -1] *= today_fraction
        out[lo:hi] = _to_micro(values) if micro else values
    return out


def _to_micro(values: np.ndarray) -> np.ndarray:
    return np.rint(values * MICRO).astype(np.int64)


def build_state(
    seed: int = DEFAULT_SEED,
    organizations: int | None = None,
    now: datetime | None = None,
    token: str = DEFAULT_TOKEN,
    history_months: int = DEFAULT_HISTORY_MONTHS,
) -> State:
    """Build the world: the demo organizations, or ``organizations`` member organizations
    (the demo ones first, then generated ``org-NNNNNN``), plus ``other-team``, with
    ``history_months`` months of daily usage ending today."""
    if history_months < 1:
        raise ValueError(f"history months: expected at least 1, got {history_months}")
    clock = (now or datetime.now(UTC)).astimezone(UTC)
    day0, today = data_window(clock, history_months)
    state = State(now, seed, day0, today)
    today_fraction = (clock - periods.midnight(today)).total_seconds() / 86400.0
    new_id = _Ids(seed)
    rng = np.random.default_rng(seed)

    demo_user = User(new_id(), DEMO_EMAIL, "Demo", "User", token=token)
    other_user = User(new_id(), OTHER_EMAIL, "Other", "User", token=OTHER_TOKEN)
    state.add_user(demo_user)
    state.add_user(other_user)

    n_member_demo = len([s for s in DEMO_ORGS if s.member])
    wanted_demo = n_member_demo if organizations is None else min(organizations, n_member_demo)
    member_specs = [s for s in DEMO_ORGS if s.member][:wanted_demo]
    specs = [*member_specs, *[s for s in DEMO_ORGS if not s.member]]
    for i, spec in enumerate(specs):
        _add_demo_org(
            state,
            spec,
            i,
            rng,
            new_id,
            demo_user,
            other_user,
            today_fraction,
            clock,
            history_months,
        )

    if organizations is not None and organizations > n_member_demo:
        _add_generated_orgs(
            state,
            organizations - n_member_demo,
            rng,
            new_id,
            demo_user,
            today_fraction,
            history_months,
        )
    state.scenario = SCENARIO
    return state


def _add_demo_org(
    state: State,
    spec: OrgSpec,
    index: int,
    rng: np.random.Generator,
    new_id: _Ids,
    demo_user: User,
    other_user: User,
    today_fraction: float,
    clock: datetime,
    history_months: int,
) -> None:
    today, day0, n_days = state.today, state.day0, state.n_days
    sub_start = _subscription_start(today, spec.anchor_day, history_months + 1 + index)
    n = len(spec.projects)
    weights = np.array([p.weight for p in spec.projects])
    ages = [
        max(p.created_days_ago, n_days - 1)
        if p.created_days_ago >= FROM_THE_START
        else p.created_days_ago
        for p in spec.projects
    ]
    start = np.array([max(0, n_days - 1 - age) for age in ages])
    end = np.array(
        [
            n_days if p.deleted_days_ago is None else n_days - p.deleted_days_ago
            for p in spec.projects
        ]
    )
    values = generate_usage(
        rng,
        day0,
        n_days,
        base=weights,
        growth=np.array([p.growth for p in spec.projects]),
        weekend=np.full(n, spec.weekend_factor),
        start=start,
        end=end,
        today_fraction=1.0,  # today in full for the calibration; cut to `now` below
        spike_rate=0.0,
    )
    for row, p in enumerate(spec.projects):
        for ago in p.spikes_days_ago:
            values[row, n_days - 1 - ago] *= 6.0
    period_start, period_end = periods.current_period(today, spec.anchor_day)
    ps = (period_start - day0).days
    if spec.period_growth:
        ramp = np.exp(spec.period_growth * np.arange(n_days - ps, dtype=np.float64))
        values[:, ps:] *= ramp[None, :]
    # calibrate: the linear run-rate projection of the current period's days so far, today
    # counted in full, is ratio * budget. Whole days, not the time of day: an emulator started
    # at 09:00 and one started at 17:00 the same day serve the same past (a re-run of the demo
    # changes nothing); only today's usage grows with the clock.
    days_so_far = (today - period_start).days + 1
    fraction = days_so_far / (period_end - period_start).days
    to_date = float(values[:, ps:].sum())
    if to_date > 0:
        target = spec.projected_ratio * CREDIT_BUDGETS[spec.subscription]
        values *= target * fraction / to_date
    values[:, -1] *= today_fraction  # no usage after `now`
    usage = _to_micro(values)

    created = datetime.combine(sub_start, datetime.min.time(), tzinfo=UTC) + timedelta(
        hours=9, minutes=index * 7, seconds=13
    )
    org = Organization(
        id=new_id(),
        name=spec.name,
        creation_date=created,
        subscription=spec.subscription,
        subscription_start=sub_start,
        anchor_day=spec.anchor_day,
        subscription_end=None if spec.subscription == "free" else date(today.year + 2, 1, 1),
        usage=usage,
        overage_usage=spec.subscription in ("professional", "enterprise"),
        two_factor_authentication_forced=spec.subscription == "enterprise",
    )
    for row, p in enumerate(spec.projects):
        deleted_at = None
        if p.deleted_days_ago is not None:
            deleted_at = periods.midnight(today - timedelta(days=p.deleted_days_ago)) + timedelta(
                hours=10
            )
        org.projects.append(
            Project(
                id=new_id(),
                name=p.name,
                row=row,
                created=day0 + timedelta(days=int(start[row])),
                deleted_at=deleted_at,
                deployments=p.deployments,
                deployment_versions=p.deployments + row % 3,
                pipelines=row % 2,
                pipeline_versions=row % 2 * 2,
                buckets=1,
                environments=row % 3,
            )
        )
    owner = demo_user if spec.member else other_user
    org.members[owner.id] = Membership(owner.id, True, sub_start)
    for email, admin in spec.extra_users:
        user = state.user_by_email(email)
        if user is None:
            first, _, last = email.split("@")[0].partition(".")
            user = User(new_id(), email, first.capitalize(), (last or "user").capitalize())
            state.add_user(user)
        org.members[user.id] = Membership(user.id, admin, sub_start + timedelta(days=20))
    state.add_organization(org)


def _add_generated_orgs(
    state: State,
    count: int,
    rng: np.random.Generator,
    new_id: _Ids,
    demo_user: User,
    today_fraction: float,
    history_months: int,
) -> None:
    today, day0, n_days = state.today, state.day0, state.n_days
    subs = np.array(["free", "starter", "professional", "enterprise"])
    sub_idx = rng.choice(4, size=count, p=[0.35, 0.35, 0.2, 0.1])
    rng.integers(1, 32, size=count)  # drawn to keep the random stream; anchors cycle instead
    anchors = np.arange(count) % 31 + 1  # generated org i has anchor day i % 31 + 1: 31 cover all
    n_projects = rng.integers(1, 7, size=count)
    total = int(n_projects.sum())
    owner = np.repeat(np.arange(count), n_projects)
    budget = np.array([CREDIT_BUDGETS[s] for s in subs])[sub_idx]
    org_level = budget * rng.uniform(0.05, 0.8, size=count) / 30.0 / n_projects
    base = org_level[owner] * rng.lognormal(0.0, 0.5, size=total)
    growth = rng.normal(0.0, 0.002, size=total)
    weekend = rng.uniform(0.25, 0.6, size=count)[owner]
    start = np.where(rng.random(total) < 0.7, 0, rng.integers(0, n_days - 1, size=total))
    deleted = rng.random(total) < 0.1
    end = np.where(deleted, rng.integers(start + 1, n_days + 1), n_days)
    usage = generate_usage(
        rng, day0, n_days, base, growth, weekend, start, end, today_fraction, micro=True
    )
    deployments = rng.integers(1, 7, size=total)
    extra_users = rng.integers(0, 4, size=count)
    extra_admin = rng.random(count) < 0.3
    offsets = np.concatenate([[0], np.cumsum(n_projects)])
    width = len(str(count + 6))
    for i in range(count):
        anchor = int(anchors[i])
        sub_start = _subscription_start(today, anchor, history_months + 1 + i % 12)
        sub = str(subs[sub_idx[i]])
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        org = Organization(
            id=new_id(),
            name=f"org-{i + 7:0{width}d}",
            creation_date=periods.midnight(sub_start) + timedelta(hours=8),
            subscription=sub,
            subscription_start=sub_start,
            anchor_day=anchor,
            subscription_end=None if sub == "free" else date(today.year + 1, 12, 31),
            usage=usage[lo:hi],
            overage_usage=sub in ("professional", "enterprise"),
        )
        for row in range(hi - lo):
            g = lo + row
            deleted_at = None
            if deleted[g]:
                deleted_at = periods.midnight(day0 + timedelta(days=int(end[g]))) + timedelta(
                    hours=3
                )
                if deleted_at > state.now():
                    deleted_at = state.now()
            org.projects.append(
                Project(
                    id=new_id(),
                    name=f"project-{row + 1}",
                    row=row,
                    created=day0 + timedelta(days=int(start[g])),
                    deleted_at=deleted_at,
                    deployments=int(deployments[g]),
                    deployment_versions=int(deployments[g]) + row % 2,
                    pipelines=row % 2,
                    pipeline_versions=row % 2,
                    buckets=1,
                    environments=row % 2,
                )
            )
        org.members[demo_user.id] = Membership(demo_user.id, True, sub_start)
        for k in range(int(extra_users[i])):
            user = User(new_id(), f"user{k + 1}@{org.name}.example.com", f"User{k + 1}", org.name)
            state.add_user(user)
            org.members[user.id] = Membership(user.id, bool(extra_admin[i]), sub_start)
        state.add_organization(org)


def scenario_document(state: State) -> dict[str, Any]:
    """The scenario with live ids, current names, periods and resource counts."""
    with state.lock:
        today = state.now().date()
        orgs = []
        by_name = {entry["name"]: entry for entry in state.scenario}
        for org in state.orgs.values():
            entry = by_name.get(org.name)
            if entry is None:
                continue
            start, end = periods.current_period(today, org.anchor_day)
            orgs.append(
                {
                    **entry,
                    "id": org.id,
                    "current_period": {"start": start.isoformat(), "end": end.isoformat()},
                    "resources": state.resource_counts(org),
                }
            )
        return {
            "organizations": orgs,
            "credit_budgets": CREDIT_BUDGETS,
            "resource_limits": RESOURCE_LIMITS,
            "demo_user": {"email": DEMO_EMAIL},
            "other_user": {"email": OTHER_EMAIL, "token": OTHER_TOKEN},
            "organization_count": len(state.orgs),
            "data_start": state.day0.isoformat(),
            "data_end": state.today.isoformat(),
        }
