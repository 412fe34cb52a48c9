"""Where the warehouse is (warehouse/location.py): the settings of the Dagster `warehouse`
resource, resolved without Dagster for the read-only commands, the same way and never showing a
secret."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

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


def test_a_writer_name_set_once_names_every_run_of_a_deployment(tmp_path: Path) -> None:
    """Run workers in containers each have a host and a working copy of their own: without
    USAGE_LAKE_WRITER every run is another writer of the lake; with it, all are one."""
    from alerting.lake_state import writer_name

    plain = WarehouseLocation.from_env(LAKE_ENV).lake_config()
    named = WarehouseLocation.from_env({**LAKE_ENV, "USAGE_LAKE_WRITER": " etl-prod "})
    lake = named.lake_config()
    assert plain is not None and plain.writer is None and lake is not None
    assert lake.writer == "etl-prod"
    assert writer_name(tmp_path / "a", lake) == writer_name(tmp_path / "b", lake) == "etl-prod"
    assert writer_name(tmp_path / "a", plain) != writer_name(tmp_path / "b", plain)
    assert writer_name(tmp_path / "a", plain).endswith(str((tmp_path / "a").resolve()))
    blank = WarehouseLocation.from_env({**LAKE_ENV, "USAGE_LAKE_WRITER": "  "}).lake_config()
    assert blank is not None and blank.writer is None
    dagster = Warehouse.from_env(
        lake_catalog="dbname=lake", lake_data="/tmp/lake-data", lake_writer="etl-prod"
    ).lake_config()
    assert dagster is not None and dagster.writer == "etl-prod"
