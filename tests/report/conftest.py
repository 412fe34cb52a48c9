"""Fixtures for the report tests: one demo warehouse per session (one real pipeline run), and a
copy of it with stand-in derived tables (quota_status, quota_alerts) and a hostile org name."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from pipelines.report.demo import build_demo_warehouse

HOSTILE_NAME = '<script>alert("x")</script> & <b>co</b>'


@pytest.fixture(scope="session")
def hostile_name() -> str:
    """The organization name the derived warehouse gives one organization (escaping tests)."""
    return HOSTILE_NAME


@pytest.fixture(scope="session")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared with tests/analyst when both run in one session (same base temp directory)."""
    root = tmp_path_factory.getbasetemp() / "demo-warehouse"
    warehouse = root / "warehouse"
    if not (warehouse / "usage.duckdb").exists():
        build_demo_warehouse(root)
    return warehouse


def drop_derived_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Remove the pipeline's derived tables, leaving the four base tables."""
    from warehouse.derived_schema import DERIVED_TABLES
    from warehouse.views import VIEWS

    for view in VIEWS:  # views were bound to the derived tables' shape; rebuilt on demand
        con.execute(f'DROP VIEW IF EXISTS "{view.name}"')
    for table in DERIVED_TABLES:
        con.execute(f'DROP TABLE IF EXISTS "{table.name}"')


@pytest.fixture(scope="session")
def base_tables_warehouse(demo_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo database with the base tables only (as before any derived asset ran)."""
    warehouse = tmp_path_factory.mktemp("base") / "warehouse"
    warehouse.mkdir()
    shutil.copy(demo_warehouse / "usage.duckdb", warehouse / "usage.duckdb")
    con = duckdb.connect(str(warehouse / "usage.duckdb"))
    try:
        drop_derived_tables(con)
    finally:
        con.close()
    return warehouse


@pytest.fixture(scope="session")
def derived_warehouse(demo_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo database plus quota_status/quota_alerts shaped as planned, one org renamed."""
    warehouse = tmp_path_factory.mktemp("derived") / "warehouse"
    warehouse.mkdir()
    shutil.copy(demo_warehouse / "usage.duckdb", warehouse / "usage.duckdb")
    con = duckdb.connect(str(warehouse / "usage.duckdb"))
    try:
        drop_derived_tables(con)
        con.execute(
            """
            CREATE TABLE quota_status AS
            WITH used AS (
                SELECT o.organization_id, o.period_start, o.period_end,
                       sum(c.credits) AS used_so_far,
                       greatest(date_diff('day', o.period_start, max(c.start_date)) + 1, 1)
                           AS elapsed,
                       date_diff('day', o.period_start, o.period_end) AS period_days
                FROM organizations AS o
                JOIN credit_usage AS c
                  ON c.organization_id = o.organization_id AND c.interval = 'day'
                 AND c.scope = 'organization' AND c.start_date >= o.period_start
                GROUP BY o.organization_id, o.period_start, o.period_end
            )
            SELECT organization_id, CAST(NULL AS VARCHAR) AS project_id, period_start,
                   period_end, used_so_far,
                   CASE WHEN organization_id = (SELECT min(organization_id) FROM organizations)
                        THEN NULL ELSE 5000.0 END AS budget,
                   used_so_far / elapsed * period_days AS forecast_total,
                   used_so_far / elapsed * period_days * 0.85 AS forecast_low,
                   used_so_far / elapsed * period_days * 1.15 AS forecast_high,
                   3.0 AS days_until_budget
            FROM used
            """
        )
        con.execute(
            """
            CREATE TABLE quota_alerts AS
            SELECT 'credits:' || organization_id AS alert_key, organization_id,
                   CAST(NULL AS VARCHAR) AS project_id, 'credit_forecast' AS rule,
                   1.0 AS threshold, period_start, 'notified' AS status,
                   CAST(now() AS TIMESTAMP) AS opened_at, CAST(now() AS TIMESTAMP) AS notified_at,
                   CAST(NULL AS TIMESTAMP) AS resolved_at, used_so_far AS value,
                   budget AS limit_value, forecast_total AS forecast,
                   'Forecast ' || round(forecast_total) || ' credits exceeds the budget of '
                       || budget || ' <before> the period ends & more' AS explanation
            FROM quota_status WHERE forecast_total > budget
            """
        )
        con.execute(
            "UPDATE organizations SET organization_name = ? "
            "WHERE organization_id = (SELECT max(organization_id) FROM organizations)",
            [HOSTILE_NAME],
        )
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return warehouse
