"""Random fault soak: many faulty runs, each followed by a clean run compared to a reference.

Everything on loopback: the emulator (frozen clock, no rate limit) serves both the warehouse under
test and a reference warehouse; a webhook receiver records every notification it accepts. Every
iteration picks random faults:

- `api`: injected 5xx, 429, dropped connections, malformed JSON and slow responses;
- `kill`: `kill -9` of the `usage-etl run` subprocess at a random instant;
- `corrupt`: 4 garbled bytes in, or deletion of, a random stored slice (credit_usage months,
  organizations, organization_users, derived tables; not resource_usage snapshots, which cannot
  be re-pulled: a run refuses to publish them damaged, which tests/pipeline covers);
- `channel`: the webhook receiver answers 503;
- `quota`: new random credit budgets for some organizations, so alerts open and resolve and
  there are notifications to deliver (quotas do not change the compared tables),

runs `usage-etl run` with them, then a clean run, and compares the published warehouse with the
reference (credit_usage, organizations, organization_users, project_usage_trends) and checks every
slice against its manifest. At the end pending notifications are drained by clean runs.

Figures: iterations, faults injected, divergences (goal 0), duplicate notifications (goal: at
most one per kill, with the same id), lost notifications (goal 0: a webhook message the outbox
holds that the receiver never accepted).

    .venv/bin/python bench/soak.py --iterations 200 --minutes 10      # the full soak
    .venv/bin/python bench/soak.py --iterations 10 --minutes 5 --seed 3
    .venv/bin/python bench/soak.py --minutes 8 --faults kill,corrupt,channel   # crash cases only
"""

from __future__ import annotations

import argparse
import base64
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from emulator.server import EmulatorConfig, EmulatorServer  # noqa: E402
from warehouse.manifest import check_warehouse  # noqa: E402

MAX_ITERATIONS = 200
MAX_MINUTES = 10.0
FAULT_KINDS = ("api", "kill", "corrupt", "channel", "quota")
SUBSCRIPTION_BUDGETS = {"free": 1000, "starter": 5000, "professional": 20000, "enterprise": 100000}

COMPARED = {
    "credit_usage": "select * exclude (loaded_at) from credit_usage order by all",
    "organizations": (
        "select organization_id, organization_name, status, subscription, creation_date, "
        "period_start, period_end, period_anchor_day, visible from organizations order by all"
    ),
    "organization_users": (
        "select * exclude (loaded_at) from organization_users order by organization_id, user_id"
    ),
    "project_usage_trends": "select * from project_usage_trends order by all",
}


class Receiver:
    """A webhook endpoint on loopback: records accepted `webhook-id`s; 503 while `down`."""

    def __init__(self) -> None:
        self.down = False
        self.accepted: Counter[str] = Counter()
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                self.rfile.read(length)
                if receiver.down:
                    receiver.refused += 1
                    self.send_response(503)
                else:
                    receiver.accepted[self.headers.get("webhook-id", "")] += 1
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Figures:
    iterations: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    faulty_runs_failed: int = 0
    clean_runs_failed: int = 0
    divergences: list[str] = field(default_factory=list)
    duplicates: int = 0
    duplicate_ids_over_two: int = 0
    lost: int = 0
    delivered: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        faults = ", ".join(f"{k}={self.faults[k]}" for k in FAULT_KINDS)
        return [
            f"iterations: {self.iterations} in {self.seconds:.0f}s",
            f"faults injected: {sum(self.faults.values())} ({faults}); kill -9 landed: "
            f"{self.kills}; faulty runs that failed: {self.faulty_runs_failed}",
            f"clean runs failed: {self.clean_runs_failed}",
            f"divergences from the reference: {len(self.divergences)}",
            *(f"  {d}" for d in self.divergences[:20]),
            f"notifications delivered (distinct webhook ids): {self.delivered}",
            f"duplicate notifications: {self.duplicates} (kills: {self.kills}; ids received "
            f"more than twice: {self.duplicate_ids_over_two})",
            f"lost notifications: {self.lost}",
        ]


def write_quotas(
    directory: Path, webhook_url: str | None, budgets: dict[str, float] | None = None
) -> Path:
    """The bundled quotas with per-organization budget overrides and a webhook channel."""
    text = (ROOT / "quotas.example.yaml").read_text()
    head = text.split("\nchannels:")[0]
    if budgets:
        overrides = "".join(f"  {k}: {{credit_budget: {v}}}\n" for k, v in sorted(budgets.items()))
        head = head.replace("organizations: {}\n", "organizations:\n" + overrides)
    channels = "\nchannels:\n  log: true\n"
    if webhook_url:
        channels += f"  webhook:\n    url: {webhook_url}\n    secret_env: SOAK_WEBHOOK_SECRET\n"
    path = directory / ("quotas-webhook.yaml" if webhook_url else "quotas-log.yaml")
    path.write_text(head + channels)
    return path


class Runner:
    """Starts `usage-etl run` subprocesses against the emulator."""

    def __init__(self, server: EmulatorServer, secret: str, start: str) -> None:
        self.start_day = start
        self.env = dict(os.environ)
        self.env.update(
            {
                "UBIOPS_API_HOST": server.base_url,
                "UBIOPS_API_TOKEN": server.token,
                "SOAK_WEBHOOK_SECRET": secret,
            }
        )

    def start(self, warehouse: Path, quotas: Path) -> subprocess.Popen[bytes]:
        env = dict(self.env, DAGSTER_HOME=str(warehouse / "dagster"))
        command = [sys.executable, "-m", "pipelines.cli", "run", "--warehouse", str(warehouse)]
        return subprocess.Popen(
            [*command, "--quotas", str(quotas), "--start", self.start_day],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def run(self, warehouse: Path, quotas: Path, kill_after: float | None = None) -> str:
        """'ok', 'failed: <last line>' or 'killed'."""
        proc = self.start(warehouse, quotas)
        if kill_after is not None:
            try:
                proc.wait(timeout=kill_after)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.communicate()
                return "killed"
        _, err = proc.communicate()
        if proc.returncode == 0:
            return "ok"
        last = [line for line in err.decode(errors="replace").splitlines() if line.strip()]
        return f"failed: {last[-1][:300] if last else proc.returncode}"


def snapshot(warehouse: Path) -> dict[str, list[tuple[object, ...]]]:
    con = duckdb.connect(str(warehouse / "usage.duckdb"), read_only=True)
    try:
        return {name: con.execute(sql).fetchall() for name, sql in COMPARED.items()}
    finally:
        con.close()


def outbox(warehouse: Path) -> list[tuple[str, str]]:
    """(webhook_id, status) of every webhook message in the published outbox."""
    con = duckdb.connect(str(warehouse / "usage.duckdb"), read_only=True)
    try:
        return con.execute(
            "select webhook_id, status from alert_outbox where channel = 'webhook'"
        ).fetchall()
    finally:
        con.close()


def corrupt(warehouse: Path, rng: random.Random) -> str:
    """Garble 4 bytes of, or delete, a random repairable slice; returns what was done."""
    root = warehouse / "parquet"
    candidates = [
        p
        for p in root.rglob("*.parquet")
        if "resource_usage" not in p.parts and not p.name.startswith(".")
    ]
    path = rng.choice(sorted(candidates))
    relative = path.relative_to(root)
    if "credit_usage" in path.parts and rng.random() < 0.4:
        shutil.rmtree(path.parent)
        return f"deleted {relative.parent}"
    data = bytearray(path.read_bytes())
    at = rng.randrange(4, max(5, len(data) - 8))
    data[at : at + 4] = bytes(255 - b for b in data[at : at + 4])
    path.write_bytes(bytes(data))
    return f"garbled {relative} at {at}"


def api_faults(rng: random.Random) -> dict[str, int]:
    faults = {
        "errors_5xx": rng.choice([0, 2, 5, 10]),
        "burst_429": rng.choice([0, 0, 2]),
        "drop_connections": rng.choice([0, 2, 5]),
        "malformed_json": rng.choice([0, 2, 4]),
    }
    if rng.random() < 0.5:
        faults.update(slow_ms=rng.choice([50, 200]), slow_count=rng.choice([20, 100]))
    return faults


def compare(
    reference: dict[str, list[tuple[object, ...]]], warehouse: Path, label: str
) -> list[str]:
    found = []
    got = snapshot(warehouse)
    for table, rows in reference.items():
        if got[table] != rows:
            found.append(
                f"{label}: {table} differs ({len(got[table])} rows vs {len(rows)} in the reference)"
            )
    bad = check_warehouse(warehouse / "parquet").bad
    found += [f"{label}: bad slice after the clean run: {b.describe()}" for b in bad]
    return found


def soak(
    iterations: int, minutes: float, seed: int, workdir: Path, kinds_allowed: tuple[str, ...]
) -> Figures:
    rng = random.Random(seed)
    figures = Figures()
    began = time.monotonic()
    secret = "whsec_" + base64.b64encode(rng.randbytes(24)).decode()
    now = datetime.now(UTC).replace(microsecond=0)
    config = EmulatorConfig(seed=11, rate_limit_per_minute=0, now=now)
    with EmulatorServer(config) as server, Receiver() as receiver:
        runner = Runner(server, secret, f"{now:%Y-%m}-01")  # the current month: shorter runs
        with_webhook = write_quotas(workdir, receiver.url)
        log_only = write_quotas(workdir, None)
        reference, tested = workdir / "reference", workdir / "warehouse"
        started = time.monotonic()
        assert runner.run(reference, log_only) == "ok", "the reference run failed"
        run_seconds = time.monotonic() - started
        # the warehouse under test starts as a copy (its own Dagster instance, its own alerts)
        shutil.copytree(reference, tested, ignore=shutil.ignore_patterns("dagster", "state"))
        expected = snapshot(reference)
        print(f"reference built; a clean run takes {run_seconds:.0f}s", flush=True)
        deadline = began + minutes * 60
        scenario = server.scenario()["organizations"]
        subscriptions = {o["name"]: o["subscription"] for o in scenario}
        budgets: dict[str, float] = {}
        for i in range(1, iterations + 1):
            if time.monotonic() + 2 * run_seconds > deadline:
                print(f"stopping before iteration {i}: the time budget would be exceeded")
                break
            kinds = [k for k in kinds_allowed if rng.random() < 0.45] or [rng.choice(kinds_allowed)]
            if i == 1 and "quota" not in kinds:
                kinds.append("quota")  # something to notify from the start
            notes = []
            if "quota" in kinds:
                for org in rng.sample(sorted(subscriptions), 2):
                    base = SUBSCRIPTION_BUDGETS.get(subscriptions[org], 10000)
                    budgets[org] = round(base * rng.choice([0.1, 0.3, 0.6, 1.0, 3.0]), 2)
                write_quotas(workdir, receiver.url, budgets)
                notes.append("budgets " + ",".join(f"{k}={v}" for k, v in sorted(budgets.items())))
            if "corrupt" in kinds:
                notes.append(corrupt(tested, rng))
            if "api" in kinds:
                faults = api_faults(rng)
                server.set_faults(**faults)
                notes.append("api " + ",".join(f"{k}={v}" for k, v in faults.items() if v))
            receiver.down = "channel" in kinds
            kill_after = rng.uniform(1.0, run_seconds * 0.9) if "kill" in kinds else None
            outcome = runner.run(tested, with_webhook, kill_after)
            figures.faults.update(kinds)
            figures.kills += outcome == "killed"
            figures.faulty_runs_failed += outcome.startswith("failed")
            server.reset_faults()
            receiver.down = False
            started = time.monotonic()
            clean = runner.run(tested, with_webhook)
            run_seconds = max(run_seconds * 0.5 + (time.monotonic() - started) * 0.5, 1.0)
            if clean != "ok":
                figures.clean_runs_failed += 1
                figures.divergences.append(f"iteration {i}: clean run {clean}")
            if clean == "ok":
                figures.divergences += compare(expected, tested, f"iteration {i}")
            figures.iterations = i
            print(
                f"[{i}] {'+'.join(kinds)}: {'; '.join(notes) or '-'} -> faulty run {outcome}; "
                f"clean run {clean}",
                flush=True,
            )
        for _ in range(3):  # drain notifications a backoff may still hold back
            if all(status != "pending" for _, status in outbox(tested)):
                break
            runner.run(tested, with_webhook)
        messages = outbox(tested)
        figures.delivered = len(receiver.accepted)
        figures.lost = sum(
            1
            for webhook_id, status in messages
            if status not in ("suppressed", "cancelled") and webhook_id not in receiver.accepted
        )
        figures.duplicates = sum(n - 1 for n in receiver.accepted.values() if n > 1)
        figures.duplicate_ids_over_two = sum(1 for n in receiver.accepted.values() if n > 2)
    figures.seconds = time.monotonic() - began
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=MAX_ITERATIONS)
    parser.add_argument("--minutes", type=float, default=MAX_MINUTES)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", help="work directory to keep (default: a temporary one)")
    parser.add_argument(
        "--faults",
        default=",".join(FAULT_KINDS),
        help=f"fault kinds to draw from, comma-separated (default {','.join(FAULT_KINDS)})",
    )
    args = parser.parse_args(argv)
    kinds = tuple(k.strip() for k in args.faults.split(",") if k.strip())
    unknown = sorted(set(kinds) - set(FAULT_KINDS))
    if unknown or not kinds:
        parser.error(f"--faults {args.faults!r}: expected some of {', '.join(FAULT_KINDS)}")
    if not 1 <= args.iterations <= MAX_ITERATIONS:
        parser.error(f"--iterations {args.iterations}: expected 1..{MAX_ITERATIONS}")
    if not 0 < args.minutes <= MAX_MINUTES:
        parser.error(f"--minutes {args.minutes}: expected more than 0 and at most {MAX_MINUTES}")
    if args.keep:
        workdir = Path(args.keep)
        workdir.mkdir(parents=True, exist_ok=True)
        figures = soak(args.iterations, args.minutes, args.seed, workdir, kinds)
    else:
        with tempfile.TemporaryDirectory(prefix="usage-soak-") as tmp:
            figures = soak(args.iterations, args.minutes, args.seed, Path(tmp), kinds)
    print("\n".join(figures.lines()))
    return 0 if not figures.divergences and not figures.lost else 1


if __name__ == "__main__":
    raise SystemExit(main())
