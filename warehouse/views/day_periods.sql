-- Every loaded day of each organization (its total's credit_usage day row) with the
-- subscription period it belongs to: the period of the stored period row covering it, else the
-- period the anchor in force that day gives it (common/periods.py's calendar: anchors 29-31
-- clamp to the last day of shorter months; after an anchor change, organizations.anchor_history,
-- a period is cut on the change day). A day has no stored period row when its period
-- began before the loaded range (the first period loaded) or runs over a month not loaded; the
-- period views show such a period from its loaded days only (is_partial). The period views
-- read it; one row per organization and day (the project lines' days are matched to it by
-- organization and day only where a period is partial).
--
-- requires: credit_usage, organizations
--
-- organization_id: Organization id (UUID); the stable key.
-- day: UTC day.
-- credits: Credits consumed by the organization that day.
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
history AS (
    -- anchor_history: the earlier anchors, 'day@until' entries in increasing order of until
    SELECT organization_id, CAST(split_part(entry, '@', 1) AS INTEGER) AS anchor,
           CAST(split_part(entry, '@', 2) AS DATE) AS until
    FROM (SELECT organization_id, unnest(string_split(anchor_history, ',')) AS entry
          FROM organizations WHERE anchor_history IS NOT NULL AND anchor_history <> '')
),
segments AS (
    -- common/periods.py's AnchorSchedule: each anchor applies from the previous one's until
    SELECT organization_id, anchor,
           lag(until) OVER (PARTITION BY organization_id ORDER BY until) AS since, until
    FROM history
    UNION ALL
    SELECT a.organization_id, a.anchor, h.until AS since, CAST(NULL AS DATE) AS until
    FROM anchors AS a
    LEFT JOIN (SELECT organization_id, max(until) AS until FROM history GROUP BY ALL) AS h
        USING (organization_id)
),
stored AS (
    SELECT organization_id, CAST(start_date AS DATE) AS period_start,
           CAST(end_date AS DATE) AS period_end
    FROM credit_usage
    WHERE interval = 'month' AND scope = 'organization'
),
stored_days AS (
    -- every day of every stored period (stored periods of an organization do not overlap):
    -- most loaded days find theirs by equality, without working out a calendar
    SELECT organization_id, period_start, period_end,
           CAST(unnest(range(CAST(period_start AS TIMESTAMP), CAST(period_end AS TIMESTAMP),
                             INTERVAL 1 DAY)) AS DATE) AS day
    FROM stored
),
days AS (
    SELECT d.organization_id, CAST(d.start_date AS DATE) AS day, d.credits, s.period_start,
           s.period_end
    FROM credit_usage AS d
    LEFT JOIN stored_days AS s
        ON s.organization_id = d.organization_id AND s.day = CAST(d.start_date AS DATE)
    WHERE d.interval = 'day' AND d.scope = 'organization'
),
calendar AS (
    -- the days without a stored period (few), with the anchor in force that day: the anchor
    -- day in the day's month, clamped to the month's last day; the period starts there, or in
    -- the month before when the day comes earlier (then cut at the anchor changes around it)
    SELECT d.organization_id, d.day, d.credits, coalesce(g.anchor, 1) AS anchor, g.since,
           g.until, CAST(date_trunc('month', d.day) AS DATE) AS month,
           least(CAST(date_trunc('month', d.day) AS DATE) + (coalesce(g.anchor, 1) - 1),
                 last_day(d.day)) AS anchored
    FROM days AS d
    LEFT JOIN segments AS g
        ON g.organization_id = d.organization_id
       AND (g.since IS NULL OR g.since <= d.day) AND (g.until IS NULL OR d.day < g.until)
    WHERE d.period_start IS NULL
),
started AS (
    SELECT *,
        CASE WHEN day >= anchored THEN anchored
             ELSE least(CAST(month - INTERVAL 1 MONTH AS DATE) + (anchor - 1),
                        last_day(CAST(month - INTERVAL 1 MONTH AS DATE)))
        END AS calendar_start
    FROM calendar
)
SELECT organization_id, day, credits, period_start, period_end, true AS has_period_row
FROM days
WHERE period_start IS NOT NULL
UNION ALL
SELECT organization_id, day, credits,
       greatest(calendar_start, coalesce(since, calendar_start)) AS period_start,
       least(least(CAST(date_trunc('month', calendar_start) + INTERVAL 1 MONTH AS DATE)
                       + (anchor - 1),
                   last_day(CAST(date_trunc('month', calendar_start) + INTERVAL 1 MONTH AS DATE))),
             coalesce(until, DATE '9999-12-31')) AS period_end,
       false AS has_period_row
FROM started
