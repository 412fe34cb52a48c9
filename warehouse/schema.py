"""The warehouse's data contract: every table, its columns, their types and descriptions.

This module is the single source of truth for table shapes. The Parquet writer coerces frames to
these Arrow schemas, the DuckDB publisher creates tables from them, and the data dictionary is
generated from the descriptions here (a test fails when a column has none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

_SQL_TYPES: list[tuple[Callable[[pa.DataType], bool], str]] = [
    (pa.types.is_string, "VARCHAR"),
    (pa.types.is_large_string, "VARCHAR"),
    (pa.types.is_boolean, "BOOLEAN"),
    (pa.types.is_float64, "DOUBLE"),
    (pa.types.is_int64, "BIGINT"),
    (pa.types.is_int32, "INTEGER"),
    (pa.types.is_int16, "SMALLINT"),
    (pa.types.is_date32, "DATE"),
    (pa.types.is_timestamp, "TIMESTAMP"),
]


def sql_type(arrow_type: pa.DataType) -> str:
    """The DuckDB (and DuckLake) SQL type a contract column's Arrow type is stored as."""
    for predicate, name in _SQL_TYPES:
        if predicate(arrow_type):
            return name
    raise TypeError(f"no DuckDB type for Arrow type {arrow_type}")


@dataclass(frozen=True)
class Column:
    """One column of a warehouse table."""

    name: str
    type: pa.DataType
    description: str
    nullable: bool = True


@dataclass(frozen=True)
class Table:
    """One warehouse table: its columns, its key and how its Parquet files are laid out."""

    name: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    partition_by: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        doubled = sorted({n for n in names if names.count(n) > 1})
        unknown = [k for k in self.key if k not in names]
        if doubled or unknown:
            raise ValueError(
                f"table {self.name}: "
                + "; ".join(
                    ([f"columns declared twice: {', '.join(doubled)}"] if doubled else [])
                    + ([f"key columns not declared: {', '.join(unknown)}"] if unknown else [])
                )
            )

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def arrow_schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns])


# All timestamps are naive and mean UTC (DuckDB TIMESTAMP), so every engine reads them alike.
TS = pa.timestamp("us")


def now_utc() -> datetime:
    """The current time as the warehouse stores times: naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


ORGANIZATIONS = Table(
    name="organizations",
    description=(
        "One row per organization the pipeline has seen, keyed by id (names can change by "
        "rename). Replaced on every run; an organization the token no longer sees keeps its "
        "last row (visible false, last_seen_at when it was last visible) and its stored usage."
    ),
    key=("organization_id",),
    columns=(
        Column(
            "organization_id", pa.string(), "UbiOps organization id (UUID); the stable key.", False
        ),
        Column("organization_name", pa.string(), "Current organization name (can change).", False),
        Column("status", pa.string(), "Organization status: active, suspended or cancelled."),
        Column("subscription", pa.string(), "Name of the organization's subscription."),
        Column("creation_date", TS, "When the organization was created (UTC)."),
        Column("overage_usage", pa.bool_(), "Whether usage above the credit limit is allowed."),
        Column(
            "two_factor_authentication_forced",
            pa.bool_(),
            "Whether members must use two-factor authentication.",
        ),
        Column(
            "period_start",
            TS,
            "Start of the current subscription period (UTC), as reported by the usage endpoint "
            "(the calendar month when the anchor day is unknown).",
        ),
        Column("period_end", TS, "End (exclusive) of the current subscription period (UTC)."),
        Column(
            "period_anchor_day",
            pa.int16(),
            "Day of month subscription periods start on (29-31 clamp to short months' last day); "
            "null when it could not be learnt (no usage yet): periods are then calendar months.",
        ),
        Column(
            "anchor_history",
            pa.string(),
            "The organization's earlier anchor days, oldest first, as day@until entries "
            "separated by commas (9@2026-11-25: periods started on the 9th until 2026-11-25, "
            "exclusive); period_anchor_day applies from the last until on. The change day is the "
            "start of the first period the API reported under the new anchor: the period running "
            "then ends on it, closed periods keep the anchor they were billed under. Null when "
            "the anchor has not changed since it was first learnt.",
        ),
        Column(
            "details_refreshed_at",
            TS,
            "When the details, members and subscription anchor were last read from the API "
            "(UTC): on a new organization, a rename, or after USAGE_DETAILS_MAX_AGE_DAYS.",
        ),
        Column("first_seen_at", TS, "When this pipeline first saw the organization (UTC)."),
        Column(
            "last_seen_at",
            TS,
            "When the token last saw the organization (UTC): when it was last visible.",
        ),
        Column(
            "visible",
            pa.bool_(),
            "Whether the token saw the organization in the latest run; false: no longer visible "
            "(membership lost or token changed), its stored history is kept and not refreshed.",
        ),
    ),
)

ORGANIZATION_USERS = Table(
    name="organization_users",
    description="Members of each organization as of the last run (replaced per organization).",
    key=("organization_id", "user_id"),
    columns=(
        Column("organization_id", pa.string(), "Organization id.", False),
        Column("user_id", pa.string(), "User id (UUID).", False),
        Column("email", pa.string(), "User e-mail address."),
        Column("name", pa.string(), "User first name."),
        Column("surname", pa.string(), "User surname."),
        Column("status", pa.string(), "Membership status as reported by the API."),
        Column("admin", pa.bool_(), "Whether the user is an organization admin."),
        Column("join_date", TS, "When the user joined the organization (UTC)."),
        Column("loaded_at", TS, "When this row was loaded (UTC)."),
    ),
)

RESOURCE_USAGE = Table(
    name="resource_usage",
    description=(
        "Resource-count snapshots: one row per organization per observation. History builds up "
        "run by run; old snapshots can be pruned with `usage-etl prune`."
    ),
    key=("organization_id", "observed_at"),
    partition_by=("observed_date",),
    columns=(
        Column("organization_id", pa.string(), "Organization id.", False),
        Column("observed_at", TS, "When the counts were read from the API (UTC).", False),
        Column("projects", pa.int64(), "Number of projects."),
        Column("users", pa.int64(), "Number of organization members."),
        Column("deployments", pa.int64(), "Number of deployments."),
        Column("deployment_versions", pa.int64(), "Number of deployment versions."),
        Column("pipelines", pa.int64(), "Number of pipelines."),
        Column("pipeline_versions", pa.int64(), "Number of pipeline versions."),
        Column("buckets", pa.int64(), "Number of storage buckets."),
        Column("environments", pa.int64(), "Number of custom environments."),
    ),
)

CREDIT_USAGE = Table(
    name="credit_usage",
    description=(
        "Credits consumed per organization, project and deleted projects, per day (interval "
        "'day') and per subscription period (interval 'month'). Per organization and bucket, "
        "projects plus deleted_projects add up to the organization row. Re-loading a month "
        "replaces that slice exactly."
    ),
    key=("organization_id", "interval", "scope", "project_id", "start_date"),
    partition_by=("interval", "month"),
    columns=(
        Column("organization_id", pa.string(), "Organization id.", False),
        Column("organization_name", pa.string(), "Organization name at load time."),
        Column(
            "interval", pa.string(), "Bucket size: 'day' or 'month' (a subscription period).", False
        ),
        Column(
            "scope",
            pa.string(),
            "'organization' (the total), 'project' or 'deleted_projects' (all deleted projects).",
            False,
        ),
        Column("project_id", pa.string(), "Project id; null unless scope is 'project'."),
        Column("project_name", pa.string(), "Project name; null unless scope is 'project'."),
        Column("start_date", TS, "Bucket start (UTC, inclusive).", False),
        Column("end_date", TS, "Bucket end (UTC, exclusive).", False),
        Column("credits", pa.float64(), "Credits consumed in the bucket.", False),
        Column("loaded_at", TS, "When the slice holding this row was loaded (UTC).", False),
    ),
)

# The resources the API counts: every count column of `resource_usage`, in its order (quota
# limits, the resource views and the report name resources by these).
RESOURCE_NAMES: tuple[str, ...] = tuple(
    c.name for c in RESOURCE_USAGE.columns if c.name not in RESOURCE_USAGE.key
)

FACT_TABLES: tuple[Table, ...] = (ORGANIZATIONS, ORGANIZATION_USERS, RESOURCE_USAGE, CREDIT_USAGE)


def table(name: str) -> Table:
    """The registered table called `name`; KeyError naming the known tables otherwise."""
    for t in ALL_TABLES:
        if t.name == name:
            return t
    known = ", ".join(t.name for t in ALL_TABLES)
    raise KeyError(f"unknown warehouse table {name!r}; expected one of: {known}")


ALL_TABLES: list[Table] = list(FACT_TABLES)


def register(t: Table) -> Table:
    """Add a derived table (trends, quota status, alerts...) to the contract."""
    if any(existing.name == t.name for existing in ALL_TABLES):
        raise ValueError(f"table {t.name!r} registered twice")
    ALL_TABLES.append(t)
    return t
