"""The client's HTTP/1.1 transport: keep-alive connections over asyncio streams, under httpx.

`UbiOpsClient` talks through `httpx.AsyncClient` (its public API, timeouts, proxies from the
environment, response decoding and the `httpx.MockTransport` of the unit tests stay); this module
replaces only the layer below it, httpcore's connection pool, h11 state machine and anyio streams,
which cost about as much CPU as everything else a request does (a 12-month backfill of 1,000
organizations is 12,000 small requests on loopback).

What it does, no more: HTTP/1.1 requests on a LIFO pool of idle connections per origin (plain or
TLS with httpx's default certificate checks), bodies by Content-Length, chunked encoding or
until the server closes; a connection is reused unless either side said `Connection: close`,
and never once the server has closed it while idle (as httpcore checks before reuse). A request
is sent once: a failure raises httpx's own exceptions (`ConnectTimeout`, `ReadTimeout`,
`ConnectError`, `ReadError`, `RemoteProtocolError`), so the client's retries and request counts
see exactly what they saw with httpx's default transport.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from contextlib import suppress

import httpx

_MAX_HEAD = 64 * 1024  # bytes of status line and headers accepted


class _ByteStream(httpx.AsyncByteStream):
    """A body already read in full (httpx decodes Content-Encoding over it as usual)."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._body


class _Connection:
    """One open socket and whether it may carry another request."""

    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        with suppress(Exception):
            self.writer.close()


class KeepAliveTransport(httpx.AsyncBaseTransport):
    """HTTP/1.1 with at most `max_idle` idle keep-alive connections kept per origin."""

    def __init__(self, max_idle: int = 8, ssl_context: ssl.SSLContext | None = None) -> None:
        self._max_idle = max_idle
        self._ssl_context = ssl_context
        self._idle: dict[tuple[bytes, bytes, int], list[_Connection]] = {}
        self._closed = False

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the transport is closed")
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol(
                f"unsupported URL scheme {url.scheme!r}", request=request
            )
        port = url.port or (443 if scheme == b"https" else 80)
        origin = (scheme, url.raw_host, port)
        timeouts = request.extensions.get("timeout", {})
        head, body = _serialize(request, await request.aread())
        connection = self._take(origin)
        if connection is None:
            connection = await self._connect(request, origin, timeouts.get("connect"))
        try:
            return await self._exchange(connection, request, origin, head + body, timeouts)
        except BaseException:
            connection.close()
            raise

    @property
    def idle(self) -> int:
        """Idle connections kept open for reuse."""
        return sum(c.usable() for idle in self._idle.values() for c in idle)

    def _take(self, origin: tuple[bytes, bytes, int]) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            if connection.usable():
                return connection
            connection.close()
        return None

    def _give_back(self, origin: tuple[bytes, bytes, int], connection: _Connection) -> None:
        idle = self._idle.setdefault(origin, [])
        if self._closed or len(idle) >= self._max_idle or not connection.usable():
            connection.close()
            return
        idle.append(connection)

    async def _connect(
        self, request: httpx.Request, origin: tuple[bytes, bytes, int], timeout: float | None
    ) -> _Connection:
        scheme, host, port = origin
        tls = self._tls() if scheme == b"https" else None
        name = host.decode("ascii")
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    name.strip("[]"), port, ssl=tls, server_hostname=name if tls else None,
                    limit=_MAX_HEAD,
                )  # fmt: skip
        except TimeoutError:
            raise httpx.ConnectTimeout("timed out connecting", request=request) from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from None
        return _Connection(reader, writer)

    async def _exchange(
        self,
        connection: _Connection,
        request: httpx.Request,
        origin: tuple[bytes, bytes, int],
        payload: bytes,
        timeouts: dict[str, float | None],
    ) -> httpx.Response:
        reader, writer = connection.reader, connection.writer
        try:
            async with asyncio.timeout(timeouts.get("write")):
                writer.write(payload)
                await writer.drain()
        except TimeoutError:
            raise httpx.WriteTimeout("timed out sending the request", request=request) from None
        except OSError as exc:
            raise httpx.WriteError(str(exc) or type(exc).__name__, request=request) from None
        try:
            async with asyncio.timeout(timeouts.get("read")):
                try:
                    raw_head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    raise httpx.RemoteProtocolError(
                        "server disconnected without sending a complete response", request=request
                    ) from None
                status, version, headers = _parse_head(raw_head, request)
                keep_alive = version == b"HTTP/1.1"
                length: int | None = None
                chunked = False
                for name, value in headers:
                    lowered = name.lower()
                    if lowered == b"content-length":
                        length = _content_length(value, request)
                    elif lowered == b"transfer-encoding":
                        chunked = b"chunked" in value.lower()
                    elif lowered == b"connection":
                        keep_alive = b"close" not in value.lower() and (
                            keep_alive or b"keep-alive" in value.lower()
                        )
                if request.method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                    body = b""
                elif chunked:
                    body = await _read_chunked(reader, request)
                elif length is not None:
                    body = await reader.readexactly(length)
                else:
                    body = await reader.read()
                    keep_alive = False
        except TimeoutError:
            raise httpx.ReadTimeout("timed out reading the response", request=request) from None
        except asyncio.IncompleteReadError:
            raise httpx.RemoteProtocolError(
                "server disconnected before the whole body arrived", request=request
            ) from None
        except asyncio.LimitOverrunError:
            raise httpx.RemoteProtocolError(
                f"response headers longer than {_MAX_HEAD} bytes", request=request
            ) from None
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from None
        if keep_alive and request.headers.get("connection", "").lower() != "close":
            self._give_back(origin, connection)
        else:
            connection.close()
        return httpx.Response(
            status,
            headers=headers,
            stream=_ByteStream(body),
            extensions={"http_version": version},
        )

    async def aclose(self) -> None:
        self._closed = True
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()


def _serialize(request: httpx.Request, body: bytes) -> tuple[bytes, bytes]:
    """The request line and headers (Host first, as httpx orders them), and the body."""
    target = request.url.raw_path or b"/"
    lines = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1"]
    lines.extend(name + b": " + value for name, value in request.headers.raw)
    return b"\r\n".join(lines) + b"\r\n\r\n", body


def _parse_head(raw: bytes, request: httpx.Request) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError(f"malformed status line {lines[0][:80]!r}", request=request)
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise httpx.RemoteProtocolError(f"malformed header line {line[:80]!r}", request=request)
        headers.append((name, value.strip()))
    return int(parts[1]), parts[0], headers


def _content_length(value: bytes, request: httpx.Request) -> int:
    if not value.strip().isdigit():
        raise httpx.RemoteProtocolError(f"bad Content-Length {value[:40]!r}", request=request)
    return int(value)


async def _read_chunked(reader: asyncio.StreamReader, request: httpx.Request) -> bytes:
    parts = []
    while True:
        line = await reader.readuntil(b"\r\n")
        size_text = line.split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise httpx.RemoteProtocolError(
                f"bad chunk size {size_text[:40]!r}", request=request
            ) from None
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, ignored
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        if await reader.readexactly(2) != b"\r\n":
            raise httpx.RemoteProtocolError("chunk not followed by CRLF", request=request)
