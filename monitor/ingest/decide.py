"""What a batch of parsed polls writes: the pure ingest decision (storage applies it).

In the manner of lemon24/reader's ``Decider``: given each polled feed's snapshot and
parsed entries, what storage already knows about those entries (:class:`KnownStories`,
one read by ``Store.known_stories``), the matcher, the watchlist -> targets map and
``now``, :meth:`Decider.decide` returns one :class:`FeedIntent` per feed: the new
stories (each naming the cluster it joins), the sightings of stories already stored
("also reported by"), the match rows, the outbox rows and the feed's new state. No I/O:
the rules are tested with plain values, and storage applies the intents in one
transaction without deciding anything.

Rules:

- A story's identity is :func:`story_ident`: its link if it has one (the same link in
  two feeds is one story), else its GUID within its feed, else its text key.
- An entry is new unless its identity is stored, or its feed already stored a story
  with the same GUID (a slug edited after publication is not a new story). Within a
  feed, entries of one identity count once (the last one's content is kept).
- A story new to two feeds of one batch is stored once, by the first; every feed that
  carries a story (new or known) gets a sighting.
- Every new story on the watched themes (a watchlist matched it, or one of the config's
  alias groups: the matcher reports those under names starting with :data:`THEME`) is
  placed in an event cluster by the :class:`Clusterer` (when the decider has one):
  :attr:`NewStory.cluster` names the cluster's first story, with the score and shared
  features that decided it, and :attr:`NewStory.clustered` is set. Any other story (most
  of them) is a cluster of its own and is not filed: grouping is there to alert once per
  event, and clustering every story of a 1,000-feed first cycle cost 2.7 ms a story,
  nine times its parsing (bench/cluster.py). Stories of the themes that no watchlist
  wants still shape the clusters (a visit to Hanoi the day after a treaty's signing
  forms its own cluster, which a later telling naming the treaty then joins).
- Only new stories are matched (matching is the costly step; known ones were matched
  when they were new). A match is ``alerted`` when the poll alerts, its watchlist
  notifies someone and no earlier story of its cluster alerted that watchlist; an
  alerted match queues one outbox row per target. So an event alerts once per
  watchlist, and a cluster whose first stories did not match a watchlist alerts it
  when a later story does.
- A watchlist with escalation (``escalate``: N outlets within a duration) gets one more
  message per cluster: when a story joins a cluster that an earlier story alerted it
  for, and the cluster now holds stories of at least N distinct outlets (feeds)
  published within the duration of its first story, one :class:`NewSurge` per target
  ("now reported by N outlets"), once per cluster and watchlist (the clusterer notes
  it; the outbox's unique key fences daemons). A poll that does not alert queues none:
  the next story to join does, if the count still holds.
- A poll alerts unless the cycle is a catch-up, or the feed is new (never parsed) and
  ``catchup_new_feeds`` is on: a new feed must not send its whole backlog.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from monitor.clustering.clusterer import Clusterer
from monitor.ingest.entries import Entry
from monitor.ingest.schedule import FeedSnapshot, FeedUpdate, PollPolicy, after_success
from monitor.matching.matcher import Hit, MatchResult

#: Prefix of the matcher's results that are alias groups, not watchlists (no watchlist
#: name can start with it): they mark a story as on the watched themes.
THEME = "@"


def story_ident(feed_id: int, entry: Entry) -> str:
    """Global identity of a story; see ``monitor.storage.schema.Story.ident``."""
    if entry.link_key:
        return f"l:{entry.link_key}"
    if entry.guid_key:
        return f"g:{feed_id}:{entry.guid_key}"
    return f"t:{feed_id}:{entry.story_key}"


@dataclass(frozen=True, slots=True)
class KnownStories:
    """What storage holds of a batch's entries: the lookup the decision starts from."""

    ids: Mapping[str, int] = field(default_factory=dict)  # story identity -> story id
    guids: frozenset[tuple[int, str]] = frozenset()  # (feed id, GUID key) of stored stories


@dataclass(frozen=True, slots=True)
class FeedPoll:
    """A feed whose body was fetched and parsed: the response's facts and its entries."""

    feed: FeedSnapshot
    entries: Sequence[Entry]
    http_status: int
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    permanent_redirect: str | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class NewStory:
    """A story to store, first seen now in ``feed_id``."""

    ident: str
    feed_id: int
    entry: Entry
    cluster: str  # identity of the cluster's first story (its own when it opens one)
    first_seen_at: dt.datetime
    cluster_score: float | None = None  # why it joined another story's cluster
    cluster_terms: tuple[str, ...] = ()
    clustered: bool = False  # placed by the clusterer (on the watched themes)


@dataclass(frozen=True, slots=True)
class Sighting:
    """Feed ``feed_id`` carries the story ``ident`` (stored once per story and feed)."""

    ident: str
    feed_id: int
    seen_at: dt.datetime
    story_id: int | None = None  # known from the lookup; None: stored by this batch


@dataclass(frozen=True, slots=True)
class NewMatch:
    """A watchlist matched the new story ``story`` (an identity)."""

    story: str
    watchlist: str
    terms: tuple[str, ...]
    hits: tuple[Hit, ...]
    matched_at: dt.datetime
    alerted: bool


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A new outbox row. Its defaults are every new row's (story, backfill and health
    alerts alike): pending, never attempted, due as soon as it is created."""

    watchlist: str
    target: str
    created_at: dt.datetime
    status: str = "pending"
    attempts: int = 0
    fold: bool = False

    @property
    def next_attempt_at(self) -> dt.datetime:
        return self.created_at


@dataclass(frozen=True, slots=True)
class NewAlert:
    """An outbox row announcing the new story ``story`` to one target, for its cluster
    (the outbox is unique per cluster, watchlist and target)."""

    story: str  # identity of the story
    cluster: str  # identity of the story representing its cluster
    row: OutboxRow


@dataclass(frozen=True, slots=True)
class NewSurge:
    """An outbox row (kind ``surge``) telling one target that the event cluster
    ``cluster``, which alerted ``row.watchlist`` with the story ``alerted``, is now
    reported by ``outlets``; queued by the new story ``story`` (written with it)."""

    story: str  # identity of the new story that brought the count to the threshold
    cluster: str  # identity of the cluster's first story
    alerted: str  # identity of the story that alerted the watchlist (the message's story)
    outlets: tuple[str, ...]  # the outlets counted, in the order they told it
    within: dt.timedelta
    row: OutboxRow


@dataclass(frozen=True, slots=True)
class _Decided:
    """A new story of the batch with its matches and alerts, before it goes to its feed."""

    story: NewStory
    matches: tuple[NewMatch, ...]
    alerts: tuple[NewAlert, ...]
    surges: tuple[NewSurge, ...] = ()


@dataclass(frozen=True, slots=True)
class FeedIntent:
    """Everything one feed's poll writes; unchanged, failed and deferred feeds carry
    only their ``update``."""

    feed_id: int
    update: FeedUpdate
    stories: tuple[NewStory, ...] = ()
    sightings: tuple[Sighting, ...] = ()
    matches: tuple[NewMatch, ...] = ()
    alerts: tuple[NewAlert, ...] = ()
    alerting: bool = False  # whether this poll queues alerts (not a first poll or a catch-up)
    surges: tuple[NewSurge, ...] = ()


@dataclass(frozen=True, slots=True)
class Decider:
    """The settings of the decision, as plain values (the config ranks above ingest)."""

    match: Callable[[Entry], Sequence[MatchResult]]
    targets: Mapping[str, Sequence[str]]  # watchlist -> the targets it notifies
    policy: PollPolicy
    catchup: bool = False  # the whole cycle records without alerting
    catchup_new_feeds: bool = True
    rand: Callable[[], float] = random.random
    clusters: Clusterer | None = None  # None: every story is a cluster of its own
    # watchlist -> (outlets, within): its one "now reported by N outlets" follow-up
    escalate: Mapping[str, tuple[int, dt.timedelta]] = field(default_factory=dict)

    def alerts(self, feed: FeedSnapshot) -> bool:
        return not self.catchup and (feed.initialized or not self.catchup_new_feeds)

    def decide(self, polls: Sequence[FeedPoll], known: KnownStories, now: dt.datetime) -> list[FeedIntent]:
        """One intent per poll, in order; a story new to several of them goes to the first.

        The batch's new stories are placed and matched in published order, whatever
        feed carries them: clustering was measured on stories arriving in that order,
        and the earliest telling of an event is the one that alerts.
        """
        owners: dict[str, tuple[FeedSnapshot, Entry]] = {}
        for poll in polls:
            for ident, entry in {story_ident(poll.feed.id, e): e for e in poll.entries}.items():
                if ident in known.ids or (entry.guid_key and (poll.feed.id, entry.guid_key) in known.guids):
                    continue
                owners.setdefault(ident, (poll.feed, entry))
        decided: dict[str, _Decided] = {}
        for ident, (feed, entry) in sorted(owners.items(), key=lambda kv: (min(kv[1][1].published_at, now), kv[0])):
            found = self.match(entry)
            wanted = [m for m in found if not m.watchlist.startswith(THEME)]
            # Only a story on the watched themes is clustered (a watchlist or an alias group
            # matched it): grouping exists to alert once per event, and the other stories
            # (most of any feed) would cost the signing and the look-up for nothing.
            story = self._place(ident, feed, entry, now) if found else NewStory(ident, feed.id, entry, ident, now)
            decided[ident] = self._match(story, wanted, self.alerts(feed), now)
        return [self._feed(poll, known, decided, now) for poll in polls]

    def _feed(self, poll: FeedPoll, known: KnownStories, decided: dict[str, _Decided], now: dt.datetime) -> FeedIntent:
        feed = poll.feed
        stories: list[NewStory] = []
        sightings: list[Sighting] = []
        matches: list[NewMatch] = []
        alerts: list[NewAlert] = []
        surges: list[NewSurge] = []
        new = 0
        for ident, entry in {story_ident(feed.id, e): e for e in poll.entries}.items():
            if ident in known.ids:
                sightings.append(Sighting(ident, feed.id, now, known.ids[ident]))
                continue
            if entry.guid_key and (feed.id, entry.guid_key) in known.guids:
                continue
            new += 1
            sightings.append(Sighting(ident, feed.id, now))
            mine = decided.pop(ident, None)  # the first feed carrying it stores it
            if mine is None:
                continue
            stories.append(mine.story)
            matches.extend(mine.matches)
            alerts.extend(mine.alerts)
            surges.extend(mine.surges)
        update = after_success(
            feed,
            now=now,
            http_status=poll.http_status,
            etag=poll.etag,
            last_modified=poll.last_modified,
            body_hash=poll.body_hash,
            permanent_redirect=poll.permanent_redirect,
            title=poll.title,
            new_entries=new,
            policy=self.policy,
            rand=self.rand,
            published=[e.published_at for e in poll.entries if e.date_from_feed],
        )
        return FeedIntent(
            feed.id,
            update,
            tuple(stories),
            tuple(sightings),
            tuple(matches),
            tuple(alerts),
            self.alerts(feed),
            tuple(surges),
        )

    def _place(self, ident: str, feed: FeedSnapshot, entry: Entry, now: dt.datetime) -> NewStory:
        """The new story, in the cluster the clusterer picks."""
        if self.clusters is None:
            return NewStory(ident, feed.id, entry, cluster=ident, first_seen_at=now)
        language = entry.language or feed.language
        sig = self.clusters.sign(entry.title, entry.summary, language, entry.published_at, feed.name, seen=now)
        placed = self.clusters.place(ident, sig)
        if not placed.joined(ident):
            return NewStory(ident, feed.id, entry, cluster=ident, first_seen_at=now, clustered=True)
        return NewStory(ident, feed.id, entry, placed.cluster, now, round(placed.score, 4), placed.shared, True)

    def _match(self, story: NewStory, found: Sequence[MatchResult], alerting: bool, now: dt.datetime) -> _Decided:
        """The matches *found* of a new story; alert each watchlist its cluster has not
        alerted yet."""
        told = self.clusters.alerted(story.cluster) if self.clusters is not None else frozenset()
        matches: list[NewMatch] = []
        alerts: list[NewAlert] = []
        alerted: set[str] = set()
        for m in found:
            targets = self.targets.get(m.watchlist, ())
            alert = alerting and bool(targets) and m.watchlist not in told
            matches.append(NewMatch(story.ident, m.watchlist, m.terms, m.hits, now, alert))
            if alert:
                alerted.add(m.watchlist)
                alerts.extend(NewAlert(story.ident, story.cluster, OutboxRow(m.watchlist, t, now)) for t in targets)
        if self.clusters is not None and alerted:
            self.clusters.note(story.ident, alerted)
        surges = self._surges(story, told, now) if alerting else ()
        return _Decided(story, tuple(matches), tuple(alerts), surges)

    def _surges(self, story: NewStory, told: frozenset[str], now: dt.datetime) -> tuple[NewSurge, ...]:
        """The follow-ups a story joining its cluster brings about: for each watchlist an
        earlier story of the cluster alerted, with escalation, not escalated yet, whose
        count of outlets within its duration has reached its threshold."""
        clusters = self.clusters
        if clusters is None or story.cluster == story.ident or not self.escalate:
            return ()
        done = clusters.escalated(story.cluster)
        surges: list[NewSurge] = []
        escalated: set[str] = set()
        for watchlist in sorted(told - done):
            rule = self.escalate.get(watchlist)
            targets = self.targets.get(watchlist, ())
            alerted = clusters.alerted_by(story.cluster, watchlist)
            if rule is None or not targets or alerted is None:
                continue
            threshold, within = rule
            outlets = clusters.outlets(story.cluster, within)
            if len(outlets) < threshold:
                continue
            escalated.add(watchlist)
            surges.extend(
                NewSurge(story.ident, story.cluster, alerted, outlets, within, OutboxRow(watchlist, t, now))
                for t in targets
            )
        if escalated:
            clusters.note_escalated(story.ident, escalated)
        return tuple(surges)
