"""How a feed's stored state changes after a poll: the pure policy behind the scheduler.

The store hands the pipeline a :class:`FeedSnapshot`; after fetching, the pipeline asks
this module what to write back (``after_success``, ``after_unchanged``,
``after_failure``), and the store applies the returned column changes in the same
transaction as the stories. Keeping the policy here, free of I/O, means backoff,
redirect adoption and scheduling are tested with plain values and an injected ``rand``.

Policy (see README, "Polling"):

- success or 304: next poll at ``interval + jitter``; failures reset.
- failure: exponential backoff with jitter from the feed's interval, capped at
  ``backoff_max`` (24 h by default); a server's ``Retry-After`` is honoured if longer.
  Transient errors never stop polling for good.
- 410 Gone: the feed is disabled and reported; it stays disabled until its URL changes
  in the config.
- 301/308: the new URL is adopted after it was seen on two polls in a row (a one-off
  misconfiguration must not move a feed for ever); 302/307 never change the URL.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .backoff import backoff_delay

REDIRECT_ADOPT_AFTER = 2


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

    @property
    def effective_interval(self) -> float:
        return self.learned_interval_s or self.interval_s


@dataclass(frozen=True, slots=True)
class PollPolicy:
    jitter: float = 30.0
    backoff_max: float = 86400.0


def _next(now: dt.datetime, seconds: float) -> dt.datetime:
    return now + dt.timedelta(seconds=seconds)


def _redirect_changes(feed: FeedSnapshot, permanent_redirect: str | None) -> dict[str, Any]:
    if not permanent_redirect or permanent_redirect == feed.fetch_url:
        return {"redirect_to": None, "redirect_seen": 0}
    seen = feed.redirect_seen + 1 if feed.redirect_to == permanent_redirect else 1
    if seen >= REDIRECT_ADOPT_AFTER:
        return {"fetch_url": permanent_redirect, "redirect_to": None, "redirect_seen": 0}
    return {"redirect_to": permanent_redirect, "redirect_seen": seen}


def _healthy(
    feed: FeedSnapshot,
    *,
    now: dt.datetime,
    http_status: int,
    permanent_redirect: str | None,
    policy: PollPolicy,
    rand: Callable[[], float],
) -> dict[str, Any]:
    changes: dict[str, Any] = {
        "state": "ok",
        "last_poll_at": now,
        "last_success_at": now,
        "last_status": http_status,
        "consecutive_failures": 0,
        "failing_since": None,
        "total_polls": feed.total_polls + 1,
        "next_poll_at": _next(now, feed.effective_interval + policy.jitter * rand()),
        "claimed_by": None,
        "claim_until": None,
    }
    changes.update(_redirect_changes(feed, permanent_redirect))
    return changes


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
) -> dict[str, Any]:
    """Column changes after a 200 whose body was parsed."""
    changes = _healthy(
        feed,
        now=now,
        http_status=http_status,
        permanent_redirect=permanent_redirect,
        policy=policy,
        rand=rand,
    )
    changes.update(
        etag=etag,
        last_modified=last_modified,
        body_hash=body_hash,
        initialized=True,
        entries_seen=feed.entries_seen + new_entries,
    )
    if title:
        changes["title"] = title[:500]
    return changes


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
) -> dict[str, Any]:
    """Column changes after a 304 (or a 200 with the same validators or body)."""
    changes = _healthy(
        feed,
        now=now,
        http_status=http_status,
        permanent_redirect=permanent_redirect,
        policy=policy,
        rand=rand,
    )
    # A 304 may carry refreshed validators; keep the old ones when it does not.
    changes["etag"] = etag or feed.etag
    changes["last_modified"] = last_modified or feed.last_modified
    if feed.body_hash is not None:
        # Only a feed parsed before can be "unchanged": the first poll's catch-up is done.
        changes["initialized"] = True
    return changes


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
) -> dict[str, Any]:
    """Column changes after a failed fetch or parse: back off, never give up for good."""
    failures = feed.consecutive_failures + 1
    delay = backoff_delay(failures, base=max(feed.interval_s, 60.0), cap=policy.backoff_max, rand=rand)
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.backoff_max))
    gone = reason == "gone"
    return {
        "state": "disabled" if gone else "backoff",
        "last_poll_at": now,
        "last_error_at": now,
        "last_status": http_status,
        "last_error": message[:2000],
        "last_error_reason": reason[:32],
        "consecutive_failures": failures,
        "failing_since": feed.failing_since or now,
        "total_polls": feed.total_polls + 1,
        "total_failures": feed.total_failures + 1,
        "next_poll_at": _next(now, delay),
        "claimed_by": None,
        "claim_until": None,
    }
