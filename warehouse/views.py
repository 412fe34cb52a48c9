"""The analysts' views in `usage.duckdb`: their SQL, their documentation, and how they are made.

This module owns the `VIEWS` registry (one `View` per analyst view, with a description for the
view and for every column, like `schema.Table` does for tables) and the SQL behind each view.
`view_statements()` turns the registry into `CREATE VIEW` + `COMMENT ON VIEW` + `COMMENT ON
COLUMN` statements for the tables that exist, so the published database documents itself
(`duckdb_views()`, `duckdb_columns()`) and the data dictionary is generated from it.

Views over derived tables (`quota_status`, `quota_alerts`, `project_usage_trends`) are only
made when those tables exist, and read their columns through small alias lists, so they keep
working whichever of the planned spellings the derived tables land with (`budget` or `limit`,
`day` or `date`...). A column a derived table lacks becomes a typed NULL: a view's columns are
always the documented ones. Knows nothing of Dagster or HTTP.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

import duckdb

log = logging.getLogger(__name__)

# The current moment in UTC as a naive TIMESTAMP, whatever the session's TimeZone setting.
UTC_NOW = "(get_current_timestamp() AT TIME ZONE 'UTC')"
UTC_TODAY = f"CAST({UTC_NOW} AS DATE)"
DELETED_PROJECTS_LABEL = "Deleted projects"
RESOURCES: tuple[str, ...] = (
    "projects",
    "users",
    "deployments",
    "deployment_versions",
    "pipelines",
    "pipeline_versions",
    "buckets",
    "environments",
)


@dataclass(frozen=True)
class ViewColumn:
    """One column of an analyst view and what it means."""

    name: str
    description: str


class Columns:
    """The columns a table has, and how to read a logical column that may be spelled in several
    ways (or be missing, which gives a typed NULL)."""

    def __init__(self, table: str, names: Collection[str]) -> None:
        self.table = table
        self.names = {n.lower(): n for n in names}

    def has(self, *candidates: str) -> bool:
        return any(c.lower() in self.names for c in candidates)

    def pick(self, *candidates: str, sql_type: str = "VARCHAR", alias: str = "t") -> str:
        """`alias."first existing candidate"` cast to `sql_type`, or `NULL::sql_type`."""
        for c in candidates:
            if c.lower() in self.names:
                return f'CAST({alias}."{self.names[c.lower()]}" AS {sql_type})'
        return f"CAST(NULL AS {sql_type})"


Schema = Mapping[str, Columns]


@dataclass(frozen=True)
class View:
    """An analyst view: its documentation, the tables it needs, and a builder for its SELECT."""

    name: str
    description: str
    columns: tuple[ViewColumn, ...]
    requires: tuple[str, ...]
    select: Callable[[Schema], str]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# --- SQL fragments shared by several views ------------------------------------------------------

_ORG_NAMES = """
    org_names AS (
        SELECT organization_id, organization_name FROM organizations
    )"""

_PROJECT_NAMES = """
    project_names AS (
        SELECT organization_id, project_id, arg_max(project_name, start_date) AS project_name
        FROM credit_usage
        WHERE scope = 'project'
        GROUP BY organization_id, project_id
    )"""


def _series_sql(interval: str) -> str:
    """Project and deleted-projects rows of `credit_usage` for one interval, with current names."""
    return f"""
    WITH {_ORG_NAMES.strip()},
    {_PROJECT_NAMES.strip()},
    series AS (
        SELECT
            c.organization_id,
            coalesce(o.organization_name, c.organization_name) AS organization_name,
            c.scope AS line,
            c.project_id,
            CASE WHEN c.scope = 'deleted_projects' THEN {_quote(DELETED_PROJECTS_LABEL)}
                 ELSE coalesce(p.project_name, c.project_name) END AS project_name,
            c.start_date,
            c.end_date,
            c.credits
        FROM credit_usage AS c
        LEFT JOIN org_names AS o USING (organization_id)
        LEFT JOIN project_names AS p
            ON p.organization_id = c.organization_id AND p.project_id = c.project_id
        WHERE c.interval = '{interval}' AND c.scope IN ('project', 'deleted_projects')
    ),
    totals AS (
        SELECT organization_id, start_date, credits AS organization_credits
        FROM credit_usage
        WHERE interval = '{interval}' AND scope = 'organization'
    )"""


# --- the views ----------------------------------------------------------------------------------


def _daily_usage_by_organization(_: Schema) -> str:
    return f"""
    WITH {_ORG_NAMES.strip()}
    SELECT
        c.organization_id,
        coalesce(o.organization_name, c.organization_name) AS organization_name,
        CAST(c.start_date AS DATE) AS day,
        c.credits,
        CAST(c.start_date AS DATE) = {UTC_TODAY} AS is_partial_day
    FROM credit_usage AS c
    LEFT JOIN org_names AS o USING (organization_id)
    WHERE c.interval = 'day' AND c.scope = 'organization'
    ORDER BY organization_name, day"""


def _daily_usage_by_project(_: Schema) -> str:
    return f"""
    {_series_sql("day")}
    SELECT
        s.organization_id,
        s.organization_name,
        s.line,
        s.project_id,
        s.project_name,
        CAST(s.start_date AS DATE) AS day,
        s.credits,
        CASE WHEN t.organization_credits > 0 THEN s.credits / t.organization_credits END
            AS share_of_organization
    FROM series AS s
    LEFT JOIN totals AS t USING (organization_id, start_date)
    ORDER BY s.organization_name, day, s.line DESC, s.project_name"""


def _period_usage_by_organization(_: Schema) -> str:
    return f"""
    WITH {_ORG_NAMES.strip()}
    SELECT
        c.organization_id,
        coalesce(o.organization_name, c.organization_name) AS organization_name,
        CAST(c.start_date AS DATE) AS period_start,
        CAST(c.end_date AS DATE) AS period_end,
        c.start_date <= {UTC_NOW} AND {UTC_NOW} < c.end_date AS is_current_period,
        c.credits
    FROM credit_usage AS c
    LEFT JOIN org_names AS o USING (organization_id)
    WHERE c.interval = 'month' AND c.scope = 'organization'
    ORDER BY organization_name, period_start"""


def _period_usage_by_project(_: Schema) -> str:
    return f"""
    {_series_sql("month")}
    SELECT
        s.organization_id,
        s.organization_name,
        s.line,
        s.project_id,
        s.project_name,
        CAST(s.start_date AS DATE) AS period_start,
        CAST(s.end_date AS DATE) AS period_end,
        s.start_date <= {UTC_NOW} AND {UTC_NOW} < s.end_date AS is_current_period,
        s.credits,
        CASE WHEN t.organization_credits > 0 THEN s.credits / t.organization_credits END
            AS share_of_organization
    FROM series AS s
    LEFT JOIN totals AS t USING (organization_id, start_date)
    ORDER BY s.organization_name, period_start, s.credits DESC"""


def _top_movers(_: Schema) -> str:
    return f"""
    {_series_sql("day")},
    as_of AS (
        -- the last complete UTC day per organization (today is still filling up)
        SELECT organization_id,
               least(max(CAST(start_date AS DATE)), {UTC_TODAY} - 1) AS as_of_day
        FROM credit_usage
        WHERE interval = 'day' AND scope = 'organization'
        GROUP BY organization_id
    ),
    windows AS (
        SELECT
            s.organization_id,
            s.organization_name,
            s.line,
            s.project_id,
            s.project_name,
            a.as_of_day,
            sum(CASE WHEN CAST(s.start_date AS DATE) > a.as_of_day - 7
                      AND CAST(s.start_date AS DATE) <= a.as_of_day
                     THEN s.credits ELSE 0 END) AS last_7d_credits,
            sum(CASE WHEN CAST(s.start_date AS DATE) > a.as_of_day - 14
                      AND CAST(s.start_date AS DATE) <= a.as_of_day - 7
                     THEN s.credits ELSE 0 END) AS previous_7d_credits
        FROM series AS s
        JOIN as_of AS a USING (organization_id)
        WHERE CAST(s.start_date AS DATE) > a.as_of_day - 14
          AND CAST(s.start_date AS DATE) <= a.as_of_day
        GROUP BY ALL
    )
    SELECT
        organization_id,
        organization_name,
        line,
        project_id,
        project_name,
        as_of_day,
        last_7d_credits,
        previous_7d_credits,
        last_7d_credits - previous_7d_credits AS change_credits,
        CASE WHEN previous_7d_credits > 0
             THEN (last_7d_credits - previous_7d_credits) / previous_7d_credits END
            AS change_ratio,
        CAST(row_number() OVER (
            PARTITION BY organization_id
            ORDER BY abs(last_7d_credits - previous_7d_credits) DESC, project_name
        ) AS INTEGER) AS rank_in_organization
    FROM windows
    ORDER BY abs(last_7d_credits - previous_7d_credits) DESC"""


def _resource_counts_over_time(schema: Schema) -> str:
    counts = ", ".join(f"CAST({r} AS BIGINT) AS {r}" for r in RESOURCES)
    names = ", ".join(RESOURCES)
    status = schema.get("quota_status")
    if status is not None and status.has("metric"):
        limit = status.pick("limit", "limit_value", "budget", sql_type="DOUBLE")
        as_of = status.pick("as_of", "period_start", sql_type="TIMESTAMP")
        limits = f"""
    limits AS (
        SELECT t.organization_id, t.metric AS resource, arg_max({limit}, {as_of}) AS resource_limit
        FROM quota_status AS t
        WHERE t.metric <> 'credits' {"AND t.scope = 'organization'" if status.has("scope") else ""}
        GROUP BY ALL
    )"""
    else:
        limits = """
    limits AS (
        SELECT CAST(NULL AS VARCHAR) AS organization_id, CAST(NULL AS VARCHAR) AS resource,
               CAST(NULL AS DOUBLE) AS resource_limit
        WHERE false
    )"""
    return f"""
    WITH {_ORG_NAMES.strip()},
    wide AS (SELECT organization_id, observed_at, {counts} FROM resource_usage),
    counts AS (UNPIVOT wide ON {names} INTO NAME resource VALUE resource_count),
    {limits.strip()}
    SELECT
        c.organization_id,
        o.organization_name,
        c.observed_at,
        c.resource,
        c.resource_count,
        l.resource_limit,
        CASE WHEN l.resource_limit > 0 THEN 100.0 * c.resource_count / l.resource_limit END
            AS used_pct
    FROM counts AS c
    LEFT JOIN org_names AS o USING (organization_id)
    LEFT JOIN limits AS l ON l.organization_id = c.organization_id AND l.resource = c.resource
    ORDER BY o.organization_name, c.resource, c.observed_at"""


def _usage_against_budget(schema: Schema) -> str:
    s = schema["quota_status"]
    where = "WHERE t.metric = 'credits'" if s.has("metric") else ""
    used = s.pick("used_so_far", "value", sql_type="DOUBLE")
    budget = s.pick("budget", "limit", "limit_value", sql_type="DOUBLE")
    forecast = s.pick("forecast_total", "forecast", sql_type="DOUBLE")
    scope = (
        s.pick("scope")
        if s.has("scope")
        else "CASE WHEN t.project_id IS NULL THEN 'organization' ELSE 'project' END"
    )
    return f"""
    WITH {_ORG_NAMES.strip()},
    {_PROJECT_NAMES.strip()}
    SELECT
        CAST(t.organization_id AS VARCHAR) AS organization_id,
        coalesce(o.organization_name, {s.pick("organization_name")}) AS organization_name,
        {scope} AS scope,
        nullif({s.pick("project_id")}, '') AS project_id,
        coalesce(p.project_name, {s.pick("project_name")}) AS project_name,
        CAST({s.pick("period_start", sql_type="TIMESTAMP")} AS DATE) AS period_start,
        CAST({s.pick("period_end", sql_type="TIMESTAMP")} AS DATE) AS period_end,
        {used} AS used_so_far,
        {budget} AS budget,
        CASE WHEN {budget} > 0 THEN 100.0 * {used} / {budget} END AS used_pct,
        {forecast} AS forecast_total,
        {s.pick("forecast_low", sql_type="DOUBLE")} AS forecast_low,
        {s.pick("forecast_high", sql_type="DOUBLE")} AS forecast_high,
        CASE WHEN {budget} > 0 THEN 100.0 * {forecast} / {budget} END AS forecast_pct,
        {s.pick("days_until_budget", "days_until_limit", sql_type="DOUBLE")} AS days_until_budget,
        coalesce({s.pick("status")},
                 CASE WHEN {budget} IS NULL THEN 'no_budget'
                      WHEN {used} >= {budget} THEN 'exceeded'
                      WHEN {forecast} >= {budget} THEN 'forecast_exceeds'
                      ELSE 'ok' END) AS status,
        CAST({s.pick("limit_date", sql_type="TIMESTAMP")} AS DATE) AS limit_date,
        {s.pick("limit_outlook")} AS limit_outlook,
        CAST({s.pick("as_of", sql_type="TIMESTAMP")} AS DATE) AS as_of
    FROM quota_status AS t
    LEFT JOIN org_names AS o ON o.organization_id = CAST(t.organization_id AS VARCHAR)
    LEFT JOIN project_names AS p
        ON p.organization_id = CAST(t.organization_id AS VARCHAR)
       AND p.project_id = {s.pick("project_id")}
    {where}
    ORDER BY forecast_pct DESC NULLS LAST, organization_name, project_name NULLS FIRST"""


def _open_alerts(schema: Schema) -> str:
    a = schema["quota_alerts"]
    opened = a.pick("opened_at", sql_type="TIMESTAMP")
    return f"""
    WITH {_ORG_NAMES.strip()}
    SELECT
        {a.pick("alert_key")} AS alert_key,
        CAST(t.organization_id AS VARCHAR) AS organization_id,
        coalesce(o.organization_name, {a.pick("organization_name")}) AS organization_name,
        nullif({a.pick("project_id")}, '') AS project_id,
        {a.pick("project_name")} AS project_name,
        {a.pick("rule")} AS rule,
        {a.pick("severity")} AS severity,
        {a.pick("threshold", sql_type="DOUBLE")} AS threshold,
        {a.pick("status")} AS status,
        CAST({a.pick("period_start", sql_type="TIMESTAMP")} AS DATE) AS period_start,
        CAST({a.pick("period_end", sql_type="TIMESTAMP")} AS DATE) AS period_end,
        {opened} AS opened_at,
        {a.pick("notified_at", sql_type="TIMESTAMP")} AS notified_at,
        {a.pick("value", sql_type="DOUBLE")} AS value,
        {a.pick("limit_value", "limit", sql_type="DOUBLE")} AS limit_value,
        {a.pick("forecast", "forecast_total", sql_type="DOUBLE")} AS forecast,
        {a.pick("explanation", "title")} AS explanation,
        round(date_diff('minute', {opened}, {UTC_NOW}) / 60.0, 1) AS open_for_hours
    FROM quota_alerts AS t
    LEFT JOIN org_names AS o ON o.organization_id = CAST(t.organization_id AS VARCHAR)
    WHERE {a.pick("status")} IN ('open', 'notified')
    ORDER BY opened_at DESC, organization_name"""


def _latest_project_trends(schema: Schema) -> str:
    t = schema["project_usage_trends"]
    day = t.pick("day", "date", sql_type="TIMESTAMP")
    return f"""
    WITH {_ORG_NAMES.strip()},
    latest AS (
        SELECT organization_id, max({day}) AS last_day
        FROM project_usage_trends AS t
        GROUP BY organization_id
    )
    SELECT
        CAST(t.organization_id AS VARCHAR) AS organization_id,
        coalesce(o.organization_name, {t.pick("organization_name")}) AS organization_name,
        {t.pick("scope")} AS scope,
        {t.pick("project_id")} AS project_id,
        {t.pick("project_name")} AS project_name,
        CAST({day} AS DATE) AS day,
        {t.pick("credits", sql_type="DOUBLE")} AS credits,
        {t.pick("rolling_7d", "mean_7d", sql_type="DOUBLE")} AS rolling_7d,
        {t.pick("rolling_30d", "mean_30d", sql_type="DOUBLE")} AS rolling_30d,
        {t.pick("wow_change", sql_type="DOUBLE")} AS wow_change,
        {t.pick("share_of_org", sql_type="DOUBLE")} AS share_of_org,
        {t.pick("rank", "rank_in_org", sql_type="DOUBLE")} AS rank_in_org,
        {t.pick("is_new", sql_type="BOOLEAN")} AS is_new,
        {t.pick("is_dormant", sql_type="BOOLEAN")} AS is_dormant
    FROM project_usage_trends AS t
    JOIN latest AS l ON l.organization_id = t.organization_id AND l.last_day = {day}
    LEFT JOIN org_names AS o ON o.organization_id = CAST(t.organization_id AS VARCHAR)
    ORDER BY organization_name, scope, rank_in_org NULLS FIRST"""


_ORG = ViewColumn("organization_id", "Organization id (UUID); the stable key.")
_ORG_NAME = ViewColumn("organization_name", "Current organization name (follows renames).")
_LINE = ViewColumn(
    "line",
    "'project' for a live project, 'deleted_projects' for the organization's deleted projects "
    "(all of them together, as the API reports them).",
)
_PROJECT = ViewColumn("project_id", "Project id; null on the deleted-projects line.")
_PROJECT_NAME = ViewColumn(
    "project_name",
    f"Latest known project name; '{DELETED_PROJECTS_LABEL}' on the deleted-projects line.",
)
_SHARE = ViewColumn(
    "share_of_organization",
    "This line's credits / the organization's credits in the same bucket (0..1; null when the "
    "organization used nothing).",
)
_PERIOD_START = ViewColumn("period_start", "First day of the subscription period (UTC).")
_PERIOD_END = ViewColumn("period_end", "Day after the last day of the subscription period (UTC).")
_CURRENT = ViewColumn("is_current_period", "Whether the period contains the current UTC time.")

VIEWS: tuple[View, ...] = (
    View(
        name="daily_usage_by_organization",
        description=(
            "Credits per organization per UTC day (the API's organization total), with the "
            "organization's current name. Today's row is still filling up (is_partial_day)."
        ),
        requires=("credit_usage", "organizations"),
        columns=(
            _ORG,
            _ORG_NAME,
            ViewColumn("day", "UTC day."),
            ViewColumn("credits", "Credits consumed by the whole organization that day."),
            ViewColumn("is_partial_day", "True for today (UTC): usage is still coming in."),
        ),
        select=_daily_usage_by_organization,
    ),
    View(
        name="daily_usage_by_project",
        description=(
            "Credits per project per UTC day; usage of deleted projects is one line of its own "
            "('Deleted projects'), so the lines of a day add up to the organization total."
        ),
        requires=("credit_usage", "organizations"),
        columns=(
            _ORG,
            _ORG_NAME,
            _LINE,
            _PROJECT,
            _PROJECT_NAME,
            ViewColumn("day", "UTC day."),
            ViewColumn("credits", "Credits consumed by the line that day."),
            _SHARE,
        ),
        select=_daily_usage_by_project,
    ),
    View(
        name="period_usage_by_organization",
        description=(
            "Credits per organization per subscription period (periods start on the "
            "organization's anchor day; the first period loaded may be cut at the load range)."
        ),
        requires=("credit_usage", "organizations"),
        columns=(
            _ORG,
            _ORG_NAME,
            _PERIOD_START,
            _PERIOD_END,
            _CURRENT,
            ViewColumn("credits", "Credits consumed in the period (so far, for the current one)."),
        ),
        select=_period_usage_by_organization,
    ),
    View(
        name="period_usage_by_project",
        description=(
            "Credits per project per subscription period; deleted projects are one line of "
            "their own."
        ),
        requires=("credit_usage", "organizations"),
        columns=(
            _ORG,
            _ORG_NAME,
            _LINE,
            _PROJECT,
            _PROJECT_NAME,
            _PERIOD_START,
            _PERIOD_END,
            _CURRENT,
            ViewColumn("credits", "Credits consumed by the line in the period."),
            _SHARE,
        ),
        select=_period_usage_by_project,
    ),
    View(
        name="top_movers",
        description=(
            "Week-over-week change per project (and the deleted-projects line): the last 7 "
            "complete UTC days against the 7 days before, per organization, biggest absolute "
            "change first."
        ),
        requires=("credit_usage", "organizations"),
        columns=(
            _ORG,
            _ORG_NAME,
            _LINE,
            _PROJECT,
            _PROJECT_NAME,
            ViewColumn(
                "as_of_day", "Last complete UTC day of the organization's data (window end)."
            ),
            ViewColumn("last_7d_credits", "Credits in the 7 days ending on as_of_day."),
            ViewColumn("previous_7d_credits", "Credits in the 7 days before those."),
            ViewColumn("change_credits", "last_7d_credits - previous_7d_credits."),
            ViewColumn(
                "change_ratio",
                "change_credits / previous_7d_credits (0.25 = +25%); null without a base week.",
            ),
            ViewColumn("rank_in_organization", "1 = the organization's biggest absolute change."),
        ),
        select=_top_movers,
    ),
    View(
        name="resource_counts_over_time",
        description=(
            "Resource counts per organization per observation, one row per resource (long "
            "format), with the resource's limit and percentage used when quota_status knows it."
        ),
        requires=("resource_usage", "organizations"),
        columns=(
            _ORG,
            _ORG_NAME,
            ViewColumn("observed_at", "When the counts were read from the API (UTC)."),
            ViewColumn(
                "resource",
                "Resource name: projects, users, deployments, deployment_versions, pipelines, "
                "pipeline_versions, buckets or environments.",
            ),
            ViewColumn("resource_count", "How many the organization had at observed_at."),
            ViewColumn(
                "resource_limit", "The configured limit for this resource; null when unknown."
            ),
            ViewColumn("used_pct", "100 x resource_count / resource_limit; null without a limit."),
        ),
        select=_resource_counts_over_time,
    ),
    View(
        name="usage_against_budget",
        description=(
            "Credit use in the current subscription period against the budget, with the "
            "forecast for the period's end and its band (from quota_status): one row per "
            "organization and per budgeted project, worst forecast first."
        ),
        requires=("quota_status", "organizations", "credit_usage"),
        columns=(
            _ORG,
            _ORG_NAME,
            ViewColumn("scope", "'organization' for the total, 'project' for a project budget."),
            ViewColumn("project_id", "Project id; null for the organization row."),
            ViewColumn("project_name", "Project name; null for the organization row."),
            _PERIOD_START,
            _PERIOD_END,
            ViewColumn("used_so_far", "Credits used in the period so far."),
            ViewColumn("budget", "Credit budget for the period; null when none is configured."),
            ViewColumn("used_pct", "100 x used_so_far / budget."),
            ViewColumn("forecast_total", "Forecast credits for the whole period."),
            ViewColumn("forecast_low", "Lower end of the forecast band for the period."),
            ViewColumn("forecast_high", "Upper end of the forecast band for the period."),
            ViewColumn("forecast_pct", "100 x forecast_total / budget."),
            ViewColumn(
                "days_until_budget",
                "Days from now until the budget is used up at the current pace (0: already; "
                "null: not in sight).",
            ),
            ViewColumn(
                "status",
                "ok, warning, forecast_exceeds, exceeded or no_budget (as quota_status says).",
            ),
            ViewColumn(
                "limit_date",
                "Day the budget is used up at the current pace, only when that falls within the "
                "current period (credits reset at its end); null otherwise.",
            ),
            ViewColumn(
                "limit_outlook",
                "'reached', 'reached this period' (limit_date set), 'not reached this period' or "
                "'no limit'.",
            ),
            ViewColumn(
                "as_of",
                "Last complete UTC day of data behind the row; the period is the one containing "
                "the day after it (today).",
            ),
        ),
        select=_usage_against_budget,
    ),
    View(
        name="open_alerts",
        description=(
            "Quota alerts that are not resolved yet (status open or notified) in their "
            "subscription period, newest first, with the explanation a person would read; alerts "
            "of an ended period are closed as 'expired' and are not listed."
        ),
        requires=("quota_alerts", "organizations"),
        columns=(
            ViewColumn("alert_key", "Stable key of the alert (rule, series, threshold, period)."),
            _ORG,
            _ORG_NAME,
            ViewColumn("project_id", "Project id; null for organization-wide alerts."),
            ViewColumn("project_name", "Project name; null for organization-wide alerts."),
            ViewColumn("rule", "The alert rule that fired."),
            ViewColumn("severity", "Severity as configured for the rule (when known)."),
            ViewColumn("threshold", "The rule's threshold that was crossed."),
            ViewColumn("status", "open (not delivered yet) or notified (delivered)."),
            ViewColumn("period_start", "Subscription period the alert belongs to."),
            ViewColumn("period_end", "End (exclusive) of that period: the alert expires then."),
            ViewColumn("opened_at", "When the alert opened (UTC)."),
            ViewColumn("notified_at", "When it was first delivered (UTC); null if not yet."),
            ViewColumn("value", "Measured value when the alert last evaluated."),
            ViewColumn("limit_value", "The budget or limit the value is compared with."),
            ViewColumn("forecast", "Forecast value for the period, when the rule uses one."),
            ViewColumn("explanation", "Human-readable explanation of why the alert fired."),
            ViewColumn("open_for_hours", "Hours since opened_at."),
        ),
        select=_open_alerts,
    ),
    View(
        name="latest_project_trends",
        description=(
            "The latest day of project_usage_trends per organization: rolling means, "
            "week-over-week change, share and rank of every project line."
        ),
        requires=("project_usage_trends", "organizations"),
        columns=(
            _ORG,
            _ORG_NAME,
            ViewColumn("scope", "'organization', 'project' or 'deleted_projects'."),
            ViewColumn("project_id", "Project id; null unless scope is 'project'."),
            ViewColumn("project_name", "Project name; null unless scope is 'project'."),
            ViewColumn("day", "The organization's latest day in the trends (UTC)."),
            ViewColumn("credits", "Credits that day."),
            ViewColumn("rolling_7d", "Mean daily credits over the trailing 7 days."),
            ViewColumn("rolling_30d", "Mean daily credits over the trailing 30 days."),
            ViewColumn("wow_change", "Last 7 days vs the 7 before, as a fraction."),
            ViewColumn("share_of_org", "Share of the organization's credits that day (0..1)."),
            ViewColumn("rank_in_org", "1 = the organization's largest line that day."),
            ViewColumn("is_new", "First usage within the last days (see the trends table)."),
            ViewColumn("is_dormant", "No usage for a while after earlier usage."),
        ),
        select=_latest_project_trends,
    ),
)


def view(name: str) -> View:
    """The registered view called `name`; KeyError naming the known views otherwise."""
    for v in VIEWS:
        if v.name == name:
            return v
    raise KeyError(f"unknown view {name!r}; expected one of: {', '.join(v.name for v in VIEWS)}")


def _schema(
    existing_tables: Iterable[str], columns: Mapping[str, Collection[str]] | None
) -> dict[str, Columns]:
    from warehouse import schema as table_schema

    out: dict[str, Columns] = {}
    for name in existing_tables:
        if columns is not None and name in columns:
            out[name] = Columns(name, columns[name])
            continue
        try:
            out[name] = Columns(name, table_schema.table(name).column_names)
        except KeyError:
            out[name] = Columns(name, ())
    return out


def applicable_views(existing_tables: Iterable[str]) -> list[View]:
    """The registered views whose required tables all exist."""
    tables = set(existing_tables)
    return [v for v in VIEWS if set(v.requires) <= tables]


def select_sql(
    v: View, existing_tables: Iterable[str], columns: Mapping[str, Collection[str]] | None = None
) -> str:
    """The SELECT behind `v`, with its columns in the documented order."""
    schema = _schema(existing_tables, columns)
    names = ", ".join(f'"{c}"' for c in v.column_names)
    return f"SELECT {names} FROM ({v.select(schema).strip()}) AS v"


def create_sql(
    v: View,
    existing_tables: Iterable[str],
    columns: Mapping[str, Collection[str]] | None = None,
    *,
    temporary: bool = False,
) -> str:
    """`CREATE VIEW` for `v` followed by its `COMMENT ON` statements (one SQL string)."""
    kind = "TEMP VIEW" if temporary else "VIEW"
    statements = [
        f'CREATE OR REPLACE {kind} "{v.name}" AS {select_sql(v, existing_tables, columns)}',
    ]
    if not temporary:  # comments are catalog entries of the database file
        statements.append(f'COMMENT ON VIEW "{v.name}" IS {_quote(v.description)}')
        statements.extend(
            f'COMMENT ON COLUMN "{v.name}"."{c.name}" IS {_quote(c.description)}' for c in v.columns
        )
    return ";\n".join(statements) + ";"


def view_statements(
    existing_tables: set[str], columns: Mapping[str, Collection[str]] | None = None
) -> list[str]:
    """SQL for every view whose tables exist: one string per view (CREATE + its comments).

    `columns` (table -> column names) says which columns the tables really have; by default the
    registered `warehouse.schema` tables are assumed.
    """
    return [create_sql(v, existing_tables, columns) for v in applicable_views(existing_tables)]


def live_tables(con: duckdb.DuckDBPyConnection) -> dict[str, set[str]]:
    """Base tables of the main schema and their columns, read from the database itself."""
    rows = con.execute(
        """
        SELECT c.table_name, c.column_name
        FROM duckdb_columns() AS c
        JOIN duckdb_tables() AS t
          ON t.table_oid = c.table_oid
        WHERE t.schema_name = 'main' AND NOT t.internal AND NOT t.temporary
        """
    ).fetchall()
    out: dict[str, set[str]] = {}
    for table_name, column_name in rows:
        out.setdefault(str(table_name), set()).add(str(column_name))
    return out


def create_views(con: duckdb.DuckDBPyConnection, *, strict: bool = False) -> list[str]:
    """Create (or replace) the documented views for the tables `con` has; returns their names.

    With `strict=False` a view that cannot be built (a derived table with unexpected columns) is
    logged and skipped, so the analyst database is still published with the other views.
    """
    tables = live_tables(con)
    made: list[str] = []
    for v in applicable_views(tables):
        try:
            con.execute(create_sql(v, tables.keys(), tables))
        except duckdb.Error as exc:
            if strict:
                raise
            log.warning("view %s skipped: %s", v.name, str(exc).splitlines()[0])
            continue
        made.append(v.name)
    return made


def ensure_views(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Make every applicable view usable on `con` (read-only is fine): views the database lacks
    are created as TEMP views. Returns the names of the views available afterwards."""
    existing = {
        str(r[0])
        for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    }
    tables = live_tables(con)
    available: list[str] = []
    for v in applicable_views(tables):
        if v.name not in existing:
            try:
                con.execute(create_sql(v, tables.keys(), tables, temporary=True))
            except duckdb.Error as exc:
                log.warning("view %s unavailable: %s", v.name, str(exc).splitlines()[0])
                continue
        available.append(v.name)
    return available
