"""The HTML report at scale: the old single-file report vs the index + per-organization pages.

Starts the emulator with N organizations and the rate limit off (its own process, loopback),
runs the pipeline over the previous and the current month into a temporary warehouse, then
builds, from that one warehouse, the report as it was before (the single page of
`pipelines/report/build.py` at BASELINE_COMMIT, taken from git) and as it is now, and prints for
each: build time, total size, index size, largest page, and Chromium's time to load the index
(navigation start to the load event, median of --repeat loads in a fresh page).

    .venv/bin/python bench/report.py                          # 1,000 organizations, 2 months
    .venv/bin/python bench/report.py --orgs 100               # quicker
    .venv/bin/python bench/report.py --warehouse /tmp/wh      # reuse a warehouse, skip the run

Needs git (for the baseline) and Chromium (/usr/bin/chromium or CHROMIUM_PATH).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.emulator_process import emulator_process  # noqa: E402
from reports import write_report  # noqa: E402

BASELINE_COMMIT = "2996399a4e96bf5a8be9b5036e392ea5d2987809"  # the single-file report
CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"


@contextmanager
def emulator(orgs: int, now: str) -> Iterator[tuple[str, str]]:
    """The emulator in its own process (see bench/emulator_process.py): (host, token)."""
    with emulator_process(orgs, now) as env:
        yield env["UBIOPS_API_HOST"], env["UBIOPS_API_TOKEN"]


def run_pipeline(orgs: int, root: Path) -> Path:
    """Load the previous and the current month of `orgs` organizations into root/warehouse."""
    warehouse = root / "warehouse"
    now = datetime.now(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    with emulator(orgs, now) as (host, token):
        env = dict(os.environ, UBIOPS_API_HOST=host, UBIOPS_API_TOKEN=token,
                   USAGE_WAREHOUSE=str(warehouse), DAGSTER_HOME=str(root / "dagster"))  # fmt: skip
        (root / "dagster").mkdir(parents=True, exist_ok=True)
        began = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "run"],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
            raise RuntimeError(f"pipeline run failed (exit {result.returncode}):\n{tail}")
        print(f"pipeline run: {orgs} organizations, 2 months, {time.perf_counter() - began:.0f}s")
    return warehouse


def baseline_module(root: Path) -> ModuleType:
    """The single-file report builder as of BASELINE_COMMIT, importable as `baseline_report`."""
    package = root / "baseline_report"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("")
    for name in ("build.py", "charts.py"):
        text = subprocess.run(
            ["git", "show", f"{BASELINE_COMMIT}:pipelines/report/{name}"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout  # fmt: skip
        text = text.replace(
            "from pipelines.report import charts", "from baseline_report import charts"
        )
        (package / name).write_text(text)
    sys.path.insert(0, str(root))
    import baseline_report.build as build  # type: ignore[import-not-found]

    return build


def sizes(report_dir: Path) -> tuple[int, int, int, int]:
    """(total bytes, index bytes, largest page bytes, pages)."""
    files = [p for p in report_dir.rglob("*.html") if p.is_file()]
    return (
        sum(p.stat().st_size for p in files),
        (report_dir / "index.html").stat().st_size,
        max(p.stat().st_size for p in files),
        len(files),
    )


def load_times(index: Path, repeat: int) -> list[float]:
    """Seconds from navigation start to the load event of `index`, in a fresh page each time."""
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            for _ in range(repeat):
                page = browser.new_page(viewport={"width": 1300, "height": 900})
                page.goto(index.resolve().as_uri(), wait_until="load", timeout=600_000)
                ms = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventEnd")
                times.append(float(ms) / 1000.0)
                page.close()
        finally:
            browser.close()
    return times


def mb(n: int) -> str:
    return f"{n / 1_000_000:.2f} MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=1000, help="organizations (default 1000)")
    parser.add_argument("--warehouse", help="reuse this warehouse instead of running the pipeline")
    parser.add_argument("--repeat", type=int, default=3, help="browser loads per report")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        root = Path(tmp)
        warehouse = Path(args.warehouse) if args.warehouse else run_pipeline(args.orgs, root)

        old = baseline_module(root)
        old_dir = root / "old"
        began = time.perf_counter()
        old.write_report(warehouse, old_dir / "index.html")
        old_build = time.perf_counter() - began

        new_dir = root / "new"
        began = time.perf_counter()
        write_report(warehouse, new_dir)
        new_build = time.perf_counter() - began

        rows = []
        for label, directory, build in (("old", old_dir, old_build), ("new", new_dir, new_build)):
            total, index, largest, pages = sizes(directory)
            loads = load_times(directory / "index.html", args.repeat)
            rows.append((label, build, total, index, largest, pages, statistics.median(loads)))

    print(f"warehouse: {warehouse}")
    print(
        f"{'report':<7}{'build':>9}{'total':>12}{'index':>12}{'largest page':>14}"
        f"{'pages':>7}{'index load':>12}"
    )
    for label, build, total, index, largest, pages, load in rows:
        print(
            f"{label:<7}{build:>8.1f}s{mb(total):>12}{mb(index):>12}{mb(largest):>14}"
            f"{pages:>7}{load:>11.2f}s"
        )
    (_, _, _, old_index, _, _, old_load), (_, _, _, new_index, _, _, new_load) = rows
    print(
        f"index size new/old = {new_index / old_index:.3f}; "
        f"index load time new/old = {new_load / old_load:.3f}"
    )
    print(
        f"goals: index <= 5 MB: {'yes' if new_index <= 5_000_000 else 'NO'}; "
        f"index loads in <= 2 s: {'yes' if new_load <= 2.0 else 'NO'}"
    )


if __name__ == "__main__":
    main()
