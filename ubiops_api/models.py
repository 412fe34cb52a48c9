"""Typed shapes of the UbiOps Organizations API responses, validated with pydantic.

Unknown fields are ignored (the API may add some); a missing required field is an error. Credit
usage's points and project series are validated typed dicts, not model instances: a 12-month
backfill of 1,000 organizations validates ~3 million points, and building a model object for each
costs twice the rest of validation (same fields, same checks, same error locations). Credit
usage accepts both spellings of the deleted-projects key (`data_deleted_projects`, which the SDK
and the real server use, and `data_projects_deleted` from the reference's prose) and fails loudly
when neither is present.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from typing_extensions import TypedDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class OrganizationItem(_Model):
    """An element of `GET /organizations` (and the body of a create)."""

    id: str
    name: str = Field(min_length=1)
    creation_date: datetime | None = None
    status: str | None = None
    two_factor_authentication_forced: bool | None = None


class OrganizationDetail(OrganizationItem):
    """`GET /organizations/{name}`."""

    subscription: str
    overage_usage: bool | None = None


class OrganizationUser(_Model):
    """An element of `GET /organizations/{name}/users`."""

    id: str
    email: str
    name: str | None = None
    surname: str | None = None
    status: str | None = None
    admin: bool | None = None
    join_date: datetime | None = None


class ResourceUsage(_Model):
    """`GET /organizations/{name}/resources`."""

    projects: int
    users: int
    deployments: int
    deployment_versions: int
    pipelines: int
    pipeline_versions: int
    buckets: int
    environments: int


class UsagePoint(TypedDict):
    """One usage bucket (unknown keys are dropped)."""

    start_date: datetime
    end_date: datetime
    value: float


class ProjectUsage(TypedDict):
    """One project's series in a usage response (unknown keys are dropped)."""

    project_id: str
    project_name: str
    data: list[UsagePoint]


class CreditUsage(_Model):
    """`GET /organizations/{name}/usage`."""

    interval: str
    data_organization: list[UsagePoint]
    data_projects: list[ProjectUsage]
    # an alias, not a before-validator: that would make pydantic validate JSON in Python
    # (2.5x slower per response, the bulk of a backfill's client time)
    data_deleted_projects: list[UsagePoint] = Field(
        validation_alias=AliasChoices("data_deleted_projects", "data_projects_deleted")
    )
