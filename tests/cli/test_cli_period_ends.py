"""Where a person reads a subscription period as `start .. end`, the end is the period's last
day (inclusive) in every command: `usage-etl alerts` and `usage-etl history` alike."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pipelines.cli import main
from pipelines.commands.history_cmd import changed_line
from warehouse.parquet_store import ParquetStore
from warehouse.schema import CREDIT_USAGE


def test_history_shows_the_periods_last_day(demo_warehouse: Path, capsys) -> None:
    months = ParquetStore(demo_warehouse).read(
        CREDIT_USAGE, "interval = 'month' AND scope = 'organization'"
    )
    row = months.sort_values(["start_date", "organization_name"]).iloc[0]
    start, end = row.start_date, row.end_date  # end_date is exclusive
    args = ["history", "--warehouse", str(demo_warehouse)]
    args += ["--organization", row.organization_name, "--period", f"{start:%Y-%m}"]
    assert main(args) == 0
    first = capsys.readouterr().out.splitlines()[0]
    last = end - timedelta(days=1)
    assert first.endswith(f"subscription period {start:%Y-%m-%d} .. {last:%Y-%m-%d}")


def test_history_closing_line_counts_loads_in_words() -> None:
    """The lake's history ends with how many loads changed the totals: one load is singular
    (the lake test sees two or three)."""
    assert changed_line(1) == "(1 load changed these totals)"
    assert changed_line(2) == "(2 loads changed these totals)"
