"""The API client alone, against `httpx.MockTransport` (scripted answers) or the emulator's ASGI
app in process (its real response shapes): retries, waits, failures and validation, with no
socket and no real sleeping (waits are recorded on a fake clock)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest

from emulator.server import EmulatorConfig, EmulatorServer
from tests.services.clock import FakeClock
from ubiops_api import client as ubiops_client
from ubiops_api.client import ApiError, ApiResponseError, UbiOpsClient, authorization_header

HOST = "https://api.test/v2.1"
TOKEN = "secret-key-7f3a9c"
DETAIL = {"id": "org-1", "name": "acme", "subscription": "starter", "status": "active"}
POINT = {"start_date": "2026-11-01T00:00:00Z", "end_date": "2026-11-02T00:00:00Z", "value": 2.5}
USAGE = {
    "interval": "day",
    "data_organization": [POINT],
    "data_projects": [{"project_id": "p1", "project_name": "one", "data": [POINT]}],
    "data_deleted_projects": [{**POINT, "value": 0.5}],
}


Handler = Callable[[httpx.Request], httpx.Response]


def scripted(
    *answers: httpx.Response | Exception | Callable[[], httpx.Response],
) -> tuple[Handler, list[httpx.Request]]:
    """A handler giving `answers` in turn (the last one repeats); records every request."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer() if callable(answer) else answer

    return handle, seen


def ok(body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(200, json=body, headers=headers)


def run(
    transport: httpx.AsyncBaseTransport,
    call: Callable[[UbiOpsClient], Awaitable[Any]],
    **options: Any,
) -> tuple[Any, UbiOpsClient]:
    host, token = options.pop("host", HOST), options.pop("token", TOKEN)
    client = UbiOpsClient(host, token, transport=transport, **options)

    async def go() -> Any:
        async with client:
            return await call(client)

    return asyncio.run(go()), client


def mock(handler: Handler) -> httpx.MockTransport:
    return httpx.MockTransport(handler)


# ---- transient failures are retried ----------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(500, json={"error": "boom"}),
        httpx.Response(502, text="bad gateway"),
        httpx.Response(503, json={"error": "unavailable"}),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        httpx.Response(200, content=b'{"id": "org-1", "name": "ac'),  # cut-off JSON body
    ],
    ids=["500", "502", "503", "dropped", "refused", "timeout", "malformed-json"],
)
def test_transient_failures_are_retried_with_backoff(
    clock: FakeClock, failure: httpx.Response | Exception
) -> None:
    handler, seen = scripted(failure, failure, failure, ok(DETAIL))
    detail, client = run(mock(handler), lambda c: c.get_organization("acme"))
    assert detail.id == "org-1" and detail.subscription == "starter"
    assert len(seen) == 4
    assert client.stats.retries == 3 and client.stats.requests == 4
    assert client.stats.failures == 0
    # jittered exponential backoff: attempt n waits at most base * 2**n
    assert len(clock.sleeps) == 3
    for attempt, waited in enumerate(clock.sleeps):
        assert 0 <= waited <= 0.5 * 2**attempt


def test_backoff_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    client = UbiOpsClient(HOST, TOKEN, backoff_base=0.5, backoff_cap=30.0)
    monkeypatch.setattr(ubiops_client.random, "uniform", lambda low, high: high)
    assert [client._backoff(n) for n in (0, 1, 2, 6, 7, 20)] == [0.5, 1, 2, 30, 30, 30]


def test_gives_up_after_max_retries_naming_the_endpoint_and_problem(clock: FakeClock) -> None:
    handler, seen = scripted(httpx.Response(503, json={"error": "down"}))
    with pytest.raises(ApiError) as caught:
        run(mock(handler), lambda c: c.resource_usage("acme"), max_retries=3)
    message = str(caught.value)
    assert "GET /organizations/acme/resources" in message
    assert "'acme'" in message
    assert "after 4 attempts" in message and "server error 503" in message
    assert len(seen) == 4
    assert TOKEN not in message


def test_gives_up_on_a_body_that_never_parses(clock: FakeClock) -> None:
    handler, _ = scripted(httpx.Response(200, content=b"<html>proxy error</html>"))
    with pytest.raises(ApiError, match="unreadable JSON body"):
        run(mock(handler), lambda c: c.list_organizations(), max_retries=2)


# ---- 429: wait as the server says -------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected_wait"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"x-ratelimit-reset": "12", "retry-after": "3"}, 12.0),
        ({}, 1.0),  # no hint: at least a second
    ],
    ids=["retry-after", "reset-wins-when-longer", "no-hint"],
)
def test_429_waits_as_the_server_says_then_succeeds(
    clock: FakeClock, headers: dict[str, str], expected_wait: float
) -> None:
    limited = httpx.Response(429, json={"error": "Rate limit exceeded"}, headers=headers)
    handler, seen = scripted(limited, ok([{"id": "org-1", "name": "acme"}]))
    orgs, client = run(mock(handler), lambda c: c.list_organizations())
    assert [o.name for o in orgs] == ["acme"]
    assert client.stats.rate_limited == 1 and client.stats.retries == 1
    assert client.stats.by_status == {429: 1, 200: 1}
    assert expected_wait in clock.sleeps
    assert len(seen) == 2


def test_a_429_burst_is_ridden_out(clock: FakeClock) -> None:
    limited = httpx.Response(429, headers={"retry-after": "1"})
    handler, seen = scripted(*[limited] * 4, ok(DETAIL))
    _, client = run(mock(handler), lambda c: c.get_organization("acme"))
    assert client.stats.rate_limited == 4 and client.stats.retries == 4
    assert len(seen) == 5


# ---- other 4xx fail at once -----------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_other_4xx_fail_at_once_naming_endpoint_and_organization(
    clock: FakeClock, status: int
) -> None:
    handler, seen = scripted(httpx.Response(status, json={"error": "Nope, not allowed"}))
    with pytest.raises(ApiError) as caught:
        run(mock(handler), lambda c: c.list_users("blue harbor"))
    message = str(caught.value)
    assert len(seen) == 1, "a 4xx other than 429 is not retried"
    assert caught.value.status == status
    assert f"failed with {status}" in message and "Nope, not allowed" in message
    assert "GET /organizations/blue%20harbor/users" in message and "'blue harbor'" in message
    assert TOKEN not in message and "\n" not in message
    assert clock.sleeps == []


def test_401_on_the_organization_list_names_it(clock: FakeClock) -> None:
    handler, _ = scripted(httpx.Response(401, json={"error": "Authentication failed"}))
    with pytest.raises(ApiError, match=r"GET /organizations failed with 401"):
        run(mock(handler), lambda c: c.list_organizations())


# ---- what is sent ---------------------------------------------------------------------------


def test_requests_carry_the_token_header_and_formatted_dates(clock: FakeClock) -> None:
    handler, seen = scripted(ok(USAGE))

    async def calls(c: UbiOpsClient) -> None:
        await c.credit_usage("a/b", "day", date(2026, 10, 1), date(2026, 11, 1))
        await c.credit_usage("a/b", "month", datetime(2026, 10, 1, 6, tzinfo=UTC), "2026-11-30")
        await c.credit_usage("a/b")

    run(mock(handler), calls, host=HOST + "/")
    first, second, third = seen
    assert first.headers["authorization"] == f"Token {TOKEN}"
    assert first.url.raw_path.split(b"?")[0] == b"/v2.1/organizations/a%2Fb/usage"
    assert dict(first.url.params) == {
        "interval": "day",
        "start_date": "2026-10-01",
        "end_date": "2026-11-01",
    }
    assert dict(second.url.params) == {
        "interval": "month",
        "start_date": "2026-10-01T06:00:00Z",
        "end_date": "2026-11-30",
    }
    assert dict(third.url.params) == {"interval": "month"}


def test_authorization_header_and_token_never_shown() -> None:
    assert authorization_header("abc") == "Token abc"
    assert authorization_header("  Token abc ") == "Token abc"
    assert authorization_header("Bearer xyz") == "Bearer xyz"
    with pytest.raises(ApiError, match="UBIOPS_API_TOKEN is empty"):
        authorization_header("  ")
    client = UbiOpsClient(HOST, TOKEN)
    assert TOKEN not in repr(client) and HOST in repr(client)


def test_concurrency_is_bounded(clock: FakeClock) -> None:
    in_flight = 0
    most = 0

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        for _ in range(3):
            await asyncio.sleep(0)
        in_flight -= 1
        return ok(DETAIL)

    async def many(c: UbiOpsClient) -> list[Any]:
        return await asyncio.gather(*(c.get_organization(f"o{i}") for i in range(20)))

    answers, _ = run(httpx.MockTransport(handle), many, max_concurrency=3)
    assert len(answers) == 20
    assert most == 3


# ---- validation -------------------------------------------------------------------------------


def test_usage_accepts_either_spelling_of_the_deleted_projects_key(clock: FakeClock) -> None:
    prose = {k: v for k, v in USAGE.items() if k != "data_deleted_projects"}
    prose["data_projects_deleted"] = USAGE["data_deleted_projects"]
    for body in (USAGE, prose):
        handler, _ = scripted(ok(body))
        usage, _ = run(mock(handler), lambda c: c.credit_usage("acme", "day"))
        assert [p["value"] for p in usage.data_deleted_projects] == [0.5]
        assert usage.data_projects[0]["project_id"] == "p1"


def test_a_missing_deleted_projects_key_is_named_with_its_organization(clock: FakeClock) -> None:
    body = {k: v for k, v in USAGE.items() if k != "data_deleted_projects"}
    body["data_removed_projects"] = []
    handler, seen = scripted(ok(body))
    with pytest.raises(ApiResponseError) as caught:
        run(mock(handler), lambda c: c.credit_usage("ember-free", "day"))
    message = str(caught.value)
    assert "'data_deleted_projects (or data_projects_deleted)'" in message
    assert "organization 'ember-free'" in message
    assert "GET /organizations/ember-free/usage" in message
    assert len(seen) == 1, "a response that does not validate is not retried"


@pytest.mark.parametrize(
    ("call", "body", "field"),
    [
        (lambda c: c.get_organization("acme"), {"id": "x", "name": "acme"}, "subscription"),
        (lambda c: c.list_organizations(), [{"id": "x", "name": ""}], "0.name"),
        (lambda c: c.resource_usage("acme"), {"projects": 1}, "users"),
        (lambda c: c.list_users("acme"), [{"id": "u"}], "0.email"),
        (lambda c: c.credit_usage("acme"), {**USAGE, "data_organization": 1}, "data_organization"),
    ],
    ids=["detail", "list", "resources", "users", "usage"],
)
def test_a_response_missing_a_field_names_it(
    clock: FakeClock, call: Callable[[UbiOpsClient], Awaitable[Any]], body: Any, field: str
) -> None:
    handler, _ = scripted(ok(body))
    with pytest.raises(ApiResponseError, match=f"response field '{field}'"):
        run(mock(handler), call)


def test_unknown_fields_are_ignored(clock: FakeClock) -> None:
    handler, _ = scripted(ok({**DETAIL, "brand_new_field": {"x": 1}}))
    detail, _ = run(mock(handler), lambda c: c.get_organization("acme"))
    assert detail.name == "acme"


# ---- against the emulator's ASGI app, in process -------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> EmulatorServer:
    """The emulator's app and state, never bound to a socket (its clock fixed)."""
    config = EmulatorConfig(now=datetime(2026, 11, 28, 12, tzinfo=UTC), rate_limit_per_minute=0)
    return EmulatorServer(config)


def asgi(emulator: EmulatorServer) -> httpx.ASGITransport:
    return httpx.ASGITransport(app=emulator.app)


def test_every_endpoint_validates_against_the_emulator(emulator: EmulatorServer) -> None:
    async def everything(c: UbiOpsClient) -> dict[str, Any]:
        orgs = await c.list_organizations()
        name = orgs[0].name
        return {
            "orgs": orgs,
            "detail": await c.get_organization(name),
            "users": await c.list_users(name),
            "resources": await c.resource_usage(name),
            "usage": await c.credit_usage(name, "day", date(2026, 11, 1), date(2026, 11, 28)),
        }

    got, client = run(asgi(emulator), everything, host="http://emulator/v2.1", token=emulator.token)
    assert len(got["orgs"]) == 6
    assert got["detail"].name == got["orgs"][0].name
    assert got["users"] and got["resources"].projects >= 1
    truth = emulator.totals(got["detail"].name, date(2026, 11, 1), date(2026, 11, 28))
    assert len(got["usage"].data_organization) == 27
    assert sum(p["value"] for p in got["usage"].data_organization) == pytest.approx(
        truth["organization_total"], abs=1e-3
    )
    assert client.stats.requests == 5 and client.stats.retries == 0


def test_emulator_faults_in_process_are_retried_and_the_prose_key_accepted(
    emulator: EmulatorServer, clock: FakeClock
) -> None:
    name = "acme-analytics"
    emulator.set_faults(errors_5xx=2, burst_429=2, malformed_json=2)
    emulator.set_faults(deleted_projects_key="data_projects_deleted")
    try:
        usage, client = run(
            asgi(emulator),
            lambda c: c.credit_usage(name, "day", date(2026, 11, 1), date(2026, 11, 28)),
            host="http://emulator/v2.1",
            token=emulator.token,
        )
    finally:
        emulator.reset_faults()
    truth = emulator.totals(name, date(2026, 11, 1), date(2026, 11, 28))
    assert sum(p["value"] for p in usage.data_deleted_projects) == pytest.approx(
        truth["deleted_projects"], abs=1e-3
    )
    assert client.stats.retries == 6 and client.stats.rate_limited == 2
    assert json.dumps(client.stats.as_dict()) == json.dumps(
        {"requests": 7, "retries": 6, "rate_limited_429": 2, "failed": 0}
    )
