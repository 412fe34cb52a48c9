"""The demo data raise credit (actual and forecast) and resource alerts, delivered once."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.cli import main
from tests.services.emulator import Pipeline
from tests.services.restatement import write_quotas
from tests.services.warehouse_files import query_published


def test_demo_raises_alerts_delivered_once(demo_warehouse: Path) -> None:
    """The demo run's alerts, each delivered once (that a second run queues and sends none of
    them again is checked with the other effects of a second run in test_end_to_end.py)."""
    alerts = query_published(
        demo_warehouse, "select rule, status from quota_alerts where not suppressed"
    )
    assert {"credit_actual", "credit_forecast", "resource_limit"} <= {r for r, _ in alerts}
    assert {s for _, s in alerts} == {"notified"}
    outbox = query_published(demo_warehouse, "select alert_key, channel, status from alert_outbox")
    assert sum(status == "delivered" for _, _, status in outbox) == len(alerts)


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


def test_an_override_for_no_organization_is_warned_about(
    pipeline_after_demo_run: Pipeline,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A typo in an `organizations:` key would leave the organization on its subscription's
    budget without a word: the run warns, naming the key (and only that one)."""
    pipeline = pipeline_after_demo_run
    quotas = write_quotas(tmp_path / "quotas.yaml", {"acme-analytics": 50_000, "acme-analytic": 5})
    monkeypatch.setenv("USAGE_QUOTAS", str(quotas))
    capsys.readouterr()
    summary = pipeline.run()
    assert summary.success, summary.lines()
    warnings = [line for line in capsys.readouterr().err.splitlines() if " WARNING " in line]
    named = [line for line in warnings if "organizations.acme-analytic " in line]
    assert len(named) == 1, warnings
    assert f"{quotas}: organizations.acme-analytic matches no organization" in named[0]
    assert not any("organizations.acme-analytics " in line for line in warnings), warnings
