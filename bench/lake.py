"""The shared lake against the embedded warehouse, in one run, on the same emulator data.

Starts the emulator (N organizations, rate limit off), a real PostgreSQL for the lake's catalog
and a real S3 server (moto) for its data, all on loopback, then measures with `usage-etl run` as
a user runs it (one subprocess per run; wall time and that process's peak RSS):

1. a backfill of the last `--months` months, then a daily refresh (the current month), into
   the local backend (no lake variables) and into the lake (a fresh working copy);
2. query latency (median of 5) of three analyst views on each backend, read-only as
   `usage-etl query` opens them;
3. two writers at once on different month ranges (two fresh working copies, one lake): whether
   both land and how many conflicting commits were retried.

    .venv/bin/python bench/lake.py                    # 1,000 organizations, 12 months
    .venv/bin/python bench/lake.py --orgs 100 --months 3   # quicker
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.emulator_process import emulator_process  # noqa: E402
from tests.services.postgres import fresh_database, postgres_cluster  # noqa: E402
from tests.services.s3 import s3_server  # noqa: E402

USAGE_ETL = [sys.executable, "-m", "pipelines.cli"]
VIEWS = ("usage_against_budget", "period_usage_by_organization", "daily_usage_by_organization")


@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float
    ok: bool
    stderr: str


def start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
    """Start `usage-etl ARGS`; its stderr goes to a file (a pipe could stall a busy writer)."""
    log = Path(env["USAGE_WAREHOUSE"]).parent / f"stderr-{uuid.uuid4().hex[:8]}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            [*USAGE_ETL, *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=handle
        )
    return proc, log


def finish(started: tuple[subprocess.Popen[bytes], Path], began: float) -> Measured:
    proc, log = started
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - began
    ok = proc.returncode == 0
    return Measured(seconds, usage.ru_maxrss / 1024, ok, log.read_text(errors="replace"))


def measure(args: list[str], env: dict[str, str]) -> Measured:
    began = time.perf_counter()
    return finish(start(args, env), began)


def query_latency(env: dict[str, str], view: str) -> float:
    """Median seconds of `SELECT * FROM view` on the backend `env` names (connection included)."""
    code = (
        "import os, sys, time; from pathlib import Path; "
        "from warehouse.publish import connect_readonly; times = []\n"
        "for _ in range(5):\n"
        "    t = time.perf_counter(); con = connect_readonly(Path(os.environ['USAGE_WAREHOUSE']))\n"
        f"    con.execute('SELECT * FROM {view}').fetchall(); con.close()\n"
        "    times.append(time.perf_counter() - t)\n"
        "print(sorted(times)[2])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return float(done.stdout.strip().splitlines()[-1])


def months_back(today: date, months: int) -> date:
    index = today.year * 12 + today.month - 1 - (months - 1)
    return date(index // 12, index % 12 + 1, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=1000)
    parser.add_argument("--months", type=int, default=12)
    args = parser.parse_args()
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    today = now.date()
    first = months_back(today, args.months)
    refresh = ["run", "--start", f"{today:%Y-%m}-01", "--end", today.isoformat()]
    backfill = ["run", "--start", first.isoformat(), "--end", today.isoformat()]
    rows: list[str] = []
    with (
        tempfile.TemporaryDirectory(prefix="usage-lake-bench-") as tmp,
        emulator_process(args.orgs, now.isoformat().replace("+00:00", "Z")) as api,
        postgres_cluster(user="lake", password=uuid.uuid4().hex) as pg,
        s3_server() as s3,
    ):

        def env_for(name: str, lake: bool) -> dict[str, str]:
            env = {**os.environ, **api}
            env["USAGE_WAREHOUSE"] = str(Path(tmp) / name / "warehouse")
            env["DAGSTER_HOME"] = str(Path(tmp) / name / "dagster")
            if lake:
                env.update(lake_env)
            return env

        database = fresh_database(pg, "lake")
        s3.create_bucket("usage-lake")
        lake_env = {
            "USAGE_LAKE_CATALOG": (
                f"postgresql://{database.user}:{database.password}@{database.host}:"
                f"{database.port}/{database.database}"
            ),
            "USAGE_LAKE_DATA": "s3://usage-lake/usage",
            **s3.env(),
        }
        results: dict[str, dict[str, Measured]] = {}
        for backend, lake in (("local", False), ("lake", True)):
            env = env_for(backend, lake)
            print(f"{backend}: backfill of {args.months} months ...", file=sys.stderr, flush=True)
            results[backend] = {"backfill": measure(backfill, env)}
            print(f"{backend}: daily refresh ...", file=sys.stderr, flush=True)
            results[backend]["refresh"] = measure(refresh, env)
        rows.append("| run | local wall | local peak RSS | lake wall | lake peak RSS |")
        rows.append("|---|---|---|---|---|")
        for run in ("backfill", "refresh"):
            loc, lak = results["local"][run], results["lake"][run]
            failed = "" if loc.ok and lak.ok else " (FAILED)"
            rows.append(
                f"| {run}{failed} | {loc.seconds:.1f} s | {loc.peak_rss_mb:,.0f} MB "
                f"| {lak.seconds:.1f} s | {lak.peak_rss_mb:,.0f} MB |"
            )
        rows.append("")
        rows.append("| view (median of 5, incl. connect) | local | lake |")
        rows.append("|---|---|---|")
        for view in VIEWS:
            local_s = query_latency(env_for("local", False), view)
            lake_s = query_latency(env_for("lake", True), view)
            rows.append(f"| {view} | {local_s * 1000:.0f} ms | {lake_s * 1000:.0f} ms |")

        print("two writers at once ...", file=sys.stderr, flush=True)
        middle = months_back(today, max(args.months // 2, 1))
        began = time.perf_counter()
        one = start(["run", "--start", first.isoformat(), "--end", str(middle - date.resolution)],
                    env_for("writer-1", True))  # fmt: skip
        two = start(["run", "--start", middle.isoformat(), "--end", today.isoformat()],
                    env_for("writer-2", True))  # fmt: skip
        writers = [finish(one, began), finish(two, began)]
        retried = sum(
            int(m.group(1))
            for w in writers
            for m in re.finditer(r"(\d+) conflicting commit\(s\) retried", w.stderr)
        )
        rows.append("")
        rows.append(
            f"two concurrent writers: {sum(w.ok for w in writers)}/2 landed, "
            f"{retried} conflicting commit(s) retried, wall {max(w.seconds for w in writers):.1f} s"
        )
    print(f"\n{args.orgs} organizations, {args.months} months, {os.cpu_count()} cores\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
