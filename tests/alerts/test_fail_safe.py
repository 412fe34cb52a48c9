"""Issue 13.3/13.4: notification mistakes never lose or block alerts, and every number in the
quota file has a range. Bad configuration is one line on stderr, exit 2, before any request."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from alerting import LogChannel, build_channels, deliver_pending
from alerting.evaluate import compute_alerts
from alerting.state import open_state, record_tables, state_path
from alerting.store import AlertStore
from insights.quotas import load_quotas, parse_quotas
from pipelines.cli import main

from .conftest import WEBHOOK_SECRET, free_port, organizations_frame, usage_frame

NOW = datetime(2024, 3, 11, 6, 0)
ORGS = organizations_frame(("o1", "free", "2024-03-01", "2024-04-01"))


def candidates() -> pd.DataFrame:
    usage = usage_frame("o1", "2024-02-20", {"p1": [85.0] * 20})
    return compute_alerts(
        usage, ORGS, load_quotas(), as_of="2024-03-10", rules=("credit_actual",)
    ).candidates


@pytest.fixture
def no_api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An API host nobody listens on: a run that got as far as a request would fail loudly."""
    monkeypatch.setenv("UBIOPS_API_HOST", f"http://127.0.0.1:{free_port()}/v2.1")
    monkeypatch.setenv("UBIOPS_API_TOKEN", "Token not-used")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    # the run command writes these into the environment: monkeypatch restores them
    monkeypatch.setenv("USAGE_WAREHOUSE", str(tmp_path / "warehouse"))
    monkeypatch.setenv("USAGE_QUOTAS", str(tmp_path / "unused.yaml"))
    return tmp_path / "warehouse"


def run_with(tmp_path: Path, yaml_text: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    quotas = tmp_path / "quotas.yaml"
    quotas.write_text(yaml_text)
    code = main(["run", "--quotas", str(quotas), "--warehouse", str(tmp_path / "warehouse")])
    captured = capsys.readouterr()
    assert captured.out == ""
    return code, captured.err.strip()


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "channels:\n  slack:\n    url_env: NOTIFY_TEST_UNSET_SLACK_URL\n",
            "quotas.yaml: channels.slack: no webhook URL: environment variable "
            "NOTIFY_TEST_UNSET_SLACK_URL is not set",
        ),
        (
            f"channels:\n  webhook:\n    secret: {WEBHOOK_SECRET}\n",
            "quotas.yaml: channels.webhook: no URL (url or url_env)",
        ),
        (
            "channels:\n  webhook:\n    url: https://hooks.example.test/x?token=abc123\n",
            "quotas.yaml: channels.webhook: no signing secret (secret or secret_env)",
        ),
        (
            "channels:\n  webhook:\n    url: https://hooks.example.test/x\n    secret: nope\n",
            "quotas.yaml: channels.webhook: the signing secret is not a Standard Webhooks "
            "secret (whsec_<base64>)",
        ),
        (
            "channels:\n  slack:\n    url: not a url\n",
            "quotas.yaml: channels.slack: the webhook URL is not an http(s) URL with a host",
        ),
        (
            "channels:\n  email:\n    host: smtp.example.test\n    from: alerts\n",
            "quotas.yaml: channels.email.from: expected an e-mail address such as "
            "alerts@example.com, got 'alerts'",
        ),
        (
            "channels:\n  ops:\n    type: apprise\n    urls_env: NOTIFY_TEST_UNSET_APPRISE\n",
            "quotas.yaml: channels.ops: no Apprise URLs: environment variable "
            "NOTIFY_TEST_UNSET_APPRISE is not set",
        ),
        (
            "rules:\n  forecast_interval: 5\n",
            "quotas.yaml: rules.forecast_interval: expected a finite number > 0 and < 1, got 5",
        ),
        (
            "subscriptions:\n  free:\n    credit_budget: .inf\n",
            "quotas.yaml: subscriptions.free.credit_budget: expected a finite number >= 0, got inf",
        ),
        (
            "default:\n  resources: {projects: -1}\n",
            "quotas.yaml: default.resources.projects: expected an integer >= 0, got -1",
        ),
        (
            "rules:\n  resource_thresholds: [0]\n",
            "quotas.yaml: rules.resource_thresholds.0: expected a finite number > 0, got 0",
        ),
        (
            "rules:\n  anomaly: {sensitivity: .nan}\n",
            "quotas.yaml: rules.anomaly.sensitivity: expected a finite number > 0, got nan",
        ),
        (
            "channels:\n  slack:\n    url: https://hooks.example.test/x\n    timeout_seconds: 0\n",
            "quotas.yaml: channels.slack.timeout_seconds: expected a finite number > 0, got 0",
        ),
        (
            "delivery:\n  max_attempts: 0\n",
            "quotas.yaml: delivery.max_attempts: expected an integer >= 1, got 0",
        ),
    ],
)
def test_bad_configuration_exits_2_before_any_request(
    yaml_text: str, expected: str, no_api: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.delenv("NOTIFY_TEST_UNSET_SLACK_URL", raising=False)
    monkeypatch.delenv("NOTIFY_TEST_UNSET_APPRISE", raising=False)
    code, err = run_with(tmp_path, yaml_text, capsys)
    assert code == 2
    # the quota file is named as given (`--quotas PATH`), not by its name alone
    assert err == f"usage-etl run: {tmp_path}/{expected}"
    assert "abc123" not in err
    assert not (no_api / "usage.duckdb").exists(), "no run may start"
    assert not (tmp_path / "dagster").exists(), "no Dagster run may start"


def test_unset_variable_at_send_time_keeps_messages_pending_until_it_is_set(
    tmp_path, make_receiver, monkeypatch
) -> None:
    """A scheduled run whose environment lacks the variable: nothing fails, nothing is lost."""
    receiver = make_receiver(secret=None)
    monkeypatch.delenv("NOTIFY_TEST_SLACK_URL", raising=False)
    raw = {"channels": {"log": True, "slack": {"url_env": "NOTIFY_TEST_SLACK_URL"}}}
    config = parse_quotas(raw)
    with AlertStore(tmp_path / "a.sqlite") as store:
        store.sync(candidates(), config.channels.enabled(), NOW)
        first = deliver_pending(store, build_channels(config.channels), NOW)
        assert first.delivered == 1  # the log channel is not blocked
        assert first.errors == [
            "slack: not configured correctly: no webhook URL: environment variable "
            "NOTIFY_TEST_SLACK_URL is not set"
        ]
        slack = store.outbox_frame().set_index("channel").loc["slack"]
        assert slack.status == "pending" and slack.attempts == 1
        monkeypatch.setenv("NOTIFY_TEST_SLACK_URL", receiver.url)
        fixed = parse_quotas(raw)  # the next run reads the configuration again
        later = NOW + timedelta(hours=1)
        assert deliver_pending(store, build_channels(fixed.channels), later).delivered == 1
        again = NOW + timedelta(days=1)
        assert deliver_pending(store, build_channels(fixed.channels), again).delivered == 0
    assert len(receiver.received) == 1


def test_channel_down_backs_off_then_fails_after_the_maximum_and_can_be_resent(
    tmp_path, make_receiver
) -> None:
    receiver = make_receiver()
    port = receiver.port
    receiver.stop()
    config = parse_quotas(
        {
            "channels": {
                "log": False,
                "webhook": {"url": receiver.url, "secret": WEBHOOK_SECRET, "timeout_seconds": 2},
            },
            "delivery": {"max_attempts": 3, "backoff_seconds": 60, "max_backoff_seconds": 600},
        }
    )
    channels = build_channels(config.channels)
    with AlertStore(tmp_path / "a.sqlite") as store:
        store.sync(candidates(), ["webhook"], NOW)

        def attempt(at: datetime) -> str:
            deliver_pending(store, channels, at, settings=config.delivery)
            return str(store.outbox_frame().iloc[0].status)

        assert attempt(NOW) == "pending"
        assert attempt(NOW + timedelta(seconds=30)) == "pending"  # within the backoff: no try
        assert int(store.outbox_frame().iloc[0].attempts) == 1
        assert attempt(NOW + timedelta(seconds=61)) == "pending"  # 2nd try; next after 120 s
        assert attempt(NOW + timedelta(seconds=61 + 119)) == "pending"
        assert attempt(NOW + timedelta(seconds=61 + 121)) == "failed"  # 3rd try = maximum
        assert int(store.outbox_frame().iloc[0].attempts) == 3
        receiver.start()
        assert receiver.port == port
        assert deliver_pending(store, channels, NOW + timedelta(days=1)).delivered == 0
        [failed_id] = store.outbox_frame().id.tolist()
        assert store.resend([failed_id]) == 1
        report = deliver_pending(store, channels, NOW + timedelta(days=1), settings=config.delivery)
        assert report.delivered == 1
    assert len(receiver.received) == 1


def test_a_crashing_channel_never_blocks_the_others(tmp_path, caplog) -> None:
    class Broken:
        name = "broken"

        def send(self, item) -> None:
            raise TypeError("expected str, got NoneType")

    caplog.set_level(logging.INFO)
    with AlertStore(tmp_path / "a.sqlite") as store:
        store.sync(candidates(), ["broken", "log"], NOW)
        report = deliver_pending(store, {"broken": Broken(), "log": LogChannel()}, NOW)
        rows = store.outbox_frame().set_index("channel")
    assert report.delivered == 1 and report.channels_down == ["broken"]
    assert rows.loc["broken"].status == "pending"
    assert rows.loc["broken"].last_error == "broken: TypeError: expected str, got NoneType"
    assert rows.loc["log"].status == "delivered"


def test_lost_state_is_recovered_from_the_warehouse_without_resending(
    tmp_path, make_receiver, caplog
) -> None:
    receiver = make_receiver()
    warehouse = tmp_path / "warehouse"
    down_port = free_port()
    config = parse_quotas(
        {
            "channels": {
                "log": False,
                "webhook": {"url": receiver.url, "secret": WEBHOOK_SECRET},
                "backup": {
                    "type": "slack",
                    "url": f"http://127.0.0.1:{down_port}/x",
                    "timeout_seconds": 1,
                },
            }
        }
    )
    with open_state(warehouse) as state:
        assert state.recovered is None  # a first run is not a loss
        state.store.sync(candidates(), config.channels.enabled(), NOW)
        report = deliver_pending(state.store, build_channels(config.channels), NOW)
        assert report.delivered == 1 and report.pending == 1  # backup is down
        record_tables(warehouse, state.store)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{state_path(warehouse)}{suffix}").unlink(missing_ok=True)

    caplog.set_level(logging.WARNING)
    with open_state(warehouse) as state:
        assert state.recovered is not None and "was missing: recovered 1 alerts and 2 messages" in (
            state.recovered
        )
        state.store.sync(candidates(), config.channels.enabled(), NOW)  # the next evaluation
        rows = state.store.outbox_frame().set_index("channel")
        assert rows.loc["webhook"].status == "delivered" and rows.loc["backup"].status == "pending"
        again = deliver_pending(state.store, build_channels(config.channels), NOW)
        assert again.delivered == 0
    assert len(receiver.received) == 1, "a lost state file must not re-send delivered messages"
    assert "was missing: recovered" in caplog.text
