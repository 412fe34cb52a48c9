"""A month after the current one is refused, whether asked through `usage-etl run` (an --end
after today, exit 2 before anything starts) or as a partition range of the Dagster job (the
UI, `dg launch`, run tags Dagster does not check against the partitions): its days have not
happened, and the run says so in one line instead of crashing, leaving the warehouse as it
was."""

from __future__ import annotations

from datetime import UTC, date, datetime

from common.periods import shift_month
from tests.services.cli import assert_one_line_error, usage_etl_in_process
from tests.services.emulator import Pipeline


def next_month(today: date) -> date:
    return date(*shift_month(today.year, today.month, 1), 1)


def test_usage_etl_run_refuses_a_range_in_next_month() -> None:
    today = datetime.now(UTC).date()
    first = next_month(today)
    done = usage_etl_in_process("run", "--start", f"{first}", "--end", f"{first:%Y-%m}-05")
    assert_one_line_error(
        done, 2, f"--end {first:%Y-%m}-05: expected a date no later than today ({today})"
    )


def test_a_partition_of_next_month_fails_in_one_line_and_writes_nothing(
    pipeline_after_demo_run: Pipeline,
) -> None:
    pipeline = pipeline_after_demo_run
    today = datetime.now(UTC).date()
    first = next_month(today)
    before = pipeline.query("select * from credit_usage order by all")
    slices = pipeline.warehouse / "parquet" / "credit_usage"
    files = {p: p.read_bytes() for p in slices.rglob("*.parquet")}
    summary = pipeline.run(first, date(first.year, first.month, 5))
    assert not summary.success
    assert summary.error is not None and "\n" not in summary.error
    assert summary.error == (
        f"credit_usage_daily: common.errors.InputError: partition {first}: expected a month "
        f"no later than the current one ({today:%Y-%m}-01, today is {today}); its days have "
        "not happened yet"
    )
    assert files and not any(pipeline.warehouse.rglob(f"month={first:%Y-%m}"))
    assert pipeline.query("select * from credit_usage order by all").equals(before)
    assert {p: p.read_bytes() for p in slices.rglob("*.parquet")} == files
