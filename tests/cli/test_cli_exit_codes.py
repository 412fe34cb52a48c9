"""`usage-etl` as a user meets it: help, version, one-line errors, exit codes, quiet pipes.

Exit 2 means bad input or configuration found before anything started (no Dagster run, no API
request); exit 1 a failure afterwards; no traceback without `--verbose`.

The installed console script runs as a subprocess where the process itself is the point (help,
the imports of a bare parse, an exit-2 error end to end, pipes closing early); the other cases
call the CLI's `main()` in process with the same arguments and environment
(`usage_etl_in_process`): the same exit codes and lines, without a new interpreter each.
"""

from __future__ import annotations

import shlex
import socket
import subprocess
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest

from pipelines import cli, preflight
from tests.services.cli import (
    REPO,
    USAGE_ETL,
    assert_one_line_error,
    clean_env,
    imported_modules,
    usage_etl,
    usage_etl_in_process,
    without_import_times,
)

COMMANDS = ("run", "query", "alerts", "backtest", "report", "dictionary", "prune", "emulator")
HEAVY = ("dagster", "pandas", "duckdb", "pyarrow", "numpy", "httpx")


def test_help_lists_every_command_with_a_description() -> None:
    done = usage_etl("--help")
    assert done.code == 0 and done.err == ""
    for command in COMMANDS:
        line = next((x for x in done.out.splitlines() if x.strip().startswith(command)), "")
        assert len(line.split()) > 2, f"{command} has no description in --help:\n{done.out}"


@pytest.mark.parametrize("command", [c for c in COMMANDS if c != "emulator"])
def test_every_command_help_has_a_description_and_an_example(command: str) -> None:
    parser = cli.build_parser()
    sub = next(a for a in parser._subparsers._group_actions)  # type: ignore[union-attr]
    text = sub.choices[command].format_help()
    assert "example: usage-etl " + command in text, text
    description = text.split("\n\n")[1]
    assert description.strip() and not description.lstrip().startswith(("-", "positional")), text
    for example in cli.EXAMPLES[command].split("  |  "):  # each example parses as written
        parsed = parser.parse_args(shlex.split(example)[1:])
        assert parsed.command == command, example


def test_parsing_imports_nothing_heavy() -> None:
    """What keeps `--help` fast (bench/cli.py measures the time)."""
    code = (
        "import sys; from pipelines.cli import build_parser; build_parser().format_help(); "
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "[]", done.stdout


def test_version() -> None:
    done = usage_etl_in_process("--version")
    assert done.code == 0
    assert done.out.strip().startswith("usage-etl 0.")


def test_missing_token_with_a_host_is_exit_2_before_any_run(tmp_path: Path) -> None:
    """The mistake is reported before Dagster is even imported (its start-up takes seconds),
    and the warehouse directories created to check they are writable are removed again."""
    warehouse = tmp_path / "new" / "wh"
    env = clean_env(UBIOPS_API_HOST="https://api.example.invalid/v2.1", PYTHONPROFILEIMPORTTIME="1")
    done = usage_etl("run", "--warehouse", str(warehouse), env=env)
    imported = imported_modules(done.err)
    assert "pipelines.cli" in imported, "the import profile was not read"
    assert not {name for name in imported if name.split(".")[0] == "dagster"}
    assert_one_line_error(replace(done, err=without_import_times(done.err)), 2, "UBIOPS_API_TOKEN")
    assert not (warehouse / "dagster").exists(), "no Dagster run may start"
    assert not (tmp_path / "new").exists(), "a failed preflight leaves no empty directories"


def test_bad_host_is_exit_2(tmp_path: Path) -> None:
    env = clean_env(UBIOPS_API_HOST="ftp://api.ubiops.com", UBIOPS_API_TOKEN="x")
    done = usage_etl_in_process("run", "--warehouse", str(tmp_path / "wh"), env=env)
    assert_one_line_error(done, 2, "UBIOPS_API_HOST", "http(s)")


def test_unreachable_host_is_exit_2_after_a_short_try(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the probe tries again until its deadline: 1 s here instead of the command's 5 s, the same
    # tries and the same error (the message names the deadline) without 4 s of waiting
    monkeypatch.setattr(preflight, "check_api", partial(preflight.check_api, deadline_seconds=1))
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = clean_env(UBIOPS_API_HOST=f"http://127.0.0.1:{port}/v2.1", UBIOPS_API_TOKEN="secret-1")
    done = usage_etl_in_process("run", "--warehouse", str(tmp_path / "wh"), env=env)
    assert_one_line_error(done, 2, f"127.0.0.1:{port}", "cannot connect", "within 1s")
    assert "secret-1" not in done.err
    assert not (tmp_path / "wh" / "dagster").exists()


def test_bad_quota_file_is_exit_2(tmp_path: Path) -> None:
    quotas = tmp_path / "quotas.yaml"
    quotas.write_text("organizations: [1, 2\n")
    done = usage_etl_in_process("run", "--warehouse", str(tmp_path / "wh"), "--quotas", str(quotas))
    assert_one_line_error(done, 2, "quotas.yaml")


def test_warehouse_that_is_a_file_is_exit_2(tmp_path: Path) -> None:
    target = tmp_path / "not-a-dir"
    target.write_text("x")
    for args in (
        ("run", "--warehouse", str(target)),
        ("run", "--warehouse", str(target / "below")),
        ("prune", "--keep-days", "3", "--warehouse", str(target)),
    ):
        assert_one_line_error(usage_etl_in_process(*args), 2, "is a file")
    assert target.read_text() == "x"


def test_unwritable_warehouse_parent_is_exit_2() -> None:
    done = usage_etl_in_process("run", "--warehouse", "/proc/usage-warehouse")
    assert_one_line_error(done, 2, "/proc/usage-warehouse", "cannot write")


def test_prune_with_an_absurd_retention_is_exit_2(empty_warehouse: Path) -> None:
    done = usage_etl_in_process(
        "prune", "--keep-days", "100000000", "--warehouse", str(empty_warehouse)
    )
    assert_one_line_error(done, 2, "--keep-days 100000000", "expected 0 to")


def test_bad_date_is_exit_2() -> None:
    assert_one_line_error(
        usage_etl_in_process("run", "--start", "2026-13-01"), 2, "--start", "YYYY-MM-DD"
    )
    # the right shape but no such day: says so, rather than only repeating the format
    assert_one_line_error(
        usage_etl_in_process("run", "--end", "2026-02-30"), 2, "--end 2026-02-30: no such day"
    )
    assert_one_line_error(usage_etl_in_process("run", "--end", "30/02/2026"), 2, "YYYY-MM-DD")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--port", "99999"), ("--port 99999", "expected 0 (any free port) to 65535")),
        (("--port", "http"), ("--port", "invalid int value")),
        (("--fault-5xx", "-3"), ("--fault-5xx -3", "expected an integer >= 0")),
        (("--rate-limit", "-1"), ("--rate-limit -1", "expected an integer >= 0")),
        (("--organizations", "0"), ("--organizations 0", "expected an integer >= 1")),
        (("--history-months", "0"), ("--history-months 0", "expected an integer >= 1")),
        (("--now", "yesterday"), ("--now 'yesterday'", "ISO 8601")),
    ],
)
def test_emulator_bad_input_is_one_line_exit_2(args: tuple[str, ...], words: tuple[str]) -> None:
    done = usage_etl_in_process("emulator", *args)
    assert_one_line_error(done, 2, "usage-etl emulator: ", *words)


def test_emulator_on_a_port_in_use_is_one_line_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = usage_etl_in_process("emulator", "--port", str(port))
    assert_one_line_error(done, 2, f"--port {port}: 127.0.0.1:{port} is already in use")


def test_range_errors_blame_what_the_user_set() -> None:
    """The default start is named as the default, and a first partition in the future as the
    variable that set it (not the --start the user never gave)."""
    done = usage_etl_in_process("run", "--end", "2020-09-15")
    assert_one_line_error(
        done, 2, "--end 2020-09-15 is before the default start", "previous month", "--start"
    )
    env = clean_env(USAGE_PARTITIONS_START="2999-01-01")
    done = usage_etl_in_process("run", env=env)
    assert_one_line_error(done, 2, "USAGE_PARTITIONS_START=2999-01-01 is after today")
    assert "--start" not in done.err


def test_argument_errors_go_to_stderr_with_exit_2() -> None:
    done = usage_etl_in_process("query", "--format", "xml", "select 1")
    assert done.code == 2 and done.out == "" and "invalid choice" in done.err


def test_only_the_projects_own_errors_are_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unexpected ValueError is a failure (exit 1, one line), not "bad input"."""
    from pipelines.commands import query_cmd

    def broken(args: object) -> int:
        raise ValueError("bug deep inside\nsecond line")

    monkeypatch.setattr(query_cmd, "handle", broken)
    assert cli.main(["query", "select 1"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "usage-etl query: ValueError: bug deep inside (--verbose shows the traceback)"
    )
    assert cli.main(["--verbose", "query", "select 1"]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.long
def test_piping_into_head_ends_quietly(empty_warehouse: Path) -> None:
    """Each format's output piped into `head -n 2`: the three pipelines run side by side."""
    pipelines = {
        fmt: subprocess.Popen(
            f"'{USAGE_ETL}' query --format {fmt} --max-rows 100000 --warehouse "
            f"'{empty_warehouse}' 'select range as n from range(200000)' | head -n 2",
            shell=True,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for fmt in ("table", "csv", "json")
    }
    try:
        for fmt, pipeline in pipelines.items():
            stdout, stderr = pipeline.communicate(timeout=240)
            assert stderr == "", (fmt, stderr)
            assert len(stdout.splitlines()) == 2, (fmt, stdout)
    finally:
        for pipeline in pipelines.values():
            if pipeline.poll() is None:
                pipeline.kill()
                pipeline.communicate()
