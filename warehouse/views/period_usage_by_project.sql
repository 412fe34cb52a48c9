-- Credits per project per subscription period; deleted projects are one line of their own.
-- The periods are those of period_usage_by_organization: a period with a stored row shows each
-- line's credits for the whole period, a partial one (is_partial: begun before the loaded
-- range, or running over a month not loaded) those of its loaded days only.
--
-- requires: credit_usage, project_credit_lines, project_names, day_periods,
--     period_usage_by_organization
--
-- organization_id: Organization id (UUID); the stable key.
-- organization_name: Current organization name (follows renames).
-- line: 'project' for a live project, 'deleted_projects' for the organization's deleted projects
--     (all of them together, as the API reports them).
-- project_id: Project id; null on the deleted-projects line.
-- project_name: Latest known project name; 'Deleted projects' on the deleted-projects line.
-- period_start: First day of the subscription period (UTC).
-- period_end: Day after the last day of the subscription period (UTC).
-- is_current_period: Whether the period contains the current UTC time.
-- credits: Credits consumed by the line in the period; for a partial period (is_partial) only
--     those of its loaded days.
-- share_of_organization: This line's credits / the organization's credits in the same period
--     (0..1; null when the organization used nothing).
-- is_partial: True when the period's credits cover only its loaded days (see
--     period_usage_by_organization).

WITH stored AS (
    SELECT organization_id, line, project_id, project_name, CAST(start_date AS DATE) AS period_start,
           credits
    FROM project_credit_lines
    WHERE interval = 'month'
),
uncovered AS (
    -- the days of periods without a stored row (usually the first period loaded): few
    SELECT organization_id, day, period_start FROM day_periods WHERE NOT has_period_row
),
loaded AS (
    SELECT c.organization_id, c.scope AS line, c.project_id, u.period_start,
           sum(c.credits) AS credits
    FROM credit_usage AS c
    JOIN uncovered AS u
        ON u.organization_id = c.organization_id AND u.day = CAST(c.start_date AS DATE)
    WHERE c.interval = 'day' AND c.scope IN ('project', 'deleted_projects')
    GROUP BY c.organization_id, c.scope, c.project_id, u.period_start
),
lines AS (
    SELECT organization_id, line, project_id, project_name, period_start, credits, false AS partial
    FROM stored
    UNION ALL
    SELECT organization_id, line, project_id, NULL, period_start, credits, true
    FROM loaded
)
SELECT
    t.organization_id,
    t.organization_name,
    x.line,
    x.project_id,
    CASE WHEN x.line = 'deleted_projects' THEN 'Deleted projects'
         ELSE coalesce(x.project_name, p.project_name) END AS project_name,
    t.period_start,
    t.period_end,
    t.is_current_period,
    x.credits,
    CASE WHEN t.credits > 0 THEN x.credits / t.credits END AS share_of_organization,
    t.is_partial
FROM lines AS x
JOIN period_usage_by_organization AS t
    ON t.organization_id = x.organization_id AND t.period_start = x.period_start
   AND t.is_partial = x.partial
LEFT JOIN project_names AS p
    ON p.organization_id = x.organization_id AND p.project_id = x.project_id
ORDER BY t.organization_name, t.period_start, x.credits DESC
