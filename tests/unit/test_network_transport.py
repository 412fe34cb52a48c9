"""The client's network path (aiohttp's pool) on loopback: against the
emulator (same answers as httpx's own transport), and against a scripted raw server (chunked
bodies and keep-alive reuse, `Connection: close`, a keep-alive connection the server dropped
while idle, a server that answers nothing, a slow server) and through an HTTP proxy named in the
environment, as a user behind a corporate proxy has it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from emulator.server import EmulatorConfig, EmulatorServer
from ubiops_api.client import ApiError, UbiOpsClient

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def raw_server(handle: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """A loopback server running `handle` per connection; yields its URL and a list that
    counts the connections accepted."""
    accepted: list[int] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            await handle(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", accepted
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def test_answers_equal_httpx_own_transport_and_connections_are_reused() -> None:
    # a rate limit the 28 requests stay far below: its headers still come with every answer and
    # each transport's pacer reads them, at ~10 ms a request instead of the default's ~0.2 s
    config = EmulatorConfig(
        organizations=12, now="2026-11-29T12:00:00Z", rate_limit_per_minute=6000
    )
    with EmulatorServer(config) as srv:

        async def pull(transport: httpx.AsyncBaseTransport | None) -> list[object]:
            async with UbiOpsClient(srv.base_url, srv.token, transport=transport) as api:
                orgs = await api.list_organizations()
                days = [api.credit_usage(o.name, "day", "2026-10-01", "2026-11-01") for o in orgs]
                return [
                    orgs,
                    await api.get_organization(orgs[0].name),
                    *await asyncio.gather(*days),
                ]

        ours = asyncio.run(pull(None))
        theirs = asyncio.run(pull(httpx.AsyncHTTPTransport()))
    assert ours == theirs
    assert len(ours) == 14


EMPTY_LIST_CHUNKED = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
    b"transfer-encoding: chunked\r\n\r\n1\r\n[\r\n1;x=y\r\n]\r\n0\r\n\r\n"
)


def test_chunked_body_and_keep_alive_reuse() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(EMPTY_LIST_CHUNKED)
            await writer.drain()

    async def go() -> tuple[list[object], int]:
        async with raw_server(handle) as (url, accepted):
            async with UbiOpsClient(url, "key", max_retries=0) as api:
                answers = [await api.list_organizations() for _ in range(3)]
            return answers, len(accepted)

    answers, connections = asyncio.run(go())
    assert answers == [[]] * 3
    assert connections == 1


def test_connection_close_is_honoured() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\n[]")
        await writer.drain()

    async def go() -> tuple[list[object], int]:
        async with raw_server(handle) as (url, accepted):
            async with UbiOpsClient(url, "key", max_retries=0) as api:
                answers = [await api.list_organizations() for _ in range(2)]
            return answers, len(accepted)

    answers, connections = asyncio.run(go())
    assert answers == [[]] * 2
    assert connections == 2


def test_an_idle_connection_the_server_closed_does_not_fail_the_next_request() -> None:
    closed = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # one answer, then close while the client keeps it idle
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    async def go() -> tuple[int, int]:
        async with (
            raw_server(handle) as (url, accepted),
            UbiOpsClient(url, "key", max_retries=0) as api,
        ):
            await api.list_organizations()
            await closed.wait()
            await api.list_organizations()  # no retry allowed: a new connection must serve it
            return api.stats.requests, len(accepted)

    requests, connections = asyncio.run(go())
    assert (requests, connections) == (2, 2)


def test_a_server_that_closes_without_answering_is_a_retried_connection_failure() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # and close

    async def go() -> None:
        async with (
            raw_server(handle) as (url, _),
            UbiOpsClient(url, "key", max_retries=1, backoff_base=0.0) as api,
        ):
            await api.list_organizations()

    with pytest.raises(ApiError, match=r"after 2 attempts: connection failed \(ServerDisconnected"):
        asyncio.run(go())


def test_a_slow_server_times_out() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # no answer: until the client gives up and closes

    async def go() -> None:
        async with (
            raw_server(handle) as (url, _),
            UbiOpsClient(url, "key", max_retries=0, timeout=0.2) as api,
        ):
            await api.list_organizations()

    with pytest.raises(ApiError, match="timed out"):
        asyncio.run(go())


def test_requests_go_through_the_proxy_the_environment_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                head = await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            seen.append(head.split(b"\r\n", 1)[0])  # a proxy sees the absolute URL
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]")
            await writer.drain()

    async def go() -> list[object]:
        async with raw_server(proxy) as (proxy_url, _):
            monkeypatch.setenv("HTTP_PROXY", proxy_url)
            monkeypatch.delenv("NO_PROXY", raising=False)
            monkeypatch.delenv("no_proxy", raising=False)
            # the API's host needs no server: the proxy answers for it
            async with UbiOpsClient("http://api.example.invalid/v2.1", "key") as api:
                return await api.list_organizations()

    assert asyncio.run(go()) == []
    assert seen == [b"GET http://api.example.invalid/v2.1/organizations HTTP/1.1"]
