"""The report in a real headless Chromium: no console errors, no network, a chart for everything.

Needs Debian's `chromium` at /usr/bin/chromium (or CHROMIUM_PATH). When it is missing the tests
fail if the environment variable CI is set, and are skipped otherwise. The screenshot of the
full page is saved to tests/artifacts/report.png (ignored by git).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pipelines.report import write_report

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


@pytest.fixture(scope="module")
def browser():
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


def open_report(browser, html_path: Path, screenshot: Path | None = None) -> tuple:
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    console: list[str] = []
    failed: list[str] = []
    requests: list[str] = []
    page.on(
        "console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    page.on("requestfailed", lambda r: failed.append(r.url))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(html_path.resolve().as_uri(), wait_until="load")
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
    return page, console, failed, requests


def chart_counts(page) -> list[dict]:
    return page.eval_on_selector_all(
        "section.org",
        """sections => sections.map(s => ({
            org: s.dataset.organization,
            title: s.querySelector('h2').textContent,
            period: s.querySelectorAll('svg[data-chart=period] path.actual').length,
            band: s.querySelectorAll('svg[data-chart=period] polygon.band').length,
            budget: s.querySelectorAll('svg[data-chart=period] line.budget').length,
            stacked: s.querySelectorAll('svg[data-chart=stacked] rect.mark').length,
            resources: s.querySelectorAll('svg[data-chart=resources] rect.mark').length,
            alerts: s.querySelectorAll('table.alerts tbody tr').length,
            width: s.querySelector('svg[data-chart=stacked]').getBoundingClientRect().width,
        }))""",
    )


def test_report_with_derived_tables_renders_cleanly(
    browser, derived_warehouse: Path, hostile_name: str
) -> None:
    html = write_report(derived_warehouse, derived_warehouse / "report" / "index.html")
    page, console, failed, requests = open_report(browser, html, ARTIFACTS / "report.png")
    try:
        assert console == []
        assert failed == []
        assert all(u.startswith("file://") for u in requests), requests
        counts = chart_counts(page)
        assert len(counts) == 6
        for c in counts:
            assert c["period"] == 1, c
            assert c["stacked"] > 20, c
            assert c["resources"] == 8, c
            assert c["width"] > 400, c
        assert sum(c["band"] for c in counts) == 6
        assert sum(c["budget"] for c in counts) == 5  # one organization has no budget
        assert sum(c["alerts"] for c in counts) >= 1
        # the hostile name is shown as text, never interpreted
        assert hostile_name in [c["title"] for c in counts]
        assert page.evaluate("document.scripts.length") == 0
        assert page.locator("section.org b").count() == 0
        assert page.locator("text=<before> the period ends & more").count() >= 1
    finally:
        page.close()
    assert (ARTIFACTS / "report.png").stat().st_size > 10_000


def test_report_of_the_real_pipeline_shows_forecasts_and_alerts(
    browser, demo_warehouse: Path, tmp_path
) -> None:
    html = write_report(demo_warehouse, tmp_path / "demo.html")
    page, console, failed, _ = open_report(browser, html, ARTIFACTS / "report-demo.png")
    try:
        assert console == []
        assert failed == []
        counts = chart_counts(page)
        assert len(counts) == 6
        assert any(c["band"] > 0 and c["budget"] > 0 for c in counts), counts
        assert any(c["alerts"] > 0 for c in counts), counts
    finally:
        page.close()


def test_report_of_base_tables_only_renders_cleanly(
    browser, base_tables_warehouse: Path, tmp_path
) -> None:
    html = write_report(base_tables_warehouse, tmp_path / "base.html")
    page, console, failed, _ = open_report(browser, html, ARTIFACTS / "report-base-tables.png")
    try:
        assert console == []
        assert failed == []
        counts = chart_counts(page)
        assert len(counts) == 6
        for c in counts:
            assert c["period"] == 1 and c["stacked"] > 20 and c["resources"] == 8, c
            assert c["band"] == 0 and c["budget"] == 0 and c["alerts"] == 0, c
    finally:
        page.close()
