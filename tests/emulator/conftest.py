"""Shared fixtures for the emulator referee tests: servers on loopback and SDK clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import httpx
import pytest
import ubiops

from emulator.demo import OTHER_TOKEN
from emulator.server import EmulatorConfig, EmulatorServer

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def make_api(base_url: str, token: str | None) -> ubiops.CoreApi:
    """An SDK client against ``base_url``; ``token=None`` sends no Authorization header."""
    configuration = ubiops.Configuration()
    configuration.host = base_url
    if token is not None:
        configuration.api_key["Authorization"] = f"Token {token}"
    configuration.auto_retry_rate_limiting = False
    return ubiops.CoreApi(ubiops.ApiClient(configuration))


@pytest.fixture(scope="session")
def shared_server() -> Iterator[EmulatorServer]:
    """A read-mostly server (demo set, fixed clock, no rate limit). Do not mutate it."""
    config = EmulatorConfig(now=NOW, rate_limit_per_minute=0, admin_endpoints=True)
    with EmulatorServer(config) as srv:
        yield srv


@pytest.fixture
def server_factory() -> Iterator[Callable[..., EmulatorServer]]:
    """Start fresh servers (stopped at test end): ``server_factory(rate_limit_per_minute=5)``.

    Their admin endpoints (``/_emulator/*``) are on, behind the token: see ``admin_client``."""
    started: list[EmulatorServer] = []

    def factory(**overrides: object) -> EmulatorServer:
        options: dict[str, object] = {
            "now": NOW,
            "rate_limit_per_minute": 0,
            "admin_endpoints": True,
            **overrides,
        }
        srv = EmulatorServer(EmulatorConfig(**options)).start()  # type: ignore[arg-type]
        started.append(srv)
        return srv

    yield factory
    for srv in started:
        srv.stop()


def admin_client(srv: EmulatorServer) -> httpx.Client:
    """An httpx client for ``srv``'s ``/_emulator/*`` endpoints, sending the token."""
    return httpx.Client(
        base_url=srv.root_url + "/_emulator",
        headers={"Authorization": f"Token {srv.token}"},
        timeout=10,
    )


@pytest.fixture
def fresh_server(server_factory: Callable[..., EmulatorServer]) -> EmulatorServer:
    """A private server a test may mutate."""
    return server_factory()


@pytest.fixture(scope="session")
def api(shared_server: EmulatorServer) -> ubiops.CoreApi:
    """SDK client of the demo user on the shared server."""
    return make_api(shared_server.base_url, shared_server.token)


@pytest.fixture(scope="session")
def other_api(shared_server: EmulatorServer) -> ubiops.CoreApi:
    """SDK client of the second user (non-admin member of acme-analytics)."""
    return make_api(shared_server.base_url, OTHER_TOKEN)


@pytest.fixture
def fresh_api(fresh_server: EmulatorServer) -> ubiops.CoreApi:
    """SDK client of the demo user on a private server."""
    return make_api(fresh_server.base_url, fresh_server.token)


@pytest.fixture
def fresh_other_api(fresh_server: EmulatorServer) -> ubiops.CoreApi:
    """SDK client of the second user on a private server."""
    return make_api(fresh_server.base_url, OTHER_TOKEN)


@pytest.fixture(scope="session")
def api_for() -> Callable[[str, str | None], ubiops.CoreApi]:
    """``api_for(base_url, token)``: an SDK client (token ``None``: no Authorization header)."""
    return make_api
