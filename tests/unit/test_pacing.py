"""The pacer alone, on a fake clock: even spacing under the advertised limit, obeying 429s and
exhausted windows, and not pacing a server without limits."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from tests.services.clock import FakeClock
from ubiops_api.pacing import WINDOW_SECONDS, RatePacer


def limit_headers(limit: int, remaining: int | None = None, reset: int = 60) -> dict[str, str]:
    headers = {"x-ratelimit-limit": str(limit), "x-ratelimit-reset": str(reset)}
    headers["x-ratelimit-remaining"] = str(limit if remaining is None else remaining)
    return headers


def starts(pacer: RatePacer, clock: FakeClock, n: int) -> list[float]:
    """Start `n` requests one after another; the clock reading at each start."""

    async def go() -> list[float]:
        seen = []
        for _ in range(n):
            await pacer.acquire()
            seen.append(clock.now)
        return seen

    return asyncio.run(go())


def test_utilization_must_be_a_fraction() -> None:
    for bad in (0, -0.5, 1.01):
        with pytest.raises(ValueError, match="utilization must be in"):
            RatePacer(bad)


def test_spaces_requests_evenly_under_the_advertised_limit(clock: FakeClock) -> None:
    pacer = RatePacer(0.98)
    assert starts(pacer, clock, 1) == [1000.0]  # the first request goes at once, as a probe
    assert pacer.observe(limit_headers(120), 200) == 0.0
    assert pacer.limit == 120
    assert pacer.interval == pytest.approx(WINDOW_SECONDS / (120 * 0.98))

    times = starts(pacer, clock, 300)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(g == pytest.approx(pacer.interval) for g in gaps)
    # never more than the limit in any 60-second window, yet ~all of it is used
    busiest = max(sum(1 for t in times if start <= t < start + WINDOW_SECONDS) for start in times)
    assert 117 <= busiest <= 120


def test_no_rate_limit_headers_means_no_pacing(clock: FakeClock) -> None:
    pacer = RatePacer()
    starts(pacer, clock, 1)
    pacer.observe({}, 200)
    assert pacer.interval == 0.0
    assert starts(pacer, clock, 50) == [1000.0] * 50
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("headers", "wait"),
    [
        ({"retry-after": "5"}, 5.0),
        ({"retry-after": "5", "x-ratelimit-reset": "20"}, 20.0),
        ({"retry-after": "soon"}, 1.0),  # unreadable: at least a second
        ({}, 1.0),
    ],
    ids=["retry-after", "reset-longer", "unreadable", "none"],
)
def test_a_429_pauses_every_request_until_the_window_resets(
    clock: FakeClock, headers: dict[str, str], wait: float
) -> None:
    pacer = RatePacer()
    starts(pacer, clock, 1)
    assert pacer.observe(headers, 429) == wait
    assert starts(pacer, clock, 2) == [1000.0 + wait, 1000.0 + wait]


def test_an_exhausted_window_pauses_until_it_resets(clock: FakeClock) -> None:
    pacer = RatePacer()
    starts(pacer, clock, 1)
    assert pacer.observe(limit_headers(60, remaining=0, reset=12), 200) == 12.0
    first = starts(pacer, clock, 1)[0]
    assert first == pytest.approx(1012.0)


def test_others_wait_for_the_probe_to_teach_the_limit() -> None:
    async def go() -> tuple[bool, bool]:
        pacer = RatePacer()
        await pacer.acquire()  # the probe
        waiting = asyncio.ensure_future(pacer.acquire())
        for _ in range(5):
            await asyncio.sleep(0)
        blocked = not waiting.done()
        pacer.observe_failure()  # the probe ended without an answer: let the others go on
        await asyncio.wait_for(waiting, 5)
        return blocked, waiting.done()

    assert asyncio.run(go()) == (True, True)
