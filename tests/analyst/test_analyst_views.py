"""The analyst views over the real derived tables of a demo run agree with those tables; they
also build over the derived tables' planned spelling (stand-ins, the fallback `warehouse/views.py`
still carries), and skip cleanly when those tables are absent."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb

from warehouse import views

ORGS = "SELECT organization_id, organization_name, period_start, period_end FROM organizations"
PLANNED = [
    f"""CREATE TABLE quota_status AS SELECT organization_id, CAST(NULL AS VARCHAR) AS project_id,
        period_start, period_end, 1000.0 AS used_so_far, 5000.0 AS budget,
        6000.0 AS forecast_total, 5500.0 AS forecast_low, 6500.0 AS forecast_high,
        3.0 AS days_until_budget FROM ({ORGS})""",
    f"""CREATE TABLE quota_alerts AS SELECT 'k-' || organization_id AS alert_key, organization_id,
        CAST(NULL AS VARCHAR) AS project_id, 'credit_forecast' AS rule, 1.0 AS threshold,
        period_start, 'open' AS status, CAST(now() AS TIMESTAMP) AS opened_at,
        CAST(NULL AS TIMESTAMP) AS notified_at, CAST(NULL AS TIMESTAMP) AS resolved_at,
        1.0 AS value, 2.0 AS limit_value, 3.0 AS forecast, 'why' AS explanation FROM ({ORGS})""",
    """CREATE TABLE project_usage_trends AS SELECT organization_id, scope, project_id,
        project_name, start_date AS day, credits, credits AS rolling_7d, credits AS rolling_30d,
        0.1 AS wow_change, 0.5 AS share_of_org, 1 AS rank, false AS is_new, false AS is_dormant
        FROM credit_usage WHERE interval = 'day'""",
]


def query(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def test_views_over_the_real_derived_tables_agree_with_them(demo_warehouse: Path) -> None:
    con = duckdb.connect(str(demo_warehouse / "usage.duckdb"), read_only=True)
    try:
        for v in views.VIEWS:
            frame = con.execute(f'SELECT * FROM "{v.name}"').df()
            assert list(frame.columns) == v.column_names, v.name
            assert len(frame) > 0, v.name
        # usage_against_budget: quota_status's credit rows, one for one
        assert query(
            con,
            """SELECT organization_id, coalesce(project_id, ''), used_so_far, budget,
                      forecast_total, status FROM usage_against_budget ORDER BY ALL""",
        ) == query(
            con,
            """SELECT organization_id, coalesce(project_id, ''), value, "limit",
                      forecast_total, status FROM quota_status
               WHERE metric = 'credits' ORDER BY ALL""",
        )
        # open_alerts: exactly the alerts not resolved or expired
        assert query(con, "SELECT alert_key, rule FROM open_alerts ORDER BY ALL") == query(
            con,
            """SELECT alert_key, rule FROM quota_alerts
               WHERE status IN ('open', 'notified') ORDER BY ALL""",
        )
        org_wide = query(con, "SELECT alert_key FROM open_alerts WHERE project_id IS NULL")
        assert org_wide, "the demo raises organization-wide alerts"
        assert sorted(org_wide) == query(
            con,
            """SELECT alert_key FROM quota_alerts WHERE status IN ('open', 'notified')
                 AND coalesce(project_id, '') = '' ORDER BY ALL""",
        ), "an organization-wide alert has a null project_id"
        # resource_counts_over_time: the resource limits quota_status knows
        limits = dict(
            query(
                con,
                """SELECT DISTINCT organization_id || '/' || resource, resource_limit
                   FROM resource_counts_over_time WHERE resource_limit IS NOT NULL""",
            )
        )
        assert limits, "the demo quotas set resource limits"
        assert limits == dict(
            query(
                con,
                """SELECT DISTINCT organization_id || '/' || metric, "limit" FROM quota_status
                   WHERE metric <> 'credits' AND scope = 'organization'
                     AND "limit" IS NOT NULL""",
            )
        )
    finally:
        con.close()


def test_derived_views_build_in_the_planned_spelling(demo_warehouse: Path, tmp_path: Path) -> None:
    ddl = PLANNED
    path = tmp_path / "usage.duckdb"
    shutil.copy(demo_warehouse / "usage.duckdb", path)
    con = duckdb.connect(str(path))
    try:
        from warehouse.derived_schema import DERIVED_TABLES

        for table in DERIVED_TABLES:  # replaced by the stand-ins below
            con.execute(f'DROP TABLE IF EXISTS "{table.name}"')
        for statement in ddl:
            con.execute(statement)
        made = views.create_views(con, strict=True)
        assert set(made) == {v.name for v in views.VIEWS}
        for v in views.VIEWS:
            frame = con.execute(f'SELECT * FROM "{v.name}"').df()
            assert list(frame.columns) == v.column_names, v.name
            assert len(frame) > 0, v.name
        budget = con.execute(
            "SELECT DISTINCT budget, used_so_far FROM usage_against_budget"
        ).fetchall()
        assert budget == [(5000.0, 1000.0)]
        assert (
            con.execute("SELECT count(*) FROM open_alerts WHERE project_id IS NULL").fetchone()[0]
            == 6
        )
    finally:
        con.close()


def test_only_base_views_without_derived_tables() -> None:
    base = {"organizations", "organization_users", "resource_usage", "credit_usage"}
    names = {v.name for v in views.applicable_views(base)}
    assert "usage_against_budget" not in names and "open_alerts" not in names
    statements = views.view_statements(base)
    assert len(statements) == len(names) == 6
    assert all(
        s.startswith("CREATE OR REPLACE VIEW") and "COMMENT ON COLUMN" in s for s in statements
    )


def test_every_view_and_column_has_a_description() -> None:
    for v in views.VIEWS:
        assert v.description.strip()
        assert len(set(v.column_names)) == len(v.columns)
        assert all(c.description.strip() for c in v.columns), v.name
