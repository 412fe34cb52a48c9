"""The report's files without a browser: where they are written, that they are self-contained and
escaped, that a crashed build leaves the previous report whole, and the formatting rules
(one number format, thinned ticks, the grain chosen by the span)."""

from __future__ import annotations

import html as html_lib
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from pipelines.cli import main
from reports import build_report, write_report
from reports import pages as report_pages
from reports.charts import time_ticks
from reports.data import choose_grain
from reports.formatting import fmt_number, fmt_period, fmt_tick


def test_self_contained_and_escaped(hostile_warehouse: Path, hostile_name: str) -> None:
    pages = build_report(hostile_warehouse)
    assert {"index.html", "alerts.html"} <= set(pages) and len(pages) == 2 + 6
    escaped = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;co&lt;/b&gt;"
    hostile_pages = [p for p, html in pages.items() if escaped in html]
    # the index, the alerts page and the organization's own page
    assert {"index.html", "alerts.html"} <= set(hostile_pages) and len(hostile_pages) == 3
    for html in pages.values():
        assert hostile_name not in html
        assert html.count("<script") == 1  # the report's own script only
        assert not re.search(r"(src|href)=\"(https?:)?//", html)
        assert "@import" not in html and "url(" not in html
    assert "&lt;before&gt; the period ends &amp; more" in pages["alerts.html"]


def test_default_location_and_command(demo_warehouse_copy: Path, tmp_path: Path, capsys) -> None:
    demo_warehouse = demo_warehouse_copy  # the report goes into the warehouse
    index = write_report(demo_warehouse)
    assert index == demo_warehouse / "report" / "index.html"
    assert len(list((demo_warehouse / "report" / "organizations").glob("*.html"))) == 6

    out = tmp_path / "somewhere"
    assert main(["report", "--warehouse", str(demo_warehouse), "--out", str(out)]) == 0
    assert (out / "index.html").read_text().startswith("<!DOCTYPE html>")
    assert (out / "index.html").as_uri() in capsys.readouterr().out

    code = main(["report", "--warehouse", str(demo_warehouse), "--out", str(tmp_path / "r.html")])
    assert code == 2
    err = capsys.readouterr().err
    assert "r.html" in err and "directory" in err
    assert not (tmp_path / "r.html").exists()


def test_pages_written_by_several_processes_are_the_pages_one_writes(
    demo_warehouse: Path, tmp_path: Path
) -> None:
    at = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
    one, three = tmp_path / "one", tmp_path / "three"
    write_report(demo_warehouse, one, workers=1, generated_at=at)
    write_report(demo_warehouse, three, workers=3, generated_at=at)
    pages = {p.relative_to(one): p.read_bytes() for p in one.rglob("*.html")}
    assert len(pages) == 2 + 6
    assert {p.relative_to(three): p.read_bytes() for p in three.rglob("*.html")} == pages


@pytest.mark.parametrize("workers", [1, 2], ids=["one-process", "two-processes"])
def test_a_crash_while_writing_leaves_the_previous_report(
    demo_warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    """With page workers, the third page a worker renders fails in that worker (the patched
    renderer is inherited by the fork): the error reaches the caller the same way."""
    out = tmp_path / "report"
    write_report(demo_warehouse, out)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.html")}
    calls = {"n": 0}
    real = report_pages.render_org

    def crash_on_third(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(report_pages, "render_org", crash_on_third)
    with pytest.raises(OSError, match="simulated"):
        write_report(demo_warehouse, out, workers=workers)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*.html")}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # no temporaries left


def test_a_directory_that_is_not_a_report_is_never_replaced(
    demo_warehouse: Path, tmp_path: Path, capsys
) -> None:
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    code = main(["report", "--warehouse", str(demo_warehouse), "--out", str(precious)])
    assert code == 2
    assert "not a report directory" in capsys.readouterr().err
    assert sorted(p.name for p in precious.iterdir()) == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home"]


def test_leftovers_of_a_crashed_swap_are_recovered(demo_warehouse: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    write_report(demo_warehouse, out)
    # a crash between the two renames of the fallback swap: the old report moved aside
    out.rename(tmp_path / ".report-old-abc")
    (tmp_path / ".report-build-def").mkdir()
    (tmp_path / ".report-build-def" / "index.html").write_text("half")
    write_report(demo_warehouse, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]
    assert (out / "index.html").read_text().startswith("<!DOCTYPE html>")


def test_one_number_format() -> None:
    assert fmt_number(1234.5) == "1,234"  # rounds half to even, like Python's format
    assert fmt_number(25_000) == "25,000"
    assert fmt_number(12.34) == "12.3"
    assert fmt_number(0.123) == "0.12"
    assert fmt_number(24.0) == "24"
    assert fmt_number(None) == fmt_number(float("nan")) == "\u2013"
    assert [fmt_tick(v, 5000) for v in (0, 5000, 25000)] == ["0", "5,000", "25,000"]
    assert fmt_tick(0.5, 0.5) == "0.5"
    assert fmt_period(date(2026, 11, 15), date(2026, 12, 15)) == "2026-11-15 to 2026-12-14"


def test_ticks_are_thinned_and_the_grain_follows_the_span() -> None:
    month = time_ticks(date(2026, 11, 1), date(2026, 11, 30))
    assert [label for _, label in month] == ["Nov 01", "Nov 08", "Nov 15", "Nov 22", "Nov 29"]
    two_months = time_ticks(date(2026, 10, 1), date(2026, 11, 28))
    assert [label for _, label in two_months] == ["Oct 01", "Oct 15", "Nov 01", "Nov 15"]
    two_years = time_ticks(date(2024, 12, 1), date(2026, 11, 28))
    assert 6 <= len(two_years) <= 10
    assert two_years[0][1] == "Jan 2025" and "Jan 2026" in [label for _, label in two_years]
    assert len(time_ticks(date(2020, 1, 1), date(2026, 1, 1))) <= 14
    assert choose_grain(date(2026, 10, 1), date(2026, 11, 28)) == "day"
    assert choose_grain(date(2024, 12, 1), date(2026, 11, 28)) == "week"
    assert choose_grain(date(2020, 1, 1), date(2026, 11, 28)) == "month"


def test_organization_file_names_are_safe() -> None:
    assert report_pages.org_filename("309d6b79-965e") == "309d6b79-965e.html"
    for hostile in ("../etc/passwd", "a/b", ".hidden", "x" * 300, "ä"):
        name = report_pages.org_filename(hostile)
        assert re.fullmatch(r"org-[0-9a-f]{24}\.html", name), name


def test_every_page_states_its_basis_and_its_numbers_agree(demo_warehouse: Path) -> None:
    """The budget figures count complete UTC days (through the day before the run); so do the
    period table, the charts and the index: each page says so, and the headline "used", the
    current period's row and the index's figures are one number. The demo run loads today so
    far, which the views count (`is_partial_day`) and the report leaves out."""
    pages = build_report(demo_warehouse)
    con = duckdb.connect(str(demo_warehouse / "usage.duckdb"), read_only=True)
    try:
        loaded_on = con.execute(
            "SELECT max(CAST(loaded_at AS DATE)) FROM credit_usage WHERE interval = 'day'"
        ).fetchone()[0]
        used = dict(
            con.execute(
                """SELECT o.organization_name, q.value FROM quota_status AS q
                   JOIN organizations AS o USING (organization_id)
                   WHERE q.metric = 'credits' AND q.scope = 'organization'"""
            ).fetchall()
        )
        with_today = dict(
            con.execute(
                "SELECT organization_name, credits FROM period_usage_by_organization "
                "WHERE is_current_period"
            ).fetchall()
        )
    finally:
        con.close()
    through = (loaded_on - timedelta(days=1)).isoformat()
    basis = f"Figures are through {through}, complete UTC days only ({loaded_on.isoformat()} was"
    assert all(basis in html for html in pages.values()), "every page states its basis"
    assert any(with_today[n] > used[n] + 0.01 for n in used), "the demo has usage today"

    org_pages = {p: h for p, h in pages.items() if p.startswith("organizations/")}
    assert len(org_pages) == len(used) == 6
    for html in org_pages.values():
        name = html_lib.unescape(re.search(r"<h1>(.*?) <span", html).group(1))
        headline = re.search(r"used ([0-9.,]+) credits through (\S+);", html)
        assert headline and headline.group(2) == through, name
        assert headline.group(1) == fmt_number(used[name]), name
        current = re.search(r'<td>current through (\S+)</td><td class="num" data-v="([^"]*)"', html)
        assert current and current.group(1) == through, name
        assert float(current.group(2)) == pytest.approx(used[name], rel=1e-5, abs=1e-6), name

    index = pages["index.html"]
    tile = re.search(
        r"<b>([0-9.,]+)</b><span>credits in current periods through (\S+)</span>", index
    )
    assert tile and tile.group(2) == through
    assert tile.group(1) == fmt_number(sum(used.values()))
