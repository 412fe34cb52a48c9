"""What every extraction asset reports to Dagster: row counts, schema, a preview, API stats.

Kept in one place so that every table's materialization looks alike in the UI. A partitioned
asset materialized over a range gets one materialization per partition: `partition_metadata`
gives each its own `dagster/row_count` (that partition's rows), while the API statistics of the
run are recorded once, on the first partition of the range, so that adding them up over events
gives the requests actually sent. A step the API fails (`ApiError`) fails with the same
statistics, as the metadata of its `Failure` (`api_failure_stats`), so a failed run's summary
still counts the requests it sent; a step stopped by an interrupt (Ctrl-C, SIGTERM) records
what it had sent as an engine event of its own (`STOPPED_STEP_REQUESTS`), for the same reason.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pandas as pd
from dagster import (
    AssetExecutionContext,
    Failure,
    MarkdownMetadataValue,
    MetadataValue,
    TableColumn,
    TableSchema,
)
from dagster._core.events import EngineEventData

from common.errors import ApiError
from ubiops_api.client import RequestStats, UbiOpsClient
from warehouse.schema import Table

log = logging.getLogger(__name__)


def table_metadata(
    t: Table, frame: pd.DataFrame, stats: RequestStats | None = None, preview_rows: int = 5
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "dagster/row_count": len(frame),
        "dagster/column_schema": TableSchema(
            columns=[TableColumn(c.name, str(c.type), description=c.description) for c in t.columns]
        ),
        "preview": MarkdownMetadataValue(_preview(frame, preview_rows)),
    }
    if "organization_id" in frame.columns:
        metadata["organizations"] = int(frame["organization_id"].nunique())
    if stats is not None:
        for key, value in stats.as_dict().items():
            metadata[f"api_{key}"] = value
    return metadata


def partition_metadata(
    context: AssetExecutionContext,
    t: Table,
    frame: pd.DataFrame,
    per_partition: Mapping[str, pd.DataFrame],
    stats: RequestStats | None = None,
) -> dict[str, Any]:
    """Metadata for a partition-range materialization; each partition gets its own row count.

    Returns what every partition's event shares (schema); sets, per partition, its row count and
    preview, and the API statistics on the first partition only (they describe the whole run).
    """
    shared = table_metadata(t, frame)
    for key in ("dagster/row_count", "preview", "organizations"):
        shared.pop(key, None)
    for index, (partition, part) in enumerate(per_partition.items()):
        own = table_metadata(t, part, stats if index == 0 else None)
        own.pop("dagster/column_schema", None)
        own["range_rows"] = len(frame)
        context.add_asset_metadata(own, partition_key=partition)
    return shared


STOPPED_STEP_REQUESTS = "requests sent by a step that was stopped"


class StepClients:
    """The API clients a step makes (`track` wraps its client factory), whose statistics are
    live: what a step stopped midway (Ctrl-C, SIGTERM) had sent is known."""

    def __init__(self, earlier: tuple[RequestStats, ...]) -> None:
        self.earlier = earlier
        self.clients: list[UbiOpsClient] = []

    def track(self, factory: Callable[[], UbiOpsClient]) -> Callable[[], UbiOpsClient]:
        def make() -> UbiOpsClient:
            client = factory()
            self.clients.append(client)
            return client

        return make

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for stats in [*self.earlier, *(c.stats for c in self.clients)]:
            for key, value in stats.as_dict().items():
                counts[key] = counts.get(key, 0) + value
        return counts


@contextlib.contextmanager
def api_failure_stats(
    *earlier: RequestStats, context: AssetExecutionContext | None = None
) -> Iterator[StepClients]:
    """An `ApiError` leaving the block fails the step as a `Failure` with the same message (the
    `ApiError` as its cause) and the requests sent as metadata (`api_requests`, `api_retries`,
    `api_rate_limited_429`, `api_failed`): those of the client that gave up plus `earlier`
    clients' of the same step.

    Anything else that stops the step inside the block (an interrupt: Dagster raises it into
    the step on Ctrl-C or SIGTERM; a bug) is re-raised as it is, and, with `context`, the
    requests the clients made through the yielded `StepClients.track` had sent (plus
    `earlier`) are first recorded as an engine event of the step with the same metadata
    (written to the run's event log at once: events a step logs itself are lost when it
    raises), so a stopped run's summary counts them too."""
    clients = StepClients(earlier)
    try:
        yield clients
    except ApiError as exc:
        counts = dict(exc.request_stats or {})
        for stats in earlier:
            for key, value in stats.as_dict().items():
                counts[key] = counts.get(key, 0) + value
        raise Failure(
            description=str(exc), metadata={f"api_{k}": v for k, v in counts.items()}
        ) from exc
    except BaseException:
        counts = clients.counts()
        if context is not None and counts.get("requests"):
            try:
                context.instance.report_engine_event(
                    STOPPED_STEP_REQUESTS,
                    context.run,
                    EngineEventData(metadata={f"api_{k}": v for k, v in counts.items()}),
                    step_key=str(context.op_handle),
                )
            except Exception as exc:  # never instead of what stopped the step
                log.warning(
                    "the %d API requests of the stopped step %s are not in the run's summary: "
                    "its event log refused them (%s)",
                    counts["requests"],
                    context.op_handle,
                    type(exc).__name__,
                )
        raise


def _preview(frame: pd.DataFrame, rows: int) -> str:
    if frame.empty:
        return "_no rows_"
    head = frame.head(rows)
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    for row in head.itertuples(index=False):
        cells = ("" if pd.isna(v) else str(v).replace("|", "\\|") for v in row)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["MetadataValue", "partition_metadata", "table_metadata"]
