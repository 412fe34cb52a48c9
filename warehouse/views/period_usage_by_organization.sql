-- Credits per organization per subscription period (periods start on the organization's anchor
-- day; after an anchor change closed periods keep their anchor and the period running on the
-- change day ends on it, see organizations.anchor_history), for every period the warehouse
-- holds a day or a period row of. A period with a stored row shows the whole period's credits
-- (so far, for the current one): the sum of its days when they are all loaded, else the API's
-- answer for the whole period, which may include days outside the loaded range (the last period
-- of a range ending before it does). A period begun before the loaded range (the first one
-- loaded), or running over a month not loaded, has no stored row: it shows the credits of its
-- loaded days only and is_partial is true. Summed over an organization's rows,
-- credits_in_loaded_days equals its daily credits.
--
-- requires: credit_usage, organizations, day_periods
--
-- organization_id: Organization id (UUID); the stable key.
-- organization_name: Current organization name (follows renames).
-- period_start: First day of the subscription period (UTC).
-- period_end: Day after the last day of the subscription period (UTC).
-- is_current_period: Whether the period contains the current UTC time.
-- credits: Credits consumed in the period (so far, for the current one); for a partial period
--     (is_partial) only those of its loaded days.
-- is_partial: True when credits covers only the loaded days of the period: it began before
--     the loaded range or runs over a month not loaded, and the API was not asked for it.
-- days_in_period: Number of days of the period.
-- days_loaded: Number of its days whose daily rows are loaded (fewer than days_in_period for
--     the current period, a partial one, and one whose credits are the API's answer).
-- credits_in_loaded_days: Credits of its loaded days (equals credits when every day is
--     loaded); these add up to the organization's daily credits.

WITH stored AS (
    SELECT organization_id, organization_name, CAST(start_date AS DATE) AS period_start,
           CAST(end_date AS DATE) AS period_end, credits
    FROM credit_usage
    WHERE interval = 'month' AND scope = 'organization'
),
loaded AS (
    SELECT organization_id, period_start, period_end, count(*) AS days_loaded,
           sum(credits) AS credits
    FROM day_periods
    GROUP BY organization_id, period_start, period_end
),
names AS (
    SELECT organization_id, arg_max(organization_name, start_date) AS organization_name
    FROM credit_usage
    WHERE interval = 'day' AND scope = 'organization'
    GROUP BY organization_id
)
SELECT
    organization_id,
    coalesce(o.organization_name, s.organization_name, n.organization_name) AS organization_name,
    period_start,
    period_end,
    period_start <= CAST(get_current_timestamp() AT TIME ZONE 'UTC' AS DATE)
        AND CAST(get_current_timestamp() AT TIME ZONE 'UTC' AS DATE) < period_end
        AS is_current_period,
    coalesce(s.credits, l.credits) AS credits,
    s.credits IS NULL AS is_partial,
    date_diff('day', period_start, period_end) AS days_in_period,
    coalesce(l.days_loaded, 0) AS days_loaded,
    coalesce(l.credits, 0) AS credits_in_loaded_days
FROM stored AS s
FULL OUTER JOIN loaded AS l USING (organization_id, period_start, period_end)
LEFT JOIN organizations AS o USING (organization_id)
LEFT JOIN names AS n USING (organization_id)
ORDER BY organization_name, period_start
