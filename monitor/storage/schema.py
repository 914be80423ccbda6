"""The database schema (SQLAlchemy 2.x declarative), shared by the store and Alembic.

Tables, in the order data flows into them::

    feeds        one row per configured feed: HTTP validators, health, schedule, claim lease
    stories      one row per distinct story, deduped by canonical link (or GUID, or text)
    story_feeds  every feed a story was seen in ("also reported by ...")
    matches      story x watchlist, with the terms and positions that matched
    outbox       story-cluster x watchlist x target x kind: one alert to deliver, with its lease
    deliveries   messages sent per target (rate limits, history)
    pruned_stories  the dedupe keys of stories retention deleted

Designed for the roadmap now:

- *Clustering* of one event across outlets and languages: ``stories.cluster_id`` points
  at the first story of its event cluster (itself for the first), with the score and
  shared features that joined it, and the outbox is unique per
  ``(cluster_id, watchlist, target, kind)``, so a cluster is alerted once (``story``)
  and escalated at most once (``surge``, a watchlist's "now reported by N outlets").
- *Several daemons on one PostgreSQL*: feeds and outbox rows are claimed with a lease
  (``claimed_by``, ``claim_until`` / ``lease_until``) selected ``FOR UPDATE SKIP LOCKED``;
  a crashed daemon's claims simply expire.
- *Migrations*: the schema is created and upgraded by Alembic (``monitor/storage/migrations``);
  a test checks the migrations produce exactly these tables.

Times are stored as UTC; :class:`UTCDateTime` hands back aware datetimes on every backend.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on SQLite and PostgreSQL alike."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use aware UTC datetimes")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        when: dt.datetime = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
        if when.tzinfo is None:  # SQLite: stored as naive UTC
            return when.replace(tzinfo=dt.UTC)
        return when.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Feed(Base):
    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(Text)  # as configured
    fetch_url: Mapped[str] = mapped_column(Text)  # after adopted permanent redirects
    language: Mapped[str | None] = mapped_column(String(16))
    interval_s: Mapped[float] = mapped_column(Float)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)  # present and enabled in the config
    state: Mapped[str] = mapped_column(String(16), default="new")  # new|ok|backoff|disabled
    title: Mapped[str | None] = mapped_column(Text)
    # HTTP state for conditional GET and "200 but unchanged" detection
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    body_hash: Mapped[str | None] = mapped_column(String(64))
    redirect_to: Mapped[str | None] = mapped_column(Text)  # permanent redirect seen, not yet adopted
    redirect_seen: Mapped[int] = mapped_column(Integer, default=0)
    # first successful poll done (before it, entries are recorded without alerting)
    initialized: Mapped[bool] = mapped_column(Boolean, default=False)
    # health
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    last_poll_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_success_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_error_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_reason: Mapped[str | None] = mapped_column(String(32))
    failing_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    total_polls: Mapped[int] = mapped_column(Integer, default=0)
    total_failures: Mapped[int] = mapped_column(Integer, default=0)
    entries_seen: Mapped[int] = mapped_column(Integer, default=0)
    learned_interval_s: Mapped[float | None] = mapped_column(Float)
    health_alerted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # schedule and claim (several daemons share the table)
    next_poll_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    claim_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Bumped by every claim: with claimed_by, the fencing token a state write checks.
    claim_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    host: Mapped[str | None] = mapped_column(String(255), index=True)  # host:port of fetch_url


class Story(Base):
    __tablename__ = "stories"
    __table_args__ = (
        Index("ix_stories_feed_guid", "feed_id", "guid_key"),
        Index("ix_stories_title_key", "title_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # global identity: "l:<link_key>" when the entry has a link, else "g:<feed>:<guid_key>",
    # else "t:<feed>:<text hash>". Unique, so concurrent inserts of one story collapse.
    ident: Mapped[str] = mapped_column(String(96), unique=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), index=True)
    cluster_id: Mapped[int | None] = mapped_column(ForeignKey("stories.id"), index=True)
    # why it joined another story's cluster (NULL for a cluster's first story)
    cluster_score: Mapped[float | None] = mapped_column(Float)
    cluster_terms: Mapped[list[str] | None] = mapped_column(JSON)
    # placed by the clusterer (a story on the watched themes): the open clusters are
    # rebuilt from these
    clustered: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    guid: Mapped[str | None] = mapped_column(Text)
    guid_key: Mapped[str | None] = mapped_column(String(64))
    link: Mapped[str | None] = mapped_column(Text)
    link_key: Mapped[str | None] = mapped_column(String(64), index=True)
    title_key: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16))
    author: Mapped[str | None] = mapped_column(Text)
    published_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    date_from_feed: Mapped[bool] = mapped_column(Boolean)
    first_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)


class StoryFeed(Base):
    """A sighting: story S was carried by feed F (the first feed, and every other one)."""

    __tablename__ = "story_feeds"

    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"), primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"), primary_key=True)
    first_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class Match(Base):
    __tablename__ = "matches"
    __table_args__ = (UniqueConstraint("story_id", "watchlist"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"))
    watchlist: Mapped[str] = mapped_column(String(64), index=True)
    terms: Mapped[list[str]] = mapped_column(JSON)
    hits: Mapped[list[list[Any]]] = mapped_column(JSON)  # [term, field, start, end, text]
    matched_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    alerted: Mapped[bool] = mapped_column(Boolean)  # False: recorded during catch-up, not alerted


class Alert(Base):
    """The outbox: one alert to deliver to one target. Written with its story and match."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("cluster_id", "watchlist", "target", "kind"),
        Index("ix_outbox_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # "story": a matched story; "surge": its cluster is now reported by many outlets (story_id
    # is the alerted story, payload the outlets counted); "feed_down" / "feed_up": feed health
    kind: Mapped[str] = mapped_column(String(16), default="story")
    story_id: Mapped[int | None] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"), index=True)
    cluster_id: Mapped[int | None] = mapped_column(Integer)
    feed_id: Mapped[int | None] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # health: reason, since; surge: outlets
    watchlist: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(64))
    # pending -> sending (claimed, leased) -> sent | pending (retry or deferred) | failed (given up)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    # folded: goes out in a digest (digest watchlist, quiet hours, rate-limit overflow)
    fold: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    claimed_by: Mapped[str | None] = mapped_column(String(80))
    claim_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # fencing token
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Delivery(Base):
    """The log of messages sent per target: rate limits count it, the web page shows it."""

    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_target_sent", "target", "sent_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    target: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(16))  # alert | digest | health
    alerts: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(Text)
    # Alerts of this message whose claim had been lost when it was marked: possibly sent twice.
    duplicates: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    worker: Mapped[str | None] = mapped_column(String(80))


class Worker(Base):
    """A running daemon or poll command; its claims are free once its heartbeat is stale."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(80), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    # boot id / PID namespace / PID / start time: exact on its machine (None: not Linux)
    process: Mapped[str | None] = mapped_column(String(160))
    # daemon: polls on its own and gets a share of the hosts; command: poll, notify
    role: Mapped[str] = mapped_column(String(16), default="daemon", server_default="daemon")
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
    stats: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class PrunedStory(Base):
    """The dedupe keys of a story that retention deleted: a feed still listing the entry
    must not make it new again (``Store.known_stories`` reads these as stored)."""

    __tablename__ = "pruned_stories"
    __table_args__ = (Index("ix_pruned_stories_feed_guid", "feed_id", "guid_key"),)

    ident: Mapped[str] = mapped_column(String(96), primary_key=True)  # as ``stories.ident``
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    guid_key: Mapped[str | None] = mapped_column(String(64))
    pruned_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, index=True)
