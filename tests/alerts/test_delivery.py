"""Delivery through real loopback sinks: signed webhook, Slack-format webhook, SMTP."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pandas as pd
import pytest

from alerting import (
    DeliveryError,
    build_channels,
    deliver_pending,
    send_test_message,
)
from alerting.evaluate import compute_alerts
from alerting.store import AlertStore
from insights.quotas import load_quotas, parse_quotas

from .conftest import (
    SMTP_PASSWORD,
    SMTP_USER,
    WEBHOOK_SECRET,
    free_port,
    organizations_frame,
    usage_frame,
)

ORGS = organizations_frame(("o1", "free", "2024-03-01", "2024-04-01"))
NOW = datetime(2024, 3, 11, 6, 0)
USERS = pd.DataFrame(
    {
        "organization_id": ["o1", "o1", "o1", "o2"],
        "user_id": ["u1", "u2", "u3", "u4"],
        "email": ["admin@o1.test", "dev@o1.test", "boss@o1.test", "admin@o2.test"],
        "name": ["a", "b", "c", "d"],
        "surname": ["a", "b", "c", "d"],
        "status": ["active"] * 4,
        "admin": [True, False, True, True],
        "join_date": pd.to_datetime(["2024-01-01"] * 4),
    }
)


def candidates(per_day: float = 85, days: int = 20) -> pd.DataFrame:
    usage = usage_frame("o1", "2024-02-20", {"p1": [per_day] * days})
    return compute_alerts(
        usage, ORGS, load_quotas(), as_of="2024-03-10", rules=("credit_actual",)
    ).candidates


def config_for(webhook_url: str | None = None, slack_url: str | None = None, smtp=None):
    channels: dict = {"log": False}
    if webhook_url:
        channels["webhook"] = {"url": webhook_url, "secret": WEBHOOK_SECRET, "timeout_seconds": 2}
    if slack_url:
        channels["slack"] = {"url": slack_url, "timeout_seconds": 2}
    if smtp:
        channels["email"] = {
            "host": "127.0.0.1",
            "port": smtp.port,
            "user": SMTP_USER,
            "password": SMTP_PASSWORD,
            "from": "alerts@usage.test",
            "to": "admins",
            "timeout_seconds": 5,
        }
    return parse_quotas({"channels": channels})


def test_webhook_signed_delivered_once(tmp_path, make_receiver) -> None:
    receiver = make_receiver()
    config = config_for(webhook_url=receiver.url)
    channels = build_channels(config.channels)
    with AlertStore(tmp_path / "a.sqlite") as store:
        store.sync(candidates(), config.channels.enabled(), NOW)
        report = deliver_pending(store, channels, NOW)
        assert report.delivered == 1 and report.ok
        # a re-run (same evaluation, new delivery pass) sends nothing new
        store.sync(candidates(), config.channels.enabled(), NOW)
        assert deliver_pending(store, channels, NOW).delivered == 0
    assert receiver.rejected == 0 and len(receiver.received) == 1
    payload, headers = receiver.received[0], receiver.headers[0]
    assert payload["event"] == "open" and payload["alert"]["threshold"] == 80.0
    assert headers["webhook-id"] == payload["webhook_id"]
    assert headers["idempotency-key"] == payload["idempotency_key"]


def test_sink_down_stays_pending_then_delivered(tmp_path, make_receiver, caplog) -> None:
    receiver = make_receiver()
    port = receiver.port
    config = config_for(webhook_url=receiver.url)
    channels = build_channels(config.channels)
    receiver.stop()  # the port is closed now
    caplog.set_level(logging.DEBUG)
    with AlertStore(tmp_path / "a.sqlite") as store:
        store.sync(candidates(), ["webhook"], NOW)
        down = deliver_pending(store, channels, NOW)
        assert down.delivered == 0 and down.retried_later == 1 and down.pending == 1
        assert down.channels_down == ["webhook"]
        assert down.errors[0].startswith(f"webhook: POST to http://127.0.0.1:{port} failed")
        row = store.outbox_frame().iloc[0]
        assert row.status == "pending" and row.attempts == 1 and "127.0.0.1" in row.last_error
        receiver.start()  # back on the same port
        assert receiver.port == port
        assert deliver_pending(store, channels, NOW).delivered == 0  # backing off
        up = deliver_pending(store, channels, NOW + timedelta(minutes=2))
        assert up.delivered == 1 and up.pending == 0
        assert store.outbox_frame().iloc[0].attempts == 2
    assert len(receiver.received) == 1
    assert "url-token-xyz" not in caplog.text and "super-secret" not in caplog.text


def test_wrong_secret_is_rejected_by_receiver(tmp_path, make_receiver) -> None:
    receiver = make_receiver(secret="whsec_" + "b3RoZXItc2VjcmV0LWtleQ==")
    config = config_for(webhook_url=receiver.url)
    with AlertStore(tmp_path / "a.sqlite") as store:
        store.sync(candidates(), ["webhook"], NOW)
        report = deliver_pending(store, build_channels(config.channels), NOW)
    assert report.retried_later == 1 and receiver.rejected == 1
    assert report.errors == [f"webhook: http://127.0.0.1:{receiver.port} answered HTTP 401"]


def test_slack_format_and_resolved_message(tmp_path, make_receiver) -> None:
    receiver = make_receiver(secret=None)
    config = config_for(slack_url=receiver.url)
    channels = build_channels(config.channels)
    with AlertStore(tmp_path / "a.sqlite") as store:
        store.sync(candidates(), ["slack"], NOW)
        deliver_pending(store, channels, NOW)
        store.sync(candidates(per_day=20), ["slack"], NOW)  # usage falls back: 20% used
        deliver_pending(store, channels, NOW)
        deliver_pending(store, channels, NOW)
    opened, resolved = receiver.received
    assert opened["text"].startswith("o1 has reached 85% of its credits limit")
    assert opened["blocks"][0]["type"] == "section"
    assert resolved["text"].startswith("RESOLVED: ")
    assert resolved["blocks"][0]["text"]["text"].startswith(":white_check_mark: *Resolved:")


def test_email_to_admins(tmp_path, smtp_server) -> None:
    controller, sink = smtp_server
    config = config_for(smtp=controller)
    channels = build_channels(config.channels, USERS)
    with AlertStore(tmp_path / "a.sqlite") as store:
        store.sync(candidates(), ["email"], NOW)
        assert deliver_pending(store, channels, NOW).delivered == 1
        assert deliver_pending(store, channels, NOW).delivered == 0
    assert len(sink.messages) == 1
    message = sink.messages[0]
    assert sorted(message["to"]) == ["admin@o1.test", "boss@o1.test"]
    assert "Subject: o1 has reached 85%" in message["data"]
    assert "X-Idempotency-Key: o1||credit_actual|80|2024-03-01#1:open:email" in message["data"]


def test_no_secret_in_errors_or_logs(tmp_path, smtp_server, make_receiver, caplog, capsys) -> None:
    caplog.set_level(logging.DEBUG)
    controller, sink = smtp_server
    bad = parse_quotas(
        {
            "channels": {
                "log": True,
                "email": {
                    "host": "127.0.0.1",
                    "port": controller.port,
                    "user": SMTP_USER,
                    "password": SMTP_PASSWORD + "-wrong",
                    "from": "alerts@usage.test",
                    "to": ["ops@usage.test"],
                    "timeout_seconds": 3,
                },
                "webhook": {
                    "url": f"http://127.0.0.1:{free_port()}/h?token=url-token-xyz",
                    "secret": WEBHOOK_SECRET,
                    "timeout_seconds": 1,
                },
            }
        }
    )
    channels = build_channels(bad.channels)
    with AlertStore(tmp_path / "a.sqlite") as store:
        store.sync(candidates(), bad.channels.enabled(), NOW)
        report = deliver_pending(store, channels, NOW)
        outbox_text = store.outbox_frame().to_string() + store.alerts_frame().to_string()
    assert report.delivered == 1  # the log channel
    assert sorted(report.channels_down) == ["email", "webhook"]
    assert any(e.startswith("email: SMTP 127.0.0.1:") and "535" in e for e in report.errors)
    for name in ("email", "webhook"):
        with pytest.raises(DeliveryError) as info:
            send_test_message(name, bad)
        assert "\n" not in str(info.value)
        report.errors.append(str(info.value))
    text = (
        " ".join(report.errors) + caplog.text + outbox_text + repr(bad) + str(capsys.readouterr())
    )
    secret_body = WEBHOOK_SECRET.removeprefix("whsec_")
    for secret in (SMTP_PASSWORD, secret_body, "url-token-xyz"):
        assert secret not in text
    assert sink.messages == []


def test_send_test_message_webhook_and_unknown_channel(make_receiver) -> None:
    receiver = make_receiver()
    config = config_for(webhook_url=receiver.url)
    send_test_message("webhook", config)
    assert receiver.received[0]["event"] == "test"
    with pytest.raises(DeliveryError, match="slack: channel is not configured"):
        send_test_message("slack", config)
