"""The store against real databases: SQLite always, PostgreSQL when MONITOR_TEST_POSTGRES_URL is set."""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from monitor.ingest.decide import Decider, FeedIntent, FeedPoll, KnownStories, story_ident
from monitor.ingest.schedule import FeedUpdate, PollPolicy, after_deferred
from monitor.storage.engine import migrate, safe_url
from monitor.storage.feeds import FeedConfigRow
from monitor.storage.schema import Alert, Base, Match, Story
from monitor.storage.search import include_name
from monitor.storage.store import Store
from tests.support.stories import NOW, entry, record, result


def feeds_of(store: Store, *names: str, spread: bool = False) -> dict[str, int]:
    """Feeds on one host (127.0.0.1), or each on a host of its own with *spread*."""
    store.sync_feeds(
        [
            FeedConfigRow(
                name=n, url=f"http://{n + '.example' if spread else '127.0.0.1'}/{n}.xml", interval_s=600, language="en"
            )
            for n in names
        ],
        now=NOW,
    )
    return {f.name: f.id for f in store.feeds()}


def claim(store: Store, name: str, worker: str = "w1"):  # type: ignore[no-untyped-def]
    (snap,) = store.claim_due_feeds(worker=worker, lease=60, now=NOW, names=[name])
    return snap


def test_migrations_match_models_and_are_idempotent(store: Store) -> None:
    migrate(store.engine)  # second run: nothing to do, no error
    with store.engine.connect() as conn:
        # The full-text search objects of migration 0002 have no model (monitor/search.py);
        # include_name leaves out exactly those names, every real table is still compared.
        context = MigrationContext.configure(conn, opts={"include_name": include_name})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_sync_feeds_add_update_remove(store: Store) -> None:
    rep = store.sync_feeds(
        [FeedConfigRow("a", "http://x/a", 600, "en"), FeedConfigRow("b", "http://x/b", 600, None)], now=NOW
    )
    assert sorted(rep.added) == ["a", "b"]
    rep = store.sync_feeds([FeedConfigRow("a", "http://x/a2", 600, "en")], now=NOW)
    assert rep.updated == ("a",) and rep.removed == ("b",)
    (a,) = store.feeds()
    assert a.fetch_url == "http://x/a2" and a.etag is None
    assert [f.name for f in store.feeds(include_removed=True)] == ["a", "b"]


MIN = dt.timedelta(minutes=1)


@pytest.mark.parametrize(
    ("interval", "learn", "last_poll", "learned", "next_poll"),
    [
        (600, True, -20, 3600, 40),  # nothing changed: the learned schedule holds
        (600, False, -20, None, 0),  # learning off: 10 min after the last poll is past, so now
        (1800, True, -20, None, 10),  # shorter than the hour in use: 30 min after the last poll
        (7200, True, -20, None, 40),  # longer: the learned value goes, the next poll never moves later
        (300, True, None, None, 0),  # never polled (deferred by a host): now
    ],
    ids=["unchanged", "learning-off", "shorter", "longer", "never-polled"],
)
def test_sync_applies_a_new_interval_or_cadence_setting_at_once(
    store: Store, interval: float, learn: bool, last_poll: int | None, learned: float | None, next_poll: int
) -> None:
    """Stored: polled every 600 s, stretched to an hour by learned cadence."""
    fid = feeds_of(store, "a")["a"]
    polled = None if last_poll is None else NOW + last_poll * MIN
    stored = FeedUpdate(next_poll_at=NOW + 40 * MIN, learned_interval_s=3600.0)
    store.apply_poll([FeedIntent(fid, stored if polled is None else dataclasses.replace(stored, last_poll_at=polled))])
    store.sync_feeds([FeedConfigRow("a", "http://127.0.0.1/a.xml", interval, "en", learn_cadence=learn)], now=NOW)
    (a,) = store.feeds()
    assert (a.interval_s, a.learned_interval_s, a.next_poll_at) == (interval, learned, NOW + next_poll * MIN)


def test_claims_are_leases(store: Store) -> None:
    feeds_of(store, "a", "b")
    first = store.claim_due_feeds(worker="w1", lease=60, now=NOW)
    assert sorted(f.name for f in first) == ["a", "b"]
    assert store.claim_due_feeds(worker="w2", lease=60, now=NOW) == []  # held by w1
    later = NOW + dt.timedelta(seconds=61)  # w1 died: its lease expired
    assert sorted(f.name for f in store.claim_due_feeds(worker="w2", lease=60, now=later)) == ["a", "b"]


def test_not_due_feeds_are_not_claimed_unless_forced(store: Store) -> None:
    feeds_of(store, "a")
    (a,) = store.feeds()
    later = after_deferred(a, now=NOW, wait=3600, policy=PollPolicy(jitter=0))
    store.apply_poll([FeedIntent(a.id, later)])
    assert store.claim_due_feeds(worker="w", lease=60, now=NOW) == []
    assert [f.name for f in store.claim_due_feeds(worker="w", lease=60, now=NOW, force=True)] == ["a"]


def test_record_and_dedupe(store: Store) -> None:
    feeds_of(store, "a", "b")
    fa, fb = claim(store, "a"), claim(store, "b")
    e1, e2 = entry(1), entry(2)
    assert store.known_stories([(fa.id, [e1, e2])]) == KnownStories()
    rep = record(store, fa, [e1, e2], {0: [result("kursk")]}, targets={"kursk": ["mail", "slack"]})
    assert (rep.new_stories, rep.matches, rep.alerts) == (2, 1, 2)
    # Seen again: nothing new.
    assert record(store, fa, [e1, e2]).new_stories == 0
    # GUIDs change every poll while links stay: still not new.
    assert record(store, fa, [dataclasses.replace(e1, guid="urn:new", guid_key="gk-new")]).new_stories == 0
    # Same GUID, link changed (slug edited): not new either.
    assert record(store, fa, [dataclasses.replace(e2, link="https://x/other", link_key="lk-other")]).new_stories == 0
    # The same link in another feed is the same story: a sighting, not a new story.
    assert record(store, fb, [e1], {0: [result("kursk")]}, targets={"kursk": ["mail"]}).new_stories == 0
    claimed = store.claim_alerts(worker="d", lease=60, now=NOW)
    assert {a.target for a in claimed} == {"mail", "slack"}
    assert all([o.outlet for o in a.also_reported_by] == ["b"] for a in claimed)
    assert all(a.also_reported_by[0].link == e1.link and a.also_reported_by[0].language == "en" for a in claimed)
    assert all(a.terms == ("Kursk",) for a in claimed)


def test_recording_twice_is_idempotent(store: Store) -> None:
    feeds_of(store, "a")
    fa = claim(store, "a")
    e1 = entry(1)
    # A second daemon, or a retry after a crash, that looked up before the first wrote.
    known = store.known_stories([(fa.id, [e1])])
    decider = Decider(
        match=lambda e: [result("kursk")], targets={"kursk": ["mail"]}, policy=PollPolicy(), catchup_new_feeds=False
    )
    intents = decider.decide([FeedPoll(fa, [e1], http_status=200)], known, NOW)
    first, second = store.apply_poll(intents), store.apply_poll(intents)
    assert [(r.new_stories, r.matches, r.alerts) for r in first + second] == [(1, 1, 1), (0, 0, 0)]
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Story)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(Match)).scalar_one() == 1
        assert conn.execute(select(func.count()).select_from(Alert)).scalar_one() == 1


def test_a_story_stored_meanwhile_by_another_daemon_is_not_new_but_sighted(store: Store) -> None:
    feeds_of(store, "a", "b")
    fa, fb = claim(store, "a"), claim(store, "b")
    e1 = entry(1)
    decider = Decider(
        match=lambda e: [result("kursk")], targets={"kursk": ["mail"]}, policy=PollPolicy(), catchup_new_feeds=False
    )
    late = decider.decide([FeedPoll(fa, [e1], http_status=200)], store.known_stories([(fa.id, [e1])]), NOW)
    record(store, fb, [e1], {0: [result("kursk")]}, targets={"kursk": ["mail"]})  # the other daemon, first
    (rep,) = store.apply_poll(late)
    assert (rep.new_stories, rep.matches, rep.alerts) == (0, 0, 0)
    (claimed,) = store.claim_alerts(worker="d", lease=60, now=NOW)
    assert claimed.source == "b" and [o.outlet for o in claimed.also_reported_by] == ["a"]


def test_a_new_story_joins_the_cluster_its_intent_names(store: Store) -> None:
    feeds_of(store, "a")
    fa = claim(store, "a")
    (first,) = record(store, fa, [entry(1)]).new_story_ids
    decider = Decider(
        match=lambda e: [result("kursk")], targets={"kursk": ["mail"]}, policy=PollPolicy(), catchup_new_feeds=False
    )
    e2 = entry(2, title="Story 1, rewritten")
    (intent,) = decider.decide([FeedPoll(fa, [e2], http_status=200)], store.known_stories([(fa.id, [e2])]), NOW)
    cluster = story_ident(fa.id, entry(1))
    joined = dataclasses.replace(
        intent,
        stories=tuple(dataclasses.replace(s, cluster=cluster) for s in intent.stories),
        alerts=tuple(dataclasses.replace(a, cluster=cluster) for a in intent.alerts),
    )
    (rep,) = store.apply_poll([joined])
    detail = store.story_detail(rep.new_story_ids[0])
    assert detail is not None and detail.cluster_id == first
    assert [s.title for s in detail.cluster] == ["Story 1"]
    assert [(a.watchlist, a.target) for a in detail.alerts] == [("kursk", "mail")]


def test_catchup_records_matches_without_alerts(store: Store) -> None:
    feeds_of(store, "a")
    fa = claim(store, "a")
    rep = record(store, fa, [entry(1)], {0: [result("kursk")]}, targets={"kursk": ["mail"]}, alert=False)
    assert (rep.new_stories, rep.matches, rep.alerts) == (1, 1, 0)
    assert store.claim_alerts(worker="d", lease=60, now=NOW) == []


def test_entries_without_link_or_guid_get_stable_identity(store: Store) -> None:
    feeds_of(store, "a")
    fa = claim(store, "a")
    e = entry(7, link=None, guid=None)
    assert record(store, fa, [e]).new_stories == 1
    assert record(store, fa, [e]).new_stories == 0


def test_outbox_lease_retry_and_give_up(store: Store) -> None:
    feeds_of(store, "a")
    fa = claim(store, "a")
    (story_id,) = record(store, fa, [entry(1)], {0: [result("kursk")]}, targets={"kursk": ["mail"]}).new_story_ids
    (a,) = store.claim_alerts(worker="d1", lease=60, now=NOW)
    assert a.attempts == 1
    # While leased, nobody else gets it.
    assert store.claim_alerts(worker="d2", lease=60, now=NOW) == []
    # d1 died between claim and mark: after the lease, d2 retries it.
    (again,) = store.claim_alerts(worker="d2", lease=60, now=NOW + dt.timedelta(seconds=61))
    assert again.id == a.id and again.attempts == 2
    # d1 wakes up late: its mark is refused, the row is d2's now.
    assert store.mark_sent([a], worker="d1", now=NOW) == 0
    # d2 fails: back to pending with a retry time.
    retry_at = NOW + dt.timedelta(minutes=5)
    assert (
        store.mark_failed([again], worker="d2", error="smtp down", next_attempt_at=retry_at, give_up=False)
        == 1
    )
    assert store.claim_alerts(worker="d2", lease=60, now=NOW + dt.timedelta(minutes=4)) == []
    (third,) = store.claim_alerts(worker="d2", lease=60, now=retry_at)
    assert (
        store.mark_failed([third], worker="d2", error="still down", next_attempt_at=retry_at, give_up=True)
        == 1
    )
    assert store.alert_counts() == {"failed": 1}
    detail = store.story_detail(story_id)
    assert detail is not None and [(x.status, x.last_error) for x in detail.alerts] == [("failed", "still down")]


def test_mark_sent(store: Store) -> None:
    feeds_of(store, "a")
    fa = claim(store, "a")
    record(
        store,
        fa,
        [entry(1)],
        {0: [result("kursk"), result("pact", "Lavrov")]},
        targets={"kursk": ["mail"], "pact": ["mail"]},
    )
    rows = store.claim_alerts(worker="d", lease=60, now=NOW)
    assert sorted(r.watchlist for r in rows) == ["kursk", "pact"]
    assert store.mark_sent(rows, worker="d", now=NOW) == 2
    assert store.alert_counts() == {"sent": 2}
    assert store.claim_alerts(worker="d", lease=60, now=NOW + dt.timedelta(days=1)) == []


def test_concurrent_claims_never_overlap(store: Store) -> None:
    """Several daemons (threads here) claiming at once each get disjoint feeds."""
    names = [f"f{i}" for i in range(40)]
    feeds_of(store, *names, spread=True)
    got: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)

    def worker(w: str) -> None:
        barrier.wait()
        got[w] = [f.name for f in store.claim_due_feeds(worker=w, lease=60, now=NOW, limit=15)]

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    claimed = [n for lst in got.values() for n in lst]
    assert len(claimed) == len(set(claimed)) == 40


def test_safe_url_hides_password() -> None:
    assert "hunter2" not in safe_url("postgresql+psycopg://u:hunter2@db/x")


def test_unreachable_database_is_a_store_error() -> None:
    from monitor.errors import StoreError

    with pytest.raises(StoreError) as info:
        Store("postgresql+psycopg://u:hunter2@127.0.0.1:1/x")
    assert "hunter2" not in str(info.value)
    assert "127.0.0.1" in str(info.value)
