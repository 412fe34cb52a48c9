"""Client-side pacing under the server's rate limit, shared by all concurrent requests.

The UbiOps API allows a number of requests per minute per client and says so in
`x-ratelimit-limit`, `x-ratelimit-remaining` and `x-ratelimit-reset`. The pacer spaces requests
evenly at a fraction (`utilization`) of the advertised limit: a steady rate of L*u/60 per second
never puts more than L requests in any 60-second window, so a well-paced client sees no 429 while
still using ~all of its allowance. It also obeys the server: when the server reports nothing
remaining, or answers 429, every request waits until the window resets.
Without rate-limit headers (a server without limits) it does not pace at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping

WINDOW_SECONDS = 60.0


class RatePacer:
    """Paces request starts; call `acquire()` before and `observe()` after each request."""

    def __init__(self, utilization: float = 0.98) -> None:
        if not 0 < utilization <= 1:
            raise ValueError(f"utilization must be in (0, 1], got {utilization}")
        self.utilization = utilization
        self.limit: int | None = None
        self._next_start = 0.0
        self._paused_until = 0.0
        self._known = False
        self._probe_in_flight = False
        self._learned = asyncio.Event()
        self._lock = asyncio.Lock()

    @property
    def interval(self) -> float:
        """Seconds between request starts (0 when the server advertises no limit)."""
        if not self.limit:
            return 0.0
        return WINDOW_SECONDS / (self.limit * self.utilization)

    async def acquire(self) -> None:
        """Wait until a request may start."""
        while not self._known:
            if not self._probe_in_flight:
                self._probe_in_flight = True  # the first request teaches us the limit
                return
            await self._learned.wait()
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next_start, self._paused_until)
            self._next_start = start + self.interval
        delay = start - now
        if delay > 0:
            await asyncio.sleep(delay)

    def observe(self, headers: Mapping[str, str], status: int) -> float:
        """Learn from a response's headers; returns seconds to wait before retrying a 429."""
        limit = _int_header(headers, "x-ratelimit-limit")
        remaining = _int_header(headers, "x-ratelimit-remaining")
        reset = _int_header(headers, "x-ratelimit-reset")
        retry_after = _int_header(headers, "retry-after")
        if limit is not None and limit > 0:
            self.limit = limit
        wait = 0.0
        if status == 429:
            wait = float(max(retry_after or 0, reset or 0, 1))
        elif remaining is not None and remaining <= 0 and reset is not None:
            wait = float(reset)
        if wait:
            self._paused_until = max(self._paused_until, time.monotonic() + wait)
        self._mark_known()
        return wait

    def observe_failure(self) -> None:
        """A request ended without a response: let the others go on."""
        self._mark_known()

    def _mark_known(self) -> None:
        if not self._known:
            self._known = True
            self._probe_in_flight = False
            self._learned.set()


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None
