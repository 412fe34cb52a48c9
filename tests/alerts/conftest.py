"""Fixtures for the alert tests: synthetic usage frames, a real loopback webhook receiver that
verifies Standard Webhooks signatures, and a real aiosmtpd SMTP server."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pandas as pd
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from standardwebhooks import Webhook, WebhookVerificationError

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"super-secret-signing-key-0123456").decode()
SMTP_USER = "alerts"
SMTP_PASSWORD = "Sm7p-Pa55w0rd-do-not-leak"


def wait_for_port(port: int, up: bool = True, deadline: float = 5.0) -> None:
    """Poll until the loopback port accepts (or refuses) connections."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                if up:
                    return
        except OSError:
            if not up:
                return
        time.sleep(0.01)
    raise TimeoutError(f"port {port} not {'up' if up else 'down'} after {deadline}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---- synthetic data ---------------------------------------------------------------------


def usage_frame(
    org_id: str,
    start: str,
    values: dict[str, list[float]],
    *,
    org_name: str | None = None,
    deleted: list[float] | None = None,
) -> pd.DataFrame:
    """credit_usage rows (interval 'day') for projects + deleted + organization totals."""
    days = pd.date_range(start, periods=len(next(iter(values.values()))), freq="D", unit="us")
    rows = []
    total = np.zeros(len(days))
    series = [("project", p, v) for p, v in values.items()]
    if deleted is not None:
        series.append(("deleted_projects", None, deleted))
    for scope, pid, vals in series:
        for d, v in zip(days, vals, strict=True):
            rows.append(
                {
                    "organization_id": org_id,
                    "organization_name": org_name or org_id,
                    "interval": "day",
                    "scope": scope,
                    "project_id": pid,
                    "project_name": pid.upper() if pid else None,
                    "start_date": d,
                    "end_date": d + pd.Timedelta(days=1),
                    "credits": float(v),
                    "loaded_at": pd.Timestamp("2030-01-01"),
                }
            )
        total += np.asarray(vals, dtype=float)
    for d, v in zip(days, total, strict=True):
        rows.append(
            {
                "organization_id": org_id,
                "organization_name": org_name or org_id,
                "interval": "day",
                "scope": "organization",
                "project_id": None,
                "project_name": None,
                "start_date": d,
                "end_date": d + pd.Timedelta(days=1),
                "credits": float(v),
                "loaded_at": pd.Timestamp("2030-01-01"),
            }
        )
    return pd.DataFrame(rows)


def organizations_frame(*orgs: tuple[str, str, str, str]) -> pd.DataFrame:
    """(id, subscription, period_start, period_end) -> organizations table."""
    return pd.DataFrame(
        [
            {
                "organization_id": oid,
                "organization_name": oid,
                "status": "active",
                "subscription": sub,
                "creation_date": pd.Timestamp(ps),
                "period_start": pd.Timestamp(ps),
                "period_end": pd.Timestamp(pe),
            }
            for oid, sub, ps, pe in orgs
        ]
    )


# ---- webhook receiver -------------------------------------------------------------------


@dataclass
class Receiver:
    secret: str | None
    port: int = 0
    received: list[dict] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    rejected: int = 0
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook?token=url-token-xyz"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    if receiver.secret is not None:
                        payload = Webhook(receiver.secret).verify(body, headers)
                    else:
                        payload = json.loads(body)
                except WebhookVerificationError:
                    receiver.rejected += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                receiver.received.append(payload)
                receiver.headers.append(headers)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        wait_for_port(self.port)
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            assert self.thread is not None
            self.thread.join(5)
            self.server = None
            wait_for_port(self.port, up=False)


@pytest.fixture
def make_receiver() -> Iterator[Callable[[str | None], Receiver]]:
    started: list[Receiver] = []

    def make(secret: str | None = WEBHOOK_SECRET) -> Receiver:
        r = Receiver(secret).start()
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()


# ---- SMTP server ------------------------------------------------------------------------


class MailSink:
    def __init__(self) -> None:
        self.messages: list[dict[str, object]] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.messages.append(
            {
                "from": envelope.mail_from,  # type: ignore[attr-defined]
                "to": list(envelope.rcpt_tos),  # type: ignore[attr-defined]
                "data": envelope.content.decode("utf-8", "replace"),  # type: ignore[attr-defined]
            }
        )
        return "250 OK"


def _authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == SMTP_USER
        and auth_data.password.decode() == SMTP_PASSWORD
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, MailSink]]:
    sink = MailSink()
    controller = Controller(
        sink,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=_authenticator,
        auth_require_tls=False,
    )
    controller.start()
    wait_for_port(controller.port)
    yield controller, sink
    controller.stop()
