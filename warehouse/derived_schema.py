"""The derived tables' contract: trends, forecasts, quota status, alerts and their outbox.

Registered into `warehouse.schema.ALL_TABLES` on import, so the publisher and the data dictionary
treat them like the fact tables. The frames are produced by `insights` and
`alerting/store.py`; the assets in `assets/analytics.py` write them.
"""

from __future__ import annotations

import pyarrow as pa

from warehouse.schema import TS, Column, Table, register

S, F, B, I64 = pa.string(), pa.float64(), pa.bool_(), pa.int64()


def _cols(*specs: tuple[str, pa.DataType, str]) -> tuple[Column, ...]:
    return tuple(Column(name, kind, description) for name, kind, description in specs)


_SERIES = (
    ("organization_id", S, "Organization id."),
    ("organization_name", S, "Organization name at evaluation time."),
    ("scope", S, "'organization', 'project' or 'deleted_projects'."),
    ("project_id", S, "Project id; null unless scope is 'project'."),
    ("project_name", S, "Project name; null unless scope is 'project'."),
)

PROJECT_USAGE_TRENDS = register(
    Table(
        name="project_usage_trends",
        description=(
            "Daily credits per organization, project and deleted projects with rolling means, "
            "week-over-week and period-over-period change, share of the organization and rank. "
            "Days an organization has no credit_usage row at all (never loaded, e.g. the months "
            "between a backfill and a later range) have no rows, and its series restart after them."
        ),
        partition_by=("month",),
        columns=_cols(
            *_SERIES,
            ("date", TS, "The day (UTC)."),
            ("credits", F, "Credits that day (0 on days without usage)."),
            (
                "mean_7d",
                F,
                "Mean daily credits over the 7 days ending that day (fewer since the series' "
                "first day or a gap).",
            ),
            (
                "mean_30d",
                F,
                "Mean daily credits over the 30 days ending that day (fewer since the series' "
                "first day or a gap).",
            ),
            ("wow_change", F, "Change of the 7-day sum against the 7 days before (ratio)."),
            ("period_start", TS, "Start of the subscription period containing the day."),
            ("period_to_date", F, "Credits from the period start up to and including the day."),
            ("pop_change", F, "Period-to-date change against the same point of the last period."),
            ("share_of_org", F, "Share of the organization's credits that day (0..1)."),
            ("rank_in_org", F, "Rank by credits within the organization that day (1 = most)."),
            ("is_new", B, "The series' first usage is within the last 14 days."),
            ("is_dormant", B, "The series had usage but none in the last 14 days."),
        ),
    )
)

QUOTA_FORECASTS = register(
    Table(
        name="quota_forecasts",
        description=(
            "Forecast of credits to the end of the current subscription period per organization "
            "(and budgeted project): robust weekday-seasonal method, see docs/alerts.md."
        ),
        columns=_cols(
            *_SERIES,
            ("as_of", TS, "Last day of data used."),
            ("period_start", TS, "Current subscription period start."),
            ("period_end", TS, "Current subscription period end (exclusive)."),
            (
                "used_so_far",
                F,
                "Credits used in the period up to as_of; null when the organization's data end "
                "before as_of (see reason).",
            ),
            ("forecast_total", F, "Forecast credits for the whole period."),
            ("forecast_low", F, "Lower bound of the prediction interval."),
            ("forecast_high", F, "Upper bound of the prediction interval."),
            ("daily_rate", F, "Robust current daily rate used for the forecast."),
            (
                "days_of_data",
                I64,
                "Days of history the forecast could use (from the series' first loaded day to "
                "the organization's last loaded day, at most as_of).",
            ),
            ("days_elapsed", I64, "Days of the period elapsed."),
            ("days_remaining", I64, "Days of the period remaining."),
            ("method", S, "Forecast method name."),
            (
                "reason",
                S,
                "Why no forecast was made, else null: too few days of data, or the "
                "organization's data end before as_of ('no data for the current period (from "
                "D): last loaded day L', 'no data after L ...').",
            ),
        ),
    )
)

QUOTA_STATUS = register(
    Table(
        name="quota_status",
        description=(
            "Use against limits: credits against the period budget (actual and forecast) and "
            "each resource count against its limit, with days until the limit at current pace."
        ),
        columns=_cols(
            *_SERIES[:2],
            ("subscription", S, "Subscription name the limits come from."),
            *_SERIES[2:],
            ("metric", S, "'credits' or a resource name (projects, users, deployments, ...)."),
            (
                "as_of",
                TS,
                "What the value is as of: for credits, the last complete UTC day counted "
                "(midnight); for a resource, when its latest count was observed (a time of day).",
            ),
            ("period_start", TS, "Subscription period start."),
            ("period_end", TS, "Subscription period end (exclusive)."),
            ("value", F, "Credits used so far in the period, or the current resource count."),
            ("limit", F, "Budget or resource limit from the quota configuration."),
            ("used_pct", F, "value / limit x 100."),
            ("forecast_total", F, "Forecast credits for the period (credits only)."),
            ("forecast_low", F, "Forecast lower bound (credits only)."),
            ("forecast_high", F, "Forecast upper bound (credits only)."),
            ("forecast_pct", F, "forecast_total / limit x 100."),
            (
                "days_of_data",
                I64,
                "Days of data behind the forecast; for a resource, the days it was observed on.",
            ),
            (
                "daily_rate",
                F,
                "Current pace per day; for a resource, the least-squares slope of its last 30 "
                "days of counts, empty until they span a day.",
            ),
            (
                "days_until_limit",
                F,
                "Days until the limit is reached at the current pace; for credits only when "
                "that is within the current period (credits reset at its end).",
            ),
            (
                "limit_date",
                TS,
                "Day the limit is reached at the current pace; for credits only within the "
                "current period, else null.",
            ),
            (
                "limit_outlook",
                S,
                "'reached', 'reached this period' (limit_date set), 'not reached this period' "
                "or 'no data' (credits), 'reached at this pace' / 'not in sight' (resources) or "
                "'no limit'.",
            ),
            (
                "status",
                S,
                "'ok', 'warning', 'forecast_exceeds', 'exceeded', 'no_limit' or 'no_data' "
                "(credits not loaded up to as_of: value null; docs/alerts.md).",
            ),
        ),
    )
)

QUOTA_ALERTS = register(
    Table(
        name="quota_alerts",
        description=(
            "One row per alert with a stable key (organization, project, rule, threshold, "
            "period) and its lifecycle: open, notified, resolved."
        ),
        key=("alert_key",),
        columns=_cols(
            ("alert_key", S, "Stable key: organization|project|rule|threshold|period start."),
            ("alert_group", S, "Key without threshold: thresholds of one rule share a group."),
            ("organization_id", S, "Organization id."),
            ("organization_name", S, "Organization name."),
            ("project_id", S, "Project id, empty for organization-level alerts."),
            ("project_name", S, "Project name, if any."),
            ("rule", S, "credit_actual, credit_forecast, resource_limit or anomaly."),
            ("metric", S, "'credits' or the resource name."),
            ("threshold", F, "Threshold crossed, in percent of the limit."),
            ("period_start", TS, "Subscription period the alert is about."),
            ("period_end", TS, "End of that period (exclusive)."),
            (
                "status",
                S,
                "open, notified, resolved, superseded, or expired (the period ended while the "
                "alert was open: credits reset, the alert is closed without a message).",
            ),
            ("occurrence", I64, "How many times this alert has opened (re-crossings)."),
            ("severity", S, "info, warning or critical."),
            ("value", F, "Measured value when last evaluated."),
            ("limit", F, "The limit it is measured against."),
            ("forecast", F, "Forecast for the period, when relevant."),
            ("title", S, "One-line summary."),
            ("explanation", S, "Why: top contributing projects and change against baseline."),
            ("details", S, "JSON with the figures behind the explanation."),
            ("notify_resolved", B, "Whether resolving sends a message."),
            ("suppressed", B, "Recorded but not sent (a past period, e.g. from a backfill)."),
            ("first_seen_at", TS, "First evaluation that raised it."),
            ("last_seen_at", TS, "Last evaluation that still raised it."),
            ("opened_at", TS, "When it (re)opened."),
            ("notified_at", TS, "When the first channel delivered it."),
            ("resolved_at", TS, "When it resolved."),
            ("updated_at", TS, "Last change."),
            (
                "restatement",
                S,
                "Set when a load restated days already loaded so that the period total moved "
                "across a threshold: 'restated on <time>: period total moved from X to Y "
                "credits (threshold Z ...)'; null otherwise.",
            ),
        ),
    )
)

ALERT_OUTBOX = register(
    Table(
        name="alert_outbox",
        description="Every notification per alert event and channel, with its delivery state.",
        key=("id",),
        columns=_cols(
            ("id", I64, "Outbox row id."),
            ("idempotency_key", S, "Key receivers can dedupe on (also the Idempotency-Key)."),
            ("webhook_id", S, "Standard Webhooks message id."),
            ("alert_key", S, "The alert."),
            ("occurrence", I64, "The alert's occurrence number."),
            ("event", S, "open or resolved."),
            (
                "channel",
                S,
                "Name of the channel as configured in the quota file: 'log', or a webhook, "
                "slack, email or apprise channel's own name (e.g. 'ops-hook').",
            ),
            (
                "status",
                S,
                "pending, sending (claimed by a delivery pass), delivered, failed, suppressed "
                "or cancelled.",
            ),
            ("attempts", I64, "Delivery attempts so far."),
            ("last_error", S, "Last delivery error (one line, no secrets)."),
            ("payload", S, "The JSON message."),
            ("created_at", TS, "When it was queued."),
            ("claimed_at", TS, "When a delivery attempt last claimed it."),
            ("delivered_at", TS, "When it was delivered."),
            (
                "next_attempt_at",
                TS,
                "After a failed attempt: when a delivery pass may try it again (the backoff; "
                "every writer of a shared lake waits for it). Empty when due.",
            ),
        ),
    )
)

DERIVED_TABLES = (PROJECT_USAGE_TRENDS, QUOTA_FORECASTS, QUOTA_STATUS, QUOTA_ALERTS, ALERT_OUTBOX)
