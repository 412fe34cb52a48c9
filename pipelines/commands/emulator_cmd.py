"""`usage-etl emulator`: serve the bundled UbiOps API emulator (see `emulator/cli.py`)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "emulator",
        help="serve the bundled UbiOps API emulator",
        add_help=False,
        prefix_chars="\0",
    )
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from common.optional import require_emulator

    require_emulator("this command serves the bundled API emulator")
    from emulator.cli import main

    return main(list(args.rest))
