"""Settings reach a run as Dagster resources: secrets as `EnvVar`s (only their names are stored),
flags as resource overrides, and nothing is written into the process environment."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from dagster import DagsterInstance, EnvVar
from dagster._serdes import serialize_value

from assets.resources import UbiOpsApi, resources_from_env
from common.errors import ConfigError
from pipelines.commands.run_cmd import execute
from tests.services.emulator import start_emulator


def test_secrets_become_env_vars_and_plain_settings_values() -> None:
    environ = {
        "UBIOPS_API_HOST": "https://api.example.test/v2.1",
        "UBIOPS_API_TOKEN": "Token s3cr3t-api",
        "USAGE_WAREHOUSE": "/srv/usage",
        "USAGE_QUOTAS": "/etc/usage/quotas.yaml",
        "USAGE_LAKE_CATALOG": "postgresql://lake:pw-9c1@db/lake",
        "USAGE_LAKE_DATA": "s3://bucket/lake",
        "AWS_SECRET_ACCESS_KEY": "aws-s3cr3t",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    resources = resources_from_env(environ=environ)
    api, warehouse = resources["ubiops"], resources["warehouse"]
    assert isinstance(api, UbiOpsApi)
    assert api.host == "https://api.example.test/v2.1"
    assert isinstance(api.token, EnvVar) and api.token.env_var_name == "UBIOPS_API_TOKEN"
    assert warehouse.path == "/srv/usage"  # type: ignore[attr-defined]
    assert resources["alerting"].quotas == "/etc/usage/quotas.yaml"  # type: ignore[attr-defined]
    assert isinstance(warehouse.lake_catalog, EnvVar)  # type: ignore[attr-defined]
    assert isinstance(warehouse.s3_secret, EnvVar)  # type: ignore[attr-defined]
    assert warehouse.s3_region == "eu-west-1"  # type: ignore[attr-defined]
    shown = repr(resources)
    for secret in ("s3cr3t-api", "pw-9c1", "aws-s3cr3t"):
        assert secret not in shown


def test_flags_override_the_environment_and_unset_flags_do_not() -> None:
    environ = {"USAGE_WAREHOUSE": "/srv/usage", "USAGE_QUOTAS": "/etc/q.yaml"}
    resources = resources_from_env(
        {"warehouse": {"path": "/tmp/elsewhere"}, "alerting": {"quotas": None}}, environ=environ
    )
    assert resources["warehouse"].path == "/tmp/elsewhere"  # type: ignore[attr-defined]
    assert resources["alerting"].quotas == "/etc/q.yaml"  # type: ignore[attr-defined]


def test_a_missing_token_is_a_clear_error_at_use() -> None:
    api = resources_from_env(environ={"UBIOPS_API_HOST": "http://127.0.0.1:9"})["ubiops"]
    with pytest.raises(ConfigError, match="UBIOPS_API_TOKEN is not set"):
        api.client()  # type: ignore[attr-defined]


def test_a_run_stores_only_the_token_name_and_leaves_the_environment_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "Token house-secret-7d2a9"
    warehouse, home = tmp_path / "warehouse", tmp_path / "dagster"
    for name in ("USAGE_WAREHOUSE", "DAGSTER_HOME", "USAGE_QUOTAS", "UBIOPS_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with start_emulator(token=secret.removeprefix("Token ")) as server:
        monkeypatch.setenv("UBIOPS_API_HOST", server.base_url)
        monkeypatch.setenv("UBIOPS_API_TOKEN", secret)
        today = datetime.now(UTC).date()
        before = dict(os.environ)
        summary = execute(
            date(today.year, today.month, 1),
            today,
            log_level="WARNING",
            overrides={"warehouse": {"path": str(warehouse)}},
            dagster_home=home,
        )
        assert dict(os.environ) == before, "a run must not write the process environment"
    assert summary.success, summary.lines()
    assert (warehouse / "usage.duckdb").exists(), "the warehouse override was used"
    with DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(summary.run_id)
        assert run is not None
        stored = serialize_value(run)
        stored += serialize_value(instance.get_job_snapshot(run.job_snapshot_id))
        plan_id = run.execution_plan_snapshot_id
        stored += serialize_value(instance.get_execution_plan_snapshot(plan_id))
        stored += "".join(str(e) for e in instance.all_logs(summary.run_id))
    assert "UBIOPS_API_TOKEN" in stored, "the job snapshot names the variable"
    assert secret.removeprefix("Token ") not in stored
