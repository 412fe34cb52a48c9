"""The one HTTP client every asset uses to talk to the UbiOps Organizations API.

- aiohttp's connection pool on the network: at most `max_concurrency` requests in flight on as
  many keep-alive connections, proxies from the environment (`HTTP_PROXY`, `HTTPS_PROXY`,
  `NO_PROXY`); no general-purpose layer on top (httpx's request and response objects, URL merging
  and cookie jar cost as much CPU as aiohttp itself: half a backfill's client time). Tests hand
  in an httpx transport instead (`httpx.MockTransport`, the emulator's ASGI app): the same
  client then runs over httpx;
- paced under the server's rate limit (`pacing.RatePacer`), honouring `Retry-After` and
  `x-ratelimit-reset` on 429;
- transient failures (5xx, timeouts, dropped connections, unreadable bodies) retried with jittered
  exponential backoff up to `max_retries`; other 4xx fail at once (a GET on a kept-alive
  connection the server had closed is re-sent once by aiohttp's pool first, as RFC 9112 allows);
- every response validated (`api_models`); errors name the endpoint and the organization;
- the token is never logged, put in an exception or shown by `repr`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, TypeVar
from urllib.parse import quote, urlencode

from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from common.errors import ApiError, ApiResponseError
from ubiops_api.models import (
    CreditUsage,
    OrganizationDetail,
    OrganizationItem,
    OrganizationUser,
    ResourceUsage,
)
from ubiops_api.pacing import RatePacer

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class RequestStats:
    """What the client did, for progress reports and run summaries."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    failures: int = 0
    by_status: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "retries": self.retries,
            "rate_limited_429": self.rate_limited,
            "failed": self.failures,
        }


def authorization_header(token: str) -> str:
    """`Token xxx` from a bare key; a value that already has a scheme is kept (as the SDK does)."""
    token = token.strip()
    if not token:
        raise ApiError("UBIOPS_API_TOKEN is empty; expected `Token <key>` or a bare key")
    return token if " " in token else f"Token {token}"


def _error_text(content: bytes) -> str:
    try:
        body = json.loads(content)
    except ValueError:
        return content[:200].decode("utf-8", "replace").replace("\n", " ")
    if isinstance(body, dict):
        for key in ("error", "error_message", "detail"):
            if key in body:
                return str(body[key])[:300]
    return str(body)[:200]


def _format_date(value: date | datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    return value.isoformat()


@functools.cache
def _validator(shape: Any) -> TypeAdapter[Any]:
    """A response shape's validator, built once (building one costs more than validating)."""
    return TypeAdapter(shape)


def _shape_error(what: str, first: ErrorDetails) -> ApiResponseError:
    where = ".".join(str(p) for p in first["loc"]) or "response"
    if first["type"] == "missing" and where.endswith("data_deleted_projects"):
        where += " (or data_projects_deleted)"
    return ApiResponseError(f"{what}: response field {where!r}: {first['msg'].lower()}")


class Answer(NamedTuple):
    """A response as the client needs it: status, headers (case-insensitive), whole body."""

    status: int
    headers: Mapping[str, str]
    content: bytes


class TransportFailure(Exception):
    """A request that ended without a response; `problem` says how, in words ("timed out", or
    "connection failed (<error>)")."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class Session(Protocol):
    """Sends GET requests to the API's host: aiohttp on the network, httpx under tests."""

    async def get(self, path: str, params: dict[str, str] | None) -> Answer: ...

    async def close(self) -> None: ...


class AiohttpSession:
    """The network: aiohttp's keep-alive pool, the URL built once as text (quoted by the caller,
    so aiohttp does not parse and re-quote it), no cookie jar (the API sets none). The proxy the
    environment names for the host (`HTTP_PROXY`, `HTTPS_PROXY`, `NO_PROXY`, as httpx and
    requests read them) is looked up once: aiohttp's `trust_env` looks it up in a thread for
    every request (~40% of a request's CPU)."""

    def __init__(
        self, host: str, headers: dict[str, str], timeout: float, max_connections: int
    ) -> None:
        # Imported by the session that uses them (as httpx by `HttpxSession`): a process that
        # only loads the code location (`dg dev`, `dg check defs`) never pays for them.
        import aiohttp
        from aiohttp.helpers import get_env_proxy_for_url
        from yarl import URL

        self._url_type = URL
        self._client_error = aiohttp.ClientError
        self._host = host
        try:
            self._proxy, self._proxy_auth = get_env_proxy_for_url(URL(host))
        except LookupError:  # none named, or NO_PROXY covers the host
            self._proxy, self._proxy_auth = None, None
        self._http = aiohttp.ClientSession(
            headers=headers,
            timeout=aiohttp.ClientTimeout(
                total=None, connect=timeout, sock_connect=min(10.0, timeout), sock_read=timeout
            ),
            connector=aiohttp.TCPConnector(limit=max_connections),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def get(self, path: str, params: dict[str, str] | None) -> Answer:
        text = self._host + path + ("?" + urlencode(params) if params else "")
        url = self._url_type(text, encoded=True)
        try:
            async with self._http.get(
                url, allow_redirects=False, proxy=self._proxy, proxy_auth=self._proxy_auth
            ) as response:
                return Answer(response.status, response.headers, await response.read())
        except TimeoutError:  # aiohttp's connect and read timeouts are TimeoutErrors too
            raise TransportFailure("timed out") from None
        except self._client_error as exc:
            raise TransportFailure(f"connection failed ({type(exc).__name__})") from None

    async def close(self) -> None:
        await self._http.close()


class HttpxSession:
    """An httpx transport (`httpx.MockTransport`, the emulator's ASGI app): the tests' way in."""

    def __init__(
        self,
        host: str,
        headers: dict[str, str],
        timeout: float,
        max_connections: int,
        transport: httpx.AsyncBaseTransport,
    ) -> None:
        import httpx

        self._timeout_error = httpx.TimeoutException
        self._transport_error = httpx.TransportError
        self._http = httpx.AsyncClient(
            base_url=host,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=min(10.0, timeout)),
            limits=httpx.Limits(
                max_connections=max_connections, max_keepalive_connections=max_connections
            ),
            transport=transport,
        )

    async def get(self, path: str, params: dict[str, str] | None) -> Answer:
        try:
            response = await self._http.get(path, params=params)
        except self._timeout_error:
            raise TransportFailure("timed out") from None
        except self._transport_error as exc:
            raise TransportFailure(f"connection failed ({type(exc).__name__})") from None
        return Answer(response.status_code, response.headers, response.content)

    async def close(self) -> None:
        await self._http.aclose()


class UbiOpsClient:
    """Async client for the Organizations endpoints. Use as `async with UbiOpsClient(...) as c`."""

    def __init__(
        self,
        host: str,
        token: str,
        *,
        max_concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 8,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        pacing_utilization: float = 0.98,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.host = host.rstrip("/")
        self._authorization = authorization_header(token)
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stats = RequestStats()
        self._pacing_utilization = pacing_utilization
        self._max_concurrency = max_concurrency
        self._timeout = timeout
        self._transport = transport  # None: the network; tests pass httpx.MockTransport
        self._pacer: RatePacer | None = None
        self._slots: asyncio.Semaphore | None = None
        self._http: Session | None = None

    def __repr__(self) -> str:
        return f"UbiOpsClient(host={self.host!r})"

    @property
    def max_concurrency(self) -> int:
        """Requests in flight at most (over as many pooled connections)."""
        return self._max_concurrency

    async def __aenter__(self) -> UbiOpsClient:
        self._pacer = RatePacer(self._pacing_utilization)
        self._slots = asyncio.Semaphore(self._max_concurrency)
        headers = {
            "Authorization": self._authorization,
            "Accept": "application/json",
            "User-Agent": "ubiops-usage/0.1",
        }
        if self._transport is None:
            self._http = AiohttpSession(self.host, headers, self._timeout, self._max_concurrency)
        else:
            self._http = HttpxSession(
                self.host, headers, self._timeout, self._max_concurrency, self._transport
            )
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        failure = exc_info[1] if len(exc_info) > 1 else None
        if isinstance(failure, ApiError) and failure.request_stats is None:
            failure.request_stats = self.stats.as_dict()  # a failed step's summary counts them
        if self._http is not None:
            await self._http.close()
        self._http = None

    # -- the endpoints ---------------------------------------------------------------------

    async def list_organizations(self) -> list[OrganizationItem]:
        return await self._get("/organizations", list[OrganizationItem], None)

    async def get_organization(self, name: str) -> OrganizationDetail:
        return await self._get(f"/organizations/{quote(name, safe='')}", OrganizationDetail, name)

    async def list_users(self, organization: str) -> list[OrganizationUser]:
        path = f"/organizations/{quote(organization, safe='')}/users"
        return await self._get(path, list[OrganizationUser], organization)

    async def resource_usage(self, organization: str) -> ResourceUsage:
        path = f"/organizations/{quote(organization, safe='')}/resources"
        return await self._get(path, ResourceUsage, organization)

    async def credit_usage(
        self,
        organization: str,
        interval: str = "month",
        start_date: date | datetime | str | None = None,
        end_date: date | datetime | str | None = None,
    ) -> CreditUsage:
        """Credits per bucket; without dates the current subscription period (end exclusive)."""
        params = {"interval": interval}
        if start_date is not None:
            params["start_date"] = _format_date(start_date) or ""
        if end_date is not None:
            params["end_date"] = _format_date(end_date) or ""
        path = f"/organizations/{quote(organization, safe='')}/usage"
        return await self._get(path, CreditUsage, organization, params)

    # -- the machinery ---------------------------------------------------------------------

    async def _get(
        self,
        path: str,
        shape: type[T] | Any,
        organization: str | None,
        params: dict[str, str] | None = None,
    ) -> T:
        what = f"GET {path}" + (f" (organization {organization!r})" if organization else "")
        return await self._request(path, params, what, _validator(shape))  # type: ignore[no-any-return]

    def _backoff(self, attempt: int) -> float:
        return random.uniform(0, min(self.backoff_cap, self.backoff_base * 2**attempt))

    async def _request(
        self,
        path: str,
        params: dict[str, str] | None,
        what: str,
        validator: TypeAdapter[Any],
    ) -> Any:
        """One GET, retried while transient; the body parsed and validated in one pass."""
        assert self._http is not None and self._pacer is not None and self._slots is not None, (
            "use UbiOpsClient inside `async with`"
        )
        attempt = 0
        while True:
            await self._pacer.acquire()
            problem: str
            wait: float | None = None
            async with self._slots:
                self.stats.requests += 1
                try:
                    response = await self._http.get(path, params)
                except TransportFailure as failure:
                    self._pacer.observe_failure()
                    problem = failure.problem
                else:
                    status = response.status
                    self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
                    retry_wait = self._pacer.observe(response.headers, status)
                    if status == 429:
                        self.stats.rate_limited += 1
                        problem, wait = "rate limited (429)", retry_wait
                    elif status >= 500:
                        problem = f"server error {status}"
                    elif status >= 400:
                        self.stats.failures += 1
                        raise ApiError(
                            f"{what} failed with {status}: {_error_text(response.content)}", status
                        )
                    else:
                        try:
                            return validator.validate_json(response.content)
                        except ValidationError as exc:
                            first = exc.errors()[0]
                            if first["type"] != "json_invalid":
                                raise _shape_error(what, first) from None
                            problem = "unreadable JSON body"
            if attempt >= self.max_retries:
                self.stats.failures += 1
                raise ApiError(f"{what} failed after {attempt + 1} attempts: {problem}")
            delay = wait if wait is not None else self._backoff(attempt)
            log.warning("%s: %s; retry %d in %.1fs", what, problem, attempt + 1, delay)
            self.stats.retries += 1
            attempt += 1
            await asyncio.sleep(delay)
