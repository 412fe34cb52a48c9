"""The analyst views (one SQL file each, warehouse/views/) build over the tables the pipeline
publishes with exactly their documented columns, agree with the real derived tables of a demo run,
and skip cleanly when tables are absent."""

from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest

from warehouse import views


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


def test_every_view_builds_over_the_published_tables(demo_warehouse: Path, tmp_path: Path) -> None:
    """Each view file's query reads the tables as the pipeline writes them and yields exactly
    its documented columns."""
    path = tmp_path / "usage.duckdb"
    shutil.copy(demo_warehouse / "usage.duckdb", path)
    con = duckdb.connect(str(path))
    try:
        for v in views.VIEWS:
            con.execute(f'DROP VIEW IF EXISTS "{v.name}"')
        tables = views.live_tables(con)
        for v in views.applicable_views(tables):  # each after the views it reads, made as we go
            query_columns = [
                d[0] for d in con.execute(f"SELECT * FROM ({v.query}) LIMIT 0").description
            ]
            assert query_columns == v.column_names, v.name
            con.execute(views.create_sql(v, tables))
        made = views.create_views(con, strict=True)
        assert set(made) == {v.name for v in views.VIEWS}
        for v in views.VIEWS:
            frame = con.execute(f'SELECT * FROM "{v.name}"').df()
            assert list(frame.columns) == v.column_names, v.name
            assert len(frame) > 0, v.name
        budget = con.execute(
            "SELECT count(*) FROM usage_against_budget AS b JOIN quota_status AS s "
            "ON s.organization_id = b.organization_id AND s.metric = 'credits' "
            "AND coalesce(s.project_id, '') = coalesce(b.project_id, '') "
            "AND s.scope = b.scope AND s.value = b.used_so_far "
            'AND s."limit" IS NOT DISTINCT FROM b.budget'
        ).fetchone()[0]
        assert budget == con.execute("SELECT count(*) FROM usage_against_budget").fetchone()[0]
        limits = con.execute(
            "SELECT count(*) FROM resource_counts_over_time WHERE resource_limit IS NOT NULL"
        ).fetchone()[0]
        assert limits > 0, "resource limits come from quota_status when it exists"
    finally:
        con.close()


def test_resource_view_without_quota_status_has_no_limits(
    demo_warehouse: Path, tmp_path: Path
) -> None:
    path = tmp_path / "usage.duckdb"
    shutil.copy(demo_warehouse / "usage.duckdb", path)
    con = duckdb.connect(str(path))
    try:
        con.execute("DROP VIEW IF EXISTS resource_counts_over_time")
        con.execute("DROP VIEW IF EXISTS usage_against_budget")
        con.execute("DROP TABLE quota_status")
        assert "resource_counts_over_time" in views.create_views(con, strict=True)
        rows, limited = con.execute(
            "SELECT count(*), count(resource_limit) FROM resource_counts_over_time"
        ).fetchone()
        assert rows > 0 and limited == 0
    finally:
        con.close()


def test_a_malformed_view_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "broken_view.sql"
    bad.write_text("-- A view.\n--\n-- requires: organizations\n-- no colon here\nSELECT 1\n")
    with pytest.raises(views.ViewFileError, match=r"broken_view\.sql line 4"):
        views.parse_view(bad)


def test_only_base_views_without_derived_tables() -> None:
    base = {"organizations", "organization_users", "resource_usage", "credit_usage"}
    names = {v.name for v in views.applicable_views(base)}
    assert "usage_against_budget" not in names and "open_alerts" not in names
    statements = views.view_statements(base)
    assert len(statements) == len(names) == 9  # 6 views and the 3 they share
    order = [v.name for v in views.applicable_views(base)]
    assert order.index("project_names") < order.index("project_credit_lines")
    assert order.index("project_credit_lines") < order.index("daily_usage_by_project")
    assert "project_credit_lines" not in {
        v.name for v in views.applicable_views(base - {"organizations"})
    }
    assert all(
        s.startswith("CREATE OR REPLACE VIEW") and "COMMENT ON COLUMN" in s for s in statements
    )


def test_every_view_and_column_has_a_description() -> None:
    for v in views.VIEWS:
        assert v.description.strip()
        assert len(set(v.column_names)) == len(v.columns)
        assert all(c.description.strip() for c in v.columns), v.name


def test_latest_project_trends_is_the_last_complete_day(demo_warehouse: Path) -> None:
    """Today's row of the trends is a partial day (a 7-day sum missing most of a day reads as a
    drop): the view shows each organization's last day before today, as top_movers does, with
    that day's own trend values."""
    con = duckdb.connect(str(demo_warehouse / "usage.duckdb"), read_only=True)
    try:
        today = con.execute(
            "SELECT CAST(get_current_timestamp() AT TIME ZONE 'UTC' AS DATE)"
        ).fetchone()[0]
        shown = dict(query(con, "SELECT DISTINCT organization_id, day FROM latest_project_trends"))
        expected = dict(
            query(
                con,
                """SELECT organization_id, max(CAST(date AS DATE)) FROM project_usage_trends
                   WHERE CAST(date AS DATE) < CAST(get_current_timestamp() AT TIME ZONE 'UTC'
                                                   AS DATE)
                   GROUP BY ALL""",
            )
        )
        assert shown and shown == expected
        assert all(day < today for day in shown.values())
        # the demo run loads today so far: the trends hold it, the view leaves it out
        latest = dict(
            query(
                con,
                "SELECT organization_id, max(CAST(date AS DATE)) FROM project_usage_trends "
                "GROUP BY ALL",
            )
        )
        assert any(latest[o] == today and shown[o] < today for o in shown)
        movers = dict(query(con, "SELECT DISTINCT organization_id, as_of_day FROM top_movers"))
        assert {o: movers[o] for o in shown if o in movers} == {
            o: d for o, d in shown.items() if o in movers
        }
        mismatched = query(
            con,
            """SELECT l.organization_id, l.scope, l.project_id FROM latest_project_trends AS l
               JOIN project_usage_trends AS t
                 ON t.organization_id = l.organization_id AND t.scope = l.scope
                AND t.project_id IS NOT DISTINCT FROM l.project_id
                AND CAST(t.date AS DATE) = l.day
               WHERE t.credits IS DISTINCT FROM l.credits
                  OR t.mean_7d IS DISTINCT FROM l.rolling_7d
                  OR t.wow_change IS DISTINCT FROM l.wow_change""",
        )
        assert mismatched == []
    finally:
        con.close()
