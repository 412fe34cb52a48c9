-- The latest known name of every project (from its credit_usage rows), one row per project; the
-- other views name projects by it, so a renamed project shows one name throughout.
--
-- requires: credit_usage
--
-- organization_id: Organization id (UUID); the stable key.
-- project_id: Project id.
-- project_name: The name of the project's latest credit_usage row.

SELECT organization_id, project_id, arg_max(project_name, start_date) AS project_name
FROM credit_usage
WHERE scope = 'project'
GROUP BY organization_id, project_id
