-- Credits per organization per UTC day (the API's organization total), with the organization's
-- current name. Today's row is still filling up (is_partial_day).
--
-- requires: credit_usage, organizations
--
-- organization_id: Organization id (UUID); the stable key.
-- organization_name: Current organization name (follows renames).
-- day: UTC day.
-- credits: Credits consumed by the whole organization that day.
-- is_partial_day: True for today (UTC): usage is still coming in.

SELECT
    c.organization_id,
    coalesce(o.organization_name, c.organization_name) AS organization_name,
    CAST(c.start_date AS DATE) AS day,
    c.credits,
    CAST(c.start_date AS DATE) = CAST(get_current_timestamp() AT TIME ZONE 'UTC' AS DATE)
        AS is_partial_day
FROM credit_usage AS c
LEFT JOIN organizations AS o USING (organization_id)
WHERE c.interval = 'day' AND c.scope = 'organization'
ORDER BY organization_name, day
