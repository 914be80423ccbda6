"""Retention: the daily prune of old stories, delivery log rows and feed-health alerts.

Without it nothing is ever deleted, and a daemon running for a year grows its database
without bound. :func:`cutoffs` (pure) turns the settings and ``now`` into the instants
before which rows go; :meth:`RetentionStore.prune` deletes them in chunks of
:data:`CHUNK` stories (one transaction each, so a prune never holds the database for
long, on SQLite or PostgreSQL), under the advisory lock :data:`~monitor.storage.engine.PRUNE_LOCK` so that of
several daemons on one PostgreSQL one prunes at a time (the daemons' daily prune skips
its turn when another holds the lock; the ``prune`` command waits for it).

What a prune keeps, whatever the settings (each is tested in tests/test_retention.py):

- **Dedupe.** A feed keeps old entries for months: a story deleted while its feed still
  lists the entry must not come back as new and alert again. Before a story goes, its
  dedupe keys are written to ``pruned_stories`` (its identity, as ``stories.ident``,
  and its feed and GUID key: the two look-ups of ``Store.known_stories``), which the
  store's ``known_stories`` reads as stored. Those keys are kept for ``keys`` (a year
  by default) after the prune; a removed feed takes its keys with it. Measured with
  bench/retention.py (SQLite, 20,000 stories of feed-sized titles and summaries, one
  match and one sighting each, medians of 3 runs): a kept key costs 222 bytes (row and
  its three indexes) against 1,601 for the story's rows, indexes and search index, 14 %.
  The FTS5 index keeps a deletion marker per deleted story (about 490 bytes) until its
  segments merge, which its automerge does as new stories are indexed.

Cost: 3,150 stories a second (a chunk of 1,000 in about 320 ms), 2.2 times one
unchunked ``DELETE`` without keys (bench/retention.py); a day's stories of 1,000 feeds
go in seconds, in transactions that each hold the database for a third of a second.
- **Clustering.** Stories are deleted by whole event clusters: a cluster goes when its
  newest story was first seen before the cutoff, so a cluster's first story, which its
  other stories point at, stays as long as any of them. The cutoff is never later
  than ``now`` minus the clusterer's memory (twice ``cluster.window``: the stories a
  restarted daemon files again), whatever ``stories`` says.
- **The outbox.** A cluster with an alert still to deliver (``pending`` or ``sending``:
  deferred rows are pending with a later attempt) keeps all its stories. Sent and
  failed alert rows of a story go with it; those of no story (feed-health alerts) go
  after ``outbox``.
- **Cascades.** ``matches``, ``story_feeds`` and the story's outbox rows go with their
  story (``ON DELETE CASCADE`` on both backends; SQLite's connections set
  ``PRAGMA foreign_keys=ON``). The search index follows: on SQLite the FTS5 table's
  delete trigger (migration 0002), on PostgreSQL an expression index.
- **Rate limits.** Delivery log rows younger than the longest rate-limit period stay.

A setting of ``never`` (or ``0``) switches that deletion off.

A poll that read a story's identity just before a concurrent prune deleted it does not
write a sighting of a story that is gone: ``Store.apply_poll`` keeps the sightings of
stories still stored, locked ``FOR KEY SHARE`` on PostgreSQL until its batch commits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Select, delete, func, select

from monitor.ingest.decide import KnownStories
from monitor.storage.engine import PRUNE_LOCK, Database, chunks, utcnow
from monitor.storage.schema import Alert, Delivery, PrunedStory, Story

#: Stories read, and clusters deleted, per transaction.
CHUNK = 1000
#: The story id a pruned identity is "known" under (no row has it): its sightings are not written.
PRUNED = 0
#: Outbox states that still have something to deliver.
_UNDELIVERED = ("pending", "sending")


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """How long rows are kept; None: for ever."""

    stories: dt.timedelta | None = dt.timedelta(days=90)
    deliveries: dt.timedelta | None = dt.timedelta(days=30)
    outbox: dt.timedelta | None = dt.timedelta(days=30)
    keys: dt.timedelta | None = dt.timedelta(days=366)
    cluster_memory: dt.timedelta = dt.timedelta(hours=144)  # stories first seen since then stay
    rate_window: dt.timedelta = dt.timedelta(0)  # delivery rows sent since then stay


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Rows older than these instants go; None: none of them."""

    stories: dt.datetime | None
    deliveries: dt.datetime | None
    outbox: dt.datetime | None
    keys: dt.datetime | None


def cutoffs(policy: RetentionPolicy, now: dt.datetime) -> Cutoffs:
    """The instants before which each kind of row goes (pure)."""
    stories = None if policy.stories is None else now - max(policy.stories, policy.cluster_memory)
    deliveries = None if policy.deliveries is None else now - max(policy.deliveries, policy.rate_window)
    return Cutoffs(
        stories=stories,
        deliveries=deliveries,
        outbox=None if policy.outbox is None else now - policy.outbox,
        keys=None if policy.keys is None else now - policy.keys,
    )


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What a prune deleted (or, dry, would delete)."""

    stories: int = 0
    clusters: int = 0
    deliveries: int = 0
    outbox: int = 0
    keys_expired: int = 0
    dry_run: bool = False
    skipped: bool = False  # another daemon was pruning (``prune(wait=False)``)


class RetentionStore(Database):
    """The prune, and the pruned stories' dedupe keys."""

    def prune(
        self, cut: Cutoffs, *, dry_run: bool = False, now: dt.datetime | None = None, wait: bool = True
    ) -> PruneReport:
        """Delete what is older than *cut*, in transactions of :data:`CHUNK` rows (see
        the module docstring for what is kept). ``dry_run``: count, delete nothing.
        ``wait=False``: if another daemon is pruning, do nothing (``skipped``) instead of
        waiting for it: its prune is this one."""
        now = now or utcnow()
        with self.exclusive(PRUNE_LOCK, skip_if_held=not wait) as held:
            if not held:
                return PruneReport(dry_run=dry_run, skipped=True)
            clusters, stories = (0, 0) if cut.stories is None else self._prune_stories(cut.stories, now, dry_run)
            deliveries = outbox = 0
            if cut.deliveries is not None:
                deliveries = self._prune_rows(Delivery, _old_deliveries(cut.deliveries), dry_run)
            if cut.outbox is not None:
                outbox = self._prune_rows(Alert, _old_health_alerts(cut.outbox), dry_run)
            keys = 0 if cut.keys is None else self._prune_keys(cut.keys, dry_run)
        return PruneReport(stories, clusters, deliveries, outbox, keys, dry_run)

    def _prune_stories(self, cutoff: dt.datetime, now: dt.datetime, dry_run: bool) -> tuple[int, int]:
        """Walk the stories first seen before *cutoff* by id, a chunk per transaction, and
        delete the clusters among theirs that have no recent story and nothing to deliver."""
        after = 0
        done: set[int] = set()  # clusters deleted (or, dry, counted)
        n_stories = 0
        while True:
            with self.transaction() as conn:
                rows = conn.execute(
                    select(Story.id, func.coalesce(Story.cluster_id, Story.id))
                    .where(Story.first_seen_at < cutoff, Story.id > after)
                    .order_by(Story.id)
                    .limit(CHUNK)
                ).all()
                if not rows:
                    break
                after = rows[-1][0]
                doomed = sorted({c for _, c in rows} - done - _kept_clusters(conn, {c for _, c in rows}, cutoff))
                if doomed:
                    n_stories += _delete_clusters(self, conn, doomed, now, dry_run)
                    done.update(doomed)
        return len(done), n_stories

    def _prune_rows(self, table: type[Delivery] | type[Alert], query: Select[int], dry_run: bool) -> int:
        """Delete the rows of *table* whose ids *query* selects, a chunk per transaction."""
        total = 0
        after = 0
        while True:
            with self.transaction() as conn:
                ids = list(conn.scalars(query.where(table.id > after).order_by(table.id).limit(CHUNK)))
                if not ids:
                    return total
                after = ids[-1]
                if not dry_run:
                    conn.execute(delete(table).where(table.id.in_(ids)))
                total += len(ids)

    def _prune_keys(self, cutoff: dt.datetime, dry_run: bool) -> int:
        total = 0
        while True:
            with self.transaction() as conn:
                stmt = select(PrunedStory.ident).where(PrunedStory.pruned_at < cutoff).order_by(PrunedStory.ident)
                idents = list(conn.scalars(stmt.offset(total if dry_run else 0).limit(CHUNK)))
                if not idents:
                    return total
                if not dry_run:
                    conn.execute(delete(PrunedStory).where(PrunedStory.ident.in_(idents)))
                total += len(idents)

    def pruned_known(self, batches: Sequence[tuple[int, Sequence[str | None]]], idents: Sequence[str]) -> KnownStories:
        """Which of these identities, and of each feed's GUID keys, belong to pruned
        stories: the identities under the id :data:`PRUNED`."""
        ids: dict[str, int] = {}
        guids: set[tuple[int, str]] = set()
        with self.transaction() as conn:
            for chunk in chunks(list(idents)):
                found = conn.scalars(select(PrunedStory.ident).where(PrunedStory.ident.in_(chunk)))
                ids.update((ident, PRUNED) for ident in found)
            for feed_id, keys in batches:
                for key_chunk in chunks(sorted({k for k in keys if k})):
                    stmt = select(PrunedStory.guid_key).where(
                        PrunedStory.feed_id == feed_id, PrunedStory.guid_key.in_(key_chunk)
                    )
                    guids.update((feed_id, g) for g in conn.scalars(stmt) if g is not None)
        return KnownStories(ids, frozenset(guids))


def _old_deliveries(cutoff: dt.datetime) -> Select[int]:
    return select(Delivery.id).where(Delivery.sent_at < cutoff)


def _old_health_alerts(cutoff: dt.datetime) -> Select[int]:
    """Delivered or given-up outbox rows of no story (feed health): no story takes them along."""
    old = Alert.created_at < cutoff
    return select(Alert.id).where(Alert.story_id.is_(None), Alert.status.not_in(_UNDELIVERED), old)


def _kept_clusters(conn: Connection, clusters: set[int], cutoff: dt.datetime) -> set[int]:
    """Those of *clusters* with a story first seen since *cutoff*, or an alert to deliver."""
    kept: set[int] = set()
    for chunk in chunks(sorted(clusters)):
        recent = select(Story.cluster_id).where(Story.cluster_id.in_(chunk), Story.first_seen_at >= cutoff)
        kept.update(c for c in conn.scalars(recent.distinct()) if c is not None)
        by_cluster = select(Alert.cluster_id).where(Alert.cluster_id.in_(chunk), Alert.status.in_(_UNDELIVERED))
        kept.update(c for c in conn.scalars(by_cluster.distinct()) if c is not None)
        by_story = (
            select(func.coalesce(Story.cluster_id, Story.id))
            .join(Alert, Alert.story_id == Story.id)
            .where(func.coalesce(Story.cluster_id, Story.id).in_(chunk), Alert.status.in_(_UNDELIVERED))
        )
        kept.update(conn.scalars(by_story.distinct()))
    return kept


def _delete_clusters(db: Database, conn: Connection, clusters: Sequence[int], now: dt.datetime, dry_run: bool) -> int:
    """Record the dedupe keys of every story of *clusters*, then delete them (one
    statement: a cluster's first story and the stories pointing at it go together, so
    the self-reference is satisfied at the statement's end on both backends)."""
    members = (Story.cluster_id.in_(clusters)) | (Story.cluster_id.is_(None) & Story.id.in_(clusters))
    rows = conn.execute(select(Story.ident, Story.feed_id, Story.guid_key).where(members)).all()
    if dry_run or not rows:
        return len(rows)
    keys = [{"ident": i, "feed_id": f, "guid_key": g, "pruned_at": now} for i, f, g in rows]
    conn.execute(db.insert(PrunedStory.__table__).on_conflict_do_nothing(), keys)
    conn.execute(delete(Story).where(members))
    return len(rows)
