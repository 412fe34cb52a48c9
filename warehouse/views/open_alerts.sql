-- Quota alerts that are not resolved yet (status open or notified) in their subscription period,
-- newest first, with the explanation a person would read; alerts of an ended period are closed as
-- 'expired' and are not listed.
--
-- requires: quota_alerts, organizations
--
-- alert_key: Stable key of the alert (rule, series, threshold, period).
-- organization_id: Organization id (UUID); the stable key.
-- organization_name: Current organization name (follows renames).
-- project_id: Project id; null for organization-wide alerts.
-- project_name: Project name; null for organization-wide alerts.
-- rule: The alert rule that fired.
-- severity: Severity as configured for the rule (when known).
-- threshold: The rule's threshold that was crossed.
-- status: open (not delivered yet) or notified (delivered).
-- period_start: Subscription period the alert belongs to.
-- period_end: End (exclusive) of that period: the alert expires then.
-- opened_at: When the alert opened (UTC).
-- notified_at: When it was first delivered (UTC); null if not yet.
-- value: Measured value when the alert last evaluated.
-- limit_value: The budget or limit the value is compared with.
-- forecast: Forecast value for the period, when the rule uses one.
-- explanation: Human-readable explanation of why the alert fired.
-- open_for_hours: Hours since opened_at.

SELECT
    t.alert_key,
    t.organization_id,
    coalesce(o.organization_name, t.organization_name) AS organization_name,
    nullif(t.project_id, '') AS project_id,
    t.project_name,
    t.rule,
    t.severity,
    t.threshold,
    t.status,
    CAST(t.period_start AS DATE) AS period_start,
    CAST(t.period_end AS DATE) AS period_end,
    t.opened_at,
    t.notified_at,
    t.value,
    t."limit" AS limit_value,
    t.forecast,
    t.explanation,
    round(date_diff('minute', t.opened_at, get_current_timestamp() AT TIME ZONE 'UTC') / 60.0, 1)
        AS open_for_hours
FROM quota_alerts AS t
LEFT JOIN organizations AS o ON o.organization_id = t.organization_id
WHERE t.status IN ('open', 'notified')
ORDER BY opened_at DESC, organization_name
