"""`usage-etl run`: materialize the whole asset graph for a date range through Dagster.

Runs go to a persistent Dagster instance (`DAGSTER_HOME`, default `<warehouse>/dagster`), so
`dagster dev` shows them. With neither `UBIOPS_API_TOKEN` nor `UBIOPS_API_HOST` set, the bundled
emulator is started on loopback with its demo data and used instead of the real API.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from pipelines import settings
from pipelines.analytics.periods import shift_month as add_months


def parse_day(flag: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{flag} {value!r}: expected a date as YYYY-MM-DD") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "run",
        help="pull usage for a date range into the warehouse (the whole pipeline)",
        description=(
            "Materialize every asset for the months covering --start..--end (inclusive; default "
            "the previous and the current month). Without UBIOPS_API_TOKEN and UBIOPS_API_HOST "
            "the bundled emulator with demo data stands in for the API."
        ),
    )
    parser.add_argument("--start", help="first day, YYYY-MM-DD")
    parser.add_argument("--end", help="last day (inclusive), YYYY-MM-DD")
    parser.add_argument("--warehouse", help="warehouse directory (USAGE_WAREHOUSE, ./data)")
    parser.add_argument("--quotas", help="quota/alert YAML (USAGE_QUOTAS, quotas.example.yaml)")
    parser.set_defaults(handler=handle)


@dataclass
class RunSummary:
    success: bool
    seconds: float
    rows: dict[str, int] = field(default_factory=dict)
    organizations: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    failed_checks: list[str] = field(default_factory=list)
    error: str | None = None
    open_alerts: int = 0
    report: str = ""

    def lines(self) -> list[str]:
        status = "succeeded" if self.success and not self.failed_checks else "FAILED"
        out = [
            f"run {status} in {self.seconds:.1f}s: {self.organizations} organizations, "
            f"{self.requests} API requests, {self.retries} retries, "
            f"{self.rate_limited} rate-limited",
        ]
        if self.rows:
            out.append("rows: " + ", ".join(f"{k}={v}" for k, v in self.rows.items()))
        out.append(f"open alerts: {self.open_alerts} (usage-etl alerts lists them)")
        if self.report:
            out.append(f"report: {self.report}")
        for check in self.failed_checks:
            out.append(f"failed check: {check}")
        if self.error:
            out.append(f"error: {self.error}")
        return out


def month_range(start: date, end: date) -> tuple[str, str]:
    return f"{start:%Y-%m}-01", f"{end:%Y-%m}-01"


def resolve_range(start_text: str | None, end_text: str | None, today: date) -> tuple[date, date]:
    from assets.credit_usage import PARTITIONS_START

    py, pm = add_months(today.year, today.month, -1)
    start = parse_day("--start", start_text) if start_text else date(py, pm, 1)
    end = parse_day("--end", end_text) if end_text else today
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    earliest = date.fromisoformat(PARTITIONS_START)
    if start < earliest:
        raise ValueError(f"--start {start}: expected a date on or after {earliest}")
    if end > today:
        raise ValueError(f"--end {end}: expected a date no later than today ({today})")
    return start, end


@contextlib.contextmanager
def api_target() -> Iterator[None]:
    """Point the pipeline at the real API, or at a freshly started bundled emulator."""
    if not settings.should_embed_emulator():
        print(f"usage-etl: using the UbiOps API at {settings.api_host()}", file=sys.stderr)
        yield
        return
    from emulator.server import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(), host="127.0.0.1", port=0) as server:
        print(
            "usage-etl: UBIOPS_API_TOKEN and UBIOPS_API_HOST are not set: using the bundled "
            f"emulator with demo data at {server.base_url}",
            file=sys.stderr,
        )
        target = {"UBIOPS_API_HOST": server.base_url, "UBIOPS_API_TOKEN": server.token}
        with settings.environment(target):
            yield


def execute(start: date, end: date, log_level: str = "INFO") -> RunSummary:
    """Run the `usage_etl` job on the persistent instance; the environment names the target."""
    from dagster import DagsterInstance

    from pipelines.definitions import defs
    from pipelines.schedules import range_tags

    home = settings.dagster_home(settings.warehouse_dir())
    os.environ["DAGSTER_HOME"] = str(home)
    first, last = month_range(start, end)
    began = time.monotonic()
    with DagsterInstance.get() as instance:
        result = defs.resolve_job_def("usage_etl").execute_in_process(
            instance=instance,
            tags=range_tags(first, last),
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
    summary = RunSummary(success=result.success, seconds=time.monotonic() - began)
    for event in result.get_asset_materialization_events():
        mat = event.materialization
        if mat is None:
            continue
        meta = {k: v.value for k, v in mat.metadata.items()}
        summary.requests += int(meta.get("api_requests", 0) or 0)
        summary.retries += int(meta.get("api_retries", 0) or 0)
        summary.rate_limited += int(meta.get("api_rate_limited_429", 0) or 0)
        if mat.asset_key.to_user_string() == "organizations":
            summary.organizations = int(meta.get("organizations", 0) or 0)
        if mat.asset_key.to_user_string() == "quota_alerts":
            summary.open_alerts = int(meta.get("dagster/row_count", 0) or 0)
        if mat.asset_key.to_user_string() == "usage_report":
            summary.report = str(meta.get("path", ""))
        if mat.asset_key.to_user_string() == "usage_database":
            summary.rows = {
                k.removeprefix("rows/"): int(v) for k, v in meta.items() if k.startswith("rows/")
            }
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            key = evaluation.asset_check_key
            summary.failed_checks.append(f"{key.asset_key.to_user_string()}:{key.name}")
    if not result.success:
        for event in result.all_events:
            if event.is_step_failure and event.step_failure_data is not None:
                err = event.step_failure_data.error
                cause = err.cause if err is not None and err.cause is not None else err
                message = cause.message.strip().splitlines()[-1] if cause else "step failed"
                summary.error = f"{event.step_key}: {message}"
                break
    return summary


def check_lake() -> None:
    """In lake mode, prove the catalog answers and the data path takes a write (exit 2 if not)."""
    from warehouse.lake import LakeConfig, LakeConfigError, check

    try:
        lake = LakeConfig.from_env()
        if lake is not None:
            check(lake)
            print(f"usage-etl: publishing to the shared lake: {lake.redacted()}", file=sys.stderr)
    except LakeConfigError as exc:
        raise ValueError(str(exc)) from None


def handle(args: argparse.Namespace) -> int:
    from pipelines.notify.validation import validate_channels
    from pipelines.quotas import load_quotas

    warehouse = settings.warehouse_dir(args.warehouse)
    os.environ["USAGE_WAREHOUSE"] = str(warehouse)
    if args.quotas:
        os.environ["USAGE_QUOTAS"] = str(args.quotas)
    validate_channels(load_quotas())  # a bad quota file or channel: rejected before any run
    check_lake()  # so is a lake that cannot be reached or written
    today = datetime.now(UTC).date()
    start, end = resolve_range(args.start, args.end, today)
    print(f"usage-etl: loading {start} .. {end} into {warehouse}", file=sys.stderr)
    with api_target():
        summary = execute(start, end)
    for line in summary.lines():
        print(line)
    if summary.success and not summary.failed_checks:
        print(f'query it: usage-etl query --warehouse {warehouse} "select * from organizations"')
        return 0
    return 1
