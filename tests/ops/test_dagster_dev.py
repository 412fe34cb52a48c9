"""`dagster dev` on the repository's `workspace.yaml`: the code location loads and the UI shows it.

One `dagster dev` process (webserver and daemon) runs for the module, in its own process group,
with a throwaway `DAGSTER_HOME` and the emulator as the API. The GraphQL API must list every asset
of `pipelines.definitions.defs` with its description, group, owners and checks, and the schedule;
a real headless Chromium must render the asset graph with every asset's name (a screenshot is
kept under `tests/artifacts/`). The definitions must also pass `dagster definitions validate`.
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
from tests.ops.conftest import REPO, free_port, missing
from tests.pipeline.conftest import start_emulator

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


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the whole process group (webserver, daemon, code servers), then make sure."""
    try:
        pgid = os.getpgid(process.pid)
    except ProcessLookupError:
        return
    for sig, grace in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
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
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "USAGE_WAREHOUSE": str(base / "warehouse"),
            "UBIOPS_API_HOST": server.base_url,
            "UBIOPS_API_TOKEN": server.token,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [
                    str(BIN / "dagster"),
                    "dev",
                    "-w",
                    "workspace.yaml",
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                ],
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
    assert repo["location"]["name"] == "pipelines.definitions"
    assert "usage_etl" in {job["name"] for job in repo["jobs"]}
    schedules = {s["name"]: s for s in repo["schedules"]}
    refresh = schedules["daily_usage_refresh"]
    assert refresh["pipelineName"] == "usage_etl"
    assert refresh["cronSchedule"] == "15 6 * * *"
    assert refresh["executionTimezone"] == "UTC"
    assert refresh["scheduleState"]["status"] == "STOPPED", "must be turned on deliberately"


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


def test_dagster_definitions_validate(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_CONFIG)
    env = {**os.environ, "DAGSTER_HOME": str(home), "USAGE_WAREHOUSE": str(tmp_path / "wh")}
    dagster = shutil.which("dagster", path=str(BIN)) or str(BIN / "dagster")
    done = subprocess.run(
        [dagster, "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
