"""Normalization: validated API responses in, tidy pandas frames shaped like the warehouse out.

Pure functions (no I/O). All timestamps become naive UTC.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pandas as pd

from pipelines.analytics.periods import anchor_from_period
from pipelines.api_models import (
    CreditUsage,
    OrganizationDetail,
    OrganizationUser,
    ResourceUsage,
)
from warehouse.schema import CREDIT_USAGE, ORGANIZATION_USERS, ORGANIZATIONS, RESOURCE_USAGE


def utc_naive(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def organizations_frame(
    current: Iterable[tuple[OrganizationDetail, CreditUsage]],
    previous: pd.DataFrame,
    seen_at: datetime,
) -> pd.DataFrame:
    """This run's organizations merged with earlier ones.

    `current` pairs each organization's details with its current-period usage response (whose
    bucket dates tell the subscription period). Organizations no longer visible keep their last
    row, with `visible` false and `last_seen_at` telling when they were last visible;
    `first_seen_at` survives renames because rows are keyed by id.
    """
    first_seen = dict(zip(previous["organization_id"], previous["first_seen_at"], strict=True))
    rows = []
    for detail, period in current:
        start = end = None
        if period.data_organization:
            start = utc_naive(period.data_organization[0].start_date)
            end = utc_naive(period.data_organization[-1].end_date)
        rows.append(
            {
                "organization_id": detail.id,
                "organization_name": detail.name,
                "status": detail.status,
                "subscription": detail.subscription,
                "creation_date": utc_naive(detail.creation_date),
                "overage_usage": detail.overage_usage,
                "two_factor_authentication_forced": detail.two_factor_authentication_forced,
                "period_start": start,
                "period_end": end,
                "period_anchor_day": anchor_from_period(start, end) if start and end else None,
                "first_seen_at": first_seen.get(detail.id, seen_at),
                "last_seen_at": seen_at,
                "visible": True,
            }
        )
    fresh = pd.DataFrame(rows, columns=ORGANIZATIONS.column_names)
    kept = previous[~previous["organization_id"].isin(fresh["organization_id"])].copy()
    kept["visible"] = False
    frames = [f for f in (kept, fresh) if not f.empty]
    if not frames:
        return fresh
    merged = pd.concat(frames, ignore_index=True)
    return merged.sort_values("organization_id", ignore_index=True)


def users_frame(
    users_by_org: Iterable[tuple[str, list[OrganizationUser]]], loaded_at: datetime
) -> pd.DataFrame:
    rows = [
        {
            "organization_id": org_id,
            "user_id": user.id,
            "email": user.email,
            "name": user.name,
            "surname": user.surname,
            "status": user.status,
            "admin": user.admin,
            "join_date": utc_naive(user.join_date),
            "loaded_at": loaded_at,
        }
        for org_id, users in users_by_org
        for user in users
    ]
    return pd.DataFrame(rows, columns=ORGANIZATION_USERS.column_names)


def resource_usage_frame(
    usage_by_org: Iterable[tuple[str, ResourceUsage]], observed_at: datetime
) -> pd.DataFrame:
    rows = [
        {"organization_id": org_id, "observed_at": observed_at, **usage.model_dump()}
        for org_id, usage in usage_by_org
    ]
    return pd.DataFrame(rows, columns=RESOURCE_USAGE.column_names)


def credit_usage_frame(
    responses: Iterable[tuple[str, str, CreditUsage]], interval: str, loaded_at: datetime
) -> pd.DataFrame:
    """One row per organization, scope, project and bucket (see the `credit_usage` table)."""
    rows: list[tuple[object, ...]] = []
    for org_id, org_name, usage in responses:
        series: list[tuple[str, str | None, str | None, list]] = [
            ("organization", None, None, usage.data_organization),
            ("deleted_projects", None, None, usage.data_deleted_projects),
        ]
        series += [("project", p.project_id, p.project_name, p.data) for p in usage.data_projects]
        for scope, project_id, project_name, points in series:
            for point in points:
                rows.append(
                    (
                        org_id,
                        org_name,
                        interval,
                        scope,
                        project_id,
                        project_name,
                        utc_naive(point.start_date),
                        utc_naive(point.end_date),
                        float(point.value),
                        loaded_at,
                    )
                )
    return pd.DataFrame(rows, columns=CREDIT_USAGE.column_names)
