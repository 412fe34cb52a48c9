"""Derived assets: project usage trends, and the evaluation of forecasts, quota status and alerts.

`project_usage_trends` recomputes, in DuckDB SQL, only the months whose inputs changed
(`insights.derived_slices`). `quota_alerts` evaluates the quota rules as of the last
complete day on the days they look at (`insights.usage_window`, read in SQL),
checks the result (blocking checks: unique keys, known organizations, finite values, ordered
forecast bounds) and only then records the alerts in the durable alert state
(`<warehouse>/state/alerts.sqlite`, queuing one message per routed channel) and writes the four
tables. It sends nothing: `assets.alert_delivery` does, after publishing, so a delivery outage
never re-evaluates and an evaluation bug never sends.
"""

import math
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    Output,
    asset,
)

from alerting.evaluate import compute_alerts, unjudged
from alerting.restatements import check_load
from alerting.routing import alert_routes
from alerting.state import open_state, record_tables
from assets.credit_usage import credit_usage_daily
from assets.io_manager import WAREHOUSE_IO_MANAGER, Tables
from assets.materialize import table_metadata
from assets.organizations import now_utc, organization_users, organizations, resource_usage
from assets.resources import Alerting, Warehouse
from common.periods import anchors_by_organization
from insights.derived_slices import describe as describe_refresh
from insights.derived_slices import refresh_trends
from insights.usage_window import load_evaluation_window, load_resource_window
from warehouse.derived_schema import (
    PROJECT_USAGE_TRENDS,
    QUOTA_ALERTS,
    QUOTA_FORECASTS,
    QUOTA_STATUS,
)
from warehouse.parquet_store import ParquetStore
from warehouse.schema import ORGANIZATIONS

GROUP = "usage_insights"


@asset(
    group_name=GROUP,
    deps=[credit_usage_daily, organizations],
    owners=["team:usage-analytics"],
    kinds={"pandas", "parquet"},
    description=(
        "Per project and organization, daily: credits, 7/30-day means, week-over-week and "
        "period-over-period change, share, rank, new and dormant flags. Table "
        "`project_usage_trends`, stored by month: computed in DuckDB SQL over the Parquet "
        "files, recomputing only the months whose inputs changed."
    ),
)
def project_usage_trends(context: AssetExecutionContext, warehouse: Warehouse) -> MaterializeResult:
    store = ParquetStore(warehouse.root)
    refresh = refresh_trends(warehouse.root, anchors_by_organization(store.read(ORGANIZATIONS)))
    context.log.info(
        f"trends: {len(refresh.recomputed)} of {len(refresh.months)} months recomputed "
        f"({', '.join(refresh.recomputed) or 'none'}), {refresh.rows_written} rows written"
    )
    preview = refresh.preview if refresh.preview is not None else store.empty(PROJECT_USAGE_TRENDS)
    metadata = table_metadata(PROJECT_USAGE_TRENDS, preview)
    # the whole table's rows and organizations, from the manifest records of its month slices
    records = [e.committed for e in store.manifest(PROJECT_USAGE_TRENDS).load().values()]
    metadata["dagster/row_count"] = sum(r.rows for r in records if r is not None)
    metadata["organizations"] = len({o for r in records if r is not None for o in r.organizations})
    metadata.update(describe_refresh(refresh))
    return MaterializeResult(metadata=metadata)


ALERT_CHECKS = {
    "alert_keys_unique": "No two candidate alerts share a key.",
    "alerts_name_known_organizations": "Every alert is about an organization in the registry.",
    "alert_values_finite": "Values, limits and thresholds are finite; thresholds are > 0.",
    "forecast_bounds_ordered": "forecast_low <= forecast_total <= forecast_high where present.",
}


def _finding(name: str, bad: list[str]) -> AssetCheckResult:
    return AssetCheckResult(
        check_name=name,
        passed=not bad,
        severity=AssetCheckSeverity.ERROR,
        description=ALERT_CHECKS[name],
        metadata={"failures": len(bad), "examples": "\n".join(bad[:5]) or "-"},
    )


def check_evaluation(
    candidates: pd.DataFrame, forecasts: pd.DataFrame, organization_ids: set[str]
) -> list[AssetCheckResult]:
    """The blocking checks on an evaluation, before anything is recorded or sent."""
    keys = candidates["alert_key"].astype(str) if len(candidates) else pd.Series(dtype=str)
    duplicated = sorted(set(keys[keys.duplicated()]))
    unknown = (
        sorted(set(candidates["organization_id"].astype(str)) - organization_ids)
        if len(candidates)
        else []
    )
    not_finite: list[str] = []
    for row in candidates.to_dict("records"):
        for column in ("value", "limit", "threshold"):
            number = row.get(column)
            if number is None or pd.isna(number):
                continue
            if not math.isfinite(float(number)) or (column == "threshold" and number <= 0):
                not_finite.append(f"{row['alert_key']}: {column} = {number}")
    unordered: list[str] = []
    if len(forecasts) and {"forecast_low", "forecast_total", "forecast_high"} <= set(forecasts):
        f = forecasts.dropna(subset=["forecast_low", "forecast_total", "forecast_high"])
        eps = 1e-6
        bad = f[
            (f["forecast_low"] > f["forecast_total"] + eps)
            | (f["forecast_total"] > f["forecast_high"] + eps)
        ]
        unordered = [
            f"{r['organization_id']}: {r['forecast_low']:.1f} / {r['forecast_total']:.1f} / "
            f"{r['forecast_high']:.1f}"
            for r in bad.to_dict("records")
        ]
    return [
        _finding("alert_keys_unique", duplicated),
        _finding("alerts_name_known_organizations", unknown),
        _finding("alert_values_finite", not_finite),
        _finding("forecast_bounds_ordered", unordered),
    ]


@asset(
    group_name=GROUP,
    deps=[credit_usage_daily, organizations, organization_users, resource_usage],
    owners=["team:usage-analytics"],
    kinds={"pandas", "sqlite"},
    io_manager_key=WAREHOUSE_IO_MANAGER,
    check_specs=[
        AssetCheckSpec(name, asset="quota_alerts", description=text, blocking=True)
        for name, text in ALERT_CHECKS.items()
    ],
    description=(
        "Evaluates forecasts to the end of each subscription period, quota status and quota "
        "alerts; after its checks pass, records the alerts' lifecycle and queues one message "
        "per routed channel (sends nothing). Tables `quota_forecasts`, `quota_status`, "
        "`quota_alerts`, `alert_outbox`. Quotas from USAGE_QUOTAS (default "
        "quotas.example.yaml)."
    ),
)
def quota_alerts(
    context: AssetExecutionContext, warehouse: Warehouse, alerting: Alerting
) -> Iterator[Output[Tables] | MaterializeResult | AssetCheckResult]:
    config = alerting.config()
    store = ParquetStore(warehouse.root)
    orgs = store.read(ORGANIZATIONS)
    current = orgs[orgs["last_seen_at"] == orgs["last_seen_at"].max()] if len(orgs) else orgs
    pairs = zip(orgs["organization_id"].astype(str), orgs["organization_name"], strict=True)
    for key in config.unmatched_overrides(pairs):
        context.log.warning(
            f"{config.source}: organizations.{key} matches no organization's id or name: "
            "that override applies to nothing"
        )
    as_of = now_utc().date() - timedelta(days=1)  # the last complete UTC day
    resources_as_of = now_utc().date()
    window = load_evaluation_window(store, as_of, config, current)
    resources = load_resource_window(store, resources_as_of)
    evaluation = compute_alerts(
        window.daily,
        current,
        config,
        resources.observations,
        as_of=as_of,
        resources_as_of=resources_as_of,
        first_days=window.first_days,
        last_days=window.last_days,
        observation_counts=resources.counts,
    )
    checks = check_evaluation(
        evaluation.candidates, evaluation.forecasts, set(orgs["organization_id"].astype(str))
    )
    if not all(c.passed for c in checks):
        failed = ", ".join(c.check_name for c in checks if not c.passed)
        context.log.error(f"alert evaluation failed its checks ({failed}): nothing recorded")
        yield MaterializeResult(metadata={"recorded": False, "failed_checks": failed})
        yield from checks
        return

    with open_state(warehouse.root) as state:
        # the window holds every day of the current periods, as `credit_usage` day rows
        day_rows = window.daily.rename(columns={"date": "start_date"})
        restated = check_load(
            state.store,
            evaluation.status,
            day_rows,
            config.rules.credit_actual_thresholds,
            lake=warehouse.lake_config(),
        )
        sync = state.store.sync(
            evaluation.candidates,
            alert_routes(config, current),
            evaluated_organizations=list(current["organization_id"]),
            notes=restated.notes(),
            totals=restated.totals,
            unjudged=unjudged(evaluation.status),
        )
        alert_frame = state.store.alerts_frame()
        pending = state.store.pending_count()
        record_tables(warehouse.root, state.store)
    opened = len(sync.opened) + len(sync.reopened)
    context.log.info(
        f"alerts: {opened} opened, {len(sync.resolved)} resolved, {len(sync.expired)} expired "
        f"(period ended), {len(sync.suppressed)} suppressed (past periods); {sync.queued} "
        f"messages queued, {pending} to deliver"
    )
    open_now = (
        alert_frame[alert_frame["status"].isin(["open", "notified"])]
        if len(alert_frame)
        else alert_frame
    )
    metadata: dict[str, Any] = dict(table_metadata(QUOTA_ALERTS, open_now))
    metadata.update(
        {
            "opened": opened,
            "resolved": len(sync.resolved),
            "expired": len(sync.expired),
            "suppressed": len(sync.suppressed),
            "queued_notifications": sync.queued,
            "pending_notifications": pending,
            "restatements_across_thresholds": len(restated.restatements),
        }
    )
    if state.recovered:
        context.log.warning(state.recovered)
        metadata["state_recovered"] = state.recovered
    # the IO manager replaces quota_forecasts and quota_status (the alert tables are the state's
    # copy, written above by record_tables as after every delivery pass)
    tables = Tables(((QUOTA_FORECASTS, evaluation.forecasts), (QUOTA_STATUS, evaluation.status)))
    yield Output(tables, metadata=metadata)
    yield from checks
