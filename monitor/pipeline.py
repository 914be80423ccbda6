"""One poll cycle: fetch -> parse -> match -> store (with the outbox rows).

The cycle claims the feeds that are due, fetches them concurrently (``fetch.Fetcher``),
parses the changed bodies (in a process pool when there are many: parsing is the
expensive step and the pool is how a second core helps), keeps only the entries the
store has not seen, matches those against the watchlists, and stores stories, matches
and outbox rows of one feed in one transaction together with the feed's new state.

One feed's failure (HTTP error, timeout, garbage, a parser crash) is logged with the
feed's name, recorded in its health and backed off; it never stops the cycle. Delivery
is not part of the cycle: the outbox is drained by ``outbox.Deliverer``.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field

from .errors import MonitorError, ParseError
from .feedstate import FeedSnapshot, PollPolicy, after_failure, after_success, after_unchanged
from .fetch import FeedFetchError, Fetcher, FetchRequest, FetchResult
from .matcher import Matcher, MatchResult
from .parse import ParsedFeed, parse_feed
from .store import Store, utcnow

log = logging.getLogger("monitor.poll")

POOL_THRESHOLD = 8  # below this many bodies in a cycle, parsing in-process is cheaper than a pool


@dataclass(frozen=True, slots=True)
class FeedOutcome:
    feed: str
    status: str  # "new" (parsed), "unchanged", "error"
    new: int = 0
    matched: int = 0
    alerts: int = 0
    reason: str | None = None
    error: str | None = None
    elapsed: float = 0.0


@dataclass(slots=True)
class CycleReport:
    started_at: dt.datetime
    duration: float = 0.0
    outcomes: list[FeedOutcome] = field(default_factory=list)

    @property
    def errors(self) -> list[FeedOutcome]:
        return [o for o in self.outcomes if o.status == "error"]

    def total(self, attr: str) -> int:
        return sum(int(getattr(o, attr)) for o in self.outcomes)

    def summary(self) -> str:
        return (
            f"{len(self.outcomes)} feeds polled in {self.duration:.2f}s: "
            f"{sum(o.status == 'new' for o in self.outcomes)} changed, "
            f"{sum(o.status == 'unchanged' for o in self.outcomes)} unchanged, "
            f"{len(self.errors)} failed; {self.total('new')} new stories, "
            f"{self.total('matched')} matches, {self.total('alerts')} alerts queued"
        )


@dataclass(frozen=True, slots=True)
class Watch:
    """What the cycle needs of the current config; swapped atomically on reload."""

    matcher: Matcher
    targets: Mapping[str, Sequence[str]]  # watchlist name -> targets it notifies
    catchup_new_feeds: bool = True


def _parse_job(
    body: bytes, url: str, content_type: str | None, fetched_at: dt.datetime, language: str | None
) -> ParsedFeed:
    """Top-level (picklable) so a process pool can run it."""
    return parse_feed(
        body, url=url, content_type=content_type, fetched_at=fetched_at, default_language=language
    )


class Pipeline:
    def __init__(
        self,
        store: Store,
        fetcher: Fetcher,
        watch: Watch,
        *,
        policy: PollPolicy,
        lease: float,
        worker: str,
        parse_workers: int = 0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.fetcher = fetcher
        self._watch = watch
        self.policy = policy
        self.lease = lease
        self.worker = worker
        self.rand = rand
        self.parse_workers = parse_workers or (os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    # A reload swaps the whole Watch; a running cycle keeps the one it started with.
    @property
    def watch(self) -> Watch:
        with self._lock:
            return self._watch

    def reconfigure(self, watch: Watch, *, policy: PollPolicy | None = None) -> None:
        with self._lock:
            self._watch = watch
            if policy is not None:
                self.policy = policy

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _executor(self, n_bodies: int) -> Executor | None:
        if self.parse_workers <= 1 or n_bodies < POOL_THRESHOLD:
            return None
        if self._pool is None:
            # forkserver, not fork: this process has threads (scheduler, fetcher loop),
            # and forking a threaded process can deadlock the child on a held lock.
            ctx = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(max_workers=self.parse_workers, mp_context=ctx)
        return self._pool

    def run_cycle(
        self,
        *,
        force: bool = False,
        names: Sequence[str] | None = None,
        catchup: bool = False,
        now: dt.datetime | None = None,
    ) -> CycleReport:
        """Poll the due feeds (all enabled feeds with ``force``) once.

        ``catchup`` records everything as seen without queuing alerts (like feed2exec's
        catchup): useful after a long outage when the backlog is no longer news.
        """
        start = time.monotonic()
        report = CycleReport(started_at=now or utcnow())
        feeds = self.store.claim_due_feeds(
            worker=self.worker, lease=self.lease, force=force, names=names, now=now
        )
        if not feeds:
            return report
        watch = self.watch
        by_id = {f.id: f for f in feeds}
        started = {f.id: time.monotonic() for f in feeds}
        done: set[int] = set()
        requests = [
            FetchRequest(
                key=f.id, url=f.fetch_url, etag=f.etag, last_modified=f.last_modified, body_hash=f.body_hash
            )
            for f in feeds
        ]
        pending: list[tuple[FeedSnapshot, FetchResult, dt.datetime, Future[ParsedFeed] | None]] = []
        executor = self._executor(len(feeds))
        try:
            for outcome in self.fetcher.fetch_many(requests):
                if isinstance(outcome, FeedFetchError):
                    feed = by_id[outcome.request.key]
                    report.outcomes.append(
                        self._failed(
                            feed,
                            outcome.reason,
                            str(outcome),
                            outcome.status,
                            outcome.retry_after,
                            started[feed.id],
                        )
                    )
                    done.add(feed.id)
                    continue
                feed = by_id[outcome.request.key]
                if outcome.status == "not_modified":
                    report.outcomes.append(self._unchanged(feed, outcome, started[feed.id]))
                    done.add(feed.id)
                    continue
                fetched_at = utcnow()
                fut = (
                    executor.submit(
                        _parse_job, outcome.body, outcome.url, outcome.content_type, fetched_at, feed.language
                    )
                    if executor is not None
                    else None
                )
                pending.append((feed, outcome, fetched_at, fut))
                if executor is None:
                    # In-process: parse and store now, so the body is freed before the next one.
                    feed, outcome, fetched_at, _ = pending.pop()
                    report.outcomes.append(
                        self._parse_and_store(
                            feed, outcome, fetched_at, None, watch, catchup, started[feed.id]
                        )
                    )
                    done.add(feed.id)
                else:
                    report.outcomes.extend(self._drain(pending, watch, catchup, started, done, block=False))
                if self.stopping.is_set():
                    log.info("stop requested: finishing the feeds in hand")
            report.outcomes.extend(self._drain(pending, watch, catchup, started, done, block=True))
        finally:
            leftover = [fid for fid in by_id if fid not in done]
            if leftover:
                self.store.release_feeds(leftover)
        report.duration = time.monotonic() - start
        return report

    def _drain(
        self,
        pending: list[tuple[FeedSnapshot, FetchResult, dt.datetime, Future[ParsedFeed] | None]],
        watch: Watch,
        catchup: bool,
        started: Mapping[int, float],
        done: set[int],
        *,
        block: bool,
    ) -> list[FeedOutcome]:
        out: list[FeedOutcome] = []
        keep = []
        for item in pending:
            feed, result, fetched_at, fut = item
            if fut is not None and not block and not fut.done():
                keep.append(item)
                continue
            out.append(self._parse_and_store(feed, result, fetched_at, fut, watch, catchup, started[feed.id]))
            done.add(feed.id)
        pending[:] = keep
        return out

    def _parse_and_store(
        self,
        feed: FeedSnapshot,
        result: FetchResult,
        fetched_at: dt.datetime,
        fut: Future[ParsedFeed] | None,
        watch: Watch,
        catchup: bool,
        t0: float,
    ) -> FeedOutcome:
        try:
            if fut is None:
                parsed = _parse_job(result.body, result.url, result.content_type, fetched_at, feed.language)
            else:
                parsed = fut.result()
        except ParseError as exc:
            return self._failed(feed, exc.reason, str(exc), result.http_status, None, t0)
        except Exception as exc:  # a crashed worker process must not take the cycle down
            log.exception("feed=%s parse worker failed", feed.name)
            return self._failed(
                feed,
                "parser_crash",
                f"parser crashed: {type(exc).__name__}: {exc}",
                result.http_status,
                None,
                t0,
            )
        for warning in parsed.warnings:
            log.debug("feed=%s parse warning: %s", feed.name, warning)
        try:
            new = self.store.unseen(feed.id, parsed.entries)
            matches: dict[int, list[MatchResult]] = {}
            for i, entry in enumerate(new):
                found = watch.matcher.match(entry.title, entry.summary)
                if found:
                    matches[i] = found
            alert = not catchup and (feed.initialized or not watch.catchup_new_feeds)
            changes = after_success(
                feed,
                now=utcnow(),
                http_status=result.http_status,
                etag=result.etag,
                last_modified=result.last_modified,
                body_hash=result.body_hash,
                permanent_redirect=result.permanent_redirect,
                title=parsed.title,
                new_entries=len(new),
                policy=self.policy,
                rand=self.rand,
            )
            rec = self.store.record_entries(
                feed, new, matches, targets=watch.targets, alert=alert, feed_changes=changes
            )
        except MonitorError as exc:
            log.error("feed=%s could not be stored: %s", feed.name, exc)
            return FeedOutcome(
                feed.name, "error", reason="store", error=str(exc), elapsed=time.monotonic() - t0
            )
        elapsed = time.monotonic() - t0
        note = "" if alert else " (first poll: recorded without alerting)" if not catchup else " (catch-up)"
        log.info(
            "feed=%s fetched status=%s entries=%d new=%d matched=%d alerts=%d in %.2fs%s",
            feed.name,
            result.http_status,
            len(parsed.entries),
            rec.new_stories,
            rec.matches,
            rec.alerts,
            elapsed,
            note,
        )
        if "fetch_url" in changes:
            log.warning("feed=%s moved permanently: now polling %s", feed.name, changes["fetch_url"])
        return FeedOutcome(feed.name, "new", rec.new_stories, rec.matches, rec.alerts, elapsed=elapsed)

    def _unchanged(self, feed: FeedSnapshot, result: FetchResult, t0: float) -> FeedOutcome:
        changes = after_unchanged(
            feed,
            now=utcnow(),
            http_status=result.http_status,
            etag=result.etag,
            last_modified=result.last_modified,
            permanent_redirect=result.permanent_redirect,
            policy=self.policy,
            rand=self.rand,
        )
        self.store.update_feed(feed.id, changes)
        elapsed = time.monotonic() - t0
        log.debug("feed=%s unchanged (HTTP %s) in %.2fs", feed.name, result.http_status, elapsed)
        return FeedOutcome(feed.name, "unchanged", elapsed=elapsed)

    def _failed(
        self,
        feed: FeedSnapshot,
        reason: str,
        message: str,
        status: int | None,
        retry_after: float | None,
        t0: float,
    ) -> FeedOutcome:
        changes = after_failure(
            feed,
            now=utcnow(),
            reason=reason,
            message=message,
            http_status=status,
            retry_after=retry_after,
            policy=self.policy,
            rand=self.rand,
        )
        self.store.update_feed(feed.id, changes)
        wait = (changes["next_poll_at"] - utcnow()).total_seconds()
        if reason == "gone":
            log.error("feed=%s is gone (HTTP 410): disabled until its URL changes in the config", feed.name)
        else:
            log.warning(
                "feed=%s failed (%s): %s; failure %d in a row, next try in %s",
                feed.name,
                reason,
                message,
                changes["consecutive_failures"],
                _human(wait),
            )
        return FeedOutcome(feed.name, "error", reason=reason, error=message, elapsed=time.monotonic() - t0)


def _human(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds / 3600:.1f}h"
