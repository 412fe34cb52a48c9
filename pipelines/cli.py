"""The `usage-etl` command line: run the pipeline, serve the emulator, query the warehouse.

Each subcommand lives in its own module (`pipelines/commands/`); this module only dispatches.
Errors a user can fix are printed as one line on stderr with exit status 2; failures of a run
exit with status 1.
"""

from __future__ import annotations

import argparse
import sys

from pipelines.commands import (
    alerts_cmd,
    dictionary_cmd,
    emulator_cmd,
    forget_cmd,
    prune_cmd,
    query_cmd,
    report_cmd,
    run_cmd,
    verify_cmd,
)


class UsageError(Exception):
    """A user error: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="usage-etl",
        description="UbiOps usage analytics: extract, warehouse, alert.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (
        run_cmd,
        emulator_cmd,
        query_cmd,
        alerts_cmd,
        dictionary_cmd,
        report_cmd,
        prune_cmd,
        verify_cmd,
        forget_cmd,
    ):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("usage-etl: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, UsageError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"usage-etl {args.command}: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
