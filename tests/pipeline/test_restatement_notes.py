"""A load that restates days already loaded, moving an organization's period total across a
quota threshold, leaves a note on the alert (table, `usage-etl alerts`, the message text).

End to end: real pipeline runs against the loopback emulator (the first is a copy of the
session's demo run); between two of them a complete day of usage is corrected upwards in the
emulator (late data), as a re-pull would see it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from alerting.state import state_path
from alerting.store import AlertStore
from pipelines.cli import main
from tests.services.emulator import Pipeline
from tests.services.restatement import add_late_usage, write_quotas


@pytest.mark.timeout(600)
def test_a_repull_that_moves_a_total_across_a_threshold_is_noted(
    pipeline_after_demo_run: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # the first load: the session's demo run (the bundled example quotas: no organization's
    # own budget, the log channel)
    pipeline = pipeline_after_demo_run
    quotas = tmp_path / "quotas.yaml"
    monkeypatch.setenv("USAGE_QUOTAS", str(quotas))
    status = pipeline.query(
        "SELECT organization_name, period_start, as_of, value FROM quota_status "
        "WHERE metric = 'credits' AND scope = 'organization' AND period_start < as_of "
        "AND value > 100 ORDER BY value DESC LIMIT 1"
    )
    name, used = str(status.loc[0, "organization_name"]), float(status.loc[0, "value"])
    as_of = pd.Timestamp(status.loc[0, "as_of"]).to_pydatetime()
    budget = round(used / 0.95, 2)  # 95 % used: the 80 % alert, not the 100 % one
    write_quotas(quotas, {name: budget})
    # -> 105 %: across 100 %. Whole cents, so that the note's rounding to cents is exact (10 %
    # of a budget in cents can end in half a cent, which the sum of the days may round up).
    late = round(0.10 * budget, 2)
    add_late_usage(pipeline.server.state, name, as_of.date(), late)

    second = pipeline.run()
    assert second.success, second.lines()
    alerts = pipeline.query(
        "SELECT threshold, status, restatement FROM quota_alerts WHERE organization_name = ? "
        "AND rule = 'credit_actual' ORDER BY threshold",
        [name],
    )
    top = alerts[alerts["threshold"] == 100.0].iloc[0]
    assert top["status"] in ("open", "notified")
    note = str(top["restatement"])
    assert note.startswith(f"restated on {datetime.now(UTC):%Y-%m-%d}")
    assert f"period total moved from {used:,.2f} to {used + late:,.2f} credits" in note
    assert f"threshold {budget:,.2f} = 100% of the {budget:,.0f} budget" in note
    assert f"changed by +{late:,.2f}" in note

    # the message queued for the alert carries it, and `usage-etl alerts` shows it
    with AlertStore(state_path(pipeline.warehouse)) as store:
        payloads = store.outbox_frame()
    opened = payloads[payloads["alert_key"].str.contains("|credit_actual|100|", regex=False)]
    assert any(note in p for p in opened["payload"])
    capsys.readouterr()
    assert main(["alerts", "--warehouse", str(pipeline.warehouse)]) == 0
    assert note in capsys.readouterr().out

    # a third load with nothing restated adds no note to anything else
    third = pipeline.run()
    assert third.success, third.lines()
    notes = pipeline.query("SELECT count(restatement) AS n FROM quota_alerts")
    assert int(notes.loc[0, "n"]) == 1
