"""Usage analytics: subscription periods, trends, forecasts, anomalies, quota status, alerts."""

from pipelines.analytics.alert_rules import alert_key, evaluate_alerts
from pipelines.analytics.anomalies import detect_anomalies
from pipelines.analytics.evaluate import AlertEvaluation, backtest_rule, compute_alerts
from pipelines.analytics.forecast import forecast_series, forecast_usage
from pipelines.analytics.periods import period_containing, previous_period
from pipelines.analytics.quota_status import quota_status
from pipelines.analytics.trends import project_usage_trends

__all__ = [
    "AlertEvaluation",
    "alert_key",
    "backtest_rule",
    "compute_alerts",
    "detect_anomalies",
    "evaluate_alerts",
    "forecast_series",
    "forecast_usage",
    "period_containing",
    "previous_period",
    "project_usage_trends",
    "quota_status",
]
