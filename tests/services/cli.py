"""The installed `usage-etl` in a subprocess, as a user runs it.

Tests run the real console script (`.venv/bin/usage-etl`) so that exit codes, stdout versus
stderr, tracebacks and pipes behave as they do for a user.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

USAGE_ETL = Path(sys.executable).parent / "usage-etl"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Done:
    code: int
    out: str
    err: str


def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus every setting the CLI reads, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("UBIOPS_", "USAGE_", "DAGSTER_HOME"))
    }
    env.update(extra)
    return env


def usage_etl(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> Done:
    done = subprocess.run(
        [str(USAGE_ETL), *args],
        env=env if env is not None else clean_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return Done(done.returncode, done.stdout, done.stderr)


def assert_one_line_error(done: Done, code: int, *words: str) -> None:
    """Exit `code`, nothing on stdout, one line on stderr naming `words`, no traceback."""
    assert done.code == code, (done.code, done.out, done.err)
    assert done.out == "", done.out
    lines = done.err.strip().splitlines()
    assert len(lines) == 1, done.err
    assert "Traceback" not in done.err
    for word in words:
        assert word in lines[0], (word, lines[0])
