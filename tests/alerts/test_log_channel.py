"""The `log` channel writes to `<warehouse>/state/notifications.log` on the command line, and
says so: `usage-etl alerts --test-channel log` names the file; a command that builds a demo
warehouse (`dictionary --demo`) keeps the demo run's alert lines out of its stderr."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tests.services.cli import clean_env, usage_etl


def test_test_message_via_log_names_its_file(tmp_path: Path) -> None:
    warehouse = tmp_path / "warehouse"
    done = usage_etl("alerts", "--warehouse", str(warehouse), "--test-channel", "log")
    log_file = warehouse / "state" / "notifications.log"
    assert (done.code, done.err) == (0, "")
    assert done.out == f"test message sent via log (written to {log_file})\n"
    assert "quota alert test: Test message from ubiops-usage alerts" in log_file.read_text()

    verbose = usage_etl("alerts", "--warehouse", str(warehouse), "--test-channel", "log", "-v")
    assert verbose.code == 0
    assert "quota alert test: Test message from ubiops-usage alerts" in verbose.err
    assert log_file.read_text().count("quota alert test:") == 2


def test_log_test_message_with_the_log_channel_off_is_an_error(tmp_path: Path) -> None:
    quotas = tmp_path / "quotas.yaml"
    quotas.write_text("channels: {log: false}\n")
    done = usage_etl(
        "alerts",
        "--warehouse",
        str(tmp_path / "w"),
        "--quotas",
        str(quotas),
        "--test-channel",
        "log",
        env=clean_env(),
    )
    assert done.code == 2 and done.out == ""
    assert "log: channel is not configured" in done.err
    assert not (tmp_path / "w").exists()


def test_a_demo_warehouse_keeps_alert_lines_in_its_notifications_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The demo run's `log` channel lines go to the demo warehouse's file, not up to the root
    logger (whose last-resort handler printed them on `dictionary --demo`'s stderr)."""
    import pipelines.commands.run_cmd as run_cmd
    from pipelines.demo import build_demo_warehouse

    def execute(*args: object, **kwargs: object) -> run_cmd.RunSummary:
        logging.getLogger("alerting").warning("quota alert open: demo alert line")
        return run_cmd.RunSummary(success=True, seconds=0.0)

    monkeypatch.setattr(run_cmd, "execute", execute)
    caplog.set_level(logging.INFO)
    warehouse = build_demo_warehouse(tmp_path)
    assert "demo alert line" not in caplog.text
    assert (
        "quota alert open: demo alert line"
        in (warehouse / "state" / "notifications.log").read_text()
    )


def test_messages_show_the_periods_last_day() -> None:
    """The text of every channel (log line, e-mail body, Slack fallback) writes the period as
    the alerts listing does: its last day, not the exclusive end the payload carries."""
    from alerting.channels import render_text
    from alerting.store import OutboxItem

    alert = {
        "alert_key": "o1||credit_actual|80|2024-03-01",
        "organization_id": "o1",
        "organization_name": "acme",
        "rule": "credit_actual",
        "period_start": "2024-03-01 00:00:00",
        "period_end": "2024-04-01 00:00:00",
        "title": "acme has reached 85% of its credits limit",
    }
    item = OutboxItem(
        id=1,
        idempotency_key="k",
        webhook_id="msg_1",
        alert_key=alert["alert_key"],
        occurrence=1,
        event="open",
        channel="log",
        attempts=1,
        payload={"alert": alert},
    )
    assert "rule credit_actual, period 2024-03-01 .. 2024-03-31\n" in render_text(item)
    alert["period_end"] = None
    assert "rule credit_actual, period 2024-03-01\n" in render_text(item)
