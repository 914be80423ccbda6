"""The store: SQLAlchemy 2.x over SQLite (default) or PostgreSQL (several daemons).

Thin by design: every method is one transaction that reads or writes rows; the policy
(what to write) lives in the pure modules. Guarantees the rest of the code relies on:

- A story, its matches and its outbox rows are written in ONE transaction
  (:meth:`Store.record_entries`), so after a crash either all of them exist or none.
- Inserts are idempotent (``ON CONFLICT DO NOTHING`` on unique keys, in both dialects):
  two daemons, or a retry after a crash, never create a second story or alert.
- Feeds and alerts are *claimed* with a lease before work starts, selected with
  ``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite serialises writers instead
  (WAL, ``BEGIN IMMEDIATE``, a busy timeout), so a read never has to be upgraded to a
  write lock mid-transaction (which fails at once with "database is locked").

Library errors become :class:`~monitor.errors.StoreError` with a message naming the
database without its password.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from .errors import StoreError
from .feedstate import FeedSnapshot
from .schema import Alert, Base, Feed, Match, Story, StoryFeed

if TYPE_CHECKING:
    from .entries import Entry
    from .matcher import MatchResult

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- engine ------------------------------------------------------------------------------


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as psycopg 3 (the driver we ship)."""
    try:
        u = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"invalid database URL: {exc}") from None
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def safe_url(url: str) -> str:
    """The database URL with its password masked, for logs and errors."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


def make_engine(url: str, *, schema: str | None = None) -> Engine:
    """An engine with the pragmas and transaction behaviour the store relies on.

    ``schema`` (PostgreSQL only) sets the search_path: tests use one schema each.
    """
    url = normalise_url(url)
    u = make_url(url)
    try:
        if u.get_backend_name() == "sqlite":
            if u.database and u.database != ":memory:":
                Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(url, poolclass=NullPool, connect_args={"timeout": 30})
            _sqlite_events(engine)
        else:
            connect_args: dict[str, Any] = {"connect_timeout": 10}
            if schema:
                connect_args["options"] = f"-csearch_path={schema}"
            engine = create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    except (ArgumentError, SQLAlchemyError, ImportError) as exc:
        raise StoreError(f"cannot open database {safe_url(url)}: {exc}") from None
    return engine


def _sqlite_events(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE instead of pysqlite's BEGIN.
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema with Alembic (idempotent; safe with several daemons)."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two daemons starting together must not both create tables.
            conn.execute(text("SELECT pg_advisory_xact_lock(7361280415)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


# --- data handed out ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SyncReport:
    added: tuple[str, ...]
    updated: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RecordReport:
    new_stories: int
    matches: int
    alerts: int
    new_story_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ClaimedAlert:
    """One claimed outbox row with what is needed to render it."""

    id: int
    story_id: int
    cluster_id: int
    watchlist: str
    target: str
    attempts: int
    created_at: dt.datetime
    title: str
    link: str | None
    summary: str
    published_at: dt.datetime
    source: str
    terms: tuple[str, ...]
    hits: tuple[tuple[str, str, int, int, str], ...]
    also_reported_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoredStory:
    id: int
    feed: str
    title: str
    summary: str
    link: str | None
    published_at: dt.datetime
    first_seen_at: dt.datetime


@dataclass(frozen=True, slots=True)
class FeedConfigRow:
    """What the store needs of a configured feed (kept free of pydantic on purpose)."""

    name: str
    url: str
    interval_s: float
    language: str | None
    enabled: bool = True


def story_ident(feed_id: int, entry: Entry) -> str:
    """Global identity of a story; see schema.Story.ident."""
    if entry.link_key:
        return f"l:{entry.link_key}"
    if entry.guid_key:
        return f"g:{feed_id}:{entry.guid_key}"
    return f"t:{feed_id}:{entry.story_key}"


_SNAPSHOT_FIELDS = tuple(f.name for f in fields(FeedSnapshot))


def _snapshot(row: Any) -> FeedSnapshot:
    return FeedSnapshot(**{name: getattr(row, name) for name in _SNAPSHOT_FIELDS})


class Store:
    """All database access of news-monitor."""

    def __init__(self, url: str, *, schema: str | None = None, create: bool = True) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, schema=schema)
        self.dialect = self.engine.dialect.name
        self._lock = threading.Lock()
        if create:
            try:
                migrate(self.engine)
            except SQLAlchemyError as exc:
                raise StoreError(f"cannot prepare database {safe_url(self.url)}: {_reason(exc)}") from None

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"database {safe_url(self.url)}: {_reason(exc)}") from exc

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def _locking(self, stmt: Any) -> Any:
        return stmt.with_for_update(skip_locked=True) if self.dialect == "postgresql" else stmt

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    # --- feeds ---------------------------------------------------------------------------

    def sync_feeds(self, feeds: Sequence[FeedConfigRow], *, now: dt.datetime | None = None) -> SyncReport:
        """Make the feeds table follow the config: add, update, disable what was removed.

        A feed whose URL changed starts afresh (validators, redirect and 410 state reset)
        but keeps its stories; a removed feed is disabled, not deleted, so its history
        and dedupe keys survive a config mistake.
        """
        now = now or utcnow()
        added: list[str] = []
        updated: list[str] = []
        removed: list[str] = []
        wanted = {f.name: f for f in feeds}
        with self._tx() as conn:
            rows = {r.name: r for r in conn.execute(select(Feed.__table__))}
            for name, cfg in wanted.items():
                row = rows.get(name)
                if row is None:
                    conn.execute(
                        insert(Feed).values(
                            name=name,
                            url=cfg.url,
                            fetch_url=cfg.url,
                            language=cfg.language,
                            interval_s=cfg.interval_s,
                            enabled=cfg.enabled,
                            state="new",
                            redirect_seen=0,
                            initialized=False,
                            created_at=now,
                            consecutive_failures=0,
                            total_polls=0,
                            total_failures=0,
                            entries_seen=0,
                            next_poll_at=now,
                        )
                    )
                    added.append(name)
                    continue
                changes: dict[str, Any] = {}
                if row.url != cfg.url:
                    changes.update(
                        url=cfg.url,
                        fetch_url=cfg.url,
                        etag=None,
                        last_modified=None,
                        body_hash=None,
                        redirect_to=None,
                        redirect_seen=0,
                        next_poll_at=now,
                        consecutive_failures=0,
                        failing_since=None,
                    )
                    if row.state == "disabled":
                        changes["state"] = "backoff" if row.initialized else "new"
                if row.interval_s != cfg.interval_s:
                    changes["interval_s"] = cfg.interval_s
                    if row.next_poll_at > now + dt.timedelta(seconds=cfg.interval_s):
                        changes["next_poll_at"] = now
                if row.language != cfg.language:
                    changes["language"] = cfg.language
                if row.enabled != cfg.enabled:
                    changes["enabled"] = cfg.enabled
                if changes:
                    conn.execute(update(Feed).where(Feed.id == row.id).values(**changes))
                    updated.append(name)
            for name, row in rows.items():
                if name not in wanted and row.enabled:
                    conn.execute(update(Feed).where(Feed.id == row.id).values(enabled=False))
                    removed.append(name)
        return SyncReport(tuple(added), tuple(updated), tuple(removed))

    def claim_due_feeds(
        self,
        *,
        worker: str,
        lease: float,
        limit: int = 10_000,
        now: dt.datetime | None = None,
        force: bool = False,
        names: Sequence[str] | None = None,
    ) -> list[FeedSnapshot]:
        """Claim enabled feeds whose next poll is due (all of them with ``force``).

        The claim is a lease: a daemon that dies mid-poll leaves ``claim_until`` in the
        past soon, and another (or the restarted) daemon takes the feed again.
        """
        now = now or utcnow()
        with self._tx() as conn:
            cond = [
                Feed.enabled.is_(True),
                Feed.state != "disabled",
                or_(Feed.claim_until.is_(None), Feed.claim_until < now),
            ]
            if not force:
                cond.append(Feed.next_poll_at <= now)
            if names is not None:
                cond.append(Feed.name.in_(list(names)))
            stmt = self._locking(select(Feed.id).where(and_(*cond)).order_by(Feed.next_poll_at).limit(limit))
            ids = [r[0] for r in conn.execute(stmt)]
            if not ids:
                return []
            until = now + dt.timedelta(seconds=lease)
            for chunk in _chunks(ids, 500):
                conn.execute(
                    update(Feed).where(Feed.id.in_(chunk)).values(claimed_by=worker, claim_until=until)
                )
            rows = [
                r
                for chunk in _chunks(ids, 500)
                for r in conn.execute(select(Feed.__table__).where(Feed.id.in_(chunk)))
            ]
            snaps = [_snapshot(r) for r in rows]
        snaps.sort(key=lambda s: s.next_poll_at)
        return snaps

    def release_feeds(self, feed_ids: Sequence[int]) -> None:
        """Give back claims not worked on (shutdown in the middle of a cycle)."""
        if not feed_ids:
            return
        with self._tx() as conn:
            for chunk in _chunks(list(feed_ids), 500):
                conn.execute(update(Feed).where(Feed.id.in_(chunk)).values(claimed_by=None, claim_until=None))

    def update_feed(self, feed_id: int, changes: Mapping[str, Any]) -> None:
        with self._tx() as conn:
            conn.execute(update(Feed).where(Feed.id == feed_id).values(**changes))

    def feeds(self, *, include_removed: bool = False) -> list[FeedSnapshot]:
        with self._tx() as conn:
            stmt = select(Feed.__table__).order_by(Feed.name)
            if not include_removed:
                stmt = stmt.where(Feed.enabled.is_(True))
            return [_snapshot(r) for r in conn.execute(stmt)]

    def next_due(self) -> dt.datetime | None:
        with self._tx() as conn:
            return conn.execute(
                select(func.min(Feed.next_poll_at)).where(Feed.enabled.is_(True), Feed.state != "disabled")
            ).scalar_one_or_none()

    # --- stories, matches, outbox ---------------------------------------------------------

    def unseen(self, feed_id: int, entries: Sequence[Entry]) -> list[Entry]:
        """Entries not stored yet (by identity, or by this feed's GUID), first of each kept.

        Also records sightings of already-stored stories newly carried by this feed, so
        "also reported by" stays right without re-alerting anything.
        """
        if not entries:
            return []
        idents = {story_ident(feed_id, e): e for e in entries}
        guid_keys = {e.guid_key for e in entries if e.guid_key}
        with self._tx() as conn:
            known: dict[str, int] = {}
            for chunk in _chunks(list(idents), 500):
                for ident, sid in conn.execute(select(Story.ident, Story.id).where(Story.ident.in_(chunk))):
                    known[ident] = sid
            known_guids: set[str] = set()
            for chunk in _chunks(list(guid_keys), 500):
                stmt = select(Story.guid_key).where(Story.feed_id == feed_id, Story.guid_key.in_(chunk))
                known_guids.update(g for (g,) in conn.execute(stmt) if g is not None)
            if known:
                conn.execute(
                    self._insert(StoryFeed.__table__)
                    .values(
                        [
                            {"story_id": sid, "feed_id": feed_id, "first_seen_at": utcnow()}
                            for sid in known.values()
                        ]
                    )
                    .on_conflict_do_nothing()
                )
        out: list[Entry] = []
        for ident, entry in idents.items():
            if ident in known or (entry.guid_key and entry.guid_key in known_guids):
                continue
            out.append(entry)
        return out

    def record_entries(
        self,
        feed: FeedSnapshot,
        entries: Sequence[Entry],
        matches: Mapping[int, Sequence[MatchResult]],
        *,
        targets: Mapping[str, Sequence[str]],
        alert: bool,
        feed_changes: Mapping[str, Any],
        now: dt.datetime | None = None,
    ) -> RecordReport:
        """Store new stories with their matches and outbox rows, and the feed's new state.

        ``matches`` maps an index into ``entries`` to its match results; ``targets`` maps
        a watchlist to the targets it notifies. With ``alert=False`` (a new feed's first
        poll, or ``catchup``) matches are recorded but no outbox row is created. One
        transaction: a crash leaves all or nothing.
        """
        now = now or utcnow()
        new_ids: list[int] = []
        n_matches = n_alerts = 0
        with self._tx() as conn:
            for i, e in enumerate(entries):
                stmt = (
                    self._insert(Story.__table__)
                    .values(
                        ident=story_ident(feed.id, e),
                        feed_id=feed.id,
                        guid=e.guid,
                        guid_key=e.guid_key,
                        link=e.link,
                        link_key=e.link_key,
                        title_key=e.title_key,
                        title=e.title,
                        summary=e.summary,
                        language=e.language,
                        author=e.author,
                        published_at=e.published_at,
                        date_from_feed=e.date_from_feed,
                        first_seen_at=now,
                    )
                    .on_conflict_do_nothing()
                    .returning(Story.__table__.c.id)
                )
                sid = conn.execute(stmt).scalar_one_or_none()
                if sid is None:  # another daemon stored it a moment ago
                    continue
                new_ids.append(sid)
                conn.execute(update(Story).where(Story.id == sid).values(cluster_id=sid))
                conn.execute(
                    self._insert(StoryFeed.__table__)
                    .values(story_id=sid, feed_id=feed.id, first_seen_at=now)
                    .on_conflict_do_nothing()
                )
                for m in matches.get(i, ()):
                    wl_targets = targets.get(m.watchlist, ())
                    conn.execute(
                        self._insert(Match.__table__)
                        .values(
                            story_id=sid,
                            watchlist=m.watchlist,
                            terms=list(m.terms),
                            hits=[[h.term, h.field, h.start, h.end, h.text] for h in m.hits],
                            matched_at=now,
                            alerted=alert and bool(wl_targets),
                        )
                        .on_conflict_do_nothing()
                    )
                    n_matches += 1
                    if not alert:
                        continue
                    for target in wl_targets:
                        conn.execute(
                            self._insert(Alert.__table__)
                            .values(
                                story_id=sid,
                                cluster_id=sid,
                                watchlist=m.watchlist,
                                target=target,
                                status="pending",
                                attempts=0,
                                created_at=now,
                                next_attempt_at=now,
                            )
                            .on_conflict_do_nothing()
                        )
                        n_alerts += 1
            if feed_changes:
                conn.execute(update(Feed).where(Feed.id == feed.id).values(**feed_changes))
        return RecordReport(len(new_ids), n_matches, n_alerts, tuple(new_ids))

    def stories_since(self, since: dt.datetime, *, limit: int | None = None) -> list[StoredStory]:
        with self._tx() as conn:
            stmt = (
                select(
                    Story.id,
                    Feed.name,
                    Story.title,
                    Story.summary,
                    Story.link,
                    Story.published_at,
                    Story.first_seen_at,
                )
                .join(Feed, Feed.id == Story.feed_id)
                .where(Story.first_seen_at >= since)
                .order_by(Story.first_seen_at.desc(), Story.id.desc())
            )
            if limit:
                stmt = stmt.limit(limit)
            return [StoredStory(*row) for row in conn.execute(stmt)]

    def claim_alerts(
        self, *, worker: str, lease: float, limit: int = 100, now: dt.datetime | None = None
    ) -> list[ClaimedAlert]:
        """Claim due outbox rows (pending and due, or sending with an expired lease).

        Claiming bumps ``attempts`` first, so a row that kills the sender every time
        still reaches its give-up age instead of looping for ever.
        """
        now = now or utcnow()
        with self._tx() as conn:
            due = or_(
                and_(Alert.status == "pending", Alert.next_attempt_at <= now),
                and_(Alert.status == "sending", Alert.lease_until < now),
            )
            ids = [
                r[0]
                for r in conn.execute(
                    self._locking(select(Alert.id).where(due).order_by(Alert.id).limit(limit))
                )
            ]
            if not ids:
                return []
            conn.execute(
                update(Alert)
                .where(Alert.id.in_(ids))
                .values(
                    status="sending",
                    claimed_by=worker,
                    lease_until=now + dt.timedelta(seconds=lease),
                    attempts=Alert.attempts + 1,
                )
            )
            rows = conn.execute(
                select(
                    Alert.id,
                    Alert.story_id,
                    Alert.cluster_id,
                    Alert.watchlist,
                    Alert.target,
                    Alert.attempts,
                    Alert.created_at,
                    Story.title,
                    Story.link,
                    Story.summary,
                    Story.published_at,
                    Feed.name,
                    Match.terms,
                    Match.hits,
                )
                .join(Story, Story.id == Alert.story_id)
                .join(Feed, Feed.id == Story.feed_id)
                .outerjoin(Match, and_(Match.story_id == Alert.story_id, Match.watchlist == Alert.watchlist))
                .where(Alert.id.in_(ids))
                .order_by(Alert.id)
            ).all()
            story_ids = {r.story_id for r in rows}
            others: dict[int, list[str]] = {}
            for sid, name in conn.execute(
                select(StoryFeed.story_id, Feed.name)
                .join(Feed, Feed.id == StoryFeed.feed_id)
                .where(StoryFeed.story_id.in_(story_ids))
                .order_by(StoryFeed.first_seen_at, Feed.name)
            ):
                others.setdefault(sid, []).append(name)
        out = []
        for r in rows:
            out.append(
                ClaimedAlert(
                    id=r.id,
                    story_id=r.story_id,
                    cluster_id=r.cluster_id,
                    watchlist=r.watchlist,
                    target=r.target,
                    attempts=r.attempts,
                    created_at=r.created_at,
                    title=r.title,
                    link=r.link,
                    summary=r.summary,
                    published_at=r.published_at,
                    source=r.name,
                    terms=tuple(r.terms or ()),
                    hits=tuple((h[0], h[1], int(h[2]), int(h[3]), h[4]) for h in (r.hits or ())),
                    also_reported_by=tuple(n for n in others.get(r.story_id, ()) if n != r.name),
                )
            )
        return out

    def mark_sent(self, alert_ids: Sequence[int], *, worker: str, now: dt.datetime | None = None) -> int:
        """Mark delivered; only rows this worker still holds (a lease lost to another is not ours)."""
        now = now or utcnow()
        with self._tx() as conn:
            res = conn.execute(
                update(Alert)
                .where(Alert.id.in_(list(alert_ids)), Alert.status == "sending", Alert.claimed_by == worker)
                .values(status="sent", sent_at=now, lease_until=None, last_error=None)
            )
            return int(res.rowcount or 0)

    def mark_failed(
        self,
        alert_ids: Sequence[int],
        *,
        worker: str,
        error: str,
        next_attempt_at: dt.datetime,
        give_up: bool,
    ) -> int:
        with self._tx() as conn:
            res = conn.execute(
                update(Alert)
                .where(Alert.id.in_(list(alert_ids)), Alert.status == "sending", Alert.claimed_by == worker)
                .values(
                    status="failed" if give_up else "pending",
                    next_attempt_at=next_attempt_at,
                    lease_until=None,
                    last_error=error[:2000],
                )
            )
            return int(res.rowcount or 0)

    def alert_counts(self) -> dict[str, int]:
        """Outbox rows by status (pending, sending, sent, failed)."""
        with self._tx() as conn:
            return {
                s: int(n) for s, n in conn.execute(select(Alert.status, func.count()).group_by(Alert.status))
            }

    def failed_alerts(self, limit: int = 20) -> list[tuple[int, str, str, str | None]]:
        with self._tx() as conn:
            return [
                (r.id, r.watchlist, r.target, r.last_error)
                for r in conn.execute(
                    select(Alert.id, Alert.watchlist, Alert.target, Alert.last_error)
                    .where(Alert.status == "failed")
                    .order_by(Alert.id.desc())
                    .limit(limit)
                )
            ]

    def counts(self) -> dict[str, int]:
        with self._tx() as conn:
            return {
                "stories": int(conn.execute(select(func.count()).select_from(Story)).scalar_one()),
                "matches": int(conn.execute(select(func.count()).select_from(Match)).scalar_one()),
                "alerts": int(conn.execute(select(func.count()).select_from(Alert)).scalar_one()),
            }


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own message, first line only (SQLAlchemy appends SQL and a URL)."""
    orig = getattr(exc, "orig", None)
    msg = str(orig if orig is not None else exc).strip().splitlines()
    return msg[0] if msg else type(exc).__name__


__all__ = [
    "Base",
    "ClaimedAlert",
    "FeedConfigRow",
    "RecordReport",
    "Store",
    "StoredStory",
    "SyncReport",
    "make_engine",
    "migrate",
    "normalise_url",
    "safe_url",
    "story_ident",
    "utcnow",
]
