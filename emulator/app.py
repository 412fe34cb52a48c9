"""HTTP layer: the Starlette routes of the Organizations API, ``/status`` and ``/_emulator/*``.

Owns request parsing, authentication, response shapes and the outer ASGI wrapper that applies
rate limiting, rate-limit headers and injected faults to API requests.

* API routes are served under both ``/v2.1`` and ``/v2`` (no trailing slashes).
* ``Authorization: Token <T>`` (or ``Bearer <T>``) is required on every API route but
  ``/status``; missing or unknown tokens answer 401 ``{"error": ...}``.
* ``/status`` (root and under both prefixes) needs no token; it and ``/_emulator/*`` are never
  rate limited and never faulted.
* ``/_emulator/*`` (fault injection, state changes, ground truth) is a test tool, not part of the
  API: it exists only when the app is created with an ``admin_token`` (``usage-etl emulator
  --admin-endpoints``; tests turn it on), and then every admin request needs
  ``Authorization: Token <admin_token>`` (else 401). Without it the paths answer 404: the
  emulator that ``usage-etl run`` embeds never has them.
* Rate-limit headers are sent on every API response while limiting is on, omitted when off.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulator import periods
from emulator.demo import scenario_document
from emulator.faults import Faults
from emulator.model import Membership, Organization, User
from emulator.ratelimit import Decision, RateLimiter
from emulator.state import ApiError, State

API_PREFIXES: tuple[str, ...] = ("/v2.1", "/v2")


# ---------------------------------------------------------------------- shapes
def org_list_item(org: Organization) -> dict[str, Any]:
    """``OrganizationList`` shape (also the create response)."""
    return {
        "id": org.id,
        "name": org.name,
        "creation_date": periods.format_datetime(org.creation_date),
        "status": org.status,
        "two_factor_authentication_forced": org.two_factor_authentication_forced,
    }


def org_detail(org: Organization) -> dict[str, Any]:
    """``OrganizationDetail`` shape."""
    return {
        **org_list_item(org),
        "subscription": org.subscription,
        "overage_usage": org.overage_usage,
    }


def user_item(user: User, member: Membership) -> dict[str, Any]:
    """``OrganizationUserList`` shape."""
    return {
        "id": user.id,
        "email": user.email,
        "name": user.name,
        "surname": user.surname,
        "status": user.status,
        "admin": member.admin,
        "join_date": member.join_date.isoformat(),
    }


def error(status: int, message: str) -> JSONResponse:
    """``{"error": message}`` with ``status``."""
    return JSONResponse({"error": message}, status_code=status)


# ------------------------------------------------------------------- requests
def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() in ("token", "bearer") and value.strip():
        return value.strip()
    return None


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "Invalid JSON in request body.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return body


async def status_endpoint(request: Request) -> Response:
    """``GET /status``: ``{"status": "ok"}``, no token needed."""
    return JSONResponse({"status": "ok"})


def build_routes(
    state: State, faults: Faults, admin_token: str | None = None
) -> tuple[list[BaseRoute], list[BaseRoute]]:
    """(API routes, admin routes) bound to ``state`` and ``faults``; admin routes need
    ``admin_token`` (none without it)."""

    def caller(request: Request) -> User:
        token = _token(request)
        if token is None:
            raise ApiError(401, "Authentication credentials were not provided.")
        user = state.user_for_token(token)
        if user is None:
            raise ApiError(401, "Invalid token.")
        return user

    async def organizations(request: Request) -> Response:
        user = caller(request)
        if request.method == "POST":
            body = await _json_body(request)
            return JSONResponse(
                org_list_item(state.create_organization(user, body)), status_code=201
            )
        return JSONResponse([org_list_item(o) for o in state.list_organizations(user)])

    async def organization(request: Request) -> Response:
        user = caller(request)
        name = request.path_params["name"]
        if request.method == "PATCH":
            body = await _json_body(request)
            return JSONResponse(org_detail(state.update_organization(user, name, body)))
        return JSONResponse(org_detail(state.visible_org(user, name)))

    async def resources(request: Request) -> Response:
        user = caller(request)
        return JSONResponse(state.resource_usage(user, request.path_params["name"]))

    async def usage(request: Request) -> Response:
        user = caller(request)
        q = request.query_params
        body = state.usage(
            user,
            request.path_params["name"],
            q.get("start_date"),
            q.get("end_date"),
            q.get("interval"),
            deleted_key=faults.deleted_key,
        )
        return JSONResponse(body)

    async def users(request: Request) -> Response:
        user = caller(request)
        name = request.path_params["name"]
        if request.method == "POST":
            body = await _json_body(request)
            return JSONResponse(user_item(*state.create_user(user, name, body)), status_code=201)
        return JSONResponse([user_item(u, m) for u, m in state.list_users(user, name)])

    async def org_user(request: Request) -> Response:
        user = caller(request)
        name = request.path_params["name"]
        user_id = request.path_params["user_id"]
        if request.method == "PATCH":
            body = await _json_body(request)
            return JSONResponse(user_item(*state.update_user(user, name, user_id, body)))
        if request.method == "DELETE":
            state.delete_user(user, name, user_id)
            return Response(status_code=204)
        return JSONResponse(user_item(*state.get_user(user, name, user_id)))

    api: list[BaseRoute] = [
        Route("/status", status_endpoint, methods=["GET"]),
        Route("/organizations", organizations, methods=["GET", "POST"]),
        Route("/organizations/{name}", organization, methods=["GET", "PATCH"]),
        Route("/organizations/{name}/resources", resources, methods=["GET"]),
        Route("/organizations/{name}/usage", usage, methods=["GET"]),
        Route("/organizations/{name}/users", users, methods=["GET", "POST"]),
        Route(
            "/organizations/{name}/users/{user_id}", org_user, methods=["GET", "PATCH", "DELETE"]
        ),
    ]

    def admin(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[..., Any]:
        async def guarded(request: Request) -> Response:
            if admin_token is None or _token(request) != admin_token:
                raise ApiError(401, "Admin endpoints need the emulator's token.")
            return await endpoint(request)

        return guarded

    async def admin_faults(request: Request) -> Response:
        if request.method == "POST":
            try:
                faults.set(await _json_body(request))
            except ValueError as exc:
                raise ApiError(400, str(exc)) from None
        elif request.method == "DELETE":
            faults.reset()
        return JSONResponse(faults.snapshot())

    async def admin_rename(request: Request) -> Response:
        body = await _json_body(request)
        org = state.rename_organization(request.path_params["name"], body.get("new_name"))
        return JSONResponse(org_detail(org))

    async def admin_delete_project(request: Request) -> Response:
        project = state.delete_project(request.path_params["name"], request.path_params["pid"])
        return JSONResponse({"project_id": project.id, "project_name": project.name})

    async def admin_usage_today(request: Request) -> Response:
        body = await _json_body(request)
        credits = body.get("credits")
        if isinstance(credits, bool) or not isinstance(credits, int | float) or credits < 0:
            raise ApiError(400, "credits must be a non-negative number.")
        project = state.add_usage_today(
            request.path_params["name"], float(credits), body.get("project_id")
        )
        return JSONResponse({"project_id": project.id, "credits_added": float(credits)})

    async def admin_totals(request: Request) -> Response:
        q = request.query_params
        name = q.get("organization")
        if not name:
            raise ApiError(400, "organization is required.")
        try:
            start = date.fromisoformat(q.get("start", ""))
            end = date.fromisoformat(q.get("end", ""))
        except ValueError:
            raise ApiError(400, "start and end must be YYYY-MM-DD.") from None
        return JSONResponse(state.totals(name, start, end))

    async def admin_scenario(request: Request) -> Response:
        return JSONResponse(scenario_document(state))

    admin_routes: list[BaseRoute] = []
    if admin_token is not None:
        admin_routes = [
            Route("/faults", admin(admin_faults), methods=["GET", "POST", "DELETE"]),
            Route("/organizations/{name}/rename", admin(admin_rename), methods=["POST"]),
            Route(
                "/organizations/{name}/projects/{pid}/delete",
                admin(admin_delete_project),
                methods=["POST"],
            ),
            Route("/organizations/{name}/usage/today", admin(admin_usage_today), methods=["POST"]),
            Route("/totals", admin(admin_totals), methods=["GET"]),
            Route("/scenario", admin(admin_scenario), methods=["GET"]),
        ]
    return api, admin_routes


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error(exc.status, exc.message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = "Not found." if exc.status_code == 404 else str(exc.detail)
    return error(exc.status_code, message)


async def _server_error(request: Request, exc: Exception) -> Response:
    return error(500, f"Internal server error: {type(exc).__name__}")


class EmulatorApp:
    """Outer ASGI app: rate limits, headers and faults around the Starlette routes."""

    def __init__(
        self,
        state: State,
        limiter: RateLimiter,
        faults: Faults,
        admin_token: str | None = None,
    ) -> None:
        self.state = state
        self.limiter = limiter
        self.faults = faults
        api, admin = build_routes(state, faults, admin_token)
        routes: list[BaseRoute] = [Mount(prefix, routes=api) for prefix in API_PREFIXES]
        routes.append(Route("/status", status_endpoint, methods=["GET"]))
        if admin:
            routes.append(Mount("/_emulator", routes=admin))
        self.inner: ASGIApp = Starlette(
            routes=routes,
            exception_handlers={
                ApiError: _api_error,
                HTTPException: _http_error,
                Exception: _server_error,
            },
        )

    @staticmethod
    def is_api_path(path: str) -> bool:
        """Rate limited and faultable: everything under an API prefix except ``/status``."""
        for prefix in API_PREFIXES:
            if path.startswith(prefix + "/"):
                return path != prefix + "/status"
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.is_api_path(scope["path"]):
            await self.inner(scope, receive, send)
            return
        fault = self.faults.take()
        if fault.delay_s:
            await asyncio.sleep(fault.delay_s)
        client = (scope.get("client") or ("unknown", 0))[0]
        decision = self.limiter.hit(client) if self.limiter.enabled else None
        if fault.kind == "drop":
            self._drop(send)
            return
        headers = decision.headers() if decision is not None else []
        if fault.kind == "error":
            await _send_json(send, fault.status, {"error": "Injected server error."}, headers)
            return
        if fault.kind == "429":
            forced = Decision(False, self.limiter.limit, 0, 1)
            await _send_json(
                send,
                429,
                {"error": "Rate limit exceeded (injected)."},
                [*(forced.headers() if self.limiter.enabled else [(b"retry-after", b"1")])],
            )
            return
        if decision is not None and not decision.allowed:
            message = f"Rate limit exceeded: {self.limiter.limit} requests per minute."
            await _send_json(send, 429, {"error": message}, headers)
            return
        if fault.kind == "malformed":
            await self._malformed(scope, receive, send, headers)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and headers:
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.inner(scope, receive, send_with_headers)

    @staticmethod
    def _drop(send: Send) -> None:
        """Close the connection without any response (clients see a protocol error)."""
        cycle = getattr(send, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if transport is None:
            raise ConnectionAbortedError("injected dropped connection")
        transport.abort()
        if hasattr(cycle, "disconnected"):
            cycle.disconnected = True

    async def _malformed(
        self, scope: Scope, receive: Receive, send: Send, headers: list[tuple[bytes, bytes]]
    ) -> None:
        """Run the request, then send its body cut in half (invalid JSON) with status 200."""
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.inner(scope, receive, capture)
        body = b"".join(chunks) or b'{"error": "empty"}'
        truncated = body[: max(1, len(body) // 2)]
        if truncated.rstrip().endswith((b"}", b"]")):
            truncated = truncated.rstrip()[:-1]
        await _send_raw(send, 200, truncated, headers)


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]]
) -> None:
    await _send_raw(send, status, json.dumps(body).encode(), headers)


async def _send_raw(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(
    state: State,
    rate_limit_per_minute: int = 300,
    faults: Faults | None = None,
    admin_token: str | None = None,
) -> EmulatorApp:
    """The ASGI app for ``state``; ``/_emulator/*`` only with an ``admin_token`` (required)."""
    return EmulatorApp(state, RateLimiter(rate_limit_per_minute), faults or Faults(), admin_token)
