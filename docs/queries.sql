-- Ready-made analyst queries for the usage warehouse (DuckDB, `<warehouse>/usage.duckdb`).
--
-- Run one with:  usage-etl query --name top_projects_this_period   (usage-etl query --list lists them)
-- or open the database read-only in any DuckDB client and paste it. Every query below is run
-- against a demo warehouse by tests/analyst/test_analyst_queries.py, which also checks the
-- columns listed in each `-- columns:` line. All days are UTC days. Views and tables are
-- documented in docs/data-dictionary.md.

-- name: credits_this_period_by_organization
-- question: How many credits has each organization used so far in its current subscription period (including today's partial day, as loaded; the report and the budget figures count complete days only)?
-- columns: organization_name, period_start, period_end, credits
SELECT organization_name, period_start, period_end, round(credits, 2) AS credits
FROM period_usage_by_organization
WHERE is_current_period
ORDER BY credits DESC;

-- name: top_projects_this_period
-- question: Which projects (and deleted projects) used the most credits this period, per organization?
-- columns: organization_name, project_name, credits, share_pct, rank
-- (lines without credits this period, such as an organization's empty deleted-projects line,
-- are not "top" projects: an organization with fewer than three using projects lists fewer)
SELECT organization_name, project_name, round(credits, 2) AS credits,
       round(100 * share_of_organization, 1) AS share_pct,
       rank() OVER (PARTITION BY organization_id ORDER BY credits DESC) AS rank
FROM period_usage_by_project
WHERE is_current_period AND credits > 0
QUALIFY rank <= 3
ORDER BY organization_name, rank;

-- name: daily_credits_last_14_days
-- question: What did each organization use per day over the last 14 days?
-- columns: organization_name, day, credits, is_partial_day
SELECT organization_name, day, round(credits, 2) AS credits, is_partial_day
FROM daily_usage_by_organization
WHERE day > (SELECT max(day) FROM daily_usage_by_organization) - 14
ORDER BY organization_name, day;

-- name: period_over_period
-- question: How do the complete days of the current period compare with the same number of first days of the previous period?
-- columns: organization_name, current_period_start, complete_days, current_to_date, previous_same_days, change_pct
-- (today is still filling up, so only complete days count; on a period's first day there is
-- nothing to compare yet and change_pct is null; the previous period comes from the same
-- subscription calendar: the period row that ends where the current one starts)
WITH current_period AS (
    SELECT organization_id, organization_name, period_start
    FROM period_usage_by_organization
    WHERE is_current_period
),
previous_period AS (
    SELECT p.organization_id, p.period_start AS previous_start
    FROM period_usage_by_organization AS p
    JOIN current_period AS c
      ON p.organization_id = c.organization_id AND p.period_end = c.period_start
),
windows AS (
    SELECT c.organization_id, c.organization_name, c.period_start, p.previous_start,
           CAST(count(d.day) FILTER (WHERE d.day >= c.period_start AND NOT d.is_partial_day)
                AS INTEGER) AS complete_days
    FROM current_period AS c
    LEFT JOIN previous_period AS p USING (organization_id)
    LEFT JOIN daily_usage_by_organization AS d USING (organization_id)
    GROUP BY ALL
),
sums AS (
    SELECT w.organization_name, w.period_start, w.complete_days,
           coalesce(sum(d.credits) FILTER (
               WHERE d.day >= w.period_start AND NOT d.is_partial_day
           ), 0) AS current_to_date,
           sum(d.credits) FILTER (
               WHERE d.day >= w.previous_start AND d.day < w.previous_start + w.complete_days
           ) AS previous_same_days
    FROM windows AS w
    LEFT JOIN daily_usage_by_organization AS d USING (organization_id)
    GROUP BY ALL
)
SELECT organization_name, period_start AS current_period_start, complete_days,
       round(current_to_date, 2) AS current_to_date,
       round(previous_same_days, 2) AS previous_same_days,
       CASE WHEN complete_days > 0 THEN
           round(100 * (current_to_date - previous_same_days) / nullif(previous_same_days, 0), 1)
       END AS change_pct
FROM sums
ORDER BY change_pct DESC NULLS LAST, organization_name;

-- name: biggest_week_over_week_movers
-- question: Which projects changed the most week over week (last 7 complete days vs the 7 before)?
-- columns: organization_name, project_name, last_7d_credits, previous_7d_credits, change_pct
SELECT organization_name, project_name, round(last_7d_credits, 2) AS last_7d_credits,
       round(previous_7d_credits, 2) AS previous_7d_credits,
       round(100 * change_ratio, 1) AS change_pct
FROM top_movers
ORDER BY abs(change_credits) DESC
LIMIT 10;

-- name: deleted_projects_share
-- question: How much of each organization's usage is attributed to deleted projects, per period?
-- (is_partial: a period begun before the loaded range, counted from its loaded days only)
-- columns: organization_name, period_start, deleted_credits, share_pct, is_partial
SELECT organization_name, period_start, round(credits, 2) AS deleted_credits,
       round(100 * share_of_organization, 1) AS share_pct, is_partial
FROM period_usage_by_project
WHERE line = 'deleted_projects'
ORDER BY organization_name, period_start;

-- name: weekday_vs_weekend
-- question: What is the average daily usage on weekdays versus weekends, per organization?
-- columns: organization_name, weekday_avg, weekend_avg, weekend_ratio
SELECT organization_name,
       round(avg(credits) FILTER (WHERE isodow(day) <= 5), 2) AS weekday_avg,
       round(avg(credits) FILTER (WHERE isodow(day) > 5), 2) AS weekend_avg,
       round(avg(credits) FILTER (WHERE isodow(day) > 5)
             / nullif(avg(credits) FILTER (WHERE isodow(day) <= 5), 0), 2) AS weekend_ratio
FROM daily_usage_by_organization
WHERE NOT is_partial_day
GROUP BY organization_name
ORDER BY organization_name;

-- name: usage_spikes
-- question: Which days were unusual spikes (more than 2.5 times the organization's median day)?
-- columns: organization_name, day, credits, median_day, times_median
WITH stats AS (
    SELECT organization_id, median(credits) AS median_day
    FROM daily_usage_by_organization
    GROUP BY organization_id
)
SELECT d.organization_name, d.day, round(d.credits, 2) AS credits,
       round(s.median_day, 2) AS median_day, round(d.credits / s.median_day, 1) AS times_median
FROM daily_usage_by_organization AS d
JOIN stats AS s USING (organization_id)
WHERE s.median_day > 0 AND d.credits > 2.5 * s.median_day
ORDER BY times_median DESC;

-- name: project_last_usage
-- question: When did each project last use credits (oldest first: dormant projects, clean-up candidates; a project deleted since its months were last pulled still shows)?
-- columns: organization_name, project_name, last_day_with_usage, total_credits
-- (the warehouse knows a project is deleted only in months pulled after the deletion: the API
-- then reports its usage on the 'Deleted projects' line, while months not pulled again keep it
-- under its name. A deleted project whose last usage is older than the re-pulled months is
-- therefore listed here as a dormant project; check it in UbiOps before cleaning up, or
-- re-pull its months with `usage-etl run --start`.)
SELECT organization_name, project_name, max(day) FILTER (WHERE credits > 0) AS last_day_with_usage,
       round(sum(credits), 2) AS total_credits
FROM daily_usage_by_project
WHERE line = 'project'
GROUP BY organization_name, project_name
HAVING sum(credits) > 0
ORDER BY last_day_with_usage, organization_name, project_name;

-- name: latest_resource_counts
-- question: How many projects, deployments, users... does each organization have now (and against which limit)?
-- columns: organization_name, resource, resource_count, resource_limit, used_pct
SELECT organization_name, resource,
       arg_max(resource_count, observed_at) AS resource_count,
       arg_max(resource_limit, observed_at) AS resource_limit,
       arg_max(round(used_pct, 1), observed_at) AS used_pct
FROM resource_counts_over_time
GROUP BY organization_name, resource
ORDER BY organization_name, resource;

-- name: organization_admins
-- question: Who administers each organization, and since when?
-- columns: organization_name, email, name, surname, join_date
SELECT o.organization_name, u.email, u.name, u.surname, u.join_date
FROM organization_users AS u
JOIN organizations AS o USING (organization_id)
WHERE u.admin
ORDER BY o.organization_name, u.email;

-- name: organizations_overview
-- question: One line per organization: subscription, current period, members and credits so far.
-- columns: organization_name, subscription, status, period_start, period_end, members, credits_this_period
SELECT o.organization_name, o.subscription, o.status,
       CAST(o.period_start AS DATE) AS period_start, CAST(o.period_end AS DATE) AS period_end,
       (SELECT count(*) FROM organization_users AS u
        WHERE u.organization_id = o.organization_id) AS members,
       (SELECT round(sum(p.credits), 2) FROM period_usage_by_organization AS p
        WHERE p.organization_id = o.organization_id AND p.is_current_period)
           AS credits_this_period
FROM organizations AS o
ORDER BY o.organization_name;

-- name: data_freshness
-- question: When was each organization's usage last loaded, and what is the latest day covered?
-- columns: organization_name, latest_day, last_loaded_at, days_loaded
SELECT coalesce(o.organization_name, c.organization_name) AS organization_name,
       CAST(max(c.start_date) AS DATE) AS latest_day, max(c.loaded_at) AS last_loaded_at,
       count(DISTINCT c.start_date) AS days_loaded
FROM credit_usage AS c
LEFT JOIN organizations AS o USING (organization_id)
WHERE c.interval = 'day' AND c.scope = 'organization'
GROUP BY ALL
ORDER BY organization_name;
