"""The rooms' layering (docs/architecture.md): a room imports only the rooms below it.

Every module of every top-level package is parsed with `ast` (nothing is imported), and each of
its imports, including those inside functions, is checked against the order below. A failure
names the offending module, its line and the import, so an upward import (say `warehouse`
importing `pipelines`) is caught when it is written, not when it makes a cycle.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A room may import the rooms of earlier tiers, never its own tier's siblings
# nor a later tier. `ubiops_api` and `warehouse` are independent of each other.
TIERS: tuple[tuple[str, ...], ...] = (
    ("common",),
    ("ubiops_api", "warehouse"),
    ("extraction",),
    ("insights",),
    ("alerting",),
    ("reports",),
    ("assets",),
    ("pipelines",),
)
# The API emulator stands apart: it imports nothing of ours, and only the top (the CLI and the
# demo warehouses) starts it, since it is an optional dependency.
EMULATOR = "emulator"
EMULATOR_USERS = frozenset({"pipelines"})

TIER_OF = {room: level for level, rooms in enumerate(TIERS) for room in rooms}
ROOMS = frozenset(TIER_OF) | {EMULATOR}


def imported_modules(tree: ast.Module, module: str) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in `tree`, relative ones resolved against `module`."""
    found: list[tuple[int, str]] = []
    package = module.split(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def violations(module: str, source: str) -> list[str]:
    """Why `module` (dotted, with this source) breaks the layering; empty when it does not."""
    room = module.split(".")[0]
    problems: list[str] = []
    for line, name in imported_modules(ast.parse(source), module):
        target = name.split(".")[0]
        if target not in ROOMS or target == room:
            continue
        if room == EMULATOR:
            allowed = False
        elif target == EMULATOR:
            allowed = room in EMULATOR_USERS
        else:
            allowed = TIER_OF[target] < TIER_OF[room]
        if not allowed:
            problems.append(
                f"{module} (line {line}) imports {name}: {room} may not import {target}"
            )
    return problems


def project_modules() -> dict[str, Path]:
    """Dotted name -> file, for every module of every room."""
    modules: dict[str, Path] = {}
    for room in sorted(ROOMS):
        for path in sorted((ROOT / room).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def test_every_room_imports_only_the_rooms_below_it() -> None:
    modules = project_modules()
    assert len(modules) > 50, f"expected the project's modules under {ROOT}, found {len(modules)}"
    problems = [
        problem
        for module, path in modules.items()
        for problem in violations(module, path.read_text(encoding="utf-8"))
    ]
    assert not problems, "upward imports (see docs/architecture.md):\n" + "\n".join(problems)


def test_every_top_level_package_is_a_room_and_ships_in_the_wheel() -> None:
    packages = {
        p.parent.name
        for p in ROOT.glob("*/__init__.py")
        if p.parent.name not in {"tests", "bench", "docs"}
    }
    assert packages == ROOMS, (
        f"top-level packages {sorted(packages ^ ROOMS)} are not placed in the layering; "
        "add a new room to TIERS here and to docs/architecture.md"
    )
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    shipped = set(pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    assert shipped == ROOMS, f"wheel packages differ from the rooms: {sorted(shipped ^ ROOMS)}"


def test_an_upward_import_is_reported_with_module_line_and_import() -> None:
    source = "import pandas\nfrom common.errors import InputError\n\n\ndef f():\n"
    source += "    from pipelines.cli import main\n    from . import schema\n"
    assert violations("warehouse.files", source) == [
        "warehouse.files (line 6) imports pipelines.cli: warehouse may not import pipelines"
    ]
    assert violations("ubiops_api.client", "import warehouse.schema\n") == [
        "ubiops_api.client (line 1) imports warehouse.schema: ubiops_api may not import warehouse"
    ]
    assert violations("insights.trends", "from emulator.server import EmulatorServer\n") == [
        "insights.trends (line 1) imports emulator.server: insights may not import emulator"
    ]
    assert violations("emulator.app", "from common import periods\n") == [
        "emulator.app (line 1) imports common: emulator may not import common"
    ]
    assert violations("pipelines.demo", "from emulator.server import EmulatorServer\n") == []
    assert violations("assets.report", "from reports import write_report\n") == []
