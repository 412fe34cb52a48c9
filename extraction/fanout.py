"""Fan-out of API calls over many organizations, with progress and all-or-nothing failure.

Used by the extraction assets: each asset describes one call per organization (or per
organization and month); this module runs them concurrently through one `UbiOpsClient`, reports
progress at most every `every` seconds, and either returns every result or raises the first
failure (cancelling the rest; an interrupt too, as itself), so a slice is never written with
some organizations missing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ubiops_api.client import ApiError, UbiOpsClient

K = TypeVar("K")
T = TypeVar("T")

ProgressFn = Callable[[str], None]


@dataclass(frozen=True)
class Org:
    """An organization to pull: its stable id and current name (the API addresses by name)."""

    id: str
    name: str


async def fan_out(
    client: UbiOpsClient,
    keys: Sequence[K],
    call: Callable[[K], Awaitable[T]],
    *,
    label: str,
    progress: ProgressFn | None = None,
    every: float = 5.0,
) -> list[tuple[K, T]]:
    """Run `call(key)` for every key concurrently; results in the order of `keys`.

    As many workers as the client has requests in flight take the keys in turn (not one task
    per key: 12,000 waiting tasks cost the event loop more than the requests themselves)."""
    results: list[T | None] = [None] * len(keys)
    done = 0
    taken = 0
    last_report = time.monotonic()
    started = last_report

    def report(final: bool = False) -> None:
        if progress is None:
            return
        s = client.stats
        elapsed = time.monotonic() - started
        progress(
            f"{label}: {done}/{len(keys)} done, {s.requests} requests, {s.retries} retries, "
            f"{s.rate_limited} rate-limited, {elapsed:.1f}s" + (" (finished)" if final else "")
        )

    async def worker() -> None:
        nonlocal done, taken, last_report
        while taken < len(keys):
            index = taken
            taken += 1
            results[index] = await call(keys[index])
            done += 1
            now = time.monotonic()
            if now - last_report >= every:
                last_report = now
                report()

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(len(keys), client.max_concurrency)):
                group.create_task(worker())
    except* ApiError as failures:
        raise failures.exceptions[0] from None
    except* BaseException as stopped:
        # Whatever else stopped a worker, as itself rather than wrapped in a group: above all an
        # interrupt (Ctrl-C), which lands in whichever task is running -- a KeyboardInterrupt, or
        # under Dagster the DagsterExecutionInterruptedError its SIGINT handler raises -- so the
        # caller (and Dagster) sees an interrupted run, not "unhandled errors in a TaskGroup".
        raise stopped.exceptions[0] from None
    report(final=True)
    return [(key, result) for key, result in zip(keys, results, strict=True)]  # type: ignore[misc]
