"""Demo warehouses: the bundled emulator's demo data loaded by real pipeline runs.

Owns `build_demo_warehouse()` (the previous and the current month, the `usage-etl run` default),
used to regenerate `docs/data-dictionary.md` (`usage-etl dictionary --demo`), to preview the
report, and by the analyst and report tests; and `build_long_demo_warehouse()` (24 months, for
the report at a long range). The emulator's clock is frozen at the moment of the call.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

EMULATOR_MONTHS = 15  # the emulator's demo data cover 15 months ending on its "today"


def _run(root: Path, warehouse: Path, now: datetime, start: date, end: date, seed: int) -> None:
    from common.optional import require_emulator

    require_emulator("a demo warehouse is loaded from the bundled API emulator")
    from emulator.server import EmulatorConfig, EmulatorServer
    from pipelines.commands.run_cmd import execute, quiet_library_logs

    config = EmulatorConfig(seed=seed, rate_limit_per_minute=0, now=now)
    # the `log` channel's alert lines go to the demo warehouse's notifications.log, as in
    # `usage-etl run`: without it they reached stderr (Python's last-resort handler) of every
    # command that builds a demo warehouse (`dictionary --demo`, the report preview)
    with (
        quiet_library_logs(warehouse, verbose=False),
        EmulatorServer(config, host="127.0.0.1", port=0) as server,
    ):
        overrides: dict[str, dict[str, object]] = {
            "ubiops": {"host": server.base_url, "token": server.token},
            "warehouse": {"path": str(warehouse)},
        }
        summary = execute(
            start, end, log_level="WARNING", overrides=overrides, dagster_home=root / "dagster"
        )
    if not summary.success:
        raise RuntimeError("demo pipeline run failed: " + "; ".join(summary.lines()))


def build_demo_warehouse(root: Path, *, seed: int = 11, now: datetime | None = None) -> Path:
    """Run the whole pipeline against a loopback emulator into `root/warehouse`; returns it.

    `now` is the emulator's frozen clock (default: this moment); the same seed and clock give
    an emulator in the same state later. Raises RuntimeError naming the failure when the run
    does not succeed.
    """
    from common.periods import shift_month

    root = Path(root)
    warehouse = root / "warehouse"
    now = now or datetime.now(UTC).replace(microsecond=0)
    today = now.date()
    year, month = shift_month(today.year, today.month, -1)
    _run(root, warehouse, now, date(year, month, 1), today, seed)
    return warehouse


def build_long_demo_warehouse(root: Path, *, months: int = 24, seed: int = 11) -> Path:
    """`months` calendar months of demo data (up to 2 x 14) in `root/warehouse`; returns it.

    The emulator serves 15 months ending on its clock, so two runs make the range: the first
    against an emulator whose clock is set back, loading the older months; the second against
    one at the real time, loading the rest up to today (the same seed gives the same
    organizations and projects; the months of each part come from one consistent data set).
    """
    from common.periods import shift_month

    if not 1 <= months <= 2 * (EMULATOR_MONTHS - 1):
        raise ValueError(f"months must be 1..{2 * (EMULATOR_MONTHS - 1)}, got {months}")
    root = Path(root)
    warehouse = root / "warehouse"
    now = datetime.now(UTC).replace(microsecond=0)
    today = now.date()
    first_year, first_month = shift_month(today.year, today.month, -(months - 1))
    if months <= EMULATOR_MONTHS - 1:
        _run(root, warehouse, now, date(first_year, first_month, 1), today, seed)
        return warehouse
    back = months - (EMULATOR_MONTHS - 1)  # the second run's first month: this many months ago
    split_year, split_month = shift_month(today.year, today.month, -back)
    split = date(split_year, split_month, 1)
    # The first run's emulator clock stands at the split month's first midnight, so every day of
    # the months it loads is complete (a blocking check refuses a month with missing days).
    earlier = datetime(split_year, split_month, 1, tzinfo=UTC)
    first = date(first_year, first_month, 1)
    _run(root, warehouse, earlier, first, split - timedelta(days=1), seed)
    _run(root, warehouse, now, split, today, seed)
    return warehouse
