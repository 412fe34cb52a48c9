"""One Dagster run against the emulator (demo + 31 organizations, one per anchor day): the
current period is the same in `organizations`, every view, `quota_status`, the alerts and
`usage-etl alerts`; period rows are whole periods equal to their days."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from common.periods import current_period, shift_month
from pipelines.cli import main
from pipelines.commands.run_cmd import execute
from tests.services.emulator import start_emulator


def query(warehouse: Path, sql: str) -> pd.DataFrame:
    con = duckdb.connect(str(warehouse / "usage.duckdb"), read_only=True)
    try:
        return con.execute(sql).df()
    finally:
        con.close()


def test_current_period_is_the_same_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    warehouse = tmp_path / "warehouse"
    with start_emulator(organizations=37) as server:
        monkeypatch.setenv("UBIOPS_API_HOST", server.base_url)
        monkeypatch.setenv("UBIOPS_API_TOKEN", server.token)
        monkeypatch.setenv("USAGE_WAREHOUSE", str(warehouse))
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
        today = datetime.now(UTC).date()
        py, pm = shift_month(today.year, today.month, -1)
        summary = execute(date(py, pm, 1), today, log_level="WARNING")
        truth = {o.id: o.anchor_day for o in server.state.orgs.values()}
    assert summary.success

    orgs = query(warehouse, "SELECT * FROM organizations").set_index("organization_id")
    assert len(orgs) == 37 and set(orgs.period_anchor_day) == set(range(1, 32))
    expected = {
        org_id: tuple(pd.Timestamp(d) for d in current_period(today, truth[org_id]))
        for org_id in orgs.index
    }
    for org_id, row in orgs.iterrows():
        assert (row.period_start, row.period_end) == expected[org_id], row.organization_name

    def same(frame: pd.DataFrame, where: str) -> None:
        assert len(frame), where
        for row in frame.itertuples():
            got = (pd.Timestamp(row.period_start), pd.Timestamp(row.period_end))
            assert got == expected[row.organization_id], (where, row.organization_name)

    same(
        query(warehouse, "SELECT * FROM period_usage_by_organization WHERE is_current_period"),
        "period_usage_by_organization",
    )
    current = query(warehouse, "SELECT * FROM period_usage_by_organization WHERE is_current_period")
    assert set(current.organization_id) == set(orgs.index)  # exactly one current row each
    assert not current.organization_id.duplicated().any()
    same(
        query(warehouse, "SELECT * FROM period_usage_by_project WHERE is_current_period"),
        "period_usage_by_project",
    )
    budget = query(warehouse, "SELECT * FROM usage_against_budget WHERE scope = 'organization'")
    same(budget, "usage_against_budget")
    assert set(budget.organization_id) == set(orgs.index)
    # limit_date only inside the current period
    dated = budget[budget.limit_date.notna()]
    assert (pd.to_datetime(dated.limit_date) < pd.to_datetime(dated.period_end)).all()
    assert set(budget.limit_outlook) <= {
        "reached",
        "reached this period",
        "not reached this period",
    }
    same(query(warehouse, "SELECT * FROM quota_status WHERE metric = 'credits'"), "quota_status")
    alerts = query(warehouse, "SELECT * FROM open_alerts")
    same(alerts, "open_alerts")

    # whole periods: one row per organization and period, equal to the sum of its days
    check = query(
        warehouse,
        """
        SELECT p.organization_id, p.start_date, p.credits,
               sum(d.credits) AS days, count(d.credits) AS n
        FROM credit_usage AS p
        JOIN credit_usage AS d
          ON d.organization_id = p.organization_id AND d.interval = 'day'
         AND d.scope = 'organization'
         AND d.start_date >= p.start_date AND d.start_date < p.end_date
        WHERE p.interval = 'month' AND p.scope = 'organization'
          AND p.start_date >= (SELECT min(start_date) FROM credit_usage WHERE interval = 'day')
        GROUP BY ALL
        """,
    )
    assert len(check) >= 37
    assert (check.credits - check.days).abs().max() < 1e-3

    capsys.readouterr()
    assert main(["alerts", "--warehouse", str(warehouse)]) == 0
    out = capsys.readouterr().out
    for row in alerts.itertuples():
        start, end = expected[row.organization_id]
        last = pd.Timestamp(end) - pd.Timedelta(days=1)  # shown inclusive
        assert f"{start:%Y-%m-%d} .. {last:%Y-%m-%d}" in out
