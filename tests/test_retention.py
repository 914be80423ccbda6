"""Retention: what the daily prune deletes, and what it must keep (monitor/storage/retention.py)."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError
from ruamel.yaml import YAML
from sqlalchemy import func, insert, select, update

from monitor.app.services.retention import describe
from monitor.config.model import Config
from monitor.errors import StoreError
from monitor.ingest.entries import Entry
from monitor.ingest.schedule import FeedSnapshot
from monitor.storage.engine import PRUNE_LOCK
from monitor.storage.feeds import FeedConfigRow
from monitor.storage.retention import CHUNK, Cutoffs, PruneReport, RetentionPolicy, cutoffs
from monitor.storage.schema import Alert, Delivery, Match, PrunedStory, Story, StoryFeed
from monitor.storage.search import search_stories
from monitor.storage.store import Store
from tests.support.cli import run_monitor
from tests.support.feeds import Item, rss
from tests.support.httpserver import HTTPTestServer, Static
from tests.support.stories import NOW, entry, record, result
from tests.support.webhook import WebhookReceiver

DAY = dt.timedelta(days=1)
OLD = NOW - 100 * DAY  # first seen before the default 90 days
RECENT = NOW - 2 * DAY
DEFAULT = RetentionPolicy()


def feed(store: Store, name: str = "wire", *, now: dt.datetime = OLD) -> FeedSnapshot:
    store.sync_feeds([FeedConfigRow(name=name, url=f"http://127.0.0.1/{name}.xml", interval_s=600, language="en")])
    (snap,) = store.claim_due_feeds(worker="w1", lease=60, now=now, names=[name], force=True)
    return snap


def count(store: Store, model: type[object], *where: object) -> int:
    with store.transaction() as conn:
        return int(conn.execute(select(func.count()).select_from(model).where(*where)).scalar_one())  # type: ignore[arg-type]


def prune(store: Store, policy: RetentionPolicy = DEFAULT, *, dry_run: bool = False) -> PruneReport:
    return store.prune(cutoffs(policy, NOW), dry_run=dry_run, now=NOW)


# --- the plan (pure) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (DEFAULT, Cutoffs(NOW - 90 * DAY, NOW - 30 * DAY, NOW - 30 * DAY, NOW - 366 * DAY)),
        # never: nothing of that kind goes
        (RetentionPolicy(None, None, None, None), Cutoffs(None, None, None, None)),
        # the clusterer's memory and the longest rate-limit period win over shorter settings
        (
            RetentionPolicy(stories=DAY, deliveries=DAY, cluster_memory=6 * DAY, rate_window=2 * DAY),
            Cutoffs(NOW - 6 * DAY, NOW - 2 * DAY, NOW - 30 * DAY, NOW - 366 * DAY),
        ),
    ],
)
def test_cutoffs(policy: RetentionPolicy, expected: Cutoffs) -> None:
    assert cutoffs(policy, NOW) == expected


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("never", 0.0), ("Never", 0.0), (0, 0.0), ("90d", 90 * 86400.0), ("12h", 43200.0)],
)
def test_retention_settings_parse_durations_and_never(value: object, seconds: float) -> None:
    config = Config.model_validate({"retention": {"stories": value, "deliveries": value}})
    assert config.retention.stories == config.retention.deliveries == seconds


@pytest.mark.parametrize("value", ["forever", "-1d", "400d"])
def test_retention_settings_refuse_what_is_not_a_duration(value: str) -> None:
    with pytest.raises(ValidationError, match="retention.stories"):
        Config.model_validate({"retention": {"stories": value}})


def test_services_policy_reads_cluster_window_and_rate_limits() -> None:
    from monitor.app.services.retention import retention_policy

    config = Config.model_validate(
        {
            "retention": {"stories": "never", "deliveries": "1d"},
            "cluster": {"window": "100h"},
            "targets": {"a": {"url": "json://127.0.0.1/", "rate_limit": "10/3d"}, "b": "json://127.0.0.1/"},
        }
    )
    policy = retention_policy(config)
    assert policy.stories is None and policy.deliveries == DAY
    assert policy.cluster_memory == dt.timedelta(hours=200) and policy.rate_window == 3 * DAY


# --- stories --------------------------------------------------------------------------------


def test_old_stories_go_with_their_matches_and_sightings_recent_ones_stay(store: Store) -> None:
    snap = feed(store)
    record(store, snap, [entry(1), entry(2)], {0: [result("wl")]}, now=OLD)
    record(store, snap, [entry(3)], {0: [result("wl")]}, now=RECENT)
    assert count(store, Match) == 2 and count(store, StoryFeed) == 3

    report = prune(store)

    assert (report.stories, report.clusters) == (2, 2)
    with store.transaction() as conn:
        assert list(conn.scalars(select(Story.title))) == ["Story 3"]
    assert count(store, Match) == 1 and count(store, StoryFeed) == 1
    assert count(store, PrunedStory) == 2
    assert prune(store).stories == 0  # nothing left to do


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: entry(7), id="link-and-guid"),
        pytest.param(lambda: entry(7, link=None), id="guid-only"),
        pytest.param(lambda: entry(7, guid=None), id="link-only"),
        pytest.param(lambda: entry(7, link=None, guid=None), id="text-only"),
    ],
)
def test_a_pruned_story_still_in_its_feed_is_not_new_again(store: Store, make: object) -> None:
    snap = feed(store)
    e: Entry = make()  # type: ignore[operator]
    record(store, snap, [e], {0: [result("wl")]}, targets={"wl": ["mail"]}, now=OLD)
    with store.transaction() as conn:
        conn.execute(update(Alert).values(status="sent"))
    assert prune(store).stories == 1

    again = record(store, snap, [e, entry(8)], {0: [result("wl")]}, targets={"wl": ["mail"]}, now=NOW)

    assert (again.new_stories, again.alerts) == (1, 0)  # only story 8 is new; 7 alerts nothing
    with store.transaction() as conn:
        assert list(conn.scalars(select(Story.title))) == ["Story 8"]
        assert list(conn.scalars(select(StoryFeed.story_id))) == list(conn.scalars(select(Story.id)))


def test_the_same_link_in_another_feed_is_still_the_pruned_story(store: Store) -> None:
    a = feed(store, "a")
    record(store, a, [entry(7)], now=OLD)
    prune(store)
    b = feed(store, "b", now=NOW)
    assert record(store, b, [entry(7, guid="urn:other")], now=NOW).new_stories == 0


@pytest.mark.parametrize(
    ("status", "kept"),
    [("pending", True), ("sending", True), ("sent", False), ("failed", False)],
)
def test_a_story_with_an_alert_to_deliver_stays(store: Store, status: str, kept: bool) -> None:
    snap = feed(store)
    record(store, snap, [entry(1)], {0: [result("wl")]}, targets={"wl": ["mail", "hook"]}, now=OLD)
    with store.transaction() as conn:
        conn.execute(update(Alert).where(Alert.target == "mail").values(status=status))
        conn.execute(update(Alert).where(Alert.target == "hook").values(status="sent"))

    prune(store)

    assert count(store, Story) == int(kept)
    assert count(store, Alert) == (2 if kept else 0)  # a sent alert of a kept story stays with it


def _cluster(store: Store, first: int, *members: int) -> None:
    with store.transaction() as conn:
        ids = {t: i for i, t in conn.execute(select(Story.id, Story.title))}
        conn.execute(
            update(Story)
            .where(Story.title.in_([f"Story {m}" for m in members]))
            .values(cluster_id=ids[f"Story {first}"])
        )


@pytest.mark.parametrize(
    ("member_seen", "kept"),
    [(RECENT, 2), (NOW - 91 * DAY, 0), (NOW - 5 * DAY, 2)],
)
def test_a_cluster_goes_whole_and_only_when_its_newest_story_is_old(
    store: Store, member_seen: dt.datetime, kept: int
) -> None:
    snap = feed(store)
    record(store, snap, [entry(1)], now=OLD)
    record(store, snap, [entry(2)], now=member_seen)
    _cluster(store, 1, 2)
    prune(store)
    assert count(store, Story) == kept


def test_an_alert_to_deliver_on_any_story_keeps_its_whole_cluster(store: Store) -> None:
    snap = feed(store)
    record(store, snap, [entry(1)], now=OLD)
    record(store, snap, [entry(2)], {0: [result("wl")]}, targets={"wl": ["mail"]}, now=OLD + DAY)
    _cluster(store, 1, 2)
    prune(store)
    assert count(store, Story) == 2


def test_the_clusterer_memory_keeps_stories_a_short_setting_would_delete(store: Store) -> None:
    snap = feed(store)
    record(store, snap, [entry(1)], now=NOW - 3 * DAY)
    record(store, snap, [entry(2)], now=NOW - 8 * DAY)
    prune(store, RetentionPolicy(stories=DAY, cluster_memory=6 * DAY))
    with store.transaction() as conn:
        assert list(conn.scalars(select(Story.title))) == ["Story 1"]


def test_stories_never_keeps_every_story(store: Store) -> None:
    snap = feed(store)
    record(store, snap, [entry(1)], now=NOW - 300 * DAY)
    assert prune(store, RetentionPolicy(stories=None)).stories == 0
    assert count(store, Story) == 1


def test_more_stories_than_a_chunk_are_all_pruned(store: Store) -> None:
    snap = feed(store)
    n = CHUNK + 250
    record(store, snap, [entry(i) for i in range(n)], now=OLD)
    record(store, snap, [entry(n)], now=RECENT)
    report = prune(store)
    assert report.stories == n and count(store, Story) == 1 and count(store, PrunedStory) == n


def test_search_finds_only_the_stories_kept(store: Store) -> None:
    snap = feed(store)
    record(store, snap, [entry(1, title="Kursk offensive stalls")], now=OLD)
    record(store, snap, [entry(2, title="Kursk bridge reopens")], now=RECENT)
    prune(store)
    found = search_stories(store, "kursk")
    assert [h.story.title for h in found.hits] == ["Kursk bridge reopens"]
    if store.dialect == "sqlite" and found.engine == "fts5":  # the index has no trace of the pruned story
        with store.transaction() as conn:
            from sqlalchemy import text

            rows = conn.execute(text("SELECT rowid FROM stories_fts WHERE stories_fts MATCH 'offensive'")).all()
        assert rows == []


# --- delivery log, feed-health alerts, dedupe keys ---------------------------------------------


def test_old_delivery_rows_and_health_alerts_go(store: Store) -> None:
    snap = feed(store)
    with store.transaction() as conn:
        for sent in (NOW - 40 * DAY, NOW - 31 * DAY, NOW - 29 * DAY, NOW):
            conn.execute(insert(Delivery).values(target="mail", sent_at=sent, kind="alert", alerts=1, title="t"))
        old = NOW - 40 * DAY
        for created, status in [(old, "sent"), (old, "failed"), (old, "pending"), (NOW - DAY, "sent")]:
            row = {"kind": "feed_down", "feed_id": snap.id, "watchlist": "health", "target": "mail"}
            times = {"created_at": created, "next_attempt_at": created}
            conn.execute(insert(Alert).values(**row, **times, status=status, fold=False, attempts=0))

    report = prune(store)

    assert (report.deliveries, report.outbox) == (2, 2)
    with store.transaction() as conn:
        assert sorted(conn.scalars(select(Delivery.sent_at))) == [NOW - 29 * DAY, NOW]
        assert sorted(conn.scalars(select(Alert.status))) == ["pending", "sent"]


def test_dedupe_keys_expire_after_their_own_retention(store: Store) -> None:
    snap = feed(store)
    record(store, snap, [entry(1)], now=NOW - 500 * DAY)
    store.prune(cutoffs(DEFAULT, NOW - 400 * DAY), now=NOW - 400 * DAY)
    assert count(store, PrunedStory) == 1
    assert prune(store).keys_expired == 1
    assert count(store, PrunedStory) == 0
    assert record(store, snap, [entry(1)], now=NOW).new_stories == 1  # a year later, it is new again


def test_a_dry_run_counts_what_a_prune_deletes_and_deletes_nothing(store: Store) -> None:
    snap = feed(store)
    record(store, snap, [entry(1), entry(2), entry(3)], now=OLD)
    record(store, snap, [entry(4)], now=RECENT)
    _cluster(store, 1, 2)
    with store.transaction() as conn:
        conn.execute(insert(Delivery).values(target="m", sent_at=OLD, kind="alert", alerts=1, title="t"))

    dry = prune(store, dry_run=True)

    assert (dry.stories, dry.clusters, dry.deliveries, dry.dry_run) == (3, 2, 1, True)
    assert count(store, Story) == 4 and count(store, Delivery) == 1 and count(store, PrunedStory) == 0
    real = prune(store)
    assert (real.stories, real.clusters, real.deliveries) == (dry.stories, dry.clusters, dry.deliveries)
    assert count(store, Story) == 1


def test_a_prune_that_must_not_wait_skips_while_another_daemon_prunes(
    store: Store, db_backend: tuple[str, str | None]
) -> None:
    snap = feed(store)
    record(store, snap, [entry(1)], now=OLD)
    cut = cutoffs(DEFAULT, NOW)
    with store.exclusive(PRUNE_LOCK) as held:  # another daemon's prune, as far as the lock goes
        assert held
        if store.dialect == "postgresql":
            # The lock is per session: the daemon's own prune is another session.
            other = Store(db_backend[0], schema=db_backend[1])
            try:
                report = other.prune(cut, now=NOW, wait=False)
            finally:
                other.close()
            assert report.skipped and report.stories == 0
            assert describe(report) == "skipped: another daemon is pruning this database now"
            assert count(store, Story) == 1
    # Free again (and always on SQLite, one daemon per file): the prune runs.
    report = store.prune(cut, now=NOW, wait=False)
    assert not report.skipped and report.stories == 1


def test_a_lock_not_had_in_time_is_a_store_error_and_keeps_no_connection(
    store: Store, db_backend: tuple[str, str | None]
) -> None:
    other = Store(db_backend[0], schema=db_backend[1])
    try:
        with store.exclusive(PRUNE_LOCK):
            if store.dialect == "postgresql":
                with pytest.raises(StoreError, match="lock timeout"), other.exclusive(PRUNE_LOCK, wait=0.2):
                    pass
                assert other.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
            else:  # one daemon per SQLite file: nothing to wait for
                with other.exclusive(PRUNE_LOCK, wait=0.2) as held:
                    assert held
    finally:
        other.close()


# --- the command line and a real poll ---------------------------------------------------------


@dataclass
class Env:
    http: HTTPTestServer
    hook: WebhookReceiver
    config: Path
    db: Path
    items: list[Item]

    def run(self, *args: str) -> str:
        done = run_monitor(self.config, *args, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def publish(self, item: Item, etag: str) -> None:
        self.items.insert(0, item)
        self.http.route("/wire.xml", Static(body=rss(self.items), etag=etag))

    def age(self, days: int) -> None:
        """Make every stored story, alert and delivery *days* older (as if time had passed)."""
        with sqlite3.connect(self.db) as conn:
            for table, column in [("stories", "first_seen_at"), ("outbox", "created_at"), ("deliveries", "sent_at")]:
                conn.execute(f"UPDATE {table} SET {column} = datetime({column}, '-{days} days')")

    def titles(self) -> list[str]:
        with sqlite3.connect(self.db) as conn:
            return sorted(t for (t,) in conn.execute("SELECT title FROM stories"))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with HTTPTestServer() as http, WebhookReceiver() as hook:
        items = [Item("Weather: a mild autumn", "https://news.example.org/weather", "Nothing to report.")]
        http.route("/wire.xml", Static(body=rss(items), etag='"w1"'))
        db = tmp_path / "monitor.db"
        config = {
            "database": f"sqlite:///{db}",
            "poll": {"timeout": "2s", "deadline": "4s", "parse_workers": 1},
            "targets": {"hook": hook.apprise_json_url("/alerts")},
            "feeds": [{"name": "wire", "url": http.url("/wire.xml"), "language": "en"}],
            "watchlists": [{"name": "kursk", "query": "Kursk", "notify": ["hook"]}],
        }
        path = tmp_path / "config.yaml"
        with path.open("w", encoding="utf-8") as fh:
            YAML().dump(config, fh)
        yield Env(http, hook, path, db, items)


def test_a_pruned_story_still_in_the_feed_does_not_alert_again_on_the_next_poll(env: Env) -> None:
    env.run("poll", "--once")  # first poll: recorded without alerting
    env.publish(Item("Fighting resumes near Kursk", "https://news.example.org/kursk?utm_source=rss"), '"w2"')
    env.run("poll", "--once")
    assert len(env.hook.wait_for(1)) == 1
    env.age(100)

    out = env.run("prune")

    assert "deleted 2 stories (2 clusters), 1 delivery log rows" in out
    assert env.titles() == []
    # The feed still lists both entries, and a new one: only the new one is stored, and
    # the old Kursk story does not alert again.
    env.publish(Item("Kursk governor visits the border", "https://news.example.org/kursk-governor"), '"w3"')
    env.run("poll", "--once")
    (first, second) = env.hook.wait_for(2)
    assert "Kursk governor" in second.json["title"]
    time.sleep(0.5)
    assert len(env.hook.hooks) == 2
    assert env.titles() == ["Kursk governor visits the border"]


def test_prune_command_dry_run_prints_counts_and_deletes_nothing(env: Env) -> None:
    env.run("poll", "--once")
    env.age(100)
    out = env.run("prune", "--dry-run")
    assert out.strip() == (
        "would delete 1 stories (1 clusters), 0 delivery log rows, 0 feed-health alerts, 0 expired dedupe keys"
    )
    assert env.titles() == ["Weather: a mild autumn"]
    assert "deleted 1 stories" in env.run("prune")
    assert env.titles() == []


def test_the_daemon_prune_job_logs_its_counts(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    from monitor.app.daemon import Daemon

    env.run("poll", "--once")
    env.age(100)
    daemon = Daemon(str(env.config))
    try:
        with caplog.at_level("INFO", logger="monitor.app.daemon"):
            daemon._prune()
    finally:
        daemon.runtime.close()
    assert "retention: deleted 1 stories (1 clusters)" in caplog.text
    assert env.titles() == []


def test_a_story_pruned_between_the_look_up_and_the_write_does_not_fail_the_batch(store: Store) -> None:
    import dataclasses

    from monitor.ingest.decide import Decider, FeedPoll
    from monitor.ingest.schedule import FeedUpdate, PollPolicy

    snap = feed(store)
    record(store, snap, [entry(1)], now=OLD)
    record(store, snap, [entry(3)], now=RECENT)  # kept: SQLite does not hand the pruned id out again
    decider = Decider(
        match=lambda e: (), targets={}, policy=PollPolicy(), catchup=False, catchup_new_feeds=False, rand=lambda: 0.0
    )
    polled = [entry(1), entry(2)]
    known = store.known_stories([(snap.id, polled)])
    assert prune(store).stories == 1  # a prune runs between the look-up and the write

    (intent,) = decider.decide([FeedPoll(snap, polled, http_status=200)], known, NOW)
    (report,) = store.apply_poll([dataclasses.replace(intent, update=FeedUpdate(next_poll_at=snap.next_poll_at))])

    assert report.new_stories == 1
    with store.transaction() as conn:
        assert sorted(conn.scalars(select(Story.title))) == ["Story 2", "Story 3"]
    assert record(store, snap, polled, now=NOW).new_stories == 0
