"""One poll cycle: fetch -> parse -> match and decide -> store (with the outbox rows).

The cycle claims the feeds that are due and runs three stages at once, each on what it
is good at, with bounded memory between them:

* **fetch** (:class:`~monitor.ingest.fetch.Fetcher`, asyncio in its own thread): every request has a
  deadline; at most a window of bodies waits for the parser (``fetch_many(window=)``),
  so a fast network cannot fill memory while the parser is busy.
* **parse** (:class:`~monitor.ingest.pool.ParsePool`): one worker process per core, each parse under
  ``poll.parse_timeout``; :meth:`ParsePool.submit` blocks when the pool is full, which
  is what slows the fetch stage down to the parser's pace.
* **decide and store** (this thread): parsed feeds are taken in batches (up to
  :data:`BATCH_FEEDS` feeds, or whatever arrived within :data:`BATCH_AGE` seconds);
  what the database knows of their entries is read with one query
  (``Store.known_stories``), the pure :class:`~monitor.ingest.decide.Decider` matches
  the new ones in memory and says what to write, and ``Store.apply_poll`` writes it in
  one transaction: stories, sightings, matches, outbox rows and every feed's new state
  together. Unchanged and failed feeds join the same transaction, so a steady-state
  cycle of 1,000 feeds answering 304 is a handful of statements.

One feed's failure (HTTP error, timeout, garbage, a parser crash or overrun) is logged
with the feed's name, recorded in its health and backed off; it never stops the cycle.
A host that answers 429/503 with Retry-After defers its other feeds, in this cycle
(they are not contacted) and in the database (their next poll waits too). Delivery is
not part of the cycle: the outbox is drained by :class:`monitor.app.deliver.Deliverer`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import queue
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

from monitor.app.clusters import ClusterKeeper
from monitor.clustering.clusterer import Clusterer
from monitor.errors import ClaimLostError, MonitorError, ParseError
from monitor.ingest.decide import Decider, FeedIntent, FeedPoll
from monitor.ingest.fetch import FeedFetchError, Fetcher, FetchRequest, FetchResult, host_key, redact_url
from monitor.ingest.formats import ParsedFeed
from monitor.ingest.pool import ParseJob, ParsePool
from monitor.ingest.schedule import (
    KEEP,
    FeedSnapshot,
    FeedUpdate,
    PollPolicy,
    after_deferred,
    after_failure,
    after_unchanged,
)
from monitor.matching.matcher import Matcher
from monitor.storage.engine import utcnow
from monitor.storage.store import RecordReport, Store

log = logging.getLogger("monitor.poll")

BATCH_FEEDS = 64
"""Most parsed feeds written in one transaction (about 1,600 stories for 25-entry feeds):
each transaction costs a connection, a commit and (SQLite) a WAL checkpoint on close."""
BATCH_STATES = 500
"""Most state-only changes (unchanged, failed, deferred feeds) written in one transaction."""
BATCH_AGE = 5.0
"""Longest a finished feed waits for its batch, in seconds. A batch's new stories are
clustered in publication order, so the longer a batch gathers, the less the clusters of
a cycle depend on which server answered first: with a batch written whenever the stages
fell idle for 50 ms, a loaded machine split a 19-feed cycle into several batches, and a
story of the next day's event could be placed before the last tellings of the day's
one and join their cluster. Five seconds hold a small cycle in one batch; a big one
fills :data:`BATCH_FEEDS` first. Alerts are minutes apart anyway (feeds are polled every
few minutes)."""
CYCLE_FEEDS = 10_000
"""Most feeds one cycle claims (in claims of ``poll.claim``); the next tick goes on."""
IN_FLIGHT = BATCH_FEEDS + 16
"""Most bodies and parsed feeds between the fetch stage and the store stage: the fetch
stage waits when the store stage lags behind (a parsed feed is ~130 KB in memory)."""


@dataclass(frozen=True, slots=True)
class FeedOutcome:
    feed: str
    status: str  # "new" (parsed), "unchanged", "error", "deferred" (host asked to wait)
    new: int = 0
    matched: int = 0
    alerts: int = 0
    reason: str | None = None
    error: str | None = None
    elapsed: float = 0.0
    first_reading: bool = False  # a new feed's backlog, recorded without alerting


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
        deferred = sum(o.status == "deferred" for o in self.outcomes)
        return (
            f"{len(self.outcomes)} feeds polled in {self.duration:.2f}s: "
            f"{sum(o.status == 'new' for o in self.outcomes)} changed, "
            f"{sum(o.status == 'unchanged' for o in self.outcomes)} unchanged, "
            f"{len(self.errors)} failed"
            + (f", {deferred} deferred" if deferred else "")
            + f"; {self.total('new')} new stories, "
            f"{self.total('matched')} matches, {self.total('alerts')} alerts queued"
        )

    def first_readings(self) -> str | None:
        """What the first reading of new feeds recorded, and how to see it (None: no new
        feed was read): a first reading alerts nothing, and the user should know why."""
        first = [o for o in self.outcomes if o.status == "new" and o.first_reading and o.new]
        if not first:
            return None
        stories, matched = sum(o.new for o in first), sum(o.matched for o in first)
        sentence = (
            f"first reading of {len(first)} feed(s): {stories} stories recorded without alerting"
            " (a new feed's backlog is not news; the stories that arrive from now on alert)"
        )
        if matched:
            sentence += (
                f"; {matched} of them match your watchlists: `news-monitor watchlist test NAME` lists them,"
                " `news-monitor watchlist edit NAME --backfill 1d` alerts those of the last day"
            )
        return sentence

    def common_failure(self) -> str | None:
        """One sentence when every feed of the cycle (two or more) failed the same way:
        the cause is then on this side (no network, no DNS), not at the publishers."""
        errors = self.errors
        if len(errors) < 2 or len(errors) != len(self.outcomes):
            return None
        reasons = {o.reason for o in errors}
        if len(reasons) != 1:
            return None
        (reason,) = reasons
        return f"all {len(errors)} feeds failed " + shared_cause(reason, [o.error for o in errors])


def shared_cause(
    reason: str | None, errors: Sequence[str | None], *, otherwise: str = "check the first errors above"
) -> str:
    """How feeds that all failed with ``reason`` failed, and what it suggests on this side.

    Follows "N feeds failed": ``with DNS errors: is this machine online?`` when every
    error is the resolver's, else ``the same way (REASON): HINT`` (``otherwise`` when
    the reason has no hint).
    """
    if errors and all(any(sign in (e or "") for sign in _DNS_SIGNS) for e in errors):
        return "with DNS errors: is this machine online?"
    hint = {
        "connection": "is this machine online, or is a proxy or firewall in the way?",
        "timeout": "is the network very slow, or is a firewall dropping the requests?",
        "tls": "is this machine's clock right, and its CA certificates installed?",
    }.get(reason or "", otherwise)
    return f"the same way ({reason}): {hint}"


#: What the resolver says when a name cannot be looked up (glibc, musl, macOS).
_DNS_SIGNS = (
    "Name or service not known",
    "Temporary failure in name resolution",
    "nodename nor servname",
    "No address associated with hostname",
    "getaddrinfo failed",
)


@dataclass(frozen=True, slots=True)
class Watch:
    """What the cycle needs of the current config; swapped atomically on reload."""

    matcher: Matcher
    targets: Mapping[str, Sequence[str]]  # watchlist name -> targets it notifies
    catchup_new_feeds: bool = True
    # watchlist name -> (outlets, within) of its surge follow-up (escalate)
    escalate: Mapping[str, tuple[int, dt.timedelta]] = field(default_factory=dict)


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
        clusterer: Clusterer | None = None,
        claim: int = 64,
        per_host: int | None = None,
    ) -> None:
        self.store = store
        self.claim = claim
        self.per_host = per_host
        self.clusters = ClusterKeeper(store, clusterer) if clusterer is not None else None
        self.fetcher = fetcher
        self._watch = watch
        self.policy = policy
        self.lease = lease
        self.worker = worker
        self.rand = rand
        self.parse_workers = parse_workers or (os.cpu_count() or 1)
        self._pool: ParsePool | None = None
        self._lock = threading.Lock()
        self.stopping = threading.Event()
        self.claims_left = False  # a cycle could not give back the claims it did not conclude
        # The parse workers start with a cycle that has feeds never read, or with the
        # first body to parse, not here: a daemon whose feeds are not due, or answer 304,
        # never pays for them (measured: an idle daemon 118 MB of RSS instead of 175, a
        # steady `poll --once` 123 MB instead of 180).

    # A reload swaps the whole Watch; a running cycle keeps the one it started with.
    @property
    def watch(self) -> Watch:
        with self._lock:
            return self._watch

    def reconfigure(
        self,
        watch: Watch,
        *,
        policy: PollPolicy | None = None,
        claim: int | None = None,
        per_host: int | None = None,
    ) -> None:
        with self._lock:
            self._watch = watch
            self.claim = claim or self.claim
            self.per_host = per_host or self.per_host
            if policy is not None:
                self.policy = policy
                if self._pool is not None:
                    self._pool.timeout = policy.parse_timeout

    def recluster(self, clusterer: Clusterer | None) -> None:
        """Cluster with *clusterer* from the next batch on (None: every story alone)."""
        with self._lock:
            if clusterer is None:
                self.clusters = None
            elif self.clusters is None:
                self.clusters = ClusterKeeper(self.store, clusterer)
            else:
                self.clusters.replace(clusterer)

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def parser(self) -> ParsePool:
        """The parse pool (its worker processes start with the first parse)."""
        with self._lock:
            if self._pool is None:
                self._pool = ParsePool(self.parse_workers, timeout=self.policy.parse_timeout)
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
        if self.claims_left:
            # An earlier cycle could not give its claims back (the heartbeat would renew
            # them for ever): one cycle runs at a time, so none is in use.
            self.store.release_feeds(worker=self.worker)
            self.claims_left = False
        claims = _Claims(self, now=now, force=force, names=names)
        feeds = claims.first()
        if not feeds:
            return report
        if any(not (f.etag or f.last_modified or f.body_hash) for f in feeds):
            # Feeds never read (a first cycle): their bodies will need parsing, so the
            # workers start now, while the first fetches are on the network.
            self.parser().warm()
        cycle = _Cycle(self, feeds, claims, self.watch, self.policy, catchup, report)
        try:
            cycle.run()
        finally:
            cycle.finish()
        report.duration = time.monotonic() - start
        return report


class _Claims:
    """Where a cycle's feeds come from: claimed from the database a few at a time (the
    pipeline's ``claim`` feeds, at most ``per_host`` of one host), the next claim taken
    when the feeds in hand are all being fetched, so daemons sharing the database share
    the work; with ``force`` or ``names`` (``poll --once``, ``--feed``), all at once."""

    def __init__(
        self, pipeline: Pipeline, *, now: dt.datetime | None, force: bool, names: Sequence[str] | None
    ) -> None:
        self.p = pipeline
        self.now = now
        self.force = force
        self.names = names
        self.taken = 0

    def first(self) -> list[FeedSnapshot]:
        if self.force or self.names is not None:
            self.taken = CYCLE_FEEDS
            return self._claim(CYCLE_FEEDS, per_host=None)
        return self.next()

    def next(self) -> list[FeedSnapshot]:
        """The next claim ([] once the cycle has taken its share, or is stopping)."""
        if self.taken >= CYCLE_FEEDS or self.p.stopping.is_set():
            return []
        feeds = self._claim(min(self.p.claim, CYCLE_FEEDS - self.taken), per_host=self.p.per_host)
        self.taken += len(feeds)
        return feeds

    def _claim(self, limit: int, *, per_host: int | None) -> list[FeedSnapshot]:
        p = self.p
        return p.store.claim_due_feeds(
            worker=p.worker,
            lease=p.lease,
            limit=limit,
            force=self.force,
            names=self.names,
            now=self.now,
            per_host=per_host,
        )


@dataclass(frozen=True, slots=True)
class _Parsed:
    """A fetched body on its way through the parse pool (without the future: the future's
    callback holds this, and a cycle between them would keep parsed feeds alive until the
    garbage collector's next full pass)."""

    feed: FeedSnapshot
    result: FetchResult


@dataclass(frozen=True, slots=True)
class _Write:
    """One feed's pending write: its new state, or (parsed) what the decider needs."""

    feed: FeedSnapshot
    outcome: FeedOutcome
    update: FeedUpdate | None = None  # None: parsed, the decider says the update
    poll: FeedPoll | None = None  # parsed: the response's facts and the entries


class _Cycle:
    """The state of one running cycle (see the module docstring for the stages)."""

    def __init__(
        self,
        pipeline: Pipeline,
        feeds: list[FeedSnapshot],
        claims: _Claims,
        watch: Watch,
        policy: PollPolicy,
        catchup: bool,
        report: CycleReport,
    ) -> None:
        self.p = pipeline
        self.store = pipeline.store
        self.watch = watch
        self.policy = policy
        self.catchup = catchup
        self.report = report
        self.by_id = {f.id: f for f in feeds}
        self.claims = claims
        self.first: list[FeedSnapshot] | None = feeds  # handed to the fetch stage first
        self.t0 = time.monotonic()
        self.done: set[int] = set()
        self.events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self.writes: list[_Write] = []
        self.parsed_pending = 0  # writes that carry a parsed feed
        self.oldest: float | None = None
        self.deferred_hosts: set[str] = set()
        self.in_flight = threading.Semaphore(IN_FLIGHT)

    # -- the stages

    def run(self) -> None:
        fetching = threading.Thread(target=self._fetch_all, name="news-monitor-cycle-fetch", daemon=True)
        fetching.start()
        submitted: int | None = None  # known once the fetch stage has ended
        parsed = 0
        while submitted is None or parsed < submitted:
            try:
                kind, payload = self.events.get(timeout=self._until_due())
            except queue.Empty:
                if self._batch_due():
                    self._flush()
                continue
            if kind == "fetched":
                self._on_fetched(payload)
            elif kind == "parsed":
                parsed += 1
                self._on_parsed(*payload)
            elif kind == "crashed":
                log.error("the fetch stage of the cycle failed", exc_info=payload)
            else:  # "end"
                submitted = payload
            if self._batch_due():
                self._flush()
        self._flush()
        fetching.join(5)

    def finish(self) -> None:
        """Write what is pending, then give back the claims of feeds not concluded."""
        try:
            self._flush()
        finally:
            leftover = [fid for fid in self.by_id if fid not in self.done]
            if leftover:
                try:
                    self.store.release_feeds(leftover, worker=self.p.worker)
                except MonitorError as exc:
                    self.p.claims_left = True
                    log.error("could not release %d feed claims (the next cycle does): %s", len(leftover), exc)

    def _fetch_all(self) -> None:
        """Fetch stage (its own thread): fetch, hand bodies to the pool, report the rest."""
        submitted = 0
        try:
            pool = self.p.parser()
            window = max(8, 2 * self.p.fetcher.settings.concurrency)
            for outcome in self.p.fetcher.fetch_stream(self._requests, window=window):
                if isinstance(outcome, FetchResult) and outcome.status == "ok":
                    if not self._reserve():
                        break  # stopping: this body and the rest are left for the next cycle
                    feed = self.by_id[outcome.request.key]
                    job = ParseJob(outcome.body, outcome.url, outcome.content_type, utcnow(), feed.language)
                    future = pool.submit(job)  # blocks while the pool is full: back-pressure
                    submitted += 1
                    future.add_done_callback(self._announce(_Parsed(feed, _without_body(outcome))))
                else:
                    self.events.put(("fetched", outcome))
                if self.p.stopping.is_set():
                    log.info("stop requested: finishing the feeds in hand, leaving the rest for later")
                    break
        except BaseException as exc:
            self.events.put(("crashed", exc))
        finally:
            self.events.put(("end", submitted))

    def _requests(self) -> list[FetchRequest]:
        """The fetch stage's source: the first claim, then the next ones as room frees
        (called from the fetcher's executor; the feeds join ``by_id`` before any of their
        outcomes can arrive)."""
        if self.first is not None:
            feeds, self.first = self.first, None
        else:
            feeds = self.claims.next()
        for f in feeds:
            self.by_id[f.id] = f
        return [
            FetchRequest(key=f.id, url=f.fetch_url, etag=f.etag, last_modified=f.last_modified, body_hash=f.body_hash)
            for f in feeds
        ]

    def _reserve(self) -> bool:
        """Wait for room between the fetch and store stages; False if stopping meanwhile."""
        while not self.in_flight.acquire(timeout=0.5):  # the store stage lags behind
            if self.p.stopping.is_set():
                return False
        return True

    def _announce(self, item: _Parsed) -> Callable[[Future[ParsedFeed]], None]:
        return lambda future: self.events.put(("parsed", (item, future)))

    def _on_fetched(self, outcome: FetchResult | FeedFetchError) -> None:
        feed = self.by_id[outcome.request.key]
        if isinstance(outcome, FetchResult):
            self._unchanged(feed, outcome)
        elif outcome.deferred:
            self._deferred(feed, outcome)
        else:
            self._failed(feed, outcome.reason, str(outcome), outcome.status, outcome.retry_after)
            if outcome.reason == "rate_limited" and outcome.retry_after:
                self._defer_host(feed, outcome.retry_after)

    def _on_parsed(self, item: _Parsed, future: Future[ParsedFeed]) -> None:
        feed, result = item.feed, item.result
        try:
            parsed = future.result()
        except ParseError as exc:
            self.in_flight.release()
            self._failed(feed, exc.reason, str(exc), result.http_status, None)
            return
        except Exception as exc:  # the pool must not take the cycle down
            self.in_flight.release()
            log.exception("feed=%s parse failed unexpectedly", feed.name)
            self._failed(feed, "parser_crash", f"parser failed: {type(exc).__name__}: {exc}", None, None)
            return
        for warning in parsed.warnings:
            log.debug("feed=%s parse warning: %s", feed.name, warning)
        poll = FeedPoll(
            feed,
            parsed.entries,
            http_status=result.http_status,
            etag=result.etag,
            last_modified=result.last_modified,
            body_hash=result.body_hash,
            permanent_redirect=result.permanent_redirect,
            title=parsed.title,
        )
        self._queue(_Write(feed, FeedOutcome(feed.name, "new"), poll=poll))

    # -- outcomes that only change the feed's state

    def _elapsed(self) -> float:
        return time.monotonic() - self.t0

    def _queue(self, write: _Write) -> None:
        self.writes.append(write)
        self.parsed_pending += write.poll is not None
        if self.oldest is None:
            self.oldest = time.monotonic()

    def _unchanged(self, feed: FeedSnapshot, result: FetchResult) -> None:
        update = after_unchanged(
            feed,
            now=utcnow(),
            http_status=result.http_status,
            etag=result.etag,
            last_modified=result.last_modified,
            permanent_redirect=result.permanent_redirect,
            policy=self.policy,
            rand=self.p.rand,
        )
        self._log_moved(feed, update)
        log.debug("feed=%s unchanged (HTTP %s)", feed.name, result.http_status)
        self._queue(_Write(feed, FeedOutcome(feed.name, "unchanged", elapsed=self._elapsed()), update))

    def _failed(
        self, feed: FeedSnapshot, reason: str, message: str, status: int | None, retry_after: float | None
    ) -> None:
        now = utcnow()
        update = after_failure(
            feed,
            now=now,
            reason=reason,
            message=message,
            http_status=status,
            retry_after=retry_after,
            policy=self.policy,
            rand=self.p.rand,
        )
        wait = (update.next_poll_at - now).total_seconds()
        if reason == "gone":
            log.error("feed=%s is gone (HTTP 410): disabled until its URL changes in the config", feed.name)
        else:
            log.warning(
                "feed=%s failed (%s): %s; failure %d in a row, next try in %s",
                feed.name,
                reason,
                message,
                update.consecutive_failures,
                _human(wait),
            )
        outcome = FeedOutcome(feed.name, "error", reason=reason, error=message, elapsed=self._elapsed())
        self._queue(_Write(feed, outcome, update))

    def _deferred(self, feed: FeedSnapshot, error: FeedFetchError) -> None:
        wait = error.retry_after or 0.0
        update = after_deferred(feed, now=utcnow(), wait=wait, policy=self.policy, rand=self.p.rand)
        log.info(
            "feed=%s not polled: its host asked us to wait (Retry-After), %s left",
            feed.name,
            _human(wait),
        )
        outcome = FeedOutcome(feed.name, "deferred", reason="rate_limited", error=str(error), elapsed=self._elapsed())
        self._queue(_Write(feed, outcome, update))

    def _defer_host(self, feed: FeedSnapshot, wait: float) -> None:
        """The host of ``feed`` asked us to wait: its feeds not in this cycle wait too, in
        the database, so the wait holds across cycles and restarts. (Those in this cycle
        are deferred by the fetcher, which no longer contacts the host.)"""
        key = host_key(feed.fetch_url)
        if key is None or key in self.deferred_hosts:
            return
        self.deferred_hosts.add(key)
        try:
            in_cycle = [fid for fid, f in self.by_id.items() if host_key(f.fetch_url) == key]
            moved = self.store.defer_host(key, utcnow() + dt.timedelta(seconds=wait), exclude=in_cycle)
            if moved:
                log.info(
                    "host of %s asked us to wait %s: %d other feed(s) of that host deferred",
                    redact_url(feed.fetch_url),
                    _human(wait),
                    moved,
                )
        except MonitorError as exc:
            log.error("could not defer the other feeds of %s: %s", redact_url(feed.fetch_url), exc)

    # -- the store stage

    def _until_due(self) -> float:
        """Seconds until the pending batch is due by age (1 s when nothing is pending)."""
        if self.oldest is None:
            return 1.0
        return max(0.01, BATCH_AGE - (time.monotonic() - self.oldest))

    def _batch_due(self) -> bool:
        if not self.writes:
            return False
        return (
            self.parsed_pending >= BATCH_FEEDS
            or len(self.writes) >= BATCH_STATES
            or (self.oldest is not None and time.monotonic() - self.oldest >= BATCH_AGE)
        )

    def _flush(self) -> None:
        """Look up, decide and write everything pending (two transactions: the lookup, the write)."""
        writes, self.writes, self.oldest, self.parsed_pending = self.writes, [], None, 0
        if not writes:
            return
        watch = self.watch
        polls = [w.poll for w in writes if w.poll is not None]
        for _ in polls:  # these no longer count against the fetch stage's budget
            self.in_flight.release()
        decider = Decider(
            match=lambda e: watch.matcher.match(e.title, e.summary),
            targets=watch.targets,
            policy=self.policy,
            catchup=self.catchup,
            catchup_new_feeds=watch.catchup_new_feeds,
            rand=self.p.rand,
            escalate=watch.escalate,
        )
        try:
            writes, polls, intents, reports = self._write_held(decider, writes, polls)
        except MonitorError as exc:
            log.error("%d feed(s) could not be stored: %s", len(writes), exc)
            for w in writes:
                log.error("feed=%s could not be stored: %s", w.feed.name, exc)
                self.report.outcomes.append(
                    FeedOutcome(w.feed.name, "error", reason="store", error=str(exc), elapsed=self._elapsed())
                )
            return  # not done: finish() gives the claims back, or the next cycle does
        self.done.update(w.feed.id for w in writes)
        for w, intent, rec in zip(writes, intents, reports, strict=True):
            if w.poll is None:
                self.report.outcomes.append(w.outcome)
                continue
            elapsed = self._elapsed()
            note = (
                " (catch-up)" if self.catchup else "" if intent.alerting else " (first poll: recorded without alerting)"
            )
            learned = intent.update.learned_interval_s
            log.info(
                "feed=%s fetched status=%s entries=%d new=%d matched=%d alerts=%d in %.2fs%s%s",
                w.feed.name,
                w.poll.http_status,
                len(w.poll.entries),
                rec.new_stories,
                rec.matches,
                rec.alerts,
                elapsed,
                note,
                f"; polled every {_human(learned)} (learned)"
                if learned is not KEEP and learned and learned > w.feed.interval_s
                else "",
            )
            self.report.outcomes.append(
                FeedOutcome(
                    w.feed.name,
                    "new",
                    rec.new_stories,
                    rec.matches,
                    rec.alerts,
                    elapsed=elapsed,
                    first_reading=not (self.catchup or intent.alerting),
                )
            )

    def _write_held(
        self, decider: Decider, writes: list[_Write], polls: list[FeedPoll]
    ) -> tuple[list[_Write], list[FeedPoll], list[FeedIntent], list[RecordReport]]:
        """Decide and write a batch; if some of its feeds were taken over meanwhile (this
        worker paused past its lease, or lost its database for that long), their work is
        dropped, not written (the new holder polls them), and the rest is decided and
        written again. Returns what was written."""
        for attempt in range(3):
            try:
                intents, reports = self._decide_and_write(decider, writes, polls)
                return writes, polls, intents, reports
            except ClaimLostError as exc:
                lost = set(exc.feed_ids)
                self.store.count("leases_lost", len(lost))
                for w in writes:
                    if w.feed.id in lost:
                        log.warning("feed=%s was taken over by another worker: this poll of it is dropped", w.feed.name)
                writes = [w for w in writes if w.feed.id not in lost]
                polls = [w.poll for w in writes if w.poll is not None]
                if not writes or attempt == 2:
                    return [], [], [], []
        raise AssertionError("unreachable")

    def _decide_and_write(
        self, decider: Decider, writes: list[_Write], polls: list[FeedPoll]
    ) -> tuple[list[FeedIntent], list[RecordReport]]:
        """Look up, decide and write one batch; with clustering, under the keeper's lock
        (the clusters must not change between the decision and the write)."""
        # A batch of state changes only (answers 304, failures) places no story: it needs
        # neither the clusters (their first build reads the whole window) nor their lock.
        keeper = self.p.clusters if polls else None
        now = utcnow()
        with keeper.deciding(now) if keeper is not None else nullcontext() as clusterer:
            decider = replace(decider, clusters=clusterer)
            known = self.store.known_stories([(p.feed.id, p.entries) for p in polls])
            decided = iter(decider.decide(polls, known, now))
            intents = [next(decided) if w.update is None else FeedIntent(w.feed.id, w.update) for w in writes]
            for w, intent in zip(writes, intents, strict=True):
                if w.poll is not None:
                    self._log_moved(w.feed, intent.update)
            reports: list[RecordReport] | None = None
            try:
                claims = {w.feed.id: w.feed.claim_version for w in writes}
                reports = self.store.apply_poll(intents, worker=self.p.worker, claims=claims)
            finally:
                if keeper is not None:
                    keeper.settle(intents, reports)
        return intents, reports

    @staticmethod
    def _log_moved(feed: FeedSnapshot, update: FeedUpdate) -> None:
        if update.fetch_url is not KEEP:
            log.warning("feed=%s moved permanently: now polling %s", feed.name, redact_url(update.fetch_url))
        elif update.redirect_to is not KEEP and update.redirect_to:
            log.info(
                "feed=%s permanently redirected to %s (adopted if seen again on the next poll)",
                feed.name,
                redact_url(update.redirect_to),
            )


def _without_body(result: FetchResult) -> FetchResult:
    """The result without its body: the body is the pool's now, and must not be kept
    alive by the cycle's bookkeeping while it waits to be parsed."""
    return replace(result, body=b"")


def _human(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds / 3600:.1f}h"
