"""The client's HTTP/1.1 transport on loopback: against the emulator (same answers as httpx's own
transport, connections reused) and against a scripted raw server (chunked bodies, bodies until
close, a keep-alive connection the server dropped while idle, a server that answers nothing)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from emulator.server import EmulatorConfig, EmulatorServer
from ubiops_api.client import ApiError, UbiOpsClient
from ubiops_api.transport import KeepAliveTransport

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
    with EmulatorServer(EmulatorConfig(organizations=12, now="2026-11-29T12:00:00Z")) as srv:

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


def test_chunked_body_and_keep_alive_reuse() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"transfer-encoding: chunked\r\n\r\n"
                b"4\r\n[1, \r\n3;x=y\r\n2, \r\n2\r\n3]\r\n0\r\n\r\n"
            )
            await writer.drain()

    async def go() -> tuple[list[object], int]:
        async with raw_server(handle) as (url, accepted):
            async with httpx.AsyncClient(transport=KeepAliveTransport()) as client:
                bodies = [(await client.get(url + f"/n{i}")).json() for i in range(3)]
            return bodies, len(accepted)

    bodies, connections = asyncio.run(go())
    assert bodies == [[1, 2, 3]] * 3
    assert connections == 1


def test_body_until_close_and_connection_close_are_not_reused() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n{"ok": true}')
        await writer.drain()

    async def go() -> tuple[list[object], int]:
        async with raw_server(handle) as (url, accepted):
            async with httpx.AsyncClient(transport=KeepAliveTransport()) as client:
                bodies = [(await client.get(url)).json() for _ in range(2)]
            return bodies, len(accepted)

    bodies, connections = asyncio.run(go())
    assert bodies == [{"ok": True}] * 2
    assert connections == 2


def test_an_idle_connection_the_server_closed_is_not_reused() -> None:
    closed = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # one answer, then close while the client keeps it idle
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n[]")
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    async def go() -> tuple[int, int]:
        transport = KeepAliveTransport()
        async with (
            raw_server(handle) as (url, accepted),
            UbiOpsClient(url, "key", max_retries=0, transport=transport) as api,
        ):
            await api.list_organizations()
            await closed.wait()
            deadline = asyncio.get_running_loop().time() + 5
            while transport.idle and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.001)  # the client's side learns of the close
            await api.list_organizations()  # on a new connection: no retry allowed
            return api.stats.requests, len(accepted)

    requests, connections = asyncio.run(go())
    assert (requests, connections) == (2, 2)


def test_a_server_that_closes_without_answering_is_a_retried_transport_failure() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)  # and close

    async def go() -> None:
        async with (
            raw_server(handle) as (url, _),
            UbiOpsClient(url, "key", max_retries=1, backoff_base=0.0) as api,
        ):
            await api.list_organizations()

    with pytest.raises(ApiError, match=r"after 2 attempts: connection failed \(RemoteProtocol"):
        asyncio.run(go())


def test_a_slow_server_is_a_read_timeout() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # no answer: until the client gives up and closes

    async def go() -> None:
        async with (
            raw_server(handle) as (url, _),
            httpx.AsyncClient(transport=KeepAliveTransport(), timeout=0.2) as client,
        ):
            await client.get(url)

    with pytest.raises(httpx.ReadTimeout):
        asyncio.run(go())
