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
machine, and the machine's speed drifts over the minutes between the first refresh and the last
(identical work measured 12.3 s and 13.5 s in two invocations). `--repeat N` keeps a copy of
the warehouse and Dagster home as they were before each daily refresh and, after the scenarios,
runs N-1 rounds of the three refreshes, one after the other on fresh copies (each `settle`d
first: its files' digests cached, as the original's were; interleaved, so each round compares
them under the same conditions, and in reverse order every other round, starting with round 2
after the scenarios' 2, 12, 24 months); each refresh's wall time and CPU are the medians of its N
runs (the wall samples beside it), the other figures are the kept run's, and the 24 / 2
months ratio of wall and of CPU is also printed per round (the scenario run, then each round;
CPU varies less with the machine's load than wall). "The run's own
time" is what the run's summary line says (`run ... succeeded in`): the wall time less the
process's start-up (imports, preflight) and exit; repeated, its median with the samples in the
order of their wall times.

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
from warehouse.manifest import RACY_SECONDS, check_warehouse  # noqa: E402

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
    samples: tuple[tuple[float, float, float], ...] = ()  # (wall, run, CPU) of every run

    def row(self) -> str:
        per_org = self.requests / self.organizations if self.organizations else float("nan")
        wall, run = f"{self.seconds:.1f} s", f"{self.run_seconds:.1f} s"
        if len(self.samples) > 1:
            wall += f" (median of {', '.join(f'{w:.1f}' for w, _, _ in sorted(self.samples))})"
            run += f" ({', '.join(f'{r:.1f}' for _, r, _ in sorted(self.samples))})"
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


def saved_state(env: dict[str, str], into: Path) -> Path:
    """A copy of the warehouse and Dagster home of `env` as they are now, in `into`."""
    shutil.copytree(env["USAGE_WAREHOUSE"], into / "warehouse", symlinks=True)
    shutil.copytree(env["DAGSTER_HOME"], into / "dagster", symlinks=True)
    return into


def settle(warehouse: Path) -> None:
    """Give a fresh copy of a warehouse what the original had in daily use: its pages written
    to disk and its files' digests cached (the copies are new files, so the original's digest
    cache does not apply to them). Without it, a run over a copy hashed every slice (0.4 s of
    CPU at 24 months, a few hundredths at 2) and wrote back the copy's pages while publishing:
    that made the 24 / 2 months ratio of the repeated refreshes too high."""
    copied = time.time()
    os.sync()
    time.sleep(max(0.0, copied + RACY_SECONDS + 0.1 - time.time()))  # past the racy window
    check_warehouse(warehouse / "parquet", full=False)
    os.sync()


def rerun_on_copy(
    name: str, args: list[str], env: dict[str, str], state: Path, scratch: Path
) -> Measured:
    """`measure` the same command on a fresh copy of a `saved_state`, `settle`d (removed
    afterwards)."""
    trial = saved_state(
        {"USAGE_WAREHOUSE": str(state / "warehouse"), "DAGSTER_HOME": str(state / "dagster")},
        scratch,
    )
    settle(trial / "warehouse")
    try:
        return measure(
            f"{name} (again)",
            args,
            {
                **env,
                "USAGE_WAREHOUSE": str(trial / "warehouse"),
                "DAGSTER_HOME": str(trial / "dagster"),
            },
        )
    finally:
        shutil.rmtree(trial)


def interleaved_rounds(
    refreshes: dict[str, tuple[str, list[str], Path]],
    results: dict[str, Measured],
    env: dict[str, str],
    rounds: int,
    scratch: Path,
) -> None:
    """`rounds` more runs of every daily refresh, round by round (each round runs them all on
    copies of the states saved before them, in reverse order every other round, so that a
    machine slowing down or speeding up over a round does not always favour the same one);
    each result gets every sample and the medians."""
    samples = {
        key: [(results[key].seconds, results[key].run_seconds, results[key].cpu_seconds)]
        for key in refreshes
    }
    for round_no in range(rounds):
        order = list(refreshes.items())
        for key, (name, args, state) in order if round_no % 2 else order[::-1]:
            print(f"  round {round_no + 2}: {name} ...", file=sys.stderr, flush=True)
            again = rerun_on_copy(name, args, env, state, scratch / "again")
            samples[key].append((again.seconds, again.run_seconds, again.cpu_seconds))
            results[key].ok = results[key].ok and again.ok  # a failed run fails its row
    for key, taken in samples.items():
        result = results[key]
        result.samples = tuple(taken)
        result.seconds = statistics.median(w for w, _, _ in taken)
        result.run_seconds = statistics.median(r for _, r, _ in taken)
        result.cpu_seconds = statistics.median(c for _, _, c in taken)


def bench(
    orgs: int,
    now: datetime,
    chosen: list[str],
    logs: Path | None = None,
    repeat: int = 1,
    keep: Path | None = None,
) -> dict[str, Measured]:
    """Every scenario in order on one fresh warehouse, against an emulator of `orgs`; each run's
    output is kept in `logs` (as `<orgs>-<scenario>.log`) if given; each daily refresh's wall
    time is the median of `repeat` runs (`interleaved_rounds`); with `keep`, the warehouse as it
    was before each daily refresh is copied to `keep/<orgs>/h2`, `h12`, `h24` and the emulator
    clock written to `keep/<orgs>/now` (the inputs of `bench/refresh_profile.py`)."""
    results: dict[str, Measured] = {}
    refreshes: dict[str, tuple[str, list[str], Path]] = {}
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
            if key.startswith("refresh-") and keep is not None:
                kept = keep / str(orgs) / f"h{key.removeprefix('refresh-')}"
                shutil.rmtree(kept, ignore_errors=True)
                saved_state(env, kept)
                (keep / str(orgs) / "now").write_text(now.isoformat().replace("+00:00", "Z"))
            if key.startswith("refresh-") and repeat > 1:
                state = saved_state(env, Path(tmp) / f"before-{key}")
                refreshes[key] = (name, run_args, state)
            results[key] = measure(name, run_args, env, log)
        if refreshes:
            interleaved_rounds(refreshes, results, env, repeat - 1, Path(tmp))
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
        help="runs of each daily refresh: its scenario run, then rounds of all three on copies "
        "(interleaved; wall: the median; default 1)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="copy the warehouse as it was before each daily refresh to KEEP/<orgs>/h2, h12, "
        "h24 (and the emulator clock to KEEP/<orgs>/now) for bench/refresh_profile.py",
    )
    args = parser.parse_args()
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    ok = True
    for orgs in args.orgs:
        began = time.perf_counter()
        results = bench(orgs, now, args.scenarios, args.logs, max(1, args.repeat), args.keep)
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
        if len(refresh_24.samples) == len(short.samples) > 1:
            rounds = list(zip(refresh_24.samples, short.samples, strict=True))
            for what, i in (("wall", 0), ("CPU", 2)):
                per_round = [long[i] / brief[i] for long, brief in rounds]
                print(
                    f"refresh over 24 months / over 2 months, per round ({what}): "
                    + ", ".join(f"{r:.2f}x" for r in per_round)
                    + f" (median {statistics.median(per_round):.2f}x)"
                )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
