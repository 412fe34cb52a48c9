"""Where the warehouse is (warehouse/location.py): the settings of the Dagster `warehouse`
resource, resolved without Dagster for the read-only commands, the same way and never showing a
secret."""

from __future__ import annotations

from dataclasses import fields

import pytest

from assets.resources import Warehouse
from common import settings
from warehouse.location import ENVIRONMENT, WarehouseLocation

LAKE_ENV = {
    "USAGE_WAREHOUSE": "/srv/usage",
    "USAGE_LAKE_CATALOG": "postgresql://lake:pw-4e7f@db.example.test/lake",
    "USAGE_LAKE_DATA": "s3://bucket/lake",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
    "AWS_ACCESS_KEY_ID": "key-id-77",
    "AWS_SECRET_ACCESS_KEY": "aws-s3cr3t-91",
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_SESSION_TOKEN": "session-tok-35",
}
SECRETS = ("pw-4e7f", "aws-s3cr3t-91", "session-tok-35")


def test_the_environment_names_the_warehouse_and_the_lake() -> None:
    location = WarehouseLocation.from_env(LAKE_ENV)
    assert location.root.as_posix() == "/srv/usage"
    lake = location.lake_config()
    assert lake is not None
    assert lake.data_path.rstrip("/") == "s3://bucket/lake"
    assert lake.s3_endpoint == "http://127.0.0.1:9000"  # the fallback variable
    assert lake.s3_region == "eu-west-1"
    assert lake.s3_secret == "aws-s3cr3t-91" and lake.s3_session_token == "session-tok-35"
    assert "password=pw-4e7f" in lake.catalog
    shown = repr(location) + lake.redacted() + repr(lake)
    for secret in SECRETS:
        assert secret not in shown


def test_flags_win_and_unset_flags_leave_the_environment() -> None:
    location = WarehouseLocation.from_env(
        LAKE_ENV, path="/tmp/elsewhere", lake_data="/tmp/lake-data", lake_catalog=None
    )
    assert location.root.as_posix() == "/tmp/elsewhere"
    lake = location.lake_config()
    assert lake is not None and lake.data_path.rstrip("/") == "/tmp/lake-data"
    assert "dbname=lake" in lake.catalog  # still the environment's catalog


def test_without_settings_it_is_the_default_directory_and_no_lake() -> None:
    location = WarehouseLocation.from_env({})
    assert location.path == settings.DEFAULT_WAREHOUSE
    assert location.lake_config() is None
    s3_only = {k: v for k, v in LAKE_ENV.items() if k.startswith("AWS_")}
    assert WarehouseLocation.from_env(s3_only).lake_config() is None  # S3 keys alone: no lake


def test_half_a_lake_is_the_same_one_line_error_as_in_a_run() -> None:
    from common.errors import LakeConfigError

    with pytest.raises(LakeConfigError, match=r"USAGE_LAKE_DATA \(--lake-data\) is set but"):
        WarehouseLocation.from_env({"USAGE_LAKE_DATA": "s3://bucket/lake"}).lake_config()


def test_an_unknown_setting_is_refused() -> None:
    with pytest.raises(TypeError, match="lake_path"):
        WarehouseLocation.from_env({}, lake_path="/x")


def test_the_dagster_resource_has_these_fields_and_resolves_them_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One declaration: the resource's fields are `ENVIRONMENT`'s, and with secrets as
    `EnvVar`s (resolved from the process environment) it finds the same warehouse and lake."""
    assert set(Warehouse.model_fields) == set(ENVIRONMENT)
    assert Warehouse.model_fields["path"].default == next(
        f.default for f in fields(WarehouseLocation) if f.name == "path"
    )
    for name, value in LAKE_ENV.items():
        monkeypatch.setenv(name, value)
    resource = Warehouse.from_env()
    location = WarehouseLocation.from_env()
    assert resource.location() == location
    assert resource.root == location.root
    assert resource.lake_config() == location.lake_config()
    overridden = Warehouse.from_env(path="/tmp/other", lake_data="/tmp/d").location()
    assert overridden == WarehouseLocation.from_env(path="/tmp/other", lake_data="/tmp/d")
