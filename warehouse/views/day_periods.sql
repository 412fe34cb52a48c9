-- Every loaded day's credit_usage row (interval 'day', every line) with the subscription period
-- it belongs to: the period of the stored period row covering it, else the period the
-- organization's anchor day gives it (common/periods.py's calendar: anchors 29-31 clamp to the
-- last day of shorter months). A day has no stored period row when its period began before the
-- loaded range (the first period loaded) or runs over a month not loaded; the period views show
-- such a period from its loaded days only (is_partial). The period views read it.
--
-- requires: credit_usage, organizations
--
-- organization_id: Organization id (UUID); the stable key.
-- scope: 'organization' for the total, 'project' for a project, 'deleted_projects' for the
--     organization's deleted projects.
-- project_id: Project id; null unless scope is 'project'.
-- day: UTC day.
-- credits: Credits consumed by the line that day.
-- period_start: First day of the subscription period the day belongs to (UTC).
-- period_end: Day after the last day of that period (UTC).
-- has_period_row: Whether credit_usage holds the organization's row for that whole period.

WITH anchors AS (
    -- organization_anchor(): the learnt anchor day, else the day of the current period's start
    -- (a start on a month's last day: 31 when the end is one too, else the larger day), else 1
    SELECT
        organization_id,
        CAST(CASE
            WHEN period_anchor_day IS NOT NULL THEN period_anchor_day
            WHEN period_start IS NULL THEN 1
            WHEN CAST(period_start AS DATE) <> last_day(period_start) OR period_end IS NULL
                THEN day(period_start)
            WHEN CAST(period_end AS DATE) = last_day(period_end) THEN 31
            ELSE greatest(day(period_start), day(period_end))
        END AS INTEGER) AS anchor
    FROM organizations
),
stored AS (
    SELECT organization_id, CAST(start_date AS DATE) AS period_start,
           CAST(end_date AS DATE) AS period_end
    FROM credit_usage
    WHERE interval = 'month' AND scope = 'organization'
),
totals AS (
    -- the calendar is worked out on the organization totals' days (one per organization and
    -- day; every line's day has its total) and reused for every line by equality
    SELECT c.organization_id, CAST(c.start_date AS DATE) AS day, coalesce(a.anchor, 1) AS anchor,
           CAST(date_trunc('month', c.start_date) AS DATE) AS month
    FROM credit_usage AS c
    LEFT JOIN anchors AS a USING (organization_id)
    WHERE c.interval = 'day' AND c.scope = 'organization'
),
calendar AS (
    -- the anchor day in the day's month, clamped to the month's last day; the period starts
    -- there, or in the month before when the day comes earlier
    SELECT *, least(month + (anchor - 1), last_day(month)) AS anchored
    FROM totals
),
started AS (
    SELECT *,
        CASE WHEN day >= anchored THEN anchored
             ELSE least(CAST(month - INTERVAL 1 MONTH AS DATE) + (anchor - 1),
                        last_day(CAST(month - INTERVAL 1 MONTH AS DATE)))
        END AS calendar_start
    FROM calendar
),
periods AS (
    SELECT
        d.organization_id,
        d.day,
        coalesce(s.period_start, d.calendar_start) AS period_start,
        coalesce(
            s.period_end,
            least(CAST(date_trunc('month', d.calendar_start) + INTERVAL 1 MONTH AS DATE)
                      + (d.anchor - 1),
                  last_day(CAST(date_trunc('month', d.calendar_start) + INTERVAL 1 MONTH AS DATE)))
        ) AS period_end,
        s.period_start IS NOT NULL AS has_period_row
    FROM started AS d
    LEFT JOIN stored AS s
        ON s.organization_id = d.organization_id
       AND s.period_start <= d.day AND d.day < s.period_end
)
SELECT
    c.organization_id,
    c.scope,
    c.project_id,
    CAST(c.start_date AS DATE) AS day,
    c.credits,
    p.period_start,
    p.period_end,
    p.has_period_row
FROM credit_usage AS c
LEFT JOIN periods AS p
    ON p.organization_id = c.organization_id AND p.day = CAST(c.start_date AS DATE)
WHERE c.interval = 'day'
