"""The pure ingest decision: which stories are new, what they match, what is queued,
who carries what, and the feed's new state. Plain values in, intents out; no database."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from monitor.ingest.decide import (
    Decider,
    FeedIntent,
    FeedPoll,
    KnownStories,
    NewAlert,
    NewMatch,
    OutboxRow,
    story_ident,
)
from monitor.ingest.entries import Entry
from monitor.ingest.schedule import FeedSnapshot, PollPolicy
from monitor.matching.matcher import MatchResult
from tests.support.stories import NOW, entry, result
from tests.test_feedstate import feed

A, B = feed(id=1, name="a"), feed(id=2, name="b")
NEW_FEED = feed(id=1, name="a", initialized=False, state="new")
E1, E2, E3 = entry(1), entry(2), entry(3)
KURSK = result("kursk")
NOTHING = KnownStories()


def decide(
    polls: list[tuple[FeedSnapshot, list[Entry]]],
    known: KnownStories = NOTHING,
    *,
    found: dict[Entry, list[MatchResult]] | None = None,
    targets: dict[str, list[str]] | None = None,
    catchup: bool = False,
    catchup_new_feeds: bool = True,
) -> list[FeedIntent]:
    decider = Decider(
        match=lambda e: (found or {}).get(e, []),
        targets={"kursk": ["mail", "slack"]} if targets is None else targets,
        policy=PollPolicy(jitter=0),
        catchup=catchup,
        catchup_new_feeds=catchup_new_feeds,
    )
    return decider.decide([FeedPoll(f, es, http_status=200) for f, es in polls], known, NOW)


@pytest.mark.parametrize(
    ("e", "ident"),
    [
        (E1, f"l:{E1.link_key}"),  # the link, whatever the feed
        (entry(4, link=None), f"g:7:{entry(4, link=None).guid_key}"),  # else the GUID, within the feed
        (entry(5, link=None, guid=None), f"t:7:{entry(5, link=None, guid=None).story_key}"),  # else the text
    ],
    ids=["link", "guid", "text"],
)
def test_story_identity(e: Entry, ident: str) -> None:
    assert story_ident(7, e) == ident


@pytest.mark.parametrize(
    ("known", "entries", "new_titles"),
    [
        (KnownStories(), [E1, E2], ["Story 1", "Story 2"]),
        (KnownStories({story_ident(1, E1): 10}), [E1, E2], ["Story 2"]),  # stored already
        # A GUID this feed stored, now under another link (a slug edited): not new.
        (KnownStories(guids=frozenset({(1, E2.guid_key or "")})), [E1, E2], ["Story 1"]),
        # The same GUID stored by ANOTHER feed means nothing here: GUIDs are per feed.
        (KnownStories(guids=frozenset({(2, E2.guid_key or "")})), [E2], ["Story 2"]),
        (KnownStories(), [E1, dataclasses.replace(E1, title="Story 1, updated")], ["Story 1, updated"]),  # one each
    ],
    ids=["all-new", "known-ident", "known-guid", "guid-of-another-feed", "duplicate-in-feed"],
)
def test_which_stories_are_new(known: KnownStories, entries: list[Entry], new_titles: list[str]) -> None:
    (intent,) = decide([(A, entries)], known)
    assert [s.entry.title for s in intent.stories] == new_titles
    assert all(s.first_seen_at == NOW and s.feed_id == A.id for s in intent.stories)
    assert intent.update.entries_seen == len(new_titles)


def test_every_new_story_is_its_own_cluster_for_now() -> None:
    (intent,) = decide([(A, [E1, E2])])
    assert [s.cluster for s in intent.stories] == [s.ident for s in intent.stories]


@pytest.mark.parametrize(
    ("polls", "known", "stored_by", "sightings"),
    [
        # Two feeds of one batch carry a new story: stored once, by the first; both sighted.
        ([(A, [E1]), (B, [E1, E2])], KnownStories(), [["Story 1"], ["Story 2"]], [[(1, None)], [(1, None), (2, None)]]),
        # A known story newly carried by another feed: a sighting with its id, nothing stored.
        ([(B, [E1])], KnownStories({story_ident(1, E1): 10}), [[]], [[(1, 10)]]),
    ],
    ids=["shared-in-batch", "known-elsewhere"],
)
def test_who_stores_and_who_sights(
    polls: list[tuple[FeedSnapshot, list[Entry]]],
    known: KnownStories,
    stored_by: list[list[str]],
    sightings: list[list[tuple[int, int | None]]],
) -> None:
    intents = decide(polls, known)
    assert [[s.entry.title for s in i.stories] for i in intents] == stored_by
    number = {story_ident(0, e): n for n, e in enumerate([E1, E2, E3], start=1)}
    assert [[(number[s.ident], s.story_id) for s in i.sightings] for i in intents] == sightings
    assert all(s.feed_id == i.feed_id and s.seen_at == NOW for i in intents for s in i.sightings)


@pytest.mark.parametrize(
    ("snapshot", "catchup", "catchup_new_feeds", "alerting"),
    [
        (A, False, True, True),  # a feed polled before: alerts
        (A, True, True, False),  # a catch-up cycle records without alerting
        (NEW_FEED, False, True, False),  # a new feed's backlog is not news
        (NEW_FEED, False, False, True),  # ... unless catchup_new_feeds is off
    ],
    ids=["polled-before", "catchup", "first-poll", "first-poll-alerting"],
)
def test_matches_and_outbox_rows(
    snapshot: FeedSnapshot, catchup: bool, catchup_new_feeds: bool, alerting: bool
) -> None:
    (intent,) = decide(
        [(snapshot, [E1, E2])], found={E1: [KURSK]}, catchup=catchup, catchup_new_feeds=catchup_new_feeds
    )
    ident = story_ident(snapshot.id, E1)
    assert intent.alerting is alerting
    assert intent.matches == (NewMatch(ident, "kursk", ("Kursk",), KURSK.hits, NOW, alerted=alerting),)
    expected = [NewAlert(ident, ident, OutboxRow("kursk", t, NOW)) for t in ("mail", "slack")] if alerting else []
    assert list(intent.alerts) == expected


def test_outbox_rows_are_pending_untried_and_due_at_once() -> None:
    (intent,) = decide([(A, [E1])], found={E1: [KURSK]})
    row = intent.alerts[0].row
    assert (row.status, row.attempts, row.fold, row.next_attempt_at) == ("pending", 0, False, NOW)


@pytest.mark.parametrize(
    ("targets", "alerted", "alerts"),
    [({"kursk": ["mail"]}, True, 1), ({}, False, 0), ({"kursk": []}, False, 0)],
    ids=["notified", "no-targets", "empty-targets"],
)
def test_a_match_nobody_is_told_about_is_recorded_unalerted(
    targets: dict[str, list[str]], alerted: bool, alerts: int
) -> None:
    (intent,) = decide([(A, [E1])], found={E1: [KURSK]}, targets=targets)
    assert [m.alerted for m in intent.matches] == [alerted]
    assert len(intent.alerts) == alerts


def test_only_new_stories_are_matched() -> None:
    seen: list[str] = []

    def match(e: Entry) -> list[MatchResult]:
        seen.append(e.title)
        return []

    decider = Decider(match=match, targets={}, policy=PollPolicy())
    decider.decide([FeedPoll(A, [E1, E2], 200)], KnownStories({story_ident(1, E1): 10}), NOW)
    assert seen == ["Story 2"]


def test_the_feeds_new_state_comes_with_the_intent() -> None:
    stale = feed(id=1, consecutive_failures=3, state="backoff", failing_since=NOW - dt.timedelta(hours=1))
    (intent,) = Decider(match=lambda e: [], targets={}, policy=PollPolicy(jitter=0)).decide(
        [FeedPoll(stale, [E1], 200, etag='"v2"', body_hash="h2", title="Wire")], KnownStories(), NOW
    )
    u = intent.update
    assert (u.state, u.consecutive_failures, u.failing_since, u.etag, u.body_hash, u.title) == (
        "ok",
        0,
        None,
        '"v2"',
        "h2",
        "Wire",
    )
    assert u.next_poll_at == NOW + dt.timedelta(seconds=stale.interval_s)
