"""The report's HTML without a browser: self-contained, escaped, written where the lead expects."""

from __future__ import annotations

import re
from pathlib import Path

from pipelines.cli import main
from pipelines.report import build_report, write_report


def test_self_contained_and_escaped(derived_warehouse: Path, hostile_name: str) -> None:
    html = build_report(derived_warehouse)
    assert "<script" not in html.replace("&lt;script", "")
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "@import" not in html and "url(" not in html
    assert hostile_name not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b&gt;co&lt;/b&gt;" in html
    assert "&lt;before&gt; the period ends &amp; more" in html


def test_write_report_default_path_and_command(demo_warehouse: Path, tmp_path: Path) -> None:
    assert write_report(demo_warehouse) == demo_warehouse / "report" / "index.html"
    out = tmp_path / "r.html"
    assert main(["report", "--warehouse", str(demo_warehouse), "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.count('class="card org"') == 6
