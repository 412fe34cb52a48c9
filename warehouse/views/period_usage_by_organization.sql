-- Credits per organization per subscription period (periods start on the organization's anchor
-- day; after an anchor change closed periods keep their anchor and the period running on the
-- change day ends on it, see organizations.anchor_history; the first period loaded may be cut at
-- the load range).
--
-- requires: credit_usage, organizations
--
-- organization_id: Organization id (UUID); the stable key.
-- organization_name: Current organization name (follows renames).
-- period_start: First day of the subscription period (UTC).
-- period_end: Day after the last day of the subscription period (UTC).
-- is_current_period: Whether the period contains the current UTC time.
-- credits: Credits consumed in the period (so far, for the current one).

SELECT
    c.organization_id,
    coalesce(o.organization_name, c.organization_name) AS organization_name,
    CAST(c.start_date AS DATE) AS period_start,
    CAST(c.end_date AS DATE) AS period_end,
    c.start_date <= (get_current_timestamp() AT TIME ZONE 'UTC')
        AND (get_current_timestamp() AT TIME ZONE 'UTC') < c.end_date AS is_current_period,
    c.credits
FROM credit_usage AS c
LEFT JOIN organizations AS o USING (organization_id)
WHERE c.interval = 'month' AND c.scope = 'organization'
ORDER BY organization_name, period_start
