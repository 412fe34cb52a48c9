"""An organization whose loaded data end before the evaluation day (a backfill of an old range):
no forecast and no used-so-far figure with a reason, `days_of_data` counting the loaded days,
status `no_data` (not "0 % used, ok"), no credit alert; in the tables, the report and the
alerts of a real run against the emulator."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from alerting.evaluate import compute_alerts
from insights.forecast import forecast_usage
from insights.quotas import parse_quotas
from tests.services.emulator import Pipeline

from .conftest import organizations_frame, usage_frame

CONFIG = parse_quotas(
    {
        "subscriptions": {"free": {"credit_budget": 1000}},
        "organizations": {"o1": {"projects": {"p1": 100}}},
        "rules": {"credit_actual_thresholds": [50, 100], "credit_forecast_thresholds": [100]},
    }
)
ORGS = organizations_frame(("o1", "free", "2024-06-01", "2024-07-01"))  # calendar months


def loaded_until(last: str) -> pd.DataFrame:
    """20 + 10 credits a day (two projects) from 2024-01-01 to ``last``."""
    days = len(pd.date_range("2024-01-01", last, freq="D"))
    return usage_frame("o1", "2024-01-01", {"p1": [20.0] * days, "p2": [10.0] * days})


def organization_row(frame: pd.DataFrame) -> pd.Series:
    return frame[frame["scope"] == "organization"].iloc[0]


def test_data_ending_before_the_current_period_give_no_forecast() -> None:
    forecasts = forecast_usage(loaded_until("2024-03-31"), ORGS, CONFIG, as_of="2024-06-15")
    assert len(forecasts) == 2  # the organization and its budgeted project
    for row in forecasts.to_dict("records"):
        assert math.isnan(row["used_so_far"]) and math.isnan(row["forecast_total"])
        assert math.isnan(row["forecast_low"]) and math.isnan(row["forecast_high"])
        assert row["days_of_data"] == 91  # 2024-01-01 .. 2024-03-31, not .. 2024-06-15
        assert row["reason"] == (
            "no data for the current period (from 2024-06-01): last loaded day 2024-03-31"
        )
        assert row["days_elapsed"] == 15 and row["days_remaining"] == 15


def test_data_ending_within_the_current_period_give_no_forecast() -> None:
    forecasts = forecast_usage(loaded_until("2024-06-10"), ORGS, CONFIG, as_of="2024-06-15")
    row = organization_row(forecasts)
    assert math.isnan(row["used_so_far"]) and math.isnan(row["forecast_total"])
    assert row["days_of_data"] == 162  # 2024-01-01 .. 2024-06-10
    assert row["reason"] == (
        "no data after 2024-06-10 (the last loaded day): 5 days of the current period up to "
        "2024-06-15 not loaded"
    )


def test_data_up_to_as_of_are_forecast() -> None:
    row = organization_row(
        forecast_usage(loaded_until("2024-06-15"), ORGS, CONFIG, as_of="2024-06-15")
    )
    assert row["reason"] is None or pd.isna(row["reason"])
    assert row["used_so_far"] == 15 * 30 and row["days_of_data"] == 167
    assert row["forecast_total"] == pytest.approx(30 * 30)


@pytest.mark.parametrize("last", ["2024-03-31", "2024-06-10"])
def test_stale_credits_are_not_ok_and_raise_no_credit_alert(last: str) -> None:
    # the loaded days of June alone (10 x 30 = 300) reach 100 % of the project budget and the
    # forecast would: nothing is claimed or alerted from a period that is not loaded
    ev = compute_alerts(loaded_until(last), ORGS, CONFIG, as_of="2024-06-15")
    credits = ev.status[ev.status["metric"] == "credits"]
    assert len(credits) == 2
    assert set(credits["status"]) == {"no_data"}
    assert set(credits["limit_outlook"]) == {"no data"}
    assert credits["value"].isna().all() and credits["used_pct"].isna().all()
    assert credits["forecast_pct"].isna().all() and credits["limit_date"].isna().all()
    assert ev.candidates.empty
    # the same data evaluated on their last day alert as usual
    fresh = compute_alerts(loaded_until(last), ORGS, CONFIG, as_of=last)
    assert not fresh.candidates.empty and "no_data" not in set(fresh.status["status"])


# ---- a real run against the emulator ---------------------------------------------------


def test_a_backfill_of_an_old_range_publishes_no_forecast(
    pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    quotas = tmp_path / "quotas.yaml"
    example = (Path(__file__).resolve().parents[2] / "quotas.example.yaml").read_text()
    quotas.write_text(example.replace("    enabled: false", "    enabled: true"))  # anomaly rule
    monkeypatch.setenv("USAGE_QUOTAS", str(quotas))
    start, last = date(2025, 9, 1), date(2025, 10, 31)  # long before today
    assert last < pipeline.start
    assert pipeline.run(start, last).success

    forecasts = pipeline.query(
        "SELECT f.organization_name, f.used_so_far, f.forecast_total, f.days_of_data, f.reason, "
        "CAST(min(c.start_date) AS DATE) AS first_day, CAST(max(c.start_date) AS DATE) AS last_day "
        "FROM quota_forecasts AS f JOIN credit_usage AS c USING (organization_id) "
        "WHERE c.interval = 'day' AND f.scope = 'organization' GROUP BY ALL"
    )
    assert len(forecasts) >= 5
    for row in forecasts.to_dict("records"):
        assert pd.Timestamp(row["last_day"]) == pd.Timestamp(last), row
        assert math.isnan(row["used_so_far"]) and math.isnan(row["forecast_total"]), row
        loaded = (pd.Timestamp(last) - pd.Timestamp(row["first_day"])).days + 1
        assert row["days_of_data"] == loaded, row
        assert row["reason"].startswith("no data for the current period (from "), row
        assert row["reason"].endswith(": last loaded day 2025-10-31"), row

    budgets = pipeline.query(
        "SELECT organization_name, used_so_far, used_pct, status, limit_outlook "
        "FROM usage_against_budget WHERE scope = 'organization'"
    )
    assert set(budgets["status"]) <= {"no_data", "no_limit"} and "no_data" in set(budgets["status"])
    assert budgets["used_so_far"].isna().all() and budgets["used_pct"].isna().all()
    credit_alerts = pipeline.query(
        "SELECT count(*) AS n FROM quota_alerts WHERE rule IN ('credit_actual', "
        "'credit_forecast', 'anomaly')"
    )
    assert credit_alerts["n"].iloc[0] == 0

    index = (pipeline.warehouse / "report" / "index.html").read_text()
    assert ">no data</span>" in index
    pages = list((pipeline.warehouse / "report" / "organizations").glob("*.html"))
    assert pages and all("No credit usage loaded for this period" in p.read_text() for p in pages)

    # a later run that loads up to today measures and forecasts again
    assert pipeline.run().success
    fresh = pipeline.query(
        "SELECT used_so_far, forecast_total, reason FROM quota_forecasts "
        "WHERE scope = 'organization' AND days_of_data >= 7"
    )
    assert len(fresh) >= 5 and fresh["reason"].isna().all()
    assert fresh["used_so_far"].notna().all() and fresh["forecast_total"].notna().all()
    assert "no_data" not in set(pipeline.query("SELECT status FROM quota_status")["status"])


def test_stale_data_leave_open_credit_alerts_open(tmp_path: Path) -> None:
    """Alerts opened on data through 2024-06-10 are neither resolved nor re-opened when the same
    data are evaluated as of 2024-06-15 (a backfill run with --end in the past after a few days
    down): credits cannot go down within a period, a 'resolved' would be false and the next run
    with data would open them again as new occurrences."""
    from alerting.evaluate import unjudged
    from alerting.store import AlertStore

    data = loaded_until("2024-06-10")
    with AlertStore(tmp_path / "alerts.sqlite") as store:
        fresh = compute_alerts(data, ORGS, CONFIG, as_of="2024-06-10")
        opened = store.sync(fresh.candidates, ["log"], now=pd.Timestamp("2024-06-11T06:00Z"))
        credit = [k for k in opened.opened if "|credit_" in k]
        assert credit, "the fresh evaluation opens credit alerts"

        stale = compute_alerts(data, ORGS, CONFIG, as_of="2024-06-15")
        assert unjudged(stale.status) == {
            ("o1", "credit_actual"),
            ("o1", "credit_forecast"),
            ("o1", "anomaly"),
        }
        later = store.sync(
            stale.candidates,
            ["log"],
            now=pd.Timestamp("2024-06-16T06:00Z"),
            evaluated_organizations=["o1"],
            unjudged=unjudged(stale.status),
        )
        assert later.resolved == [] and later.queued == 0
        still = store.alerts_frame()
        assert set(still[still["status"].isin(["open", "notified"])]["alert_key"]) >= set(credit)

        # without leaving them alone (as before), the same sync resolves them
        resolved = store.sync(
            stale.candidates,
            ["log"],
            now=pd.Timestamp("2024-06-16T07:00Z"),
            evaluated_organizations=["o1"],
        )
        assert set(resolved.resolved) >= set(credit)
