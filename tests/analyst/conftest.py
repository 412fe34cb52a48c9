"""Fixtures for the analyst tests: one demo warehouse per session (one real pipeline run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.report.demo import build_demo_warehouse


@pytest.fixture(scope="session")
def demo_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shared with tests/report when both run in one session (same base temp directory)."""
    root = tmp_path_factory.getbasetemp() / "demo-warehouse"
    warehouse = root / "warehouse"
    if not (warehouse / "usage.duckdb").exists():
        build_demo_warehouse(root)
    return warehouse
