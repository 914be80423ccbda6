"""The database connection: engines, migrations, and the one transaction helper.

Everything that touches the database goes through :meth:`Database.transaction`: one
transaction per call, library errors turned into :class:`~monitor.errors.StoreError`
with a message naming the database without its password.

- SQLite: WAL, ``synchronous=NORMAL``, a busy timeout, and ``BEGIN IMMEDIATE`` for every
  transaction, so a read never has to be upgraded to a write lock mid-transaction
  (which fails at once with "database is locked"). Connections are pooled: opening one
  per transaction cost a WAL checkpoint (~10 ms).
- PostgreSQL (several daemons): claims select with ``FOR UPDATE SKIP LOCKED``
  (:meth:`Database.locking`); migrations run under an advisory lock.
  Every connection has TCP keepalives (a half-dead connection is noticed in about a
  minute, not after the kernel's two hours) and a ``statement_timeout`` (60 s) and
  ``lock_timeout`` (10 s), so no statement stalls a worker for good; the migrations
  lift both for their own transaction. A setting in the URL's query wins.
- Inserts are idempotent where they must be: :meth:`Database.insert` is the dialect's
  INSERT, which has ``on_conflict_do_nothing`` on both backends.
- A database that cannot be opened (a SQLite folder that cannot be created) is a
  :class:`StoreError` naming the path and the OS error; :func:`check_location` tells
  the same without creating anything (``check-config``).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from monitor.errors import StoreError

MIGRATIONS = Path(__file__).with_name("migrations")
#: Most values bound in one IN (...) or one executemany batch.
CHUNK = 500
#: PostgreSQL: longest statement, and longest wait for a lock, of a connection.
STATEMENT_TIMEOUT = "60s"
LOCK_TIMEOUT = "10s"
#: PostgreSQL: the same for the migrations' transaction (building an index on a big
#: table takes long; several daemons starting together wait for the first one).
MIGRATION_TIMEOUT = "30min"
#: libpq TCP keepalives: first probe after 30 s idle, then every 10 s, dead after 3 lost.
KEEPALIVES: dict[str, int] = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}

#: PostgreSQL advisory lock keys, one per purpose, all here so that no two collide.
MIGRATION_LOCK = 7361280415  # the migrations of daemons starting together
INGEST_LOCK = 7361280416  # clustering: look-up, decision and write of a batch
PRUNE_LOCK = 7361280417  # the daily retention prune
ALERT_CLAIM_LOCK = 7361280418  # alert claims (one target per worker)
FEED_CLAIM_LOCK = 7361280419  # feed claims (one host per worker)

T = TypeVar("T")


#: Seconds from this host's clock to the database's (set by the workers' heartbeat,
#: :class:`monitor.app.workers.Heartbeat`): schedules and leases are in the database's
#: time, so hosts whose clocks disagree still agree on what is due and who holds what.
_clock_offset = 0.0


def set_clock_offset(seconds: float) -> None:
    global _clock_offset
    _clock_offset = seconds


def utcnow() -> dt.datetime:
    """Now, on the database's clock (this host's clock corrected by the measured offset)."""
    now = dt.datetime.now(dt.UTC)
    return now + dt.timedelta(seconds=_clock_offset) if _clock_offset else now


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


def _sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL (None: not SQLite, or in memory)."""
    u = make_url(normalise_url(url))
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def _os_error(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


# Access is checked for the ids the daemon writes with (its effective ids), where the
# platform can.
_EFFECTIVE = os.access in os.supports_effective_ids


def check_location(url: str) -> None:
    """Raise :class:`StoreError` if the database cannot be opened where ``url`` says,
    creating nothing. SQLite: its folder exists and is writable, or the nearest folder
    that exists is writable (it can be created there), and an existing file is a
    writable file. PostgreSQL: nothing to check without connecting."""
    path = _sqlite_path(url)
    if path is None:
        return
    path = path.absolute()
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise StoreError(f"cannot create the database folder {path.parent}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK, effective_ids=_EFFECTIVE):
        if folder == path.parent:
            raise StoreError(f"cannot write in the database folder {folder}: permission denied")
        raise StoreError(f"cannot create the database folder {path.parent}: {folder} is not writable")
    if path.exists() and (not path.is_file() or not os.access(path, os.R_OK | os.W_OK, effective_ids=_EFFECTIVE)):
        raise StoreError(f"cannot open the database {path}: not a file this user can read and write")


def make_engine(url: str, *, schema: str | None = None) -> Engine:
    """An engine with the pragmas and transaction behaviour the store relies on.

    ``schema`` (PostgreSQL only) sets the search_path: tests use one schema each.
    """
    url = normalise_url(url)
    u = make_url(url)
    try:
        if u.get_backend_name() == "sqlite":
            path = _sqlite_path(url)
            if path is not None:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise StoreError(f"cannot create the database folder {path.parent}: {_os_error(exc)}") from None
                check_location(url)  # a read-only folder: say so, not SQLite's "unable to open"
            engine = create_engine(url, connect_args={"timeout": 30})
            _sqlite_events(engine)
        else:
            engine = create_engine(url, pool_pre_ping=True, connect_args=_postgres_args(u.query, schema))
    except (ArgumentError, SQLAlchemyError, ImportError) as exc:
        raise StoreError(f"cannot open database {safe_url(url)}: {exc}") from None
    return engine


def _postgres_args(query: Any, schema: str | None) -> dict[str, Any]:
    """libpq connection parameters: keepalives and timeouts unless the URL sets them.

    ``options`` from the URL come after ours, so a ``-c statement_timeout=...`` there wins.
    """
    args: dict[str, Any] = {"connect_timeout": 10}
    args.update({k: v for k, v in KEEPALIVES.items() if k not in query})
    options = [f"-c statement_timeout={STATEMENT_TIMEOUT}", f"-c lock_timeout={LOCK_TIMEOUT}"]
    if schema:
        options.append(f"-c search_path={schema}")
    given = query.get("options")
    options.extend(given if isinstance(given, tuple) else [given] if given else [])
    args["options"] = " ".join(options)
    return args


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
            conn.execute(text(f"SET LOCAL statement_timeout = '{MIGRATION_TIMEOUT}'"))
            conn.execute(text(f"SET LOCAL lock_timeout = '{MIGRATION_TIMEOUT}'"))
            # Two daemons starting together must not both create tables.
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")


class Database:
    """An open database: the engine, its dialect, and the transaction helper that every
    part of the store (and story search) uses."""

    def __init__(self, url: str, *, schema: str | None = None, create: bool = True) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, schema=schema)
        self.dialect = self.engine.dialect.name
        if create:
            try:
                migrate(self.engine)
            except SQLAlchemyError as exc:
                raise StoreError(f"cannot prepare database {safe_url(self.url)}: {reason(exc)}") from None

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction; a database error becomes a StoreError (password masked)."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except SQLAlchemyError as exc:
            raise StoreError(f"database {safe_url(self.url)}: {reason(exc)}") from exc

    def insert(self, table: Any) -> Any:
        """The dialect's INSERT (it has ``on_conflict_do_nothing`` on both backends)."""
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def locking(self, stmt: Any) -> Any:
        """``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite's writers are serialised anyway."""
        return stmt.with_for_update(skip_locked=True) if self.dialect == "postgresql" else stmt

    @contextmanager
    def exclusive(self, key: int, *, wait: float = 300.0, skip_if_held: bool = False) -> Iterator[bool]:
        """Hold a PostgreSQL advisory lock for the block: the same block of another daemon,
        on any host, waits (at most *wait* seconds, then a StoreError). It is a session
        lock on a connection of its own, so the block's transactions commit while it is
        held. ``skip_if_held``: do not wait; the block runs with False when another
        session holds the lock (a job that any one daemon may do, like the daily prune).
        SQLite: nothing to do (one daemon per SQLite file; its writers are serialised
        anyway), the block runs with True."""
        if self.dialect != "postgresql":
            yield True
            return
        try:
            conn = self.engine.connect()
        except SQLAlchemyError as exc:
            raise StoreError(f"database {safe_url(self.url)}: {reason(exc)}") from exc
        try:
            if skip_if_held:
                held = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one())
            else:
                conn.execute(text(f"SET lock_timeout = '{int(wait * 1000)}ms'"))
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                held = True
            conn.commit()
        except SQLAlchemyError as exc:
            conn.invalidate()  # its session state is unknown: not back to the pool
            conn.close()
            raise StoreError(f"database {safe_url(self.url)}: {reason(exc)}") from exc
        if not held:
            conn.close()
            yield False
            return
        try:
            yield True
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.execute(text("RESET lock_timeout"))
                conn.commit()
            except SQLAlchemyError:
                conn.invalidate()  # the session ends, and its lock with it
            finally:
                conn.close()

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def reason(exc: SQLAlchemyError) -> str:
    """The driver's own message, first line only (SQLAlchemy appends SQL and a URL)."""
    orig = getattr(exc, "orig", None)
    msg = str(orig if orig is not None else exc).strip().splitlines()
    return msg[0] if msg else type(exc).__name__
