-- Credit use in the current subscription period against the budget, with the forecast for the
-- period's end and its band (from quota_status): one row per organization and per budgeted
-- project, worst forecast first.
--
-- requires: quota_status, organizations, project_names
--
-- organization_id: Organization id (UUID); the stable key.
-- organization_name: Current organization name (follows renames).
-- scope: 'organization' for the total, 'project' for a project budget.
-- project_id: Project id; null for the organization row.
-- project_name: Project name; null for the organization row.
-- period_start: First day of the subscription period (UTC).
-- period_end: Day after the last day of the subscription period (UTC).
-- used_so_far: Credits used in the period so far; null when the organization's data end before
--     as_of (status no_data).
-- budget: Credit budget for the period; null when none is configured.
-- used_pct: 100 x used_so_far / budget.
-- forecast_total: Forecast credits for the whole period.
-- forecast_low: Lower end of the forecast band for the period.
-- forecast_high: Upper end of the forecast band for the period.
-- forecast_pct: 100 x forecast_total / budget.
-- days_until_budget: Days from now until the budget is used up at the current pace (0: already;
--     null: not in sight).
-- status: ok, warning, forecast_exceeds, exceeded, no_limit or no_data (as quota_status says).
-- limit_date: Day the budget is used up at the current pace, only when that falls within the
--     current period (credits reset at its end); null otherwise.
-- limit_outlook: 'reached', 'reached this period' (limit_date set), 'not reached this period',
--     'no data' or 'no limit'.
-- as_of: Last complete UTC day of data behind the row; the period is the one containing the day
--     after it (today).

SELECT
    t.organization_id,
    coalesce(o.organization_name, t.organization_name) AS organization_name,
    t.scope,
    nullif(t.project_id, '') AS project_id,
    coalesce(p.project_name, t.project_name) AS project_name,
    CAST(t.period_start AS DATE) AS period_start,
    CAST(t.period_end AS DATE) AS period_end,
    t.value AS used_so_far,
    t."limit" AS budget,
    CASE WHEN t."limit" > 0 THEN 100.0 * t.value / t."limit" END AS used_pct,
    t.forecast_total,
    t.forecast_low,
    t.forecast_high,
    CASE WHEN t."limit" > 0 THEN 100.0 * t.forecast_total / t."limit" END AS forecast_pct,
    t.days_until_limit AS days_until_budget,
    t.status,
    CAST(t.limit_date AS DATE) AS limit_date,
    t.limit_outlook,
    CAST(t.as_of AS DATE) AS as_of
FROM quota_status AS t
LEFT JOIN organizations AS o ON o.organization_id = t.organization_id
LEFT JOIN project_names AS p
    ON p.organization_id = t.organization_id AND p.project_id = t.project_id
WHERE t.metric = 'credits'
ORDER BY forecast_pct DESC NULLS LAST, organization_name, project_name NULLS FIRST
