"""Benchmark: emulator data set generation (demo set, 500 and 5,000 organizations).

Run: ``.venv/bin/python bench/generate.py [--orgs 5000] [--baseline 500] [--seed 7]``.
Prints wall time (untraced run), peak traced memory of a second run (tracemalloc, includes
numpy buffers), process peak RSS, the number of projects and daily values generated, and the
5,000/500 time ratio.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emulator.demo import build_state


def measure(label: str, organizations: int | None, seed: int, now: datetime) -> float:
    gc.collect()
    started = time.perf_counter()
    state = build_state(seed=seed, organizations=organizations, now=now)
    elapsed = time.perf_counter() - started
    del state
    gc.collect()
    tracemalloc.start()  # separate run: tracing slows Python-level code down
    state = build_state(seed=seed, organizations=organizations, now=now)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    projects = sum(len(o.projects) for o in state.orgs.values())
    values = sum(o.usage.size for o in state.orgs.values())
    usage_mb = sum(o.usage.nbytes for o in state.orgs.values()) / 2**20
    print(
        f"{label:>14}: {len(state.orgs):>6} orgs, {projects:>6} projects, "
        f"{state.n_days} days, {values:>10,} daily values ({usage_mb:6.1f} MiB int64) "
        f"in {elapsed:6.3f} s, peak traced {peak / 2**20:7.1f} MiB"
    )
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orgs", type=int, default=5000)
    parser.add_argument("--baseline", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    now = datetime.now(UTC)
    print(f"python {sys.version.split()[0]}, now {now:%Y-%m-%dT%H:%M:%SZ}")
    measure("demo set", None, args.seed, now)
    base = measure(f"{args.baseline} orgs", args.baseline, args.seed, now)
    big = measure(f"{args.orgs} orgs", args.orgs, args.seed, now)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"scale-up ratio {args.orgs}/{args.baseline} orgs: {big / base:.1f}x time")
    print(f"process peak RSS: {rss:.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
