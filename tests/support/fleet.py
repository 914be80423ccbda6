"""Several ``news-monitor run`` daemons on one PostgreSQL schema, and what they talk to.

The pieces of tests/test_scaleout.py and bench/scaleout.py:

- :class:`Sites`: many local feed servers, one :class:`HTTPTestServer` per port, so that
  feeds spread over many ``host:port`` keys (``per_host`` and the fleet's host claims
  apply per key). Feeds are placed round-robin; every request is logged per feed.
- :class:`SlowHook`: a webhook receiver that records each request *when it arrives*
  (with its arrival time) and answers after ``delay`` seconds, like a slow target.
- :class:`Fleet`: writes one config per daemon (the same feeds, targets and watchlists;
  each its own ``application_name`` so its PostgreSQL connections can be found and cut)
  and starts the daemons as real subprocesses, optionally under libfaketime.
- Small read-only queries on the fleet's schema (who holds which claim, the workers).

Each daemon is identified in the database by its worker id, which carries its PID
(``host:pid:...``); the ``workers`` table's ``pid`` column is used when present.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from sqlalchemy import Engine, create_engine, text

from tests.support.daemon import DaemonProcess
from tests.support.feeds import Item, rss
from tests.support.httpserver import HTTPTestServer, LoggedRequest, Static
from tests.support.webhook import Hook, WebhookReceiver

FAKETIME_LIB = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")
# "cycle: 12 feeds polled in 0.41s: 3 changed, 8 unchanged, 1 failed, 2 deferred; ..." (deferred: not contacted)
_FEED = re.compile(r"feed=(\S+) (?:fetched status=|failed \()")
_CYCLE = re.compile(r"cycle: \d+ feeds polled in [\d.]+s: (\d+) changed, (\d+) unchanged, (\d+) failed")


# ------------------------------------------------------------------------------ feed sites


class Sites:
    """``ports`` local servers; :meth:`add` places a feed on the next one (round-robin)."""

    def __init__(self, ports: int) -> None:
        self.servers = [HTTPTestServer().start() for _ in range(ports)]
        self._where: dict[str, tuple[HTTPTestServer, str]] = {}
        self._next = 0

    def add(self, name: str, items: Sequence[Item], *, delay: float = 0.0, port: int | None = None) -> str:
        """Serve feed ``name`` (ETag and 304s); returns its URL."""
        index = self._next % len(self.servers) if port is None else port
        self._next += port is None
        server = self.servers[index]
        path = f"/{name}.xml"
        self._where[name] = (server, path)
        self.publish(name, items, delay=delay)
        return server.url(path)

    def publish(self, name: str, items: Sequence[Item], *, delay: float = 0.0) -> None:
        """Replace feed ``name``'s items (a new ETag, so the next poll reads them)."""
        server, path = self._where[name]
        etag = f'"{abs(hash(tuple(items)))}"'
        server.route(path, Static(body=rss(list(items)), etag=etag, delay=delay))

    def requests(self, name: str) -> list[LoggedRequest]:
        server, path = self._where[name]
        return server.requests(path)

    def names(self) -> list[str]:
        return list(self._where)

    def most_in_flight(self) -> int:
        """The most requests any one ``host:port`` was answering at once."""
        return max(s.max_in_flight() for s in self.servers)

    def close(self) -> None:
        for s in self.servers:
            s.stop()

    def __enter__(self) -> Sites:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------- webhook


@dataclass(frozen=True, slots=True)
class Received:
    at: float  # time.monotonic() on arrival, before the answer
    title: str
    message: str


def _received(hook: Hook) -> Received:
    payload = hook.json if isinstance(hook.json, dict) else {}
    return Received(hook.at, str(payload.get("title", "")), str(payload.get("message", "")))


class SlowHook(WebhookReceiver):
    """The fleet's JSON webhook target: a :class:`WebhookReceiver`, started at once, that
    answers each POST after ``delay`` seconds; its posts are read as :class:`Received`."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(delay=delay)
        self.start()

    @property
    def url(self) -> str:
        return self.apprise_json_url("/hook")

    @property
    def received(self) -> list[Received]:
        return [_received(h) for h in self.hooks]

    def wait(self, ready: Callable[[list[Received]], bool], timeout: float) -> list[Received]:
        """Wait until ``ready(received)``; the list either way (the caller asserts)."""
        hooks = self.wait_until(lambda hooks: ready([_received(h) for h in hooks]), timeout)
        return [_received(h) for h in hooks]


def count_by_title(received: Sequence[Received], token: str) -> int:
    """Messages whose title names ``token`` (an event's marker word)."""
    return sum(token in r.title for r in received)


def watchlists_of(r: Received) -> list[str]:
    """The watchlists a message says it is for (its ``Watchlist(s): a, b`` line)."""
    for line in r.message.splitlines():
        if line.startswith(("Watchlist: ", "Watchlists: ")):
            return [w.strip() for w in line.split(":", 1)[1].split(",")]
    return []


# ---------------------------------------------------------------------------------- daemons


class FleetDaemon(DaemonProcess):
    """:class:`DaemonProcess` with extra environment variables (libfaketime)."""

    def __init__(self, config: Path, env: Mapping[str, str] | None = None) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("NEWS_MONITOR")}
        base.update(PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "--config", str(config), "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=base,
            cwd=config.parent,
        )
        self.lines = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.config = config

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def polled(self) -> int:
        """Feeds this daemon contacted so far (changed, unchanged or failed; not the deferred
        ones), from its ``cycle:`` log lines."""
        with self._cond:
            return sum(sum(map(int, m.groups())) for line in self.lines if (m := _CYCLE.search(line)))

    def fetched(self) -> set[str]:
        """Feeds this daemon read with a 200 or failed on so far, from its per-feed log lines
        (``feed=NAME fetched status=...``, ``feed=NAME failed (...)``; a 304 is logged only at DEBUG)."""
        with self._cond:
            return {m.group(1) for line in self.lines if (m := _FEED.search(line))}

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.signal(signal.SIGCONT)


def faketime_env(offset: str) -> dict[str, str]:
    """Environment running a process with its wall clock ``offset`` off (``+5m``, ``-5m``).

    Only the wall clock: a monotonic clock shifted too makes every timed wait of Python's
    threads (``sem_clockwait``, which libfaketime does not translate) last the offset
    longer, and two hosts' monotonic clocks are never compared anyway.
    """
    return {"LD_PRELOAD": str(FAKETIME_LIB), "FAKETIME": offset, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


@dataclass
class Fleet:
    """Daemons sharing one PostgreSQL schema; one config file per daemon."""

    tmp: Path
    url: str  # SQLAlchemy URL of the PostgreSQL server
    schema: str
    feeds: list[dict[str, Any]]
    watchlists: list[dict[str, Any]]
    target: str  # an Apprise URL
    settings: dict[str, Any] = field(default_factory=dict)  # top-level config sections
    daemons: list[FleetDaemon] = field(default_factory=list)
    _engine: Engine | None = None

    def app_name(self, index: int) -> str:
        return f"{self.schema}-d{index}"

    def database(self, index: int) -> str:
        return f"{self.url}?options=-csearch_path%3D{self.schema}&application_name={self.app_name(index)}"

    def write_config(self, index: int) -> Path:
        config = {
            "database": self.database(index),
            "log_level": "INFO",
            "targets": {"hook": self.target},
            "feeds": self.feeds,
            "watchlists": self.watchlists,
            **self.settings,
        }
        folder = self.tmp / f"d{index}"
        folder.mkdir(exist_ok=True)
        path = folder / "config.yaml"
        with path.open("w", encoding="utf-8") as fh:
            YAML().dump(config, fh)
        return path

    def start(self, count: int, env: Sequence[Mapping[str, str] | None] = ()) -> list[FleetDaemon]:
        """Start ``count`` more daemons at the same instant (configs written first)."""
        first = len(self.daemons)
        paths = [self.write_config(first + i) for i in range(count)]
        envs = list(env) + [None] * (count - len(env))
        made = [FleetDaemon(p, e) for p, e in zip(paths, envs, strict=True)]
        self.daemons.extend(made)
        return made

    def wait_started(self, daemons: Sequence[FleetDaemon] | None = None, timeout: float = 30.0) -> None:
        for d in daemons or self.daemons:
            d.wait_for_log(r"news-monitor \S+ started", timeout)

    def close(self) -> None:
        for d in self.daemons:
            d.kill()
        if self._engine is not None:
            self._engine.dispose()

    # --- the schema, read from outside ---------------------------------------------------

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(
                self.url, connect_args={"options": f"-csearch_path={self.schema}"}, pool_size=1
            )
        return self._engine

    def rows(self, sql: str, **params: Any) -> list[Any]:
        with self.engine.connect() as conn:
            return list(conn.execute(text(sql), params))

    def holder(self, worker: str | None) -> FleetDaemon | None:
        """The daemon whose worker id is ``worker`` (by the workers table, else by the id's PID)."""
        if worker is None:
            return None
        pid: int | None = None
        try:
            found = self.rows("SELECT pid FROM workers WHERE id = :w", w=worker)
            pid = int(found[0][0]) if found else None
        except Exception:  # noqa: BLE001 - no workers table yet: fall back on the id
            pid = None
        if pid is None and (m := re.match(r"[^:]*:(\d+):", worker)):
            pid = int(m.group(1))
        return next((d for d in self.daemons if d.pid == pid), None)

    def feed_holders(self, names: Sequence[str]) -> dict[str, str | None]:
        rows = self.rows("SELECT name, claimed_by FROM feeds WHERE name = ANY(:n)", n=list(names))
        return {name: by for name, by in rows}

    def sending_holders(self) -> list[str]:
        return [by for (by,) in self.rows("SELECT claimed_by FROM outbox WHERE status = 'sending'")]

    def cut_connections(self, index: int) -> int:
        """``pg_terminate_backend`` of every connection of daemon ``index``; how many."""
        with self.engine.connect() as conn:
            n = conn.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :a AND pid <> pg_backend_pid()"
                ),
                {"a": self.app_name(index)},
            ).scalar_one()
        return int(n)


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll ``check`` until true or ``timeout``; its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
