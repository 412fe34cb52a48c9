"""A demo warehouse: the bundled emulator's demo data loaded by one real pipeline run.

Owns `build_demo_warehouse()`, used to regenerate `docs/data-dictionary.md`
(`usage-etl dictionary --demo`), to preview the report, and by the analyst and report tests.
The emulator's clock is frozen at the moment of the call, and the run covers the previous and
the current month (the `usage-etl run` default).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path


def build_demo_warehouse(root: Path, *, seed: int = 11) -> Path:
    """Run the whole pipeline against a loopback emulator into `root/warehouse`; returns it.

    Raises RuntimeError naming the failure when the run does not succeed.
    """
    from emulator.server import EmulatorConfig, EmulatorServer
    from pipelines.analytics.periods import shift_month as add_months
    from pipelines.commands.run_cmd import execute
    from pipelines.settings import environment

    root = Path(root)
    warehouse = root / "warehouse"
    now = datetime.now(UTC).replace(microsecond=0)
    config = EmulatorConfig(seed=seed, rate_limit_per_minute=0, now=now)
    with EmulatorServer(config, host="127.0.0.1", port=0) as server:
        env = {
            "UBIOPS_API_HOST": server.base_url,
            "UBIOPS_API_TOKEN": server.token,
            "USAGE_WAREHOUSE": str(warehouse),
            "DAGSTER_HOME": str(root / "dagster"),
        }
        with environment(env):
            today = now.date()
            year, month = add_months(today.year, today.month, -1)
            summary = execute(date(year, month, 1), today, log_level="WARNING")
    if not summary.success:
        raise RuntimeError("demo pipeline run failed: " + "; ".join(summary.lines()))
    return warehouse
