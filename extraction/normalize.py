"""Normalization: validated API responses in, tidy pandas frames shaped like the warehouse out.

Pure functions (no I/O). All timestamps become naive UTC.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa

from common.periods import (
    CALENDAR_MONTHS,
    current_period,
    format_anchor_history,
    learn_anchor,
    parse_anchor_history,
)
from ubiops_api.models import (
    CreditUsage,
    OrganizationDetail,
    OrganizationItem,
    OrganizationUser,
    ResourceUsage,
    UsagePoint,
)
from warehouse.schema import (
    CREDIT_USAGE,
    ORGANIZATION_USERS,
    ORGANIZATIONS,
    RESOURCE_USAGE,
    Table,
)


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
    carried: Iterable[tuple[OrganizationItem, CreditUsage | None]] = (),
) -> pd.DataFrame:
    """This run's organizations merged with earlier ones.

    `current` pairs each organization whose details were read in this run with its
    current-period usage response (whose bucket dates tell the subscription period; the anchor
    is learnt by `periods.learn_anchor`, with the anchor learnt by an earlier run settling a
    clamped start); their `details_refreshed_at` becomes ``seen_at``. `carried` are the
    organizations the list shows whose details were not re-read (unchanged name, details younger
    than the maximum age): their stored details, anchor and `details_refreshed_at` are kept, the
    current period is computed from the stored anchor (or learnt from a usage response when one
    was read because the anchor was unknown). An organization whose answer has no buckets (no
    usage yet) gets `period_anchor_day` null and the calendar month as its period (see
    `unknown_anchor_names`). An anchor learnt different from the stored one is a new
    subscription: the stored anchor goes to `anchor_history`, ending where the new anchor's
    current period starts (see `anchor_changes`). Organizations no longer visible keep their
    last row, with `visible` false and `last_seen_at` telling when they were last visible;
    `first_seen_at` survives renames because rows are keyed by id.
    """
    stored = {str(r["organization_id"]): r for r in previous.to_dict("records")}
    earlier = {
        k: int(r["period_anchor_day"])
        for k, r in stored.items()
        if r["period_anchor_day"] is not None and not pd.isna(r["period_anchor_day"])
    }
    rows = []

    def row(
        item: OrganizationItem, period: CreditUsage | None, details: dict[str, object]
    ) -> dict[str, object]:
        start = None
        anchor = earlier.get(item.id) if period is None else None
        if period is not None and period.data_organization:
            start = utc_naive(period.data_organization[0]["start_date"])
            end = utc_naive(period.data_organization[-1]["end_date"])
            anchor = learn_anchor(start, end, earlier.get(item.id))
        # the whole period (a fragmented answer may end early); calendar months if unknown
        on = start if anchor is not None and start is not None else seen_at
        first, after = current_period(on, anchor or CALENDAR_MONTHS)
        history = parse_anchor_history(stored.get(item.id, {}).get("anchor_history"))
        before = earlier.get(item.id)
        if anchor is not None and before is not None and anchor != before:
            # a new subscription anchor: it applies from its first period's start on
            history = (*(h for h in history if h[1] < first), (before, first))
        return {
            "organization_id": item.id,
            "organization_name": item.name,
            **details,
            "period_start": datetime.combine(first, datetime.min.time()),
            "period_end": datetime.combine(after, datetime.min.time()),
            "period_anchor_day": anchor,
            "anchor_history": format_anchor_history(history),
            "first_seen_at": stored.get(item.id, {}).get("first_seen_at", seen_at),
            "last_seen_at": seen_at,
            "visible": True,
        }

    for detail, period in current:
        details = {
            "status": detail.status,
            "subscription": detail.subscription,
            "creation_date": utc_naive(detail.creation_date),
            "overage_usage": detail.overage_usage,
            "two_factor_authentication_forced": detail.two_factor_authentication_forced,
            "details_refreshed_at": seen_at,
        }
        rows.append(row(detail, period, details))
    for item, period in carried:
        before = stored[item.id]
        details = {name: before[name] for name in DETAIL_COLUMNS}
        rows.append(row(item, period, details))
    fresh = pd.DataFrame(rows, columns=ORGANIZATIONS.column_names)
    kept = previous[~previous["organization_id"].isin(fresh["organization_id"])].copy()
    kept["visible"] = False
    frames = [f for f in (kept, fresh) if not f.empty]
    if not frames:
        return fresh
    merged = pd.concat(frames, ignore_index=True)
    return merged.sort_values("organization_id", ignore_index=True)


DETAIL_COLUMNS = (
    "status",
    "subscription",
    "creation_date",
    "overage_usage",
    "two_factor_authentication_forced",
    "details_refreshed_at",
)
"""`organizations` columns read from the details endpoint (kept as stored between re-reads)."""


def details_due(
    item: OrganizationItem, stored: dict[str, object] | None, seen_at: datetime, max_age_days: int
) -> str | None:
    """Why an organization's details, members and anchor must be re-read now, or None.

    They can only have changed for a new organization, a rename (the list shows another name
    for a known id), or when older than the maximum age (a changed subscription is not visible
    in the list, so the age bounds how long a change can go unseen)."""
    if stored is None:
        return "new"
    if stored.get("organization_name") != item.name:
        return "renamed"
    refreshed = stored.get("details_refreshed_at")
    if refreshed is None or pd.isna(refreshed):
        return "never read"
    if (seen_at - pd.Timestamp(refreshed).to_pydatetime()).total_seconds() >= max_age_days * 86400:
        return f"over {max_age_days} days old"
    return None


def anchor_unknown(stored: dict[str, object] | None) -> bool:
    """True when a stored organization's anchor day could not be learnt yet (no usage)."""
    if stored is None:
        return True
    anchor = stored.get("period_anchor_day")
    return anchor is None or bool(pd.isna(anchor))


@dataclass(frozen=True)
class AnchorChange:
    """An organization whose subscription anchor day changed in this run."""

    name: str
    before: int
    after: int
    since: date


def anchor_changes(previous: pd.DataFrame, frame: pd.DataFrame) -> list[AnchorChange]:
    """The organizations whose anchor day in ``frame`` differs from a known one in
    ``previous`` (the stored rows), with the day the new anchor applies from."""
    if previous.empty or frame.empty:
        return []
    old = {
        str(r["organization_id"]): int(r["period_anchor_day"])
        for r in previous.to_dict("records")
        if not pd.isna(r["period_anchor_day"])
    }
    changes = []
    for r in frame.to_dict("records"):
        before = old.get(str(r["organization_id"]))
        anchor = r["period_anchor_day"]
        if before is None or pd.isna(anchor) or int(anchor) == before:
            continue
        history = parse_anchor_history(r.get("anchor_history"))
        since = history[-1][1] if history else pd.Timestamp(r["period_start"]).date()
        changes.append(AnchorChange(str(r["organization_name"]), before, int(anchor), since))
    return sorted(changes, key=lambda c: c.name)


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


def _series(usage: CreditUsage) -> list[tuple[str, str | None, str | None, list[UsagePoint]]]:
    """(scope, project id, project name, points) of every series of a usage answer."""
    series: list[tuple[str, str | None, str | None, list[UsagePoint]]] = [
        ("organization", None, None, usage.data_organization),
        ("deleted_projects", None, None, usage.data_deleted_projects),
    ]
    series += [
        ("project", p["project_id"], p["project_name"], p["data"]) for p in usage.data_projects
    ]
    return series


_TEXT = pd.Series(["text"]).dtype
"""The dtype pandas gives Python strings (its string dtype on pandas 3)."""
_EPOCH = datetime(1970, 1, 1)
_MICROSECOND = timedelta(microseconds=1)


def _text_column(values: list[str | None], codes: np.ndarray) -> pd.Series:
    """`values[code]` for every code, as pandas makes a column of Python strings (None: null),
    taken in Arrow (converting millions of repeated Python strings one by one costs ~5x more)."""
    taken = pa.array(values, type=pa.string()).take(pa.array(codes, type=pa.int64()))
    return pd.Series(taken, dtype=_TEXT)


def _time_column(values: list[datetime]) -> np.ndarray:
    """Naive-UTC `datetime64[us]` of datetimes, each distinct value converted once (every
    organization's answer has the same days; pandas converts datetime objects one by one at
    ~3 us each)."""
    micros = {v: (utc_naive(v) - _EPOCH) // _MICROSECOND for v in set(values)}  # type: ignore[operator]
    return np.array([micros[v] for v in values], dtype=np.int64).view("datetime64[us]")


def _no_rows(t: Table) -> pd.DataFrame:
    """The table's columns with no rows, typed as the warehouse stores them (an untyped empty
    frame has object columns: `.dt` on its dates fails, e.g. in the `complete_days` check)."""
    return t.arrow_schema().empty_table().to_pandas()


def credit_usage_frame(
    responses: Iterable[tuple[str, str, CreditUsage]], interval: str, loaded_at: datetime
) -> pd.DataFrame:
    """One row per organization, scope, project and bucket (see the `credit_usage` table).

    Built column by column from runs of equal values (a 12-month backfill of 1,000
    organizations is ~3 million rows: a tuple per row, transposed by pandas, cost more than
    validating the answers)."""
    organizations: dict[tuple[str, str], int] = {}
    projects: dict[tuple[str | None, str | None], int] = {(None, None): 0}
    scopes = {"organization": 0, "deleted_projects": 1, "project": 2}
    runs: list[tuple[int, int, int, int]] = []  # (organization, scope, project, points)
    starts: list[datetime] = []
    ends: list[datetime] = []
    credits: list[float] = []
    for org_id, org_name, usage in responses:
        org = organizations.setdefault((org_id, org_name), len(organizations))
        for scope, project_id, project_name, points in _series(usage):
            if not points:
                continue
            project = projects.setdefault((project_id, project_name), len(projects))
            runs.append((org, scopes[scope], project, len(points)))
            starts += [point["start_date"] for point in points]
            ends += [point["end_date"] for point in points]
            credits += [point["value"] for point in points]
    if not runs:
        return _no_rows(CREDIT_USAGE)
    org_codes, scope_codes, project_codes, lengths = np.array(runs, dtype=np.int64).T
    by_org, by_project = np.repeat(org_codes, lengths), np.repeat(project_codes, lengths)
    rows = len(starts)
    loaded = [loaded_at]
    return pd.DataFrame(
        {
            "organization_id": _text_column([o for o, _ in organizations], by_org),
            "organization_name": _text_column([n for _, n in organizations], by_org),
            "interval": _text_column([interval], np.zeros(rows, dtype=np.int64)),
            "scope": _text_column(list(scopes), np.repeat(scope_codes, lengths)),
            "project_id": _text_column([i for i, _ in projects], by_project),
            "project_name": _text_column([n for _, n in projects], by_project),
            "start_date": _time_column(starts),
            "end_date": _time_column(ends),
            "credits": np.array(credits, dtype=np.float64),
            "loaded_at": _time_column(loaded)[np.zeros(rows, dtype=np.int64)],
        },
        columns=CREDIT_USAGE.column_names,
    )


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
        for scope, project_id, project_name, points in _series(usage):
            if scope == "project" and not points:
                continue
            total = float(sum(float(point["value"]) for point in points))
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
    if not rows:
        return _no_rows(CREDIT_USAGE)
    return pd.DataFrame(rows, columns=CREDIT_USAGE.column_names)


def credit_period_from_days(
    periods: Iterable[tuple[str, str, date, date]], daily: pd.DataFrame, loaded_at: datetime
) -> pd.DataFrame:
    """`credit_usage` period rows (interval 'month') summed from stored daily rows.

    For each ``(organization id, name, start, end)`` whose days are all loaded, the same rows
    `credit_period_frame` builds from an API answer: the organization total and the deleted
    projects always (0 when nothing was used), each project that has daily rows in the period.
    Exact: a period's credits are the sum of its days (the `period_reconciliation` check holds
    the API to that wherever a period is requested)."""
    wanted = pd.DataFrame(
        [
            (org_id, org_name, pd.Timestamp(start), pd.Timestamp(end))
            for org_id, org_name, start, end in periods
        ],
        columns=["organization_id", "organization_name", "start_date", "end_date"],
    )
    if wanted.empty:
        return _no_rows(CREDIT_USAGE)
    # the days are matched to their periods by integer codes (organization, scope, project):
    # joining, sorting and grouping hundreds of thousands of string keys cost ~3x more
    in_range = (daily["start_date"] >= wanted["start_date"].min()) & (
        daily["start_date"] < wanted["end_date"].max()
    )
    days = daily.loc[in_range, ["organization_id", "scope", "project_id", "project_name"]]
    orgs = pd.Index(wanted["organization_id"].unique())
    day_org, day_orgs = pd.factorize(days["organization_id"])  # Arrow's, then 1,000 lookups
    org_code = orgs.get_indexer(day_orgs)[day_org] if len(day_orgs) else day_org
    wanted_days = org_code >= 0
    scope_code, scopes = pd.factorize(days["scope"])
    project_code, project_ids = pd.factorize(days["project_id"])  # no project: -1
    coded = pd.DataFrame(
        {
            "org": org_code,
            "scope": scope_code,
            "project": project_code,
            "day": daily.loc[in_range, "start_date"].to_numpy(),
            "credits": daily.loc[in_range, "credits"].to_numpy(),
            "project_name": days["project_name"].reset_index(drop=True),
        }
    )[wanted_days]
    periods_of = pd.DataFrame(
        {
            "org": orgs.get_indexer(wanted["organization_id"]),
            "start_date": wanted["start_date"],
            "end_date": wanted["end_date"],
        }
    )
    joined = coded.merge(periods_of, on="org")
    joined = joined[(joined["day"] >= joined["start_date"]) & (joined["day"] < joined["end_date"])]
    coded_sums = (
        joined.sort_values("day")
        .groupby(["org", "start_date", "scope", "project"], sort=False)
        .agg(credits=("credits", "sum"), project_name=("project_name", "last"))
        .reset_index()
    )
    project = coded_sums["project"].to_numpy()
    # -1 (no project) takes "": also when no day in range has a project at all
    known = project_ids.astype(object).to_numpy()
    project_text = (
        np.where(project >= 0, known[project.clip(0)], "")
        if len(known)
        else np.full(len(project), "", dtype=object)
    )
    keys = ["organization_id", "start_date", "scope", "project_id"]
    sums = pd.DataFrame(
        {
            "organization_id": orgs.take(coded_sums["org"].to_numpy()),
            "start_date": coded_sums["start_date"],
            "scope": scopes.take(coded_sums["scope"].to_numpy()),
            "project_id": pd.Series(
                project_text,
                dtype=_TEXT if len(coded_sums) else object,  # as pandas made the key column
            ),
            "credits": coded_sums["credits"],
            "project_name": coded_sums["project_name"],
        }
    )
    # every period has an organization and a deleted-projects row, even with no usage
    base = wanted[["organization_id", "start_date"]]
    always = pd.concat(
        [base.assign(scope="organization"), base.assign(scope="deleted_projects")],
        ignore_index=True,
    ).assign(project_id="")
    merged = always.merge(sums, on=keys, how="left")
    projects = sums[sums["scope"] == "project"]
    rows = pd.concat([merged, projects], ignore_index=True)
    rows["credits"] = rows["credits"].fillna(0.0).astype(float)
    rows = rows.merge(wanted, on=["organization_id", "start_date"])
    out = pd.DataFrame(
        {
            "organization_id": rows["organization_id"],
            "organization_name": rows["organization_name"],
            "interval": "month",
            "scope": rows["scope"],
            "project_id": rows["project_id"].where(rows["scope"] == "project", None),
            "project_name": rows["project_name"].where(rows["scope"] == "project", None),
            "start_date": rows["start_date"],
            "end_date": rows["end_date"],
            "credits": rows["credits"],
            "loaded_at": loaded_at,
        },
        columns=CREDIT_USAGE.column_names,
    )
    return out.sort_values(
        ["organization_id", "start_date", "scope", "project_id"],
        ignore_index=True,
        na_position="first",
    )
