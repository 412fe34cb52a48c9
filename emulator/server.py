"""Run the emulator with uvicorn in a background thread: the handle tests and the pipeline use.

Owns the server lifecycle: bind a socket (port 0 = any free port), start uvicorn in a daemon
thread, wait for ``GET /status`` to answer (polling with a deadline, no fixed sleeps), and shut
down cleanly on exit. Also exposes the ground-truth and fault controls as Python methods.

    cfg = EmulatorConfig(seed=7, organizations=None, token="demo-token")
    with EmulatorServer(cfg, host="127.0.0.1", port=0) as srv:
        srv.base_url, srv.token, srv.state, srv.totals("acme-analytics", start, end)
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from datetime import date, datetime
from types import TracebackType
from typing import Any

import httpx
import uvicorn

from emulator import periods
from emulator.app import EmulatorApp, create_app
from emulator.demo import DEFAULT_SEED, DEFAULT_TOKEN, build_state, scenario_document
from emulator.faults import FaultConfig, Faults
from emulator.ratelimit import DEFAULT_RATE_LIMIT
from emulator.state import DEFAULT_HISTORY_MONTHS, State


@dataclass
class EmulatorConfig:
    """What to serve. ``organizations=None``: the demo set; ``N``: N member organizations
    (demo ones first). ``now``: fixed clock (datetime or ISO string), ``None`` = real time.
    ``rate_limit_per_minute=0`` turns rate limiting off. ``faults``: initial fault settings.
    ``history_months``: months of daily usage served, ending today (default 15).
    ``admin_endpoints``: serve ``/_emulator/*`` (requiring ``token``); off by default, and never
    on in the emulator ``usage-etl run`` embeds. The Python controls below work either way."""

    seed: int = DEFAULT_SEED
    organizations: int | None = None
    token: str = DEFAULT_TOKEN
    rate_limit_per_minute: int = DEFAULT_RATE_LIMIT
    now: datetime | str | None = None
    faults: FaultConfig | dict[str, Any] | None = None
    admin_endpoints: bool = False
    history_months: int = DEFAULT_HISTORY_MONTHS

    def fixed_now(self) -> datetime | None:
        """``now`` as an aware UTC datetime (or ``None``)."""
        if self.now is None:
            return None
        if isinstance(self.now, str):
            return periods.parse_iso_datetime(self.now)
        return periods.parse_iso_datetime(self.now.isoformat())


class EmulatorServer:
    """A running emulator (context manager, or ``start()``/``stop()``)."""

    def __init__(
        self, config: EmulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.config = config or EmulatorConfig()
        self.host = host
        self.port = port
        self.state: State = build_state(
            seed=self.config.seed,
            organizations=self.config.organizations,
            now=self.config.fixed_now(),
            token=self.config.token,
            history_months=self.config.history_months,
        )
        self.faults = Faults()
        if self.config.faults is not None:
            self.faults.set(self.config.faults)
        self.app: EmulatorApp = create_app(
            self.state,
            self.config.rate_limit_per_minute,
            self.faults,
            admin_token=self.config.token if self.config.admin_endpoints else None,
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    # ----------------------------------------------------------------- lifecycle
    @property
    def token(self) -> str:
        """The demo user's API token."""
        return self.config.token

    @property
    def root_url(self) -> str:
        """``http://host:port``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://host:port/v2.1`` (the SDK's ``configuration.host``)."""
        return self.root_url + "/v2.1"

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        """Bind, serve in a daemon thread, and wait until ``/status`` answers."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            sock.listen(2048)
        except BaseException:
            sock.close()  # an address in use or not ours: no socket left open behind
            raise
        sock.setblocking(False)
        self._socket = sock
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_keep_alive=30,
            backlog=2048,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        with httpx.Client(timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self._thread is not None and not self._thread.is_alive():
                    raise RuntimeError("emulator server thread exited during startup")
                try:
                    if client.get(self.root_url + "/status").status_code == 200:
                        return
                except httpx.HTTPError as exc:
                    last = exc
                time.sleep(0.01)
        self.stop()
        raise TimeoutError(f"emulator not ready after {timeout}s: {last}")

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------- ground truth/faults
    def set_faults(self, config: FaultConfig | dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Merge fault settings, e.g. ``set_faults(errors_5xx=2)``."""
        self.faults.set(config, **kwargs)

    def reset_faults(self) -> None:
        """All faults off (and the deleted-projects key back to normal)."""
        self.faults.reset()

    def fault_state(self) -> dict[str, Any]:
        """Current fault settings."""
        return self.faults.snapshot()

    def reset_rate_limit(self) -> None:
        """Forget rate-limit counters."""
        self.app.limiter.reset()

    def totals(self, org_name: str, start: date, end: date) -> dict[str, Any]:
        """Ground truth credits in ``[start, end)`` (see ``State.totals``)."""
        return self.state.totals(org_name, start, end)

    def rename_organization(self, name: str, new_name: str) -> str:
        """Rename an organization; returns its (unchanged) id."""
        return self.state.rename_organization(name, new_name).id

    def delete_project(self, org_name: str, project_id: str) -> None:
        """Delete a project now (its whole history moves to deleted projects)."""
        self.state.delete_project(org_name, project_id)

    def add_usage_today(self, org_name: str, credits: float, project_id: str | None = None) -> str:
        """Add credits to today's usage; returns the project id charged."""
        return self.state.add_usage_today(org_name, credits, project_id).id

    def add_usage(
        self, org_name: str, day: date, credits: float, project_id: str | None = None
    ) -> str:
        """Add credits to a past day's usage (a late correction); returns the project id."""
        return self.state.add_usage(org_name, day, credits, project_id).id

    def scenario(self) -> dict[str, Any]:
        """The scenario document (same as ``GET /_emulator/scenario``)."""
        return scenario_document(self.state)
