"""The store: every database access of news-monitor, as one object.

:class:`Store` is composed of one mixin per aggregate (as lemon24/reader composes its
storage): :class:`~monitor.storage.feeds.FeedStore` (sync, claims, schedule, health),
:class:`~monitor.storage.stories.StoryStore` (lookup, sightings, matches, read models),
:class:`~monitor.storage.outbox.OutboxStore` (leases, marks, health alerts, the
delivery log) and :class:`~monitor.storage.retention.RetentionStore` (the prune and the
pruned stories' dedupe keys, which :meth:`Store.known_stories` adds to the look-up), on
:class:`~monitor.storage.workers.WorkerStore` (the workers, their heartbeats, the
database's clock) and :class:`~monitor.storage.engine.Database` (the engine and its one
transaction helper).
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, func, select, update

from monitor.ingest.decide import FeedIntent, KnownStories, OutboxRow, Sighting, story_ident
from monitor.ingest.entries import Entry
from monitor.matching.matcher import MatchResult
from monitor.storage.engine import chunks, utcnow
from monitor.storage.feeds import FeedStore, apply_updates, check_claims
from monitor.storage.outbox import OutboxStore, alert_columns
from monitor.storage.retention import PRUNED, RetentionStore
from monitor.storage.schema import Alert, Delivery, Match, Story, Worker
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

    def apply_poll(
        self, intents: Sequence[FeedIntent], *, worker: str | None = None, claims: Mapping[int, int] | None = None
    ) -> list[RecordReport]:
        """Apply a batch of poll intents (one per feed) in ONE transaction.

        With *worker* and *claims* (feed id -> claim version) the transaction first checks
        that the worker still holds every one of those feeds, and raises
        :class:`~monitor.errors.ClaimLostError` (writing nothing) if not."""
        stories = [s for fi in intents for s in fi.stories]
        with self.transaction() as conn:
            if worker is not None and claims:
                check_claims(conn, worker, claims, locking=self.dialect == "postgresql")
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

    def counts(self, *, lease: float = 15.0) -> dict[str, int]:
        """Stories, matches and outbox rows stored, possible duplicate sends, and workers
        live (heartbeat within *lease*) or dead (for /metrics and ``status``)."""
        with self.transaction() as conn:
            horizon = self.db_now(conn) - dt.timedelta(seconds=lease)
            live = int(conn.execute(select(func.count()).where(Worker.heartbeat_at >= horizon)).scalar_one())
            return {
                "stories": int(conn.execute(select(func.count()).select_from(Story)).scalar_one()),
                "matches": int(conn.execute(select(func.count()).select_from(Match)).scalar_one()),
                "alerts": int(conn.execute(select(func.count()).select_from(Alert)).scalar_one()),
                "duplicates": int(conn.execute(select(func.coalesce(func.sum(Delivery.duplicates), 0))).scalar_one()),
                "workers_live": live,
                "workers_dead": int(conn.execute(select(func.count()).select_from(Worker)).scalar_one()) - live,
            }
