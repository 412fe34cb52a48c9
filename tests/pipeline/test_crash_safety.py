"""A crash at any instant never breaks the warehouse. (An analyst holding the database open
during a run: tests/pipeline/test_end_to_end.py, with the other checks of a second run.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq

from tests.services.emulator import Pipeline, assert_matches_emulator


def wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_during_a_run_leaves_the_previous_warehouse(
    pipeline_after_demo_run: Pipeline,
) -> None:
    pipeline = pipeline_after_demo_run  # its first run is the session's demo run
    before = pipeline.query("select * from credit_usage order by all")

    pipeline.server.set_faults(slow_ms=150, slow_count=10_000)
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", "--warehouse", str(pipeline.warehouse)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    partitions = pipeline.warehouse / "parquet" / "credit_usage"
    stamps = {p: p.stat().st_mtime_ns for p in partitions.rglob("*.parquet")}

    def some_slice_rewritten() -> bool:
        return (
            any(p.stat().st_mtime_ns != stamps.get(p) for p in partitions.rglob("*.parquet"))
            or proc.poll() is not None
        )

    try:
        wait_for(some_slice_rewritten, 120, "the run to rewrite a credit usage slice")
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    pipeline.server.reset_faults()

    # The published database is the previous one, complete and readable.
    after = pipeline.query("select * from credit_usage order by all")
    assert after.equals(before)
    # Every Parquet file is whole.
    for path in (pipeline.warehouse / "parquet").rglob("*.parquet"):
        if not path.name.startswith("."):
            pq.read_metadata(path)
    # The next run repairs everything.
    assert pipeline.run().success
    assert not list(Path(pipeline.warehouse).rglob(".*.tmp")), "stale temporaries were cleaned"
    assert_matches_emulator(pipeline, pipeline.start, pipeline.end + timedelta(days=1))
