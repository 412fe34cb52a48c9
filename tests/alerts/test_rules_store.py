"""Alert rules -> durable store: thresholds, resolution, backfill, idempotency, crash recovery."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from alerting import LogChannel, deliver_pending
from alerting.evaluate import backtest_rule, compute_alerts
from alerting.store import AlertStore
from insights.quotas import load_quotas, parse_quotas

from .conftest import organizations_frame, usage_frame

CONFIG = load_quotas()  # bundled example: free = 1000 credits per period
ORGS = organizations_frame(("o1", "free", "2024-03-01", "2024-04-01"))
NOW = datetime(2024, 3, 11, 6, 0)


def usage_until(per_day: float, days: int, start: str = "2024-02-20") -> pd.DataFrame:
    """Flat daily usage from ``start`` on (two projects splitting it 3:1)."""
    return usage_frame("o1", start, {"p1": [per_day * 0.75] * days, "p2": [per_day * 0.25] * days})


def evaluate(usage: pd.DataFrame, as_of: str, rules=("credit_actual",)) -> pd.DataFrame:
    return compute_alerts(usage, ORGS, CONFIG, as_of=as_of, rules=rules).candidates


@pytest.fixture
def store(tmp_path):
    with AlertStore(tmp_path / "state" / "alerts.sqlite") as s:
        yield s


def outbox(store: AlertStore) -> pd.DataFrame:
    return store.outbox_frame()[["alert_key", "event", "channel", "status"]]


def test_only_highest_threshold_notifies(store) -> None:
    # Mar 1..10: 850 credits used = 85% of 1000 -> 50 and 80 crossed, only 80 is a candidate
    cand = evaluate(usage_until(85, 20), "2024-03-10")
    assert list(cand.threshold) == [80.0]
    assert cand.iloc[0].alert_key == "o1||credit_actual|80|2024-03-01"
    assert "top projects: P1 638, P2 212" in cand.iloc[0].explanation
    store.sync(cand, ["log"], NOW)
    assert deliver_pending(store, {"log": LogChannel()}, NOW).delivered == 1
    # next day: 935 -> still 80, nothing new; then 1020 -> 100 opens, 80 is superseded
    store.sync(evaluate(usage_until(85, 21), "2024-03-11"), ["log"], NOW)
    assert deliver_pending(store, {"log": LogChannel()}, NOW).delivered == 0
    report = store.sync(evaluate(usage_until(85, 22), "2024-03-12"), ["log"], NOW)
    assert report.opened == ["o1||credit_actual|100|2024-03-01"]
    assert report.superseded == ["o1||credit_actual|80|2024-03-01"]
    assert deliver_pending(store, {"log": LogChannel()}, NOW).delivered == 1
    alerts = store.alerts_frame().set_index("threshold")
    assert alerts.loc[80.0, "status"] == "superseded" and alerts.loc[100.0, "status"] == "notified"
    assert (outbox(store).event == "open").sum() == 2


def test_jump_over_thresholds_before_delivery_cancels_lower(store) -> None:
    store.sync(evaluate(usage_until(85, 20), "2024-03-10"), ["log", "webhook"], NOW)
    store.sync(evaluate(usage_until(85, 22), "2024-03-12"), ["log", "webhook"], NOW)
    rows = outbox(store)
    assert set(rows[rows.alert_key.str.contains("|80|", regex=False)].status) == {"cancelled"}
    assert set(rows[rows.alert_key.str.contains("|100|", regex=False)].status) == {"pending"}


def test_resolved_once_after_correction_and_new_period(store) -> None:
    channels = {"log": LogChannel()}
    store.sync(evaluate(usage_until(85, 20), "2024-03-10"), ["log"], NOW)
    deliver_pending(store, channels, NOW)
    # a correction reloads the period lower: 60% -> 80 resolves once; 50 is recorded silently
    corrected = usage_until(60, 20)
    for _ in range(2):  # re-runs add nothing
        store.sync(evaluate(corrected, "2024-03-10"), ["log"], NOW)
    rows = outbox(store)
    assert list(rows.event) == ["open", "open", "resolved"]
    assert list(rows.status) == ["delivered", "suppressed", "pending"]
    assert deliver_pending(store, channels, NOW).delivered == 1
    alerts = store.alerts_frame().set_index("threshold")
    assert alerts.loc[80.0, "status"] == "resolved" and alerts.loc[50.0, "status"] == "open"
    # the next period starts: the old period's open alert expires ("period ended"), silently
    report = store.sync(
        evaluate(usage_until(60, 42), "2024-04-01"), ["log"], NOW + timedelta(days=21)
    )
    assert report.expired == ["o1||credit_actual|50|2024-03-01"] and report.resolved == []
    rows = outbox(store)
    assert list(rows.status) == ["delivered", "suppressed", "delivered"]
    assert store.alerts_frame().set_index("threshold").loc[50.0, "status"] == "expired"


def test_backfill_of_past_period_is_suppressed(store) -> None:
    cand = evaluate(usage_until(120, 30), "2024-03-20")
    assert set(cand.threshold) == {100.0}
    report = store.sync(cand, ["log", "webhook"], datetime(2024, 6, 1))
    assert report.suppressed == list(cand.alert_key) and report.queued == 0
    assert set(outbox(store).status) == {"suppressed"}
    assert deliver_pending(store, {"log": LogChannel()}, datetime(2024, 6, 1)).delivered == 0
    assert bool(store.alerts_frame().iloc[0].suppressed)


def test_rerun_is_idempotent_and_reopen_is_new_occurrence(store) -> None:
    cand = evaluate(usage_until(85, 20), "2024-03-10")
    store.sync(cand, ["log"], NOW)
    store.sync(cand, ["log"], NOW)
    assert len(outbox(store)) == 1
    deliver_pending(store, {"log": LogChannel()}, NOW)
    deliver_pending(store, {"log": LogChannel()}, NOW)
    assert outbox(store).status.tolist() == ["delivered"]
    empty = cand.iloc[0:0]
    store.sync(empty, ["log"], NOW)  # resolves
    store.sync(cand, ["log"], NOW)  # crosses again: occurrence 2
    frame = store.outbox_frame()
    assert frame.occurrence.tolist() == [1, 1, 2]
    assert frame.webhook_id.nunique() == 3


def test_partial_evaluation_does_not_resolve_other_orgs(store) -> None:
    cand = evaluate(usage_until(85, 20), "2024-03-10")
    store.sync(cand, ["log"], NOW)
    store.sync(cand.iloc[0:0], ["log"], NOW, evaluated_organizations=["other-org"])
    assert store.alerts_frame().status.tolist() == ["open"]
    store.sync(cand.iloc[0:0], ["log"], NOW, evaluated_rules=["credit_forecast"])
    assert store.alerts_frame().status.tolist() == ["open"]


def test_crash_between_send_and_mark_resends_after_lease(tmp_path) -> None:
    path = tmp_path / "alerts.sqlite"
    with AlertStore(path, lease_seconds=60) as store:
        store.sync(evaluate(usage_until(85, 20), "2024-03-10"), ["webhook"], NOW)
        item = store.claim_next(["webhook"], NOW)
        assert item is not None  # "sent", then the process dies before mark_delivered
    with AlertStore(path, lease_seconds=60) as store:  # a later run
        assert store.claim_next(["webhook"], NOW + timedelta(seconds=30)) is None
        again = store.claim_next(["webhook"], NOW + timedelta(seconds=61))
        assert again is not None and again.webhook_id == item.webhook_id
        assert again.attempts == 2
        store.mark_delivered(again, NOW)
        assert store.claim_next(["webhook"], NOW + timedelta(days=1)) is None
        assert store.alerts_frame().status.tolist() == ["notified"]


def test_forecast_rule_needs_min_days(store) -> None:
    # 5 days of heavy use: credit_actual fires; no forecast alert before 7 days of data
    usage = usage_until(150, 5, start="2024-03-01")
    cand = evaluate(usage, "2024-03-05", rules=("credit_actual", "credit_forecast"))
    assert cand.rule.tolist() == ["credit_actual"]
    usage = usage_until(40, 8, start="2024-03-01")
    cand = evaluate(usage, "2024-03-08", rules=("credit_actual", "credit_forecast"))
    assert cand.rule.tolist() == ["credit_forecast"]
    assert cand.iloc[0].forecast == pytest.approx(40 * 31)


def test_resource_limit_alert_uses_observation_period() -> None:
    resources = pd.DataFrame(
        {
            "organization_id": ["o1", "o1"],
            "observed_at": pd.to_datetime(["2024-03-01 10:00", "2024-03-09 10:00"], utc=True),
            "projects": [1, 3],
            "users": [1, 1],
            "deployments": [2, 4],
            "deployment_versions": [1, 1],
            "pipelines": [0, 0],
            "pipeline_versions": [0, 0],
            "buckets": [1, 1],
            "environments": [0, 0],
        }
    )
    result = compute_alerts(
        usage_until(1, 20), ORGS, CONFIG, resources, as_of="2024-03-10", rules=("resource_limit",)
    )
    cand = result.candidates.set_index("metric")
    assert cand.loc["projects", "alert_key"] == "o1||resource_limit.projects|100|2024-03-01"
    assert cand.loc["deployments", "threshold"] == 80.0  # 4 of 5
    status = result.status.set_index("metric")
    assert status.loc["deployments", "days_until_limit"] == 4  # +0.25/day, 1 to go
    assert status.loc["projects", "status"] == "exceeded"


def test_backtest_counts_notifications() -> None:
    config = parse_quotas({"subscriptions": {"free": {"credit_budget": 1000}}})
    usage = usage_until(50, 40)  # Feb 20 .. Mar 30; 50/day -> 1000 reached on Mar 20
    result = backtest_rule(usage, ORGS, config, "credit_actual", "2024-03-01", "2024-03-30")
    notified = result[result.notified]
    assert list(zip(notified.date.dt.day, notified.threshold, strict=True)) == [
        (10, 50.0),
        (16, 80.0),
        (20, 100.0),
    ]
    fc = backtest_rule(usage, ORGS, config, "credit_forecast", "2024-03-01", "2024-03-30")
    # 10 days of history on Mar 1 (>= min_days): 50 x 31 days = 1550 forecast -> fires at once,
    # and only once for the period
    assert fc[fc.notified].date.tolist() == [pd.Timestamp("2024-03-01")]
    assert len(fc) == 30


def test_anomaly_rule_end_to_end(store) -> None:
    config = parse_quotas(
        {
            "subscriptions": {"free": {"credit_budget": 100000}},
            "rules": {"min_impact_credits": 50, "anomaly": {"enabled": True, "sensitivity": 4}},
        }
    )
    big = [100.0 + (i % 3) for i in range(30)]
    big[-1] = 900.0  # the latest day (Mar 20) is a spike
    usage = usage_frame("o1", "2024-02-20", {"big": big, "tiny": [1.0] * 29 + [30.0]})
    cand = compute_alerts(usage, ORGS, config, as_of="2024-03-20").candidates
    assert set(cand.alert_key) == {"o1||anomaly|4|2024-03-01", "o1|big|anomaly|4|2024-03-01"}
    assert "(930 credits, expected ~102)" in cand.set_index("project_id").loc["", "title"]
    store.sync(cand, ["log"], NOW)
    store.sync(cand.iloc[0:0], ["log"], NOW)  # next day normal: resolves silently
    rows = store.outbox_frame()
    assert rows.event.tolist() == ["open", "open"]
    assert set(store.alerts_frame().status) == {"resolved"}


def test_max_attempts_marks_failed(store) -> None:
    class Down:
        name = "webhook"

        def send(self, item) -> None:
            from alerting import DeliveryError

            raise DeliveryError("webhook: http://127.0.0.1:9 answered HTTP 503")

    store.sync(evaluate(usage_until(85, 20), "2024-03-10"), ["webhook"], NOW)
    first = deliver_pending(store, {"webhook": Down()}, NOW, max_attempts=2)
    assert first.retried_later == 1 and first.pending == 1
    later = NOW + timedelta(hours=1)  # after the backoff
    second = deliver_pending(store, {"webhook": Down()}, later, max_attempts=2)
    assert second.failed == 1 and second.pending == 0
    assert store.outbox_frame().status.tolist() == ["failed"]
    assert store.requeue_failed() == 1 and store.pending_count() == 1


def test_forgetting_an_organization_leaves_no_byte_of_it(tmp_path) -> None:
    """`usage-etl forget`'s part of the state: the organization's alerts, messages and period
    totals go, nothing of them stays in the file's free space or log, even where SQLite was
    built without SECURE_DELETE (as Debian's is; turned off here), and the other organization
    keeps its rows."""
    gone = "zz-forgotten-organization"
    orgs = organizations_frame(
        ("o1", "free", "2024-03-01", "2024-04-01"), (gone, "free", "2024-03-01", "2024-04-01")
    )
    usage = pd.concat([usage_until(85, 20), usage_frame(gone, "2024-02-20", {"p9": [90] * 20})])
    cand = compute_alerts(usage, orgs, CONFIG, as_of="2024-03-10", rules=("credit_actual",))
    path = tmp_path / "state" / "alerts.sqlite"
    with AlertStore(path) as store:
        store._conn.execute("PRAGMA secure_delete=OFF")
        store.sync(cand.candidates, ["log", "webhook"], NOW)
        store._conn.execute(
            "INSERT INTO period_totals VALUES (?, '2024-03-01', '2024-03-09', 900, '2024-03-10')",
            [gone],
        )
        assert deliver_pending(store, {"log": LogChannel()}, NOW).delivered == 2
        kept = store.alerts_frame().query("organization_id == 'o1'")
        kept_outbox = outbox(store).query("alert_key.str.startswith('o1|')")
        assert gone.encode() in path.read_bytes() + Path(f"{path}-wal").read_bytes()

        assert store.forget_organization(gone) == {"alerts": 1, "outbox": 2, "period_totals": 1}
        pd.testing.assert_frame_equal(store.alerts_frame(), kept.reset_index(drop=True))
        pd.testing.assert_frame_equal(outbox(store), kept_outbox.reset_index(drop=True))
        assert not store.loaded_totals()
        on_disk = b"".join(p.read_bytes() for p in path.parent.iterdir())
    assert gone.encode() not in on_disk
    assert gone.encode() not in path.read_bytes()
