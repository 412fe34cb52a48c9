"""`usage-etl` as a user runs it: in a subprocess, or its `main()` in this process.

`usage_etl()` runs the real console script (`.venv/bin/usage-etl`) so that exit codes, stdout
versus stderr, tracebacks and pipes behave as they do for a user; a handful of tests use it.
`usage_etl_in_process()` calls `pipelines.cli.main()` with the same arguments, environment and
working directory and captures what it prints: the same exit code and the same lines, without
paying for a new interpreter (and its imports of Dagster, pandas, DuckDB) on every call.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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


def run_env(server: Any, tmp_path: Path) -> dict[str, str]:
    """A user's environment for `usage-etl run` against `server`, Dagster's home in `tmp_path`."""
    return clean_env(
        UBIOPS_API_HOST=server.base_url,
        UBIOPS_API_TOKEN=server.token,
        DAGSTER_HOME=str(tmp_path / "dagster"),
    )


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


# makes the warehouse ($1) a read-only bind mount of itself, then runs the rest of the arguments
_READ_ONLY_MOUNT = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'


def usage_etl_read_only(warehouse: Path, *args: str, env: dict[str, str] | None = None) -> Done:
    """`usage-etl ARGS` (the console script) with `warehouse` read-only for it, as on a
    read-only copy, backup or mount. As a user other than root the directory tree is made
    read-only (chmod) for the call and restored after. Root writes whatever the modes say: the
    command then runs in a mount namespace of its own (`unshare -m`) where `warehouse` is a
    read-only bind mount of itself, as a read-only file system; skipped where that is not
    allowed (no `unshare`, or a container without CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        paths = [warehouse, *warehouse.rglob("*")]
        modes = {p: p.lstat().st_mode for p in paths if not p.is_symlink()}
        for path, mode in modes.items():
            path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
        try:
            return usage_etl(*args, env=env)
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
    if shutil.which("unshare") is None:
        pytest.skip("as root a read-only warehouse needs `unshare` (util-linux)")
    allowed = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    if allowed.returncode != 0:
        pytest.skip(f"as root a read-only warehouse needs `unshare -m`: {allowed.stderr!r}")
    mounted = ["unshare", "-m", "sh", "-c", _READ_ONLY_MOUNT, "sh", str(warehouse)]
    done = subprocess.run(
        [*mounted, str(USAGE_ETL), *args],
        env=env if env is not None else clean_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return Done(done.returncode, done.stdout, done.stderr)


@contextlib.contextmanager
def environment(env: dict[str, str], cwd: Path = REPO) -> Iterator[None]:
    """This process's environment replaced by `env` and its working directory set to `cwd`
    for the block; both restored after (the CLI writes settings into `os.environ`)."""
    saved, here = dict(os.environ), Path.cwd()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(here)
        os.environ.clear()
        os.environ.update(saved)


def usage_etl_in_process(*args: str, env: dict[str, str] | None = None) -> Done:
    """`usage-etl ARGS` through `pipelines.cli.main()` in this process, with `env` as the whole
    environment (default: `clean_env()`), from the repository root. Argument errors, `--help`
    and `--version` end in `SystemExit` as in the console script; its code is returned."""
    from pipelines import cli

    out, err = io.StringIO(), io.StringIO()
    with (
        environment(env if env is not None else clean_env()),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        try:
            code = cli.main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return Done(code, out.getvalue(), err.getvalue())


def assert_one_line_error(done: Done, code: int, *words: str) -> None:
    """Exit `code`, nothing on stdout, one line on stderr naming `words`, no traceback."""
    assert done.code == code, (done.code, done.out, done.err)
    assert done.out == "", done.out
    lines = done.err.strip().splitlines()
    assert len(lines) == 1, done.err
    assert "Traceback" not in done.err
    for word in words:
        assert word in lines[0], (word, lines[0])


IMPORT_TIME = "import time:"


def imported_modules(stderr: str) -> set[str]:
    """The modules a `-X importtime` (`PYTHONPROFILEIMPORTTIME=1`) report on `stderr` lists."""
    lines = [line for line in stderr.splitlines() if line.startswith(IMPORT_TIME)]
    return {line.rsplit("|", 1)[-1].strip() for line in lines}


def without_import_times(stderr: str) -> str:
    """`stderr` without the lines of a `-X importtime` report: what the program itself wrote."""
    return "".join(
        line for line in stderr.splitlines(keepends=True) if not line.startswith(IMPORT_TIME)
    )


@dataclass
class HeldRun:
    """A `usage-etl run` in its own process group, held mid-step by the emulator (see
    `held_run`): `env` is the run's environment, `holding` releases the held requests."""

    process: subprocess.Popen[str]
    holding: Any
    env: dict[str, str]
    warehouse: Path


@contextlib.contextmanager
def held_run(tmp_path: Path, *, capture: bool = False) -> Iterator[HeldRun]:
    """Start `usage-etl run` against a one-organization emulator that holds its daily usage
    requests (`tests.services.emulator.HoldingApp`), in its own process group (as a terminal's
    foreground job), and yield it once it waits on the API; on leaving, the requests are
    released and a process still running is killed with its group. `capture`: its stdout and
    stderr are pipes (read them with `communicate`), else discarded."""
    import signal

    from tests.services.emulator import HoldingApp, start_emulator

    server = start_emulator(organizations=1)
    holding = HoldingApp(server.app)
    server.app = holding
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    warehouse = tmp_path / "warehouse"
    with server:
        env = run_env(server, tmp_path)
        process = subprocess.Popen(
            [str(USAGE_ETL), "run", "--warehouse", str(warehouse)],
            env=env,
            cwd=REPO,
            stdout=output,
            stderr=output,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            assert holding.reached.wait(timeout=120), "the run never asked for daily usage"
            yield HeldRun(process, holding, env, warehouse)
        finally:
            holding.release.set()
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
