"""Alert notifications on a shared lake, end to end: a message is sent once across every writer
of the lake, and the lake says it was delivered.

A real PostgreSQL catalog and S3 server (tests/lake/conftest.py), the emulator on loopback
(two organizations), a real webhook receiver on loopback verifying each message's Standard
Webhooks signature and counting deliveries by `webhook-id`. Every run is a process of its own
with its own working copy, as on separate hosts:

1. a first host runs: every alert message reaches the receiver once, and the lake (read from
   a machine with no warehouse: `usage-etl query`, `usage-etl alerts`) says delivered;
2. a fresh run container (an empty working copy, its alert state recovered from the lake)
   runs: it sends nothing again;
3. a higher threshold makes new alerts, and both hosts run at once: each new message reaches
   the receiver once, whichever host sent it, and the lake records it delivered.

The claim that makes step 3 safe is then checked on its own, with no run around it and the
race forced: two writers' claims read the lake before either commits, so they conflict; the
one retried sees the other's claim and claims nothing, and sends nothing while the claim
holds; what the claimant delivered reaches the other writer's state through the lake; a claim
older than the lease (a writer that died after claiming) is taken over. Last, the at-least-once
window: the catalog refuses connections right after a writer sent its messages, so its outcome
commit fails; it warns, keeps them delivered, and its next commit records them in the lake,
while its claim keeps the other writer from sending them meanwhile.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from alerting.delivery import deliver_configured
from alerting.lake_state import (
    commit_alert_state,
    deliver_through_lake,
    merged_alert_tables,
    writer_name,
)
from alerting.state import state_path
from alerting.store import AlertStore
from emulator.server import EmulatorServer
from insights.quotas import load_quotas
from tests.alerts.conftest import WEBHOOK_SECRET, Receiver
from tests.alerts.test_reconcile import NOW, candidates
from tests.lake.conftest import Lake
from tests.services.cli import Done, clean_env, usage_etl_in_process
from tests.services.emulator import start_emulator
from warehouse.lake import connect
from warehouse.lake_sync import MergedTables, publish_up
from warehouse.schema import now_utc

REPO = Path(__file__).resolve().parents[2]
QUOTAS = REPO / "quotas.example.yaml"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver(WEBHOOK_SECRET).start()
    try:
        yield hook
    finally:
        hook.stop()


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with start_emulator(organizations=2) as emulator:
        yield emulator


def write_quotas(path: Path, server: EmulatorServer, thresholds: list[int]) -> Path:
    """Every organization over its (tiny) budget; alerts go to the webhook channel only."""
    config = yaml.safe_load(QUOTAS.read_text())
    names = [org.name for org in server.state.orgs.values()]
    config["organizations"] = {name: {"credit_budget": 1} for name in names}
    config["rules"]["credit_actual_thresholds"] = thresholds
    config["rules"]["credit_forecast_thresholds"] = []
    config["rules"]["resource_thresholds"] = []
    config["channels"] = {
        "log": False,
        "webhook": {"url_env": "LAKE_TEST_WEBHOOK_URL", "secret_env": "LAKE_TEST_WEBHOOK_SECRET"},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def host_env(
    host: str, tmp: Path, lake: Lake, server: EmulatorServer, hook: Receiver, quotas: Path
) -> dict[str, str]:
    return {
        **os.environ,
        **lake.env,
        "UBIOPS_API_HOST": server.base_url,
        "UBIOPS_API_TOKEN": server.token,
        "USAGE_WAREHOUSE": str(tmp / host / "warehouse"),
        "DAGSTER_HOME": str(tmp / host / "dagster"),
        "USAGE_QUOTAS": str(quotas),
        "LAKE_TEST_WEBHOOK_URL": hook.url,
        "LAKE_TEST_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


def start_run(env: dict[str, str], start: str, log: Path) -> subprocess.Popen[str]:
    """`usage-etl run` as a host of its own (a process; stderr to a file, never a full pipe)."""
    with open(log, "w") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "run", "--start", start],
            cwd=REPO, env=env, text=True, stdout=subprocess.DEVNULL, stderr=handle,
        )  # fmt: skip


def finish(process: subprocess.Popen[str], log: Path) -> str:
    process.wait(timeout=600)
    err = log.read_text()
    assert process.returncode == 0, err[-3000:]
    return err


def lake_outbox(env: dict[str, str]) -> list[dict[str, str]]:
    """The lake's `alert_outbox`, read from a machine with no warehouse of its own."""
    done = usage_etl_in_process(
        "query", "select webhook_id, status, attempts from alert_outbox order by 1",
        "--format", "csv", env=env,
    )  # fmt: skip
    assert done.code == 0, done.err
    return list(csv.DictReader(io.StringIO(done.out)))


def deliveries(hook: Receiver) -> Counter[str]:
    """How many times the receiver got each message (by its `webhook-id` header)."""
    return Counter(h["webhook-id"] for h in hook.headers)


@pytest.mark.timeout(900)
def test_a_message_is_sent_once_across_the_writers_of_a_lake_and_the_lake_says_delivered(
    lake: Lake, server: EmulatorServer, receiver: Receiver, tmp_path: Path
) -> None:
    start = str(datetime.now(UTC).date() - timedelta(days=6))
    quotas = write_quotas(tmp_path / "quotas.yaml", server, [50, 80, 100])

    def env(host: str) -> dict[str, str]:
        return host_env(host, tmp_path, lake, server, receiver, quotas)

    analyst = env("analyst")

    # 1. the first host: each message once, and the lake says delivered
    first = finish(start_run(env("host-1"), start, tmp_path / "h1.log"), tmp_path / "h1.log")
    sent = deliveries(receiver)
    assert len(sent) == 2, first[-3000:]  # the 100 % alert of each organization
    assert set(sent.values()) == {1}
    outbox = lake_outbox(analyst)
    assert {r["webhook_id"]: r["status"] for r in outbox} == dict.fromkeys(sent, "delivered")
    listing = usage_etl_in_process("alerts", env=analyst)
    assert listing.code == 0, listing.err
    assert "2 open alerts" in listing.out.splitlines()[0]
    assert "undelivered" not in listing.out and "pending" not in listing.out, listing.out
    assert not (tmp_path / "analyst" / "warehouse").exists()

    # 2. a fresh run container (empty working copy): its state recovered from the lake, it
    # sends nothing again
    fresh = finish(start_run(env("container"), start, tmp_path / "c.log"), tmp_path / "c.log")
    assert "recovered 2 alerts and 2 messages" in fresh
    assert deliveries(receiver) == sent, fresh[-3000:]

    # 3. new alerts (a higher threshold crossed), both hosts at once: each message once
    write_quotas(quotas, server, [50, 80, 100, 150])
    runs = [
        (start_run(env(host), start, tmp_path / f"{host}.log"), tmp_path / f"{host}.log")
        for host in ("host-1", "container")
    ]
    for process, log in runs:
        finish(process, log)
    now = deliveries(receiver)
    assert set(now.values()) == {1}, now
    new = set(now) - set(sent)
    assert len(new) == 2
    outbox = lake_outbox(analyst)
    delivered = {r["webhook_id"] for r in outbox if r["status"] == "delivered"}
    assert delivered == set(now)
    assert {r["status"] for r in outbox} <= {"delivered", "cancelled"}


def lake_statuses(lake: Lake) -> dict[str, str]:
    con = connect(lake.config, read_only=True)
    try:
        rows = con.execute("SELECT webhook_id, status FROM alert_outbox").fetchall()
    finally:
        con.close()
    return {str(w): str(s) for w, s in rows}


def quota_file(path: Path, channels: dict[str, Any], max_attempts: int | None = 1) -> Path:
    """The example quota file with these channels (`max_attempts` before a message is failed;
    None: the example's)."""
    quotas = yaml.safe_load(QUOTAS.read_text())
    quotas["channels"] = {"log": False, **channels}
    if max_attempts is not None:
        quotas["delivery"] = {**quotas.get("delivery", {}), "max_attempts": max_attempts}
    path.write_text(yaml.safe_dump(quotas))
    return path


def test_a_claim_in_the_lake_holds_off_other_writers_until_delivered_or_expired(
    lake: Lake, receiver: Receiver, tmp_path: Path
) -> None:
    webhook = {"webhook": {"url": receiver.url, "secret": WEBHOOK_SECRET}}
    config = load_quotas(quota_file(tmp_path / "quotas.yaml", webhook, max_attempts=None))
    copies = {host: tmp_path / host for host in ("a", "b")}
    stores = {host: AlertStore(state_path(root)) for host, root in copies.items()}
    try:
        for host, store in stores.items():  # the same evaluation on both writers, committed
            store.sync(candidates(85), ["webhook"], NOW)
            commit_alert_state(copies[host], lake.config, store)
        assert set(lake_statuses(lake).values()) == {"pending"}

        # both claims read the lake before either commits: they conflict, one is retried
        barrier = threading.Barrier(2, timeout=120)
        claims: dict[str, list[str]] = {host: [] for host in copies}
        retries: dict[str, int] = {}

        def claim(host: str) -> None:
            with AlertStore(state_path(copies[host])) as store:  # sqlite: one per thread
                merged = merged_alert_tables(store, now_utc(), claim=claims[host])
                first = [True]

                def merge_together(con: Any) -> Mapping[str, pa.Table]:
                    rows = merged.merge(con)
                    if first[0]:
                        first[0] = False
                        barrier.wait()
                    return rows

                together = MergedTables(merged.tables, merge_together)
                retries[host] = publish_up(copies[host], lake.config, [], together, False).retries

        threads = [threading.Thread(target=claim, args=(host,)) for host in copies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert sum(retries.values()) >= 1, retries
        assert sorted(len(c) for c in claims.values()) == [0, 2]
        owner, other = sorted(copies, key=lambda h: -len(claims[h]))
        assert set(lake_statuses(lake).values()) == {"sending"}

        # the other writer's pass sends nothing while the claim holds
        held = deliver_through_lake(copies[other], lake.config, stores[other], config)
        assert (held.claimed, held.report.delivered, len(receiver.headers)) == (0, 0, 0)

        # the owner sends and commits the outcome; the other writer learns it from the lake
        sent = deliver_configured(stores[owner], config, only=set(claims[owner]))
        assert sent.delivered == 2
        commit_alert_state(
            copies[owner], lake.config, stores[owner], own_claims=frozenset(claims[owner])
        )
        commit_alert_state(copies[other], lake.config, stores[other])  # its next commit
        assert set(stores[other].outbox_frame()["status"]) == {"delivered"}
        assert deliveries(receiver) == dict.fromkeys(lake_statuses(lake), 1)
        assert set(lake_statuses(lake).values()) == {"delivered"}

        # new alerts; the owner claims them and dies: once the claim is older than the lease,
        # the other writer takes them over and sends each once
        for store in stores.values():
            store.sync(candidates(105), ["webhook"], NOW)
        died: list[str] = []
        ago = now_utc() - stores[owner].lease - timedelta(seconds=60)
        commit_alert_state(copies[owner], lake.config, stores[owner], ago, claim=died)
        assert len(died) == 2
        taken = deliver_through_lake(copies[other], lake.config, stores[other], config)
        assert (taken.claimed, taken.report.delivered, taken.problems) == (2, 2, [])
        assert set(deliveries(receiver).values()) == {1} and len(receiver.headers) == 4
        statuses = lake_statuses(lake)
        assert {w for w, s in statuses.items() if s == "delivered"} == set(deliveries(receiver))
    finally:
        for store in stores.values():
            store.close()


def test_an_outcome_commit_that_fails_after_sending_is_warned_and_made_good_later(
    lake: Lake, receiver: Receiver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The catalog refuses connections right after the messages went out: the writer keeps
    them delivered and warns; its claim holds the other writer off; its next commit records
    them delivered in the lake. Nothing is sent twice."""
    webhook = {"webhook": {"url": receiver.url, "secret": WEBHOOK_SECRET}}
    config = load_quotas(quota_file(tmp_path / "quotas.yaml", webhook, max_attempts=None))
    copies = {host: tmp_path / host for host in ("a", "b")}
    stores = {host: AlertStore(state_path(root)) for host, root in copies.items()}
    admin = lake.postgres.connect("postgres")
    admin.autocommit = True

    def catalog_connections(allowed: bool) -> None:
        with admin.cursor() as cur:
            allow = "true" if allowed else "false"
            cur.execute(f'ALTER DATABASE "{lake.postgres.database}" ALLOW_CONNECTIONS {allow}')

    def send_then_lose_the_catalog(*args: Any, **kwargs: Any) -> Any:
        report = deliver_configured(*args, **kwargs)
        catalog_connections(False)
        return report

    try:
        for host, store in stores.items():
            store.sync(candidates(85), ["webhook"], NOW)
            commit_alert_state(copies[host], lake.config, store)
        with monkeypatch.context() as patched:
            patched.setattr("alerting.lake_state.deliver_configured", send_then_lose_the_catalog)
            try:
                done = deliver_through_lake(copies["a"], lake.config, stores["a"], config)
            finally:
                catalog_connections(True)
        assert done.report.delivered == 2 and len(receiver.headers) == 2
        (problem,) = done.problems
        assert "was not committed to the shared lake" in problem
        assert lake.postgres.password not in problem
        assert set(stores["a"].outbox_frame()["status"]) == {"delivered"}
        assert set(lake_statuses(lake).values()) == {"sending"}  # a's claim, still live

        held = deliver_through_lake(copies["b"], lake.config, stores["b"], config)
        assert (held.claimed, held.report.delivered, len(receiver.headers)) == (0, 0, 2)

        commit_alert_state(copies["a"], lake.config, stores["a"])  # a's next run's commit
        assert set(lake_statuses(lake).values()) == {"delivered"}
        commit_alert_state(copies["b"], lake.config, stores["b"])
        assert set(stores["b"].outbox_frame()["status"]) == {"delivered"}
        assert set(deliveries(receiver).values()) == {1} and len(receiver.headers) == 2
    finally:
        admin.close()
        for store in stores.values():
            store.close()


def test_retry_leaves_other_writers_channels_to_them_and_takes_in_their_failures(
    lake: Lake, receiver: Receiver, tmp_path: Path
) -> None:
    """Writer a's quota file configures the webhook, writer b's does not: `usage-etl alerts
    --retry` on b leaves the webhook's messages to a (said, exit 0), and exits 1 only for a
    channel no writer configures. When a gives up on them (failed there), b sees them failed:
    --retry does not send them as if new, --all-failed puts them back and sends them."""
    hook = {"url": receiver.url, "secret": WEBHOOK_SECRET, "timeout_seconds": 2}
    quotas_a = quota_file(tmp_path / "a.yaml", {"webhook": hook})
    quotas_b = quota_file(tmp_path / "b.yaml", {"log": True})
    copies = {host: tmp_path / host for host in ("a", "b")}
    stores = {host: AlertStore(state_path(root)) for host, root in copies.items()}
    env = {**clean_env(), **lake.env}

    def alerts(*args: str, quotas: Path = quotas_b) -> Done:
        return usage_etl_in_process(
            "alerts", *args, "--warehouse", str(copies["b"]), "--quotas", str(quotas), env=env
        )

    try:
        stores["a"].sync(candidates(85), ["webhook"], NOW)
        commit_alert_state(copies["a"], lake.config, stores["a"], configured=["webhook"])
        commit_alert_state(copies["b"], lake.config, stores["b"], configured=["log"])
        assert set(stores["b"].outbox_frame()["channel"]) == {"webhook"}
        stores["b"].close()

        done = alerts("--retry")
        assert done.code == 0, done
        assert "notifications: 0 delivered, 2 pending, 0 failed" in done.out
        assert done.err.strip() == (
            "usage-etl alerts: pending messages for channel(s) other writers of the shared "
            f"lake deliver, left for them: webhook (2: {writer_name(copies['a'])})"
        )
        assert receiver.headers == [] and set(lake_statuses(lake).values()) == {"pending"}

        # a gives up on the webhook's messages (the receiver is down): failed in the lake
        receiver.stop()
        config_a = load_quotas(quotas_a)
        for _ in range(2):  # a pass stops using a channel at its first failure
            gave_up = deliver_through_lake(copies["a"], lake.config, stores["a"], config_a)
            assert (gave_up.report.delivered, gave_up.problems) == (0, [])
        assert set(lake_statuses(lake).values()) == {"failed"}
        receiver.start()

        # b's listing shows them failed, with a's error, before b commits anything
        listing = alerts()
        assert listing.code == 0 and listing.err == "", listing
        rows = [line.split() for line in listing.out.splitlines() if " webhook " in line]
        assert len(rows) == 2 and all("failed" in row for row in rows), listing.out
        assert "Connection refused" in listing.out

        # b, now configuring the webhook too: --retry does not send them as if new
        quotas_b = quota_file(tmp_path / "b.yaml", {"webhook": hook})
        done = alerts("--retry", quotas=quotas_b)
        assert "0 delivered" in done.out and receiver.headers == [], done
        with AlertStore(state_path(copies["b"])) as store:
            outbox = store.outbox_frame()
        failed = outbox[outbox["channel"] == "webhook"]
        assert set(failed["status"]) == {"failed"} and set(failed["attempts"]) == {1}
        # ... --all-failed puts them back and sends them, once
        done = alerts("--all-failed", quotas=quotas_b)
        assert "2 failed messages queued again" in done.out, done
        assert len(deliveries(receiver)) == 2 and set(deliveries(receiver).values()) == {1}
        assert set(lake_statuses(lake).values()) == {"delivered"}

        # a channel no writer of the lake configures is b's error, named as such
        with AlertStore(state_path(copies["b"])) as store:
            store.sync(candidates(105), ["ghost"], NOW)
        done = alerts("--retry", quotas=quotas_b)
        assert done.code == 1, done
        assert done.err.strip() == (
            f"usage-etl alerts: pending messages for channel(s) not configured in {quotas_b}, "
            "nor by any other writer of the shared lake (as of their runs in the last 7 days): "
            "ghost (2); nothing was sent to them (pass the quota file that configures them: "
            "--quotas or USAGE_QUOTAS)"
        )
    finally:
        for store in stores.values():
            store.close()


def test_all_failed_on_a_writer_not_delivering_the_channel_hands_the_messages_back_once(
    lake: Lake, receiver: Receiver, tmp_path: Path
) -> None:
    """Writer a delivers the webhook and gave up on its messages; `usage-etl alerts
    --all-failed` on writer b (log only) queues them again in the lake at once: a sends them.
    When a gives up on them again, b's next commit leaves them failed (not queued again for a
    after every run of b)."""
    hook = {"url": receiver.url, "secret": WEBHOOK_SECRET, "timeout_seconds": 2}
    config_a = load_quotas(quota_file(tmp_path / "a.yaml", {"webhook": hook}))
    quotas_b = quota_file(tmp_path / "b.yaml", {"log": True})
    copies = {host: tmp_path / host for host in ("a", "b")}
    stores = {host: AlertStore(state_path(root)) for host, root in copies.items()}
    env = {**clean_env(), **lake.env}

    def give_up() -> None:
        """A run of a: its commit (taking in the lake), then its delivery passes, failing."""
        commit_alert_state(copies["a"], lake.config, stores["a"], configured=["webhook"])
        receiver.stop()
        for _ in range(2):  # a pass stops using a channel at its first failure
            deliver_through_lake(copies["a"], lake.config, stores["a"], config_a)
        receiver.start()
        assert set(lake_statuses(lake).values()) == {"failed"}

    try:
        stores["a"].sync(candidates(85), ["webhook"], NOW)
        give_up()
        stores["b"].close()
        done = usage_etl_in_process(
            "alerts", "--all-failed", "--warehouse", str(copies["b"]), "--quotas",
            str(quotas_b), env=env,
        )  # fmt: skip
        assert "2 failed messages queued again" in done.out, done
        assert set(lake_statuses(lake).values()) == {"pending"}
        give_up()  # a's sends fail again
        stores["b"] = AlertStore(state_path(copies["b"]))
        commit_alert_state(copies["b"], lake.config, stores["b"])  # b's next run's commit
        assert set(lake_statuses(lake).values()) == {"failed"}
        assert set(stores["b"].outbox_frame()["status"]) == {"failed"}
    finally:
        for store in stores.values():
            store.close()


def test_the_channels_of_writers_gone_for_longer_than_their_age_limit_leave_the_lake(
    lake: Lake, tmp_path: Path
) -> None:
    """Each run container is a writer of its own (its host name): the channels a run records
    do not pile up in the lake, one row per channel per run, for good."""
    day = timedelta(days=1)
    for n in range(3):  # three run containers, 8 days apart
        with AlertStore(tmp_path / f"run{n}" / "alerts.sqlite") as store:
            commit_alert_state(
                tmp_path / f"run{n}", lake.config, store, NOW + n * 8 * day, configured=["log"]
            )
    con = connect(lake.config, read_only=True)
    try:
        rows = con.execute("SELECT writer, recorded_at FROM meta.alert_channels").fetchall()
    finally:
        con.close()
    assert rows == [(writer_name(tmp_path / "run2"), NOW + 16 * day)]
