"""`extraction.endpoints.pull`: the answers of every key, with Python's cyclic garbage collector
paused while they pile up and restored afterwards, also when a request fails."""

from __future__ import annotations

import gc

import httpx
import pytest

from extraction.endpoints import RESOURCES, pull
from extraction.fanout import Org
from ubiops_api.client import ApiError, UbiOpsClient

COUNTS = {
    "projects": 1,
    "users": 2,
    "deployments": 3,
    "deployment_versions": 4,
    "pipelines": 5,
    "pipeline_versions": 6,
    "buckets": 7,
    "environments": 8,
}
ORGS = [Org(f"id-{i}", f"org-{i}") for i in range(5)]


def client_answering(status: int, seen_gc: list[bool]) -> UbiOpsClient:
    def handle(request: httpx.Request) -> httpx.Response:
        seen_gc.append(gc.isenabled())
        return httpx.Response(status, json=COUNTS if status == 200 else {"error": "no"})

    return UbiOpsClient("https://api.test/v2.1", "key", transport=httpx.MockTransport(handle))


@pytest.mark.parametrize("enabled", [True, False])
def test_answers_in_order_with_the_collector_paused_meanwhile(enabled: bool) -> None:
    seen_gc: list[bool] = []
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        (found,), stats = pull(lambda: client_answering(200, seen_gc), [(RESOURCES, ORGS)])
        after = gc.isenabled()
    finally:
        gc.enable() if was else gc.disable()
    assert [org for org, _ in found] == ORGS
    assert all(answer.buckets == 7 for _, answer in found)
    assert stats.requests == len(ORGS)
    assert seen_gc == [False] * len(ORGS)
    assert after is enabled


def test_the_collector_is_back_on_after_a_failed_pull() -> None:
    seen_gc: list[bool] = []
    with pytest.raises(ApiError, match="failed with 403"):
        pull(lambda: client_answering(403, seen_gc), [(RESOURCES, ORGS)])
    assert seen_gc and not any(seen_gc)
    assert gc.isenabled()


class Interrupted(BaseException):
    """What Dagster's SIGINT handler raises in whichever frame runs (not an `Exception`)."""


def test_an_interrupt_in_a_worker_comes_out_as_itself() -> None:
    """Ctrl-C lands in one of the concurrent requests: the pull stops with that interrupt, not
    with a group of "unhandled errors in a TaskGroup" (the run then reads as interrupted)."""
    answered = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal answered
        answered += 1
        if answered == 3:
            raise Interrupted
        return httpx.Response(200, json=COUNTS)

    def client() -> UbiOpsClient:
        return UbiOpsClient("https://api.test/v2.1", "key", transport=httpx.MockTransport(handle))

    with pytest.raises(Interrupted):
        pull(client, [(RESOURCES, ORGS)])
    assert gc.isenabled()
