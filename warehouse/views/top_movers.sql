-- Week-over-week change per project (and the deleted-projects line): the last 7 complete UTC days
-- against the 7 days before, per organization, biggest absolute change first.
--
-- requires: credit_usage, project_credit_lines
--
-- organization_id: Organization id (UUID); the stable key.
-- organization_name: Current organization name (follows renames).
-- line: 'project' for a live project, 'deleted_projects' for the organization's deleted projects
--     (all of them together, as the API reports them).
-- project_id: Project id; null on the deleted-projects line.
-- project_name: Latest known project name; 'Deleted projects' on the deleted-projects line.
-- as_of_day: Last complete UTC day of the organization's data (window end).
-- last_7d_credits: Credits in the 7 days ending on as_of_day.
-- previous_7d_credits: Credits in the 7 days before those.
-- change_credits: last_7d_credits - previous_7d_credits.
-- change_ratio: change_credits / previous_7d_credits (0.25 = +25%); null without a base week.
-- rank_in_organization: 1 = the organization's biggest absolute change.

WITH series AS (
    SELECT organization_id, organization_name, line, project_id, project_name, start_date,
           end_date, credits
    FROM project_credit_lines
    WHERE interval = 'day'
),
as_of AS (
    -- the last complete UTC day per organization (today is still filling up)
    SELECT organization_id,
           least(max(CAST(start_date AS DATE)),
                 CAST(get_current_timestamp() AT TIME ZONE 'UTC' AS DATE) - 1) AS as_of_day
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
         THEN (last_7d_credits - previous_7d_credits) / previous_7d_credits END AS change_ratio,
    CAST(row_number() OVER (
        PARTITION BY organization_id
        ORDER BY abs(last_7d_credits - previous_7d_credits) DESC, project_name
    ) AS INTEGER) AS rank_in_organization
FROM windows
ORDER BY abs(last_7d_credits - previous_7d_credits) DESC
