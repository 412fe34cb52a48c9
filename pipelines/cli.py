"""The `usage-etl` command line: run the pipeline, query the warehouse, alerts, the emulator.

Each subcommand lives in its own module (`pipelines/commands/`); this module parses and
dispatches. Parsing imports nothing heavy (no Dagster, pandas or DuckDB): the command modules
import what they need inside their handlers, so `usage-etl --help` answers at once
(`bench/cli.py` measures it).

Exit status: 0 success; 1 a failed run or an unexpected error (one line on stderr; the traceback
only with `--verbose`); 2 bad input or configuration, found before anything starts (the
`common.errors.UsageEtlError` hierarchy, and argument errors); 130 interrupted. Output piped
into a command that stops reading (`| head`) ends quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from importlib import import_module

PROG = "usage-etl"

# (module under pipelines.commands, registers these commands): order is the order in --help.
COMMAND_MODULES = (
    "run_cmd",
    "query_cmd",
    "alerts_cmd",
    "report_cmd",
    "verify_cmd",
    "dictionary_cmd",
    "prune_cmd",
    "forget_cmd",
    "history_cmd",
    "emulator_cmd",
)

# Commands that read or write the shared lake take `--lake-catalog` / `--lake-data`, the same as
# USAGE_LAKE_CATALOG / USAGE_LAKE_DATA (the flags win): each command resolves the warehouse with
# them (`pipelines.commands.warehouse_location`; `run` through the `warehouse` resource). The
# environment is the better place for a catalog password: other users of the machine can read a
# command line (`ps`).
LAKE_COMMANDS = ("run", "query", "report", "alerts", "history", "verify")

# One example per command, shown at the end of its --help.
EXAMPLES = {
    "run": "usage-etl run --start 2026-10-01 --end 2026-11-28 --warehouse ./data",
    "query": 'usage-etl query --name top_projects_this_period  |  usage-etl query "select 1"',
    "alerts": "usage-etl alerts --all",
    "backtest": "usage-etl backtest --rule credit_forecast --start 2026-09-01 --end 2026-11-27",
    "report": "usage-etl report --out ./usage-report",
    "verify": "usage-etl verify --warehouse ./data",
    "dictionary": "usage-etl dictionary --out docs/data-dictionary.md",
    "prune": "usage-etl prune --keep-days 90 --dry-run",
    "forget": "usage-etl forget --organization old-team --warehouse ./data",
    "history": "usage-etl history --organization acme-analytics --period 2026-10",
    "emulator": "usage-etl emulator --port 8800 --organizations 50",
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ubiops-usage")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown"


class _VersionAction(argparse.Action):
    """`--version` without importing package metadata unless asked."""

    def __init__(
        self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kw: object
    ) -> None:
        help_text = str(kw.get("help", ""))
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help_text)

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(f"{PROG} {_version()}")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "UbiOps usage analytics: pull the Organizations API into a Parquet + DuckDB "
            "warehouse, forecast against quotas, alert, report."
        ),
        epilog=(
            "Exit status: 0 ok, 1 failed run, 2 bad input or configuration (nothing started). "
            f"`{PROG} COMMAND --help` shows a command's options and an example."
        ),
    )
    parser.add_argument("--version", action=_VersionAction, help="print the version and exit")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show tracebacks and full Dagster messages"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = import_module(f"pipelines.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"pipelines.commands.{name}":
                continue  # a command not present in this build
            raise
        module.add_parser(sub)
    for name, command in sub.choices.items():
        if command.description is None:
            help_text = next((a.help for a in sub._choices_actions if a.dest == name), None)
            command.description = help_text
        if name in EXAMPLES and command.epilog is None:
            command.epilog = f"example: {EXAMPLES[name]}"
        if name in LAKE_COMMANDS:
            _add_lake_flags(command)
        if name != "emulator" and "--verbose" not in command._option_string_actions:
            command.add_argument(
                "-v",
                "--verbose",
                action="store_true",
                default=argparse.SUPPRESS,
                help="show tracebacks and full Dagster messages",
            )
    return parser


def _add_lake_flags(command: argparse.ArgumentParser) -> None:
    lake = command.add_argument_group(
        "shared lake (instead of the environment; prefer the environment for a password)"
    )
    lake.add_argument(
        "--lake-catalog",
        metavar="CONNINFO",
        default=argparse.SUPPRESS,
        help="the lake's PostgreSQL catalog: postgresql://user@host:5432/db or 'dbname=... "
        "host=...' (USAGE_LAKE_CATALOG)",
    )
    lake.add_argument(
        "--lake-data",
        metavar="URL",
        default=argparse.SUPPRESS,
        help="where the lake's data files live: s3://bucket/prefix or a directory "
        "(USAGE_LAKE_DATA)",
    )


def _one_line(exc: BaseException) -> str:
    from common.errors import one_line

    return one_line(str(exc)) or type(exc).__name__


def _quiet_broken_pipe() -> None:
    """The reader went away (`| head`): drop the rest of the output without a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    verbose = bool(getattr(args, "verbose", False))
    args.verbose = verbose  # every handler reads it from here (never from the environment)
    from common.errors import UsageEtlError

    try:
        code = int(args.handler(args))
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        _quiet_broken_pipe()
        return 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except UsageEtlError as exc:
        if verbose:
            traceback.print_exc()
        print(f"{PROG} {args.command}: {_one_line(exc)}", file=sys.stderr)
        return 2
    except Exception as exc:
        if verbose:
            traceback.print_exc()
            hint = ""
        else:
            hint = " (--verbose shows the traceback)"
        print(
            f"{PROG} {args.command}: {type(exc).__name__}: {_one_line(exc)}{hint}", file=sys.stderr
        )
        return 1


def entry_point() -> None:
    """The console script: exit with `main`'s status, quietly on a closed pipe."""
    from pipelines.heap import tune_collector

    tune_collector()
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        _quiet_broken_pipe()
        status = 0
    raise SystemExit(status)


if __name__ == "__main__":
    entry_point()
