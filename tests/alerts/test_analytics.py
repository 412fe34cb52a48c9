"""Trends, forecast and anomalies on small synthetic frames."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from insights.anomalies import detect_anomalies
from insights.forecast import forecast_usage
from insights.quotas import parse_quotas
from insights.trends import project_usage_trends

from .conftest import organizations_frame, usage_frame


def test_forecast_robust_to_one_spike() -> None:
    # 20 credits/day; the period is Feb 1 -> Mar 1 2023 (28 days), budget 1000
    days = 42  # Jan 1 .. Feb 11
    values = [20.0] * days
    values[-3] = 400.0  # one 20x day on Feb 9
    usage = usage_frame("o1", "2023-01-01", {"p1": values})
    orgs = organizations_frame(("o1", "free", "2023-02-01", "2023-03-01"))
    fc = forecast_usage(usage, orgs).iloc[0]
    assert fc.period_start == pd.Timestamp("2023-02-01")
    assert fc.days_elapsed == 11 and fc.days_remaining == 17
    assert fc.used_so_far == 10 * 20 + 400
    assert fc.forecast_total == 600 + 17 * 20  # the spike moved neither level nor slope
    assert fc.forecast_total < 1000
    naive = fc.used_so_far / fc.days_elapsed * 28
    assert naive > 1000  # the naive extrapolation would have alerted
    assert fc.forecast_low <= fc.forecast_total <= fc.forecast_high


def test_forecast_weekday_seasonality() -> None:
    rng = np.random.default_rng(7)
    days = pd.date_range("2024-01-01", "2024-03-10", freq="D")
    truth = np.array([100.0 if d.weekday() < 5 else 10.0 for d in days])
    noisy = truth * rng.uniform(0.95, 1.05, len(days))
    usage = usage_frame("o1", "2024-01-01", {"p1": list(noisy)})
    orgs = organizations_frame(("o1", "starter", "2024-02-20", "2024-03-20"))
    fc = forecast_usage(usage, orgs).iloc[0]
    remaining = pd.date_range("2024-03-11", "2024-03-19", freq="D")
    expected = fc.used_so_far + sum(100.0 if d.weekday() < 5 else 10.0 for d in remaining)
    assert abs(fc.forecast_total - expected) / expected < 0.03
    assert fc.method == "trend"
    flat = fc.used_so_far + fc.days_remaining * noisy[-28:].mean()
    assert abs(flat - expected) > abs(fc.forecast_total - expected)


def test_no_forecast_before_min_days() -> None:
    usage = usage_frame("o1", "2024-03-01", {"p1": [50.0] * 5})
    orgs = organizations_frame(("o1", "free", "2024-03-01", "2024-04-01"))
    fc = forecast_usage(usage, orgs, min_days=7).iloc[0]
    assert math.isnan(fc.forecast_total) and math.isnan(fc.forecast_high)
    assert fc.reason == "insufficient data: 5 of 7 days"
    assert fc.used_so_far == 250


def test_forecast_budgeted_project_and_org_without_usage() -> None:
    config = parse_quotas({"organizations": {"o1": {"projects": {"P2": 100}}}})
    usage = usage_frame("o1", "2024-03-01", {"p1": [5.0] * 10, "p2": [3.0] * 10})
    orgs = organizations_frame(
        ("o1", "free", "2024-03-01", "2024-04-01"), ("o2", "free", "2024-03-05", "2024-04-05")
    )
    fc = forecast_usage(usage, orgs, config)
    assert list(zip(fc.organization_id, fc.scope, fc.project_id.fillna(""), strict=True)) == [
        ("o1", "organization", ""),
        ("o2", "organization", ""),
        ("o1", "project", "p2"),
    ]
    assert fc.iloc[2].forecast_total == 3.0 * 31
    assert fc.iloc[1].used_so_far == 0 and fc.iloc[1].reason.startswith("insufficient")


def test_trends_fill_share_rank_flags() -> None:
    n = 40
    p1 = [10.0] * n
    p2 = [0.0] * 30 + [5.0] * 10  # new project
    p3 = [4.0] * 20 + [0.0] * 20  # goes dormant
    usage = usage_frame("o1", "2024-01-01", {"p1": p1, "p2": p2, "p3": p3}, deleted=[1.0] * n)
    usage = usage[~((usage.project_id == "p1") & (usage.start_date == pd.Timestamp("2024-01-05")))]
    trends = project_usage_trends(usage, None, new_days=14, dormant_days=14)
    assert set(trends.scope) == {"organization", "project", "deleted_projects"}
    p1t = trends[trends.project_id == "p1"].set_index("date")
    assert len(p1t) == n and p1t.loc["2024-01-05", "credits"] == 0.0  # missing day filled
    last = trends[trends.date == trends.date.max()]
    last = last.set_index(last.scope + ":" + last.project_id.fillna(""))
    assert last.loc["deleted_projects:", "rank_in_org"] == 3
    assert last.loc["project:p1", "rank_in_org"] == 1 and last.loc["project:p2", "rank_in_org"] == 2
    assert math.isclose(last.loc["project:p1", "share_of_org"], 10 / 16)
    assert last.loc["organization:", "share_of_org"] == 1.0
    assert bool(last.loc["project:p2", "is_new"]) and not bool(last.loc["project:p1", "is_new"])
    assert bool(last.loc["project:p3", "is_dormant"]) and not bool(
        last.loc["project:p1", "is_dormant"]
    )
    org = trends[trends.scope == "organization"].set_index("date")
    assert math.isclose(org.loc["2024-02-09", "mean_7d"], 16.0)
    assert org.loc["2024-02-09", "period_to_date"] == 9 * 16
    # vs the same 9 days of January (p1 + p3 + deleted = 15/day)
    assert math.isclose(org.loc["2024-02-09", "pop_change"], 144 / 135 - 1)
    assert math.isclose(p1t.loc["2024-01-11", "mean_7d"], 60 / 7)
    assert math.isclose(p1t.loc["2024-01-15", "wow_change"], 70 / 60 - 1)
    assert str(trends.date.dtype) == "datetime64[us]"


def test_anomaly_detected_with_impact_floor() -> None:
    big = [100.0 + (i % 3) for i in range(40)]
    big[35] = 900.0
    tiny = [1.0 + 0.1 * (i % 3) for i in range(40)]
    tiny[35] = 20.0  # 20x, but only ~19 credits of impact
    usage = usage_frame("o1", "2024-01-01", {"big": big, "tiny": tiny})
    scored = detect_anomalies(usage, sensitivity=4, min_impact=50)
    hits = scored[scored.is_anomaly]
    assert set(zip(hits.scope, hits.project_id.fillna(""), strict=True)) == {
        ("project", "big"),
        ("organization", ""),
    }
    assert (hits.date == pd.Timestamp("2024-02-05")).all()
    tiny_row = scored[(scored.project_id == "tiny") & (scored.date == "2024-02-05")].iloc[0]
    assert tiny_row.robust_z > 4 and not tiny_row.is_anomaly
