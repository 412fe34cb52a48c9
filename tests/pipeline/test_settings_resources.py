"""Settings reach a run as Dagster resources: secrets as `EnvVar`s (only their names are stored),
flags as resource overrides, and nothing is written into the process environment.

That a real run stores only the token's variable name, uses its overrides and leaves
`os.environ` alone is checked on the bad-day run of tests/pipeline/test_faults.py (one run
carries both)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dagster import EnvVar

from assets.resources import UbiOpsApi, resources_from_env
from common.errors import ConfigError


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


def test_a_secret_flag_is_an_env_var_of_a_private_variable_held_for_the_block_only() -> None:
    from assets.resources import LAKE_CATALOG_FLAG_VARIABLE, secret_flag

    assert LAKE_CATALOG_FLAG_VARIABLE not in os.environ
    before = dict(os.environ)
    with secret_flag(LAKE_CATALOG_FLAG_VARIABLE, "dbname=lake password=flag-pw-51") as value:
        assert isinstance(value, EnvVar) and value.env_var_name == LAKE_CATALOG_FLAG_VARIABLE
        assert value.get_value() == "dbname=lake password=flag-pw-51"
    assert dict(os.environ) == before
    with secret_flag(LAKE_CATALOG_FLAG_VARIABLE, None) as value:
        assert value is None and dict(os.environ) == before


@pytest.mark.parametrize("command", [["run"], ["query", "select 1"], ["verify"]])
def test_lake_flags_leave_the_environment_as_it_was(
    command: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The flags go to the `warehouse` resource, not into `os.environ`: an unreachable catalog
    (port 1) is a one-line exit 2 that names neither the password nor anything left behind."""
    from pipelines.cli import main

    for name in ("USAGE_LAKE_CATALOG", "USAGE_LAKE_DATA", "UBIOPS_API_HOST", "UBIOPS_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    warehouse = tmp_path / "warehouse"
    (warehouse / "parquet").mkdir(parents=True)
    catalog = "postgresql://lake:flag-pw-73@127.0.0.1:1/lake?connect_timeout=2"
    flags = ["--lake-catalog", catalog, "--lake-data", str(tmp_path / "lake")]
    before = dict(os.environ)
    code = main([*command, "--warehouse", str(warehouse), *flags])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "cannot attach the lake" in err
    assert "flag-pw-73" not in err
    assert dict(os.environ) == before
