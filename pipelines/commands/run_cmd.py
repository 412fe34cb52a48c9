"""`usage-etl run`: materialize the whole asset graph for a date range through Dagster.

Runs go to a persistent Dagster instance (`DAGSTER_HOME`, default `<warehouse>/dagster`), so
`dagster dev` shows them. With neither `UBIOPS_API_TOKEN` nor `UBIOPS_API_HOST` set, the bundled
emulator is started on loopback with its demo data and used instead of the real API.
An interrupted run (Ctrl-C: SIGINT, or SIGTERM, which Dagster handles alike) says which signal
ended it and exits 130 (SIGINT) or 143 (SIGTERM).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from common import settings
from common.errors import InputError, one_line
from pipelines.commands import warehouse_location

if TYPE_CHECKING:
    from dagster import DagsterInstance

    from warehouse.location import WarehouseLocation

SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
TOP_ALERTS = 10


def parse_day(flag: str, value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):  # the right shape, not a calendar day
            raise InputError(f"{flag} {value}: no such day ({exc}); expected YYYY-MM-DD") from None
        raise InputError(f"{flag} {value!r}: expected a date as YYYY-MM-DD") from None


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
class AlertLine:
    severity: str
    rule: str
    organization: str
    title: str


@dataclass
class RunSummary:
    success: bool
    seconds: float
    run_id: str = ""
    signal: str | None = None
    """The signal that interrupted the run (SIGINT, SIGTERM), when one did."""
    rows: dict[str, int] = field(default_factory=dict)
    organizations: int = 0
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    failed_checks: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    error: str | None = None
    open_alerts: int = 0
    alerts_by_rule: dict[str, int] = field(default_factory=dict)
    top_alerts: list[AlertLine] = field(default_factory=list)
    report: str = ""
    interrupted: bool = False
    not_executed: int = 0

    def lines(self) -> list[str]:
        ok = self.success and not self.failed_checks
        status = "succeeded" if ok else "INTERRUPTED" if self.interrupted else "FAILED"
        name = f"run {self.run_id[:8]}" if self.run_id else "run"
        out = [
            f"{name} {status} in {self.seconds:.1f}s: {self.organizations} organizations, "
            f"{self.requests} API requests sent ({self.retries} of them retries, "
            f"{self.rate_limited} answered 429"
            + (
                f"; {self.requests / self.organizations:.2f} per organization)"
                if self.organizations
                else ")"
            ),
        ]
        if self.blocked:
            out.append(
                f"blocked by failed check(s) {', '.join(self.blocked)}: nothing was written or "
                "published (the warehouse is as before) and no alert was sent"
            )
        for check in self.failed_checks:
            out.append(f"failed check: {check}")
        if self.interrupted:
            out.append(
                f"interrupted ({SIGNAL_LABELS.get(self.signal or '', 'a signal')}): what the "
                "finished steps wrote is kept, each step whole; run the same command again to "
                "complete it"
            )
        elif self.error:
            out.append(f"error: {self.error}")
            if self.not_executed:
                out.append(f"{self.not_executed} downstream step(s) not executed")
        if self.rows:
            out.append("rows: " + ", ".join(f"{k} {v:,}" for k, v in self.rows.items()))
        if ok or self.open_alerts:
            by_rule = ", ".join(f"{rule} {n}" for rule, n in sorted(self.alerts_by_rule.items()))
            out.append(f"open alerts: {self.open_alerts}" + (f" ({by_rule})" if by_rule else ""))
            width = max((len(a.severity) for a in self.top_alerts), default=0)
            out.extend(f"  {a.severity.ljust(width)}  {a.title}" for a in self.top_alerts)
            if self.open_alerts > len(self.top_alerts):
                out.append(f"  ... {self.open_alerts - len(self.top_alerts)} more")
            if self.open_alerts:
                out.append("  usage-etl alerts lists every alert with its explanation")
        if self.report:
            out.append(f"report: {self.report}")
        return out


SIGNAL_LABELS = {"SIGINT": "Ctrl-C, SIGINT", "SIGTERM": "SIGTERM"}
EXIT_STATUS = {"SIGTERM": 143}
"""Exit status of a run interrupted by a signal: 128 + its number (130 otherwise: SIGINT)."""


@contextlib.contextmanager
def received_signals() -> Iterator[list[str]]:
    """The names of the interrupting signals (SIGINT, SIGTERM) the process receives in the block,
    filled in when it ends. Dagster handles SIGTERM with its SIGINT handler, which forgets the
    signal's number; the interpreter also writes every number to a wakeup file descriptor, read
    here. Off the main thread (where no signal arrives) the list stays empty."""
    names: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield names
        return
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    previous = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    try:
        yield names
    finally:
        signal.set_wakeup_fd(previous)
        with contextlib.suppress(BlockingIOError):
            wanted = {signal.SIGINT, signal.SIGTERM}
            names.extend(signal.Signals(n).name for n in os.read(read, 4096) if n in wanted)
        os.close(read)
        os.close(write)


def month_range(start: date, end: date) -> tuple[str, str]:
    return f"{start:%Y-%m}-01", f"{end:%Y-%m}-01"


def resolve_range(start_text: str | None, end_text: str | None, today: date) -> tuple[date, date]:
    year, month = (today.year, today.month - 1) if today.month > 1 else (today.year - 1, 12)
    start = parse_day("--start", start_text) if start_text else date(year, month, 1)
    end = parse_day("--end", end_text) if end_text else today
    if end < start:
        if start_text:
            raise InputError(f"--end {end} is before --start {start}")
        raise InputError(
            f"--end {end} is before the default start {start} (without --start: the first day "
            "of the previous month); give --start too"
        )
    earliest = date.fromisoformat(settings.partitions_start())
    if earliest > today:
        raise InputError(
            f"{settings.PARTITIONS_START_ENV}={earliest} is after today ({today}): expected the "
            "first month with data, no later than the current month"
        )
    if start < earliest:
        if start_text:
            raise InputError(
                f"--start {start}: expected a date on or after {earliest} "
                f"(the first partition; {settings.PARTITIONS_START_ENV} moves it)"
            )
        start = earliest
        if end < start:
            raise InputError(
                f"--end {end}: expected a date on or after {earliest} (the first partition; "
                f"{settings.PARTITIONS_START_ENV} moves it)"
            )
    if end > today:
        raise InputError(f"--end {end}: expected a date no later than today ({today})")
    return start, end


Overrides = dict[str, dict[str, object]]


@contextlib.contextmanager
def api_target() -> Iterator[dict[str, object]]:
    """Point the pipeline at the real API, or at a freshly started bundled emulator.

    Yields the `ubiops` resource overrides: none for the real API (host and token come from the
    environment, the token as an `EnvVar`), the emulator's address and its public demo token
    otherwise."""
    if not settings.should_embed_emulator():
        print(f"usage-etl: using the UbiOps API at {settings.api_host()}", file=sys.stderr)
        yield {}
        return
    from common.optional import require_emulator

    require_emulator(
        "UBIOPS_API_HOST and UBIOPS_API_TOKEN are not set, so the run uses the bundled API emulator"
    )
    from emulator.server import EmulatorConfig, EmulatorServer

    with EmulatorServer(EmulatorConfig(), host="127.0.0.1", port=0) as server:
        print(
            "usage-etl: UBIOPS_API_TOKEN and UBIOPS_API_HOST are not set: using the bundled "
            f"emulator with demo data at {server.base_url}",
            file=sys.stderr,
        )
        yield {"host": server.base_url, "token": server.token}


def execute(
    start: date,
    end: date,
    log_level: str = "INFO",
    overrides: Overrides | None = None,
    dagster_home: Path | None = None,
    verbose: bool = False,
) -> RunSummary:
    """Run the `usage_etl` job on the persistent instance (`dagster_home`, else `DAGSTER_HOME`,
    else `<warehouse>/dagster`) with the resources of the environment, `overrides` on top;
    `verbose`: the console shows whole messages and full traces."""
    from dagster import DagsterInstance

    from assets.resources import Warehouse, resources_from_env
    from pipelines.definitions import defs
    from pipelines.heap import freeze_startup_heap
    from pipelines.run_owner import fail_orphaned_runs, owner_tags
    from pipelines.schedules import range_tags

    resources = resources_from_env(overrides)
    assert isinstance(resources["warehouse"], Warehouse)
    warehouse = resources["warehouse"].root
    home = settings.dagster_home(warehouse, dagster_home)
    first, last = month_range(start, end)
    began = time.monotonic()
    with received_signals() as signals, DagsterInstance.from_config(str(home)) as instance:
        for run_id in fail_orphaned_runs(instance):
            print(
                f"usage-etl: run {run_id[:8]} marked failed: its process is gone (killed)",
                file=sys.stderr,
            )
        freeze_startup_heap()
        result = defs.resolve_job_def("usage_etl").execute_in_process(
            instance=instance,
            tags={**range_tags(first, last), **owner_tags()},
            raise_on_error=False,
            run_config={
                "loggers": {"console": {"config": {"log_level": log_level, "verbose": verbose}}}
            },
            resources=resources,
        )
        summary = RunSummary(
            success=result.success, seconds=time.monotonic() - began, run_id=result.run_id
        )
        if not result.success:
            summary.not_executed = _steps_not_executed(instance, result)
        _count_requests(summary, result, instance)
    _collect_checks(summary, result)
    if not result.success:
        summary.error = _first_failure(result)
        summary.interrupted = _interrupted(result)
        summary.signal = signals[-1] if summary.interrupted and signals else None
    if summary.success and "usage_database" in _materialized(result):
        _summarise_alerts(summary, warehouse)
    return summary


def check_lake(location: WarehouseLocation) -> None:
    """In lake mode, prove the catalog answers and the data path takes a write (exit 2 if not)."""
    lake = location.lake_config()
    if lake is not None:
        from warehouse.lake import check

        check(lake)
        print(f"usage-etl: publishing to the shared lake: {lake.redacted()}", file=sys.stderr)


def _materialized(result: object) -> set[str]:
    return {
        e.materialization.asset_key.to_user_string()
        for e in result.get_asset_materialization_events()  # type: ignore[attr-defined]
        if e.materialization is not None
    }


def _count_requests(summary: RunSummary, result: object, instance: object = None) -> None:
    """API statistics per asset (each asset has its own client), counted once per asset.

    A range run records one materialization per partition; the statistics describe the whole
    step, so the largest value per asset is the step's count (never a sum over partitions). A
    step the API failed records them on its failure instead, and a step stopped midway (Ctrl-C,
    SIGTERM) as an engine event in the run's event log (`instance`; see
    `assets.materialize.api_failure_stats`).
    """
    per_asset: dict[str, dict[str, int]] = {}
    for event in result.get_asset_materialization_events():  # type: ignore[attr-defined]
        mat = event.materialization
        if mat is None:
            continue
        name = mat.asset_key.to_user_string()
        meta = {k: v.value for k, v in mat.metadata.items()}
        seen = per_asset.setdefault(name, {})
        for key in ("api_requests", "api_retries", "api_rate_limited_429"):
            seen[key] = max(seen.get(key, 0), int(meta.get(key, 0) or 0))
        if name == "organizations":
            summary.organizations = int(meta.get("organizations", 0) or 0)
        if name == "usage_report":
            summary.report = str(meta.get("path", ""))
        if name == "usage_database":
            summary.rows = {
                k.removeprefix("rows/"): int(v) for k, v in meta.items() if k.startswith("rows/")
            }
    for event in result.all_events:  # type: ignore[attr-defined]
        failure = event.step_failure_data if event.is_step_failure else None
        if failure is None or failure.user_failure_data is None or event.step_key is None:
            continue  # a step the API failed carries what it sent (assets/materialize.py)
        meta = {k: v.value for k, v in failure.user_failure_data.metadata.items()}
        seen = per_asset.setdefault(event.step_key, {})
        for key in ("api_requests", "api_retries", "api_rate_limited_429"):
            seen[key] = max(seen.get(key, 0), int(meta.get(key, 0) or 0))
    for step, meta in _stopped_step_stats(instance, result):
        seen = per_asset.setdefault(step, {})
        for key in ("api_requests", "api_retries", "api_rate_limited_429"):
            seen[key] = max(seen.get(key, 0), int(meta.get(key, 0) or 0))
    summary.requests = sum(s.get("api_requests", 0) for s in per_asset.values())
    summary.retries = sum(s.get("api_retries", 0) for s in per_asset.values())
    summary.rate_limited = sum(s.get("api_rate_limited_429", 0) for s in per_asset.values())


def _stopped_step_stats(instance: object, result: object) -> list[tuple[str, dict[str, object]]]:
    """(step, API statistics) that steps stopped midway wrote to the run's event log."""
    if instance is None:
        return []
    from dagster import DagsterEventType

    from assets.materialize import STOPPED_STEP_REQUESTS

    found: list[tuple[str, dict[str, object]]] = []
    records = instance.all_logs(  # type: ignore[attr-defined]
        result.run_id,  # type: ignore[attr-defined]
        of_type=DagsterEventType.ENGINE_EVENT,
    )
    for record in records:
        event = record.dagster_event
        if event is None or event.step_key is None or event.message != STOPPED_STEP_REQUESTS:
            continue
        data = event.engine_event_data
        meta = {k: v.value for k, v in (data.metadata if data else {}).items()}
        found.append((event.step_key, meta))
    return found


def _collect_checks(summary: RunSummary, result: object) -> None:
    from pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    blocking = {key for key in graph.asset_check_keys if graph.get_check_spec(key).blocking}
    for evaluation in result.get_asset_check_evaluations():  # type: ignore[attr-defined]
        if evaluation.passed:
            continue
        key = evaluation.asset_check_key
        label = f"{key.asset_key.to_user_string()}:{key.name}"
        detail = (evaluation.description or "").strip().splitlines()
        summary.failed_checks.append(label + (f" ({detail[0]})" if detail else ""))
        if key in blocking:
            summary.blocked.append(label)


def _steps_not_executed(instance: DagsterInstance, result: object) -> int:
    """Steps of the run's plan that never started (left out as a dependency failed)."""
    run = result.dagster_run  # type: ignore[attr-defined]
    plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
    started = {
        e.step_key
        for e in result.all_events  # type: ignore[attr-defined]
        if e.event_type_value == "STEP_START"
    }
    return sum(1 for step in plan.steps if step.key not in started)


def _interrupted(result: object) -> bool:
    """Whether a step failed because the run was interrupted (Ctrl-C, SIGINT): Dagster turns
    the `KeyboardInterrupt` into a step failure and ends the run."""
    for event in result.all_events:  # type: ignore[attr-defined]
        if event.is_step_failure and event.step_failure_data is not None:
            err = event.step_failure_data.error
            while err is not None:
                if err.cls_name in ("DagsterExecutionInterruptedError", "KeyboardInterrupt"):
                    return True
                err = err.cause
    return False


def _first_failure(result: object) -> str | None:
    for event in result.all_events:  # type: ignore[attr-defined]
        if event.is_step_failure and event.step_failure_data is not None:
            err = event.step_failure_data.error
            cause = err.cause if err is not None and err.cause is not None else err
            message = (one_line(cause.message) if cause else "") or "step failed"
            return f"{event.step_key}: {message}"
    return "the run failed before any step ran"


def _summarise_alerts(summary: RunSummary, warehouse: Path) -> None:
    """Open alerts by rule and the most severe ten, from the database just published."""
    from warehouse.publish import connect_readonly

    try:
        con = connect_readonly(warehouse)
    except Exception:  # the summary is best effort; the run result does not depend on it
        return
    try:
        rows = con.execute(
            "SELECT severity, rule, organization_name, title FROM quota_alerts "
            "WHERE status IN ('open', 'notified') ORDER BY organization_name, rule"
        ).fetchall()
    except Exception:
        return
    finally:
        con.close()
    alerts = [AlertLine(str(s), str(r), str(o), str(t)) for s, r, o, t in rows]
    summary.open_alerts = len(alerts)
    summary.alerts_by_rule = dict(Counter(a.rule for a in alerts))
    alerts.sort(key=lambda a: (SEVERITY_ORDER.get(a.severity, 3), a.organization, a.rule))
    summary.top_alerts = alerts[:TOP_ALERTS]


@contextlib.contextmanager
def quiet_library_logs(warehouse: Path, verbose: bool) -> Iterator[Path]:
    """Keep the terminal to one line per event: per-alert log-channel lines go to a file.

    The `log` notification channel writes every alert through Python logging
    (`alerting`); a run's summary lists the alerts instead, so on the command line those
    records go to `<warehouse>/state/notifications.log`. Client retry warnings are counted in the
    summary. `--verbose` shows both on stderr as well.
    """
    path = warehouse / "state" / "notifications.log"
    notify = logging.getLogger("alerting")
    client = logging.getLogger("ubiops_api.client")
    saved = (notify.propagate, notify.level, client.level)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    notify.addHandler(handler)
    if notify.level == logging.NOTSET or notify.level > logging.INFO:
        notify.setLevel(logging.INFO)
    if not verbose:
        notify.propagate = False
        client.setLevel(logging.ERROR)
    try:
        yield path
    finally:
        notify.removeHandler(handler)
        handler.close()
        notify.propagate, _, _ = saved
        notify.setLevel(saved[1])
        client.setLevel(saved[2])


def run_overrides(args: argparse.Namespace) -> Overrides:
    """The command's flags as resource overrides (assets/resources.py): one entry per flag,
    None for a flag not given (the environment or the default applies). `--lake-catalog` is
    not here: it may hold a password, so it reaches the run as an `EnvVar` (see `handle`)."""
    return {
        "warehouse": {"path": args.warehouse, "lake_data": getattr(args, "lake_data", None)},
        "alerting": {"quotas": args.quotas},
    }


def preflight(warehouse_arg: str | None, quotas: str | None, location: WarehouseLocation) -> Path:
    """Every check that can fail before a run starts (exit 2): paths, quota file, the shared
    lake (`location`: the warehouse as the command's flags and the environment say), the API
    target. None of them imports Dagster, so a mistake is reported without its start-up cost.
    The API settings are read first: that imports nothing, while the quota checks import the
    alerting rules (pandas, ~1 s), so a missing token or a malformed host is reported at once;
    the probe of the API over the network stays last. A warehouse directory created for the
    writability check is removed again when a later check fails (a mistyped token leaves no
    empty directories behind)."""
    new_dirs = _missing_dirs(settings.warehouse_dir(warehouse_arg))
    warehouse = settings.writable_warehouse(warehouse_arg)
    try:
        api = (
            None
            if settings.should_embed_emulator()
            else (settings.api_host(), settings.api_token())
        )

        from alerting.validation import validate_channels
        from insights.quotas import load_quotas
        from pipelines import preflight as checks

        validate_channels(load_quotas(quotas))  # a bad quota file or channel is exit 2 here
        check_lake(location)  # so is a shared lake that cannot be reached or written
        if api is not None:
            checks.check_api(*api)
    except BaseException:
        for directory in new_dirs:  # deepest first; only while still empty
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    return warehouse


def _missing_dirs(path: Path) -> list[Path]:
    """`path` and its ancestors that do not exist yet, deepest first."""
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return missing


def handle(args: argparse.Namespace) -> int:
    today = datetime.now(UTC).date()
    start, end = resolve_range(args.start, args.end, today)
    warehouse = preflight(args.warehouse, args.quotas, warehouse_location(args))
    # Dagster only once the run can start (its imports are most of a short run's start-up)
    from assets.resources import LAKE_CATALOG_FLAG_VARIABLE, secret_flag

    overrides = run_overrides(args)
    verbose = bool(getattr(args, "verbose", False))
    # --lake-catalog: an EnvVar of a private variable held for this run only (never stored)
    with secret_flag(LAKE_CATALOG_FLAG_VARIABLE, getattr(args, "lake_catalog", None)) as catalog:
        overrides["warehouse"]["lake_catalog"] = catalog
        overrides["warehouse"]["path"] = str(warehouse)
        print(f"usage-etl: loading {start} .. {end} into {warehouse}", file=sys.stderr)
        with api_target() as api, quiet_library_logs(warehouse, verbose):
            summary = execute(start, end, overrides={**overrides, "ubiops": api}, verbose=verbose)
    for line in summary.lines():
        print(line)
    if summary.success and not summary.failed_checks:
        print(f'query it: usage-etl query --warehouse {warehouse} "select * from organizations"')
        return 0
    return EXIT_STATUS.get(summary.signal or "", 130) if summary.interrupted else 1
