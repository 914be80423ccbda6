"""Workers, leases and fencing against real databases (SQLite always, PostgreSQL when
MONITOR_TEST_POSTGRES_URL is set): what several daemons on one database rely on."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import select, update

from monitor.app.workers import Heartbeat, process_gone, process_identity
from monitor.config.model import WorkerSettings
from monitor.errors import ClaimLostError
from monitor.ingest.decide import FeedIntent
from monitor.ingest.schedule import FeedUpdate
from monitor.storage.feeds import FeedConfigRow
from monitor.storage.schema import Alert, Delivery, Feed, Story, Worker
from monitor.storage.store import Store
from tests.support.cli import run_monitor
from tests.support.stories import entry, record, result


def add_feeds(store: Store, hosts: dict[str, str]) -> None:
    """Feeds named by *hosts*' keys, each on the host of its value; all due now."""
    store.sync_feeds([FeedConfigRow(n, f"http://{h}/{n}.xml", 600, "en") for n, h in hosts.items()])


def register(store: Store, *workers: str) -> None:
    for w in workers:
        store.register_worker(w, host="test", pid=1)


def lease_left(store: Store, name: str) -> float:
    with store.transaction() as conn:
        until = conn.execute(select(Feed.claim_until).where(Feed.name == name)).scalar_one()
        return (until - store.db_now(conn)).total_seconds()


def test_heartbeat_renews_live_claims_on_the_databases_clock(store: Store) -> None:
    add_feeds(store, {"a": "h1"})
    register(store, "w1")
    (a,) = store.claim_due_feeds(worker="w1", lease=5)
    assert 3 < lease_left(store, "a") <= 5
    beat = store.heartbeat("w1", lease=60, host="test", pid=1)
    assert beat.feeds == 1 and not beat.revived
    assert 55 < lease_left(store, "a") <= 60
    assert store.claim_stats()["renewals"] >= 1


def test_a_silent_workers_claims_run_out_and_are_taken_over(store: Store) -> None:
    add_feeds(store, {"a": "h1", "b": "h2"})
    register(store, "dead")
    held = store.claim_due_feeds(worker="dead", lease=60)
    register(store, "live")
    assert sorted(f.name for f in held) == ["a", "b"]
    assert store.claim_due_feeds(worker="live", lease=60) == []  # held: not yet
    with store.transaction() as conn:  # "dead" stops beating: a minute later, its leases have run out
        a_minute_ago = store.db_now(conn) - dt.timedelta(minutes=1)
        conn.execute(update(Worker).where(Worker.id == "dead").values(heartbeat_at=a_minute_ago))
        conn.execute(update(Feed).where(Feed.claimed_by == "dead").values(claim_until=a_minute_ago))
    before = store.claim_stats()["takeovers"]
    taken = store.claim_due_feeds(worker="live", lease=60)
    assert sorted(f.name for f in taken) == ["a", "b"]
    assert store.claim_stats()["takeovers"] - before == 2
    # The dead worker's late write is refused: its fencing token is stale.
    with pytest.raises(ClaimLostError) as info:
        store.apply_poll(
            [FeedIntent(held[0].id, FeedUpdate(next_poll_at=held[0].next_poll_at))],
            worker="dead",
            claims={held[0].id: held[0].claim_version},
        )
    assert info.value.feed_ids == (held[0].id,)
    # The same worker re-claiming bumps the version: an older token of its own is stale too.
    store.release_feeds(worker="live")
    (again,) = [f for f in store.claim_due_feeds(worker="live", lease=60) if f.id == taken[0].id]
    assert again.claim_version == taken[0].claim_version + 1
    keep = FeedIntent(again.id, FeedUpdate(next_poll_at=again.next_poll_at))
    with pytest.raises(ClaimLostError):
        store.apply_poll([keep], worker="live", claims={again.id: taken[0].claim_version})
    store.apply_poll([keep], worker="live", claims={again.id: again.claim_version})


def test_a_lost_claim_writes_nothing(store: Store) -> None:
    add_feeds(store, {"a": "h1"})
    (a,) = store.claim_due_feeds(worker="w1", lease=60)
    with store.transaction() as conn:  # another worker took it over meanwhile
        conn.execute(update(Feed).values(claimed_by="w2", claim_version=Feed.claim_version + 1))
    with pytest.raises(ClaimLostError):
        record(store, a, [entry(1)], {0: [result("kursk")]}, targets={"kursk": ["mail"]}, worker="w1")
    with store.transaction() as conn:
        assert conn.execute(select(Story.id)).all() == []
        assert conn.execute(select(Alert.id)).all() == []
        assert conn.execute(select(Feed.claimed_by)).scalar_one() == "w2"


@pytest.mark.parametrize(
    ("hosts", "per_host", "limit", "first", "second"),
    [
        # A host another live worker holds is left to it, however many of its feeds are due.
        ({"a1": "h1", "a2": "h1", "a3": "h1", "b1": "h2"}, None, 1, ["a1"], ["b1"]),
        # One claim takes at most per_host feeds of a host, then spreads over the others.
        ({"a1": "h1", "a2": "h1", "a3": "h1", "b1": "h2", "c1": "h3"}, 2, 3, ["a1", "a2", "b1"], ["c1"]),
        # ... and fills up with that host's others when no other host has feeds due.
        ({"a1": "h1", "a2": "h1", "a3": "h1", "b1": "h2"}, 2, 4, ["a1", "a2", "a3", "b1"], []),
        # Feeds of one host all in one claim when nobody else holds it.
        ({"a1": "h1", "a2": "h1"}, None, 10, ["a1", "a2"], []),
    ],
)
def test_one_host_is_read_by_one_worker_at_a_time(
    store: Store, hosts: dict[str, str], per_host: int | None, limit: int, first: list[str], second: list[str]
) -> None:
    add_feeds(store, hosts)
    got1 = store.claim_due_feeds(worker="w1", lease=60, limit=limit, per_host=per_host)
    got2 = store.claim_due_feeds(worker="w2", lease=60, limit=10, per_host=per_host)
    assert sorted(f.name for f in got1) == first
    assert sorted(f.name for f in got2) == second
    assert not {hosts[f.name] for f in got1} & {hosts[f.name] for f in got2}


def queue_alerts(store: Store, targets: list[str]) -> None:
    add_feeds(store, {"src": "h9"})
    (feed,) = store.claim_due_feeds(worker="poller", lease=60, names=["src"])
    record(
        store,
        feed,
        [entry(i) for i in range(len(targets))],
        {i: [result(f"w{i}")] for i in range(len(targets))},
        targets={f"w{i}": [t] for i, t in enumerate(targets)},
    )
    with store.transaction() as conn:  # due now, on the real clock
        conn.execute(update(Alert).values(next_attempt_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)))


def test_a_target_is_planned_by_one_worker_at_a_time(store: Store) -> None:
    queue_alerts(store, ["mail", "mail", "slack"])
    got1 = store.claim_alerts(worker="d1", lease=60, limit=1)
    assert [a.target for a in got1] == ["mail"]
    got2 = store.claim_alerts(worker="d2", lease=60)
    assert [a.target for a in got2] == ["slack"]  # mail's other alert waits for d1
    assert store.mark_sent(got1, worker="d1", delivery=("mail", "alert", "t")) == 1
    # Nobody holds mail now: whoever claims next plans it.
    (rest,) = store.claim_alerts(worker="d2", lease=60)
    assert rest.target == "mail"


def test_a_send_after_losing_the_claim_is_refused_or_counted(store: Store) -> None:
    queue_alerts(store, ["mail", "mail"])
    first, second = store.claim_alerts(worker="d1", lease=0.3)
    time.sleep(0.5)  # d1 paused past its lease; d2 takes both over
    taken = store.claim_alerts(worker="d2", lease=60)
    assert sorted(a.id for a in taken) == sorted([first.id, second.id])
    # Before its send d1 checks: nothing is still its own, so nothing is sent.
    assert store.confirm([first], worker="d1", lease=60) == set()
    # Had d1 sent anyway (it paused between the check and the mark), the mark is refused
    # and the send counted as a possible duplicate, in the log and the counters.
    before = store.claim_stats()["duplicates"]
    assert store.mark_sent([second], worker="d1", delivery=("mail", "alert", "t")) == 0
    assert store.claim_stats()["duplicates"] - before == 1
    with store.transaction() as conn:
        assert conn.execute(select(Delivery.alerts, Delivery.duplicates, Delivery.worker)).one() == (0, 1, "d1")
    assert store.counts()["duplicates"] == 1
    assert store.confirm(taken, worker="d2", lease=60) == {first.id, second.id}


def test_retire_gives_back_everything_and_workers_lists_who_holds_what(store: Store) -> None:
    add_feeds(store, {"a": "h1", "b": "h2"})
    register(store, "w1")
    store.claim_due_feeds(worker="w1", lease=60)
    register(store, "w2")
    listed = {w.id: w for w in store.workers(lease=15)}
    assert listed["w1"].alive and listed["w1"].feeds == 2 and listed["w2"].feeds == 0
    assert store.retire_worker("w1") == (2, 0)
    assert [w.id for w in store.workers(lease=15)] == ["w2"]
    assert sorted(f.name for f in store.claim_due_feeds(worker="w2", lease=60)) == ["a", "b"]


def _child() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_process_identity_tells_a_live_process_from_a_dead_or_zombie_one() -> None:
    me = process_identity()
    if me is None:
        pytest.skip("process identity needs Linux /proc")
    assert not process_gone(me)
    child = _child()
    ident = process_identity(child.pid)
    assert ident is not None and not process_gone(ident)
    child.kill()
    time.sleep(0.2)  # killed, not yet reaped: a zombie, which kill(pid, 0) would call alive
    assert process_gone(ident)
    child.wait()
    assert process_gone(ident)
    # Another machine (or PID namespace): nothing can be told from here.
    assert not process_gone("other-boot/pid:[1]/" + ident.rsplit("/", 2)[1] + "/1")


def test_a_restarted_daemon_takes_back_a_killed_ones_work_at_once(store: Store) -> None:
    add_feeds(store, {"a": "h1"})
    child = _child()
    ident = process_identity(child.pid)
    if ident is None:
        pytest.skip("process identity needs Linux /proc")
    store.register_worker("killed", host="thishost", pid=child.pid, process=ident)
    store.claim_due_feeds(worker="killed", lease=600)
    child.kill()
    child.wait()
    beat = Heartbeat(store, "restarted", WorkerSettings())
    beat.host = "thishost"
    beat.start()
    try:
        assert [f.name for f in store.claim_due_feeds(worker="restarted", lease=60)] == ["a"]
        assert [w.id for w in store.workers(lease=15)] == ["restarted"]
    finally:
        beat.stop()
    assert os.getpid() == beat.pid


def test_workers_and_feeds_show_who_holds_what(tmp_path: Path) -> None:
    import json

    db = tmp_path / "monitor.db"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"database: sqlite:///{db}\nfeeds:\n  - {{name: desk, url: 'http://desk.example/rss'}}\n"
        "  - {name: wire, url: 'http://wire.example/rss'}\n",
        encoding="utf-8",
    )
    store = Store(f"sqlite:///{db}")
    try:
        store.sync_feeds(
            [
                FeedConfigRow("desk", "http://desk.example/rss", 600, None),
                FeedConfigRow("wire", "http://wire.example/rss", 600, None),
            ]
        )
        store.register_worker("alpha:41:aa", host="alpha", pid=41)
        store.claim_due_feeds(worker="alpha:41:aa", lease=60, names=["desk"])
        store.register_worker("beta:42:bb", host="beta", pid=42)
        with store.transaction() as conn:  # beta has been silent for a minute: dead
            conn.execute(
                update(Worker)
                .where(Worker.id == "beta:42:bb")
                .values(heartbeat_at=dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
            )
    finally:
        store.close()
    out = run_monitor(config, "workers", "--json")
    assert out.returncode == 0, out.stderr
    listed = {w["id"]: w for w in json.loads(out.stdout)["workers"]}
    assert listed["alpha:41:aa"]["alive"] and listed["alpha:41:aa"]["feeds_claimed"] == 1
    assert not listed["beta:42:bb"]["alive"]
    table = run_monitor(config, "workers")
    assert "alpha:41:aa" in table.stdout and "live" in table.stdout and "dead" in table.stdout
    feeds = {f["name"]: f for f in json.loads(run_monitor(config, "feeds", "--json").stdout)["feeds"]}
    assert feeds["desk"]["claimed_by"] == "alpha:41:aa" and feeds["desk"]["claim_until"]
    assert feeds["wire"]["claimed_by"] is None


def test_live_workers_split_the_hosts_and_take_what_is_overdue(store: Store) -> None:
    hosts = {f"f{i}": f"h{i}" for i in range(24)}
    add_feeds(store, hosts)
    register(store, "w1", "w2", "w3")
    got = {w: {f.name for f in store.claim_due_feeds(worker=w, lease=15, limit=100)} for w in ("w1", "w2", "w3")}
    assert set().union(*got.values()) == set(hosts)  # every due feed, each by one worker
    assert sorted(len(g) for g in got.values()) == [8, 8, 8], got  # one feed a host: 8 hosts each
    assert sum(len(g) for g in got.values()) == len(hosts)
    # A feed overdue past steal_after is anyone's: its host's owner is slow or stuck.
    add_feeds(store, {**hosts, "late": "h-late"})
    with store.transaction() as conn:
        conn.execute(
            update(Feed).where(Feed.name == "late").values(next_poll_at=store.db_now(conn) - dt.timedelta(minutes=5))
        )
    takers = [w for w in ("w1", "w2", "w3") if store.claim_due_feeds(worker=w, lease=15, limit=100)]
    assert len(takers) == 1  # the first to ask takes it, whoever owns its host


def test_a_command_gets_no_share_of_the_hosts(store: Store) -> None:
    """A `poll` command running beside a daemon must not keep hosts from it."""
    hosts = {f"f{i}": f"h{i}" for i in range(6)}
    add_feeds(store, hosts)
    register(store, "daemon")
    store.register_worker("poll-command", host="test", pid=2, role="command")
    assert {f.name for f in store.claim_due_feeds(worker="daemon", lease=15, limit=100)} == set(hosts)
