"""`--lake-catalog` / `--lake-data` on `usage-etl` do what USAGE_LAKE_CATALOG / USAGE_LAKE_DATA
do, and a catalog password given on the command line appears nowhere: not in the output, the
logs, the Dagster run storage (events, metadata) nor the warehouse.

Real parts: PostgreSQL catalog with a password, moto S3 server, the emulator on loopback; every
command through the CLI's `main()` in the test's process (the same arguments, environment, exit
codes and output, without a new interpreter's imports). Besides what the CLI prints, whatever
reaches the process's stdout and stderr file descriptors during the run (C-level writes, handlers
holding the original streams) is captured (`capfd`) and checked for the password too, as a
subprocess's whole output would be."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.lake.conftest import Lake
from tests.services.cli import usage_etl_in_process
from tests.services.emulator import start_emulator


def cli_here(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = usage_etl_in_process(*args, env=env)
    return subprocess.CompletedProcess(["usage-etl", *args], done.code, done.out, done.err)


def files_containing(root: Path, secret: str) -> list[Path]:
    needle = secret.encode()
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.timeout(900)
def test_lake_flags_work_like_the_environment_and_never_show_the_password(
    lake: Lake, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    flags = ["--lake-catalog", lake.env["USAGE_LAKE_CATALOG"], "--lake-data",
             lake.env["USAGE_LAKE_DATA"]]  # fmt: skip
    password = lake.postgres.password
    assert password and password in flags[1]
    base = {k: v for k, v in os.environ.items() if not k.startswith("USAGE_LAKE_")}
    base.update(lake.s3.env())
    today = datetime.now(UTC).date()
    with start_emulator(organizations=1) as server:  # one organization: the flags are the point
        writer = {
            **base,
            "UBIOPS_API_HOST": server.base_url,
            "UBIOPS_API_TOKEN": server.token,
            "USAGE_WAREHOUSE": str(tmp_path / "writer" / "warehouse"),
            "DAGSTER_HOME": str(tmp_path / "writer" / "dagster"),
        }
        capfd.readouterr()
        run = cli_here(writer, "run", "--start", f"{today:%Y-%m}-01", "--end", str(today), *flags)
        beside = capfd.readouterr()  # what went to the file descriptors, not through the CLI
    assert run.returncode == 0, run.stderr[-3000:]
    assert "publishing to the shared lake" in run.stderr
    assert password not in run.stdout + run.stderr
    assert password not in beside.out + beside.err
    assert files_containing(tmp_path / "writer", password) == []
    verify = cli_here(writer, "verify", *flags)
    assert verify.returncode == 0, verify.stderr
    assert "shared lake answers" in verify.stdout and "slices recorded" in verify.stdout
    assert password not in verify.stdout + verify.stderr

    # another machine, no local warehouse: the flags alone find the lake
    reader = {**base, "USAGE_WAREHOUSE": str(tmp_path / "reader" / "warehouse")}
    query = cli_here(reader, "query", "select count(*) AS n from credit_usage", "--format", "csv",
                *flags)  # fmt: skip
    assert query.returncode == 0, query.stderr
    assert int(query.stdout.strip().splitlines()[1]) > 0
    verbose = cli_here(reader, "query", "select * from no_such_table", "--verbose", *flags)
    assert verbose.returncode == 2
    assert password not in verbose.stdout + verbose.stderr

    # one flag without the other: one line naming both, exit 2
    half = cli_here(reader, "query", "select 1", flags[0], flags[1])
    assert half.returncode == 2
    assert half.stderr.strip().splitlines() == [
        "usage-etl query: USAGE_LAKE_CATALOG (--lake-catalog) is set but USAGE_LAKE_DATA "
        "(--lake-data) is not: expected an s3:// URL or a directory for the lake's data files"
    ]
    # an unreachable catalog named on the command line: exit 2, the password not echoed
    wrong = flags[1].replace(f":{lake.postgres.port}/", ":1/")
    bad = cli_here(reader, "query", "select 1", "--lake-catalog", wrong, *flags[2:])
    assert bad.returncode == 2
    assert "cannot attach the lake" in bad.stderr
    assert password not in bad.stdout + bad.stderr
