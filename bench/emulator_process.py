"""The emulator in a process of its own, for benchmarks (so that it and the client under test
do not share a GIL): started on a free loopback port, read until it says where it serves."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def emulator_process(
    orgs: int, now: str, rate_limit: int = 0, history_months: int | None = None
) -> Iterator[dict[str, str]]:
    """Yield `{"UBIOPS_API_HOST": ..., "UBIOPS_API_TOKEN": ...}` for a running emulator serving
    `orgs` organizations and `history_months` months of usage (None: the emulator's default)."""
    history = [] if history_months is None else ["--history-months", str(history_months)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", "0", "--organizations", str(orgs),
         "--rate-limit", str(rate_limit), "--now", now, *history],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    found: dict[str, str] = {}
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(found) < 2:
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError("emulator exited before it was ready")
            for key in ("UBIOPS_API_HOST", "UBIOPS_API_TOKEN"):
                if line.startswith(key + "="):
                    found[key] = line.split("=", 1)[1].strip()
        if len(found) < 2:
            raise RuntimeError("emulator did not say where it serves within 120 s")
        yield found
    finally:
        proc.terminate()
        proc.wait(timeout=30)
