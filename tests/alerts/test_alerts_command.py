"""`usage-etl alerts`: what an on-call person reads, and --retry / --resend / --all-failed /
--test-channel as they behave on the command line (stdout vs stderr, exit codes, `| head`)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from alerting.evaluate import compute_alerts
from alerting.state import state_path
from alerting.store import AlertStore
from insights.quotas import parse_quotas
from pipelines.cli import main
from warehouse.schema import now_utc

from .conftest import WEBHOOK_SECRET, free_port, usage_frame

ORG_ID = "7f3c1a2e-0000-4000-8000-00000000beef"
ORG_NAME = "acme-research"


def organizations() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "organization_id": ORG_ID,
                "organization_name": ORG_NAME,
                "status": "active",
                "subscription": "free",
                "creation_date": pd.Timestamp("2024-01-01"),
                "period_start": pd.Timestamp("2024-03-01"),
                "period_end": pd.Timestamp("2024-04-01"),
            }
        ]
    )


def resources() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "organization_id": ORG_ID,
                "observed_at": pd.Timestamp("2024-03-10 12:00"),
                "deployments": 5,
            }
        ]
    )


def make_state(warehouse: Path, channels: list[str]) -> None:
    """Credit alerts and a resource alert (deployments at 5 of 5) queued for ``channels``."""
    usage = usage_frame(ORG_ID, "2024-02-20", {"p1": [85.0] * 20}, org_name=ORG_NAME)
    config = parse_quotas(
        {
            "subscriptions": {
                "free": {"credit_budget": 1000, "resources": {"deployments": 5}},
            }
        }
    )
    candidates = compute_alerts(
        usage, organizations(), config, resources(), as_of="2024-03-10"
    ).candidates
    assert {"credit_actual", "resource_limit"} <= set(candidates.rule)
    with AlertStore(state_path(warehouse)) as store:
        store.sync(candidates, channels, now_utc().replace(year=2024, month=3, day=11))


def quota_file(tmp_path: Path, channels: dict) -> Path:
    import yaml

    path = tmp_path / "quotas.yaml"
    path.write_text(yaml.safe_dump({"channels": channels}))
    return path


def test_listing_shows_names_periods_subjects_and_each_title_once(tmp_path, capsys) -> None:
    warehouse = tmp_path / "warehouse"
    make_state(warehouse, ["log"])
    assert main(["alerts", "--warehouse", str(warehouse)]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert ORG_NAME in out and ORG_ID not in out
    assert "2024-03-01 .. 2024-03-31" in out  # the subscription period, end inclusive
    assert "all credits" in out
    with AlertStore(state_path(warehouse)) as store:
        alerts = store.alerts_frame()
    for title in alerts.title:
        assert out.count(title) == 1, f"printed {out.count(title)} times: {title}"
    explanation = alerts[alerts.rule == "credit_actual"].explanation.iloc[0]
    assert explanation and explanation in out
    resource_title = alerts[alerts.rule == "resource_limit"].title.iloc[0]
    assert f"1. {resource_title}\n" in out or f"2. {resource_title}\n" in out
    assert "deployments" in out
    assert not any(line.rstrip() != line or line.endswith(":") for line in out.splitlines())
    assert "undelivered" in out  # queued for log, not delivered yet


def test_missing_state_is_a_one_line_error_on_stderr(tmp_path, capsys) -> None:
    assert main(["alerts", "--warehouse", str(tmp_path / "nothing")]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("usage-etl alerts: no alert state at ") and err.count("\n") == 1


def test_test_channel_errors_go_to_stderr(tmp_path, capsys) -> None:
    """A channel not configured is bad input (exit 2, nothing sent); a send that fails is a
    failure (exit 1), as for `--retry` (docs/data-contract.md)."""
    quotas = quota_file(
        tmp_path,
        {
            "webhook": {
                "url": f"http://127.0.0.1:{free_port()}/h?token=url-token-xyz",
                "secret": WEBHOOK_SECRET,
                "timeout_seconds": 1,
            }
        },
    )
    assert main(["alerts", "--quotas", str(quotas), "--test-channel", "slack"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        "usage-etl alerts: --test-channel slack: channel is not configured (configured: log, "
        "webhook)\n"
    )
    assert main(["alerts", "--quotas", str(quotas), "--test-channel", "webhook"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "test message via webhook failed: webhook: POST to" in err
    assert err.count("\n") == 1
    assert "url-token-xyz" not in err


def test_retry_resend_and_all_failed(tmp_path, make_receiver, capsys) -> None:
    receiver = make_receiver()
    port = receiver.port
    receiver.stop()
    warehouse = tmp_path / "warehouse"
    make_state(warehouse, ["webhook"])
    quotas = quota_file(
        tmp_path,
        {
            "log": False,
            "webhook": {"url": receiver.url, "secret": WEBHOOK_SECRET, "timeout_seconds": 2},
        },
    )
    args = ["alerts", "--warehouse", str(warehouse), "--quotas", str(quotas)]
    with AlertStore(state_path(warehouse)) as store:
        queued = len(store.outbox_frame())

    assert main([*args, "--retry"]) == 1  # the receiver is down: still pending
    out, err = capsys.readouterr()
    assert f"notifications: 0 delivered, {queued} pending, 0 failed" in out
    assert f"webhook: POST to http://127.0.0.1:{port} failed" in err

    with AlertStore(state_path(warehouse)) as store:  # give up on them (max attempts)
        while (item := store.claim_next(["webhook"], ignore_backoff=True)) is not None:
            store.mark_failed(item, "webhook: gave up", max_attempts=1)
        ids = store.outbox_frame().id.tolist()
    assert main(args) == 0
    out, _ = capsys.readouterr()
    assert f"{queued} undelivered notifications" in out and "failed" in out

    receiver.start()
    assert receiver.port == port
    assert main([*args, "--resend", "999"]) == 2
    assert capsys.readouterr().err == "usage-etl alerts: --resend 999: no such message\n"
    assert main([*args, "--resend", str(ids[0])]) == 0
    out, _ = capsys.readouterr()
    assert "1 failed messages queued again" in out and "1 delivered" in out
    assert main([*args, "--resend", str(ids[0])]) == 2
    assert "the message is delivered, not failed" in capsys.readouterr().err
    assert main([*args, "--all-failed"]) == 0
    out, _ = capsys.readouterr()
    assert f"{queued - 1} delivered, 0 pending, 0 failed" in out
    assert main([*args, "--retry"]) == 0  # nothing left: nothing sent twice
    assert len(receiver.received) == queued
    assert receiver.rejected == 0
    # the delivery state is copied into the warehouse, so a lost state file is recoverable
    copy = pd.read_parquet(warehouse / "parquet" / "alert_outbox")
    assert set(copy.status) == {"delivered"}


def test_retry_refuses_a_misconfigured_channel_up_front(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("NOTIFY_TEST_UNSET_URL", raising=False)
    warehouse = tmp_path / "warehouse"
    make_state(warehouse, ["slack"])
    quotas = quota_file(tmp_path, {"slack": {"url_env": "NOTIFY_TEST_UNSET_URL"}})
    code = main(["alerts", "--warehouse", str(warehouse), "--quotas", str(quotas), "--retry"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err == (
        f"usage-etl alerts: {quotas}: channels.slack: no webhook URL: environment variable "
        "NOTIFY_TEST_UNSET_URL is not set\n"
    )


def test_retry_with_a_quota_file_lacking_the_pending_channel_names_it_and_exits_1(
    tmp_path, make_receiver, capsys
) -> None:
    """F-p: messages queued for channel `badhook` (configured in the run's quota file), and
    `--retry` given another file (or none): nothing can be sent to them, which must not look
    like success to a monitor."""
    receiver = make_receiver()
    warehouse = tmp_path / "warehouse"
    make_state(warehouse, ["badhook"])
    with AlertStore(state_path(warehouse)) as store:
        queued = len(store.outbox_frame())
    other = quota_file(tmp_path, {"log": True})
    args = ["alerts", "--warehouse", str(warehouse), "--retry"]
    assert main([*args, "--quotas", str(other)]) == 1
    out, err = capsys.readouterr()
    assert f"notifications: 0 delivered, {queued} pending, 0 failed" in out
    assert f"not configured in {other}: badhook ({queued})" in err, err
    assert "--quotas" in err and len(err.strip().splitlines()) == 1
    # with the file that configures it, they go out and the retry is clean
    right = tmp_path / "right"
    right.mkdir()
    webhook = {"url": receiver.url, "secret": WEBHOOK_SECRET, "timeout_seconds": 5}
    quotas = quota_file(right, {"log": False, "badhook": {"type": "webhook", **webhook}})
    assert main([*args, "--quotas", str(quotas)]) == 0
    out, err = capsys.readouterr()
    assert f"{queued} delivered, 0 pending" in out and err == ""
    assert len(receiver.received) == queued


def test_piping_into_head_ends_quietly(tmp_path) -> None:
    warehouse = tmp_path / "warehouse"
    make_state(warehouse, ["log"])
    # many more lines than a pipe buffer holds: 1,000 alerts list ~260 KB, four 64 KB buffers
    with AlertStore(state_path(warehouse)) as store:
        base = store.alerts_frame().iloc[0].to_dict()
        rows = []
        for i in range(1000):
            row = dict(base, alert_key=f"{base['alert_key']}#{i}", alert_group=f"g{i}")
            row["explanation"] = "x" * 60
            rows.append(row)
    with AlertStore(state_path(tmp_path / "big")) as big:
        big.restore(pd.DataFrame(rows), pd.DataFrame(columns=["id"]))
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = f"{sys.executable} -m pipelines.cli alerts --warehouse {tmp_path / 'big'} | head -n 3"
    done = subprocess.run(
        ["sh", "-c", command], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 3
    assert done.stderr == "", done.stderr


@pytest.mark.parametrize("flag", ["--retry", "--all-failed"])
def test_retry_without_state_is_exit_2(tmp_path, capsys, flag) -> None:
    assert main(["alerts", "--warehouse", str(tmp_path / "none"), flag]) == 2
    assert capsys.readouterr().err.startswith("usage-etl alerts: no alert state at ")


def test_period_end_is_shown_inclusive() -> None:
    from pipelines.commands.alerts_cmd import _period

    start = pd.Timestamp("2024-02-28")
    assert _period({"period_start": start, "period_end": start + timedelta(days=29)}) == (
        "2024-02-28 .. 2024-03-27"
    )


def test_listing_after_a_channel_went_down_shows_untried_messages(tmp_path, capsys) -> None:
    """A channel that refuses connections stops after its first failure, so its other messages
    were never tried (no error recorded): the listing shows them instead of crashing."""
    warehouse = tmp_path / "warehouse"
    make_state(warehouse, ["log", "slack"])
    port = free_port()  # nothing listens there: connections are refused
    quotas = quota_file(tmp_path, {"slack": {"url": f"http://127.0.0.1:{port}/hook"}})
    args = ["alerts", "--warehouse", str(warehouse), "--quotas", str(quotas)]
    assert main([*args, "--retry"]) == 1
    capsys.readouterr()
    with AlertStore(state_path(warehouse)) as store:
        slack = store.outbox_frame().query("channel == 'slack'")
    assert len(slack) >= 2 and (slack.attempts == 0).sum() == len(slack) - 1

    assert main(args) == 0
    out, err = capsys.readouterr()
    assert err == ""
    assert f"{len(slack)} undelivered notifications" in out
    lines = [line for line in out.splitlines() if " slack " in f" {line} "]
    assert len(lines) == len(slack)
    assert sum("POST to" in line for line in lines) == 1
    assert sum("not tried yet" in line for line in lines) == len(slack) - 1
    assert all(ORG_NAME in line and "pending" in line for line in lines)
    assert "nan" not in out.lower().split()


def test_listing_reads_missing_values_as_missing() -> None:
    """Missing text (NaN in a pandas frame, as the state and the lake hand it back) falls back
    like None: the organization id for a missing name, no explanation line, no 'nan'."""
    from pipelines.commands.alerts_cmd import _listing

    alerts = pd.DataFrame(
        [
            {
                "alert_key": "k1",
                "organization_id": ORG_ID,
                "organization_name": float("nan"),
                "project_id": float("nan"),
                "project_name": float("nan"),
                "rule": "credit_actual",
                "metric": "credits",
                "threshold": 80.0,
                "severity": float("nan"),
                "status": "open",
                "period_start": pd.Timestamp("2024-03-01"),
                "period_end": pd.NaT,
                "title": float("nan"),
                "explanation": float("nan"),
                "restatement": float("nan"),
            }
        ]
    )
    outbox = pd.DataFrame(
        [
            {
                "id": 1,
                "alert_key": "k1",
                "channel": "slack",
                "event": "open",
                "status": "pending",
                "attempts": 0,
                "last_error": float("nan"),
            }
        ]
    )
    text = "\n".join(_listing(alerts, outbox, show_all=False))
    assert "nan" not in text.lower().replace("_", " ").split()
    assert ORG_ID in text and "all credits" in text and "1. k1" in text
    assert "not tried yet" in text
