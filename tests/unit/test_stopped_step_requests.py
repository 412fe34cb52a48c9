"""`assets.materialize.api_failure_stats` on a step stopped midway: what it had sent is recorded
as an engine event, and recording it never replaces what stopped the step."""

from __future__ import annotations

import sqlite3
from types import SimpleNamespace
from typing import Any

import pytest

from assets.materialize import STOPPED_STEP_REQUESTS, api_failure_stats
from ubiops_api.client import RequestStats


class EventLog:
    """A run's event log (the `DagsterInstance` part the context manager uses)."""

    def __init__(self, fails: bool = False) -> None:
        self.fails = fails
        self.events: list[tuple[str, dict[str, Any]]] = []

    def report_engine_event(self, message: str, run: object, data: Any, step_key: str) -> None:
        if self.fails:
            raise sqlite3.OperationalError("database is locked")
        self.events.append((message, {k: v.value for k, v in data.metadata.items()}))


def step(log: EventLog) -> Any:
    return SimpleNamespace(instance=log, run=None, op_handle="credit_usage_daily")


def test_an_interrupted_step_records_the_requests_it_sent() -> None:
    log = EventLog()
    with (
        pytest.raises(KeyboardInterrupt),
        api_failure_stats(RequestStats(requests=7, retries=1), context=step(log)),
    ):
        raise KeyboardInterrupt
    ((message, meta),) = log.events
    assert message == STOPPED_STEP_REQUESTS
    assert (meta["api_requests"], meta["api_retries"]) == (7, 1)


def test_an_event_log_that_cannot_take_the_record_does_not_replace_the_interrupt() -> None:
    with (
        pytest.raises(KeyboardInterrupt),
        api_failure_stats(RequestStats(requests=7), context=step(EventLog(fails=True))),
    ):
        raise KeyboardInterrupt
