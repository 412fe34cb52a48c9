"""A real PostgreSQL server on loopback for tests (Debian's `postgresql` package).

It refuses to run as root, so under root (CI) the cluster belongs to the `postgres` system user
and every server command runs through `runuser -u postgres`. When the binaries are missing the
tests that need them fail with a clear message if `CI` is set, and are skipped otherwise.
`postgres_cluster()` starts one on a free port, polls it until it answers, and removes it after.

The cluster is tuned for throwaway tests, never for keeping data: no fsync (`--no-sync`,
`fsync=off`, ...), and passwords checked with `md5` rather than `scram-sha-256` (still password
authentication over loopback). dagster-postgres opens a new connection for every storage call
(its engines use no pool), hundreds a run, and a SCRAM handshake costs about 6 ms of the
client's CPU (4,096 PBKDF2 rounds, and as many in the server) against 1 ms for md5.
docs/operations.md keeps recommending SCRAM for a real instance.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import psycopg2
import psycopg2.extensions
import pytest

DEADLINE_SECONDS = 60.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def missing(what: str) -> NoReturn:
    """Fail under CI (the environment must provide `what`), skip elsewhere."""
    message = f"{what} is not available"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must provide it (apt-get install -y postgresql chromium)")
    pytest.skip(message)


def postgres_bindir() -> Path | None:
    """The newest Debian PostgreSQL server binaries, or None."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    return candidates[-1].parent if candidates else None


@dataclass
class Postgres:
    """A running throwaway PostgreSQL cluster on loopback with password authentication."""

    host: str
    port: int
    user: str
    password: str
    database: str

    def env(self) -> dict[str, str]:
        """The `DAGSTER_PG_*` variables `deploy/dagster.yaml` reads."""
        return {
            "DAGSTER_PG_HOST": self.host,
            "DAGSTER_PG_PORT": str(self.port),
            "DAGSTER_PG_USER": self.user,
            "DAGSTER_PG_PASSWORD": self.password,
            "DAGSTER_PG_DB": self.database,
        }

    def connect(self, database: str | None = None) -> psycopg2.extensions.connection:
        return psycopg2.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            dbname=database or self.database,
            connect_timeout=5,
        )


class _Cluster:
    """initdb / pg_ctl for one data directory, as the `postgres` user when we are root."""

    def __init__(self, bindir: Path, base: Path) -> None:
        self.bindir = bindir
        self.base = base
        self.data = base / "data"
        self.log = base / "server.log"
        self.owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self.owner = pwd.getpwnam("postgres")
            except KeyError:
                missing("the `postgres` system user (PostgreSQL refuses to run as root)")

    def command(self, *args: str) -> list[str]:
        if self.owner is None:
            return list(args)
        return ["runuser", "-u", self.owner.pw_name, "--", *args]

    def chown(self, path: Path) -> None:
        if self.owner is not None:
            os.chown(path, self.owner.pw_uid, self.owner.pw_gid)

    def run(self, *args: str, timeout: float = DEADLINE_SECONDS) -> None:
        done = subprocess.run(
            self.command(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(
                f"{Path(args[0]).name} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
                f"\n{log[-4000:]}"
            )

    def initdb(self, user: str, password: str) -> None:
        self.chown(self.base)
        pwfile = self.base / "pwfile"
        pwfile.write_text(password + "\n")
        self.chown(pwfile)
        self.run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            user,
            f"--pwfile={pwfile}",
            "--auth-host=md5",
            "--auth-local=md5",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        pwfile.unlink()

    def start(self, port: int) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -p {port} -k {self.base} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c password_encryption=md5"
        )
        self.run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            str(int(DEADLINE_SECONDS)),
            "start",
            timeout=DEADLINE_SECONDS + 10,
        )

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")


def wait_until_ready(server: Postgres, deadline_seconds: float = DEADLINE_SECONDS) -> None:
    """Poll with real connections until the server answers a query, or fail at the deadline."""
    deadline = time.monotonic() + deadline_seconds
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            con = server.connect("postgres")
        except psycopg2.OperationalError as exc:
            last = exc
            time.sleep(0.1)
            continue
        try:
            with con.cursor() as cur:
                cur.execute("select 1")
            return
        finally:
            con.close()
    raise TimeoutError(f"PostgreSQL on port {server.port} not ready in {deadline_seconds}s: {last}")


def store_password_as_md5(server: Postgres) -> None:
    """Store the user's password again under `password_encryption=md5`: initdb hashed it with
    SCRAM, and a SCRAM-stored password is checked with SCRAM whatever the `md5` method says."""
    con = server.connect("postgres")
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute(f'ALTER ROLE "{server.user}" PASSWORD %s', [server.password])
            cur.execute(
                "SELECT rolpassword LIKE 'md5%%' FROM pg_authid WHERE rolname = %s", [server.user]
            )
            row = cur.fetchone()
    finally:
        con.close()
    if row != (True,):
        raise RuntimeError(f"the password of {server.user} is not stored as md5")


@contextlib.contextmanager
def postgres_cluster(user: str = "dagster", password: str = "pg-test-secret") -> Iterator[Postgres]:
    """A PostgreSQL cluster on a free loopback port, stopped and deleted afterwards."""
    bindir = postgres_bindir()
    if bindir is None:
        missing("PostgreSQL (Debian package `postgresql`, /usr/lib/postgresql/*/bin/initdb)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        missing("`runuser` (util-linux), needed to run PostgreSQL as a non-root user")
    # Not under pytest's tmp dir: that is private to root (0700), the server runs as `postgres`.
    base = Path(tempfile.mkdtemp(prefix="usage-pg-"))
    cluster = _Cluster(bindir, base)
    server = Postgres("127.0.0.1", 0, user, password, user)
    try:
        cluster.initdb(server.user, server.password)
        for attempt in range(3):  # the free port can be taken between probing and binding
            server.port = free_port()
            try:
                cluster.start(server.port)
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        wait_until_ready(server)
        store_password_as_md5(server)
        yield server
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def fresh_database(server: Postgres, prefix: str = "db") -> Postgres:
    """An empty database of its own on `server`."""
    database = f"{prefix}_{uuid.uuid4().hex[:12]}"
    con = server.connect("postgres")
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{database}"')
    finally:
        con.close()
    return dataclasses.replace(server, database=database)
