"""The HTML report alone: build time (wall, CPU), peak memory, sizes and Chromium's time to open
the index, for the report of this tree against the report of a git revision, on the same
warehouses in one run (so the same machine load).

Each warehouse given (a directory holding `usage.duckdb`, or one holding `warehouse/usage.duckdb`
as `bench/refresh_profile.py` keeps them) is copied to a scratch directory first, never modified.
Each build runs in its own process (`reports.write_report` of this tree, or of the revision's
`reports/` package with the rest of this tree), measured with wait4: wall, CPU seconds (user +
system) and peak RSS. Without --warehouse, the emulator serves N organizations (rate limit off)
and the pipeline loads the previous and the current month into a scratch warehouse first.

    .venv/bin/python bench/report.py --warehouse /tmp/lead/o1000/h2 /tmp/lead/o1000/h24
    .venv/bin/python bench/report.py --warehouse /tmp/wh --baseline HEAD~3 --repeat 5
    .venv/bin/python bench/report.py --orgs 100               # a fresh 2-month warehouse

Prints per warehouse and report: wall, CPU, peak RSS, total size, index size, largest page,
pages, and the index's load time in Chromium (navigation start to the load event, median of
--repeat loads in a fresh page); then the ratios new/baseline, and every warehouse's figures
against the first's (history growth). Needs git and Chromium (/usr/bin/chromium or
CHROMIUM_PATH).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.emulator_process import emulator_process  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
BUILD = (
    "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
    "from reports import write_report; write_report(Path(sys.argv[2]), Path(sys.argv[3]))"
)


@dataclass
class Build:
    """One report build and what it produced."""

    label: str
    wall: float
    cpu: float
    peak_mb: float
    total: int
    index: int
    largest: int
    pages: int
    load: float


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


def database_of(path: Path) -> Path:
    """The `usage.duckdb` of a warehouse directory (or of its `warehouse/` subdirectory)."""
    for candidate in (path / "usage.duckdb", path / "warehouse" / "usage.duckdb"):
        if candidate.is_file():
            return candidate
    raise SystemExit(f"no usage.duckdb in {path} or {path / 'warehouse'}: pass a warehouse")


def extract_revision(revision: str, into: Path) -> Path:
    """The `reports/` package of `revision`, extracted under `into`; returns its parent."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "reports"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout  # fmt: skip
    tar_path = into / "reports.tar"
    tar_path.write_bytes(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(into, filter="data")
    return into


def build(source: Path, warehouse: Path, out: Path) -> tuple[float, float, float]:
    """Build the report of `source`'s `reports` package in a child process: (wall, CPU, peak
    RSS MB). Its output (DuckDB's progress bars) is kept aside and shown only on failure."""
    began = time.perf_counter()
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            [sys.executable, "-c", BUILD, str(source), str(warehouse), str(out)],
            cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - began
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            output.seek(0)
            tail = output.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"report build of {source} failed:\n{tail}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


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


def mb(n: float) -> str:
    return f"{n / 1_000_000:.2f} MB"


def measure(label: str, source: Path, warehouse: Path, out: Path, repeat: int) -> Build:
    wall, cpu, peak = build(source, warehouse, out)
    total, index, largest, pages = sizes(out)
    load = statistics.median(load_times(out / "index.html", repeat))
    return Build(label, wall, cpu, peak, total, index, largest, pages, load)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", nargs="+", help="warehouses to copy and report on")
    parser.add_argument("--orgs", type=int, default=1000, help="without --warehouse (1000)")
    parser.add_argument("--baseline", default="main", help="git revision to compare (main)")
    parser.add_argument("--repeat", type=int, default=3, help="browser loads per report")
    args = parser.parse_args()

    results: list[tuple[str, Build, Build]] = []
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        root = Path(tmp)
        baseline = extract_revision(args.baseline, root / "baseline")
        sources = [Path(w) for w in args.warehouse] if args.warehouse else [None]
        for n, given in enumerate(sources):
            copy = root / f"w{n}"
            copy.mkdir()
            if given is None:
                shutil.copytree(run_pipeline(args.orgs, root / "run"), copy, dirs_exist_ok=True)
                name = f"{args.orgs} organizations, 2 months"
            else:
                shutil.copy(database_of(given), copy / "usage.duckdb")
                name = str(given)
            old = measure(args.baseline, baseline, copy, root / f"old{n}", args.repeat)
            new = measure("this tree", ROOT, copy, root / f"new{n}", args.repeat)
            results.append((name, old, new))
            shutil.rmtree(root / f"old{n}")
            shutil.rmtree(root / f"new{n}")
            shutil.rmtree(copy)

    print(
        f"{'warehouse / report':<34}{'wall':>8}{'CPU':>8}{'peak':>9}{'total':>11}{'index':>10}"
        f"{'largest':>10}{'pages':>7}{'open':>8}"
    )
    for name, old, new in results:
        print(name)
        for b in (old, new):
            print(
                f"  {b.label:<32}{b.wall:>7.1f}s{b.cpu:>7.1f}s{b.peak_mb:>6.0f} MB"
                f"{mb(b.total):>11}{mb(b.index):>10}{mb(b.largest):>10}{b.pages:>7}{b.load:>7.2f}s"
            )
        print(
            f"  new/{args.baseline}: CPU {new.cpu / old.cpu:.2f}, wall {new.wall / old.wall:.2f}, "
            f"total size {new.total / old.total:.2f}, index open {new.load / old.load:.2f}"
        )
        print(
            f"  goals: index <= 5 MB: {'yes' if new.index <= 5_000_000 else 'NO'}; "
            f"index opens in <= 2 s: {'yes' if new.load <= 2.0 else 'NO'}"
        )
    if len(results) > 1:
        first_old, first_new = results[0][1], results[0][2]
        print(f"against {results[0][0]} (history growth, same run):")
        for name, old, new in results[1:]:
            print(
                f"  {name}: {args.baseline} CPU x{old.cpu / first_old.cpu:.2f} "
                f"(+{old.cpu - first_old.cpu:.1f}s), this tree CPU x{new.cpu / first_new.cpu:.2f} "
                f"(+{new.cpu - first_new.cpu:.1f}s)"
            )


if __name__ == "__main__":
    main()
