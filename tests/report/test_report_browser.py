"""The report in a real headless Chromium, at 2 and at 24 months of data: it loads without console
errors or network requests, its charts are legible (units on the axes, tick labels that do not
collide, weekly bars on the index at 24 months), an organization's page shows a bounded window in
full detail beside its whole history per subscription period, the filters hide rows, sorting and
CSV export work, and every organization's page is linked and opens. Screenshots go to
tests/artifacts/report-*.png.
"""

from __future__ import annotations

import csv
import http.server
import io
import itertools
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from reports import write_report
from reports.data import RECENT_DAYS, RECENT_PERIODS
from tests.report.conftest import PageLog, open_page, screenshot
from tests.services.warehouse_files import query_published

PERIOD = re.compile(r"^\d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d$")


@pytest.fixture(scope="module")
def report_2m(demo_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(demo_warehouse, tmp_path_factory.mktemp("r2m") / "report")


@pytest.fixture(scope="module")
def report_24m(long_warehouse: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(long_warehouse, tmp_path_factory.mktemp("r24m") / "report")


def chart_legibility(page) -> list[dict]:  # type: ignore[no-untyped-def]
    """Per chart: its kind, axis unit texts, x tick labels with their boxes, and bar groups."""
    return page.eval_on_selector_all(
        "svg.chart",
        """charts => charts.map(svg => ({
            kind: svg.dataset.chart,
            units: Array.from(svg.querySelectorAll('text.unit')).map(t => t.textContent),
            ticks: Array.from(svg.querySelectorAll('text.tick.x')).map(t => {
                const b = t.getBoundingClientRect();
                return {text: t.textContent, left: b.left, right: b.right};
            }),
            yticks: Array.from(svg.querySelectorAll('text.tick.y')).map(t => t.textContent),
            buckets: svg.querySelectorAll('g.bucket').length,
        }))""",
    )


def assert_legible(charts: list[dict], units: dict[str, str]) -> None:
    """Every time chart has both axes' units and x labels that do not collide; the bar charts
    of each kind in `units` read that unit on the y axis."""
    time_charts = [c for c in charts if c["kind"] in ("period", *units)]
    assert time_charts, charts
    for c in time_charts:
        assert "date (UTC)" in c["units"], c
        assert any(u.startswith("credits") for u in c["units"]), c
        ticks = sorted(c["ticks"], key=lambda t: t["left"])
        assert 2 <= len(ticks) <= 12, ticks
        for a, b in itertools.pairwise(ticks):
            assert a["right"] + 4 <= b["left"], f"x labels collide: {a} {b}"
        # one number format: thousands separators, never 25k beside 5,000
        assert all(re.fullmatch(r"\d{1,3}(,\d{3})*(\.\d+)?", t) for t in c["yticks"]), c
    for kind, unit in units.items():
        bars = [c for c in charts if c["kind"] == kind]
        assert bars and all(unit in c["units"] for c in bars), (kind, bars)


ORG_UNITS = {"history": "credits per day", "period-history": "credits per subscription period"}


def visible_rows(page, table: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return page.eval_on_selector_all(
        f"#{table} tbody tr",
        """rows => rows.filter(r => !r.hidden).map(r => ({
            org: r.dataset.org, risk: r.dataset.risk, from: r.dataset.from, to: r.dataset.to,
            cells: Array.from(r.cells).map(c => c.dataset.v !== undefined
                                                ? c.dataset.v : c.textContent.trim()),
        }))""",
    )


def export_csv(page, table: str) -> list[list[str]]:  # type: ignore[no-untyped-def]
    with page.expect_download() as info:
        page.click(f'button[data-csv="{table}"]')
    download = info.value
    text = Path(download.path()).read_text(encoding="utf-8")
    return list(csv.reader(io.StringIO(text)))


def test_index_at_two_months(browser, report_2m: Path, demo_warehouse: Path) -> None:
    page, log = open_page(browser, report_2m.as_uri())
    try:
        screenshot(page, "report-2-months-index")
        log.assert_clean()
        assert page.evaluate("document.scripts.length") == 1
        csp = page.get_attribute('meta[http-equiv="Content-Security-Policy"]', "content")
        assert "default-src 'none'" in csp and "'unsafe-inline'" not in csp, csp
        assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+';", csp), csp
        assert_legible(chart_legibility(page), {"history": "credits per day"})
        rows = visible_rows(page, "organizations")
        (orgs,) = query_published(demo_warehouse, "SELECT count(*) FROM organizations")[0]
        assert len(rows) == orgs == 6
        risks = [int(r["risk"]) for r in rows]
        assert risks == sorted(risks, reverse=True) and risks[0] == 3, risks
        # every organization's page exists where the index links it
        hrefs = page.eval_on_selector_all("#organizations a", "as => as.map(a => a.href)")
        assert len(hrefs) == orgs
        assert all(Path(h.removeprefix("file://")).is_file() for h in hrefs), hrefs
    finally:
        page.close()


def test_every_organization_page_opens_from_the_index(browser, report_2m: Path) -> None:
    page, log = open_page(browser, report_2m.as_uri())
    try:
        names = page.eval_on_selector_all(
            "#organizations tbody a", "as => as.map(a => a.textContent)"
        )
        for i, name in enumerate(names):
            page.click(f"#organizations tbody tr:nth-child({i + 1}) a")
            page.wait_for_load_state("load")
            assert page.url.endswith(".html") and "/organizations/" in page.url
            assert page.inner_text("h1").startswith(name)
            kinds = [c["kind"] for c in chart_legibility(page)]
            assert kinds.count("period") == 1 and kinds.count("history") == 1, kinds
            assert kinds.count("period-history") == 1 and "resources" in kinds, kinds
            if i == 0:
                screenshot(page, "report-2-months-org")
                assert_legible(chart_legibility(page), ORG_UNITS)
            page.click("text=all organizations")
            page.wait_for_load_state("load")
            assert page.url == report_2m.as_uri()
        log.assert_clean()
    finally:
        page.close()


def test_report_at_24_months_is_weekly_and_legible(
    browser, report_24m: Path, long_warehouse: Path
) -> None:
    (days,) = query_published(
        long_warehouse,
        "SELECT count(DISTINCT day) FROM daily_usage_by_organization",
    )[0]
    assert days > 700  # 24 months of data
    page, log = open_page(browser, report_24m.as_uri())
    try:
        screenshot(page, "report-24-months-index")
        charts = chart_legibility(page)
        assert_legible(charts, {"history": "credits per week"})
        history = next(c for c in charts if c["kind"] == "history")
        assert 100 <= history["buckets"] <= 110, history["buckets"]
        labels = [t["text"] for t in history["ticks"]]
        assert sum(bool(re.fullmatch(r"[A-Z][a-z]{2} \d{4}", t)) for t in labels) >= 2, labels
        page.click("#organizations tbody tr:nth-child(1) a")
        page.wait_for_load_state("load")
        screenshot(page, "report-24-months-org")
        charts = chart_legibility(page)
        assert_legible(charts, ORG_UNITS)
        # a bounded window in full detail: the last RECENT_DAYS days, per day ...
        daily = next(c for c in charts if c["kind"] == "history")
        assert daily["buckets"] == len(visible_rows(page, "usage")) == RECENT_DAYS
        # ... the last RECENT_PERIODS subscription periods per project ...
        per_project = {r["from"] for r in visible_rows(page, "period-projects")}
        assert len(per_project) == RECENT_PERIODS, sorted(per_project)
        # ... and the whole history per subscription period
        periods = visible_rows(page, "periods")
        assert len(periods) >= 24 and per_project < {r["from"] for r in periods}
        by_period = next(c for c in charts if c["kind"] == "period-history")
        assert by_period["buckets"] == len(periods)
        log.assert_clean()
    finally:
        page.close()


def test_organization_and_risk_filters_hide_rows(browser, report_2m: Path) -> None:
    page, log = open_page(browser, report_2m.as_uri())
    try:
        all_orgs = visible_rows(page, "organizations")
        page.fill('[data-filter="org"]', "ember")
        orgs = visible_rows(page, "organizations")
        assert [r["cells"][1] for r in orgs] == ["ember-free"]
        assert page.inner_text('[data-count="organizations"]') == f"1 of {len(all_orgs)} rows"

        page.fill('[data-filter="org"]', "")
        page.select_option('[data-filter="risk"]', "3")
        critical = visible_rows(page, "organizations")
        assert critical and all(r["risk"] == "3" for r in critical)
        assert len(critical) < len(all_orgs)

        page.click("button[data-reset]")
        assert len(visible_rows(page, "organizations")) == len(all_orgs)

        page.click("text=All open alerts")
        page.wait_for_load_state("load")
        all_alerts = visible_rows(page, "alerts")
        page.fill('[data-filter="org"]', "ember")
        alerts = visible_rows(page, "alerts")
        assert alerts and all("ember" in r["org"] for r in alerts)
        assert len(alerts) < len(all_alerts)
        page.fill('[data-filter="org"]', "")
        page.select_option('[data-filter="risk"]', "3")
        critical = visible_rows(page, "alerts")
        assert critical and all(r["risk"] == "3" for r in critical)
        assert len(critical) < len(all_alerts)
        # a date range before every alert's period hides them all
        page.select_option('[data-filter="risk"]', "")
        page.fill('[data-filter="from"]', "2000-01-01")
        page.fill('[data-filter="to"]', "2000-01-31")
        assert visible_rows(page, "alerts") == []
        log.assert_clean()
    finally:
        page.close()


def test_date_range_filters_an_organization_page(browser, report_2m: Path) -> None:
    page, log = open_page(browser, report_2m.as_uri())
    try:
        page.click("#organizations tbody tr:nth-child(1) a")
        page.wait_for_load_state("load")
        every = visible_rows(page, "usage")
        days = sorted(r["from"] for r in every)
        start, end = days[10], days[19]
        page.fill('[data-filter="from"]', start)
        page.fill('[data-filter="to"]', end)
        shown = visible_rows(page, "usage")
        assert sorted(r["from"] for r in shown) == days[10:20]
        total = sum(float(r["cells"][1]) for r in shown)
        footer = page.text_content("#usage tfoot td[data-sum='1']") or ""
        assert float(footer.replace(",", "")) == pytest.approx(total, rel=1e-3, abs=0.01)
        dimmed = page.eval_on_selector_all(
            'svg[data-chart="history"] g.bucket.out', "gs => gs.length"
        )
        assert dimmed == len(every) - 10
        periods = visible_rows(page, "periods")
        assert all(r["to"] >= start and r["from"] <= end for r in periods)
        log.assert_clean()
    finally:
        page.close()


def test_csv_export_gives_the_tables_shown_rows(
    browser, report_2m: Path, demo_warehouse: Path
) -> None:
    page, log = open_page(browser, report_2m.as_uri())
    try:
        names = page.eval_on_selector_all(
            "#organizations thead th", "ths => ths.map(t => t.dataset.name)"
        )
        rows = export_csv(page, "organizations")
        assert rows[0] == names
        shown = visible_rows(page, "organizations")
        risk = names.index("risk")
        labels = page.eval_on_selector_all(
            "#organizations tbody tr",
            f"rows => rows.filter(r => !r.hidden).map(r => r.cells[{risk}].textContent.trim())",
        )
        for row in shown:  # a risk as its label (its code only sorts)
            row["cells"][risk] = labels.pop(0)
        assert rows[1:] == [r["cells"] for r in shown]
        assert {r[risk] for r in rows[1:]} <= {"critical", "at risk", "watch", "ok"}
        assert len(rows) == 1 + 6

        (open_alerts,) = query_published(demo_warehouse, "SELECT count(*) FROM open_alerts")[0]
        page.click("text=All open alerts")
        page.wait_for_load_state("load")
        alerts = export_csv(page, "alerts")
        assert len(alerts) == 1 + open_alerts
        assert {"organization", "rule", "subject", "period", "explanation"} <= set(alerts[0])

        page.fill('[data-filter="org"]', "delta")
        filtered = export_csv(page, "alerts")
        org = filtered[0].index("organization")
        assert len(filtered) > 1 and {r[org] for r in filtered[1:]} == {"delta-vision"}
        log.assert_clean()
    finally:
        page.close()


def test_sorting_by_a_header(browser, report_2m: Path) -> None:
    page, log = open_page(browser, report_2m.as_uri())
    try:
        page.click('#organizations th[data-name="credits_used"]')
        used = [float(r["cells"][4]) for r in visible_rows(page, "organizations")]
        assert used == sorted(used)
        page.click('#organizations th[data-name="credits_used"]')
        used = [float(r["cells"][4]) for r in visible_rows(page, "organizations")]
        assert used == sorted(used, reverse=True)
        page.click('#organizations th[data-name="organization"]')
        names = [r["cells"][1].lower() for r in visible_rows(page, "organizations")]
        assert names == sorted(names)
        log.assert_clean()
    finally:
        page.close()


def test_alerts_name_the_resource_explain_and_show_the_period(browser, report_2m: Path) -> None:
    page, log = open_page(browser, (report_2m.parent / "alerts.html").as_uri())
    try:
        screenshot(page, "report-2-months-alerts")
        header = page.eval_on_selector_all(
            "#alerts thead th", "ths => ths.map(t => t.dataset.name)"
        )
        texts = page.eval_on_selector_all(
            "#alerts tbody tr",
            "rows => rows.map(r => Array.from(r.cells).map(c => c.textContent.trim()))",
        )
        col = {name: header.index(name) for name in header}
        resource = [r for r in texts if r[col["rule"]] == "resource_limit"]
        assert resource, texts
        for r in resource:
            assert re.fullmatch(r"resource: [a-z ]+", r[col["subject"]]), r
            name = r[col["subject"]].removeprefix("resource: ")
            assert f" {name} in use against a limit of " in r[col["explanation"]], r
        for r in texts:
            assert PERIOD.match(r[col["period"]]), r
            assert r[col["explanation"]].strip(), r
        log.assert_clean()
    finally:
        page.close()


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _CountingHandler.hits.append(self.path)
        self.send_response(200)
        self.send_header("Access-Control-Allow-Origin", "*")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def counting_server() -> Iterator[tuple[str, list[str]]]:
    _CountingHandler.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _CountingHandler)
    # a short poll: `shutdown()` waits for the loop's next look (0.5 s by default)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _CountingHandler.hits
    finally:
        server.shutdown()
        server.server_close()


def test_the_csp_refuses_every_network_request(
    browser, report_2m: Path, counting_server: tuple[str, list[str]]
) -> None:
    base, hits = counting_server
    page, log = open_page(browser, report_2m.as_uri())
    try:
        page.evaluate(
            """base => {
                window.violations = [];
                document.addEventListener('securitypolicyviolation',
                    e => window.violations.push(e.violatedDirective));
                fetch(base + '/fetch').catch(() => null);
                new Image().src = base + '/img';
                const s = document.createElement('script');
                s.src = base + '/script.js';
                document.body.appendChild(s);
                const inline = document.createElement('script');
                inline.textContent = 'window.injected = true';
                document.body.appendChild(inline);
            }""",
            base,
        )
        page.wait_for_function("window.violations.length >= 4", timeout=10_000)
        assert page.evaluate("window.injected === undefined")
        assert hits == []
    finally:
        page.close()
    # the browser reports the attempts, and every one of them failed (blocked by the CSP)
    attempted = [u for u in log.requests if u.startswith(base)]
    assert attempted and all(u in log.failed for u in attempted), (attempted, log.failed)


def test_report_of_base_tables_only(browser, base_tables_warehouse: Path, tmp_path: Path) -> None:
    index = write_report(base_tables_warehouse, tmp_path / "report")
    page, log = open_page(browser, index.as_uri())
    try:
        rows = visible_rows(page, "organizations")
        assert len(rows) == 6 and all(r["risk"] == "0" for r in rows)
        page.click("#organizations tbody tr:nth-child(1) a")
        page.wait_for_load_state("load")
        assert page.locator("line.budget").count() == 0
        assert page.locator("text=No budget or forecast published yet").count() == 1
        log.assert_clean()
    finally:
        page.close()


def test_log_is_clean_helper_catches_network() -> None:
    log = PageLog(requests=["file:///x/index.html", "http://example.com/a.js"])
    with pytest.raises(AssertionError):
        log.assert_clean()
