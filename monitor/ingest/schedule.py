"""How a feed's stored state changes after a poll: the pure policy behind the scheduler.

The store hands the poll cycle a :class:`FeedSnapshot`; after fetching, the cycle asks
this module what to write back (``after_success``, ``after_unchanged``,
``after_failure``, ``after_deferred``), each answering with a :class:`FeedUpdate`: the
fields that change, :data:`KEEP` for the others. The store maps it to columns and
applies it in the same transaction as the stories, and applying it ends the feed's
claim. Keeping the policy here, free of I/O, means backoff, redirect adoption and
scheduling are tested with plain values and an injected ``rand``.

Policy (see README, "Polling"):

- success or 304: next poll at ``interval + jitter``; failures reset.
- failure: exponential backoff with jitter from the feed's interval, capped at
  ``backoff_max`` (24 h by default); a server's ``Retry-After`` is honoured if longer.
  Transient errors never stop polling for good.
- 410 Gone: the feed is disabled and reported; it stays disabled until its URL changes
  in the config.
- 301/308: the new URL is adopted after it was seen on two polls in a row (a one-off
  misconfiguration must not move a feed for ever); 302/307 never change the URL.
- A host that asked us to wait (Retry-After) defers the feeds we did not even contact:
  their next poll moves to the end of the wait, and nothing counts as a failure.
- Learned cadence (:func:`learned_interval`): a feed that publishes twice a day is
  polled at most every ``max_interval`` (1 h by default), not every 10 minutes; a busy
  feed keeps its configured interval, which is the lower bound. On by default; off
  per feed with ``learn_cadence: false``.
"""

from __future__ import annotations

import datetime as dt
import enum
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from monitor.backoff import backoff_delay

REDIRECT_ADOPT_AFTER = 2
#: A feed is polled about this many times per average gap between its stories: a feed
#: with a story every 4 hours is polled hourly, so a new story waits 30 minutes on average.
POLLS_PER_GAP = 4
#: Fewer dated stories than this say nothing about a feed's cadence.
MIN_DATED_STORIES = 3


@dataclass(frozen=True, slots=True)
class FeedSnapshot:
    """A feed's row as read at claim time (immutable: the pipeline never mutates it)."""

    id: int
    name: str
    url: str
    fetch_url: str
    language: str | None
    interval_s: float
    enabled: bool
    state: str
    title: str | None
    etag: str | None
    last_modified: str | None
    body_hash: str | None
    redirect_to: str | None
    redirect_seen: int
    initialized: bool
    consecutive_failures: int
    failing_since: dt.datetime | None
    last_poll_at: dt.datetime | None
    last_success_at: dt.datetime | None
    last_error_at: dt.datetime | None
    last_status: int | None
    last_error: str | None
    last_error_reason: str | None
    total_polls: int
    total_failures: int
    entries_seen: int
    learned_interval_s: float | None
    next_poll_at: dt.datetime
    health_alerted_at: dt.datetime | None
    #: The claim's fencing token (with the worker's id): a write checks it still holds.
    claim_version: int = 0
    claimed_by: str | None = None  # the worker holding the feed (while claim_until is ahead)
    claim_until: dt.datetime | None = None

    @property
    def effective_interval(self) -> float:
        """The interval the next poll is scheduled with: the learned one, never below the
        configured one (which may have been raised since it was learned)."""
        return max(self.interval_s, self.learned_interval_s or 0.0)


class Keep(enum.Enum):
    """The type of :data:`KEEP`."""

    KEEP = "keep"


#: A :class:`FeedUpdate` field left at KEEP leaves its column as it is.
KEEP: Final = Keep.KEEP


@dataclass(frozen=True, slots=True)
class FeedUpdate:
    """What a concluded poll (or a deferral) changes in a feed's row.

    Field names are the feed's column names; :data:`KEEP` leaves a column alone, so a
    failure does not overwrite validators or a URL the config changed meanwhile. Every
    update moves ``next_poll_at`` and ends the feed's claim.
    """

    next_poll_at: dt.datetime
    state: str | Keep = KEEP
    last_poll_at: dt.datetime | Keep = KEEP
    last_success_at: dt.datetime | Keep = KEEP
    last_error_at: dt.datetime | Keep = KEEP
    last_status: int | None | Keep = KEEP
    last_error: str | Keep = KEEP
    last_error_reason: str | Keep = KEEP
    consecutive_failures: int | Keep = KEEP
    failing_since: dt.datetime | None | Keep = KEEP
    total_polls: int | Keep = KEEP
    total_failures: int | Keep = KEEP
    etag: str | None | Keep = KEEP
    last_modified: str | None | Keep = KEEP
    body_hash: str | None | Keep = KEEP
    initialized: bool | Keep = KEEP
    entries_seen: int | Keep = KEEP
    learned_interval_s: float | None | Keep = KEEP
    title: str | Keep = KEEP
    fetch_url: str | Keep = KEEP
    redirect_to: str | None | Keep = KEEP
    redirect_seen: int | Keep = KEEP


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """The ``poll:`` settings the scheduling decisions need (built from the config by
    :meth:`monitor.config.model.Config.poll_policy`; the defaults are the config's defaults)."""

    jitter: float = 30.0
    backoff_max: float = 86400.0
    max_interval: float = 3600.0  # longest interval learned cadence may stretch a feed to
    learn_cadence: bool = True
    fixed_feeds: frozenset[str] = field(default_factory=frozenset)  # feeds with learn_cadence: false
    parse_timeout: float = 20.0  # longest parse of one feed, used by the pipeline's parse pool

    def learns(self, feed: FeedSnapshot) -> bool:
        return self.learn_cadence and feed.name not in self.fixed_feeds

    def interval_for(self, feed: FeedSnapshot) -> float:
        """Seconds between two successful polls of ``feed`` (before jitter)."""
        return feed.effective_interval if self.learns(feed) else feed.interval_s


def learned_interval(
    published: Iterable[dt.datetime],
    *,
    now: dt.datetime,
    interval: float,
    max_interval: float,
) -> float | None:
    """How often to poll a feed, from the publication times of the stories it carries.

    The average gap between stories is the time from the oldest dated story to ``now``
    divided by their number (counting the quiet time since the newest one, so a feed
    that stopped publishing slows down too); the feed is polled :data:`POLLS_PER_GAP`
    times per gap, bounded below by its configured ``interval`` (a busy feed is polled
    at its interval) and above by ``max_interval``. None when fewer than
    :data:`MIN_DATED_STORIES` stories carry a date of their own (nothing to learn from:
    keep the configured interval). Dates after ``now`` are ignored.
    """
    dated = sorted({when for when in published if when <= now})
    if len(dated) < MIN_DATED_STORIES:
        return None
    gap = (now - dated[0]).total_seconds() / len(dated)
    upper = max(interval, max_interval)
    return min(max(gap / POLLS_PER_GAP, interval), upper)


def _next(now: dt.datetime, seconds: float) -> dt.datetime:
    return now + dt.timedelta(seconds=seconds)


def _redirected(update: FeedUpdate, feed: FeedSnapshot, permanent_redirect: str | None) -> FeedUpdate:
    if not permanent_redirect or permanent_redirect == feed.fetch_url:
        return replace(update, redirect_to=None, redirect_seen=0)
    seen = feed.redirect_seen + 1 if feed.redirect_to == permanent_redirect else 1
    if seen >= REDIRECT_ADOPT_AFTER:
        return replace(update, fetch_url=permanent_redirect, redirect_to=None, redirect_seen=0)
    return replace(update, redirect_to=permanent_redirect, redirect_seen=seen)


def _healthy(
    feed: FeedSnapshot,
    *,
    now: dt.datetime,
    http_status: int,
    permanent_redirect: str | None,
    policy: PollPolicy,
    rand: Callable[[], float],
) -> FeedUpdate:
    update = FeedUpdate(
        state="ok",
        last_poll_at=now,
        last_success_at=now,
        last_status=http_status,
        consecutive_failures=0,
        failing_since=None,
        total_polls=feed.total_polls + 1,
        next_poll_at=_next(now, policy.interval_for(feed) + policy.jitter * rand()),
    )
    return _redirected(update, feed, permanent_redirect)


def after_success(
    feed: FeedSnapshot,
    *,
    now: dt.datetime,
    http_status: int,
    etag: str | None,
    last_modified: str | None,
    body_hash: str | None,
    permanent_redirect: str | None,
    title: str | None,
    new_entries: int,
    policy: PollPolicy,
    rand: Callable[[], float] = random.random,
    published: Sequence[dt.datetime] = (),
) -> FeedUpdate:
    """The update after a 200 whose body was parsed.

    ``published`` are the feed's own dates of the stories it carries now (all of them,
    not only the new ones): the learned cadence is recomputed from them.
    """
    learned = (
        learned_interval(published, now=now, interval=feed.interval_s, max_interval=policy.max_interval)
        if policy.learns(feed)
        else None
    )
    feed = _with_learned(feed, learned)
    update = _healthy(
        feed,
        now=now,
        http_status=http_status,
        permanent_redirect=permanent_redirect,
        policy=policy,
        rand=rand,
    )
    return replace(
        update,
        etag=etag,
        last_modified=last_modified,
        body_hash=body_hash,
        initialized=True,
        entries_seen=feed.entries_seen + new_entries,
        learned_interval_s=learned,
        title=title[:500] if title else KEEP,
    )


def after_unchanged(
    feed: FeedSnapshot,
    *,
    now: dt.datetime,
    http_status: int,
    etag: str | None,
    last_modified: str | None,
    permanent_redirect: str | None,
    policy: PollPolicy,
    rand: Callable[[], float] = random.random,
) -> FeedUpdate:
    """The update after a 304 (or a 200 with the same validators or body)."""
    update = _healthy(
        feed,
        now=now,
        http_status=http_status,
        permanent_redirect=permanent_redirect,
        policy=policy,
        rand=rand,
    )
    return replace(
        update,
        # A 304 may carry refreshed validators; keep the old ones when it does not.
        etag=etag or feed.etag,
        last_modified=last_modified or feed.last_modified,
        # Only a feed parsed before can be "unchanged": the first poll's catch-up is done.
        initialized=True if feed.body_hash is not None else KEEP,
    )


def _with_learned(feed: FeedSnapshot, learned: float | None) -> FeedSnapshot:
    return feed if learned == feed.learned_interval_s else replace(feed, learned_interval_s=learned)


def after_deferred(
    feed: FeedSnapshot,
    *,
    now: dt.datetime,
    wait: float,
    policy: PollPolicy,
    rand: Callable[[], float] = random.random,
) -> FeedUpdate:
    """The update for a feed that was not contacted because its host asked us to
    wait ``wait`` more seconds (Retry-After): poll it after the wait (with jitter, so
    the host's feeds do not all come back in the same second). Not a poll and not a
    failure: health and counters stay as they were."""
    return FeedUpdate(next_poll_at=_next(now, max(wait, 0.0) + policy.jitter * rand()))


def after_failure(
    feed: FeedSnapshot,
    *,
    now: dt.datetime,
    reason: str,
    message: str,
    http_status: int | None,
    retry_after: float | None,
    policy: PollPolicy,
    rand: Callable[[], float] = random.random,
) -> FeedUpdate:
    """The update after a failed fetch or parse: back off, never give up for good."""
    failures = feed.consecutive_failures + 1
    delay = backoff_delay(failures, base=max(feed.interval_s, 60.0), cap=policy.backoff_max, rand=rand)
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.backoff_max))
    gone = reason == "gone"
    return FeedUpdate(
        state="disabled" if gone else "backoff",
        last_poll_at=now,
        last_error_at=now,
        last_status=http_status,
        last_error=message[:2000],
        last_error_reason=reason[:32],
        consecutive_failures=failures,
        failing_since=feed.failing_since or now,
        total_polls=feed.total_polls + 1,
        total_failures=feed.total_failures + 1,
        next_poll_at=_next(now, delay),
    )
