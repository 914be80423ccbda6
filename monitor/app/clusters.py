"""Keeps the pure :class:`~monitor.clustering.clusterer.Clusterer` in step with the database.

The clusterer's index of open clusters lives in memory; the database is the truth.

- **Rebuilt** from the clustered stories (``stories.clustered``: those on the watched
  themes) first seen within twice the window (the index's ``keep``) the first time a
  poll decides, and again when the cluster settings or the
  alias groups change (a reload builds a new clusterer).
- The watchlists each stored story alerted (its matches) and the surge follow-ups that
  name it (the outbox's ``surge`` rows) come back with it, so a restart alerts and
  escalates nothing twice.
- **Caught up** before each decision: stories another daemon (or ``poll --once``) stored
  since the last look are filed under their stored clusters, so the decision sees them.
- **Settled** after each write: a story this daemon decided but another stored first
  (or a write that failed) is taken back out; the catch-up files the stored version.
- **Serialised across daemons** on PostgreSQL: catch-up, decision and write run under
  one advisory lock (:meth:`Database.exclusive`), so two daemons taking two tellings of
  one event at the same moment cannot both open a cluster for it and both alert. The
  lock is held for a batch's look-up, decision and write (milliseconds in steady state;
  the decision includes matching). SQLite has one daemon per file.

Cost: the rebuild signs and files every clustered story of the window again (0.6 ms
each in bench/cluster.py: 2.4 s for 4,000, paid once at start-up and on a settings
change); the catch-up is one indexed query of identities per batch, and a read of the
stories it did not know.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from monitor.clustering.clusterer import Clusterer
from monitor.ingest.decide import FeedIntent
from monitor.storage.engine import INGEST_LOCK
from monitor.storage.store import RecordReport, Store
from monitor.storage.stories import ClusteredStory

log = logging.getLogger("monitor.clusters")


class ClusterKeeper:
    """One daemon's clusterer, its database watermark and the lock around decisions."""

    def __init__(self, store: Store, clusterer: Clusterer) -> None:
        self.store = store
        self._clusterer = clusterer
        self._built = False
        self._watermark = 0
        self._lock = threading.Lock()

    @property
    def clusterer(self) -> Clusterer:
        return self._clusterer

    def replace(self, clusterer: Clusterer) -> None:
        """Use *clusterer* (new settings or aliases); it is filled at the next decision."""
        with self._lock:
            self._clusterer, self._built, self._watermark = clusterer, False, 0

    @contextmanager
    def deciding(self, now: dt.datetime) -> Iterator[Clusterer]:
        """The clusterer, up to date with the database, for one look-up, decision and write."""
        with self._lock, self.store.exclusive(INGEST_LOCK):
            if not self._built:
                self._rebuild(now)
            else:
                self._catch_up()
            yield self._clusterer

    def settle(self, intents: Sequence[FeedIntent], reports: Sequence[RecordReport] | None) -> None:
        """After a write: forget the decided stories it did not store (all of them when
        *reports* is None: the write failed). The next catch-up files the stored version
        of a story another daemon stored first."""
        stored = {ident for rep in reports or () for ident in rep.new_idents}
        self._clusterer.forget(s.ident for fi in intents for s in fi.stories if s.ident not in stored)

    def _rebuild(self, now: dt.datetime) -> None:
        start = time.monotonic()
        clusterer = self._clusterer
        since = now - clusterer.index.keep
        self._watermark = self.store.last_story_id()
        after = 0
        count = 0
        while True:
            page = self.store.clustered_stories(seen_since=since, after_id=after)
            if not page:
                break
            self._file(page)
            after = page[-1].id
            count += len(page)
        self._built = True
        log.info(
            "story clusters: %d stories of the last %s filed in %d open clusters in %.1fs",
            count,
            _hours(clusterer.index.keep),
            len(clusterer.index),
            time.monotonic() - start,
        )

    def _catch_up(self) -> None:
        fresh = self.store.story_idents_after(self._watermark)
        if not fresh:
            return
        self._watermark = fresh[-1][0]
        unknown = [sid for sid, ident in fresh if not self._clusterer.knows(ident)]
        for i in range(0, len(unknown), 1000):
            self._file(self.store.clustered_stories(ids=unknown[i : i + 1000]))

    def _file(self, stories: Iterable[ClusteredStory]) -> None:
        clusterer = self._clusterer
        for s in stories:
            sig = clusterer.sign(s.title, s.summary, s.language, s.published_at, s.feed, seen=s.first_seen_at)
            clusterer.file(s.ident, sig, s.cluster, s.alerted, s.escalated)


def _hours(delta: dt.timedelta) -> str:
    return f"{delta.total_seconds() / 3600:g}h"
