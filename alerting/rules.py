"""Alert rules: turn quota status (and anomalies) into candidate alerts with stable keys.

Rules (thresholds in percent, from ``QuotaConfig.rules``):

- ``credit_actual``: credits used so far in the period >= X% of the budget.
- ``credit_forecast``: forecast total for the period >= X% of the budget, only once the series
  has ``min_days_forecast`` days of data (a forecast exists).
- ``resource_limit``: a resource count >= X% of its limit; the period is the subscription period
  of the observation.
- ``anomaly`` (when enabled): the latest day of a series, the evaluation's ``as_of`` day, is a
  robust anomaly above the impact floor; one alert per series and period (an organization whose
  data end before ``as_of`` has no latest day to judge).

Only the HIGHEST crossed threshold of a rule becomes a candidate. The stable key is
``organization_id|project_id or ''|rule[.metric]|threshold|period_start`` and the *group* is the
key without the threshold; the alert store uses the group to supersede lower thresholds and to
resolve alerts whose condition no longer holds.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from common.periods import anchor_from_period, previous_period
from insights.frames import daily_usage, text_or_none
from insights.quotas import QuotaConfig

RULES: tuple[str, ...] = ("credit_actual", "credit_forecast", "resource_limit", "anomaly")
ALERT_COLUMNS: list[str] = [
    "alert_key",
    "alert_group",
    "organization_id",
    "organization_name",
    "project_id",
    "project_name",
    "rule",
    "metric",
    "threshold",
    "period_start",
    "period_end",
    "value",
    "limit",
    "forecast",
    "forecast_low",
    "forecast_high",
    "severity",
    "title",
    "explanation",
    "details",
    "notify_resolved",
    "as_of",
]


def alert_group(organization_id: str, project_id: str, rule: str, period_start: Any) -> str:
    """The alert key without its threshold (one rule, series and period)."""
    return f"{organization_id}|{project_id}|{rule}|{pd.Timestamp(period_start):%Y-%m-%d}"


def alert_key(
    organization_id: str, project_id: str, rule: str, threshold: float, period_start: Any
) -> str:
    """Stable alert key: organization, project ('' for the organization), rule, threshold,
    period start."""
    period = f"{pd.Timestamp(period_start):%Y-%m-%d}"
    return f"{organization_id}|{project_id}|{rule}|{threshold:g}|{period}"


def _severity(threshold: float, rule: str) -> str:
    if rule == "anomaly":
        return "warning"
    return "critical" if threshold >= 100 else "warning" if threshold >= 80 else "info"


class _OrganizationRows:
    """The daily rows behind the explanations, split by organization once: top projects in
    the period so far and the change vs the previous period's same days."""

    def __init__(self, daily: pd.DataFrame | None) -> None:
        self.empty = daily is None or daily.empty
        if daily is None or daily.empty:
            return
        self.rows_of = {
            str(k): v for k, v in daily.groupby("organization_id", sort=False).indices.items()
        }
        self.dates = daily["date"].to_numpy(dtype="datetime64[us]")
        self.is_total = (daily["scope"] == "organization").to_numpy()
        self.label = (
            daily["project_name"]
            .fillna(daily["project_id"])
            .where(daily["scope"] == "project", "(deleted projects)")
            .to_numpy(dtype=object)
        )
        self.credits = daily["credits"].to_numpy(dtype=float)
        self.summable = np.nan_to_num(self.credits, nan=0.0)  # as Series.sum() skips NaN

    def contributors(
        self,
        organization_id: str,
        period_start: pd.Timestamp,
        period_end: pd.Timestamp,
        as_of: pd.Timestamp,
        top: int = 3,
    ) -> dict[str, Any]:
        """Top projects and change vs the previous period ({} without any usage data)."""
        if self.empty:
            return {}
        rows = self.rows_of.get(organization_id, np.zeros(0, dtype=np.int64))
        dates, is_total = self.dates[rows], self.is_total[rows]
        start, end = np.datetime64(period_start, "us"), np.datetime64(as_of, "us")
        current = (dates >= start) & (dates <= end)
        parts = rows[current & ~is_total]
        sums = pd.Series(self.credits[parts]).groupby(self.label[parts]).sum()
        tops = sums.sort_values(ascending=False).head(top)
        elapsed = as_of - period_start
        anchor = anchor_from_period(period_start, period_end)
        prev_start = pd.Timestamp(previous_period(period_start, anchor)[0])
        totals = rows[is_total] if is_total.any() else rows
        total_dates = self.dates[totals]
        in_period = totals[(total_dates >= start) & (total_dates <= end)]
        now_total = float(self.summable[in_period].sum())
        base_start = np.datetime64(prev_start, "us")
        base_end = np.datetime64(prev_start + elapsed, "us")
        base_rows = totals[(total_dates >= base_start) & (total_dates <= base_end)]
        baseline = float(self.summable[base_rows].sum()) if len(base_rows) else math.nan
        change = (
            (now_total - baseline) / baseline if baseline and not math.isnan(baseline) else None
        )
        return {
            "top_projects": [
                {"project": k, "credits": round(float(v), 2)} for k, v in tops.items()
            ],
            "baseline_credits": None if math.isnan(baseline) else round(baseline, 2),
            "change_vs_baseline": None if change is None else round(change, 4),
        }


def _explain(row: dict[str, Any], details: dict[str, Any]) -> str:
    parts: list[str] = []
    tops = details.get("top_projects") or []
    if tops:
        parts.append(
            "top projects: " + ", ".join(f"{t['project']} {t['credits']:,.0f}" for t in tops)
        )
    change = details.get("change_vs_baseline")
    if change is not None:
        parts.append(f"{change:+.0%} vs the same days of the previous period")
    return "; ".join(parts)


def _clean(value: Any) -> Any:
    if isinstance(value, float | np.floating) and math.isnan(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def evaluate_alerts(
    status: pd.DataFrame,
    config: QuotaConfig,
    *,
    credit_usage_daily: pd.DataFrame | None = None,
    anomalies: pd.DataFrame | None = None,
    rules: tuple[str, ...] | list[str] = RULES,
) -> pd.DataFrame:
    """Candidate alerts for the current state; columns are :data:`ALERT_COLUMNS`.

    ``status`` comes from :func:`insights.quota_status.quota_status`;
    ``credit_usage_daily`` (optional) feeds the explanations; ``anomalies`` (optional, from
    :func:`insights.anomalies.detect_anomalies`) feeds the ``anomaly`` rule when it is
    enabled in the config.
    """
    r = config.rules
    daily = daily_usage(credit_usage_daily) if credit_usage_daily is not None else None
    explanations = _OrganizationRows(daily)
    out: list[dict[str, Any]] = []
    credit_rows = status[(status["metric"] == "credits") & (status["scope"] == "organization")]
    periods: dict[str, tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]] = dict(
        zip(
            credit_rows["organization_id"].tolist(),
            zip(
                credit_rows["period_start"].tolist(),
                credit_rows["period_end"].tolist(),
                credit_rows["as_of"].tolist(),
                strict=True,
            ),
            strict=True,
        )
    )
    # only rows with a limit and a percentage at or above the lowest threshold can cross one
    lowest = min(
        (*r.credit_actual_thresholds, *r.credit_forecast_thresholds, *r.resource_thresholds),
        default=math.inf,
    )
    crossing = (status["limit"].astype(float) > 0) & (
        (status["used_pct"].astype(float) >= lowest)
        | (status["forecast_pct"].astype(float) >= lowest)
    )
    for row in status[crossing].to_dict("records"):
        limit = row["limit"]
        project_id = text_or_none(row["project_id"]) or ""
        checks: list[tuple[str, str, float, list[float]]] = []
        if row["metric"] == "credits":
            checks.append(("credit_actual", "credits", row["used_pct"], r.credit_actual_thresholds))
            if not math.isnan(row["forecast_pct"]) and row["days_of_data"] >= r.min_days_forecast:
                checks.append(
                    (
                        "credit_forecast",
                        "credits",
                        row["forecast_pct"],
                        r.credit_forecast_thresholds,
                    )
                )
        else:
            checks.append(("resource_limit", row["metric"], row["used_pct"], r.resource_thresholds))
        for rule, metric, pct, thresholds in checks:
            if rule not in rules or math.isnan(pct):
                continue
            crossed = [t for t in thresholds if pct >= t]
            if not crossed:
                continue
            threshold = max(crossed)
            rule_id = rule if rule != "resource_limit" else f"{rule}.{metric}"
            details = (
                explanations.contributors(
                    str(row["organization_id"]),
                    row["period_start"],
                    row["period_end"],
                    row["as_of"],
                )
                if metric == "credits" and not project_id
                else {}
            )
            measured = row["forecast_total"] if rule == "credit_forecast" else row["value"]
            who = text_or_none(row["organization_name"]) or row["organization_id"]
            if project_id:
                who = f"{who} / {text_or_none(row['project_name']) or project_id}"
            verb = "is forecast to reach" if rule == "credit_forecast" else "has reached"
            title = (
                f"{who} {verb} {pct:.0f}% of its {metric} limit "
                f"({measured:,.0f} of {limit:,.0f}; threshold {threshold:g}%)"
            )
            details.update(
                {"pct": round(float(pct), 2), "days_until_limit": _clean(row["days_until_limit"])}
            )
            out.append(
                {
                    "alert_key": alert_key(
                        row["organization_id"], project_id, rule_id, threshold, row["period_start"]
                    ),
                    "alert_group": alert_group(
                        row["organization_id"], project_id, rule_id, row["period_start"]
                    ),
                    "organization_id": row["organization_id"],
                    "organization_name": row["organization_name"],
                    "project_id": project_id,
                    "project_name": row["project_name"],
                    "rule": rule,
                    "metric": metric,
                    "threshold": float(threshold),
                    "period_start": row["period_start"],
                    "period_end": row["period_end"],
                    "value": float(measured),
                    "limit": float(limit),
                    "forecast": _clean(row["forecast_total"]),
                    "forecast_low": _clean(row["forecast_low"]),
                    "forecast_high": _clean(row["forecast_high"]),
                    "severity": _severity(threshold, rule),
                    "title": title,
                    "explanation": _explain(row, details),
                    "details": json.dumps(details, default=str, sort_keys=True),
                    "notify_resolved": True,
                    "as_of": row["as_of"],
                }
            )
    if "anomaly" in rules and r.anomaly.enabled and anomalies is not None and not anomalies.empty:
        out.extend(_anomaly_alerts(anomalies, periods, config))
    frame = pd.DataFrame(out, columns=ALERT_COLUMNS)
    for col in ("period_start", "period_end", "as_of"):
        frame[col] = pd.to_datetime(frame[col]).astype("datetime64[us]")
    return frame


def _anomaly_alerts(
    anomalies: pd.DataFrame,
    periods: dict[str, tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp]],
    config: QuotaConfig,
) -> list[dict[str, Any]]:
    latest = anomalies.groupby("organization_id")["date"].transform("max")
    hits = anomalies[(anomalies["date"] == latest) & anomalies["is_anomaly"]]
    out: list[dict[str, Any]] = []
    sensitivity = config.rules.anomaly.sensitivity
    for row in hits.to_dict("records"):
        period = periods.get(row["organization_id"])
        if period is None or pd.Timestamp(row["date"]) != pd.Timestamp(period[2]):
            continue  # only the evaluation's day: an organization's data may end before it
        if row["scope"] == "project":
            project_id = str(row["project_id"])
        elif row["scope"] == "deleted_projects":
            project_id = "(deleted)"
        else:
            project_id = ""
        who = text_or_none(row["organization_name"]) or row["organization_id"]
        if project_id:
            who = f"{who} / {text_or_none(row['project_name']) or project_id}"
        details = {
            "expected": round(float(row["expected"]), 2),
            "robust_z": round(float(row["robust_z"]), 2),
            "direction": row["direction"],
            "date": f"{pd.Timestamp(row['date']):%Y-%m-%d}",
        }
        out.append(
            {
                "alert_key": alert_key(
                    row["organization_id"], project_id, "anomaly", sensitivity, period[0]
                ),
                "alert_group": alert_group(
                    row["organization_id"], project_id, "anomaly", period[0]
                ),
                "organization_id": row["organization_id"],
                "organization_name": row["organization_name"],
                "project_id": project_id,
                "project_name": row["project_name"],
                "rule": "anomaly",
                "metric": "credits",
                "threshold": float(sensitivity),
                "period_start": period[0],
                "period_end": period[1],
                "value": float(row["credits"]),
                "limit": None,
                "forecast": None,
                "forecast_low": None,
                "forecast_high": None,
                "severity": "warning",
                "title": (
                    f"{who}: unusual usage {row['direction']} on {details['date']} "
                    f"({row['credits']:,.0f} credits, expected ~{row['expected']:,.0f})"
                ),
                "explanation": f"robust z-score {row['robust_z']:.1f} (threshold {sensitivity:g})",
                "details": json.dumps(details, sort_keys=True),
                "notify_resolved": config.rules.anomaly.notify_resolved,
                "as_of": row["date"],
            }
        )
    return out
