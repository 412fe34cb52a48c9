"""What a run tells its user, against the emulator on loopback: short lines, counts that add up,
blocking checks that keep the warehouse as it was.

- `usage-etl run` (one process, the user's command) prints one short line per event
  (8-character run id, no reprs, no warnings), the alerts as counts by rule plus the ten most
  severe, and a failure as one line (exit 1): an API answer without the deleted-projects key,
  named with the organization, that leaves the published warehouse as it was;
- on that same run (three 5xx answers on the way, retried): the request count it prints is the
  number of requests its client sent that the API received (retries included and also counted
  on their own; the preflight probe is the one request outside the run), and each monthly
  partition's `dagster/row_count` is its own rows (these checks had a run of their own);
- a whole `usage-etl run` of the code location never imports the emulator's packages
  (`starlette`, `uvicorn`: an optional extra, see `test_optional_emulator.py`);
- a failed blocking check (`projects_add_up`) leaves Parquet, DuckDB and the alert state as they
  were, sends nothing, and the summary says why;
- a run the API fails (5xx until the client gives up) counts the failed step's requests
  (retries included) and is one ERROR line for the root cause plus one saying how many
  downstream steps were not executed (not Dagster's line per step);
- Ctrl-C (SIGINT to the run's process group) while a step waits on the API ends the run with
  exit 130 and a summary that says so (Dagster turns the interrupt into a step failure; this
  was exit 1 with the failure's class name).
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from dagster import AssetKey, DagsterInstance

from pipelines.commands.run_cmd import execute
from tests.services.cli import (
    held_run,
    imported_modules,
    run_env,
    usage_etl,
    usage_etl_in_process,
    without_import_times,
)
from tests.services.emulator import Pipeline, default_range, start_emulator
from tests.services.warehouse_files import query_published

EMULATOR_PACKAGES = {"starlette", "uvicorn"}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class CountingApp:
    """ASGI wrapper around the emulator that counts the API requests it receives, by the
    `User-Agent` that sent them (the run's client, or the preflight probe's httpx default)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.by_agent: Counter[str] = Counter()
        self._lock = threading.Lock()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v2.1/"):
            headers = dict(scope.get("headers") or [])
            agent = headers.get(b"user-agent", b"").decode()
            with self._lock:
                self.by_agent[agent] += 1
        await self.app(scope, receive, send)


def assert_row_counts_are_each_partitions_rows(dagster_home: Path, warehouse: Path) -> None:
    """Each monthly partition's `dagster/row_count` (both months of the run) is its own rows."""
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        for asset, interval in (("credit_usage_daily", "day"), ("credit_usage_periods", "month")):
            records = instance.fetch_materializations(AssetKey(asset), limit=10).records
            by_partition = {
                r.event_log_entry.asset_materialization.partition: r.event_log_entry.asset_materialization  # noqa: E501
                for r in records
            }
            assert len(by_partition) == 2, by_partition.keys()
            for partition, mat in by_partition.items():
                folder = warehouse / "parquet" / "credit_usage" / f"interval={interval}"
                files = list((folder / f"month={partition[:7]}").glob("*.parquet"))
                rows = sum(pq.read_metadata(f).num_rows for f in files)
                assert mat.metadata["dagster/row_count"].value == rows, (asset, partition)


def _fingerprint(warehouse: Path) -> dict[str, str]:
    """Digest of the published database, the usage slices, derived tables and alert state.

    (The registry assets that run before the checks, organizations, users and resource
    snapshots, refresh their own Parquet files with the correct current state; that is not
    published until a run succeeds.)
    """
    registry = ("organizations", "organization_users", "resource_usage")
    out = {}
    for path in sorted(warehouse.rglob("*")):
        name = str(path.relative_to(warehouse))
        if name.startswith(tuple(f"parquet/{t}/" for t in registry)):
            continue
        if path.is_file() and path.suffix in (".parquet", ".duckdb", ".sqlite"):
            out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_blocking_check_keeps_the_warehouse_and_sends_nothing(
    pipeline_after_demo_run: Pipeline,
) -> None:
    # the first, successful run is the session's demo run (a private copy of it)
    server, warehouse = pipeline_after_demo_run.server, pipeline_after_demo_run.warehouse
    start, end = pipeline_after_demo_run.start, pipeline_after_demo_run.end
    before = _fingerprint(warehouse)
    assert any(name.endswith("alerts.sqlite") for name in before)
    assert "usage.duckdb" in before and any("credit_usage" in name for name in before)

    honest = server.state.usage

    def inconsistent(*args: Any, **kwargs: Any) -> dict:
        body = honest(*args, **kwargs)
        total = body.get("data_organization")
        if total:  # the organization total no longer equals its projects' sum
            total[0]["value"] = float(total[0]["value"]) + 123.0
        return body

    server.state.usage = inconsistent
    summary = execute(start, end, log_level="WARNING")
    assert not (summary.success and not summary.failed_checks)
    assert any(b.endswith(":projects_add_up") for b in summary.blocked), summary.lines()
    text = "\n".join(summary.lines())
    assert "blocked by failed check(s)" in text and "no alert was sent" in text
    assert _fingerprint(warehouse) == before, "a blocked run must change nothing stored"


def test_a_run_the_api_fails_counts_its_requests_and_says_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    server = start_emulator(organizations=1)
    counter = CountingApp(server.app)
    server.app = counter
    with server:
        for key, value in run_env(server, tmp_path).items():
            monkeypatch.setenv(key, value)
        server.set_faults(errors_5xx=3)  # the first request and both retries
        start, end = default_range(server.config.now.date())
        summary = execute(
            start,
            end,
            overrides={
                "warehouse": {"path": str(tmp_path / "warehouse")},
                "ubiops": {"max_retries": 2},
            },
        )
    err = capsys.readouterr().err
    assert not summary.success
    assert counter.by_agent.total() == 3, counter.by_agent
    text = "\n".join(summary.lines())
    assert "3 API requests sent (2 of them retries" in text, text
    assert "error: organizations: " in text and "after 3 attempts" in text, text
    not_run = re.search(r"^(\d+) downstream step\(s\) not executed$", text, re.M)
    assert not_run and int(not_run[1]) > 0, text
    errors = [line for line in err.splitlines() if " ERROR " in line]
    assert "Not executing" not in err, err
    assert len(errors) == 2, err
    assert "organizations: ERROR failed: " in errors[0] and "after 3 attempts" in errors[0]
    assert errors[1].endswith(f"{not_run[1]} downstream step(s) not executed"), errors[1]


@pytest.mark.long
def test_cli_run_prints_short_lines_and_a_summary(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    server = start_emulator()
    counter = CountingApp(server.app)
    server.app = counter
    with server:
        env = run_env(server, tmp_path)
        # The preflight probe takes the first 5xx (a 5xx answer counts as reachable); the
        # run's client gets the other three and retries them.
        server.set_faults(errors_5xx=1 + 3)
        # with the import profile: the code location loads without the emulator's packages
        profiled = usage_etl(
            "run", "--warehouse", str(warehouse), env={**env, "PYTHONPROFILEIMPORTTIME": "1"}
        )
        imported = imported_modules(profiled.err)
        assert "pipelines.definitions" in imported, "the import profile was not read"
        assert not {name.split(".")[0] for name in imported} & EMULATOR_PACKAGES, imported
        done = replace(profiled, err=without_import_times(profiled.err))
        assert done.code == 0, done.err
        for line in done.err.splitlines():
            # the warehouse path is the user's (and longer under pytest-xdist); the rest is short
            assert len(line.replace(str(warehouse), "<warehouse>")) <= 160, line
            assert not UUID.search(line), f"full run id in {line!r}"
            assert "Report(" not in line and "{'" not in line, line
            assert "Warning" not in line, line
        assert "Traceback" not in done.err
        run_id = re.search(r"^run ([0-9a-f]{8}) succeeded", done.out, re.M)
        assert run_id, done.out
        assert any(f" {run_id[1]} organizations:" in line for line in done.err.splitlines())
        alerts = re.search(r"^open alerts: (\d+) \((.+)\)$", done.out, re.M)
        assert alerts, done.out
        by_rule = dict(part.rsplit(" ", 1) for part in alerts[2].split(", "))
        assert sum(int(n) for n in by_rule.values()) == int(alerts[1])
        listed = [x for x in done.out.splitlines() if re.match(r"  (critical|warning|info) ", x)]
        assert 0 < len(listed) <= 10
        assert "usage-etl alerts lists every alert" in done.out

        # the request count printed is what the API received from the run, every request once
        sent = re.search(r" (\d+) API requests sent \((\d+) of them retries", done.out)
        assert sent, done.out
        by_run = sum(
            n for agent, n in counter.by_agent.items() if agent.startswith("ubiops-usage/")
        )
        assert counter.by_agent.total() - by_run == 1, f"one preflight probe: {counter.by_agent}"
        assert int(sent[1]) == by_run, "the summary counts every request sent, once"
        assert int(sent[2]) == 3
        assert_row_counts_are_each_partitions_rows(tmp_path / "dagster", warehouse)

        # a response without the deleted-projects key fails the run loudly and keeps the data
        published = "select count(*), sum(credits) from credit_usage"
        before = query_published(warehouse, published)
        server.set_faults(deleted_projects_key="data_removed_projects")
        # the second run through `main()` in process: the same output, one interpreter less
        failed = usage_etl_in_process("run", "--warehouse", str(warehouse), env=env)
        assert failed.code == 1
        assert "Traceback" not in failed.err + failed.out
        assert re.search(r"^run [0-9a-f]{8} FAILED", failed.out, re.M), failed.out
        error = [x for x in failed.out.splitlines() if x.startswith("error: ")]
        assert len(error) == 1 and "data_deleted_projects" in error[0], failed.out
        assert "organization" in error[0], error[0]
        assert len(failed.err.splitlines()) < 20, failed.err
        assert query_published(warehouse, published) == before, (
            "a failed run must not change the published warehouse"
        )


@pytest.mark.long
@pytest.mark.parametrize(
    ("sent", "code", "named"),
    [(signal.SIGINT, 130, "interrupted (Ctrl-C, SIGINT)"), (signal.SIGTERM, 143, "(SIGTERM)")],
)
def test_ctrl_c_ends_a_run_with_exit_130_and_keeps_what_finished(
    tmp_path: Path, sent: signal.Signals, code: int, named: str
) -> None:
    """Ctrl-C in a terminal (SIGINT to the whole process group) while a step waits on the API:
    exit 130 (docs/data-contract.md), the summary says INTERRUPTED, by what, and how to complete
    it, no traceback of the product's own, and the warehouse verifies. SIGTERM (a service
    stopped) alike, named as such (it was reported as Ctrl-C), exit 143."""
    with held_run(tmp_path, capture=True) as held:
        process, warehouse = held.process, held.warehouse
        assert held.holding.held == 1  # sent (the client counted it) and waiting on the API
        os.killpg(process.pid, sent)
        held.holding.release.set()
        out, err = process.communicate(timeout=120)
    assert process.returncode == code, out + err
    assert re.search(r"^run [0-9a-f]{8} INTERRUPTED in ", out, re.MULTILINE), out
    assert "run the same command again" in out and named in out, out
    # the summary counts the requests the run made before it was stopped (the held ones too)
    sent_line = re.search(r"organizations, (\d+) API requests sent", out)
    assert sent_line, out
    assert int(sent_line[1]) == held.holding.run_requests > 2, out
    product_frames = [
        line for line in err.splitlines() if "/pipelines/" in line or "/assets/" in line
    ]
    assert not product_frames, err
    verified = usage_etl_in_process("verify", "--warehouse", str(warehouse))
    assert verified.code == 0 and "all good" in verified.out, verified
