"""`usage-etl alerts` (list open alerts; retry, resend or test notifications) and
`usage-etl backtest`."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from typing import Any

from common import settings
from common.errors import ConfigError, InputError, WarehouseError, one_line

_SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


def add_parser(sub: argparse._SubParsersAction) -> None:
    alerts = sub.add_parser(
        "alerts",
        help="list open quota alerts; retry, resend or test notifications",
        description=(
            "List the open quota alerts (organization, period, resource or project, "
            "explanation) and undelivered notifications. --retry delivers pending messages now, "
            "--resend ID / --all-failed send failed ones again, --test-channel NAME sends a "
            "test message. Exit 1 when a send of --retry/--resend/--all-failed failed or "
            "pending messages are for channels the quota file does not configure (on a shared "
            "lake: nor another writer's); the listing exits 0 whatever it lists. Example: "
            "usage-etl alerts --warehouse ./data"
        ),
    )
    alerts.add_argument("--warehouse", help="warehouse directory (USAGE_WAREHOUSE, ./data)")
    alerts.add_argument("--quotas", help="quota/alert YAML (USAGE_QUOTAS)")
    alerts.add_argument(
        "--all", action="store_true", help="include resolved, superseded and expired alerts"
    )
    action = alerts.add_mutually_exclusive_group()
    action.add_argument("--test-channel", metavar="NAME", help="send a test message via NAME")
    action.add_argument(
        "--retry", action="store_true", help="deliver pending messages now (ignores backoff)"
    )
    action.add_argument(
        "--resend",
        metavar="ID",
        type=int,
        action="append",
        help="send a failed message again (its id in the list; repeatable)",
    )
    action.add_argument("--all-failed", action="store_true", help="send every failed message again")
    alerts.set_defaults(handler=handle_alerts)

    backtest = sub.add_parser(
        "backtest",
        help="how often a rule would have fired on past data",
        description=(
            "Replay a rule day by day over past data. Exit 1 when the warehouse holds no data to "
            "judge the range (no credit usage; for resource_limit, no resource snapshots). "
            "Subscription periods judged without all their days (begun before the first day "
            "loaded) are named, and their notifications marked 'partly loaded'."
        ),
    )
    backtest.add_argument("--rule", required=True, help="credit_actual, credit_forecast, ...")
    backtest.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
    backtest.add_argument("--end", required=True, help="last day, YYYY-MM-DD")
    backtest.add_argument("--warehouse", help="warehouse directory (USAGE_WAREHOUSE, ./data)")
    backtest.add_argument("--quotas", help="quota/alert YAML (USAGE_QUOTAS)")
    backtest.set_defaults(handler=handle_backtest)


def _config(path: str | None) -> object:
    from insights.quotas import load_quotas

    return load_quotas(path)


def _emit(lines: Iterable[str]) -> None:
    """Print to stdout; a reader that went away (``| head``) ends the output quietly."""
    try:
        for line in lines:
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush is quiet


def handle_alerts(args: argparse.Namespace) -> int:
    from alerting.state import open_state, state_path

    config = _config(args.quotas)
    warehouse = settings.warehouse_dir(args.warehouse)
    if args.test_channel:
        return _test_channel(args.test_channel, config, warehouse, args.verbose)
    path = state_path(warehouse)
    if not path.exists() and not (warehouse / "parquet" / "quota_alerts").exists():
        listed = _list_from_lake(args)
        if listed is not None:
            return listed
        raise WarehouseError(f"no alert state at {path}: run `usage-etl run` first")
    try:  # the state is written even by a listing (opened read-write, restored when lost)
        if path.parent.is_dir():
            settings.check_writable(path.parent, "alert state directory")
        else:
            settings.check_writable(warehouse)
    except WarehouseError:
        if args.retry or args.resend or args.all_failed:  # each attempt is recorded there
            raise
        return _list_read_only(args, warehouse)
    with open_state(warehouse) as state:
        if state.recovered:
            print(f"usage-etl alerts: {state.recovered}", file=sys.stderr)
        if args.retry or args.resend or args.all_failed:
            from pipelines.commands.run_cmd import quiet_library_logs

            with quiet_library_logs(warehouse, args.verbose):  # the log channel's file
                return _deliver(args, config, warehouse, state.store)
        _take_in_lake(args, state.store)
        alerts = state.store.alerts_frame()
        outbox = state.store.outbox_frame()
    _emit(_listing(alerts, outbox, show_all=args.all))
    return 0


def _take_in_lake(args: argparse.Namespace, store: Any) -> None:
    """On a writer of a shared lake, what other writers recorded (delivered, failed, backing
    off, cancelled) is taken in before listing; when the lake cannot be read, this writer's
    own state is listed, as stderr says."""
    from alerting.lake_state import take_in_lake_state
    from common.errors import LakeError
    from pipelines.commands import warehouse_location

    lake = warehouse_location(args).lake_config()
    if lake is None:
        return
    try:
        take_in_lake_state(lake, store)
    except LakeError as exc:
        print(
            f"usage-etl alerts: the shared lake could not be read ({one_line(str(exc))}): "
            "listing this writer's own alert state, as of its last commit",
            file=sys.stderr,
        )


def _list_read_only(args: argparse.Namespace, warehouse: Any) -> int:
    """A warehouse this process cannot write (a read-only copy, backup or mount): the state
    file cannot be opened for writing, so the listing comes from its copy in the warehouse
    tables `quota_alerts` and `alert_outbox`, written after every evaluation and delivery."""
    from alerting.state import state_path
    from warehouse.derived_schema import ALERT_OUTBOX, QUOTA_ALERTS
    from warehouse.parquet_store import ParquetStore

    store = ParquetStore(warehouse)
    alerts, outbox = store.read(QUOTA_ALERTS), store.read(ALERT_OUTBOX)
    print(
        f"usage-etl alerts: warehouse {warehouse} is read-only here: listed from its tables "
        f"quota_alerts and alert_outbox (the copy of {state_path(warehouse)} made by the last "
        "run or delivery)",
        file=sys.stderr,
    )
    _emit(_listing(alerts, outbox, show_all=args.all))
    return 0


def _list_from_lake(args: argparse.Namespace) -> int | None:
    """On a machine with no local warehouse but the shared lake configured, list the alerts as
    the last run published them there (read-only: delivery stays with the writers)."""
    from pipelines.commands import warehouse_location
    from warehouse.readonly import connect_readonly

    location = warehouse_location(args)
    lake = location.lake_config()
    if lake is None:
        return None
    if args.retry or args.resend or args.all_failed:
        raise InputError(
            "--retry/--resend/--all-failed deliver from a writer's warehouse; this machine only "
            "reads the shared lake (pass --warehouse of a writer)"
        )
    con = connect_readonly(location.root, lake)
    try:
        alerts = con.execute("SELECT * FROM quota_alerts").df()
        outbox = con.execute("SELECT * FROM alert_outbox").df()
    finally:
        con.close()
    _emit(_listing(alerts, outbox, show_all=args.all))
    return 0


def _test_channel(name: str, config: Any, warehouse: Any, verbose: bool) -> int:
    """Send a test message; the `log` channel writes where it writes during runs,
    `<warehouse>/state/notifications.log` (also stderr with --verbose), and says so. A channel
    that is not configured (or has nobody to write to) is exit 2, before anything is sent; a
    send that fails is exit 1 with its error on stderr, as for `--retry`."""
    from alerting.channels import DeliveryError
    from alerting.delivery import send_test_message
    from pipelines.commands.run_cmd import quiet_library_logs

    known = config.channels.enabled()
    if name not in known:
        raise ConfigError(
            f"--test-channel {name}: channel is not configured (configured: "
            f"{', '.join(known) or 'none'})"
        )
    where = ""
    try:
        admins = _email_admin_targets(name, config, warehouse)
        if admins is not None:
            from warehouse.parquet_store import ParquetStore
            from warehouse.schema import ORGANIZATION_USERS

            users = ParquetStore(warehouse).read(ORGANIZATION_USERS)
            for org_id, org_name, _ in admins:
                send_test_message(
                    name,
                    config,
                    organization_users=users,
                    organization_id=org_id,
                    organization_name=org_name,
                )
            _emit(
                [f"test message sent via {name} to the admins of {len(admins)} organizations:"]
                + [f"  {org_name}: {', '.join(to)}" for _, org_name, to in admins]
            )
            return 0
        if name == "log" and config.channels.log:
            with quiet_library_logs(warehouse, False) as log_file, _echo_alerting(verbose):
                send_test_message(name, config)
            where = f" (written to {log_file})"
        else:
            send_test_message(name, config)
    except DeliveryError as exc:
        print(f"usage-etl alerts: test message via {name} failed: {exc}", file=sys.stderr)
        return 1
    _emit([f"test message sent via {name}{where}"])
    return 0


def _email_admin_targets(
    name: str, config: Any, warehouse: Any
) -> list[tuple[str, str, list[str]]] | None:
    """For an e-mail channel with ``to: admins``: (organization id, name, admin addresses) of
    every organization in the warehouse whose alerts are routed to the channel, one test
    message each (as real alerts go: no organization sees another's admins). None for any
    other channel; a ConfigError saying why when there is nobody to write to."""
    from alerting.channels import admins_by_organization
    from alerting.routing import alert_routes
    from insights.quotas import EmailChannelConfig
    from warehouse.parquet_store import ParquetStore
    from warehouse.schema import ORGANIZATION_USERS, ORGANIZATIONS

    cfg = config.channels.get(name)
    if not isinstance(cfg, EmailChannelConfig) or cfg.to != "admins":
        return None
    why = f"test message via {name} failed: {name}: `to: admins` writes to organization admins"
    if not (warehouse / "parquet").is_dir():
        raise ConfigError(
            f"{why}, and there is no warehouse at {warehouse} to find them in (run `usage-etl "
            "run` first, or pass --warehouse)"
        )
    store = ParquetStore(warehouse)
    orgs = _records(store.read(ORGANIZATIONS))
    admins = admins_by_organization(store.read(ORGANIZATION_USERS))
    route = alert_routes(config, store.read(ORGANIZATIONS))
    routed = [o for o in orgs if name in route(o)]
    targets = [
        (
            str(o["organization_id"]),
            str(o.get("organization_name") or o["organization_id"]),
            admins[str(o["organization_id"])],
        )
        for o in routed
        if admins.get(str(o["organization_id"]))
    ]
    if not targets:
        raise ConfigError(
            f"{why}, and none of the {len(routed)} organizations in {warehouse} whose alerts go "
            f"to {name} (of {len(orgs)}) has an admin with an e-mail address"
        )
    return targets


@contextlib.contextmanager
def _echo_alerting(on: bool) -> Iterator[None]:
    """With --verbose, the `alerting` records (the log channel's lines) on stderr too."""
    import logging

    if not on:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    notify = logging.getLogger("alerting")
    notify.addHandler(handler)
    try:
        yield
    finally:
        notify.removeHandler(handler)


def _commit_requeued(warehouse: Any, lake: Any, store: Any, requeued: int) -> list[str]:
    """Commit the messages queued again to the shared lake at once (the problem, if it could
    not): those of a channel another writer delivers are its to send, and this writer's later
    runs take that writer's failures of them (`alerting.store._later_attempt`)."""
    from alerting.lake_state import commit_alert_state
    from common.errors import LakeError

    try:
        commit_alert_state(warehouse, lake, store)
    except LakeError as exc:
        return [
            f"the {requeued} message(s) queued again were not committed to the shared lake "
            f"({one_line(str(exc))}): run the command again once the lake answers"
        ]
    return []


def _deliver(args: argparse.Namespace, config: Any, warehouse: Any, store: Any) -> int:
    from alerting.delivery import deliver_configured
    from alerting.lake_state import (
        WRITER_CHANNELS_MAX_AGE,
        channels_of_other_writers,
        deliver_through_lake,
        take_in_lake_state,
        writer_name,
    )
    from alerting.state import publish_state
    from alerting.validation import validate_channels
    from pipelines.commands import warehouse_location
    from warehouse.parquet_store import ParquetStore
    from warehouse.schema import ORGANIZATION_USERS

    validate_channels(config)
    lake = warehouse_location(args).lake_config()
    others: dict[str, list[str]] = {}  # channel: the other writers of the lake delivering it
    if lake is not None:  # what other writers recorded first: their failures are failed here
        recorded = take_in_lake_state(lake, store)
        others = channels_of_other_writers(recorded, writer_name(warehouse, lake))
    if args.resend:
        for outbox_id in args.resend:
            row = store.outbox_row(outbox_id)
            if row is None:
                raise InputError(f"--resend {outbox_id}: no such message")
            if row["status"] != "failed":
                raise InputError(
                    f"--resend {outbox_id}: the message is {row['status']}, not failed "
                    "(pending messages: use --retry)"
                )
        requeued = store.resend(args.resend)
    elif args.all_failed:
        requeued = store.resend()
    else:
        requeued = 0
    users = ParquetStore(warehouse).read(ORGANIZATION_USERS)
    problems: list[str] = []
    if lake is not None and requeued:
        problems += _commit_requeued(warehouse, lake, store, requeued)
    if lake is None:
        report = deliver_configured(store, config, users, ignore_backoff=True)
    else:  # a writer of a shared lake: claimed there, sent, the outcome committed there
        shared = deliver_through_lake(warehouse, lake, store, config, users, ignore_backoff=True)
        report, problems = shared.report, shared.problems
    if report.delivered or report.retried_later or report.failed or requeued:
        publish_state(warehouse, store)
    lines = [f"notifications: {report.summary()}"]
    if requeued:
        lines.insert(0, f"{requeued} failed messages queued again")
    _emit(lines)
    for error in [*problems, *report.errors]:
        print(f"usage-etl alerts: {error}", file=sys.stderr)
    unconfigured = _unconfigured(store, config)
    left = {name: n for name, n in unconfigured.items() if name in others}
    stranded = {name: n for name, n in unconfigured.items() if name not in others}
    if left:
        listing = ", ".join(f"{name} ({n}: {', '.join(others[name])})" for name, n in left.items())
        print(
            "usage-etl alerts: pending messages for channel(s) other writers of the shared "
            f"lake deliver, left for them: {listing}",
            file=sys.stderr,
        )
    if stranded:
        from insights.quotas import resolve_quotas_path

        listing = ", ".join(f"{name} ({n})" for name, n in stranded.items())
        nobody = (
            ", nor by any other writer of the shared lake (as of their runs in the last "
            f"{WRITER_CHANNELS_MAX_AGE.days} days)"
            if lake is not None
            else ""
        )
        print(
            f"usage-etl alerts: pending messages for channel(s) not configured in "
            f"{resolve_quotas_path(args.quotas)}{nobody}: {listing}; nothing was sent to them "
            "(pass the quota file that configures them: --quotas or USAGE_QUOTAS)",
            file=sys.stderr,
        )
    return 1 if report.errors or problems or stranded else 0


def _unconfigured(store: Any, config: Any) -> dict[str, int]:
    """Pending messages per channel the quota file in use does not configure: `--retry`
    cannot send them (they wait for a run or retry with the file that configures them)."""
    outbox = store.outbox_frame()
    waiting = outbox[outbox["status"] == "pending"]
    configured = set(config.channels.enabled())
    counts = waiting[~waiting["channel"].isin(configured)]["channel"].value_counts()
    return {str(name): int(n) for name, n in sorted(counts.items())}


def _day(value: Any) -> str:
    return "" if value is None or value != value else f"{value:%Y-%m-%d}"


def _period(row: dict[str, Any]) -> str:
    start, end = row.get("period_start"), row.get("period_end")
    if end is None or end != end:
        return _day(start)
    return f"{_day(start)} .. {_day(end - timedelta(days=1))}"  # end is exclusive


def _subject(row: dict[str, Any]) -> str:
    project = row.get("project_name") or row.get("project_id")
    if project:
        return f"project {project}"
    if str(row.get("rule", "")).startswith("resource"):
        return str(row.get("metric") or "resources")
    return "all credits"


def _records(frame: Any) -> list[dict[str, Any]]:
    """The rows of a frame with every missing value (NaN, NaT, None) as None.

    The state store and the lake both hand back pandas frames, where a missing text value is
    NaN (a truthy float): ``value or default`` and slicing would see a float, so nothing else
    in this listing has to guess."""
    if frame is None or not len(frame):
        return []
    return [
        {k: (None if _missing(v) else v) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(value != value)  # NaN and NaT are not equal to themselves
    except (TypeError, ValueError):
        return False


def _listing(alerts: Any, outbox: Any, *, show_all: bool) -> list[str]:
    rows = _records(alerts)
    if not show_all:
        rows = [r for r in rows if r["status"] in ("open", "notified")]
    rows.sort(
        key=lambda r: (
            _SEVERITY_ORDER.get(str(r.get("severity")), 3),
            str(r.get("organization_name") or r["organization_id"]),
            str(r["alert_key"]),
        )
    )
    lines: list[str] = []
    if not rows:
        lines.append("no open alerts" if not show_all else "no alerts")
    else:
        counts: dict[str, int] = {}
        for r in rows:
            counts[str(r.get("severity") or "info")] = (
                counts.get(r.get("severity") or "info", 0) + 1
            )
        by_severity = ", ".join(
            f"{n} {s}"
            for s, n in sorted(counts.items(), key=lambda i: _SEVERITY_ORDER.get(i[0], 3))
        )
        lines.append(f"{len(rows)} {'open ' if not show_all else ''}alerts: {by_severity}")
        lines.append("")
        table = [
            {
                "#": i,
                "organization": r.get("organization_name") or r["organization_id"],
                "period": _period(r),
                "resource or project": _subject(r),
                "rule": r["rule"],
                "threshold": f"{r['threshold']:g}%",
                "severity": r.get("severity") or "",
                "status": r["status"],
            }
            for i, r in enumerate(rows, start=1)
        ]
        lines.extend(_table(table))
        lines.append("")
        for i, r in enumerate(rows, start=1):
            lines.append(f"{i}. {r.get('title') or r['alert_key']}")
            if r.get("explanation"):
                lines.append(f"   {r['explanation']}")
            if isinstance(r.get("restatement"), str) and r["restatement"]:
                lines.append(f"   {r['restatement']}")
    lines.extend(_undelivered(outbox, alerts))
    return lines


def _table(rows: list[dict[str, Any]]) -> list[str]:
    from tabulate import tabulate

    return [
        line.rstrip() for line in tabulate(rows, headers="keys", tablefmt="simple").splitlines()
    ]


def _last_error(row: dict[str, Any]) -> str:
    """What a person needs to know about an undelivered message: its last error (cut to 80
    characters), or that it has not been tried yet (a channel that failed earlier in the same
    pass is not tried again until the next one)."""
    error = row.get("last_error")
    if error:
        text = str(error).replace("\n", " ")
        return text if len(text) <= 80 else text[:79] + "…"
    if not row.get("attempts"):
        return "not tried yet"
    return ""


def _undelivered(outbox: Any, alerts: Any) -> list[str]:
    waiting = [r for r in _records(outbox) if r.get("status") in ("pending", "sending", "failed")]
    if not waiting:
        return []
    names = {
        r["alert_key"]: r.get("organization_name") or r.get("organization_id") or ""
        for r in _records(alerts)
    }
    table = [
        {
            "id": int(r["id"]),
            "channel": r["channel"],
            "event": r["event"],
            "organization": names.get(r["alert_key"], ""),
            "status": r["status"],
            "attempts": int(r.get("attempts") or 0),
            "last error": _last_error(r),
        }
        for r in waiting
    ]
    return [
        "",
        f"{len(table)} undelivered notifications (send now: usage-etl alerts --retry; "
        "failed ones: --resend ID or --all-failed)",
        *_table(table),
    ]


def handle_backtest(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from alerting.rules import RULES
    from pipelines.commands.run_cmd import parse_day
    from warehouse.parquet_store import ParquetStore
    from warehouse.schema import CREDIT_USAGE, ORGANIZATIONS, RESOURCE_USAGE

    if args.rule not in RULES:
        raise InputError(f"--rule {args.rule!r}: expected one of {', '.join(RULES)}")
    config = _config(args.quotas)
    start: date = parse_day("--start", args.start)
    end: date = parse_day("--end", args.end)
    today = datetime.now(UTC).date()
    if end > today:  # the same check as `usage-etl run`
        raise InputError(f"--end {end}: expected a date no later than today ({today})")
    if start > end:
        raise InputError(f"--start {start} is after --end {end}")
    store = ParquetStore(settings.warehouse_dir(args.warehouse))
    usage = store.read(CREDIT_USAGE, "interval = 'day'")
    if usage.empty:
        raise WarehouseError("no credit usage in the warehouse: run `usage-etl run` first")
    resources = store.read(RESOURCE_USAGE) if args.rule == "resource_limit" else None
    lines, answered = backtest_lines(
        usage, store.read(ORGANIZATIONS), config, args.rule, start, end, resources
    )
    _emit(lines)
    return 0 if answered else 1


def backtest_lines(
    usage: Any,
    organizations: Any,
    config: Any,
    rule: str,
    start: date,
    end: date,
    resources: Any = None,
) -> tuple[list[str], bool]:
    """What `usage-etl backtest` prints, and whether it is an answer: whether the rule would
    have notified over ``[start, end]``, and when, for which organization; or (False) why the
    data cannot say.

    It says so when the range holds no credit usage (or, for ``resource_limit``, no resource
    snapshot), and a rule that is disabled (the anomaly rule, or a rule without thresholds) is
    named as such; the anomaly rule is then evaluated as if enabled, labelled that way."""
    from tabulate import tabulate

    from alerting.evaluate import backtest_rule, partly_loaded_periods

    days = (end - start).days + 1
    span = f"{start} .. {end} ({days} days)"
    first, last = usage["start_date"].min(), usage["start_date"].max()
    in_range = usage[
        (usage["start_date"] >= pd_day(start)) & (usage["start_date"] < pd_day(end + timedelta(1)))
    ]
    held = f"the warehouse holds credit usage from {_day(first)} to {_day(last)}"
    if in_range.empty:
        return [
            f"no credit usage in the warehouse between {start} and {end} ({held}): no answer"
        ], False
    lines: list[str] = []
    if rule == "resource_limit":
        observed = resources["observed_at"] if resources is not None else None
        if (
            observed is None
            or not ((observed >= pd_day(start)) & (observed < pd_day(end + timedelta(1)))).any()
        ):
            where = (
                f"the warehouse holds snapshots from {_day(observed.min())} to "
                f"{_day(observed.max())}"
                if observed is not None and len(observed)
                else "the warehouse holds none"
            )
            return [
                f"no resource snapshots between {start} and {end} ({where}; they are taken "
                "by each run, not loaded for the past): no answer for rule resource_limit"
            ], False
        seen = observed[(observed >= pd_day(start)) & (observed < pd_day(end + timedelta(1)))]
        if seen.min() >= pd_day(start + timedelta(1)):
            lines.append(
                f"resource snapshots cover only {_day(seen.min())} .. {_day(seen.max())} of "
                "this range: the days before are not judged"
            )
    thresholds = {
        "credit_actual": config.rules.credit_actual_thresholds,
        "credit_forecast": config.rules.credit_forecast_thresholds,
        "resource_limit": config.rules.resource_thresholds,
    }
    if rule in thresholds and not thresholds[rule]:
        return [f"rule {rule} is disabled in {config.source} (no thresholds): it cannot fire"], True
    if_enabled = ""
    if rule == "anomaly" and not config.rules.anomaly.enabled:
        lines.append(
            f"rule anomaly is disabled in {config.source} (rules.anomaly.enabled: false); "
            "evaluated as if it were enabled:"
        )
        anomaly = config.rules.anomaly.model_copy(update={"enabled": True})
        config = config.model_copy(
            update={"rules": config.rules.model_copy(update={"anomaly": anomaly})}
        )
        if_enabled = " if enabled"
    names = {str(r["organization_id"]): r.get("organization_name") for r in _records(organizations)}
    partial: set[tuple[str, date]] = set()
    if rule in ("credit_actual", "credit_forecast"):  # the rules that sum a period's days
        periods = _records(partly_loaded_periods(usage, organizations, start, end))
        partial = {(str(p["organization_id"]), p["period_start"]) for p in periods}
        lines.extend(_partly_loaded_lines(periods, names))
    result = backtest_rule(usage, organizations, config, rule, start, end, resource_usage=resources)
    fired = result[result["notified"]] if len(result) else result
    if not len(fired):
        lines.append(
            f"rule {rule} would not have fired{if_enabled} between {start} and {end} ({days} days)"
        )
        return lines, True
    lines.append(
        f"rule {rule}, {span}: {len(fired)} notifications{if_enabled}, "
        f"{fired['alert_key'].nunique()} distinct alerts, on {fired['date'].nunique()} days"
    )
    projects = {
        str(r["project_id"]): r.get("project_name")
        for r in _records(usage[["project_id", "project_name"]].drop_duplicates("project_id"))
        if r.get("project_id")
    }
    table = []
    for r in _records(fired):
        row: dict[str, Any] = {
            "date": _day(r["date"]),
            "organization": names.get(str(r["organization_id"])) or r["organization_id"],
        }
        if rule != "resource_limit":
            pid = r.get("project_id")
            row["project"] = (projects.get(str(pid)) or pid) if pid else ""
        else:
            row["resource"] = str(r.get("metric") or "")
        unit = "robust z-score " if rule == "anomaly" else ""
        row["threshold"] = f"{unit}{r['threshold']:g}" + ("" if unit else "%")
        for col in ("value", "limit"):
            value = r.get(col)
            row[col] = "" if value is None else f"{value:,.0f}"
        if partial:
            period = (str(r["organization_id"]), _as_date(r.get("period_start")))
            row["period"] = "partly loaded" if period in partial else ""
        table.append(row)
    if not any(row.get("project") for row in table):
        for row in table:
            row.pop("project", None)
    lines.extend(
        line.rstrip() for line in tabulate(table, headers="keys", tablefmt="simple").splitlines()
    )
    return lines, True


def _as_date(value: Any) -> date | None:
    return None if value is None else value.date() if hasattr(value, "date") else value


def _partly_loaded_lines(periods: list[dict[str, Any]], names: dict[str, Any]) -> list[str]:
    """The warning naming the periods judged without all their days (`partly_loaded_periods`):
    their sums count only the days the warehouse holds, so values are too low and crossings
    can be missed; their notifications are marked in the table."""
    if not periods:
        return []
    lines = [
        f"{len(periods)} subscription periods are only partly loaded: judged on the days the "
        "warehouse holds, so their values are too low and crossings can be missed (load the "
        "missing days with `usage-etl run --start`):"
    ]
    named = sorted(
        ((str(names.get(p["organization_id"]) or p["organization_id"]), p) for p in periods),
        key=lambda item: (item[0], item[1]["period_start"]),
    )
    for name, p in named:
        first, last, n = p["first_missing"], p["last_missing"], p["missing_days"]
        days = _day(first) if first == last else f"{_day(first)} .. {_day(last)}"
        lines.append(
            f"  {name}: period {_day(p['period_start'])} .. "
            f"{_day(p['period_end'] - timedelta(days=1))}, {n} {'day' if n == 1 else 'days'} "
            f"not loaded ({days})"
        )
    return lines


def pd_day(day: date) -> Any:
    """A day as the warehouse's naive-UTC midnight."""
    import pandas as pd

    return pd.Timestamp(day)
