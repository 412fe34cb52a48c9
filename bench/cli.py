"""Command-line start-up time: `usage-etl --help` against bare Python and the old eager import.

    .venv/bin/python bench/cli.py [--runs 15]

Each case is a fresh process (what a user waits for), timed wall-clock; the median of `--runs` is
reported, with ratios against `python -c pass` measured in the same run:

- `python -c pass`: the interpreter alone (the floor);
- `usage-etl --help` and `usage-etl query --help`: the console script as installed;
- `import dagster, pandas` ("eager"): what parsing used to cost, when the command modules
  imported Dagster and pandas before looking at the arguments.

Goal: `usage-etl --help` under 0.3 s on a quiet machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]

CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "usage-etl --help": [str(BIN / "usage-etl"), "--help"],
    "usage-etl query --help": [str(BIN / "usage-etl"), "query", "--help"],
    "usage-etl --version": [str(BIN / "usage-etl"), "--version"],
    "eager: import dagster, pandas": [sys.executable, "-c", "import dagster, pandas"],
}


def wall(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, cwd=REPO, stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    for command in CASES.values():  # warm the file cache once
        wall(command)
    medians = {}
    for name, command in CASES.items():
        runs = args.runs if not name.startswith("eager") else max(3, args.runs // 5)
        medians[name] = statistics.median(wall(command) for _ in range(runs))
    floor = medians["python -c pass"]
    print(f"{'case':34} {'median s':>9} {'x python':>9}")
    for name, seconds in medians.items():
        print(f"{name:34} {seconds:9.3f} {seconds / floor:9.1f}")
    help_s = medians["usage-etl --help"]
    eager = medians["eager: import dagster, pandas"]
    print(f"\n--help is {eager / help_s:.0f}x faster than importing Dagster and pandas first")
    print(f"goal --help < 0.300 s: {'met' if help_s < 0.3 else 'NOT met'} ({help_s:.3f} s)")


if __name__ == "__main__":
    main()
