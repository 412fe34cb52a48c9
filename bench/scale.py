"""Scale: what a first run, a backfill and a daily refresh cost as organizations and history grow.

Starts the emulator in its own process with N organizations, 25 months of history and the rate
limit off, then runs `usage-etl run` as a user would (a subprocess each, on one fresh warehouse)
and prints, per run: wall time, peak RSS of that run's process (wait4), rows published, API
requests and requests per organization. The scenarios, in order on the same warehouse:

1. first run: the default range (previous + current month);
2. daily refresh over that short history (previous + current month): the current month only;
3. backfill: the last 12 months;
4. daily refresh over 12 months of history: the current month only;
5. backfill of the 12 months before those (not a figure to watch: it makes 24 months of history);
6. daily refresh over 24 months of history: the current month only.

The figures to watch (issue 9): refresh over 24 months / refresh over the short history and
/ over 12 months (wall, about 1), peak RSS of a refresh, the 12-month backfill's wall time, and
requests per organization of a daily refresh (the budget: 2, plus the organization list).

    .venv/bin/python bench/scale.py                      # 1,000 organizations
    .venv/bin/python bench/scale.py --orgs 1000 5000     # and 5,000 (long)
    .venv/bin/python bench/scale.py --orgs 50            # quick check that the bench works
    .venv/bin/python bench/scale.py --scenarios first backfill-12   # a subset, in order
    .venv/bin/python bench/scale.py --repeat 3           # each refresh's wall: median of 3

A single refresh's wall time moves by up to ~10% between identical runs on a shared virtual
machine. `--repeat N` runs each daily refresh N-1 more times, each on a copy of the warehouse
and Dagster home as they were before it (the same work), and reports the median wall time of
the N runs, the samples beside it; the other figures are the kept run's. "The run's own time"
is what the run's summary line says (`run ... succeeded in`): the wall time less the process's
start-up (imports, preflight) and exit; repeated, its median with the samples in the order of
their wall times.

CPU seconds are the run process's own (user + system, from wait4), and the emulator's during that
run (from /proc; n/a elsewhere): on a loaded machine they move less than wall time.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.emulator_process import emulator_process  # noqa: E402

USAGE_ETL = ROOT / ".venv" / "bin" / "usage-etl"


@dataclass
class Measured:
    name: str
    seconds: float
    cpu_seconds: float
    emulator_cpu_seconds: float
    peak_rss_mb: float
    requests: int
    organizations: int
    rows: int
    ok: bool
    run_seconds: float = float("nan")  # the run's own time, as its summary line says
    samples: tuple[tuple[float, float], ...] = ()  # (wall, run) of every run when repeated

    def row(self) -> str:
        per_org = self.requests / self.organizations if self.organizations else float("nan")
        wall, run = f"{self.seconds:.1f} s", f"{self.run_seconds:.1f} s"
        if len(self.samples) > 1:
            wall += f" (median of {', '.join(f'{w:.1f}' for w, _ in sorted(self.samples))})"
            run += f" ({', '.join(f'{r:.1f}' for _, r in sorted(self.samples))})"
        return (
            f"| {self.name} | {wall} | {run} | {self.cpu_seconds:.1f} s "
            f"| {self.emulator_cpu_seconds:.1f} s "
            f"| {self.peak_rss_mb:,.0f} MB | {self.rows:,} "
            f"| {self.requests:,} | {per_org:.2f} | {'ok' if self.ok else 'FAILED'} |"
        )


def children_cpu_seconds() -> float:
    """CPU seconds (user + system) of this process's running children: between runs, the
    emulator's (from /proc/<pid>/stat; NaN where there is no /proc)."""
    try:
        tasks = Path(f"/proc/{os.getpid()}/task")
        pids = {int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()}
        total = 0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime in clock ticks
    except OSError:
        return float("nan")
    return total / os.sysconf("SC_CLK_TCK")


def measure(name: str, args: list[str], env: dict[str, str], log: Path | None = None) -> Measured:
    """Run `usage-etl run ARGS` and read wall time, its own peak RSS and its summary, and the
    emulator's CPU meanwhile; its output (stdout, then stderr) is written to `log` if given."""
    emulator_before = children_cpu_seconds()
    began = time.perf_counter()
    with tempfile.TemporaryFile("w+") as errors:
        proc = subprocess.Popen(
            [str(USAGE_ETL), "run", *args], cwd=ROOT, env=env, text=True,
            stdout=subprocess.PIPE, stderr=errors,
        )  # fmt: skip
        assert proc.stdout is not None
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - began
        emulator_cpu = children_cpu_seconds() - emulator_before
        if log is not None:
            errors.seek(0)
            log.write_text(output + errors.read())
        if proc.returncode != 0:
            errors.seek(0)
            tail = "\n".join((output + errors.read()).splitlines()[-15:])
            print(f"{name}: exit {proc.returncode}, last lines:\n{tail}", file=sys.stderr)
    run_seconds = re.search(r"succeeded in ([\d.]+)s", output)
    requests = re.search(r"(\d+) API requests", output)
    orgs = re.search(r"(\d+) organizations", output)
    rows = re.search(r"^rows: (.*)$", output, re.MULTILINE)
    counts = re.findall(r"\S+ ([\d,]+)(?:,|$)", rows.group(1)) if rows else []
    total_rows = sum(int(n.replace(",", "")) for n in counts)
    return Measured(
        name=name,
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        emulator_cpu_seconds=emulator_cpu,
        peak_rss_mb=usage.ru_maxrss / 1024,
        requests=int(requests.group(1)) if requests else 0,
        organizations=int(orgs.group(1)) if orgs else 0,
        rows=total_rows,
        ok=proc.returncode == 0,
        run_seconds=float(run_seconds.group(1)) if run_seconds else float("nan"),
    )


def months_back(today: date, months: int) -> date:
    index = today.year * 12 + today.month - 1 - (months - 1)
    return date(index // 12, index % 12 + 1, 1)


HISTORY_MONTHS = 25  # the emulator's history: 24 whole months before the current one


SCENARIOS = ("first", "refresh-2", "backfill-12", "refresh-12", "backfill-older", "refresh-24")


def scenarios(today: date) -> list[tuple[str, str, list[str]]]:
    """(id, name, `usage-etl run` arguments) of every scenario, in order."""
    refresh = ["--start", f"{today:%Y-%m}-01", "--end", today.isoformat()]
    last_12 = months_back(today, 12)
    before = months_back(today, 24)
    older = ["--start", before.isoformat(), "--end", (last_12 - timedelta(days=1)).isoformat()]
    return list(
        zip(
            SCENARIOS,
            (
                "first run (2 months)",
                "daily refresh, 2 months of history",
                "backfill (12 months)",
                "daily refresh, 12 months of history",
                "backfill (12 older months)",
                "daily refresh, 24 months of history",
            ),
            ([], refresh, ["--start", last_12.isoformat()], refresh, older, refresh),
            strict=True,
        )
    )


def measure_repeated(
    name: str, args: list[str], env: dict[str, str], log: Path | None, repeat: int, tmp: Path
) -> Measured:
    """`measure`, after `repeat - 1` runs of the same command on copies of the warehouse and
    Dagster home as they are now; the result's wall time is the median of all runs."""
    samples = []
    for trial in range(repeat - 1):
        copy = tmp / f"trial-{trial}"
        shutil.copytree(env["USAGE_WAREHOUSE"], copy / "warehouse", symlinks=True)
        shutil.copytree(env["DAGSTER_HOME"], copy / "dagster", symlinks=True)
        trial_env = {
            **env,
            "USAGE_WAREHOUSE": str(copy / "warehouse"),
            "DAGSTER_HOME": str(copy / "dagster"),
        }
        trial = measure(f"{name} (trial)", args, trial_env)
        samples.append((trial.seconds, trial.run_seconds))
        shutil.rmtree(copy)
    kept = measure(name, args, env, log)
    if repeat > 1:
        kept.samples = (*samples, (kept.seconds, kept.run_seconds))
        kept.seconds = statistics.median(w for w, _ in kept.samples)
        kept.run_seconds = statistics.median(r for _, r in kept.samples)
    return kept


def bench(
    orgs: int, now: datetime, chosen: list[str], logs: Path | None = None, repeat: int = 1
) -> dict[str, Measured]:
    """Every scenario in order on one fresh warehouse, against an emulator of `orgs`; each run's
    output is kept in `logs` (as `<orgs>-<scenario>.log`) if given; each daily refresh's wall
    time is the median of `repeat` runs (`measure_repeated`)."""
    results: dict[str, Measured] = {}
    with (
        tempfile.TemporaryDirectory(prefix="usage-scale-") as tmp,
        emulator_process(
            orgs, now.isoformat().replace("+00:00", "Z"), history_months=HISTORY_MONTHS
        ) as target,
    ):
        env = {
            **os.environ,
            **target,
            "USAGE_WAREHOUSE": str(Path(tmp) / "warehouse"),
            "DAGSTER_HOME": str(Path(tmp) / "dagster"),
            "USAGE_PARTITIONS_START": months_back(now.date(), HISTORY_MONTHS).isoformat(),
        }
        env.pop("USAGE_QUOTAS", None)
        env.pop("USAGE_DETAILS_MAX_AGE_DAYS", None)
        for key, name, run_args in scenarios(now.date()):
            if key not in chosen:
                continue
            print(f"{orgs} organizations: {name} ...", file=sys.stderr, flush=True)
            log = None if logs is None else logs / f"{orgs}-{key}.log"
            if key.startswith("refresh-"):
                results[key] = measure_repeated(name, run_args, env, log, repeat, Path(tmp))
            else:
                results[key] = measure(name, run_args, env, log)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--orgs", type=int, nargs="+", default=[1000], help="organizations (default 1000)"
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=SCENARIOS,
        default=list(SCENARIOS),
        help="run only these scenarios (in the bench's order, on one fresh warehouse; default all)",
    )
    parser.add_argument(
        "--logs", type=Path, help="keep each run's output (step timings, publish path) here"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each daily refresh this many times (copies; wall: the median; default 1)",
    )
    args = parser.parse_args()
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    ok = True
    for orgs in args.orgs:
        began = time.perf_counter()
        results = bench(orgs, now, args.scenarios, args.logs, max(1, args.repeat))
        ok = ok and all(r.ok for r in results.values())
        print(
            f"\n{orgs} organizations, emulator rate limit off, {os.cpu_count()} cores "
            f"({time.perf_counter() - began:.0f} s in all)\n"
        )
        print(
            "| run | wall | the run's own time | CPU (run process) | CPU (emulator) | peak RSS "
            "| rows published | API requests | requests/org | status |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for result in results.values():
            print(result.row())
        if "first" in results and "backfill-12" in results:
            first, backfill = results["first"], results["backfill-12"]
            print(
                f"\n12-month backfill / first run (2 months): wall "
                f"{backfill.seconds / first.seconds:.2f}x, CPU "
                f"{backfill.cpu_seconds / first.cpu_seconds:.2f}x"
            )
        if not all(k in results for k in ("refresh-2", "refresh-12", "refresh-24")):
            continue
        short, refresh_12, refresh_24 = (
            results["refresh-2"],
            results["refresh-12"],
            results["refresh-24"],
        )
        print(
            f"\nrefresh over 24 months / over 12 months of history: wall "
            f"{refresh_24.seconds / refresh_12.seconds:.2f}x, peak RSS "
            f"{refresh_24.peak_rss_mb / refresh_12.peak_rss_mb:.2f}x; refresh over 24 months / "
            f"over 2 months: wall {refresh_24.seconds / short.seconds:.2f}x, peak RSS "
            f"{refresh_24.peak_rss_mb / short.peak_rss_mb:.2f}x"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
