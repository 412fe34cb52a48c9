"""One-call evaluation of the whole alert chain, and its day-by-day backtest.

:func:`compute_alerts` runs forecast -> quota status -> (anomalies) -> rules for one ``as_of``
day, which is what the Dagster asset / CLI call before storing alerts. :func:`backtest_rule`
replays that chain for every day of a past range and reports when a rule would have notified,
following the store's semantics (a key notifies once while active; a lower threshold that was
superseded by a higher one does not notify again). :func:`partly_loaded_periods` names the
periods such a replay judges without all their days (a warehouse loaded from a later day than
the period began): their sums are too low there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd

from alerting.rules import RULES, evaluate_alerts
from common.periods import CALENDAR_MONTHS, anchors_by_organization, period_containing, to_date
from insights.anomalies import detect_anomalies
from insights.forecast import Method, forecast_usage
from insights.frames import daily_usage, to_day, up_to
from insights.quota_status import NO_DATA, quota_status
from insights.quotas import QuotaConfig

BACKTEST_COLUMNS: list[str] = [
    "date",
    "organization_id",
    "project_id",
    "rule",
    "metric",
    "threshold",
    "alert_key",
    "period_start",
    "value",
    "limit",
    "forecast",
    "notified",
]


@dataclass
class AlertEvaluation:
    """Every intermediate frame of one evaluation (publishable as warehouse tables)."""

    forecasts: pd.DataFrame
    status: pd.DataFrame
    anomalies: pd.DataFrame | None
    candidates: pd.DataFrame


def compute_alerts(
    credit_usage: pd.DataFrame,
    organizations: pd.DataFrame,
    config: QuotaConfig,
    resource_usage: pd.DataFrame | None = None,
    *,
    as_of: object | None = None,
    rules: tuple[str, ...] | list[str] = RULES,
    method: Method = "robust",
    resources_as_of: object | None = None,
    first_days: Mapping[tuple[str, str | None], pd.Timestamp] | None = None,
    last_days: Mapping[str, pd.Timestamp] | None = None,
    observation_counts: dict[str, int] | None = None,
) -> AlertEvaluation:
    """Forecast, quota status, anomalies (if enabled) and candidate alerts as of one day.

    ``resources_as_of`` (default ``as_of``) lets resource counts observed today count while
    credits are evaluated up to the last complete day. ``first_days``, ``last_days`` and
    ``observation_counts`` come with inputs that hold only the last days
    (`insights.usage_window`): see `forecast_usage` and `quota_status`."""
    daily = daily_usage(credit_usage)
    if as_of is not None:
        daily = up_to(daily, to_day(as_of))
    forecasts = forecast_usage(
        daily,
        organizations,
        config,
        as_of=as_of,
        method=method,
        first_days=first_days,
        last_days=last_days,
    )
    status = quota_status(
        forecasts,
        organizations,
        config,
        resource_usage,
        as_of=resources_as_of or as_of,
        observation_counts=observation_counts,
    )
    anomalies = None
    anomaly = config.rules.anomaly
    if anomaly.enabled and "anomaly" in rules:
        anomalies = detect_anomalies(
            daily,
            sensitivity=anomaly.sensitivity,
            min_impact=config.rules.min_impact_credits,
            window_days=anomaly.window_days,
            min_history_days=anomaly.min_history_days,
        )
    candidates = evaluate_alerts(
        status, config, credit_usage_daily=daily, anomalies=anomalies, rules=rules
    )
    return AlertEvaluation(forecasts, status, anomalies, candidates)


CREDIT_RULES = ("credit_actual", "credit_forecast", "anomaly")
"""The rules judged on the credit usage (the others on the resource snapshots)."""


def unjudged(status: pd.DataFrame) -> set[tuple[str, str]]:
    """(organization id, rule) of the credit rules an evaluation could not judge: the
    organizations whose credit status is ``no_data`` (their data end before the day evaluated,
    ``insights.quota_status``). Their open alerts are neither confirmed nor gone, so the alert
    store leaves them as they are (``AlertStore.sync(unjudged=)``): resolving them would send a
    false 'resolved' and, at the next run with data, open them again."""
    if status.empty or not {"metric", "status", "organization_id"} <= set(status.columns):
        return set()
    stale = status[(status["metric"] == "credits") & (status["status"] == NO_DATA)]
    return {(str(o), rule) for o in stale["organization_id"].unique() for rule in CREDIT_RULES}


def backtest_rule(
    credit_usage_daily: pd.DataFrame,
    organizations: pd.DataFrame,
    config: QuotaConfig,
    rule: str,
    start: object,
    end: object,
    *,
    method: Method = "robust",
    resource_usage: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Replay ``rule`` for every day in ``[start, end]`` with only the data known that day.

    ``resource_usage`` (the resource snapshots) is what ``resource_limit`` judges: each day sees
    the snapshots observed up to its end.

    One row per day and active alert (columns :data:`BACKTEST_COLUMNS`); ``notified`` is True on
    the days the store would have sent a message. How often the rule fires:
    ``result[result.notified].groupby("organization_id").size()``.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {', '.join(RULES)}")
    daily = daily_usage(credit_usage_daily)
    notified: set[str] = set()
    out: list[pd.DataFrame] = []
    for day in pd.date_range(to_day(start), to_day(end), freq="D"):
        known = daily[daily["date"] <= day]
        if known.empty:
            continue
        result = compute_alerts(
            known, organizations, config, resource_usage, as_of=day, rules=(rule,), method=method
        )
        cand = result.candidates
        active = set(cand["alert_key"])
        groups = dict(zip(cand["alert_group"], cand["threshold"], strict=True))
        for key in list(notified - active):
            parts = key.split("|")
            group, threshold = "|".join(parts[:3] + parts[4:]), float(parts[3])
            if groups.get(group, -1.0) <= threshold:
                notified.discard(key)  # resolved: a later re-crossing notifies again
        frame = pd.DataFrame(
            {
                "date": day,
                "organization_id": cand["organization_id"],
                "project_id": cand["project_id"],
                "rule": cand["rule"],
                "metric": cand["metric"],
                "threshold": cand["threshold"],
                "alert_key": cand["alert_key"],
                "period_start": cand["period_start"],
                "value": cand["value"],
                "limit": cand["limit"],
                "forecast": cand["forecast"],
                "notified": ~cand["alert_key"].isin(notified),
            }
        )
        notified |= active
        out.append(frame)
    if not out:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in BACKTEST_COLUMNS})
    res = pd.concat([f for f in out if not f.empty] or out[:1], ignore_index=True)
    res["date"] = res["date"].astype("datetime64[us]")
    return res[BACKTEST_COLUMNS]


PARTLY_LOADED_COLUMNS: list[str] = [
    "organization_id",
    "period_start",
    "period_end",
    "missing_days",
    "first_missing",
    "last_missing",
]


def partly_loaded_periods(
    credit_usage_daily: pd.DataFrame, organizations: pd.DataFrame, start: object, end: object
) -> pd.DataFrame:
    """The subscription periods a backtest over ``[start, end]`` judges without all their days.

    A day D judges the period containing D + 1 (see `periods.current_period`) with the days
    up to D. Such a period is partly loaded when one of its days from its start (or the
    organization's creation) up to the last day judged in it -- no later than the last day the
    warehouse holds -- has no organization row: a warehouse loaded from a later day than the
    period began (its first days), or a gap in the loaded months. One row per organization and
    period (columns :data:`PARTLY_LOADED_COLUMNS`; days as ``datetime.date``)."""
    daily = daily_usage(credit_usage_daily)
    totals = daily[daily["scope"] == "organization"]
    rows: list[dict[str, object]] = []
    if totals.empty:
        return pd.DataFrame(rows, columns=PARTLY_LOADED_COLUMNS)
    held_until = to_date(totals["date"].max())
    first, last = to_date(start), min(to_date(end), held_until)
    anchors = anchors_by_organization(organizations)
    created: dict[str, date] = {}
    if organizations is not None and "creation_date" in organizations.columns:
        for org_id, when in zip(
            organizations["organization_id"], organizations["creation_date"], strict=True
        ):
            if pd.notna(when):
                created[str(org_id)] = to_date(when)
    for org_id, days in totals.groupby("organization_id")["date"]:
        have = {to_date(d) for d in days}
        anchor = anchors.get(str(org_id), CALENDAR_MONTHS)
        day = first
        while day <= last:
            period_start, period_end = period_containing(day + timedelta(days=1), anchor)
            judged_until = min(last, period_end - timedelta(days=1))
            since = max(period_start, created.get(str(org_id), period_start))
            missing = [
                since + timedelta(days=i)
                for i in range((judged_until - since).days + 1)
                if since + timedelta(days=i) not in have
            ]
            if missing:
                rows.append(
                    {
                        "organization_id": str(org_id),
                        "period_start": period_start,
                        "period_end": period_end,
                        "missing_days": len(missing),
                        "first_missing": missing[0],
                        "last_missing": missing[-1],
                    }
                )
            day = judged_until + timedelta(days=1)
    return pd.DataFrame(rows, columns=PARTLY_LOADED_COLUMNS)
