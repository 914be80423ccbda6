"""Building Entry and MatchResult values for store-level tests, and recording them the
way the poll cycle does (lookup, decide, apply)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from collections.abc import Mapping, Sequence

from monitor.clustering.clusterer import Clusterer
from monitor.ingest.decide import Decider, FeedIntent, FeedPoll
from monitor.ingest.entries import Entry
from monitor.ingest.schedule import FeedSnapshot, FeedUpdate, PollPolicy, after_failure, after_unchanged
from monitor.matching.matcher import Hit, MatchResult
from monitor.storage.store import RecordReport, Store

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def entry(n: int, *, link: str | None = "auto", guid: str | None = "auto", title: str | None = None) -> Entry:
    """Story number ``n``; ``link``/``guid`` None to test entries without them."""
    link_v = f"https://news.example.org/story/{n}" if link == "auto" else link
    guid_v = f"urn:story:{n}" if guid == "auto" else guid
    lk = _key(link_v) if link_v else None
    gk = _key(guid_v) if guid_v else None
    return Entry(
        guid=guid_v,
        link=link_v,
        canonical_url=link_v,
        title=title or f"Story {n}",
        summary=f"Summary {n}",
        published_at=NOW,
        date_from_feed=True,
        language="en",
        author=None,
        story_key=lk or gk or _key(f"text {n}"),
        link_key=lk,
        guid_key=gk,
        title_key=_key(title or f"Story {n}"),
    )


def result(watchlist: str, term: str = "Kursk") -> MatchResult:
    """A match of ``watchlist`` on ``term`` at the start of the title."""
    return MatchResult(watchlist=watchlist, hits=(Hit(term=term, field="title", start=0, end=len(term), text=term),))


def record(
    store: Store,
    feed: FeedSnapshot,
    entries: Sequence[Entry],
    matches: Mapping[int, Sequence[MatchResult]] | None = None,
    *,
    targets: Mapping[str, Sequence[str]] | None = None,
    alert: bool = True,
    now: dt.datetime = NOW,
    clusters: Clusterer | None = None,
    worker: str | None = None,
) -> RecordReport:
    """Record ``entries`` of ``feed`` as the poll cycle does (lookup, decide, apply).

    ``matches`` maps an index into ``entries`` to what the matcher would find in it;
    ``alert=False`` records like a catch-up (matches without outbox rows). The feed's
    health and schedule stay as they were (only its claim ends): tests that need a
    feed state set it up with :func:`poll_failed` or :func:`poll_ok`. ``clusters``: the
    clusterer that places each new story in an event cluster (None: each its own).
    ``worker``: write as that worker, checking it still holds the feed's claim.
    """
    found = {entries[i]: results for i, results in (matches or {}).items()}
    decider = Decider(
        match=lambda e: found.get(e, ()),
        targets=targets or {},
        policy=PollPolicy(),
        catchup=not alert,
        catchup_new_feeds=False,
        rand=lambda: 0.0,
        clusters=clusters,
    )
    known = store.known_stories([(feed.id, entries)])
    (intent,) = decider.decide([FeedPoll(feed, entries, http_status=200)], known, now)
    fence = {"worker": worker, "claims": {feed.id: feed.claim_version}} if worker else {}
    (report,) = store.apply_poll(
        [dataclasses.replace(intent, update=FeedUpdate(next_poll_at=feed.next_poll_at))], **fence
    )
    return report


def _feed(store: Store, feed_id: int) -> FeedSnapshot:
    return next(f for f in store.feeds(include_removed=True) if f.id == feed_id)


def poll_failed(store: Store, feed_id: int, *, since: dt.datetime, reason: str, message: str) -> None:
    """Record a failed poll of the feed at ``since``, as the poll cycle does."""
    update = after_failure(
        _feed(store, feed_id),
        now=since,
        reason=reason,
        message=message,
        http_status=None,
        retry_after=None,
        policy=PollPolicy(),
    )
    store.apply_poll([FeedIntent(feed_id, update)])


def poll_ok(store: Store, feed_id: int, *, now: dt.datetime) -> None:
    """Record a poll of the feed answered 304 at ``now``, as the poll cycle does."""
    update = after_unchanged(
        _feed(store, feed_id),
        now=now,
        http_status=304,
        etag=None,
        last_modified=None,
        permanent_redirect=None,
        policy=PollPolicy(),
    )
    store.apply_poll([FeedIntent(feed_id, update)])
