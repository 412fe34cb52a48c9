"""Restatement detection (`alerting.restatements.check_restatements`) on small frames: only a
change to days the previous load had counted, moving the total across a threshold, is noted."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd

from alerting.restatements import check_restatements
from alerting.store import AlertStore, LoadedTotal


def status_row(limit: float, value: float, as_of: str = "2026-11-20") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "organization_id": "o1",
                "scope": "organization",
                "project_id": None,
                "metric": "credits",
                "period_start": pd.Timestamp("2026-11-01"),
                "as_of": pd.Timestamp(as_of),
                "value": value,
                "limit": limit,
            }
        ]
    )


def daily_rows(per_day: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "organization_id": "o1",
                "interval": "day",
                "scope": "organization",
                "start_date": pd.Timestamp(day),
                "credits": credits,
            }
            for day, credits in per_day.items()
        ]
    )


def days(first: str, last: str, credits: float) -> dict[str, float]:
    start, end = pd.Timestamp(first), pd.Timestamp(last)
    return {str((start + timedelta(days=i)).date()): credits for i in range((end - start).days + 1)}


PREVIOUS = {
    ("o1", "2026-11-01"): LoadedTotal("o1", "2026-11-01", "2026-11-19", 950.0, "2026-11-20 06:00")
}


def test_new_days_crossing_a_threshold_are_not_a_restatement() -> None:
    usage = daily_rows(days("2026-11-01", "2026-11-20", 50.0))  # 19 x 50 = 950, then +50
    found = check_restatements(status_row(1000, 1000), usage, PREVIOUS, [50, 80, 100])
    assert found.restatements == []
    assert found.totals[0].total == 1000.0 and found.totals[0].through_day == "2026-11-20"


def test_a_downward_restatement_across_a_threshold_is_noted() -> None:
    per_day = days("2026-11-01", "2026-11-19", 50.0)
    per_day["2026-11-05"] = 0.0  # a deleted project's usage corrected away: 950 -> 900
    usage = daily_rows(per_day)
    previous = {k: LoadedTotal("o1", "2026-11-01", "2026-11-19", 950.0, v.loaded_at)
                for k, v in PREVIOUS.items()}  # fmt: skip
    found = check_restatements(status_row(920, 900, "2026-11-19"), usage, previous, [50, 100])
    (restated,) = found.restatements
    assert restated.threshold_pct == 100 and restated.change == -50.0
    assert "period total moved from 950.00 to 900.00 credits (threshold 920.00" in restated.note()
    assert found.notes() == {"o1||credit_actual|2026-11-01": restated.note()}


def test_a_restatement_within_the_same_band_is_not_noted() -> None:
    per_day = days("2026-11-01", "2026-11-19", 50.0)
    per_day["2026-11-05"] = 60.0  # 950 -> 960, no threshold between
    found = check_restatements(status_row(2000, 960, "2026-11-19"), daily_rows(per_day),
                               PREVIOUS, [50, 80, 100])  # fmt: skip
    assert found.restatements == []


def candidate(threshold: float) -> pd.DataFrame:
    group = "o1||credit_actual|2026-11-01"
    return pd.DataFrame(
        [
            {
                "alert_key": f"o1||credit_actual|{threshold:g}|2026-11-01",
                "alert_group": group,
                "organization_id": "o1",
                "organization_name": "acme",
                "project_id": "",
                "project_name": None,
                "rule": "credit_actual",
                "metric": "credits",
                "threshold": threshold,
                "period_start": pd.Timestamp("2026-11-01"),
                "period_end": pd.Timestamp("2026-12-01"),
                "value": 1050.0,
                "limit": 1000.0,
                "forecast": None,
                "severity": "critical",
                "title": f"acme has reached {threshold:g}% of its credits limit",
                "explanation": "top projects: p1 1,050",
                "details": "{}",
                "notify_resolved": True,
            }
        ]
    )


def test_the_store_puts_the_note_on_the_alert_and_its_messages(tmp_path) -> None:
    from alerting.channels import render_text
    from alerting.store import OutboxItem

    note = "restated on 2026-11-20 06:00 UTC: period total moved from 950.00 to 1,050.00 credits"
    now = pd.Timestamp("2026-11-20 06:00").to_pydatetime()
    group = "o1||credit_actual|2026-11-01"
    totals = [LoadedTotal("o1", "2026-11-01", "2026-11-19", 1050.0, "2026-11-20 06:00:00")]
    with AlertStore(tmp_path / "alerts.sqlite") as store:
        store.sync(candidate(100), ["log"], now, notes={group: note}, totals=totals)
        assert store.loaded_totals() == {("o1", "2026-11-01"): totals[0]}
        alerts = store.alerts_frame()
        assert alerts["restatement"].tolist() == [note]
        claimed = store.claim_next(["log"], now)
        assert isinstance(claimed, OutboxItem)
        assert claimed.payload["alert"]["restatement"] == note
        assert note in render_text(claimed).splitlines()
        store.mark_delivered(claimed, now)

        # restated back down: the resolved message carries the new note
        down = "restated on 2026-11-21 06:00 UTC: period total moved from 1,050.00 to 990.00"
        later = now + timedelta(days=1)
        store.sync(candidate(100).iloc[0:0], ["log"], later, notes={group: down})
        resolved = store.claim_next(["log"], later)
        assert resolved is not None and resolved.event == "resolved"
        assert resolved.payload["alert"]["restatement"] == down
        # a later load without a restatement keeps the note on the alert
        store.sync(candidate(100).iloc[0:0], ["log"], later + timedelta(days=1))
        assert store.alerts_frame()["restatement"].tolist() == [down]
