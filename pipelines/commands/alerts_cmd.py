"""`usage-etl alerts` (list open alerts, or send a test message) and `usage-etl backtest`."""

from __future__ import annotations

import argparse
from datetime import date

from pipelines import settings


def add_parser(sub: argparse._SubParsersAction) -> None:
    alerts = sub.add_parser("alerts", help="list open quota alerts, or test a channel")
    alerts.add_argument("--warehouse", help="warehouse directory (USAGE_WAREHOUSE, ./data)")
    alerts.add_argument("--quotas", help="quota/alert YAML (USAGE_QUOTAS)")
    alerts.add_argument(
        "--all", action="store_true", help="include resolved, superseded and expired alerts"
    )
    alerts.add_argument("--test-channel", metavar="NAME", help="send a test message via NAME")
    alerts.set_defaults(handler=handle_alerts)

    backtest = sub.add_parser("backtest", help="how often a rule would have fired on past data")
    backtest.add_argument("--rule", required=True, help="credit_actual, credit_forecast, ...")
    backtest.add_argument("--start", required=True, help="first day, YYYY-MM-DD")
    backtest.add_argument("--end", required=True, help="last day, YYYY-MM-DD")
    backtest.add_argument("--warehouse", help="warehouse directory (USAGE_WAREHOUSE, ./data)")
    backtest.add_argument("--quotas", help="quota/alert YAML (USAGE_QUOTAS)")
    backtest.set_defaults(handler=handle_backtest)


def _config(path: str | None) -> object:
    from pipelines.quotas import load_quotas

    return load_quotas(path)


def handle_alerts(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from pipelines.notify.channels import DeliveryError
    from pipelines.notify.delivery import send_test_message
    from warehouse.alert_store import AlertStore

    config = _config(args.quotas)
    if args.test_channel:
        try:
            send_test_message(args.test_channel, config)  # type: ignore[arg-type]
        except DeliveryError as exc:
            print(f"usage-etl alerts: test message via {args.test_channel} failed: {exc}")
            return 1
        print(f"test message sent via {args.test_channel}")
        return 0
    path = settings.warehouse_dir(args.warehouse) / "state" / "alerts.sqlite"
    if not path.exists():
        from pipelines.errors import WarehouseError

        raise WarehouseError(f"no alert state at {path}: run `usage-etl run` first")
    with AlertStore(path) as store:
        frame = store.alerts_frame()
    if not args.all and len(frame):
        frame = frame[frame["status"].isin(["open", "notified"])]
    if frame.empty:
        print("no open alerts")
        return 0
    frame = frame.assign(
        period=frame["period_start"].dt.strftime("%Y-%m-%d")
        + " -> "
        + frame["period_end"].dt.strftime("%Y-%m-%d").fillna("?")
    )
    shown = frame[["organization_name", "rule", "metric", "threshold", "period", "status", "title"]]
    print(tabulate(shown, headers="keys", showindex=False, tablefmt="simple"))
    for row in frame.itertuples():
        print(f"- {row.title}: {row.explanation}")
    return 0


def handle_backtest(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from pipelines.analytics.evaluate import backtest_rule
    from pipelines.commands.run_cmd import parse_day
    from warehouse.parquet_store import ParquetStore
    from warehouse.schema import CREDIT_USAGE, ORGANIZATIONS

    config = _config(args.quotas)
    start: date = parse_day("--start", args.start)
    end: date = parse_day("--end", args.end)
    store = ParquetStore(settings.warehouse_dir(args.warehouse))
    usage = store.read(CREDIT_USAGE, "interval = 'day'")
    if usage.empty:
        from pipelines.errors import WarehouseError

        raise WarehouseError("no credit usage in the warehouse: run `usage-etl run` first")
    result = backtest_rule(usage, store.read(ORGANIZATIONS), config, args.rule, start, end)  # type: ignore[arg-type]
    days = (end - start).days + 1
    if result.empty:
        print(f"rule {args.rule} would not have fired between {start} and {end} ({days} days)")
        return 0
    fired = result[result["notified"]]
    print(
        f"rule {args.rule}, {start} .. {end} ({days} days): {len(fired)} notifications, "
        f"{result['alert_key'].nunique()} distinct alerts, on {result['date'].nunique()} days"
    )
    cols = [c for c in ("date", "organization_id", "threshold", "value", "limit") if c in fired]
    print(tabulate(fired[cols], headers="keys", showindex=False, tablefmt="simple"))
    return 0
