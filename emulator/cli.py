"""Command line: ``usage-etl emulator [options]`` serves the emulator until Ctrl-C.

Owns argument parsing only; ``main(argv)`` returns a process exit status. The lead wires
``main``/``build_parser`` into the ``usage-etl`` command. Bad input (a value out of range, a port
that cannot be listened on) is one line naming the flag, exit 2, as for every ``usage-etl``
command.
"""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
from types import FrameType
from typing import NoReturn

from emulator.demo import DEFAULT_SEED, DEFAULT_TOKEN, OTHER_TOKEN
from emulator.faults import DEFAULT_DELETED_KEY, FaultConfig
from emulator.periods import parse_iso_datetime
from emulator.ratelimit import DEFAULT_RATE_LIMIT
from emulator.server import EmulatorConfig, EmulatorServer
from emulator.state import DEFAULT_HISTORY_MONTHS

PROG = "usage-etl emulator"
# the counted faults' flags, by their `FaultConfig` field
FAULT_FLAGS = {
    "burst_429": "--fault-429",
    "errors_5xx": "--fault-5xx",
    "slow_ms": "--fault-slow-ms",
    "slow_count": "--fault-slow-count",
    "drop_connections": "--fault-drop",
    "malformed_json": "--fault-malformed-json",
}


class _Parser(argparse.ArgumentParser):
    """An argument error is one line (`usage-etl emulator: argument --port: invalid int
    value: 'x'`), exit 2, not the usage text and the error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``emulator`` sub-command's parser."""
    p = _Parser(
        prog=PROG,
        description="Serve the bundled UbiOps Organizations API emulator (in memory).",
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port, 0 = any free (default 8000)")
    p.add_argument("--token", default=DEFAULT_TOKEN, help=f"demo token (default {DEFAULT_TOKEN})")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="data set seed")
    p.add_argument(
        "--organizations", type=int, default=None, help="scale to N member organizations"
    )
    p.add_argument(
        "--rate-limit",
        type=int,
        default=DEFAULT_RATE_LIMIT,
        help="requests per minute per client IP, 0 = off (default 300)",
    )
    p.add_argument(
        "--history-months",
        type=int,
        default=DEFAULT_HISTORY_MONTHS,
        help=(
            f"months of daily usage served, ending today (default {DEFAULT_HISTORY_MONTHS}); "
            "the demo projects that have been there from the start are as old as the window"
        ),
    )
    p.add_argument("--now", default=None, help="fixed clock, e.g. 2026-11-28T12:00:00Z")
    p.add_argument(
        "--admin-endpoints",
        action="store_true",
        help="serve /_emulator/* (faults, state changes; need the token); off by default",
    )
    f = p.add_argument_group("fault injection (counts apply to the next N API requests)")
    f.add_argument("--fault-429", dest="burst_429", type=int, default=0)
    f.add_argument("--fault-5xx", dest="errors_5xx", type=int, default=0)
    f.add_argument("--fault-slow-ms", dest="slow_ms", type=int, default=0)
    f.add_argument("--fault-slow-count", dest="slow_count", type=int, default=0)
    f.add_argument("--fault-drop", dest="drop_connections", type=int, default=0)
    f.add_argument("--fault-malformed-json", dest="malformed_json", type=int, default=0)
    f.add_argument(
        "--fault-deleted-projects-key",
        dest="deleted_projects_key",
        default=DEFAULT_DELETED_KEY,
        help="e.g. data_projects_deleted (breaks the SDK)",
    )
    return p


def _at_least(flag: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ValueError(f"{flag} {value}: expected an integer >= {minimum}")


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """Build an ``EmulatorConfig`` from parsed arguments; a value out of range raises
    ``ValueError`` naming the flag and what was expected."""
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port {args.port}: expected 0 (any free port) to 65535")
    if args.organizations is not None:
        _at_least("--organizations", args.organizations, 1)
    _at_least("--rate-limit", args.rate_limit, 0)
    _at_least("--history-months", args.history_months, 1)
    for field, flag in FAULT_FLAGS.items():
        _at_least(flag, getattr(args, field), 0)
    try:
        now = parse_iso_datetime(args.now) if args.now else None
    except ValueError:
        raise ValueError(
            f"--now {args.now!r}: expected an ISO 8601 date or time, e.g. 2026-11-28T12:00:00Z"
        ) from None
    faults = FaultConfig(
        burst_429=args.burst_429,
        errors_5xx=args.errors_5xx,
        slow_ms=args.slow_ms,
        slow_count=args.slow_count,
        drop_connections=args.drop_connections,
        malformed_json=args.malformed_json,
        deleted_projects_key=args.deleted_projects_key,
    )
    return EmulatorConfig(
        seed=args.seed,
        organizations=args.organizations,
        token=args.token,
        rate_limit_per_minute=args.rate_limit,
        now=now,
        faults=faults,
        admin_endpoints=args.admin_endpoints,
        history_months=args.history_months,
    )


def main(argv: list[str] | None = None) -> int:
    """Serve until Ctrl-C or SIGTERM; 0 on a clean stop, 2 on bad arguments or an address it
    cannot listen on (one line on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ValueError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return 2
    server = EmulatorServer(config, host=args.host, port=args.port)
    try:
        server.start()
    except OSError as exc:
        print(f"{PROG}: {_listen_error(args.host, args.port, exc)}", file=sys.stderr)
        return 2
    print(f"UbiOps emulator serving {len(server.state.orgs)} organizations", flush=True)
    print(f"UBIOPS_API_HOST={server.base_url}", flush=True)
    print(f"UBIOPS_API_TOKEN=Token {server.token}", flush=True)
    print(f"(second user token: {OTHER_TOKEN})", flush=True)
    if config.admin_endpoints:
        print(f"admin endpoints (token required): {server.root_url}/_emulator/", flush=True)
    print("Press Ctrl-C to stop.", flush=True)

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, interrupt)
        signal.signal(signal.SIGTERM, interrupt)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _listen_error(host: str, port: int, exc: OSError) -> str:
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return f"--port {port}: {where} is already in use; expected a free port (0: any)"
    reason = exc.strerror or str(exc)
    return f"--host {host}: cannot listen on {where}: {reason}"


if __name__ == "__main__":
    raise SystemExit(main())
