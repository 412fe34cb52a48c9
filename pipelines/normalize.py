"""Normalization: validated API responses in, tidy pandas frames shaped like the warehouse out.

Pure functions (no I/O). All timestamps become naive UTC.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime

import pandas as pd

from pipelines.analytics.periods import CALENDAR_MONTHS, current_period, learn_anchor
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
    bucket dates tell the subscription period; the anchor is learnt by
    `periods.learn_anchor`, with the anchor learnt by an earlier run settling a clamped start).
    An organization whose answer has no buckets (no usage yet) gets `period_anchor_day` null and
    the calendar month as its period (see `unknown_anchor_names`). Organizations no longer
    visible keep their last row, with `visible` false and `last_seen_at` telling when they were
    last visible; `first_seen_at` survives renames because rows are keyed by id.
    """
    first_seen = dict(zip(previous["organization_id"], previous["first_seen_at"], strict=True))
    earlier = {
        k: int(v)
        for k, v in zip(previous["organization_id"], previous["period_anchor_day"], strict=True)
        if v is not None and not pd.isna(v)
    }
    rows = []
    for detail, period in current:
        start = end = None
        anchor = None
        if period.data_organization:
            start = utc_naive(period.data_organization[0].start_date)
            end = utc_naive(period.data_organization[-1].end_date)
            anchor = learn_anchor(start, end, earlier.get(detail.id))
        # the whole period (a fragmented answer may end early); calendar months if unknown
        first, after = current_period(
            seen_at if anchor is None else start, anchor or CALENDAR_MONTHS
        )
        start = datetime.combine(first, datetime.min.time())
        end = datetime.combine(after, datetime.min.time())
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
                "period_anchor_day": anchor,
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


def unknown_anchor_names(frame: pd.DataFrame, seen_at: datetime) -> list[str]:
    """Names of the organizations seen at ``seen_at`` whose anchor day could not be learnt."""
    if frame.empty:
        return []
    fresh = frame[(frame["last_seen_at"] == seen_at) & frame["period_anchor_day"].isna()]
    return sorted(str(n) for n in fresh["organization_name"])


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


def credit_period_frame(
    responses: Iterable[tuple[str, str, date, date, CreditUsage]], loaded_at: datetime
) -> pd.DataFrame:
    """One `credit_usage` row (interval 'month') per organization, series and subscription period.

    Each response answers a request for exactly one period ``[start, end)``. Whatever buckets the
    API cut it into (one, or fragments counted from the start date), the series' values are
    summed into one row spanning the whole period. A period answered with no buckets at all is
    stored as zero usage (organization and deleted-projects rows of 0 credits), not as missing.
    """
    rows: list[tuple[object, ...]] = []
    for org_id, org_name, start, end, usage in responses:
        first = datetime.combine(start, datetime.min.time())
        after = datetime.combine(end, datetime.min.time())
        series: list[tuple[str, str | None, str | None, list]] = [
            ("organization", None, None, usage.data_organization),
            ("deleted_projects", None, None, usage.data_deleted_projects),
        ]
        series += [("project", p.project_id, p.project_name, p.data) for p in usage.data_projects]
        for scope, project_id, project_name, points in series:
            if scope == "project" and not points:
                continue
            total = float(sum(float(point.value) for point in points))
            rows.append(
                (
                    org_id,
                    org_name,
                    "month",
                    scope,
                    project_id,
                    project_name,
                    first,
                    after,
                    total,
                    loaded_at,
                )
            )
    return pd.DataFrame(rows, columns=CREDIT_USAGE.column_names)
