"""Issue 13.3 end to end, through `usage-etl run` against the loopback emulator: a channel whose
variable is unset stops the run before any request; once set, its messages arrive once; a
channel that is down at send time blocks neither publishing nor the other channels and gets its
messages on a later run, exactly once, even after the alert state file was deleted."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from alerting.state import state_path
from emulator.server import EmulatorConfig, EmulatorServer
from pipelines.cli import main
from tests.services.warehouse_files import query_published

from .conftest import WEBHOOK_SECRET

SLACK_ENV = "NOTIFY_E2E_SLACK_URL"


@pytest.fixture
def emulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    config = EmulatorConfig(
        seed=11, rate_limit_per_minute=0, now=datetime.now(UTC).replace(microsecond=0)
    )
    with EmulatorServer(config, host="127.0.0.1", port=0) as server:
        monkeypatch.setenv("UBIOPS_API_HOST", server.base_url)
        monkeypatch.setenv("UBIOPS_API_TOKEN", server.token)
        # the run command writes these into the environment: monkeypatch restores them
        monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
        monkeypatch.setenv("USAGE_WAREHOUSE", str(tmp_path / "warehouse"))
        monkeypatch.setenv("USAGE_QUOTAS", str(tmp_path / "quotas.yaml"))
        yield server


def test_misconfigured_and_failing_channels_lose_and_block_nothing(
    emulator, tmp_path, make_receiver, monkeypatch, capsys, caplog
) -> None:
    slack = make_receiver(secret=None)
    webhook = make_receiver()
    webhook_port = webhook.port
    webhook.stop()  # down when the first run delivers
    warehouse = tmp_path / "warehouse"
    quotas = tmp_path / "quotas.yaml"
    base = yaml.safe_load(Path("quotas.example.yaml").read_text())
    base["channels"] = {
        "log": True,
        "slack": {"url_env": SLACK_ENV, "timeout_seconds": 5},
        "webhook": {"url": webhook.url, "secret": WEBHOOK_SECRET, "timeout_seconds": 2},
    }
    quotas.write_text(yaml.safe_dump(base))
    run = ["run", "--quotas", str(quotas), "--warehouse", str(warehouse)]

    monkeypatch.delenv(SLACK_ENV, raising=False)
    assert main(run) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"usage-etl run: {quotas}: channels.slack: no webhook URL: environment variable "
        f"{SLACK_ENV} is not set"
    ]
    assert not (tmp_path / "dagster").exists(), "no Dagster run may start"
    assert not (warehouse / "usage.duckdb").exists()

    monkeypatch.setenv(SLACK_ENV, slack.url)
    assert main(run) == 0, capsys.readouterr()
    unsuppressed = "select count(*) from quota_alerts where not suppressed"
    alerts = query_published(warehouse, unsuppressed)[0][0]
    assert alerts > 0 and len(slack.received) == alerts
    by_channel = dict(
        query_published(
            warehouse,
            "select channel || ':' || status, count(*) from alert_outbox"
            " where status <> 'suppressed' group by all",
        )
    )
    assert by_channel == {
        "log:delivered": alerts,
        "slack:delivered": alerts,
        "webhook:pending": alerts,
    }, "the down webhook keeps its messages pending; the warehouse is published anyway"
    [(error,)] = query_published(
        warehouse, "select distinct last_error from alert_outbox where last_error is not null"
    )
    assert error.startswith(f"webhook: POST to http://127.0.0.1:{webhook_port} failed")

    # the state file is lost, the webhook comes back, the next run delivers what was pending
    for suffix in ("", "-wal", "-shm"):
        Path(f"{state_path(warehouse)}{suffix}").unlink(missing_ok=True)
    webhook.start()
    assert webhook.port == webhook_port
    caplog.set_level(logging.WARNING, logger="alerting")
    capsys.readouterr()
    assert main(run) == 0
    # on the command line `alerting` records go to the notifications log, not stderr
    notifications_log = (warehouse / "state" / "notifications.log").read_text()
    assert "WARNING alert state" in notifications_log
    assert "was missing: recovered" in notifications_log
    assert len(slack.received) == alerts, "delivered messages must not be sent again"
    # the message whose send failed keeps its backoff (restored with the state); --retry
    # sends it now
    assert len(webhook.received) == alerts - 1 and webhook.rejected == 0
    assert main(["alerts", "--retry", "--quotas", str(quotas), "--warehouse", str(warehouse)]) == 0
    assert len(webhook.received) == alerts and webhook.rejected == 0
    ids = [h["webhook-id"] for h in webhook.headers]
    assert len(set(ids)) == alerts
    statuses = query_published(
        warehouse, "select distinct status from alert_outbox where status <> 'suppressed'"
    )
    assert statuses == [("delivered",)]
    everything = capsys.readouterr()
    for secret in ("url-token-xyz", WEBHOOK_SECRET.removeprefix("whsec_")):
        assert secret not in everything.out + everything.err + caplog.text + notifications_log
