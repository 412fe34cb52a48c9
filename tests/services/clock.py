"""A fake clock for unit tests of time-driven code (the API client's waits, the pacer)."""

from __future__ import annotations

import asyncio


class FakeClock:
    """Stands in for `time.monotonic` and `asyncio.sleep`: sleeping advances the clock at once
    (and yields to the event loop), and every wait is recorded in `sleeps`."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._real_sleep = asyncio.sleep

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(seconds, 0.0)
        await self._real_sleep(0)
