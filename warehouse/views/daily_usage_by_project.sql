-- Credits per project per UTC day; usage of deleted projects is one line of its own ('Deleted
-- projects'), so the lines of a day add up to the organization total.
--
-- requires: credit_usage, project_credit_lines
--
-- organization_id: Organization id (UUID); the stable key.
-- organization_name: Current organization name (follows renames).
-- line: 'project' for a live project, 'deleted_projects' for the organization's deleted projects
--     (all of them together, as the API reports them).
-- project_id: Project id; null on the deleted-projects line.
-- project_name: Latest known project name; 'Deleted projects' on the deleted-projects line.
-- day: UTC day.
-- credits: Credits consumed by the line that day.
-- share_of_organization: This line's credits / the organization's credits in the same bucket
--     (0..1; null when the organization used nothing).

WITH series AS (
    SELECT organization_id, organization_name, line, project_id, project_name, start_date,
           end_date, credits
    FROM project_credit_lines
    WHERE interval = 'day'
),
totals AS (
    SELECT organization_id, start_date, credits AS organization_credits
    FROM credit_usage
    WHERE interval = 'day' AND scope = 'organization'
)
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
ORDER BY s.organization_name, day, s.line DESC, s.project_name
