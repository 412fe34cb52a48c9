"""The demo data raise credit (actual and forecast) and resource alerts, delivered once."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cli import main
from tests.services.emulator import Pipeline


def test_demo_raises_alerts_once(pipeline_after_demo_run: Pipeline) -> None:
    pipeline = pipeline_after_demo_run  # its first run is the session's demo run
    alerts = pipeline.query("select rule, status from quota_alerts where not suppressed")
    assert {"credit_actual", "credit_forecast", "resource_limit"} <= set(alerts.rule)
    assert set(alerts.status) == {"notified"}
    outbox = pipeline.query("select alert_key, channel, status from alert_outbox")
    delivered = outbox[outbox.status == "delivered"]
    assert len(delivered) == len(alerts)

    assert pipeline.run().success
    again = pipeline.query("select alert_key, channel, status from alert_outbox")
    assert len(again) == len(outbox), "a re-run must not queue the same alerts again"
    assert (again.status == "delivered").sum() == len(delivered)
    assert (pipeline.warehouse / "report" / "index.html").stat().st_size > 10_000


def test_bad_quota_file_is_rejected_before_the_run(
    pipeline: Pipeline,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad = tmp_path / "quotas.yaml"
    bad.write_text("subscriptions:\n  starter:\n    credit_budget: lots\n")
    monkeypatch.setenv("USAGE_QUOTAS", str(bad))  # the command sets it; restored afterwards
    code = main(["run", "--quotas", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert "subscriptions.starter.credit_budget" in err[-1]
    assert not (pipeline.warehouse / "usage.duckdb").exists(), "no run may start"
