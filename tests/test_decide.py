"""The pure ingest decision: which stories are new, what they match, what is queued,
who carries what, and the feed's new state. Plain values in, intents out; no database."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from monitor.clustering.clusterer import Clusterer
from monitor.clustering.features import vocabulary
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


# --- event clusters -----------------------------------------------------------------

CLUSTER_ALIASES = {
    "dprk": '"North Korea*" | DPRK | Pyongyang | "Corée du Nord" | nord-coréen*',
    "russia": "Russia | Russian* | Moscow | Putin | Russie | Moscou | Poutine",
    "pact": "treaty | pact | traité | pacte",
}
RATIFY = (
    "North Korea ratifies defence treaty with Russia",
    "Kim Jong Un ratified the mutual defence treaty with Russia by decree, KCNA said on Tuesday.",
)
RATIFY_2 = (
    "Kim Jong Un ratifies mutual defence pact with Russia, KCNA says",
    "North Korean leader Kim Jong Un has ratified the treaty on mutual defence with Russia, state media KCNA said.",
)
RATIFY_FR = (
    "Kim Jong-un ratifie le traité de défense mutuelle avec la Russie",
    "Le dirigeant nord-coréen Kim Jong-un a ratifié par décret le traité de défense mutuelle avec la Russie,"
    " selon KCNA.",
)
VIETNAM = ("Putin arrives in Vietnam for a state visit", "Vladimir Putin landed in Hanoi, where he will meet To Lam.")


def told(n: int, text: tuple[str, str], *, hours: float = 0, language: str = "en") -> Entry:
    return dataclasses.replace(
        entry(n, title=text[0]),
        summary=text[1],
        language=language,
        published_at=NOW - dt.timedelta(hours=12) + dt.timedelta(hours=hours),
    )


def clustered(
    polls: list[tuple[FeedSnapshot, list[Entry]]],
    clusters: Clusterer,
    found: dict[str, list[str]],
    *,
    catchup: bool = False,
) -> list[FeedIntent]:
    """Decide with a real clusterer; ``found`` maps a title to the watchlists it matches."""
    decider = Decider(
        match=lambda e: [result(w) for w in found.get(e.title, [])],
        targets={"pact": ["mail"], "visit": ["mail"]},
        policy=PollPolicy(jitter=0),
        catchup=catchup,
        clusters=clusters,
    )
    return decider.decide([FeedPoll(f, es, http_status=200) for f, es in polls], NOTHING, NOW)


def new_clusterer() -> Clusterer:
    return Clusterer(vocabulary(CLUSTER_ALIASES))


def test_tellings_of_one_event_in_one_batch_alert_once() -> None:
    one, two, three = told(1, RATIFY, hours=1), told(2, RATIFY_2, hours=2), told(3, RATIFY_FR, hours=3, language="fr")
    found = {RATIFY[0]: ["pact"], RATIFY_2[0]: ["pact"], RATIFY_FR[0]: ["pact"]}
    a, b = clustered([(A, [two, three]), (B, [one])], new_clusterer(), found)
    stories = {s.ident: s for s in (*a.stories, *b.stories)}
    first = story_ident(B.id, one)
    assert {s.cluster for s in stories.values()} == {first}  # the earliest published leads
    assert stories[first].cluster_score is None and stories[story_ident(A.id, two)].cluster_score
    assert "a:ratify" in stories[story_ident(A.id, three)].cluster_terms  # French joins on the act
    assert [x.story for x in (*a.alerts, *b.alerts)] == [first]  # one alert, by the first telling
    alerted = {m.story: m.alerted for m in (*a.matches, *b.matches)}
    assert alerted == {first: True, story_ident(A.id, two): False, story_ident(A.id, three): False}


@pytest.mark.parametrize(
    ("first_matches", "catchup", "joins", "later_alerts"),
    [
        ([], False, False, True),  # no watchlist wanted the first story: not clustered, the later one alerts
        (["pact"], True, True, True),  # recorded in a catch-up, never alerted: the later one alerts
        (["pact"], False, True, False),  # the cluster alerted: the later one is "also reported by"
        (["visit"], False, True, True),  # it alerted another watchlist: this one alerts now
    ],
    ids=["first-matched-nothing", "first-in-catch-up", "already-alerted", "other-watchlist"],
)
def test_a_later_telling_alerts_only_what_its_cluster_has_not(
    first_matches: list[str], catchup: bool, joins: bool, later_alerts: bool
) -> None:
    clusters = new_clusterer()
    first, later = told(1, RATIFY, hours=1), told(2, RATIFY_2, hours=2)
    clustered([(A, [first])], clusters, {RATIFY[0]: first_matches}, catchup=catchup)
    (intent,) = clustered([(B, [later])], clusters, {RATIFY_2[0]: ["pact"]})
    (story,) = intent.stories
    assert story.cluster == (story_ident(A.id, first) if joins else story.ident)
    assert [a.row.watchlist for a in intent.alerts] == (["pact"] if later_alerts else [])
    assert [m.alerted for m in intent.matches] == [later_alerts]


def test_a_story_no_watchlist_wants_is_not_clustered() -> None:
    clusters = new_clusterer()
    (a,) = clustered([(A, [told(1, RATIFY, hours=1), told(2, RATIFY_2, hours=2)])], clusters, {})
    assert [s.cluster for s in a.stories] == [s.ident for s in a.stories]
    assert len(clusters.index) == 0  # nothing filed: no cost for the stories nobody watches


def test_another_event_of_the_same_actors_opens_its_own_cluster() -> None:
    clusters = new_clusterer()
    (a,) = clustered([(A, [told(1, RATIFY, hours=1)])], clusters, {RATIFY[0]: ["pact"]})
    (b,) = clustered([(B, [told(2, VIETNAM, hours=20)])], clusters, {VIETNAM[0]: ["pact"]})
    assert b.stories[0].cluster == b.stories[0].ident and b.stories[0].cluster_score is None
    assert [x.row.watchlist for x in b.alerts] == ["pact"]


def test_without_a_clusterer_each_story_is_its_own_cluster() -> None:
    one, two = told(1, RATIFY), told(2, RATIFY_2)
    (intent,) = decide([(A, [one, two])], found={one: [KURSK], two: [KURSK]})
    assert [s.cluster for s in intent.stories] == [s.ident for s in intent.stories]
    assert len(intent.alerts) == 4  # two stories x two targets


def test_a_future_date_does_not_age_the_open_clusters() -> None:
    clusters = new_clusterer()
    found = {RATIFY[0]: ["pact"], VIETNAM[0]: ["visit"], RATIFY_2[0]: ["pact"]}
    clustered([(A, [told(1, RATIFY, hours=1)])], clusters, found)
    future = dataclasses.replace(told(9, VIETNAM), published_at=NOW + dt.timedelta(days=400))
    clustered([(B, [future])], clusters, found)
    (c,) = clustered([(B, [told(2, RATIFY_2, hours=2)])], clusters, found)
    assert c.stories[0].cluster == story_ident(A.id, told(1, RATIFY, hours=1))
