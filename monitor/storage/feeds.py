"""Feeds: the configured feeds, their claims, their schedule and their health state.

A feed is *claimed* with a lease before it is polled (``claimed_by``, ``claim_until``):
a daemon that dies mid-poll leaves the lease to expire and another takes the feed. The
poll's outcome comes back as a :class:`~monitor.ingest.schedule.FeedUpdate` (the pure
policy decided it); :func:`apply_updates` maps it to columns and ends the claim, with
one executemany UPDATE per set of changed columns (a cycle of 1,000 feeds answering 304
is one statement).

:meth:`FeedStore.sync_feeds` runs at every start and reload, from any number of daemons at
once: a new feed is an ``INSERT ... ON CONFLICT DO NOTHING`` (two daemons starting together
on a fresh PostgreSQL database both see it missing), and a changed ``interval`` or
``learn_cadence`` takes effect at once (:func:`_schedule_changes`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, bindparam, false, func, or_, select, text, update

from monitor.errors import ClaimLostError
from monitor.ingest.fetch import host_key
from monitor.ingest.schedule import KEEP, FeedSnapshot, FeedUpdate
from monitor.ingest.share import hosts_of, steal_after
from monitor.storage.engine import FEED_CLAIM_LOCK, chunks, utcnow
from monitor.storage.schema import Feed, Worker
from monitor.storage.workers import WorkerStore


@dataclass(frozen=True, slots=True)
class FeedConfigRow:
    """What the store needs of a configured feed (kept free of pydantic on purpose)."""

    name: str
    url: str
    interval_s: float
    language: str | None
    enabled: bool = True
    learn_cadence: bool = True  # False: the feed is polled at its configured interval only


@dataclass(frozen=True, slots=True)
class SyncReport:
    added: tuple[str, ...]
    updated: tuple[str, ...]
    removed: tuple[str, ...]


_SNAPSHOT_FIELDS = tuple(f.name for f in fields(FeedSnapshot))
_UPDATE_FIELDS = tuple(f.name for f in fields(FeedUpdate))


def _snapshot(row: Any) -> FeedSnapshot:
    return FeedSnapshot(**{name: getattr(row, name) for name in _SNAPSHOT_FIELDS})


def feed_columns(change: FeedUpdate) -> dict[str, Any]:
    """The columns an update sets (its fields not left at KEEP), and the end of the claim."""
    values = {name: value for name in _UPDATE_FIELDS if (value := getattr(change, name)) is not KEEP}
    if "fetch_url" in values:
        values["host"] = host_key(values["fetch_url"])
    values.update(claimed_by=None, claim_until=None)
    return values


def apply_updates(conn: Connection, changes: Iterable[tuple[int, FeedUpdate]]) -> None:
    """Apply feeds' updates: one executemany UPDATE per distinct set of changed columns."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for feed_id, change in changes:
        values = feed_columns(change)
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


def check_claims(conn: Connection, worker: str, claims: Mapping[int, int], *, locking: bool) -> None:
    """Raise :class:`ClaimLostError` unless *worker* still holds every feed of *claims*
    (feed id -> claim version), locking those rows on PostgreSQL until the transaction
    ends, so that no other worker can take them between this check and the write."""
    if not claims:
        return
    lost: list[int] = []
    for chunk in chunks(sorted(claims)):
        stmt = select(Feed.id, Feed.claimed_by, Feed.claim_version).where(Feed.id.in_(chunk))
        found = {r.id: r for r in conn.execute(stmt.with_for_update() if locking else stmt)}
        for fid in chunk:
            r = found.get(fid)
            if r is None or r.claimed_by != worker or r.claim_version != claims[fid]:
                lost.append(fid)
    if lost:
        raise ClaimLostError(
            f"{len(lost)} feed claim(s) of worker {worker} were taken over meanwhile", feed_ids=tuple(lost)
        )


def _held_hosts(conn: Connection, worker: str, now: dt.datetime) -> set[str]:
    """Hosts whose feeds another worker holds right now (live claims)."""
    stmt = (
        select(Feed.host)
        .where(Feed.claimed_by.is_not(None), Feed.claimed_by != worker, Feed.claim_until >= now)
        .where(Feed.host.is_not(None))
        .distinct()
    )
    return {h for (h,) in conn.execute(stmt) if h is not None}


def _spread(rows: Sequence[Any], limit: int, per_host: int | None) -> list[Any]:
    """The first *limit* rows (due order), taking at most *per_host* of one host while
    other hosts' rows are there to take, then the rest in due order (feeds of a few hosts
    only: the claim is not cut short for nothing)."""
    if per_host is None:
        return list(rows[:limit])
    taken: dict[str | None, int] = {}
    picked: list[Any] = []
    later: list[Any] = []
    for r in rows:
        if r.host is not None and taken.get(r.host, 0) >= per_host:
            later.append(r)
            continue
        taken[r.host] = taken.get(r.host, 0) + 1
        picked.append(r)
        if len(picked) >= limit:
            return picked
    return picked + later[: limit - len(picked)]


def _new_feed(cfg: FeedConfigRow, now: dt.datetime) -> dict[str, Any]:
    return {
        "name": cfg.name,
        "url": cfg.url,
        "fetch_url": cfg.url,
        "host": host_key(cfg.url),
        "language": cfg.language,
        "interval_s": cfg.interval_s,
        "enabled": cfg.enabled,
        "state": "new",
        "redirect_seen": 0,
        "initialized": False,
        "created_at": now,
        "consecutive_failures": 0,
        "total_polls": 0,
        "total_failures": 0,
        "entries_seen": 0,
        "next_poll_at": now,
    }


def _config_changes(row: Any, cfg: FeedConfigRow, now: dt.datetime) -> dict[str, Any]:
    """What following the config changes in a stored feed (nothing: an empty dict)."""
    changes: dict[str, Any] = {}
    if row.url != cfg.url:
        changes.update(
            url=cfg.url,
            fetch_url=cfg.url,
            host=host_key(cfg.url),
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
    # A new URL is polled now already: the schedule cannot bring that forward.
    changes.update({k: v for k, v in _schedule_changes(row, cfg, now).items() if k not in changes})
    if row.language != cfg.language:
        changes["language"] = cfg.language
    if row.enabled != cfg.enabled:
        changes["enabled"] = cfg.enabled
    return changes


def _schedule_changes(row: Any, cfg: FeedConfigRow, now: dt.datetime) -> dict[str, Any]:
    """A new ``interval``, or learning turned off, takes effect at once.

    The learned interval is dropped (it was learned against the old interval, or is no
    longer wanted), and when the interval in use gets shorter the next poll comes
    forward to one new interval after the last poll (now if never polled, or if that
    moment is past); it never moves later.
    """
    if row.interval_s == cfg.interval_s and (cfg.learn_cadence or row.learned_interval_s is None):
        return {}
    changes: dict[str, Any] = {"interval_s": cfg.interval_s, "learned_interval_s": None}
    before = max(row.interval_s, row.learned_interval_s or 0.0)
    if cfg.interval_s < before:
        due = now if row.last_poll_at is None else row.last_poll_at + dt.timedelta(seconds=cfg.interval_s)
        due = max(due, now)
        if due < row.next_poll_at:
            changes["next_poll_at"] = due
    return changes


class FeedStore(WorkerStore):
    """The feeds aggregate of :class:`~monitor.storage.store.Store`."""

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
        with self.transaction() as conn:
            rows = {r.name: r for r in conn.execute(select(Feed.__table__))}
            for name, cfg in wanted.items():
                row = rows.get(name)
                if row is None:
                    # Another daemon may insert it first: then it is that one's to report.
                    stmt = self.insert(Feed.__table__).values(**_new_feed(cfg, now))
                    stmt = stmt.on_conflict_do_nothing(index_elements=["name"]).returning(Feed.id)
                    if conn.execute(stmt).first() is not None:
                        added.append(name)
                elif changes := _config_changes(row, cfg, now):
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
        per_host: int | None = None,
    ) -> list[FeedSnapshot]:
        """Claim up to *limit* enabled feeds whose next poll is due (all of them with ``force``).

        The claim is a lease on the database's clock, renewed by the worker's heartbeat
        (:mod:`monitor.storage.workers`): a worker that dies or pauses leaves it to run
        out, and another takes the feed. Each claim bumps the feed's ``claim_version``
        (returned in the snapshot): with ``claimed_by`` it is the fencing token that
        :meth:`check_claims` verifies before any write.

        Work is shared: with other live workers, a worker takes the feeds of the hosts it
        owns (a balanced split of the hosts, :mod:`monitor.ingest.share`) and feeds overdue by
        ``steal_after(lease)`` (their owner is slow or stuck). Politeness holds for the
        whole fleet: a host whose feeds another live worker holds is left to that worker,
        and one claim takes at most *per_host* feeds of a host while other hosts have
        feeds due (None: no cap), so a claim spreads over hosts. On PostgreSQL the claims
        of all workers are serialised by a transaction-level advisory lock (they are
        short), so two workers never take one host at once. ``force`` (``poll --once``,
        ``--feed``) ignores due times and hosts.
        """
        with self.transaction() as conn:
            if self.dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": FEED_CLAIM_LOCK})
            now = now or self.db_now(conn)
            cond = [
                Feed.enabled.is_(True),
                Feed.state != "disabled",
                or_(Feed.claim_until.is_(None), Feed.claim_until < now),
            ]
            if names is not None:
                cond.append(Feed.name.in_(list(names)))
            if not force:
                cond.append(Feed.next_poll_at <= now)
                held = _held_hosts(conn, worker, now)
                if held:
                    cond.append(or_(Feed.host.is_(None), Feed.host.not_in(sorted(held))))
                if (share := self._share(conn, worker, now, lease)) is not None:
                    cond.append(share)
            scan = limit if per_host is None or force else max(limit * 8, 256)
            stmt = select(Feed.id, Feed.host, Feed.claimed_by).where(and_(*cond)).order_by(Feed.next_poll_at)
            rows = conn.execute(self.locking(stmt.limit(scan))).all()
            picked = _spread(rows, limit, None if force else per_host)
            if not picked:
                return []
            self.count("takeovers", sum(1 for r in picked if r.claimed_by not in (None, worker)))
            self.count("feed_claims", len(picked))
            ids = [r.id for r in picked]
            until = now + dt.timedelta(seconds=lease)
            for chunk in chunks(ids):
                conn.execute(
                    update(Feed)
                    .where(Feed.id.in_(chunk))
                    .values(claimed_by=worker, claim_until=until, claim_version=Feed.claim_version + 1)
                )
            snaps = [
                _snapshot(r)
                for chunk in chunks(ids)
                for r in conn.execute(select(Feed.__table__).where(Feed.id.in_(chunk)))
            ]
        snaps.sort(key=lambda s: s.next_poll_at)
        return snaps

    def _share(self, conn: Connection, worker: str, now: dt.datetime, lease: float) -> Any | None:
        """The condition that keeps a claim to this worker's share of the hosts
        (:mod:`monitor.ingest.share`) and to feeds overdue by ``steal_after``; None when
        no other live daemon shares them (commands such as ``poll`` get no share of their
        own: they claim what they are asked for, and the daemons leave them nothing)."""
        horizon = now - dt.timedelta(seconds=lease)
        daemons = select(Worker.id).where(Worker.heartbeat_at >= horizon, Worker.role == "daemon")
        live = [w for (w,) in conn.execute(daemons)]
        if not set(live) - {worker}:
            return None
        stmt = select(Feed.host, func.count()).where(Feed.enabled.is_(True), Feed.host.is_not(None)).group_by(Feed.host)
        hosts = {h: int(n) for h, n in conn.execute(stmt) if h is not None}
        mine = sorted(hosts_of(worker, hosts, live))
        overdue = now - dt.timedelta(seconds=steal_after(lease))
        return or_(Feed.host.is_(None), Feed.host.in_(mine) if mine else false(), Feed.next_poll_at <= overdue)

    def release_feeds(self, feed_ids: Sequence[int] | None = None, *, worker: str | None = None) -> int:
        """Give back claims not worked on (a stop or a failed write in the middle of a
        cycle); with *worker*, only the ones it holds (all of them without *feed_ids*)."""
        if feed_ids is not None and not feed_ids:
            return 0
        if feed_ids is None and worker is None:
            raise ValueError("release_feeds needs feed ids or a worker")
        n = 0
        with self.transaction() as conn:
            for chunk in [None] if feed_ids is None else chunks(list(feed_ids)):
                stmt = update(Feed) if chunk is None else update(Feed).where(Feed.id.in_(chunk))
                if worker is not None:
                    stmt = stmt.where(Feed.claimed_by == worker)
                n += int(conn.execute(stmt.values(claimed_by=None, claim_until=None)).rowcount or 0)
        return n

    def feeds(self, *, include_removed: bool = False) -> list[FeedSnapshot]:
        with self.transaction() as conn:
            stmt = select(Feed.__table__).order_by(Feed.name)
            if not include_removed:
                stmt = stmt.where(Feed.enabled.is_(True))
            return [_snapshot(r) for r in conn.execute(stmt)]

    def defer_host(self, host: str, until: dt.datetime, *, exclude: Collection[int] = ()) -> int:
        """Move the next poll of the feeds of ``host`` (``host:port``, as ``feeds.host``
        holds it), but ``exclude``, to ``until`` at the earliest: the host asked us to wait
        with Retry-After, and its other feeds wait too, also across restarts. One UPDATE
        on the indexed ``host`` column; returns how many feeds moved."""
        cond = [Feed.host == host, Feed.next_poll_at < until]
        if exclude:
            cond.append(Feed.id.not_in(sorted(exclude)))
        with self.transaction() as conn:
            res = conn.execute(update(Feed).where(*cond).values(next_poll_at=until))
        return int(res.rowcount or 0)

    def feed_state_counts(self) -> dict[str, int]:
        """Enabled feeds by health state (new, ok, backoff, disabled), for /metrics."""
        with self.transaction() as conn:
            stmt = select(Feed.state, func.count()).where(Feed.enabled.is_(True)).group_by(Feed.state)
            return {s: int(n) for s, n in conn.execute(stmt)}
