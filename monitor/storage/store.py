"""The store: every database access of news-monitor, as one object.

:class:`Store` is composed of one mixin per aggregate (as lemon24/reader composes its
storage): :class:`~monitor.storage.feeds.FeedStore` (sync, claims, schedule, health),
:class:`~monitor.storage.stories.StoryStore` (lookup, sightings, matches, read models)
:class:`~monitor.storage.outbox.OutboxStore` (leases, marks, health alerts, the
delivery log) and :class:`~monitor.storage.retention.RetentionStore` (the prune and the
pruned stories' dedupe keys, which :meth:`Store.known_stories` adds to the look-up), all
on :class:`~monitor.storage.engine.Database` (the engine and its one transaction helper).
The writes that span aggregates are composed here.

Storage decides nothing: the poll's intents come from :mod:`monitor.ingest.decide` and
:meth:`Store.apply_poll` applies a batch of them in ONE transaction, so a story, its
sightings, matches and outbox rows, and every feed's new state commit together or not
at all. Inserts are ``ON CONFLICT DO NOTHING`` on unique keys: two daemons, or a retry
after a crash, never create a second story or alert.

Statements per batch (measured to dominate a 1,000-feed cycle's database time when
they were per feed): one INSERT ... RETURNING per 500 stories, one UPDATE for the
clusters, one executemany INSERT each for sightings, matches and outbox rows, one
executemany UPDATE per shape of feed changes.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, func, select, update

from monitor.ingest.decide import FeedIntent, KnownStories, OutboxRow, Sighting, story_ident
from monitor.ingest.entries import Entry
from monitor.matching.matcher import MatchResult
from monitor.storage.engine import chunks, utcnow
from monitor.storage.feeds import FeedStore, apply_updates
from monitor.storage.outbox import OutboxStore, alert_columns
from monitor.storage.retention import PRUNED, RetentionStore
from monitor.storage.schema import Alert, Feed, Match, Story
from monitor.storage.stories import StoryStore, match_row


@dataclass(frozen=True, slots=True)
class RecordReport:
    """What one feed's intent actually wrote (a story another daemon stored meanwhile
    is not new, and brings no matches or alerts)."""

    new_stories: int
    matches: int
    alerts: int
    new_story_ids: tuple[int, ...]
    new_idents: tuple[str, ...] = ()


class Store(RetentionStore, FeedStore, StoryStore, OutboxStore):
    """All database access of news-monitor."""

    def known_stories(self, batches: Sequence[tuple[int, Sequence[Entry]]]) -> KnownStories:
        """What is stored of these feeds' entries (:meth:`StoryStore.known_stories`), and
        what retention pruned of them: a pruned identity is known under the story id
        :data:`~monitor.storage.retention.PRUNED`, a pruned GUID key as stored. Only the
        entries not stored are looked up again (the new ones: few, in steady state)."""
        known = super().known_stories(batches)
        idents = {story_ident(feed_id, e) for feed_id, entries in batches for e in entries} - set(known.ids)
        guid_keys = [
            (feed_id, [e.guid_key for e in entries if e.guid_key and (feed_id, e.guid_key) not in known.guids])
            for feed_id, entries in batches
        ]
        if not idents and not any(keys for _, keys in guid_keys):
            return known
        pruned = self.pruned_known(guid_keys, sorted(idents))
        return KnownStories({**known.ids, **pruned.ids}, known.guids | pruned.guids)

    def apply_poll(self, intents: Sequence[FeedIntent]) -> list[RecordReport]:
        """Apply a batch of poll intents (one per feed) in ONE transaction."""
        stories = [s for fi in intents for s in fi.stories]
        with self.transaction() as conn:
            sightings = self._live_sightings(conn, [s for fi in intents for s in fi.sightings])
            ids, new = self._write_stories(conn, stories, sightings)
            self._write_matches(conn, (m for fi in intents for m in fi.matches if m.story in new), ids)
            alerts = [
                (a.row, ids[a.story], ids.get(a.cluster, ids[a.story]))
                for fi in intents
                for a in fi.alerts
                if a.story in new
            ]
            self._queue_story_alerts(conn, alerts)
            surges = [u for fi in intents for u in fi.surges if u.story in new]
            self._queue_surges(conn, surges, ids)
            apply_updates(conn, [(fi.feed_id, fi.update) for fi in intents])
        return [
            RecordReport(
                new_stories=sum(s.ident in new for s in fi.stories),
                matches=sum(m.story in new for m in fi.matches),
                alerts=sum(a.story in new for a in fi.alerts) + sum(u.story in new for u in fi.surges),
                new_story_ids=tuple(ids[s.ident] for s in fi.stories if s.ident in new),
                new_idents=tuple(s.ident for s in fi.stories if s.ident in new),
            )
            for fi in intents
        ]

    def _live_sightings(self, conn: Connection, sightings: Sequence[Sighting]) -> list[Sighting]:
        """The sightings whose story is still stored. A pruned story is gone: known under
        :data:`~monitor.storage.retention.PRUNED`, or pruned since the look-up by a prune
        running meanwhile (its sighting would fail the batch on the foreign key). On
        PostgreSQL the stories sighted are locked ``FOR KEY SHARE`` until the batch
        commits, so a prune cannot delete them in between; SQLite's writers are serialised.
        Costs one primary-key read per 500 known stories sighted."""
        ids = sorted({s.story_id for s in sightings if s.story_id is not None and s.story_id != PRUNED})
        live: set[int] = set()
        for chunk in chunks(ids):
            stmt = select(Story.id).where(Story.id.in_(chunk))
            if self.dialect == "postgresql":
                stmt = stmt.with_for_update(key_share=True)
            live.update(conn.scalars(stmt))
        return [s for s in sightings if s.story_id is None or s.story_id in live]

    def record_backfill(
        self,
        watchlist: str,
        results: Mapping[int, MatchResult],
        targets: Sequence[str],
        *,
        now: dt.datetime | None = None,
    ) -> tuple[int, int]:
        """Record matches of stored stories for a watchlist and queue their alerts (``--backfill``).

        ``results`` maps story ids to their match. Like a poll's writes, inserts are
        ``ON CONFLICT DO NOTHING``: a story already matched, or a cluster already
        alerted for this watchlist and target, stays as it is, so a backfill run twice
        (or over stories the daemon matched meanwhile) never alerts twice. Returns
        (new matches, new alerts). One transaction.
        """
        now = now or utcnow()
        n_matches = n_alerts = 0
        if not results:
            return 0, 0
        with self.transaction() as conn:
            clusters: dict[int, int] = {}
            for chunk in chunks(list(results)):
                for sid, cid in conn.execute(select(Story.id, Story.cluster_id).where(Story.id.in_(chunk))):
                    clusters[sid] = cid or sid
            for sid, m in results.items():
                if sid not in clusters:
                    continue  # deleted meanwhile
                res = conn.execute(
                    self.insert(Match.__table__)
                    .values(**match_row(sid, m, now, alerted=bool(targets)))
                    .on_conflict_do_nothing()
                    .returning(Match.__table__.c.id)
                )
                if res.scalar_one_or_none() is not None:
                    n_matches += 1
                elif targets:  # matched before without an alert (catch-up): it is alerted now
                    conn.execute(
                        update(Match).where(Match.story_id == sid, Match.watchlist == watchlist).values(alerted=True)
                    )
                for target in targets:
                    row = alert_columns(OutboxRow(watchlist, target, now))
                    res = conn.execute(
                        self.insert(Alert.__table__)
                        .values(story_id=sid, cluster_id=clusters[sid], **row)
                        .on_conflict_do_nothing()
                        .returning(Alert.__table__.c.id)
                    )
                    if res.scalar_one_or_none() is not None:
                        n_alerts += 1
        return n_matches, n_alerts

    def release_dead_claims(self, *, host: str, alive: Callable[[int], bool]) -> tuple[int, int]:
        """Free claims held by processes of this host that no longer run (after kill -9).

        Without this a restarted daemon would wait for the leases to expire before
        polling those feeds or retrying those alerts. Claims of other hosts are left to
        their leases. Returns (feeds, alerts) released.
        """

        def dead(worker: str | None) -> bool:
            if not worker:
                return False
            parts = worker.split(":")
            if len(parts) < 3 or parts[0] != host or not parts[1].isdigit():
                return False
            return not alive(int(parts[1]))

        with self.transaction() as conn:
            feed_owners = {w for (w,) in conn.execute(select(Feed.claimed_by).where(Feed.claimed_by.is_not(None)))}
            alert_owners = {
                w for (w,) in conn.execute(select(Alert.claimed_by).where(Alert.status == "sending").distinct())
            }
            dead_feeds = [w for w in feed_owners if dead(w)]
            dead_alerts = [w for w in alert_owners if dead(w)]
            n_feeds = n_alerts = 0
            if dead_feeds:
                res = conn.execute(
                    update(Feed).where(Feed.claimed_by.in_(dead_feeds)).values(claimed_by=None, claim_until=None)
                )
                n_feeds = int(res.rowcount or 0)
            if dead_alerts:
                res = conn.execute(
                    update(Alert)
                    .where(Alert.status == "sending", Alert.claimed_by.in_(dead_alerts))
                    .values(lease_until=utcnow() - dt.timedelta(seconds=1))
                )
                n_alerts = int(res.rowcount or 0)
        return n_feeds, n_alerts

    def counts(self) -> dict[str, int]:
        """Stories, matches and outbox rows stored (for /metrics and ``status``)."""
        with self.transaction() as conn:
            return {
                "stories": int(conn.execute(select(func.count()).select_from(Story)).scalar_one()),
                "matches": int(conn.execute(select(func.count()).select_from(Match)).scalar_one()),
                "alerts": int(conn.execute(select(func.count()).select_from(Alert)).scalar_one()),
            }
