"""A snapshot of the whole Dagster graph: every asset's key, group, upstream assets, partitions,
backfill policy, kinds and owners; every asset check and whether it blocks; the jobs, schedules
and sensors. Compared with `tests/snapshots/asset_graph.json`, so that a change to the graph is
a visible, reviewed diff.

The definitions are the code location `dg` loads (`code_location_target_module` under
`[tool.dg.project]` in pyproject.toml). When the graph changes on purpose, regenerate with

    UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_asset_graph.py

and commit the new file with the change.
"""

from __future__ import annotations

import importlib
import json
import os
import tomllib
from pathlib import Path
from typing import Any

from dagster import Definitions

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).parent / "snapshots" / "asset_graph.json"
REGENERATE = "UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_asset_graph.py"


def load_definitions() -> Definitions:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dg"]["project"]
    return importlib.import_module(project["code_location_target_module"]).defs


def partitions(partitions_def: Any) -> dict[str, Any] | None:
    if partitions_def is None:
        return None
    described: dict[str, Any] = {"type": type(partitions_def).__name__}
    for name in ("cron_schedule", "fmt", "timezone", "end_offset"):
        if hasattr(partitions_def, name):
            described[name] = getattr(partitions_def, name)
    start = getattr(partitions_def, "start", None)
    if start is not None:
        day = start.strftime("%Y-%m-%d")
        # the first partition is a deployment setting (the tests set their own)
        configured = os.environ.get("USAGE_PARTITIONS_START")
        described["start"] = "$USAGE_PARTITIONS_START" if day == configured else day
    return described


def describe(defs: Definitions) -> dict[str, Any]:
    """The graph as plain, sorted JSON-able data."""
    graph = defs.resolve_asset_graph()
    checks_by_asset: dict[str, dict[str, dict[str, bool]]] = {}
    for check_key in graph.asset_check_keys:
        spec = graph.get_check_spec(check_key)
        asset = check_key.asset_key.to_user_string()
        checks_by_asset.setdefault(asset, {})[check_key.name] = {"blocking": spec.blocking}
    assets = {}
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        name = key.to_user_string()
        assets[name] = {
            "group": node.group_name,
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "partitions": partitions(node.partitions_def),
            "backfill_policy": str(node.backfill_policy) if node.backfill_policy else None,
            "kinds": sorted(node.kinds),
            "owners": sorted(node.owners),
            "checks": dict(sorted(checks_by_asset.get(name, {}).items())),
        }
    return {
        "assets": dict(sorted(assets.items())),
        "jobs": sorted(job.name for job in defs.resolve_all_job_defs()),
        "schedules": {
            s.name: {
                "cron": s.cron_schedule,
                "timezone": s.execution_timezone,
                "default_status": s.default_status.value,
                "job": s.job_name,
            }
            for s in sorted(defs.schedules or [], key=lambda s: s.name)
        },
        "sensors": {
            s.name: {"type": type(s).__name__, "default_status": s.default_status.value}
            for s in sorted(defs.sensors or [], key=lambda s: s.name)
        },
    }


def render(graph: dict[str, Any]) -> str:
    return json.dumps(graph, indent=2, sort_keys=False) + "\n"


def test_asset_graph_matches_the_snapshot() -> None:
    current = render(describe(load_definitions()))
    if os.environ.get("UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(current)
    assert SNAPSHOT.exists(), f"no snapshot yet; make it with `{REGENERATE}`"
    stored = SNAPSHOT.read_text()
    if stored != current:
        import difflib

        diff = "".join(
            difflib.unified_diff(
                stored.splitlines(keepends=True),
                current.splitlines(keepends=True),
                "tests/snapshots/asset_graph.json",
                "the definitions now",
            )
        )
        raise AssertionError(
            "the Dagster asset graph differs from tests/snapshots/asset_graph.json.\n"
            f"If the change is intended, regenerate the snapshot and commit it:\n  {REGENERATE}\n"
            f"{diff}"
        )


def test_the_snapshot_names_the_graph_users_see() -> None:
    """The snapshot holds what the README promises (a broken generator cannot pass unnoticed)."""
    graph = json.loads(SNAPSHOT.read_text())
    assets = graph["assets"]
    assert {a["group"] for a in assets.values()} >= {
        "ubiops_registry",
        "ubiops_usage",
        "usage_insights",
        "warehouse",
    }
    blocking = {
        (asset, check)
        for asset, spec in assets.items()
        for check, flags in spec["checks"].items()
        if flags["blocking"]
    }
    assert ("credit_usage_daily", "projects_add_up") in blocking
    assert ("credit_usage_daily", "complete_days") in blocking
    assert ("credit_usage_periods", "period_reconciliation") in blocking
    assert assets["credit_usage_daily"]["partitions"]["cron_schedule"] == "0 0 1 * *"
    assert "usage_etl" in graph["jobs"]
    assert graph["schedules"]["daily_usage_refresh"]["cron"] == "15 6 * * *"
    assert graph["schedules"]["daily_usage_refresh"]["default_status"] == "STOPPED"
    assert graph["sensors"]["usage_etl_failure_notifier"]["default_status"] == "RUNNING"
