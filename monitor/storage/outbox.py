"""The outbox: alerts waiting to be delivered, their leases, and the delivery log.

Delivery is at-least-once with a small window: a row is *claimed* with a lease
(``status='sending'``, ``claimed_by``, ``lease_until``; ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL), sent, then marked; every mark is conditional on still holding the claim,
so a sender that lost its lease to another finds out (a row count of 0) before it
writes. Claiming bumps ``attempts`` first, so a row that kills the sender every time
still reaches its give-up age instead of looping for ever.

New rows take their defaults from :class:`~monitor.ingest.decide.OutboxRow` through
:func:`alert_columns`, whoever queues them (a poll, a backfill, feed health).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, and_, func, insert, or_, select, text, update

from monitor.delivery.render import OtherReport
from monitor.delivery.routing import HEALTH_WATCHLIST, STORY_KINDS, ClaimedAlert
from monitor.ingest.decide import NewSurge, OutboxRow
from monitor.storage.engine import chunks, utcnow
from monitor.storage.schema import Alert, Delivery, Feed, Match, Story
from monitor.storage.stories import stored_hits, story_sources
from monitor.storage.workers import WorkerStore


def alert_columns(alert: OutboxRow) -> dict[str, Any]:
    """The outbox columns of a new row, whatever it announces (the caller adds what)."""
    return {
        "watchlist": alert.watchlist,
        "target": alert.target,
        "status": alert.status,
        "attempts": alert.attempts,
        "fold": alert.fold,
        "created_at": alert.created_at,
        "next_attempt_at": alert.next_attempt_at,
    }


def _claimed(r: Any, others: Mapping[int, list[str]]) -> ClaimedAlert:
    """A claimed row as the planner and renderer see it (story and health alerts alike)."""
    if r.kind in STORY_KINDS:
        payload = r.payload or {}
        surge = r.kind == "surge"
        return ClaimedAlert(
            id=r.id,
            kind="surge" if surge else "story",
            story_id=r.story_id,
            cluster_id=r.cluster_id,
            watchlist=r.watchlist,
            target=r.target,
            attempts=r.attempts,
            fold=bool(r.fold),
            created_at=r.created_at,
            title=r.title,
            link=r.link,
            summary=r.summary,
            published_at=r.published_at,
            source=r.source,
            terms=tuple(r.terms or ()),
            hits=stored_hits(r.hits),
            also_reported_by=tuple(
                OtherReport(n, r.language, r.title, r.link, r.story_id)
                for n in others.get(r.story_id, ())
                if n != r.source and not surge
            ),
            outlets=tuple(str(o) for o in payload.get("outlets", ())) if surge else (),
            within=float(payload.get("within", 0.0)) if surge else 0.0,
            claim=r.claim_version,
        )
    payload = r.payload or {}
    if r.kind == "feed_down":
        title = f"Feed {r.health_feed!r} has been failing since {payload.get('since', '?')}"
        summary = f"Last error ({payload.get('reason') or 'unknown'}): {payload.get('error') or '-'}"
    else:
        title = f"Feed {r.health_feed!r} has recovered"
        summary = f"It had been reported failing at {payload.get('since', '?')}; polling works again."
    return ClaimedAlert(
        id=r.id,
        kind=r.kind,
        story_id=None,
        cluster_id=None,
        watchlist=r.watchlist,
        target=r.target,
        attempts=r.attempts,
        fold=bool(r.fold),
        created_at=r.created_at,
        title=title,
        link=r.health_url,
        summary=summary,
        published_at=r.created_at,
        source=r.health_feed or "?",
        claim=r.claim_version,
    )


#: PostgreSQL advisory lock key that serialises the alert claims of all workers.
ALERT_CLAIM_LOCK = 7361280418


def _holding(alerts: Sequence[ClaimedAlert], worker: str) -> Any:
    """The rows of *alerts* that *worker* still holds under the claims it made."""
    by_claim: dict[int, list[int]] = {}
    for a in alerts:
        by_claim.setdefault(a.claim, []).append(a.id)
    return and_(
        Alert.status == "sending",
        Alert.claimed_by == worker,
        or_(*(and_(Alert.claim_version == v, Alert.id.in_(ids)) for v, ids in by_claim.items())),
    )


class OutboxStore(WorkerStore):
    """The outbox aggregate of :class:`~monitor.storage.store.Store`."""

    def _queue_story_alerts(self, conn: Connection, alerts: Sequence[tuple[OutboxRow, int, int]]) -> None:
        """Insert (alert, story id, cluster id) rows; a cluster already alerted for a
        watchlist and target stays as it is (``ON CONFLICT DO NOTHING``)."""
        rows = [{"story_id": sid, "cluster_id": cid, **alert_columns(a)} for a, sid, cid in alerts]
        for chunk in chunks(rows):
            conn.execute(self.insert(Alert.__table__).on_conflict_do_nothing(), chunk)

    def _queue_surges(self, conn: Connection, surges: Sequence[NewSurge], ids: Mapping[str, int]) -> None:
        """Insert surge rows (kind ``surge``: the alerted story, its cluster, the outlets
        counted); a cluster already escalated for a watchlist and target stays as it is
        (``ON CONFLICT DO NOTHING``: the unique key is the fence between daemons). A row
        whose alerted story or cluster is not stored is left out."""
        if not surges:
            return
        known = dict(ids)
        missing = sorted({i for u in surges for i in (u.alerted, u.cluster)} - set(known))
        for idents in chunks(missing):
            known.update(conn.execute(select(Story.ident, Story.id).where(Story.ident.in_(idents))).tuples())
        rows = [
            {
                "kind": "surge",
                "story_id": known[u.alerted],
                "cluster_id": known[u.cluster],
                "payload": {"outlets": list(u.outlets), "within": u.within.total_seconds()},
                **alert_columns(u.row),
            }
            for u in surges
            if u.alerted in known and u.cluster in known
        ]
        for chunk in chunks(rows):
            conn.execute(self.insert(Alert.__table__).on_conflict_do_nothing(), chunk)

    def claim_alerts(
        self, *, worker: str, lease: float, limit: int = 100, now: dt.datetime | None = None
    ) -> list[ClaimedAlert]:
        """Claim due outbox rows (pending and due, or sending with a lease run out).

        A target is planned by one worker at a time (its rate window, its digests): rows
        of a target another worker holds live claims on are left to that worker. On
        PostgreSQL the claims of all workers are serialised by a transaction-level
        advisory lock, so two workers never take one target at once. Each claimed row's
        ``claim_version`` is bumped: it comes back as :attr:`ClaimedAlert.claim`, the
        fencing token every later mark checks."""
        with self.transaction() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": ALERT_CLAIM_LOCK})
            now = now or self.db_now(conn)
            due = or_(
                and_(Alert.status == "pending", Alert.next_attempt_at <= now),
                and_(Alert.status == "sending", Alert.lease_until < now),
            )
            held = select(Alert.target).where(
                Alert.status == "sending", Alert.claimed_by != worker, Alert.lease_until >= now
            )
            stmt = select(Alert.id, Alert.claimed_by).where(due, Alert.target.not_in(held.scalar_subquery()))
            picked = conn.execute(self.locking(stmt.order_by(Alert.id).limit(limit))).all()
            if not picked:
                return []
            ids = [r.id for r in picked]
            self.count("alert_claims", len(ids))
            self.count("takeovers", sum(1 for r in picked if r.claimed_by not in (None, worker)))
            conn.execute(
                update(Alert)
                .where(Alert.id.in_(ids))
                .values(
                    status="sending",
                    claimed_by=worker,
                    lease_until=now + dt.timedelta(seconds=lease),
                    attempts=Alert.attempts + 1,
                    claim_version=Alert.claim_version + 1,
                )
            )
            story_feed = Feed.__table__.alias("story_feed")
            rows = conn.execute(
                select(
                    Alert.id,
                    Alert.kind,
                    Alert.story_id,
                    Alert.cluster_id,
                    Alert.watchlist,
                    Alert.target,
                    Alert.attempts,
                    Alert.fold,
                    Alert.created_at,
                    Alert.payload,
                    Alert.claim_version,
                    Story.title,
                    Story.link,
                    Story.summary,
                    Story.published_at,
                    func.coalesce(Story.language, story_feed.c.language).label("language"),
                    story_feed.c.name.label("source"),
                    Feed.name.label("health_feed"),
                    Feed.fetch_url.label("health_url"),
                    Match.terms,
                    Match.hits,
                )
                .outerjoin(Story, Story.id == Alert.story_id)
                .outerjoin(story_feed, story_feed.c.id == Story.feed_id)
                .outerjoin(Feed, Feed.id == Alert.feed_id)
                .outerjoin(Match, and_(Match.story_id == Alert.story_id, Match.watchlist == Alert.watchlist))
                .where(Alert.id.in_(ids))
                .order_by(Alert.id)
            ).all()
            others = story_sources(conn, {r.story_id for r in rows if r.story_id is not None})
        return [_claimed(r, others) for r in rows]

    def confirm(self, alerts: Sequence[ClaimedAlert], *, worker: str, lease: float) -> set[int]:
        """Just before a send: the ids of *alerts* this worker still holds (same claim),
        their leases renewed for the send. A row missing from the answer was taken over:
        it must not be sent."""
        if not alerts:
            return set()
        with self.transaction() as conn:
            now = self.db_now(conn)
            held = _holding(alerts, worker)
            found = {i for (i,) in conn.execute(select(Alert.id).where(held))}
            if found:
                conn.execute(
                    update(Alert).where(Alert.id.in_(found)).values(lease_until=now + dt.timedelta(seconds=lease))
                )
        self.count("leases_lost", len(alerts) - len(found))
        return found

    def mark_sent(
        self,
        alerts: Sequence[ClaimedAlert],
        *,
        worker: str,
        now: dt.datetime | None = None,
        delivery: tuple[str, str, str] | None = None,
    ) -> int:
        """Mark delivered; only rows this worker still holds under the same claim.

        ``delivery`` = (target, kind, title) is logged in the same transaction: the
        rate limit counts those rows, so a message is counted exactly when it is marked.
        Rows whose claim was lost meanwhile (another worker may have sent them too) are
        counted as possible duplicates, in the delivery log and the worker's counters.
        Returns the rows marked."""
        with self.transaction() as conn:
            now = now or self.db_now(conn)
            res = conn.execute(
                update(Alert)
                .where(_holding(alerts, worker))
                .values(status="sent", sent_at=now, lease_until=None, last_error=None)
            )
            count = int(res.rowcount or 0)
            duplicates = len(alerts) - count
            if delivery is not None:
                target, kind, title = delivery
                conn.execute(
                    insert(Delivery).values(
                        target=target,
                        sent_at=now,
                        kind=kind,
                        alerts=count,
                        title=title[:500],
                        duplicates=duplicates,
                        worker=worker,
                    )
                )
        self.count("duplicates", duplicates)
        self.count("leases_lost", duplicates)
        return count

    def mark_failed(
        self,
        alerts: Sequence[ClaimedAlert],
        *,
        worker: str,
        error: str,
        next_attempt_at: dt.datetime,
        give_up: bool,
    ) -> int:
        with self.transaction() as conn:
            res = conn.execute(
                update(Alert)
                .where(_holding(alerts, worker))
                .values(
                    status="failed" if give_up else "pending",
                    next_attempt_at=next_attempt_at,
                    lease_until=None,
                    last_error=error[:2000],
                )
            )
            return int(res.rowcount or 0)

    def defer(self, alerts: Sequence[ClaimedAlert], *, worker: str, until: dt.datetime, fold: bool) -> int:
        """Hold claimed rows until ``until`` (digest time, end of quiet hours, rate window).

        Not a failed attempt: the claim's ``attempts`` bump is taken back.
        """
        with self.transaction() as conn:
            res = conn.execute(
                update(Alert)
                .where(_holding(alerts, worker))
                .values(
                    status="pending",
                    next_attempt_at=until,
                    lease_until=None,
                    fold=fold,
                    attempts=Alert.attempts - 1,
                )
            )
            return int(res.rowcount or 0)

    def release_alerts(
        self,
        *,
        worker: str,
        alerts: Sequence[ClaimedAlert] | None = None,
        retry_at: dt.datetime | None = None,
        keep: Collection[int] = (),
    ) -> int:
        """Give back claimed rows that were not sent: *alerts* (those still held under
        their claims) or everything *worker* holds. Without *retry_at* they were not
        tried (the claim's attempt is taken back) and are due at once; with it (a round
        that failed), the attempt counts and they wait until then. Rows in *keep* stay
        claimed."""
        held = (
            _holding(alerts, worker)
            if alerts is not None
            else and_(Alert.status == "sending", Alert.claimed_by == worker)
        )
        if keep:
            held = and_(held, Alert.id.not_in(list(keep)))
        values: dict[str, Any] = {"status": "pending", "claimed_by": None, "lease_until": None}
        if retry_at is None:
            values["attempts"] = Alert.attempts - 1
        else:
            values["next_attempt_at"] = retry_at
        with self.transaction() as conn:
            return int(conn.execute(update(Alert).where(held).values(**values)).rowcount or 0)

    def sent_times(self, target: str, since: dt.datetime) -> list[dt.datetime]:
        """When messages were sent to ``target`` since ``since`` (for its rate limit)."""
        with self.transaction() as conn:
            stmt = select(Delivery.sent_at).where(Delivery.target == target, Delivery.sent_at > since)
            return [t for (t,) in conn.execute(stmt)]

    def queue_health_alerts(
        self, *, targets: Sequence[str], after: float, now: dt.datetime | None = None
    ) -> list[tuple[str, str]]:
        """Queue one alert per feed that has failed for longer than ``after`` seconds,
        and one when such a feed recovers. Returns [(feed name, "down" | "up")].

        The feed's ``health_alerted_at`` flips in the same transaction as the outbox
        rows are written, so each transition is alerted exactly once, even with
        several daemons or a crash in between.
        """
        now = now or utcnow()
        cutoff = now - dt.timedelta(seconds=after)
        out: list[tuple[str, str]] = []
        with self.transaction() as conn:
            down = conn.execute(
                self.locking(
                    select(Feed.id, Feed.name, Feed.failing_since, Feed.last_error, Feed.last_error_reason).where(
                        Feed.enabled.is_(True),
                        Feed.health_alerted_at.is_(None),
                        Feed.failing_since.is_not(None),
                        Feed.failing_since <= cutoff,
                    )
                )
            ).all()
            up = conn.execute(
                self.locking(
                    select(Feed.id, Feed.name, Feed.health_alerted_at, Feed.last_success_at).where(
                        Feed.health_alerted_at.is_not(None), Feed.failing_since.is_(None)
                    )
                )
            ).all()
            for r in down:
                conn.execute(update(Feed).where(Feed.id == r.id).values(health_alerted_at=now))
                payload = {
                    "since": r.failing_since.isoformat(timespec="seconds"),
                    "reason": r.last_error_reason,
                    "error": (r.last_error or "")[:500],
                }
                self._queue_health(conn, r.id, "feed_down", payload, targets, now)
                out.append((r.name, "down"))
            for r in up:
                conn.execute(update(Feed).where(Feed.id == r.id).values(health_alerted_at=None))
                payload = {"since": r.health_alerted_at.isoformat(timespec="seconds")}
                self._queue_health(conn, r.id, "feed_up", payload, targets, now)
                out.append((r.name, "up"))
        return out

    @staticmethod
    def _queue_health(
        conn: Connection,
        feed_id: int,
        kind: str,
        payload: dict[str, Any],
        targets: Sequence[str],
        now: dt.datetime,
    ) -> None:
        for target in targets:
            values = alert_columns(OutboxRow(HEALTH_WATCHLIST, target, now))
            conn.execute(insert(Alert).values(kind=kind, feed_id=feed_id, payload=payload, **values))

    def alert_counts(self) -> dict[str, int]:
        """Outbox rows by status (pending, sending, sent, failed)."""
        with self.transaction() as conn:
            return {s: int(n) for s, n in conn.execute(select(Alert.status, func.count()).group_by(Alert.status))}
