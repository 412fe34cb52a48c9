"""Scale: what a first run, a backfill and a daily refresh cost as organizations and history grow.

Starts the emulator in its own process with N organizations and the rate limit off, then runs
`usage-etl run` as a user would (a subprocess each, on one fresh warehouse) and prints, per run:
wall time, peak RSS of that run's process, rows published, API requests and requests per
organization. The scenarios, in order on the same warehouse:

1. first run: the default range (previous + current month);
2. backfill: the last `--months` months (default 12);
3. daily refresh over that history: the current month only;
4. the same refresh once more (history unchanged, to see run-to-run noise).

The refresh-over-history ÷ first-run ratios are the figures to watch: a daily refresh should
cost about the same whatever the history behind it.

    .venv/bin/python bench/scale.py                      # 1,000 organizations, 12 months
    .venv/bin/python bench/scale.py --orgs 200 --months 6   # quicker
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.emulator_process import emulator_process  # noqa: E402

USAGE_ETL = ROOT / ".venv" / "bin" / "usage-etl"


@dataclass
class Measured:
    name: str
    seconds: float
    peak_rss_mb: float
    requests: int
    organizations: int
    rows: int
    ok: bool

    def row(self) -> str:
        per_org = self.requests / self.organizations if self.organizations else float("nan")
        return (
            f"| {self.name} | {self.seconds:.1f} s | {self.peak_rss_mb:,.0f} MB | {self.rows:,} "
            f"| {self.requests:,} | {per_org:.2f} | {'ok' if self.ok else 'FAILED'} |"
        )


def measure(name: str, args: list[str], env: dict[str, str]) -> Measured:
    """Run `usage-etl run ARGS` and read wall time, its own peak RSS and its summary."""
    began = time.perf_counter()
    proc = subprocess.Popen(
        [str(USAGE_ETL), "run", *args], cwd=ROOT, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - began
    requests = re.search(r"(\d+) API requests", output)
    orgs = re.search(r"(\d+) organizations", output)
    rows = re.search(r"^rows: (.*)$", output, re.MULTILINE)
    total_rows = sum(int(n) for n in re.findall(r"=(\d+)", rows.group(1))) if rows else 0
    return Measured(
        name=name,
        seconds=seconds,
        peak_rss_mb=usage.ru_maxrss / 1024,
        requests=int(requests.group(1)) if requests else 0,
        organizations=int(orgs.group(1)) if orgs else 0,
        rows=total_rows,
        ok=proc.returncode == 0,
    )


def months_back(today: date, months: int) -> date:
    index = today.year * 12 + today.month - 1 - (months - 1)
    return date(index // 12, index % 12 + 1, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=1000, help="organizations (default 1000)")
    parser.add_argument("--months", type=int, default=12, help="backfill months (default 12)")
    args = parser.parse_args()
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    today = now.date()
    results: list[Measured] = []
    with (
        tempfile.TemporaryDirectory(prefix="usage-scale-") as tmp,
        emulator_process(args.orgs, now.isoformat().replace("+00:00", "Z")) as target,
    ):
        env = {
            **os.environ,
            **target,
            "USAGE_WAREHOUSE": str(Path(tmp) / "warehouse"),
            "DAGSTER_HOME": str(Path(tmp) / "dagster"),
        }
        env.pop("USAGE_QUOTAS", None)
        refresh = ["--start", f"{today:%Y-%m}-01", "--end", today.isoformat()]
        backfill = ["--start", months_back(today, args.months).isoformat()]
        for name, run_args in [
            ("first run (2 months)", []),
            (f"backfill ({args.months} months)", backfill),
            (f"daily refresh, {args.months} months of history", refresh),
            (f"daily refresh again, {args.months} months of history", refresh),
        ]:
            print(f"running: {name} ...", file=sys.stderr, flush=True)
            results.append(measure(name, run_args, env))
    print(f"\n{args.orgs} organizations, emulator rate limit off, {os.cpu_count()} cores\n")
    print("| run | wall | peak RSS | rows published | API requests | requests/org | status |")
    print("|---|---|---|---|---|---|---|")
    for result in results:
        print(result.row())
    first, refresh_run = results[0], results[2]
    print(
        f"\nrefresh over {args.months} months of history / first run: "
        f"wall {refresh_run.seconds / first.seconds:.2f}x, "
        f"peak RSS {refresh_run.peak_rss_mb / first.peak_rss_mb:.2f}x"
    )
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
