"""`alerting.lake_state.take_in_lake_state` when the lake attaches but its alert tables cannot
be read (the object store or the catalog failing mid-read): a `LakeError` naming it, without a
secret, which `usage-etl alerts` turns into its listing of this writer's own state."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from alerting import lake_state
from alerting.store import AlertStore
from common.errors import LakeError
from warehouse.lake import LakeConfig

CONFIG = LakeConfig(
    catalog="host=127.0.0.1 dbname=lake user=etl password=catalog-pass",
    data_path="s3://bucket/usage",
    s3_secret="s3-secret-key",
)


def test_alert_tables_that_cannot_be_read_are_a_lake_error_without_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lake_state, "connect", lambda config, read_only: duckdb.connect())

    def unreadable(con: duckdb.DuckDBPyConnection) -> None:
        raise duckdb.IOException(
            "IO Error: HTTP GET error on 's3://bucket/usage/alert_outbox/x.parquet' "
            "(secret s3-secret-key)"
        )

    monkeypatch.setattr(lake_state, "_lake_rows", unreadable)
    with (
        AlertStore(tmp_path / "alerts.sqlite") as store,
        pytest.raises(LakeError, match="alert tables") as raised,
    ):
        lake_state.take_in_lake_state(CONFIG, store)
    assert "s3-secret-key" not in str(raised.value)
