"""Insights: what the usage means (trends, forecasts, anomalies, quota status) and the quota file.

Reads the warehouse's fact tables, writes the derived tables (`warehouse/derived_schema.py`).
Imports `common`, `warehouse` and `extraction` (the quality findings); never `alerting`,
`reports`, `assets` or `pipelines`.
"""

from insights.anomalies import detect_anomalies
from insights.forecast import forecast_series, forecast_usage
from insights.quota_status import quota_status
from insights.trends import project_usage_trends

__all__ = [
    "detect_anomalies",
    "forecast_series",
    "forecast_usage",
    "project_usage_trends",
    "quota_status",
]
