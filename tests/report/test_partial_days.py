"""The report's basis: which day rows are partial (loaded on their own day), wherever they are in
the history, and the period rows and last complete day that follow from them."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import duckdb

from reports.data import prepare_usage

SCHEMA = """
    CREATE TABLE credit_usage (
        organization_id VARCHAR, organization_name VARCHAR, interval VARCHAR, scope VARCHAR,
        project_id VARCHAR, project_name VARCHAR, start_date TIMESTAMP, end_date TIMESTAMP,
        credits DOUBLE, loaded_at TIMESTAMP)
"""


def _con(rows: list[tuple[str, date, date, float, datetime]]) -> duckdb.DuckDBPyConnection:
    """A `credit_usage` of one organization: (interval, start, end, credits, loaded_at)."""
    con = duckdb.connect(":memory:")
    con.execute(SCHEMA)
    if rows:
        con.executemany(
            "INSERT INTO credit_usage "
            "VALUES ('o-1', 'Org', ?, 'organization', NULL, NULL, ?, ?, ?, ?)",
            [list(r) for r in rows],
        )
    return con


def _days(first: date, last: date, credits: float, loaded: datetime) -> list[tuple]:
    out, day = [], first
    while day <= last:
        out.append(("day", day, day + timedelta(days=1), credits, loaded))
        day += timedelta(days=1)
    return out


def test_a_partial_day_of_an_old_month_is_found_and_left_out_of_its_period() -> None:
    # September last loaded on its last day (the 30th still filling up), October after it
    # ended, November today
    september = datetime(2026, 9, 30, 10)
    october = datetime(2026, 11, 2, 6)
    today = datetime(2026, 11, 28, 9)
    con = _con(
        [
            *_days(date(2026, 9, 1), date(2026, 9, 30), 1.0, september),
            ("month", date(2026, 9, 1), date(2026, 10, 1), 30.0, september),
            *_days(date(2026, 10, 1), date(2026, 10, 31), 2.0, october),
            ("month", date(2026, 10, 1), date(2026, 11, 1), 62.0, october),
            *_days(date(2026, 11, 1), date(2026, 11, 28), 3.0, today),
            ("month", date(2026, 11, 1), date(2026, 12, 1), 84.0, today),
        ]
    )
    basis = prepare_usage(con)
    assert basis.through == date(2026, 11, 27)
    assert basis.partial == (date(2026, 9, 30), date(2026, 11, 28))
    periods = dict(
        con.execute(
            "SELECT CAST(start_date AS DATE), credits FROM report_periods ORDER BY 1"
        ).fetchall()
    )
    assert periods == {
        date(2026, 9, 1): 29.0,  # less the 30th
        date(2026, 10, 1): 62.0,
        date(2026, 11, 1): 81.0,  # through the 27th
    }
    (days,) = con.execute("SELECT count(*) FROM report_usage").fetchone()
    assert days == 29 + 31 + 27


def test_the_last_complete_day_is_found_however_far_back_it_is() -> None:
    con = _con(
        _days(date(2026, 1, 1), date(2026, 1, 10), 1.0, datetime(2026, 1, 20))
        + _days(date(2026, 11, 28), date(2026, 11, 28), 1.0, datetime(2026, 11, 28, 8))
    )
    basis = prepare_usage(con)
    assert basis.through == date(2026, 1, 10)
    assert basis.partial == (date(2026, 11, 28),)


def test_an_empty_warehouse_has_no_basis() -> None:
    basis = prepare_usage(_con([]))
    assert basis.through is None and basis.partial == ()
