"""Fixtures for the command-line tests (the `usage-etl` subprocess helpers are in
`tests/services/cli.py`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from warehouse.publish import publish


@pytest.fixture
def empty_warehouse(tmp_path: Path) -> Path:
    """A published warehouse with every table and no rows (no run needed)."""
    warehouse = tmp_path / "warehouse"
    warehouse.mkdir()
    publish(warehouse)
    return warehouse
