"""Refresh profile: where a daily refresh spends its time and memory, step by step.

For each kept warehouse given (a directory holding `warehouse/` and `dagster/`, as
`bench/scale.py --keep DIR` leaves them in `DIR/<orgs>/h2`, `h12` and `h24` with the clock in
`DIR/<orgs>/now`: after the first run, after a 12-month backfill, after 24 months), copies it
to a scratch directory (settled: see `bench.scale.settle`), starts the emulator with the clock
the warehouse was built with, runs a daily refresh (`usage-etl run --start <month>-01 --end
<today>`, the current month only) and prints:

- per step (from the run's Dagster event log, STEP_START to STEP_SUCCESS/STEP_FAILURE): wall
  seconds, the run process's CPU seconds (/proc/<pid>/stat) and its peak RSS while the step ran
  (VmRSS), both sampled every 0.2 s; plus the spans outside steps (start-up, shutdown);
- the whole run: wall, CPU seconds (wait4) and peak RSS (wait4 ru_maxrss);
- ratios of every warehouse's figures to the first one's (same script run, so the same load).

    .venv/bin/python bench/scale.py --orgs 300 --keep /tmp/kept
    .venv/bin/python bench/refresh_profile.py --orgs 300 --now-file /tmp/kept/300/now \\
        /tmp/kept/300/h2 /tmp/kept/300/h12 /tmp/kept/300/h24

`--now` must be the emulator clock the warehouses were built with (the emulator's data depend
on it); `--now-file` reads it from a file instead. The kept warehouses are never modified.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.emulator_process import emulator_process  # noqa: E402
from bench.scale import HISTORY_MONTHS, months_back, settle  # noqa: E402

USAGE_ETL = ROOT / ".venv" / "bin" / "usage-etl"
SAMPLE_SECONDS = 0.2


@dataclass
class Profile:
    """One refresh: whole-run figures and per-step (wall seconds, peak RSS MB)."""

    name: str
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    ok: bool = False
    steps: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    """step -> (wall seconds, CPU seconds, peak RSS MB)"""


TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of `pid` so far (all its threads)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICKS


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Sampler(threading.Thread):
    """VmRSS and CPU seconds of `pid` every 0.2 s as (unix time, MB, CPU s) until the process is
    gone or stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, float, float]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            rss, cpu = _rss_mb(self.pid), _cpu_seconds(self.pid)
            if rss is not None and cpu is not None:
                self.samples.append((time.time(), rss, cpu))
            self.stopped.wait(SAMPLE_SECONDS)


def kept_env(target: dict[str, str], today: date) -> dict[str, str]:
    """The environment of a run over a kept warehouse: the emulator `target`, partitions from
    the start of the emulator's history, and the defaults for quotas and the details' age (as
    the warehouses were built with)."""
    env = {
        **os.environ,
        **target,
        "USAGE_PARTITIONS_START": months_back(today, HISTORY_MONTHS).isoformat(),
    }
    env.pop("USAGE_QUOTAS", None)
    env.pop("USAGE_DETAILS_MAX_AGE_DAYS", None)
    return env


def run_spans(home: Path, launched: float, exited: float) -> list[tuple[str, float, float]]:
    """(span, start, end) unix times of the latest run in `home`: its steps, and the spans
    outside them from process launch to exit (start-up, before the first step, after the last,
    shut-down); empty when the run recorded no step."""
    steps, run_start, run_end = step_times(home)
    if not steps:
        return []
    first, last = min(s[1] for s in steps), max(s[2] for s in steps)
    return [
        ("(process start to run start)", launched, run_start or first),
        ("(run start to first step)", run_start or first, first),
        *steps,
        ("(last step to run end)", last, run_end or last),
        ("(run end to process exit)", run_end or last, exited),
    ]


def step_times(dagster_home: Path) -> tuple[list[tuple[str, float, float]], float, float]:
    """(step, start, end) unix times of the latest run's steps, from its event log, and the
    run's start and end (RUN_START, RUN_SUCCESS/RUN_FAILURE; 0 when absent)."""
    from dagster import DagsterEventType, DagsterInstance

    with DagsterInstance.from_config(str(dagster_home)) as instance:
        runs = instance.get_runs(limit=1)
        if not runs:
            return [], 0.0, 0.0
        run_start = run_end = 0.0
        started: dict[str, float] = {}
        steps: list[tuple[str, float, float]] = []
        for entry in instance.all_logs(runs[0].run_id):
            event = entry.dagster_event
            if event is not None and event.event_type == DagsterEventType.RUN_START:
                run_start = entry.timestamp
            if event is not None and event.event_type in (
                DagsterEventType.RUN_SUCCESS,
                DagsterEventType.RUN_FAILURE,
            ):
                run_end = entry.timestamp
            if event is None or entry.step_key is None:
                continue
            if event.event_type == DagsterEventType.STEP_START:
                started[entry.step_key] = entry.timestamp
            elif event.event_type in (DagsterEventType.STEP_SUCCESS, DagsterEventType.STEP_FAILURE):
                began = started.pop(entry.step_key, entry.timestamp)
                steps.append((entry.step_key, began, entry.timestamp))
    return steps, run_start, run_end


@dataclass
class CopyRun:
    """A `usage-etl run` over a copy of a kept warehouse (see `run_on_copy`): the process while
    it runs, then (after `wait`) what it measured."""

    home: Path
    proc: subprocess.Popen[str]
    sampler: Sampler
    output: IO[str]
    began: float
    launched: float
    exited: float = 0.0
    seconds: float = 0.0
    ok: bool = False
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    text: str = ""

    def wait(self) -> None:
        """Wait for the run to end and record its time, CPU, peak RSS, status and output."""
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self.sampler.stopped.set()
        self.sampler.join()
        self.exited = time.time()
        self.seconds = time.perf_counter() - self.began
        self.ok = self.proc.returncode == 0
        self.cpu_seconds = usage.ru_utime + usage.ru_stime
        self.peak_rss_mb = usage.ru_maxrss / 1024
        self.output.seek(0)
        self.text = self.output.read()

    def spans(self) -> list[tuple[str, float, float]]:
        return run_spans(self.home, self.launched, self.exited)


@contextmanager
def run_on_copy(kept: Path, env: dict[str, str], args: list[str], prefix: str) -> Iterator[CopyRun]:
    """Copy `kept` into a temporary directory and start `usage-etl run ARGS` on the copy, its
    CPU and RSS sampled; the caller calls `wait()` and reads the spans before leaving (the copy
    is removed then; a run still going is killed)."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = Path(tmp) / "w"
        shutil.copytree(kept, work, symlinks=True)
        settle(work / "warehouse")
        home = work / "dagster"
        run_env = {**env, "USAGE_WAREHOUSE": str(work / "warehouse"), "DAGSTER_HOME": str(home)}
        with tempfile.TemporaryFile("w+") as output:
            began, launched = time.perf_counter(), time.time()
            proc = subprocess.Popen(
                [str(USAGE_ETL), "run", *args], cwd=ROOT, env=run_env, text=True,
                stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
            sampler = Sampler(proc.pid)
            sampler.start()
            run = CopyRun(home, proc, sampler, output, began, launched)
            try:
                yield run
            finally:
                if proc.returncode is None:
                    proc.kill()
                    run.wait()


def profile(name: str, kept: Path, env: dict[str, str], args: list[str]) -> Profile:
    """Copy `kept`, refresh the copy, and measure the run."""
    result = Profile(name)
    with run_on_copy(kept, env, args, "usage-refresh-") as run:
        run.wait()
        result.seconds, result.ok = run.seconds, run.ok
        result.cpu_seconds, result.peak_rss_mb = run.cpu_seconds, run.peak_rss_mb
        if not result.ok:
            tail = "\n".join(run.text.splitlines()[-15:])
            print(f"{name}: failed, last lines:\n{tail}", file=sys.stderr)
        for step, start, end in run.spans():
            during = [s for s in run.sampler.samples if start - SAMPLE_SECONDS <= s[0] <= end]
            cpu = during[-1][2] - during[0][2] if during else 0.0
            result.steps[step] = (end - start, cpu, max((s[1] for s in during), default=0.0))
    return result


def report(profiles: list[Profile]) -> None:
    base = profiles[0]
    names = [p.name for p in profiles]
    header = " | ".join(f"{n} {what}" for what in ("wall s", "CPU s", "MB") for n in names)
    print(f"\n| step | {header} |")
    print("|---" * (1 + 3 * len(profiles)) + "|")
    steps = list(dict.fromkeys(s for p in profiles for s in p.steps))
    for step in steps:
        cells = [
            f"{p.steps.get(step, (0.0, 0.0, 0.0))[i]:{spec}}"
            for i, spec in ((0, ".1f"), (1, ".1f"), (2, ",.0f"))
            for p in profiles
        ]
        print(f"| {step} | {' | '.join(cells)} |")
    ratios = f"wall / {base.name} | RSS / {base.name}"
    print(f"\n| refresh | wall | CPU | peak RSS | {ratios} | status |")
    print("|---|---|---|---|---|---|---|")
    for p in profiles:
        print(
            f"| {p.name} | {p.seconds:.1f} s | {p.cpu_seconds:.1f} s | {p.peak_rss_mb:,.0f} MB "
            f"| {p.seconds / base.seconds:.2f}x | {p.peak_rss_mb / base.peak_rss_mb:.2f}x "
            f"| {'ok' if p.ok else 'FAILED'} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kept", nargs="+", type=Path, help="kept warehouse directories")
    parser.add_argument("--orgs", type=int, required=True, help="organizations they were built for")
    clock = parser.add_mutually_exclusive_group(required=True)
    clock.add_argument("--now", help="the emulator clock they were built with (ISO, UTC)")
    clock.add_argument("--now-file", type=Path, help="a file holding that clock")
    parser.add_argument("--repeat", type=int, default=1, help="refreshes per warehouse")
    args = parser.parse_args()
    text = args.now if args.now else args.now_file.read_text().strip()
    now = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    today = now.date()
    refresh = ["--start", f"{today:%Y-%m}-01", "--end", today.isoformat()]
    profiles: list[Profile] = []
    with emulator_process(
        args.orgs, now.isoformat().replace("+00:00", "Z"), history_months=HISTORY_MONTHS
    ) as target:
        env = kept_env(target, today)
        for _ in range(args.repeat):
            for kept in args.kept:
                print(f"refresh of a copy of {kept} ...", file=sys.stderr, flush=True)
                profiles.append(profile(kept.name, kept, env, refresh))
    print(f"\n{args.orgs} organizations, {os.cpu_count()} cores, emulator clock {text}")
    report(profiles)
    return 0 if all(p.ok for p in profiles) else 1


if __name__ == "__main__":
    raise SystemExit(main())
