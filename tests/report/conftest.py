"""Fixtures for the report tests: copies of the session's demo warehouse (`tests/conftest.py`)
with the derived tables dropped or a hostile organization name, and a headless Chromium that
records console errors and every request a page makes.

Chromium is Debian's (/usr/bin/chromium, or CHROMIUM_PATH). When it is missing the browser tests
fail if the environment variable CI is set, and are skipped otherwise.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pytest

HOSTILE_NAME = '<script>alert("x")</script> & <b>co</b>'
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def hostile_name() -> str:
    """The organization name the hostile warehouse gives one organization (escaping tests)."""
    return HOSTILE_NAME


def drop_derived_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Remove the pipeline's derived tables, leaving the base tables."""
    from warehouse.derived_schema import DERIVED_TABLES
    from warehouse.views import VIEWS

    for view in VIEWS:  # views were bound to the derived tables' shape; rebuilt on demand
        con.execute(f'DROP VIEW IF EXISTS "{view.name}"')
    for table in DERIVED_TABLES:
        con.execute(f'DROP TABLE IF EXISTS "{table.name}"')


def _copy(demo: Path, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    warehouse = tmp_path_factory.mktemp(name) / "warehouse"
    warehouse.mkdir()
    shutil.copy(demo / "usage.duckdb", warehouse / "usage.duckdb")
    return warehouse


@pytest.fixture(scope="session")
def base_tables_warehouse(demo_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo database with the base tables only (as before any derived asset ran)."""
    warehouse = _copy(demo_warehouse, tmp_path_factory, "base")
    con = duckdb.connect(str(warehouse / "usage.duckdb"))
    try:
        drop_derived_tables(con)
    finally:
        con.close()
    return warehouse


@pytest.fixture(scope="session")
def hostile_warehouse(demo_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo database with one organization renamed to markup, and an alert explanation
    with markup in it."""
    warehouse = _copy(demo_warehouse, tmp_path_factory, "hostile")
    con = duckdb.connect(str(warehouse / "usage.duckdb"))
    try:
        con.execute(
            "UPDATE organizations SET organization_name = ? WHERE organization_id = "
            "(SELECT organization_id FROM quota_alerts WHERE rule = 'resource_limit' LIMIT 1)",
            [HOSTILE_NAME],
        )
        con.execute(
            "UPDATE quota_alerts SET explanation = '<before> the period ends & more' "
            "WHERE status <> 'resolved'"
        )
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return warehouse


@dataclass
class PageLog:
    """What a page did: console errors, failed requests, every request URL."""

    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.failed == [], self.failed
        assert all(u.startswith(("file://", "blob:")) for u in self.requests), self.requests


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        message = f"chromium not found at {CHROMIUM}: apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def open_page(browser, url: str, log: PageLog | None = None):  # type: ignore[no-untyped-def]
    """A new page (1300x900) with `log` recording it, navigated to `url` (waits for load)."""
    log = log if log is not None else PageLog()
    page = browser.new_page(viewport={"width": 1300, "height": 900}, accept_downloads=True)
    page.on(
        "console", lambda m: log.errors.append(f"{m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: log.errors.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: log.failed.append(r.url))
    page.on("request", lambda r: log.requests.append(r.url))
    page.goto(url, wait_until="load")
    return page, log


def screenshot(page, name: str) -> Path:  # type: ignore[no-untyped-def]
    """Save a full-page screenshot to tests/artifacts/<name>.png (ignored by git)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
