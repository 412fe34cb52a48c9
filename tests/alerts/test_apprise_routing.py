"""Apprise delivery to a real loopback HTTP receiver (json://) and a real SMTP server (mailto://),
exactly once per target, no credential in logs; routing of alerts per organization."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pandas as pd

from alerting import build_channels, deliver_pending, send_test_message
from alerting.evaluate import compute_alerts
from alerting.store import AlertStore
from insights.quotas import parse_quotas

from .conftest import SMTP_PASSWORD, SMTP_USER, free_port, organizations_frame, usage_frame

NOW = datetime(2024, 3, 11, 6, 0)
ORGS = organizations_frame(
    ("o1", "free", "2024-03-01", "2024-04-01"), ("o2", "starter", "2024-03-01", "2024-04-01")
)
PASSWORD = "apprise-pa55-do-not-leak"
PATH_TOKEN = "tok-9f8e7d6c5b4a"


def candidates() -> pd.DataFrame:
    usage = pd.concat(
        [
            usage_frame("o1", "2024-02-20", {"p1": [85.0] * 20}),  # 85% of 1,000 (free)
            usage_frame("o2", "2024-02-20", {"p2": [450.0] * 20}),  # 90% of 5,000 (starter)
        ],
        ignore_index=True,
    )
    config = parse_quotas(
        {"subscriptions": {"free": {"credit_budget": 1000}, "starter": {"credit_budget": 5000}}}
    )
    return compute_alerts(
        usage, ORGS, config, as_of="2024-03-10", rules=("credit_actual",)
    ).candidates


def json_url(receiver, token: str = PATH_TOKEN) -> str:
    return f"json://alerts:{PASSWORD}@127.0.0.1:{receiver.port}/hook/{token}"


def test_apprise_json_delivered_once_without_leaking_credentials(
    tmp_path, make_receiver, caplog
) -> None:
    caplog.set_level(logging.DEBUG)  # apprise and urllib3 log URLs at DEBUG
    receiver = make_receiver(secret=None)
    config = parse_quotas(
        {"channels": {"log": False, "ops": {"type": "apprise", "urls": [json_url(receiver)]}}}
    )
    channels = build_channels(config.channels)
    with AlertStore(tmp_path / "a.sqlite") as store:
        store.sync(candidates(), config.channels.enabled(), NOW)
        report = deliver_pending(store, channels, NOW)
        assert report.delivered == 2 and report.ok
        assert deliver_pending(store, channels, NOW + timedelta(days=1)).delivered == 0
        outbox = store.outbox_frame()
    assert outbox.channel.tolist() == ["ops", "ops"] and set(outbox.status) == {"delivered"}
    titles = sorted(m["title"] for m in receiver.received)
    assert titles[0].startswith("o1 has reached 85% of its credits limit")
    assert titles[1].startswith("o2 has reached 90% of its credits limit")
    assert {m["type"] for m in receiver.received} == {"warning"}
    assert "rule credit_actual" in receiver.received[0]["message"]
    text = caplog.text + outbox.to_string()
    assert PASSWORD not in text and PATH_TOKEN not in text


def test_apprise_partial_failure_retries_only_the_missing_target(
    tmp_path, make_receiver, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    up = make_receiver(secret=None)
    down = make_receiver(secret=None)
    down_port = down.port
    down.stop()
    config = parse_quotas(
        {
            "channels": {
                "log": False,
                "ops": {"type": "apprise", "urls": [json_url(up), json_url(down, "tok-second")]},
            }
        }
    )
    channels = build_channels(config.channels)
    with AlertStore(tmp_path / "a.sqlite") as store:
        store.sync(candidates().iloc[:1], ["ops"], NOW)
        first = deliver_pending(store, channels, NOW)
        assert first.delivered == 0 and first.pending == 1
        error = first.errors[0]
        assert error.startswith("ops: 1 of 2 targets failed: target 2 (json://)")
        assert "tok-second" not in error and PASSWORD not in error
        assert len(up.received) == 1  # target 1 got it already
        down.start()
        assert down.port == down_port
        later = deliver_pending(store, channels, NOW + timedelta(hours=1))
        assert later.delivered == 1 and later.pending == 0
    assert len(up.received) == 1, "target 1 must not get the message twice"
    assert len(down.received) == 1
    assert "tok-second" not in caplog.text and PASSWORD not in caplog.text


def test_apprise_mailto_through_smtp(tmp_path, smtp_server, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    controller, sink = smtp_server
    url = (
        f"mailto://{SMTP_USER}:{SMTP_PASSWORD}@usage.test?smtp=127.0.0.1&port={controller.port}"
        "&mode=insecure&from=alerts@usage.test&to=ops@usage.test"
    )
    config = parse_quotas({"channels": {"log": False, "mail": {"type": "apprise", "urls": [url]}}})
    with AlertStore(tmp_path / "a.sqlite") as store:
        store.sync(candidates().iloc[:1], ["mail"], NOW)
        assert deliver_pending(store, build_channels(config.channels), NOW).delivered == 1
    assert len(sink.messages) == 1
    message = sink.messages[0]
    assert message["to"] == ["ops@usage.test"]
    assert "Subject: o1 has reached 85% of its credits limit" in str(message["data"])
    assert SMTP_PASSWORD not in caplog.text


def test_apprise_test_message_and_unreachable_target(make_receiver) -> None:
    receiver = make_receiver(secret=None)
    config = parse_quotas({"channels": {"ops": {"type": "apprise", "urls": [json_url(receiver)]}}})
    send_test_message("ops", config)
    assert receiver.received[0]["title"] == "Test message from ubiops-usage alerts"


def test_routing_per_organization_and_subscription(tmp_path, make_receiver) -> None:
    from alerting.routing import alert_routes

    team_o1 = make_receiver(secret=None)
    everyone_else = make_receiver(secret=None)
    config = parse_quotas(
        {
            "channels": {
                "log": True,
                "team-o1": {"type": "apprise", "urls": [json_url(team_o1)]},
                "ops": {"type": "apprise", "urls": [json_url(everyone_else)]},
            },
            "subscriptions": {"starter": {"credit_budget": 5000, "channels": ["ops", "log"]}},
            "organizations": {"o1": {"channels": ["team-o1"]}},
            "default": {"channels": ["log"]},
        }
    )
    assert config.channels_for("o1", "o1", "free") == ["team-o1"]
    assert config.channels_for("o2", "o2", "starter") == ["ops", "log"]
    assert config.channels_for("o3", "o3", "enterprise") == ["log"]
    with AlertStore(tmp_path / "a.sqlite") as store:
        store.sync(candidates(), alert_routes(config, ORGS), NOW)
        routed = store.outbox_frame()
        report = deliver_pending(store, build_channels(config.channels), NOW)
    by_org = routed.assign(org=routed.alert_key.str.split("|").str[0])
    assert sorted(by_org[by_org.org == "o1"].channel) == ["team-o1"]
    assert sorted(by_org[by_org.org == "o2"].channel) == ["log", "ops"]
    assert report.delivered == 3
    assert [m["title"][:2] for m in team_o1.received] == ["o1"]
    assert [m["title"][:2] for m in everyone_else.received] == ["o2"]


def test_routing_to_an_unknown_channel_is_a_one_line_error() -> None:
    import pytest

    from insights.quotas import QuotaConfigError

    with pytest.raises(QuotaConfigError) as info:
        parse_quotas({"organizations": {"acme": {"channels": ["pager"]}}}, "q.yaml")
    assert str(info.value) == (
        "q.yaml: organizations.acme.channels: unknown channel 'pager' (configured: log)"
    )


def test_unparsable_apprise_url_is_named_without_its_value(caplog) -> None:
    from alerting import validate_channels
    from insights.quotas import QuotaConfigError

    caplog.set_level(logging.DEBUG)
    secret = f"nosuchscheme://user:{PASSWORD}@host/x"
    config = parse_quotas(
        {"channels": {"pager": {"type": "apprise", "urls": [f"json://127.0.0.1:{free_port()}"]}}}
    )
    validate_channels(config)
    bad = parse_quotas({"channels": {"pager": {"type": "apprise", "urls": ["json://h", secret]}}})
    try:
        validate_channels(bad)
    except QuotaConfigError as exc:
        message = str(exc)
    assert message == (
        "quotas.yaml: channels.pager: Apprise URL 2 (nosuchscheme://) is not one Apprise "
        "understands"
    )
    assert PASSWORD not in caplog.text


def test_unrouted_organizations_skip_channels_a_route_names(tmp_path, make_receiver) -> None:
    """A team's channel (named by its organization's route) gets only that organization's
    alerts: an organization without a route goes to the channels no route names (it used to
    go to every channel, the team's included)."""
    from alerting.routing import alert_routes

    from .conftest import WEBHOOK_SECRET

    webhook, slack, team = (make_receiver(secret=s) for s in (WEBHOOK_SECRET, None, None))
    config = parse_quotas(
        {
            "channels": {
                "webhook": {"url": webhook.url, "secret": WEBHOOK_SECRET},
                "slack": {"url": slack.url},
                "acme-team": {"type": "apprise", "urls": [json_url(team)]},
            },
            "organizations": {"o1": {"channels": ["acme-team", "log"]}},
        }
    )
    with AlertStore(tmp_path / "a.sqlite") as store:
        store.sync(candidates(), alert_routes(config, ORGS), NOW)
        report = deliver_pending(store, build_channels(config.channels), NOW)
    assert report.ok and report.delivered == 4
    assert [m["title"][:2] for m in team.received] == ["o1"]
    assert [m["alert"]["organization_id"] for m in webhook.received] == ["o2"]
    assert len(slack.received) == 1 and "o2" in slack.received[0]["text"]


def test_routes_without_a_fallback_channel_are_a_one_line_error() -> None:
    import pytest

    from insights.quotas import QuotaConfigError

    routes = {"organizations": {"acme": {"channels": ["ops", "log"]}}}
    ops = {"ops": {"type": "apprise", "urls": ["json://127.0.0.1/hook"]}}
    with pytest.raises(QuotaConfigError) as info:
        parse_quotas({"channels": ops, **routes}, "q.yaml")
    assert str(info.value) == (
        "q.yaml: every channel is named by a route (organizations.acme), so an organization "
        "without a route would get no channel: set default.channels (an empty list sends "
        "those alerts nowhere)"
    )
    explicit = parse_quotas({"channels": ops, **routes, "default": {"channels": []}})
    assert explicit.channels_for("o9", "other", None) == []
    no_routes = parse_quotas({"channels": ops})  # backwards compatible: every channel
    assert no_routes.channels_for("o9", "other", None) == ["log", "ops"]
