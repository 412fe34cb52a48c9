"""`AlertStore.reconcile`: one writer's alert state taking in another copy of it (the shared
lake's `quota_alerts` / `alert_outbox`, as other writers committed them). Two stores stand for
two writers; the copy handed over is what `alerts_frame` / `outbox_frame` export, as the lake
holds it."""

from __future__ import annotations

from datetime import datetime, timedelta

import pandas as pd
import pytest

from alerting import LogChannel, deliver_pending
from alerting.evaluate import compute_alerts
from alerting.store import AlertStore
from insights.quotas import load_quotas

from .conftest import organizations_frame, usage_frame

CONFIG = load_quotas()  # bundled example: free = 1000 credits per period
ORGS = organizations_frame(
    ("o1", "free", "2024-03-01", "2024-04-01"), ("o2", "free", "2024-03-01", "2024-04-01")
)
NOW = datetime(2024, 3, 11, 6, 0)
LOG = {"log": LogChannel()}


def candidates(per_day: float) -> pd.DataFrame:
    """Both organizations' credit_actual alert after 10 days at `per_day` (1000 per period)."""
    usage = pd.concat(
        usage_frame(org, "2024-02-20", {"p1": [per_day] * 20}) for org in ("o1", "o2")
    )
    return compute_alerts(
        usage, ORGS, CONFIG, as_of="2024-03-10", rules=("credit_actual",)
    ).candidates


@pytest.fixture
def hosts(tmp_path) -> tuple[AlertStore, AlertStore]:
    a = AlertStore(tmp_path / "a" / "alerts.sqlite")
    b = AlertStore(tmp_path / "b" / "alerts.sqlite")
    for store in (a, b):
        store.sync(candidates(85), ["log"], NOW)  # the same evaluation on both hosts
    yield a, b
    a.close()
    b.close()


def statuses(store: AlertStore) -> dict[str, str]:
    frame = store.outbox_frame()
    return dict(zip(frame["idempotency_key"], frame["status"], strict=True))


def test_a_message_delivered_elsewhere_is_delivered_here_and_never_sent(hosts) -> None:
    a, b = hosts
    assert deliver_pending(a, LOG, NOW).delivered == 2
    taken = b.reconcile(a.alerts_frame(), a.outbox_frame(), NOW)
    assert taken.delivered_elsewhere == 2
    assert set(statuses(b).values()) == {"delivered"}
    assert set(b.alerts_frame()["status"]) == {"notified"}
    assert deliver_pending(b, LOG, NOW).delivered == 0


def test_nothing_delivered_here_goes_back_to_pending(hosts) -> None:
    a, b = hosts
    stale = a.outbox_frame()  # a's copy from before it knew anything was sent
    deliver_pending(b, LOG, NOW)
    b.reconcile(a.alerts_frame(), stale, NOW)
    assert set(statuses(b).values()) == {"delivered"}
    assert deliver_pending(b, LOG, NOW).delivered == 0


def test_another_writers_claim_holds_until_its_lease_ends(hosts) -> None:
    a, b = hosts
    copy = a.outbox_frame()
    copy["status"], copy["claimed_at"] = "sending", pd.Timestamp(NOW)  # a claimed both
    assert b.reconcile(a.alerts_frame(), copy, NOW).claimed_elsewhere == 2
    assert b.deliverable_keys(NOW + timedelta(minutes=4)) == []
    assert deliver_pending(b, LOG, NOW + timedelta(minutes=4)).delivered == 0
    # a died after claiming: once the claim is older than the lease, b sends them
    later = NOW + b.lease + timedelta(seconds=1)
    assert deliver_pending(b, LOG, later).delivered == 2


def test_a_claim_released_by_a_failed_send_is_pending_again(hosts) -> None:
    a, b = hosts
    copy = a.outbox_frame()
    copy["status"], copy["claimed_at"] = "sending", pd.Timestamp(NOW)
    b.reconcile(a.alerts_frame(), copy, NOW)
    released = a.outbox_frame()  # a's send failed: back to pending in the copy
    b.reconcile(a.alerts_frame(), released, NOW + timedelta(minutes=1))
    assert deliver_pending(b, LOG, NOW + timedelta(minutes=1)).delivered == 2


def test_an_expired_claim_and_own_claims_are_left_alone(hosts) -> None:
    a, b = hosts
    copy = a.outbox_frame()
    copy["status"], copy["claimed_at"] = "sending", pd.Timestamp(NOW - b.lease * 2)
    assert b.reconcile(a.alerts_frame(), copy, NOW).claimed_elsewhere == 0
    mine = b.outbox_frame()
    mine["status"], mine["claimed_at"] = "sending", pd.Timestamp(NOW)
    taken = b.reconcile(b.alerts_frame(), mine, NOW, own_claims=set(mine["idempotency_key"]))
    assert taken.claimed_elsewhere == 0
    assert deliver_pending(b, LOG, NOW).delivered == 2


def test_unknown_alerts_and_messages_are_added_once(tmp_path) -> None:
    a = AlertStore(tmp_path / "a.sqlite")
    b = AlertStore(tmp_path / "b.sqlite")
    try:
        a.sync(candidates(85), ["log"], NOW)
        deliver_pending(a, LOG, NOW)
        b.sync(candidates(85).iloc[:1], ["log"], NOW, evaluated_organizations=["o1"])
        # two writers' first commits to an empty lake table both landed: a message twice
        copy = pd.concat([a.outbox_frame().assign(status="pending"), a.outbox_frame()])
        taken = b.reconcile(a.alerts_frame(), copy, NOW)
        assert (taken.alerts_added, taken.messages_added, taken.delivered_elsewhere) == (1, 1, 1)
        assert statuses(b) == statuses(a)
        assert len(b.outbox_frame()) == 2 and b.outbox_frame()["id"].is_unique
        again = b.reconcile(a.alerts_frame(), copy, NOW)
        assert (again.alerts_added, again.messages_added) == (0, 0)
        assert deliver_pending(b, LOG, NOW).delivered == 0
    finally:
        a.close()
        b.close()


def test_an_alert_re_opened_elsewhere_is_taken_with_its_new_occurrence(hosts) -> None:
    """Both hosts saw the alerts resolve; host a saw them cross again (occurrence 2). Host b
    takes that occurrence in, so its next commit does not put occurrence 1 (resolved) back."""
    a, b = hosts
    later = NOW + timedelta(days=1)
    for store in (a, b):
        store.sync(candidates(85).iloc[0:0], ["log"], later)  # both resolved
    a.sync(candidates(85), ["log"], later + timedelta(hours=1))  # re-opened on a only
    assert set(a.alerts_frame()["occurrence"]) == {2}
    assert set(b.alerts_frame()["status"]) == {"resolved"}

    taken = b.reconcile(a.alerts_frame(), a.outbox_frame(), later + timedelta(hours=2))
    assert taken.alerts_updated == 2
    mine = b.alerts_frame()
    assert set(mine["occurrence"]) == {2} and set(mine["status"]) == {"open"}
    # the re-opening's messages came along and point at that occurrence
    outbox = b.outbox_frame()
    assert set(outbox[outbox["occurrence"] == 2]["event"]) == {"open"}

    # taking in a's older state again changes nothing
    again = b.reconcile(a.alerts_frame(), a.outbox_frame(), later + timedelta(hours=3))
    assert again.alerts_updated == 0


def test_a_writer_claims_only_messages_of_channels_it_configures(hosts) -> None:
    """A writer of a shared lake claims (and so blocks for the lease) only the messages it can
    send: those of another writer's channels stay free for that writer."""
    a, _ = hosts
    every = a.deliverable_keys(NOW)
    assert every and a.deliverable_keys(NOW, channels=["log"]) == every
    assert a.deliverable_keys(NOW, channels=["ops-hook"]) == []
    assert a.deliverable_keys(NOW, channels=[]) == []


def gave_up(copy: pd.DataFrame, attempts: int = 20) -> pd.DataFrame:
    """`copy` as a writer left it after its sends failed `attempts` times (its budget)."""
    copy = copy.copy()
    copy["status"], copy["attempts"] = "failed", attempts
    copy["last_error"] = "HTTP 503 from the receiver"
    copy["next_attempt_at"] = pd.Timestamp(NOW + timedelta(hours=6))
    return copy


def test_a_message_failed_elsewhere_is_failed_here_and_not_sent_as_new(hosts) -> None:
    """Another writer gave up on the messages: this writer sees them failed (its listing and
    `--all-failed` act on them), does not send them on its next pass, and its next commit does
    not put them back to pending in the lake."""
    a, b = hosts
    failed = gave_up(a.outbox_frame())
    b.reconcile(a.alerts_frame(), failed, NOW)
    mine = b.outbox_frame()
    assert set(mine["status"]) == {"failed"} and set(mine["attempts"]) == {20}
    assert set(mine["last_error"]) == {"HTTP 503 from the receiver"}
    assert deliver_pending(b, LOG, NOW + timedelta(days=1), ignore_backoff=True).delivered == 0
    # queued again here (--all-failed): the lake's older "failed" does not undo it ...
    assert b.resend() == 2
    b.reconcile(a.alerts_frame(), failed, NOW)
    assert set(statuses(b).values()) == {"pending"}
    assert deliver_pending(b, LOG, NOW).delivered == 2
    # ... and a message queued again by the other writer is pending here again
    assert a.reconcile(b.alerts_frame(), failed, NOW).messages_added == 0
    assert set(statuses(a).values()) == {"failed"}
    requeued = failed.assign(status="pending", attempts=0, next_attempt_at=pd.NaT)
    a.reconcile(a.alerts_frame(), requeued, NOW)
    assert set(statuses(a).values()) == {"pending"}


def test_a_message_cancelled_elsewhere_is_cancelled_here(hosts) -> None:
    a, b = hosts
    copy = a.outbox_frame()
    copy["status"], copy["last_error"] = "cancelled", "superseded by a higher threshold"
    b.reconcile(a.alerts_frame(), copy, NOW)
    assert set(statuses(b).values()) == {"cancelled"}
    assert deliver_pending(b, LOG, NOW, ignore_backoff=True).delivered == 0


def test_a_backoff_elsewhere_holds_here_until_its_next_attempt(hosts) -> None:
    """Another writer's sends failed 3 times: this writer waits for the same next attempt (it
    does not send them as if new), keeps their error, and takes its later state over its own
    older one (more attempts), never an older one over its own."""
    a, b = hosts
    later = NOW + timedelta(hours=1)
    copy = a.outbox_frame()
    copy["attempts"], copy["last_error"] = 3, "connection refused"
    copy["next_attempt_at"] = pd.Timestamp(later)
    b.reconcile(a.alerts_frame(), copy, NOW)
    mine = b.outbox_frame()
    assert set(mine["status"]) == {"pending"} and set(mine["attempts"]) == {3}
    assert set(mine["next_attempt_at"]) == {pd.Timestamp(later)}
    assert b.deliverable_keys(NOW) == [] and deliver_pending(b, LOG, NOW).delivered == 0
    older = a.outbox_frame()  # the copy from before those attempts changes nothing
    b.reconcile(a.alerts_frame(), older, NOW)
    assert set(b.outbox_frame()["attempts"]) == {3}
    assert deliver_pending(b, LOG, later).delivered == 2


def test_a_message_queued_again_here_is_failed_here_once_the_writer_sending_it_gives_up(
    hosts,
) -> None:
    """Writer a queues again (--all-failed) the messages of a channel writer b delivers; b tries
    them again and gives up: a, in a later process, takes b's failure, so its next commit does
    not queue them again for b (which would retry them after every run of a, forever)."""
    a, b = hosts
    failed = gave_up(a.outbox_frame())
    for store in (a, b):
        store.reconcile(store.alerts_frame(), failed, NOW)
    assert a.resend() == 2
    b.reconcile(b.alerts_frame(), a.outbox_frame(), NOW)  # a's commit of it
    assert set(statuses(b).values()) == {"pending"}
    again = gave_up(b.outbox_frame())  # b's sends failed again: its commit
    later = AlertStore(a.path)  # a's next run
    try:
        later.reconcile(later.alerts_frame(), again, NOW + timedelta(days=1))
        assert set(statuses(later).values()) == {"failed"}
        b.reconcile(b.alerts_frame(), again, NOW + timedelta(days=1))
        b.reconcile(b.alerts_frame(), later.outbox_frame(), NOW + timedelta(days=1))
        assert set(statuses(b).values()) == {"failed"}
    finally:
        later.close()
