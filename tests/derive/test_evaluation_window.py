"""The alert evaluation on the window `usage_window` reads (the last days, in SQL) equals the
evaluation on the whole history (issue 9: numbers identical before and after)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alerting.evaluate import compute_alerts
from insights.quotas import QuotaConfig, parse_quotas
from insights.usage_window import (
    load_evaluation_window,
    load_resource_window,
    load_usage_window,
    window_days,
)
from tests.derive.test_trends_sql import _row, write_usage
from warehouse.files import writer_lock
from warehouse.parquet_store import ParquetStore
from warehouse.schema import RESOURCE_USAGE

SUBSCRIPTIONS = ["free", "starter", "professional", "free"]


def config(anomaly: bool) -> QuotaConfig:
    return parse_quotas(
        {
            "subscriptions": {
                "free": {"credit_budget": 2000, "resources": {"projects": 3, "users": 4}},
                "starter": {"credit_budget": 4000, "resources": {"projects": 10}},
                "professional": {"credit_budget": 90000},
            },
            "organizations": {"org1": {"projects": {"p10": 300}}},
            "rules": {"anomaly": {"enabled": anomaly, "sensitivity": 3.0}},
        }
    )


END = pd.Timestamp("2024-11-20")


def long_usage(seed: int = 8) -> pd.DataFrame:
    """Day rows of 4 organizations up to END, starting 150 to 300 days before it: steady,
    growing, spiking and stopping projects, a deleted-projects line, a project that only used
    credits long ago."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    for o in range(4):
        org = f"org{o}"
        days = pd.date_range(end=END, periods=int(rng.integers(150, 300)), freq="D", unit="us")
        n = len(days)
        for i, day in enumerate(days):
            values = {
                f"p{o}0": 20.0 + 0.2 * i * o + float(rng.normal(0, 2)),
                f"p{o}1": 30.0 * (i % 7 < 5) + (400.0 if i in (n - 41, n - 10 + o) else 0.0),
                f"p{o}2": 15.0 if i < n - 20 else 0.0,  # stops
                f"p{o}3": 5.0 if i < 20 else 0.0,  # long ago only
                f"p{o}4": 25.0 if i >= n - 10 else None,  # new
            }
            total = 0.0
            for pid, value in values.items():
                if value is None:
                    continue
                value = max(value, 0.0)
                rows.append(_row(org, f"name{o}", "project", pid, day, value))
                total += value
            deleted = 3.0 if i > n // 2 else 0.0
            rows.append(_row(org, f"name{o}", "deleted_projects", None, day, deleted))
            rows.append(_row(org, f"name{o}", "organization", None, day, total + deleted))
    return pd.DataFrame(rows)


def organizations(usage: pd.DataFrame) -> pd.DataFrame:
    ids = sorted(usage["organization_id"].unique())
    return pd.DataFrame(
        {
            "organization_id": ids,
            "organization_name": [f"name-{i}" for i in ids],
            "subscription": [SUBSCRIPTIONS[i % 4] for i in range(len(ids))],
            "period_anchor_day": pd.array([1, 20, 31, None][: len(ids)], dtype="Int16"),
        }
    )


def resources(usage: pd.DataFrame) -> pd.DataFrame:
    """Resource counts observed every other day for 150 days, growing."""
    rng = np.random.default_rng(1)
    end = usage["start_date"].max()
    rows = []
    for org in sorted(usage["organization_id"].unique()):
        for i, back in enumerate(range(150, -1, -2)):
            rows.append(
                {
                    "organization_id": org,
                    "observed_at": end - pd.Timedelta(days=back) + pd.Timedelta(hours=6),
                    "projects": 1 + i // 12 + int(rng.integers(0, 2)),
                    "users": 2 + i // 30,
                }
            )
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def long_history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    usage = long_usage()
    warehouse = tmp_path_factory.mktemp("long-history")
    write_usage(warehouse, usage)
    observed = resources(usage)
    store = ParquetStore(warehouse)
    with writer_lock(warehouse):
        for day, part in observed.groupby(observed["observed_at"].dt.strftime("%Y-%m-%d")):
            store.append_file(RESOURCE_USAGE, {"observed_date": day}, "snapshot.parquet", part)
    return warehouse, usage


@pytest.mark.parametrize(
    ("days_before_end", "anomaly", "series_window"),
    [(0, False, True), (9, True, True), (40, True, True), (0, False, False)],
    ids=[
        "last-day",
        "spike-day-anomaly-rule",
        "earlier-anomaly-rule",
        "last-day-every-series-whole-window",
    ],
)
def test_evaluation_on_the_window_equals_the_whole_history(
    long_history: tuple[Path, pd.DataFrame],
    anomaly: bool,
    days_before_end: int,
    series_window: bool,
) -> None:
    warehouse, usage = long_history
    store = ParquetStore(warehouse)
    quotas = config(anomaly)
    orgs = organizations(usage)
    as_of = usage["start_date"].max() - timedelta(days=days_before_end)
    whole = compute_alerts(
        usage[usage["start_date"] <= as_of],
        orgs,
        quotas,
        store.read(RESOURCE_USAGE),
        as_of=as_of,
        resources_as_of=as_of,
    )
    if series_window:  # as the pipeline reads it: the projects of most organizations shorter
        window = load_evaluation_window(store, as_of, quotas, orgs)
        first = window.daily.groupby(["organization_id", "scope"])["date"].min()
        assert first["org0", "project"] > first["org0", "organization"]  # a shorter window
        assert first["org1", "project"] == first["org1", "organization"]  # a project budget
    else:
        window = load_usage_window(store, as_of, window_days(quotas))
    assert window.daily["date"].min() > usage["start_date"].min()  # history was cut
    observed = load_resource_window(store, as_of)
    assert len(observed.observations) < len(store.read(RESOURCE_USAGE))
    windowed = compute_alerts(
        window.daily,
        orgs,
        quotas,
        observed.observations,
        as_of=as_of,
        resources_as_of=as_of,
        first_days=window.first_days,
        last_days=window.last_days,
        observation_counts=observed.counts,
    )
    assert len(whole.candidates) > 0 and set(whole.candidates["rule"]) >= {
        "credit_actual",
        "credit_forecast",
        "resource_limit",
    }
    pd.testing.assert_frame_equal(windowed.forecasts, whole.forecasts)
    pd.testing.assert_frame_equal(windowed.status, whole.status)
    pd.testing.assert_frame_equal(windowed.candidates, whole.candidates)
    if days_before_end == 9:  # org0's spike is on its last day
        assert "anomaly" in set(whole.candidates["rule"])
    if anomaly:
        assert whole.anomalies is not None and windowed.anomalies is not None
        last = whole.anomalies[whole.anomalies["date"] == whole.anomalies["date"].max()]
        mine = windowed.anomalies[windowed.anomalies["date"] == windowed.anomalies["date"].max()]
        pd.testing.assert_frame_equal(mine.reset_index(drop=True), last.reset_index(drop=True))


def test_resource_window_without_a_manifest_reads_every_snapshot(tmp_path: Path) -> None:
    observed = resources(long_usage().head(2000))
    store = ParquetStore(tmp_path)
    with writer_lock(tmp_path):
        for day, part in observed.groupby(observed["observed_at"].dt.strftime("%Y-%m-%d")):
            store.append_file(RESOURCE_USAGE, {"observed_date": day}, "snapshot.parquet", part)
    as_of = observed["observed_at"].max() - timedelta(days=3)
    with_manifest = load_resource_window(store, as_of)
    store.manifest(RESOURCE_USAGE).path.unlink()
    scanned = load_resource_window(store, as_of)
    assert with_manifest.counts == scanned.counts and with_manifest.counts
    assert 0 < len(scanned.observations) < len(observed)
    pd.testing.assert_frame_equal(with_manifest.observations, scanned.observations)


def test_an_organization_without_total_rows_is_read_whole(tmp_path: Path) -> None:
    """An organization whose totals are the sum of its series (no organization rows) gets every
    series for the whole window: its forecast and alerts equal the whole history's."""
    usage = long_usage()
    usage = usage[~((usage["organization_id"] == "org2") & (usage["scope"] == "organization"))]
    write_usage(tmp_path, usage)
    store = ParquetStore(tmp_path)
    quotas, orgs = config(False), organizations(usage)
    as_of = usage["start_date"].max()
    whole = compute_alerts(usage, orgs, quotas, as_of=as_of)
    window = load_evaluation_window(store, as_of, quotas, orgs)
    first = window.daily.groupby("organization_id")["date"].min()
    assert first["org2"] == first["org3"] < window.daily["date"].max() - timedelta(days=100)
    org3 = window.daily[window.daily["organization_id"] == "org3"]
    assert org3[org3["scope"] == "project"]["date"].min() > first["org3"]  # org3: cut
    windowed = compute_alerts(
        window.daily,
        orgs,
        quotas,
        as_of=as_of,
        first_days=window.first_days,
        last_days=window.last_days,
    )
    assert (windowed.forecasts["organization_id"] == "org2").any()
    pd.testing.assert_frame_equal(windowed.forecasts, whole.forecasts)
    pd.testing.assert_frame_equal(windowed.candidates, whole.candidates)


@pytest.mark.parametrize("stops_days_before", [150, 20, 1])
def test_an_organization_whose_data_end_before_as_of_gets_no_forecast(
    tmp_path: Path, stops_days_before: int
) -> None:
    """org2's rows end before as_of (a backfill of an older range; before the window, or
    within it): no forecast and no used-so-far figure, `days_of_data` counts the loaded days
    only, no credit alert; the window's evaluation equals the whole history's."""
    usage = long_usage()
    last_loaded = END - timedelta(days=stops_days_before)
    usage = usage[(usage["organization_id"] != "org2") | (usage["start_date"] <= last_loaded)]
    write_usage(tmp_path, usage)
    store = ParquetStore(tmp_path)
    quotas, orgs = config(True), organizations(usage)
    whole = compute_alerts(usage, orgs, quotas, as_of=END)
    window = load_evaluation_window(store, END, quotas, orgs)
    assert window.last_days["org2"] == last_loaded and window.last_days["org0"] == END
    windowed = compute_alerts(
        window.daily,
        orgs,
        quotas,
        as_of=END,
        first_days=window.first_days,
        last_days=window.last_days,
    )
    pd.testing.assert_frame_equal(windowed.forecasts, whole.forecasts)
    pd.testing.assert_frame_equal(windowed.status, whole.status)
    pd.testing.assert_frame_equal(windowed.candidates, whole.candidates)

    forecasts = whole.forecasts.set_index("organization_id")
    org2 = forecasts.loc["org2"]
    org2 = org2[org2["scope"] == "organization"].iloc[0] if org2.ndim == 2 else org2
    first = usage[usage["organization_id"] == "org2"]["start_date"].min()
    assert org2["days_of_data"] == (last_loaded - first).days + 1
    assert np.isnan(org2["used_so_far"]) and np.isnan(org2["forecast_total"])
    assert f"{last_loaded:%Y-%m-%d}" in org2["reason"]
    assert pd.isna(forecasts.loc["org0", "reason"]) and forecasts.loc["org0", "used_so_far"] > 0
    status = whole.status[(whole.status["metric"] == "credits")].set_index("organization_id")
    assert status.loc["org2", "status"] == "no_data"
    assert np.isnan(status.loc["org2", "used_pct"]) and np.isnan(status.loc["org2", "value"])
    assert status.loc["org0", "status"] != "no_data"
    assert not (whole.candidates["organization_id"] == "org2").any()
