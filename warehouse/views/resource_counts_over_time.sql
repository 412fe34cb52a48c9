-- Resource counts per organization per observation, one row per resource (long format), with the
-- resource's limit and percentage used when quota_status knows it.
--
-- requires: resource_usage, organizations
-- optional: quota_status
--
-- organization_id: Organization id (UUID); the stable key.
-- organization_name: Current organization name (follows renames).
-- observed_at: When the counts were read from the API (UTC).
-- resource: Resource name: projects, users, deployments, deployment_versions, pipelines,
--     pipeline_versions, buckets or environments.
-- resource_count: How many the organization had at observed_at.
-- resource_limit: The configured limit for this resource; null when unknown.
-- used_pct: 100 x resource_count / resource_limit; null without a limit.

WITH counts AS (
    -- one row per resource: the count columns of resource_usage (warehouse/schema.py
    -- RESOURCE_NAMES, in their order); null counts are left out
    UNPIVOT resource_usage
    ON projects, users, deployments, deployment_versions, pipelines, pipeline_versions, buckets,
       environments
    INTO NAME resource VALUE resource_count
),
limits AS (
    -- the latest organization-wide limit of every resource
    SELECT organization_id, metric AS resource, arg_max("limit", as_of) AS resource_limit
    FROM quota_status
    WHERE metric <> 'credits' AND scope = 'organization'
    GROUP BY ALL
)
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
LEFT JOIN organizations AS o USING (organization_id)
LEFT JOIN limits AS l ON l.organization_id = c.organization_id AND l.resource = c.resource
ORDER BY o.organization_name, c.resource, c.observed_at
