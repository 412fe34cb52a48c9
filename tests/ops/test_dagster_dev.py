"""`dg` from the project root (`[tool.dg]` in pyproject.toml) and `workspace.yaml`: the code
location loads, the UI shows it, `dg launch` runs a partition range, and nothing warns.

One `dg dev` process (webserver and daemon) runs for the module, in its own process group, with a
throwaway `DAGSTER_HOME` and the emulator as the API. The GraphQL API must list every asset of
`pipelines.definitions.defs` with its description, group, owners and checks, the schedule (off
until turned on) and the failure sensor (running by default); a real headless Chromium must
render the asset graph with every asset's name (a screenshot is kept under `tests/artifacts/`).
`dg check defs`, `dg list defs` and `dagster definitions validate -w workspace.yaml` must pass
without a Supersession or Beta warning, and `dg launch --assets ... --partition-range ...` must
load two months from the emulator in one run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipelines.definitions import defs
from tests.services.cli import REPO
from tests.services.emulator import start_emulator
from tests.services.postgres import free_port, missing

BIN = Path(sys.executable).parent
ARTIFACTS = REPO / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
START_DEADLINE = 180.0
# `nux` off: the first-visit "join the community" dialog would cover the graph.
INSTANCE_CONFIG = "telemetry:\n  enabled: false\nnux:\n  enabled: false\n"
LOCATION = "ubiops_usage"
WARNINGS = ("SupersessionWarning", "BetaWarning", "PreviewWarning", "DeprecationWarning")


def dg_env(home: Path, warehouse: Path, **extra: str) -> dict[str, str]:
    """The environment of a user who activated `.venv` (what `dg` expects) with a fresh home."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("UBIOPS_", "USAGE_", "DAGSTER_"))
    }
    env.update(
        {
            "DAGSTER_HOME": str(home),
            "USAGE_WAREHOUSE": str(warehouse),
            "VIRTUAL_ENV": str(BIN.parent),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            **extra,
        }
    )
    return env


def dg(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "dg"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def assert_no_framework_warnings(text: str) -> None:
    found = [w for w in WARNINGS if w in text]
    assert not found, f"{found} in:\n{text[-3000:]}"


GRAPHQL_QUERY = """
query UsageDefinitions {
  assetNodes {
    assetKey { path }
    description
    groupName
    owners {
      ... on TeamAssetOwner { team }
      ... on UserAssetOwner { email }
    }
    assetChecksOrError {
      ... on AssetChecks { checks { name } }
      ... on AssetCheckNeedsMigrationError { message }
    }
  }
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes {
        name
        location { name }
        jobs { name }
        schedules {
          name
          cronSchedule
          executionTimezone
          pipelineName
          scheduleState { status }
        }
        sensors {
          name
          sensorState { status }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


@dataclass
class DagsterDev:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def graphql(self, query: str) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.loads(response.read())
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def _wait_for_webserver(dev: DagsterDev) -> None:
    """Poll until the webserver answers and the code location has loaded, or fail."""
    deadline = time.monotonic() + START_DEADLINE
    last = ""
    while time.monotonic() < deadline:
        if dev.process.poll() is not None:
            pytest.fail(f"dagster dev exited with {dev.process.returncode}:\n{dev.log_tail()}")
        try:
            with urllib.request.urlopen(f"{dev.url}/server_info", timeout=5) as response:
                if response.status == 200:
                    repos = dev.graphql(
                        "{ repositoriesOrError { ... on RepositoryConnection { nodes { name } } } }"
                    )["repositoriesOrError"]
                    if repos.get("nodes"):
                        return
                    last = f"code location not loaded yet: {repos}"
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            last = repr(exc)
        time.sleep(0.25)
    pytest.fail(f"dagster dev not ready in {START_DEADLINE}s ({last}):\n{dev.log_tail()}")


# How long `dg dev` gets to stop after SIGTERM before the group is killed. Its orderly shutdown
# (webserver, daemon, code servers) takes longer than 30 s, with SIGTERM or SIGINT, to the group
# or to the leader alone: waiting 30 s only delayed the same SIGKILL by as much, on one worker.
STOP_GRACE = 3.0


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the whole process group (webserver, daemon, code servers), then make sure."""
    try:
        pgid = os.getpgid(process.pid)
    except ProcessLookupError:
        return
    for sig, grace in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; children may linger briefly in the group.
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterDev]:
    base = tmp_path_factory.mktemp("dagster-dev")
    home = base / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_CONFIG)
    port = free_port()
    log = base / "dagster-dev.log"
    with start_emulator() as server:
        env = dg_env(
            home,
            base / "warehouse",
            UBIOPS_API_HOST=server.base_url,
            UBIOPS_API_TOKEN=server.token,
        )
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [str(BIN / "dg"), "dev", "--host", "127.0.0.1", "--port", str(port)],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        dev = DagsterDev(f"http://127.0.0.1:{port}", process, log)
        try:
            _wait_for_webserver(dev)
            yield dev
        finally:
            _stop(process)


def _expected_assets() -> dict[str, dict]:
    graph = defs.resolve_asset_graph()
    checks: dict[str, set[str]] = {}
    for check_key in graph.asset_check_keys:
        checks.setdefault(check_key.asset_key.to_user_string(), set()).add(check_key.name)
    expected = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        expected[name] = {
            "description": node.description,
            "group": node.group_name,
            "owners": sorted(node.owners),
            "checks": checks.get(name, set()),
        }
    return expected


def _owner(entry: dict) -> str:
    return f"team:{entry['team']}" if "team" in entry else entry["email"]


@pytest.mark.xdist_group("dagster_dev")  # one `dg dev` serves both, on one worker
def test_graphql_lists_every_asset_check_and_the_schedule(dagster_dev: DagsterDev) -> None:
    data = dagster_dev.graphql(GRAPHQL_QUERY)
    served = {"/".join(node["assetKey"]["path"]): node for node in data["assetNodes"]}
    expected = _expected_assets()
    assert set(served) == set(expected)
    for name, want in expected.items():
        node = served[name]
        assert want["description"], f"{name} has no description in the definitions"
        assert node["description"] == want["description"], name
        assert node["groupName"] == want["group"], name
        assert sorted(_owner(o) for o in node["owners"]) == want["owners"], name
        assert want["owners"], f"{name} has no owner"
        checks = node["assetChecksOrError"]
        assert "checks" in checks, checks
        assert {c["name"] for c in checks["checks"]} == want["checks"], name

    repositories = data["repositoriesOrError"]["nodes"]
    assert len(repositories) == 1
    repo = repositories[0]
    assert repo["location"]["name"] == LOCATION
    assert "usage_etl" in {job["name"] for job in repo["jobs"]}
    schedules = {s["name"]: s for s in repo["schedules"]}
    refresh = schedules["daily_usage_refresh"]
    assert refresh["pipelineName"] == "usage_etl"
    assert refresh["cronSchedule"] == "15 6 * * *"
    assert refresh["executionTimezone"] == "UTC"
    assert refresh["scheduleState"]["status"] == "STOPPED", "must be turned on deliberately"
    sensors = {s["name"]: s["sensorState"]["status"] for s in repo["sensors"]}
    assert sensors == {"usage_etl_failure_notifier": "RUNNING"}
    assert_no_framework_warnings(dagster_dev.log_tail())


@pytest.mark.xdist_group("dagster_dev")  # one `dg dev` serves both, on one worker
def test_ui_renders_the_asset_graph_in_chromium(dagster_dev: DagsterDev) -> None:
    if not CHROMIUM.exists():
        missing(f"Chromium ({CHROMIUM}, Debian package `chromium`)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    names = sorted(_expected_assets())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "dagster-asset-graph.png"
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1400})
            page.goto(f"{dagster_dev.url}/asset-groups", wait_until="domcontentloaded")
            # The global lineage shows groups collapsed; wait for one, then "Expand all groups"
            # (its keyboard shortcut, Alt+E) so every asset gets a node of its own.
            groups = sorted({want["group"] for want in _expected_assets().values()})
            page.get_by_text(groups[0], exact=True).first.wait_for(timeout=60_000)
            page.keyboard.press("Alt+e")
            try:
                page.wait_for_function(
                    "names => names.every(n => { const t = document.body.innerText;"
                    " return t.includes(n) || (t.includes(n.slice(0, 9)) &&"
                    " t.includes(n.slice(-7))); })",
                    arg=names,
                    timeout=60_000,
                )
            finally:
                page.screenshot(path=str(shot), full_page=True)
            text = page.inner_text("body")
            # Long names are shortened in the middle on graph nodes ("credit_us…_periods").
            missing_names = [
                n for n in names if n not in text and not (n[:9] in text and n[-7:] in text)
            ]
            assert not missing_names, f"not on the asset graph page: {missing_names}"
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000


def test_definitions_are_loadable() -> None:
    from dagster import Definitions

    Definitions.validate_loadable(defs)


@dataclass
class Finished:
    """A command that ran to its end: exit code and output."""

    returncode: int
    stdout: str
    stderr: str


def run_concurrently(commands: dict[str, tuple[list[str], dict[str, str]]]) -> dict[str, Finished]:
    """Start every command at once (from the repository root), then wait for all of them."""
    started = {}
    for name, (argv, env) in commands.items():
        started[name] = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
    done = {}
    try:
        for name, process in started.items():
            out, err = process.communicate(timeout=600)
            done[name] = Finished(process.returncode, out, err)
    finally:
        for process in started.values():
            if process.poll() is None:
                process.kill()
                process.communicate()
    return done


@pytest.fixture(scope="module")
def loading_commands(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Finished]:
    """`dagster definitions validate -w workspace.yaml`, `dg check defs` and `dg list defs
    --json`, each with a fresh home of its own, run side by side (each only loads the code
    location; none writes anything another reads)."""
    commands = {}
    for name in ("validate", "check", "list"):
        base = tmp_path_factory.mktemp(name)
        home = base / "dagster_home"
        home.mkdir()
        (home / "dagster.yaml").write_text(INSTANCE_CONFIG)
        commands[name] = dg_env(home, base / "wh")
    dagster = shutil.which("dagster", path=str(BIN)) or str(BIN / "dagster")
    validate = [dagster, "definitions", "validate", "-w", "workspace.yaml"]
    validate_env = {
        **os.environ,
        "DAGSTER_HOME": commands["validate"]["DAGSTER_HOME"],
        "USAGE_WAREHOUSE": commands["validate"]["USAGE_WAREHOUSE"],
    }
    return run_concurrently(
        {
            "validate": (validate, validate_env),
            "check": ([str(BIN / "dg"), "check", "defs"], commands["check"]),
            "list": ([str(BIN / "dg"), "list", "defs", "--json"], commands["list"]),
        }
    )


@pytest.mark.long
@pytest.mark.xdist_group("loading_commands")  # the three commands run once, side by side
def test_dagster_definitions_validate(loading_commands: dict[str, Finished]) -> None:
    done = loading_commands["validate"]
    assert done.returncode == 0, done.stdout + done.stderr
    # (this command itself is superseded by `dg check defs`, and says so: that is its only note)
    warnings = [w for w in WARNINGS if w in done.stdout + done.stderr]
    assert warnings in ([], ["SupersessionWarning"]), done.stderr
    assert "Use 'dg check defs' instead" in done.stderr or not warnings


@pytest.mark.long
@pytest.mark.xdist_group("loading_commands")  # the three commands run once, side by side
def test_dg_check_and_list_defs(loading_commands: dict[str, Finished]) -> None:
    checked = loading_commands["check"]
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
    assert_no_framework_warnings(checked.stdout + checked.stderr)
    listed = loading_commands["list"]
    assert listed.returncode == 0, listed.stderr
    payload = json.loads(listed.stdout)
    keys = {a["asset_key"] for a in payload["assets"]}
    assert keys == set(_expected_assets())
    assert {j["name"] for j in payload["jobs"]} >= {"usage_etl"}
    assert {s["name"] for s in payload["sensors"]} == {"usage_etl_failure_notifier"}
    checks = {c["key"] for c in payload["asset_checks"]}
    assert {"credit_usage_daily:projects_add_up", "credit_usage_daily:complete_days"} <= checks


@pytest.mark.long
def test_dg_launch_loads_a_partition_range_in_one_run(tmp_path: Path) -> None:
    """The whole job over two months, then two assets re-pulled over the same range (one
    organization: the runs and the months are the point, not how many organizations)."""
    import duckdb
    from dagster import DagsterInstance

    from common.periods import shift_month

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_CONFIG)
    warehouse = tmp_path / "wh"
    with start_emulator(organizations=1) as server:
        now = server.state.now().date()
        year, month = shift_month(now.year, now.month, -1)
        first, last = f"{year}-{month:02d}-01", f"{now.year}-{now.month:02d}-01"
        span = f"{first}...{last}"
        api = {"UBIOPS_API_HOST": server.base_url, "UBIOPS_API_TOKEN": server.token}
        env = dg_env(home, warehouse, **api)
        whole = dg("launch", "--job", "usage_etl", "--partition-range", span, env=env)
        assert whole.returncode == 0, (whole.stdout + whole.stderr)[-4000:]
        assets = "credit_usage_daily,credit_usage_periods"
        again = dg("launch", "--assets", assets, "--partition-range", span, env=env)
        assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    for done in (whole, again):
        assert_no_framework_warnings(done.stdout + done.stderr)
    con = duckdb.connect(str(warehouse / "usage.duckdb"), read_only=True)
    try:
        months = con.execute(
            "SELECT DISTINCT strftime(start_date, '%Y-%m-01') FROM credit_usage "
            "WHERE interval = 'day' ORDER BY 1"
        ).fetchall()
    finally:
        con.close()
    assert [m[0] for m in months] == [first, last]
    instance = DagsterInstance.from_config(str(home))
    try:
        runs = instance.get_runs()
        assert len(runs) == 2, "one run per launch for the whole range (single-run backfills)"
        assert all(run.is_success for run in runs)
    finally:
        instance.dispose()
