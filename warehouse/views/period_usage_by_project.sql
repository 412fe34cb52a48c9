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
-- credits_in_loaded_days: The line's credits on the period's loaded days (equals credits when
--     every day is loaded).

WITH stored AS (
    SELECT organization_id, line, project_id, project_name, CAST(start_date AS DATE) AS period_start,
           credits
    FROM project_credit_lines
    WHERE interval = 'month'
),
loaded AS (
    SELECT organization_id, scope AS line, project_id, period_start, sum(credits) AS credits
    FROM day_periods
    WHERE scope IN ('project', 'deleted_projects')
    GROUP BY organization_id, scope, project_id, period_start
),
lines AS (
    SELECT
        coalesce(s.organization_id, l.organization_id) AS organization_id,
        coalesce(s.line, l.line) AS line,
        coalesce(s.project_id, l.project_id) AS project_id,
        s.project_name,
        coalesce(s.period_start, l.period_start) AS period_start,
        s.credits AS stored_credits,
        l.credits AS loaded_credits
    FROM stored AS s
    FULL OUTER JOIN loaded AS l
        ON s.organization_id = l.organization_id AND s.line = l.line
       AND s.project_id IS NOT DISTINCT FROM l.project_id AND s.period_start = l.period_start
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
    CASE WHEN t.is_partial THEN x.loaded_credits ELSE x.stored_credits END AS credits,
    CASE WHEN t.credits > 0
         THEN (CASE WHEN t.is_partial THEN x.loaded_credits ELSE x.stored_credits END) / t.credits
    END AS share_of_organization,
    t.is_partial,
    coalesce(x.loaded_credits, 0) AS credits_in_loaded_days
FROM lines AS x
JOIN period_usage_by_organization AS t USING (organization_id, period_start)
LEFT JOIN project_names AS p
    ON p.organization_id = x.organization_id AND p.project_id = x.project_id
WHERE (t.is_partial AND x.loaded_credits IS NOT NULL)
   OR (NOT t.is_partial AND x.stored_credits IS NOT NULL)
ORDER BY t.organization_name, t.period_start, credits DESC
