-- The last complete UTC day of project_usage_trends per organization (today is still filling up
-- and is left out, as in top_movers): rolling means, week-over-week change, share and rank of
-- every project line.
--
-- requires: project_usage_trends, organizations
--
-- organization_id: Organization id (UUID); the stable key.
-- organization_name: Current organization name (follows renames).
-- scope: 'organization', 'project' or 'deleted_projects'.
-- project_id: Project id; null unless scope is 'project'.
-- project_name: Project name; null unless scope is 'project'.
-- day: The organization's last complete day in the trends (UTC): its latest day before today.
-- credits: Credits that day.
-- rolling_7d: Mean daily credits over the trailing 7 days.
-- rolling_30d: Mean daily credits over the trailing 30 days.
-- wow_change: Last 7 days vs the 7 before, as a fraction.
-- share_of_org: Share of the organization's credits that day (0..1).
-- rank_in_org: 1 = the organization's largest line that day.
-- is_new: First usage within the last days (see the trends table).
-- is_dormant: No usage for a while after earlier usage.

WITH latest AS (
    -- the last complete UTC day per organization (today's partial day would read as a drop)
    SELECT organization_id, max(date) AS last_day
    FROM project_usage_trends
    WHERE CAST(date AS DATE) < CAST(get_current_timestamp() AT TIME ZONE 'UTC' AS DATE)
    GROUP BY organization_id
)
SELECT
    t.organization_id,
    coalesce(o.organization_name, t.organization_name) AS organization_name,
    t.scope,
    t.project_id,
    t.project_name,
    CAST(t.date AS DATE) AS day,
    t.credits,
    t.mean_7d AS rolling_7d,
    t.mean_30d AS rolling_30d,
    t.wow_change,
    t.share_of_org,
    t.rank_in_org,
    t.is_new,
    t.is_dormant
FROM project_usage_trends AS t
JOIN latest AS l ON l.organization_id = t.organization_id AND l.last_day = t.date
LEFT JOIN organizations AS o ON o.organization_id = t.organization_id
ORDER BY organization_name, scope, rank_in_org NULLS FIRST
