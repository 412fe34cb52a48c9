"""What every extraction asset reports to Dagster: row counts, schema, a preview, API stats.

Kept in one place so that every table's materialization looks alike in the UI.
"""

from __future__ import annotations

import pandas as pd
from dagster import MarkdownMetadataValue, MetadataValue, TableColumn, TableSchema

from pipelines.ubiops_client import RequestStats
from warehouse.schema import Table


def table_metadata(
    t: Table, frame: pd.DataFrame, stats: RequestStats | None = None, preview_rows: int = 5
) -> dict[str, object]:
    metadata: dict[str, object] = {
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


def _preview(frame: pd.DataFrame, rows: int) -> str:
    if frame.empty:
        return "_no rows_"
    head = frame.head(rows)
    lines = ["| " + " | ".join(head.columns) + " |", "|" + "---|" * len(head.columns)]
    for row in head.itertuples(index=False):
        cells = ("" if pd.isna(v) else str(v).replace("|", "\\|") for v in row)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = ["MetadataValue", "table_metadata"]
