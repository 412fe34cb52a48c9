"""A fake clock for unit tests of time-driven code (the API client's waits, the pacer)."""

from __future__ import annotations

import asyncio
import threading


class FakeClock:
    """Stands in for `time.monotonic` and `asyncio.sleep`: sleeping advances the clock at once
    (and yields to the event loop), and every wait is recorded in `sleeps`. Only the test's own
    thread is faked: servers that session fixtures run in other threads of the same process
    (an emulator's event loop ticks every 0.1 s) keep sleeping for real and are not recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._real_sleep = asyncio.sleep
        self._thread = threading.get_ident()

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if threading.get_ident() != self._thread:
            await self._real_sleep(seconds)
            return
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await self._real_sleep(0)
