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
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from sqlalchemy import (
    Connection,
    Engine,
    Table,
    and_,
    bindparam,
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

from monitor.delivery.routing import HEALTH_WATCHLIST, ClaimedAlert
from monitor.errors import StoreError
from monitor.ingest.schedule import FeedSnapshot
from monitor.storage.schema import Alert, Base, Delivery, Feed, Match, Story, StoryFeed

if TYPE_CHECKING:
    from monitor.ingest.entries import Entry
    from monitor.matching.matcher import MatchResult

log = logging.getLogger("monitor.store")

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
            # Pooled connections: opening one per transaction costs a WAL checkpoint (~10 ms).
            engine = create_engine(url, connect_args={"timeout": 30})
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


_REVISION_RE = re.compile(r"^(down_revision|revision)\b[^=]*=\s*['\"]?([^'\"\s#]*)['\"]?", re.MULTILINE)


def head_revisions() -> set[str]:
    """The newest migration id(s), read from the migration files without Alembic.

    Importing Alembic costs ~11 MB and a third of a second; a daemon or CLI command
    that finds its database already current never needs it.
    """
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("[0-9]*.py"):
        for kind, value in _REVISION_RE.findall(path.read_text(encoding="utf-8")):
            if kind == "revision":
                revisions.add(value)
            elif value and value != "None":
                parents.add(value)
    return revisions - parents


def is_current(engine: Engine) -> bool:
    """True when the database's Alembic version is the newest migration."""
    try:
        with engine.connect() as conn:
            found = {r[0] for r in conn.execute(text("SELECT version_num FROM alembic_version"))}
    except SQLAlchemyError:  # no table yet: a new database
        return False
    return found == head_revisions()


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema with Alembic (idempotent; safe with several daemons)."""
    if is_current(engine):
        return
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two daemons starting together must not both create tables.
            conn.execute(text("SELECT pg_advisory_xact_lock(7361280415)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")


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
class RecordItem:
    """One feed's share of :meth:`Store.record_many` (the arguments of ``record_entries``)."""

    feed: FeedSnapshot
    entries: Sequence[Entry]
    matches: Mapping[int, Sequence[MatchResult]]
    alert: bool
    feed_changes: Mapping[str, Any]


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


#: The columns of a StoredStory, in its field order (stories join their first feed for its name).
STORED_STORY_COLUMNS = (
    Story.id,
    Feed.name,
    Story.title,
    Story.summary,
    Story.link,
    Story.published_at,
    Story.first_seen_at,
)


def stored_story_select() -> Any:
    """SELECT of StoredStory rows, to which callers add their WHERE and ORDER BY."""
    return select(*STORED_STORY_COLUMNS).join(Feed, Feed.id == Story.feed_id)


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
        return self.unseen_many([(feed_id, entries)])[0]

    def unseen_many(self, batches: Sequence[tuple[int, Sequence[Entry]]]) -> list[list[Entry]]:
        """:meth:`unseen` for several feeds at once, in one transaction with a handful of
        statements (the per-feed version cost a transaction and three statements per
        feed, most of a 1,000-feed cycle's database time)."""
        idents = [{story_ident(feed_id, e): e for e in entries} for feed_id, entries in batches]
        everything = list({ident for per_feed in idents for ident in per_feed})
        if not everything:
            return [[] for _ in batches]
        with self._tx() as conn:
            known: dict[str, int] = {}
            for chunk in _chunks(everything, 500):
                for ident, sid in conn.execute(select(Story.ident, Story.id).where(Story.ident.in_(chunk))):
                    known[ident] = sid
            known_guids: set[tuple[int, str]] = set()
            for feed_id, entries in batches:
                guid_keys = list({e.guid_key for e in entries if e.guid_key})
                for chunk in _chunks(guid_keys, 500):
                    stmt = select(Story.guid_key).where(Story.feed_id == feed_id, Story.guid_key.in_(chunk))
                    known_guids.update((feed_id, g) for (g,) in conn.execute(stmt) if g is not None)
            sightings = {
                (known[ident], feed_id)
                for (feed_id, _), per_feed in zip(batches, idents, strict=True)
                for ident in per_feed
                if ident in known
            }
            self._sightings(conn, sightings, utcnow())
        out: list[list[Entry]] = []
        for (feed_id, _), per_feed in zip(batches, idents, strict=True):
            out.append(
                [
                    entry
                    for ident, entry in per_feed.items()
                    if ident not in known and not (entry.guid_key and (feed_id, entry.guid_key) in known_guids)
                ]
            )
        return out

    def _sightings(self, conn: Connection, pairs: Iterable[tuple[int, int]], now: dt.datetime) -> None:
        rows = [{"story_id": sid, "feed_id": fid, "first_seen_at": now} for sid, fid in sorted(pairs)]
        for chunk in _chunks(rows, 500):
            conn.execute(self._insert(StoryFeed.__table__).on_conflict_do_nothing(), chunk)

    def update_feeds(self, changes: Sequence[tuple[int, Mapping[str, Any]]]) -> None:
        """Apply several feeds' column changes in one transaction (see :meth:`update_feed`)."""
        with self._tx() as conn:
            self._update_feeds(conn, changes)

    @staticmethod
    def _update_feeds(conn: Connection, changes: Iterable[tuple[int, Mapping[str, Any]]]) -> None:
        """One executemany UPDATE per distinct set of changed columns."""
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for feed_id, values in changes:
            if values:
                keys = tuple(sorted(values))
                params = {f"v_{k}": values[k] for k in keys}
                params["b_id"] = feed_id
                groups.setdefault(keys, []).append(params)
        table = cast(Table, Feed.__table__)
        for keys, params_list in groups.items():
            stmt = (
                update(table)
                .where(table.c.id == bindparam("b_id"))
                .values({k: bindparam(f"v_{k}", type_=table.c[k].type) for k in keys})
            )
            conn.execute(stmt, params_list)

    def defer_feeds(self, feed_ids: Sequence[int], until: dt.datetime) -> int:
        """Move the next poll of these feeds to ``until`` at the earliest (a host asked us to
        wait with Retry-After: its other feeds wait too, also across restarts)."""
        if not feed_ids:
            return 0
        n = 0
        with self._tx() as conn:
            for chunk in _chunks(list(feed_ids), 500):
                res = conn.execute(
                    update(Feed).where(Feed.id.in_(chunk), Feed.next_poll_at < until).values(next_poll_at=until)
                )
                n += int(res.rowcount or 0)
        return n

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
        item = RecordItem(feed, entries, matches, alert=alert, feed_changes=feed_changes)
        return self.record_many([item], targets=targets, now=now)[0]

    def record_many(
        self,
        items: Sequence[RecordItem],
        *,
        targets: Mapping[str, Sequence[str]],
        now: dt.datetime | None = None,
    ) -> list[RecordReport]:
        """:meth:`record_entries` for several feeds, in ONE transaction.

        Each feed's stories, matches, outbox rows and new state commit together (so the
        per-story guarantee holds, and more); the statements are batched: one INSERT
        of all the stories (``ON CONFLICT DO NOTHING ... RETURNING id, ident``, so a story
        another daemon stored meanwhile is simply not new), one UPDATE for the clusters,
        one INSERT each for sightings, matches and outbox rows, one UPDATE per shape of
        feed changes. A story carried by two feeds of the batch is stored once, for the
        first; the second gets a sighting, as it would have a moment later.
        """
        now = now or utcnow()
        rows: list[dict[str, Any]] = []
        owner: dict[str, tuple[int, int]] = {}  # ident -> (item, entry index) that stores it
        carriers: set[tuple[str, int]] = set()  # (ident, feed id) of every carrying feed
        for k, item in enumerate(items):
            for i, e in enumerate(item.entries):
                ident = story_ident(item.feed.id, e)
                carriers.add((ident, item.feed.id))
                if ident in owner:
                    continue
                owner[ident] = (k, i)
                rows.append(
                    {
                        "ident": ident,
                        "feed_id": item.feed.id,
                        "guid": e.guid,
                        "guid_key": e.guid_key,
                        "link": e.link,
                        "link_key": e.link_key,
                        "title_key": e.title_key,
                        "title": e.title,
                        "summary": e.summary,
                        "language": e.language,
                        "author": e.author,
                        "published_at": e.published_at,
                        "date_from_feed": e.date_from_feed,
                        "first_seen_at": now,
                    }
                )
        new_ids: list[list[int]] = [[] for _ in items]
        n_matches = [0] * len(items)
        n_alerts = [0] * len(items)
        with self._tx() as conn:
            ids: dict[str, int] = {}
            story = cast(Table, Story.__table__)
            for chunk in _chunks(rows, 500):
                stmt = self._insert(story).on_conflict_do_nothing().returning(story.c.id, story.c.ident)
                ids.update((ident, sid) for sid, ident in conn.execute(stmt, chunk))
            stored = list(ids.values())
            for chunk in _chunks(stored, 500):
                conn.execute(update(story).where(story.c.id.in_(chunk)).values(cluster_id=story.c.id))
            # Stored meanwhile by another daemon: not new, but this feed carries it.
            elsewhere = {ident for ident in owner if ident not in ids}
            for chunk in _chunks(sorted(elsewhere), 500):
                ids.update((ident, sid) for ident, sid in conn.execute(
                    select(story.c.ident, story.c.id).where(story.c.ident.in_(chunk))
                ))
            self._sightings(conn, {(ids[ident], fid) for ident, fid in carriers if ident in ids}, now)
            match_rows: list[dict[str, Any]] = []
            alert_rows: list[dict[str, Any]] = []
            for ident, (k, i) in owner.items():
                if ident in elsewhere or ident not in ids:
                    continue
                sid = ids[ident]
                item = items[k]
                new_ids[k].append(sid)
                for m in item.matches.get(i, ()):
                    wl_targets = targets.get(m.watchlist, ())
                    match_rows.append(
                        {
                            "story_id": sid,
                            "watchlist": m.watchlist,
                            "terms": list(m.terms),
                            "hits": [[h.term, h.field, h.start, h.end, h.text] for h in m.hits],
                            "matched_at": now,
                            "alerted": item.alert and bool(wl_targets),
                        }
                    )
                    n_matches[k] += 1
                    if not item.alert:
                        continue
                    for target in wl_targets:
                        alert_rows.append(
                            {
                                "story_id": sid,
                                "cluster_id": sid,
                                "watchlist": m.watchlist,
                                "target": target,
                                "status": "pending",
                                "attempts": 0,
                                "created_at": now,
                                "next_attempt_at": now,
                            }
                        )
                        n_alerts[k] += 1
            for chunk in _chunks(match_rows, 500):
                conn.execute(self._insert(Match.__table__).on_conflict_do_nothing(), chunk)
            for chunk in _chunks(alert_rows, 500):
                conn.execute(self._insert(Alert.__table__).on_conflict_do_nothing(), chunk)
            self._update_feeds(conn, [(item.feed.id, item.feed_changes) for item in items])
        return [
            RecordReport(len(new_ids[k]), n_matches[k], n_alerts[k], tuple(new_ids[k])) for k in range(len(items))
        ]

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
            stmt = self._locking(select(Alert.id).where(due).order_by(Alert.id).limit(limit))
            ids = [r[0] for r in conn.execute(stmt)]
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
            story_feed = Feed.__table__.alias("story_feed")
            rows = conn.execute(
                select(
                    Alert.id, Alert.kind, Alert.story_id, Alert.cluster_id, Alert.watchlist, Alert.target,
                    Alert.attempts, Alert.fold, Alert.created_at, Alert.payload,
                    Story.title, Story.link, Story.summary, Story.published_at,
                    story_feed.c.name.label("source"), Feed.name.label("health_feed"),
                    Feed.fetch_url.label("health_url"), Match.terms, Match.hits,
                )
                .outerjoin(Story, Story.id == Alert.story_id)
                .outerjoin(story_feed, story_feed.c.id == Story.feed_id)
                .outerjoin(Feed, Feed.id == Alert.feed_id)
                .outerjoin(Match, and_(Match.story_id == Alert.story_id, Match.watchlist == Alert.watchlist))
                .where(Alert.id.in_(ids))
                .order_by(Alert.id)
            ).all()
            others = _story_sources(conn, {r.story_id for r in rows if r.story_id is not None})
        return [_claimed(r, others) for r in rows]

    def mark_sent(
        self,
        alert_ids: Sequence[int],
        *,
        worker: str,
        now: dt.datetime | None = None,
        delivery: tuple[str, str, str] | None = None,
    ) -> int:
        """Mark delivered; only rows this worker still holds (a lease lost to another is not ours).

        ``delivery`` = (target, kind, title) is logged in the same transaction: the
        rate limit counts those rows, so a message is counted exactly when it is marked.
        """
        now = now or utcnow()
        with self._tx() as conn:
            res = conn.execute(
                update(Alert)
                .where(Alert.id.in_(list(alert_ids)), Alert.status == "sending", Alert.claimed_by == worker)
                .values(status="sent", sent_at=now, lease_until=None, last_error=None)
            )
            count = int(res.rowcount or 0)
            if delivery is not None and count:
                target, kind, title = delivery
                conn.execute(
                    insert(Delivery).values(target=target, sent_at=now, kind=kind, alerts=count, title=title[:500])
                )
            return count

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

    def defer(self, alert_ids: Sequence[int], *, worker: str, until: dt.datetime, fold: bool) -> int:
        """Hold claimed rows until ``until`` (digest time, end of quiet hours, rate window).

        Not a failed attempt: the claim's ``attempts`` bump is taken back.
        """
        with self._tx() as conn:
            res = conn.execute(
                update(Alert)
                .where(Alert.id.in_(list(alert_ids)), Alert.status == "sending", Alert.claimed_by == worker)
                .values(
                    status="pending",
                    next_attempt_at=until,
                    lease_until=None,
                    fold=fold,
                    attempts=Alert.attempts - 1,
                )
            )
            return int(res.rowcount or 0)

    def sent_times(self, target: str, since: dt.datetime) -> list[dt.datetime]:
        """When messages were sent to ``target`` since ``since`` (for its rate limit)."""
        with self._tx() as conn:
            stmt = select(Delivery.sent_at).where(Delivery.target == target, Delivery.sent_at > since)
            return [t for (t,) in conn.execute(stmt)]

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

        with self._tx() as conn:
            feed_owners = {w for (w,) in conn.execute(select(Feed.claimed_by).where(Feed.claimed_by.is_not(None)))}
            alert_owners = {
                w for (w,) in conn.execute(select(Alert.claimed_by).where(Alert.status == "sending").distinct())
            }
            dead_feeds = [w for w in feed_owners if dead(w)]
            dead_alerts = [w for w in alert_owners if dead(w)]
            n_feeds = n_alerts = 0
            if dead_feeds:
                res = conn.execute(
                    update(Feed)
                    .where(Feed.claimed_by.in_(dead_feeds))
                    .values(claimed_by=None, claim_until=None)
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
        with self._tx() as conn:
            down = conn.execute(
                self._locking(
                    select(
                        Feed.id, Feed.name, Feed.failing_since, Feed.last_error, Feed.last_error_reason
                    ).where(
                        Feed.enabled.is_(True),
                        Feed.health_alerted_at.is_(None),
                        Feed.failing_since.is_not(None),
                        Feed.failing_since <= cutoff,
                    )
                )
            ).all()
            up = conn.execute(
                self._locking(
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

    def _queue_health(
        self,
        conn: Connection,
        feed_id: int,
        kind: str,
        payload: dict[str, Any],
        targets: Sequence[str],
        now: dt.datetime,
    ) -> None:
        for target in targets:
            conn.execute(
                insert(Alert).values(
                    kind=kind, feed_id=feed_id, payload=payload, watchlist=HEALTH_WATCHLIST, target=target,
                    status="pending", attempts=0, fold=False, created_at=now, next_attempt_at=now,
                )
            )

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

    # --- reads for the web page, search and backtest (issue 6) ------------------------------

    def feed_state_counts(self) -> dict[str, int]:
        """Enabled feeds by health state (new, ok, backoff, disabled), for /metrics."""
        with self._tx() as conn:
            stmt = select(Feed.state, func.count()).where(Feed.enabled.is_(True)).group_by(Feed.state)
            return {s: int(n) for s, n in conn.execute(stmt)}

    def stories_published_since(self, since: dt.datetime, *, limit: int | None = None) -> list[StoredStory]:
        """Stories published since ``since``, newest first (what a backtest or a backfill runs on)."""
        with self._tx() as conn:
            stmt = (
                stored_story_select()
                .where(Story.published_at >= since)
                .order_by(Story.published_at.desc(), Story.id.desc())
            )
            if limit:
                stmt = stmt.limit(limit)
            return [StoredStory(*row) for row in conn.execute(stmt)]

    def record_backfill(
        self,
        watchlist: str,
        results: Mapping[int, MatchResult],
        targets: Sequence[str],
        *,
        now: dt.datetime | None = None,
    ) -> tuple[int, int]:
        """Record matches of stored stories for a watchlist and queue their alerts (``--backfill``).

        ``results`` maps story ids to their match. Like :meth:`record_entries`, inserts
        are ``ON CONFLICT DO NOTHING``: a story already matched, or a cluster already
        alerted for this watchlist and target, stays as it is, so a backfill run twice
        (or over stories the daemon matched meanwhile) never alerts twice. Returns
        (new matches, new alerts). One transaction.
        """
        now = now or utcnow()
        n_matches = n_alerts = 0
        if not results:
            return 0, 0
        with self._tx() as conn:
            clusters: dict[int, int] = {}
            for chunk in _chunks(list(results), 500):
                for sid, cid in conn.execute(select(Story.id, Story.cluster_id).where(Story.id.in_(chunk))):
                    clusters[sid] = cid or sid
            for sid, m in results.items():
                if sid not in clusters:
                    continue  # deleted meanwhile
                res = conn.execute(
                    self._insert(Match.__table__)
                    .values(
                        story_id=sid,
                        watchlist=watchlist,
                        terms=list(m.terms),
                        hits=[[h.term, h.field, h.start, h.end, h.text] for h in m.hits],
                        matched_at=now,
                        alerted=bool(targets),
                    )
                    .on_conflict_do_nothing()
                    .returning(Match.__table__.c.id)
                )
                if res.scalar_one_or_none() is not None:
                    n_matches += 1
                elif targets:  # matched before without an alert (catch-up): it is alerted now
                    conn.execute(
                        update(Match)
                        .where(Match.story_id == sid, Match.watchlist == watchlist)
                        .values(alerted=True)
                    )
                for target in targets:
                    res = conn.execute(
                        self._insert(Alert.__table__)
                        .values(
                            story_id=sid,
                            cluster_id=clusters[sid],
                            watchlist=watchlist,
                            target=target,
                            status="pending",
                            attempts=0,
                            created_at=now,
                            next_attempt_at=now,
                        )
                        .on_conflict_do_nothing()
                        .returning(Alert.__table__.c.id)
                    )
                    if res.scalar_one_or_none() is not None:
                        n_alerts += 1
        return n_matches, n_alerts

    def matched_stories(
        self,
        *,
        watchlist: str | None = None,
        alerted_only: bool = False,
        since: dt.datetime | None = None,
        limit: int = 50,
    ) -> list[MatchedStory]:
        """Matches, newest first, with their story, terms, sources and deliveries (web page, feeds)."""
        with self._tx() as conn:
            stmt = (
                select(
                    Match.story_id,
                    Match.watchlist,
                    Match.terms,
                    Match.hits,
                    Match.matched_at,
                    Match.alerted,
                    Story.title,
                    Story.summary,
                    Story.link,
                    Story.published_at,
                    Feed.name,
                )
                .join(Story, Story.id == Match.story_id)
                .join(Feed, Feed.id == Story.feed_id)
                .order_by(Match.matched_at.desc(), Match.id.desc())
                .limit(limit)
            )
            if watchlist is not None:
                stmt = stmt.where(Match.watchlist == watchlist)
            if alerted_only:
                stmt = stmt.where(Match.alerted.is_(True))
            if since is not None:
                stmt = stmt.where(Match.matched_at >= since)
            rows = conn.execute(stmt).all()
            ids = list({r.story_id for r in rows})
            sources = _story_sources(conn, ids)
            deliveries: dict[tuple[int, str], list[tuple[str, str]]] = {}
            for chunk in _chunks(ids, 500):
                for alert_sid, wl, target, status in conn.execute(
                    select(Alert.story_id, Alert.watchlist, Alert.target, Alert.status)
                    .where(Alert.story_id.in_(chunk))
                    .order_by(Alert.target)
                ):
                    if alert_sid is not None:
                        deliveries.setdefault((alert_sid, wl), []).append((target, status))
        return [
            MatchedStory(
                story_id=r.story_id,
                watchlist=r.watchlist,
                title=r.title,
                summary=r.summary,
                link=r.link,
                published_at=r.published_at,
                matched_at=r.matched_at,
                source=r.name,
                terms=tuple(r.terms or ()),
                hits=tuple((h[0], h[1], int(h[2]), int(h[3]), h[4]) for h in (r.hits or ())),
                alerted=bool(r.alerted),
                also_reported_by=tuple(n for n in sources.get(r.story_id, ()) if n != r.name),
                deliveries=tuple(deliveries.get((r.story_id, r.watchlist), ())),
            )
            for r in rows
        ]

    def match_counts(self, since: dt.datetime) -> dict[str, int]:
        """Matches per watchlist since a time (the watchlists page)."""
        with self._tx() as conn:
            stmt = (
                select(Match.watchlist, func.count())
                .where(Match.matched_at >= since)
                .group_by(Match.watchlist)
            )
            return {w: int(n) for w, n in conn.execute(stmt)}

    def story_detail(self, story_id: int) -> StoryDetail | None:
        """One story with where it was seen, its cluster, its matches and its alerts."""
        story_cols = STORED_STORY_COLUMNS
        with self._tx() as conn:
            row = conn.execute(
                select(*story_cols, Story.guid, Story.language, Story.author, Story.cluster_id)
                .join(Feed, Feed.id == Story.feed_id)
                .where(Story.id == story_id)
            ).first()
            if row is None:
                return None
            cluster_id = row.cluster_id or row.id
            sightings = tuple(
                (name, seen)
                for name, seen in conn.execute(
                    select(Feed.name, StoryFeed.first_seen_at)
                    .join(Feed, Feed.id == StoryFeed.feed_id)
                    .where(StoryFeed.story_id == story_id)
                    .order_by(StoryFeed.first_seen_at, Feed.name)
                )
            )
            cluster = tuple(
                StoredStory(*r)
                for r in conn.execute(
                    select(*story_cols)
                    .join(Feed, Feed.id == Story.feed_id)
                    .where(Story.cluster_id == cluster_id, Story.id != story_id)
                    .order_by(Story.first_seen_at)
                )
            )
            matches = tuple(
                (r.watchlist, tuple(r.terms or ()), r.matched_at, bool(r.alerted))
                for r in conn.execute(
                    select(Match.watchlist, Match.terms, Match.matched_at, Match.alerted)
                    .where(Match.story_id == story_id)
                    .order_by(Match.watchlist)
                )
            )
            alerts = tuple(
                StoryAlert(r.watchlist, r.target, r.status, r.attempts, r.created_at, r.sent_at, r.last_error)
                for r in conn.execute(
                    select(
                        Alert.watchlist,
                        Alert.target,
                        Alert.status,
                        Alert.attempts,
                        Alert.created_at,
                        Alert.sent_at,
                        Alert.last_error,
                    )
                    .where(Alert.cluster_id == cluster_id)
                    .order_by(Alert.watchlist, Alert.target)
                )
            )
        return StoryDetail(
            story=StoredStory(*row[:7]),
            guid=row.guid,
            language=row.language,
            author=row.author,
            cluster_id=cluster_id,
            sightings=sightings,
            cluster=cluster,
            matches=matches,
            alerts=alerts,
        )


@dataclass(frozen=True, slots=True)
class MatchedStory:
    """A stored match with what the web page and the per-watchlist feeds show."""

    story_id: int
    watchlist: str
    title: str
    summary: str
    link: str | None
    published_at: dt.datetime
    matched_at: dt.datetime
    source: str
    terms: tuple[str, ...]
    hits: tuple[tuple[str, str, int, int, str], ...]  # term, field, start, end, text
    alerted: bool
    also_reported_by: tuple[str, ...]
    deliveries: tuple[tuple[str, str], ...]  # (target, outbox status)


@dataclass(frozen=True, slots=True)
class StoryAlert:
    watchlist: str
    target: str
    status: str
    attempts: int
    created_at: dt.datetime
    sent_at: dt.datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class StoryDetail:
    """``news-monitor stories show``: a story, where it was seen, its cluster, matches, alerts."""

    story: StoredStory
    guid: str | None
    language: str | None
    author: str | None
    cluster_id: int
    sightings: tuple[tuple[str, dt.datetime], ...]  # feed, first seen there
    cluster: tuple[StoredStory, ...]  # the other stories of its cluster
    matches: tuple[tuple[str, tuple[str, ...], dt.datetime, bool], ...]  # watchlist, terms, when, alerted
    alerts: tuple[StoryAlert, ...]


def _story_sources(conn: Connection, story_ids: Iterable[int]) -> dict[int, list[str]]:
    """Every feed that carried each story, first sighting first ("also reported by")."""
    sources: dict[int, list[str]] = {}
    for chunk in _chunks(list(story_ids), 500):
        for sid, name in conn.execute(
            select(StoryFeed.story_id, Feed.name)
            .join(Feed, Feed.id == StoryFeed.feed_id)
            .where(StoryFeed.story_id.in_(chunk))
            .order_by(StoryFeed.first_seen_at, Feed.name)
        ):
            sources.setdefault(sid, []).append(name)
    return sources


def _claimed(r: Any, others: Mapping[int, list[str]]) -> ClaimedAlert:
    """A claimed row as the planner and renderer see it (story and health alerts alike)."""
    if r.kind == "story":
        return ClaimedAlert(
            id=r.id, kind="story", story_id=r.story_id, cluster_id=r.cluster_id, watchlist=r.watchlist,
            target=r.target, attempts=r.attempts, fold=bool(r.fold), created_at=r.created_at, title=r.title,
            link=r.link, summary=r.summary, published_at=r.published_at, source=r.source,
            terms=tuple(r.terms or ()),
            hits=tuple((h[0], h[1], int(h[2]), int(h[3]), h[4]) for h in (r.hits or ())),
            also_reported_by=tuple(n for n in others.get(r.story_id, ()) if n != r.source),
        )
    payload = r.payload or {}
    if r.kind == "feed_down":
        title = f"Feed {r.health_feed!r} has been failing since {payload.get('since', '?')}"
        summary = f"Last error ({payload.get('reason') or 'unknown'}): {payload.get('error') or '-'}"
    else:
        title = f"Feed {r.health_feed!r} has recovered"
        summary = f"It had been reported failing at {payload.get('since', '?')}; polling works again."
    return ClaimedAlert(
        id=r.id, kind=r.kind, story_id=None, cluster_id=None, watchlist=r.watchlist, target=r.target,
        attempts=r.attempts, fold=bool(r.fold), created_at=r.created_at, title=title, link=r.health_url,
        summary=summary, published_at=r.created_at, source=r.health_feed or "?",
    )


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
    "RecordItem",
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
