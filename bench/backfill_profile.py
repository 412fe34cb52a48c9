"""Backfill profile: where a 12-month backfill spends its time and memory, step by step.

Copies a kept warehouse (a directory holding `warehouse/` and `dagster/`, e.g. the one left after
a first run of 1,000 organizations), starts the emulator (its own process, rate limit off) with
the clock the warehouse was built with, runs a backfill of the last N months
(`usage-etl run --start <N months back>`, as `bench/scale.py`'s `backfill-12`) and prints:

- per step (from the run's Dagster event log, as `bench/refresh_profile.py` does): wall seconds,
  the run process's CPU seconds, the emulator's CPU seconds and the run process's peak RSS
  while the step ran, sampled every 0.2 s; plus the spans outside steps;
- each step's share of the run process's CPU, and the share of the steps other than the pull
  and normalization (`organizations`, `organization_users`, `resource_usage`,
  `credit_usage_daily`, `credit_usage_periods`);
- the whole run: wall, CPU seconds (wait4), peak RSS (wait4 ru_maxrss), API requests and
  requests per organization.

    .venv/bin/python bench/backfill_profile.py --orgs 1000 \\
        --now-file /tmp/lead/o1000/now.txt /tmp/lead/o1000/h2
    .venv/bin/python bench/backfill_profile.py ... --py-spy /tmp/spy-out   # and a py-spy profile

On a loaded machine compare CPU seconds and ratios within one run, not wall seconds. The kept
warehouse is never modified.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.emulator_process import emulator_process  # noqa: E402
from bench.refresh_profile import SAMPLE_SECONDS, Sampler, kept_env, run_on_copy  # noqa: E402
from bench.scale import HISTORY_MONTHS, months_back  # noqa: E402

USAGE_ETL = ROOT / ".venv" / "bin" / "usage-etl"
PY_SPY = Path("/tmp/spy/bin/py-spy")
PULL_STEPS = (
    "organizations",
    "organization_users",
    "resource_usage",
    "credit_usage_daily",
    "credit_usage_periods",
)
"""The steps that pull from the API, normalize and write the fact tables (the rest derive)."""


@dataclass
class Backfill:
    """One backfill: whole-run figures and per-step figures."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    emulator_cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    requests: int = 0
    organizations: int = 0
    ok: bool = False
    steps: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    """step -> (wall s, run CPU s, emulator CPU s, peak RSS MB)"""


def emulator_pid() -> int:
    """The pid of this process's one running child (the emulator, started by emulator_process)."""
    tasks = Path(f"/proc/{os.getpid()}/task")
    pids = {int(c) for t in tasks.iterdir() for c in (t / "children").read_text().split()}
    if len(pids) != 1:
        raise RuntimeError(f"expected the emulator as the only child, found {sorted(pids)}")
    return pids.pop()


def cpu_between(samples: list[tuple[float, float, float]], start: float, end: float) -> float:
    during = [s for s in samples if start - SAMPLE_SECONDS <= s[0] <= end]
    return during[-1][2] - during[0][2] if during else 0.0


def backfill(
    kept: Path,
    env: dict[str, str],
    args: list[str],
    emulator: int,
    spy: Path | None,
    log: Path | None = None,
) -> Backfill:
    """Copy `kept`, backfill the copy, and measure the run (and the emulator meanwhile)."""
    result = Backfill()
    server = Sampler(emulator)
    server.start()
    with run_on_copy(kept, env, args, "usage-backfill-") as run:
        recorder = None
        if spy is not None:
            spy.mkdir(parents=True, exist_ok=True)
            recorder = subprocess.Popen(
                [str(PY_SPY), "record", "--pid", str(run.proc.pid), "--rate", "50", "--format",
                 "raw", "--output", str(spy / "backfill.txt"), "--nonblocking"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        run.wait()
        server.stopped.set()
        server.join()
        if recorder is not None:
            recorder.wait(timeout=120)
        result.seconds, result.ok = run.seconds, run.ok
        result.cpu_seconds, result.peak_rss_mb = run.cpu_seconds, run.peak_rss_mb
        if log is not None:
            log.write_text(run.text)
        if not result.ok:
            tail = "\n".join(run.text.splitlines()[-15:])
            print(f"backfill failed, last lines:\n{tail}", file=sys.stderr)
        summary = re.search(r"(\d+) organizations, (\d+) API requests", run.text)
        result.organizations = int(summary.group(1)) if summary else 0
        result.requests = int(summary.group(2)) if summary else 0
        result.emulator_cpu_seconds = cpu_between(server.samples, run.launched, run.exited)
        for step, start, end in run.spans():
            rss = [s[1] for s in run.sampler.samples if start - SAMPLE_SECONDS <= s[0] <= end]
            result.steps[step] = (
                end - start,
                cpu_between(run.sampler.samples, start, end),
                cpu_between(server.samples, start, end),
                max(rss, default=0.0),
            )
    return result


def report(run: Backfill, command: str) -> str:
    lines = [
        command,
        "",
        "| step | wall s | CPU s (run) | CPU share | CPU s (emulator) | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    total_cpu = sum(s[1] for s in run.steps.values()) or 1.0
    for step, (wall, cpu, emulator, rss) in run.steps.items():
        lines.append(
            f"| {step} | {wall:.1f} | {cpu:.1f} | {cpu / total_cpu:.0%} | {emulator:.1f} "
            f"| {rss:,.0f} |"
        )
    pull = sum(s[1] for name, s in run.steps.items() if name in PULL_STEPS)
    derived = sum(
        s[1] for name, s in run.steps.items() if name not in PULL_STEPS and not name.startswith("(")
    )
    outside = total_cpu - pull - derived
    per_org = run.requests / run.organizations if run.organizations else float("nan")
    lines += [
        "",
        f"pull + normalize + fact writes ({', '.join(PULL_STEPS)}): {pull:.1f} CPU s "
        f"({pull / total_cpu:.0%}); derived steps: {derived:.1f} CPU s "
        f"({derived / total_cpu:.0%}); outside steps: {outside:.1f} CPU s "
        f"({outside / total_cpu:.0%})",
        "",
        "| backfill | wall | CPU (run) | CPU (emulator) | peak RSS | API requests | requests/org "
        "| status |",
        "|---|---|---|---|---|---|---|---|",
        f"| {run.organizations} organizations | {run.seconds:.1f} s | {run.cpu_seconds:.1f} s "
        f"| {run.emulator_cpu_seconds:.1f} s | {run.peak_rss_mb:,.0f} MB | {run.requests:,} "
        f"| {per_org:.2f} | {'ok' if run.ok else 'FAILED'} |",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kept", type=Path, help="the kept warehouse directory (copied)")
    parser.add_argument("--orgs", type=int, required=True, help="organizations it was built for")
    clock = parser.add_mutually_exclusive_group(required=True)
    clock.add_argument("--now", help="the emulator clock it was built with (ISO, UTC)")
    clock.add_argument("--now-file", type=Path, help="a file holding that clock")
    parser.add_argument("--months", type=int, default=12, help="months to backfill (default 12)")
    parser.add_argument("--py-spy", type=Path, help="also record the run with py-spy into DIR")
    parser.add_argument("--out", type=Path, help="also write the tables to this file")
    parser.add_argument("--log", type=Path, help="write the run's output to this file")
    args = parser.parse_args()
    text = args.now if args.now else args.now_file.read_text().strip()
    now = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    today = now.date()
    run_args = ["--start", months_back(today, args.months).isoformat()]
    with emulator_process(
        args.orgs, now.isoformat().replace("+00:00", "Z"), history_months=HISTORY_MONTHS
    ) as target:
        env = kept_env(target, today)
        print(f"{args.months}-month backfill of a copy of {args.kept} ...", file=sys.stderr)
        run = backfill(args.kept, env, run_args, emulator_pid(), args.py_spy, args.log)
    command = (
        f"{args.orgs} organizations, {args.months}-month backfill (usage-etl run "
        f"{' '.join(run_args)}) over a copy of {args.kept}, emulator clock {text}, rate limit "
        f"off, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end"
    )
    table = report(run, command)
    print("\n" + table)
    if args.out is not None:
        args.out.write_text(table + "\n")
    return 0 if run.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
