"""Optional parts of the project, and the one-line error naming what to install when one is
missing.

The pipeline itself needs none of them. The bundled API emulator (`emulator/`, Starlette served
by uvicorn) is the `emulator` extra: `pip install 'ubiops-usage[emulator]'`, or `./dev.sh sync`
in a clone (the development environment includes it). A production image (`uv sync --no-dev`,
the Dockerfile) leaves it out and talks to the real API.
"""

from __future__ import annotations

import importlib.util

from common.errors import MissingDependencyError

EMULATOR_PACKAGES = ("starlette", "uvicorn")
EMULATOR_INSTALL = (
    "pip install 'ubiops-usage[emulator]' (or, in a clone of the repository, ./dev.sh sync)"
)


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a half-removed package
        return False


def require_emulator(reason: str) -> None:
    """Raise `MissingDependencyError` (one line, exit 2) unless the emulator's packages are
    installed; `reason` says why the emulator is wanted."""
    missing = [name for name in EMULATOR_PACKAGES if not _installed(name)]
    if missing:
        raise MissingDependencyError(
            f"{reason}, but its packages are not installed ({', '.join(missing)} missing): "
            f"{EMULATOR_INSTALL}"
        )
