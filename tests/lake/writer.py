"""A separate writer process for the lake tests (as a run on another host would be).

    python -m tests.lake.writer MONTH ROUNDS [ROWS]

Replaces the `credit_usage` day slice of MONTH with ROWS rows ROUNDS times, each round's rows
all carrying the round number as credits, and prints `retries=N` at the end. The lake is named
by the environment (`USAGE_LAKE_CATALOG`, `USAGE_LAKE_DATA`, AWS variables).
"""

from __future__ import annotations

import sys

import pyarrow as pa

from warehouse.lake import LakeConfig, LakeTables, connect
from warehouse.schema import CREDIT_USAGE


def slice_rows(month: str, rows: int, credits: float) -> pa.Table:
    start = pa.array([f"{month}-01T00:00:00"] * rows, pa.string()).cast(pa.timestamp("us"))
    return pa.table(
        {
            "organization_id": pa.array([f"org-{i % 7}" for i in range(rows)]),
            "organization_name": pa.array([f"name-{i % 7}" for i in range(rows)]),
            "interval": pa.array(["day"] * rows),
            "scope": pa.array(["project"] * rows),
            "project_id": pa.array([f"p-{i}" for i in range(rows)]),
            "project_name": pa.array([f"project {i}" for i in range(rows)]),
            "start_date": start,
            "end_date": start,
            "credits": pa.array([credits] * rows, pa.float64()),
            "loaded_at": start,
        }
    )


def main(argv: list[str]) -> int:
    month, rounds = argv[0], int(argv[1])
    rows = int(argv[2]) if len(argv) > 2 else 500
    config = LakeConfig.from_env()
    assert config is not None
    con = connect(config)
    tables = LakeTables(con, config)
    for round_number in range(1, rounds + 1):
        tables.replace_slices(
            CREDIT_USAGE,
            [({"interval": "day", "month": month}, slice_rows(month, rows, float(round_number)))],
        )
        print(f"round={round_number}", flush=True)
    print(f"retries={tables.retries}", flush=True)
    con.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
