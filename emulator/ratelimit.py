"""Per-client fixed-window rate limiting, like the real API's 300 requests/minute per source IP.

Owns the counters and the ``x-ratelimit-*`` header values. Windows are aligned to the wall-clock
minute (``window = floor(t / 60)``); ``x-ratelimit-reset`` is the whole number of seconds (at least
1) until the window ends. ``limit == 0`` switches limiting off (and the HTTP layer then omits the
headers).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS: int = 60
DEFAULT_RATE_LIMIT: int = 300


@dataclass(frozen=True)
class Decision:
    """Outcome of one request: allowed or not, and the header values to send."""

    allowed: bool
    limit: int
    remaining: int
    reset: int

    def headers(self) -> list[tuple[bytes, bytes]]:
        """The ``x-ratelimit-*`` headers (and ``retry-after`` when refused)."""
        out = [
            (b"x-ratelimit-limit", str(self.limit).encode()),
            (b"x-ratelimit-remaining", str(self.remaining).encode()),
            (b"x-ratelimit-reset", str(self.reset).encode()),
        ]
        if not self.allowed:
            out.append((b"retry-after", str(self.reset).encode()))
        return out


class RateLimiter:
    """Fixed-window request counter per client key. Thread-safe."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.time) -> None:
        self.limit = limit
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, tuple[int, int]] = {}

    @property
    def enabled(self) -> bool:
        """Whether limiting is on."""
        return self.limit > 0

    def hit(self, client: str) -> Decision:
        """Count one request from ``client`` and decide."""
        now = self._clock()
        window = int(now // WINDOW_SECONDS)
        reset = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
        with self._lock:
            current, count = self._windows.get(client, (window, 0))
            if current != window:
                count = 0
            count += 1
            self._windows[client] = (window, count)
        allowed = self.limit <= 0 or count <= self.limit
        return Decision(allowed, self.limit, max(0, self.limit - count), reset)

    def peek(self, client: str) -> Decision:
        """Current header values for ``client`` without counting a request."""
        now = self._clock()
        window = int(now // WINDOW_SECONDS)
        reset = max(1, math.ceil((window + 1) * WINDOW_SECONDS - now))
        with self._lock:
            current, count = self._windows.get(client, (window, 0))
        if current != window:
            count = 0
        return Decision(True, self.limit, max(0, self.limit - count), reset)

    def reset(self) -> None:
        """Forget all counters."""
        with self._lock:
            self._windows.clear()
