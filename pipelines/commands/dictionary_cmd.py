"""`usage-etl dictionary`: write the data dictionary generated from the published database.

`--demo` documents a throwaway warehouse loaded from the bundled emulator's demo data (how the
committed `docs/data-dictionary.md` is made); `--check` compares instead of writing (for CI).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "dictionary",
        help="generate the data dictionary (Markdown) from the published warehouse",
        description=(
            "Document every table, view and column of <warehouse>/usage.duckdb from its live "
            "catalog comments. Exit status 1 when something has no description."
        ),
    )
    parser.add_argument("--warehouse", help="warehouse directory (USAGE_WAREHOUSE, ./data)")
    parser.add_argument("--out", help="write here (default: stdout), e.g. docs/data-dictionary.md")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="document a temporary warehouse loaded from the bundled emulator's demo data",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="do not write: exit 1 when --out differs from the generated dictionary",
    )
    parser.set_defaults(handler=handle)


def generate_markdown(warehouse: Path | None, demo: bool) -> tuple[str, list[str]]:
    """(markdown, undocumented names) for the warehouse, or for a fresh demo warehouse."""
    from warehouse.dictionary import read_warehouse, render_markdown, undocumented

    if demo:
        from pipelines.demo import build_demo_warehouse

        with tempfile.TemporaryDirectory(prefix="usage-etl-demo-") as tmp:
            relations = read_warehouse(build_demo_warehouse(Path(tmp)))
    else:
        from warehouse.location import WarehouseLocation

        location = WarehouseLocation.from_env(path=warehouse)  # the lake when one is configured
        relations = read_warehouse(location.root, location.lake_config())
    return render_markdown(relations), undocumented(relations)


def handle(args: argparse.Namespace) -> int:
    if args.check and not args.out:
        from common.errors import InputError

        raise InputError("--check: expected --out FILE to compare with")
    text, missing = generate_markdown(args.warehouse, args.demo)
    for name in missing:
        print(f"usage-etl dictionary: no description for {name}", file=sys.stderr)
    if args.check:
        out = Path(args.out)
        current = out.read_text(encoding="utf-8") if out.exists() else ""
        if current != text:
            print(f"usage-etl dictionary: {out} is out of date; regenerate it", file=sys.stderr)
            return 1
        print(f"{out} is up to date", file=sys.stderr)
    elif args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 1 if missing else 0
