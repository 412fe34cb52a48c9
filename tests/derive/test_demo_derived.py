"""On the demo warehouse (a real pipeline run), the derived tables the assets stored equal the
former whole-history pandas computation (issue 9: "a test compares them")."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd

from alerting.evaluate import compute_alerts
from insights.quotas import load_quotas
from tests.derive.pandas_reference import reference_trends
from tests.derive.test_trends_sql import assert_same_trends
from warehouse.derived_schema import PROJECT_USAGE_TRENDS, QUOTA_FORECASTS, QUOTA_STATUS
from warehouse.parquet_store import ParquetStore, to_arrow
from warehouse.schema import CREDIT_USAGE, ORGANIZATIONS, RESOURCE_USAGE


def test_demo_trends_equal_the_pandas_reference(demo_warehouse: Path) -> None:
    store = ParquetStore(demo_warehouse)
    usage = store.read(CREDIT_USAGE, "interval = 'day'")
    expected = reference_trends(usage, store.read(ORGANIZATIONS))
    assert_same_trends(store.read(PROJECT_USAGE_TRENDS), expected)
    months = sorted(p.parent.name for p in store.files(PROJECT_USAGE_TRENDS))
    assert months == sorted({f"month={d:%Y-%m}" for d in expected["date"]})


def test_demo_forecasts_and_status_equal_the_whole_history_evaluation(
    demo_warehouse: Path,
) -> None:
    store = ParquetStore(demo_warehouse)
    forecasts = store.read(QUOTA_FORECASTS)
    as_of = pd.Timestamp(forecasts["as_of"].max())
    orgs = store.read(ORGANIZATIONS)
    current = orgs[orgs["last_seen_at"] == orgs["last_seen_at"].max()]
    whole = compute_alerts(
        store.read(CREDIT_USAGE, "interval = 'day'"),
        current,
        load_quotas(),
        store.read(RESOURCE_USAGE),
        as_of=as_of,
        resources_as_of=as_of + timedelta(days=1),
    )
    assert len(forecasts) == len(whole.forecasts) > 0
    pd.testing.assert_frame_equal(forecasts, to_arrow(QUOTA_FORECASTS, whole.forecasts).to_pandas())
    pd.testing.assert_frame_equal(
        store.read(QUOTA_STATUS), to_arrow(QUOTA_STATUS, whole.status).to_pandas()
    )
