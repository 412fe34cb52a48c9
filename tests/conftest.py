"""What every test folder shares: settings applied before any test module imports the Dagster
definitions, and the session's demo warehouse.

The tests' data reach further back than a deployment's default first partition: the report
tests build 24 months of history. `USAGE_PARTITIONS_START` is read when the definitions are
loaded, so it is set here, once, for the whole session (and the processes it starts).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pipelines.report.demo import build_demo_warehouse

os.environ.setdefault("USAGE_PARTITIONS_START", "2024-01-01")


@pytest.fixture(scope="session")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two months (previous + current) of the emulator's demo organizations: one real run,
    shared by the analyst, CLI and report tests. Built in a thread of its own: the pipeline
    calls asyncio.run(), which cannot run where a browser test keeps an event loop."""
    root = tmp_path_factory.getbasetemp() / "demo-warehouse"
    warehouse = root / "warehouse"
    if not (warehouse / "usage.duckdb").exists():
        with ThreadPoolExecutor(max_workers=1) as pool:
            pool.submit(build_demo_warehouse, root).result()
    return warehouse
