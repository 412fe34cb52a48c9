"""The emulator's in-memory world and every API rule that reads or changes it.

``State`` holds users, organizations, projects and daily usage (see ``emulator.model``) and
implements the Organizations API semantics independent of HTTP: membership checks, name rules,
admin rules, subscription rules, usage bucketing, resource counts, and the ground-truth helpers
(``totals``, ``rename_organization``, ``delete_project``, ``add_usage_today``) that tests and the
admin endpoints use. Violations raise ``ApiError(status, message)``; the HTTP layer turns that
into ``{"error": message}``.

Visibility rule: an organization the caller is not a member of answers 404, exactly like an
unknown one (no existence leak). Admin-only operations by a non-admin member answer 403.
"""

from __future__ import annotations

import random
import re
import threading
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from emulator import periods
from emulator.model import MICRO, Membership, Organization, Project, User

NAME_RE = re.compile(r"^[a-z][a-z0-9-]*$")
NAME_MAX = 64
SUBSCRIPTIONS: tuple[str, ...] = ("free", "starter", "professional", "premium", "enterprise")
"""Subscription names the emulator accepts on create/update."""


class ApiError(Exception):
    """An API rule violation: HTTP ``status`` with an ``{"error": message}`` body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _credits(micro: int | np.integer) -> float:
    return int(micro) / MICRO


class State:
    """The whole emulated world. Thread-safe: every public method takes ``lock``."""

    def __init__(self, now: datetime | None, seed: int, day0: date, today: date) -> None:
        self._fixed_now = now
        self.seed = seed
        self.day0 = day0
        self.today = today
        self.n_days = (today - day0).days + 1
        self.lock = threading.RLock()
        self.users: dict[str, User] = {}
        self.tokens: dict[str, str] = {}
        self.orgs: dict[str, Organization] = {}
        self.names: dict[str, str] = {}
        self.scenario: list[dict[str, Any]] = []
        self._rng = random.Random(seed * 7919 + 1)

    # ------------------------------------------------------------------ basics
    def now(self) -> datetime:
        """The emulator's clock: the injected ``now`` or real UTC time."""
        return self._fixed_now if self._fixed_now is not None else datetime.now(UTC)

    def new_id(self) -> str:
        """A deterministic (per seed and call order) UUID4 string."""
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def add_user(self, user: User) -> None:
        """Register a platform user (and its token)."""
        with self.lock:
            self.users[user.id] = user
            if user.token:
                self.tokens[user.token] = user.id

    def add_organization(self, org: Organization) -> None:
        """Register an organization (name must be free)."""
        with self.lock:
            if org.name in self.names:
                raise ValueError(f"duplicate organization name {org.name}")
            self.orgs[org.id] = org
            self.names[org.name] = org.id

    def user_for_token(self, token: str) -> User | None:
        """The user owning ``token``, if any."""
        with self.lock:
            user_id = self.tokens.get(token)
            return self.users.get(user_id) if user_id else None

    def user_by_email(self, email: str) -> User | None:
        """A platform user by e-mail (case-insensitive)."""
        lowered = email.lower()
        with self.lock:
            for user in self.users.values():
                if user.email.lower() == lowered:
                    return user
        return None

    def org_by_name(self, name: str) -> Organization:
        """Any organization by current name (no membership check; 404 when unknown)."""
        with self.lock:
            org_id = self.names.get(name)
            if org_id is None:
                raise ApiError(404, f"Organization '{name}' not found")
            return self.orgs[org_id]

    def visible_org(self, user: User, name: str) -> Organization:
        """An organization the caller is a member of; 404 otherwise."""
        with self.lock:
            org_id = self.names.get(name)
            org = self.orgs.get(org_id) if org_id else None
            if org is None or user.id not in org.members:
                raise ApiError(404, f"Organization '{name}' not found")
            return org

    def admin_org(self, user: User, name: str) -> Organization:
        """An organization the caller administers; 404 if not a member, 403 if not admin."""
        org = self.visible_org(user, name)
        if not org.members[user.id].admin:
            raise ApiError(403, "You do not have permission to perform this action.")
        return org

    # ------------------------------------------------------------ organizations
    def list_organizations(self, user: User) -> list[Organization]:
        """Organizations the caller is a member of, by name."""
        with self.lock:
            orgs = [o for o in self.orgs.values() if user.id in o.members]
        return sorted(orgs, key=lambda o: o.name)

    def _check_name(self, name: Any, exclude: str | None = None) -> str:
        if not isinstance(name, str) or not name:
            raise ApiError(400, "Organization name is required and must be a string.")
        if len(name) > NAME_MAX:
            raise ApiError(400, f"Organization name must be at most {NAME_MAX} characters.")
        if not NAME_RE.match(name):
            raise ApiError(
                400,
                "Organization name can only consist of lowercase letters, numbers and dashes, "
                "and must start with a lowercase letter.",
            )
        existing = self.names.get(name)
        if existing is not None and existing != exclude:
            raise ApiError(400, f"An organization with name '{name}' already exists.")
        return name

    @staticmethod
    def _check_subscription(value: Any) -> str:
        if not isinstance(value, str) or value not in SUBSCRIPTIONS:
            raise ApiError(400, f"Subscription '{value}' does not exist.")
        return value

    @staticmethod
    def _parse_body_date(value: Any, field_name: str) -> date | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise ApiError(400, f"Invalid {field_name}: the required format is YYYY-MM-DD.")
        try:
            return date.fromisoformat(value.strip()[:10])
        except ValueError:
            raise ApiError(
                400, f"Invalid {field_name}: the required format is YYYY-MM-DD."
            ) from None

    def create_organization(self, user: User, body: dict[str, Any]) -> Organization:
        """Create an organization; the caller becomes its admin."""
        with self.lock:
            name = self._check_name(body.get("name"))
            if body.get("subscription") is None:
                raise ApiError(400, "Subscription is required.")
            subscription = self._check_subscription(body.get("subscription"))
            end = self._parse_body_date(body.get("subscription_end_date"), "subscription_end_date")
            self._check_subscription_end(subscription, end)
            two_fa = body.get("two_factor_authentication_forced", False)
            if not isinstance(two_fa, bool):
                raise ApiError(400, "two_factor_authentication_forced must be a boolean.")
            now = self.now()
            org = Organization(
                id=self.new_id(),
                name=name,
                creation_date=now,
                subscription=subscription,
                subscription_start=now.date(),
                anchor_day=now.date().day,
                subscription_end=end,
                usage=np.zeros((0, self.n_days), dtype=np.int64),
                two_factor_authentication_forced=two_fa,
                overage_usage=subscription not in ("free",),
            )
            org.members[user.id] = Membership(user.id, True, now.date())
            self.add_organization(org)
            return org

    @staticmethod
    def _check_subscription_end(subscription: str, end: date | None) -> None:
        if subscription == "free" and end is not None:
            raise ApiError(400, "A 'free' subscription cannot have a custom end date.")
        if subscription != "free" and end is None:
            raise ApiError(
                400, f"An end date must be provided for the '{subscription}' subscription."
            )

    def update_organization(self, user: User, name: str, body: dict[str, Any]) -> Organization:
        """PATCH an organization (admin only): rename, subscription, dates, 2FA flag."""
        with self.lock:
            org = self.admin_org(user, name)
            new_name = org.name
            if "name" in body:
                new_name = self._check_name(body["name"], exclude=org.id)
            subscription = org.subscription
            end = org.subscription_end
            start = None
            if "subscription_start_date" in body:
                start = self._parse_body_date(
                    body["subscription_start_date"], "subscription_start_date"
                )
            if "subscription_end_date" in body:
                end = self._parse_body_date(body["subscription_end_date"], "subscription_end_date")
            if body.get("subscription") is not None:
                subscription = self._check_subscription(body["subscription"])
                if subscription != org.subscription and start is None:
                    raise ApiError(
                        400, "A start date must be provided when changing the subscription."
                    )
            if subscription != org.subscription or "subscription_end_date" in body:
                self._check_subscription_end(subscription, end)
            if start is not None and end is not None and end <= start:
                raise ApiError(400, "The subscription end date must be after its start date.")
            two_fa = body.get(
                "two_factor_authentication_forced", org.two_factor_authentication_forced
            )
            if not isinstance(two_fa, bool):
                raise ApiError(400, "two_factor_authentication_forced must be a boolean.")
            # all checks passed: apply
            if new_name != org.name:
                del self.names[org.name]
                org.name = new_name
                self.names[new_name] = org.id
            org.subscription = subscription
            org.subscription_end = end
            if start is not None:
                org.subscription_start = start
                org.anchor_day = start.day
            org.two_factor_authentication_forced = two_fa
            return org

    def resource_usage(self, user: User, name: str) -> dict[str, int]:
        """Current resource counts of an organization (live projects only)."""
        with self.lock:
            org = self.visible_org(user, name)
            return self.resource_counts(org)

    @staticmethod
    def resource_counts(org: Organization) -> dict[str, int]:
        """Resource counts of ``org`` (no permission check)."""
        live = org.live_projects()
        return {
            "projects": len(live),
            "users": len(org.members),
            "deployments": sum(p.deployments for p in live),
            "deployment_versions": sum(p.deployment_versions for p in live),
            "pipelines": sum(p.pipelines for p in live),
            "pipeline_versions": sum(p.pipeline_versions for p in live),
            "buckets": sum(p.buckets for p in live),
            "environments": sum(p.environments for p in live),
        }

    # ------------------------------------------------------------------- usage
    def usage(
        self,
        user: User,
        name: str,
        start_date: str | None,
        end_date: str | None,
        interval: str | None,
        deleted_key: str = "data_deleted_projects",
    ) -> dict[str, Any]:
        """Credit usage of an organization in the API's response shape.

        Without dates: the current subscription period. Both dates or neither (400 otherwise).
        """
        interval = "month" if interval is None or interval == "" else interval
        if interval not in periods.INTERVALS:
            raise ApiError(400, f"Invalid interval '{interval}': it can be 'day' or 'month'.")
        if (start_date is None) != (end_date is None):
            raise ApiError(400, "Provide both start_date and end_date, or neither.")
        try:
            start = periods.parse_query_date(start_date) if start_date is not None else None
            end = periods.parse_query_date(end_date) if end_date is not None else None
        except ValueError:
            raise ApiError(400, "Invalid date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ.") from None
        with self.lock:
            org = self.visible_org(user, name)
            today = self.now().date()
            anchor = None
            if start is None or end is None:
                # the current subscription period: one month bucket from start to end
                start, end = periods.current_period(today, org.anchor_day)
                anchor = org.anchor_day
            if start >= end:
                raise ApiError(400, "start_date must be before end_date.")
            return self.usage_response(org, start, end, interval, today, deleted_key, anchor)

    def _bucket_sums(self, org: Organization, spans: list[tuple[date, date]]) -> np.ndarray:
        """Micro-credit sums per project row and bucket: shape ``[rows, len(spans)]``."""
        rows = org.usage.shape[0]
        if not spans:
            return np.zeros((rows, 0), dtype=np.int64)
        idx = np.array(
            [[(s - self.day0).days, (e - self.day0).days] for s, e in spans], dtype=np.int64
        )
        idx = np.clip(idx, 0, self.n_days)
        cum = np.zeros((rows, self.n_days + 1), dtype=np.int64)
        np.cumsum(org.usage, axis=1, out=cum[:, 1:])
        return cum[:, idx[:, 1]] - cum[:, idx[:, 0]]

    def usage_response(
        self,
        org: Organization,
        start: date,
        end: date,
        interval: str,
        today: date,
        deleted_key: str = "data_deleted_projects",
        anchor_day: int | None = None,
    ) -> dict[str, Any]:
        """Build the usage body for ``[start, end)`` (no permission check); month buckets step
        on ``anchor_day`` (default: the start's day)."""
        spans = periods.buckets(start, end, interval, today, anchor_day)
        sums = self._bucket_sums(org, spans)
        labels = [(periods.format_day(s), periods.format_day(e)) for s, e in spans]
        deleted_rows = [p.row for p in org.projects if p.deleted]
        deleted = (
            sums[deleted_rows].sum(axis=0) if deleted_rows else np.zeros(len(spans), dtype=np.int64)
        )
        total = sums.sum(axis=0) if sums.shape[0] else np.zeros(len(spans), dtype=np.int64)

        def points(series: np.ndarray) -> list[dict[str, Any]]:
            return [
                {"start_date": s, "end_date": e, "value": _credits(v)}
                for (s, e), v in zip(labels, series.tolist(), strict=True)
            ]

        projects = [
            {"project_id": p.id, "project_name": p.name, "data": points(sums[p.row])}
            for p in org.projects
            if not p.deleted and p.created < end
        ]
        return {
            "interval": interval,
            "data_organization": points(total),
            "data_projects": projects,
            deleted_key: points(deleted),
        }

    # ------------------------------------------------------------------- users
    def list_users(self, user: User, name: str) -> list[tuple[User, Membership]]:
        """Members of an organization (any member may list)."""
        with self.lock:
            org = self.visible_org(user, name)
            return [(self.users[m.user_id], m) for m in org.members.values()]

    def _member(self, org: Organization, user_id: str) -> Membership:
        member = org.members.get(user_id)
        if member is None:
            raise ApiError(404, f"User '{user_id}' not found in organization '{org.name}'")
        return member

    def get_user(self, user: User, name: str, user_id: str) -> tuple[User, Membership]:
        """One member (admin only)."""
        with self.lock:
            org = self.admin_org(user, name)
            member = self._member(org, user_id)
            return self.users[user_id], member

    def create_user(self, user: User, name: str, body: dict[str, Any]) -> tuple[User, Membership]:
        """Add a user by e-mail (admin only); unknown e-mails become new platform users."""
        with self.lock:
            org = self.admin_org(user, name)
            email = body.get("email")
            if not isinstance(email, str) or not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", email):
                raise ApiError(400, "A valid email is required.")
            admin = body.get("admin", False)
            if not isinstance(admin, bool):
                raise ApiError(400, "admin must be a boolean.")
            target = self.user_by_email(email)
            if target is None:
                local = email.split("@", 1)[0]
                first, _, last = local.partition(".")
                target = User(
                    id=self.new_id(),
                    email=email,
                    name=first.capitalize() or "user",
                    surname=last.capitalize() or "name",
                )
                self.add_user(target)
            elif target.id in org.members:
                raise ApiError(400, f"User '{email}' is already a member of this organization.")
            member = Membership(target.id, admin, self.now().date())
            org.members[target.id] = member
            return target, member

    def update_user(
        self, user: User, name: str, user_id: str, body: dict[str, Any]
    ) -> tuple[User, Membership]:
        """Change a member's admin flag (admin only); the last admin cannot be demoted."""
        with self.lock:
            org = self.admin_org(user, name)
            member = self._member(org, user_id)
            admin = body.get("admin")
            if not isinstance(admin, bool):
                raise ApiError(400, "admin is required and must be a boolean.")
            if member.admin and not admin and org.admins() == [user_id]:
                raise ApiError(
                    400, "It is not possible to demote the last admin of an organization."
                )
            member.admin = admin
            return self.users[user_id], member

    def delete_user(self, user: User, name: str, user_id: str) -> None:
        """Remove a member (admin only); the last admin cannot be removed."""
        with self.lock:
            org = self.admin_org(user, name)
            member = self._member(org, user_id)
            if member.admin and org.admins() == [user_id]:
                raise ApiError(
                    400, "It is not possible to delete the last admin of an organization."
                )
            del org.members[user_id]

    # ------------------------------------------------------- ground truth / admin
    def rename_organization(self, name: str, new_name: str) -> Organization:
        """Rename without permission checks (the id stays)."""
        with self.lock:
            org = self.org_by_name(name)
            self._check_name(new_name, exclude=org.id)
            del self.names[org.name]
            org.name = new_name
            self.names[new_name] = org.id
            return org

    def _project(self, org: Organization, project_id: str) -> Project:
        for project in org.projects:
            if project.id == project_id or project.name == project_id:
                return project
        raise ApiError(404, f"Project '{project_id}' not found in organization '{org.name}'")

    def delete_project(self, name: str, project_id: str) -> Project:
        """Delete a project now: from then on all its usage shows as deleted projects'."""
        with self.lock:
            org = self.org_by_name(name)
            project = self._project(org, project_id)
            if project.deleted:
                raise ApiError(400, f"Project '{project_id}' is already deleted.")
            project.deleted_at = self.now()
            return project

    def add_usage_today(self, name: str, credits: float, project_id: str | None = None) -> Project:
        """Add ``credits`` to today's usage of a project (default: the first live project)."""
        return self.add_usage(name, self.now().date(), credits, project_id)

    def add_usage(
        self, name: str, day: date, credits: float, project_id: str | None = None
    ) -> Project:
        """Add ``credits`` to a day's usage of a project (default: the first live project): a
        late correction of a past day, as the real API restates usage."""
        with self.lock:
            org = self.org_by_name(name)
            if project_id is not None:
                project = self._project(org, project_id)
                if project.deleted:
                    raise ApiError(400, f"Project '{project_id}' is deleted.")
            else:
                live = org.live_projects()
                if not live:
                    raise ApiError(400, f"Organization '{name}' has no live project.")
                project = live[0]
            index = (day - self.day0).days
            if not 0 <= index < self.n_days or day > self.now().date():
                raise ApiError(400, f"{day} is outside the emulator's data range.")
            org.usage[project.row, index] += round(credits * MICRO)
            return project

    def totals(self, name: str, start: date, end: date) -> dict[str, Any]:
        """Ground truth for ``[start, end)``: organization, per live project, deleted, days."""
        if start >= end:
            raise ApiError(400, "start must be before end.")
        with self.lock:
            org = self.org_by_name(name)
            sums = self._bucket_sums(org, [(start, end)])[:, 0]
            projects = {p.id: _credits(sums[p.row]) for p in org.projects if not p.deleted}
            deleted = sum(int(sums[p.row]) for p in org.projects if p.deleted)
            return {
                "organization": org.name,
                "organization_id": org.id,
                "organization_total": _credits(int(sums.sum())),
                "projects": projects,
                "deleted_projects": _credits(deleted),
                "days": (end - start).days,
            }


DEFAULT_HISTORY_MONTHS = 15
"""Months of daily usage the data set holds, ending today."""


def data_window(now: datetime, months: int = DEFAULT_HISTORY_MONTHS) -> tuple[date, date]:
    """First and last day of the data set ending today (relative to ``now``)."""
    today = now.astimezone(UTC).date()
    return periods.add_months(today, -months) - timedelta(days=1), today
