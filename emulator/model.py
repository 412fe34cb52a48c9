"""Plain data records of the emulated world: users, memberships, projects, organizations.

Owns only the shapes of the in-memory records; the rules that change them live in
``emulator.state`` and the data set that fills them in ``emulator.demo``.
Credit usage is stored per organization as an ``int64`` numpy array of *micro-credits* with one
row per project (live or deleted) and one column per UTC day, so sums are exact integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import numpy as np
import numpy.typing as npt

MICRO: int = 1_000_000
"""Micro-credits per credit: usage arrays hold integers, the API shows ``value / MICRO``."""

UsageArray = npt.NDArray[np.int64]


@dataclass
class User:
    """A platform user; ``token`` is its API token (``None``: cannot call the API)."""

    id: str
    email: str
    name: str
    surname: str
    token: str | None = None
    status: str = "active"


@dataclass
class Membership:
    """A user's membership of one organization."""

    user_id: str
    admin: bool
    join_date: date


@dataclass
class Project:
    """A project; ``row`` indexes its organization's usage array."""

    id: str
    name: str
    row: int
    created: date
    deleted_at: datetime | None = None
    deployments: int = 0
    deployment_versions: int = 0
    pipelines: int = 0
    pipeline_versions: int = 0
    buckets: int = 0
    environments: int = 0

    @property
    def deleted(self) -> bool:
        """Whether the project has been deleted (its usage then shows as deleted projects')."""
        return self.deleted_at is not None


@dataclass
class Organization:
    """An organization with its members, projects and daily usage."""

    id: str
    name: str
    creation_date: datetime
    subscription: str
    subscription_start: date
    anchor_day: int
    usage: UsageArray
    subscription_end: date | None = None
    status: str = "active"
    two_factor_authentication_forced: bool = False
    overage_usage: bool = False
    members: dict[str, Membership] = field(default_factory=dict)
    projects: list[Project] = field(default_factory=list)

    def admins(self) -> list[str]:
        """Ids of the organization's admins."""
        return [m.user_id for m in self.members.values() if m.admin]

    def live_projects(self) -> list[Project]:
        """Projects not deleted."""
        return [p for p in self.projects if not p.deleted]
