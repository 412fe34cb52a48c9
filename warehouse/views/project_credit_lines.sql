-- Credits per project line per bucket (day or subscription period), with current names: every
-- project, plus the organization's deleted projects as one line of their own ('Deleted
-- projects'). The per-project views read it.
--
-- requires: credit_usage, organizations, project_names
--
-- organization_id: Organization id (UUID); the stable key.
-- organization_name: Current organization name (follows renames).
-- interval: 'day' for a UTC day, 'month' for a subscription period.
-- line: 'project' for a live project, 'deleted_projects' for the organization's deleted projects
--     (all of them together, as the API reports them).
-- project_id: Project id; null on the deleted-projects line.
-- project_name: Latest known project name; 'Deleted projects' on the deleted-projects line.
-- start_date: Start of the bucket (UTC).
-- end_date: End of the bucket (UTC, exclusive).
-- credits: Credits consumed by the line in the bucket.

SELECT
    c.organization_id,
    coalesce(o.organization_name, c.organization_name) AS organization_name,
    c.interval,
    c.scope AS line,
    c.project_id,
    CASE WHEN c.scope = 'deleted_projects' THEN 'Deleted projects'
         ELSE coalesce(p.project_name, c.project_name) END AS project_name,
    c.start_date,
    c.end_date,
    c.credits
FROM credit_usage AS c
LEFT JOIN organizations AS o USING (organization_id)
LEFT JOIN project_names AS p
    ON p.organization_id = c.organization_id AND p.project_id = c.project_id
WHERE c.scope IN ('project', 'deleted_projects')
