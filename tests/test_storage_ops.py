"""Opening a database as an operator meets it: a folder that cannot be created, several
daemons starting together on a fresh PostgreSQL database, the connection settings that
keep a half-dead PostgreSQL connection from stalling a worker, and a shorter interval
in a reloaded config taking effect at once. Real processes, real SQLite and PostgreSQL
(skipped without MONITOR_TEST_POSTGRES_URL), a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from sqlalchemy import func, select, text, update

from monitor.app.daemon import Runtime
from monitor.config.model import load_config
from monitor.errors import StoreError
from monitor.storage.engine import check_location
from monitor.storage.feeds import FeedConfigRow
from monitor.storage.schema import Feed
from monitor.storage.store import Store
from tests.support.feeds import Item, rss
from tests.support.httpserver import HTTPTestServer, Static

ROOT = Path(__file__).resolve().parent.parent

# ------------------------------------------------------------- a folder that cannot be made


def write_config(folder: Path, database: str, feeds: list[dict[str, object]] | None = None, **extra: object) -> Path:
    path = folder / "config.yaml"
    with path.open("w", encoding="utf-8") as fh:
        YAML().dump({"database": database, "feeds": feeds or [], **extra}, fh)
    return path


def blocked(tmp: Path) -> tuple[str, str]:
    """A relative database path whose folder cannot be created (its parent is a file:
    tests run as root here, where a read-only folder stops nobody)."""
    (tmp / "data").write_text("not a folder", encoding="utf-8")
    return "sqlite:///data/db/monitor.db", f"cannot create the database folder {tmp / 'data' / 'db'}: Not a directory"


COMMANDS = [
    ["check-config"],
    ["run"],
    ["poll", "--once"],
    ["feeds"],
    ["stories", "search", "anything"],
    ["web", "--listen", "127.0.0.1:1"],
    ["watchlist", "test", "--query", "anything"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_every_command_reports_an_unusable_database_folder_in_one_line(tmp_path: Path, command: list[str]) -> None:
    database, message = blocked(tmp_path)
    config = write_config(tmp_path, database)
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), *command],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    if command == ["check-config"]:  # checked offline, before anything tries to create it
        message = f"cannot create the database folder {tmp_path / 'data' / 'db'}: {tmp_path / 'data'} is not a folder"
    assert done.stderr.strip().splitlines()[-1] == f"Error: {message}"


def existing_folder(tmp: Path) -> tuple[str, str | None]:
    return f"sqlite:///{tmp / 'monitor.db'}", None


def folder_to_create(tmp: Path) -> tuple[str, str | None]:
    return f"sqlite:///{tmp / 'a' / 'b' / 'monitor.db'}", None


def parent_is_a_file(tmp: Path) -> tuple[str, str | None]:
    (tmp / "data").write_text("", encoding="utf-8")
    return f"sqlite:///{tmp / 'data' / 'db' / 'monitor.db'}", f"{tmp / 'data'} is not a folder"


def database_is_a_folder(tmp: Path) -> tuple[str, str | None]:
    (tmp / "monitor.db").mkdir()
    return f"sqlite:///{tmp / 'monitor.db'}", "not a file this user can read and write"


def postgresql(tmp: Path) -> tuple[str, str | None]:
    return "postgresql://user@127.0.0.1:9/db", None  # nothing to check without connecting


@pytest.mark.parametrize(
    "case",
    [existing_folder, folder_to_create, parent_is_a_file, database_is_a_folder, postgresql],
    ids=lambda f: f.__name__,
)
def test_check_location(tmp_path: Path, case: Callable[[Path], tuple[str, str | None]]) -> None:
    url, problem = case(tmp_path)
    if problem is None:
        check_location(url)
        assert not (tmp_path / "a").exists()  # checking creates nothing
    else:
        with pytest.raises(StoreError, match=problem):
            check_location(url)


@contextmanager
def as_service_user() -> Iterator[None]:
    """Run the block with the effective ids of an unprivileged user (``nobody``) when the
    tests run as root, as they do in CI: root may write in any folder."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_check_location_read_only_folder() -> None:
    with tempfile.TemporaryDirectory(prefix="ro-db-") as tmp:
        os.chmod(tmp, 0o755)  # reachable by the service user
        ro = Path(tmp) / "ro"
        ro.mkdir(mode=0o555)
        with as_service_user():
            with pytest.raises(StoreError, match="is not writable"):
                check_location(f"sqlite:///{ro / 'data' / 'monitor.db'}")
            with pytest.raises(StoreError, match="permission denied"):
                check_location(f"sqlite:///{ro / 'monitor.db'}")


# ------------------------------------------------------------ PostgreSQL: start-up and settings

FEEDS = [FeedConfigRow(f"feed{i}", f"http://127.0.0.1/{i}.xml", 600, "en") for i in range(20)]


@pytest.mark.timeout(120)
def test_daemons_starting_together_on_a_fresh_database(pg_schema: tuple[str, str]) -> None:
    url, schema = pg_schema
    start = threading.Barrier(4)
    failures: list[BaseException] = []
    added: list[int] = []

    def daemon() -> None:
        try:
            start.wait()
            store = Store(url, schema=schema)  # migrates, like every daemon at start-up
            try:
                added.append(len(store.sync_feeds(FEEDS).added))
            finally:
                store.close()
        except BaseException as exc:  # noqa: BLE001 - reported below, for every thread
            failures.append(exc)

    threads = [threading.Thread(target=daemon) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(100)
    assert failures == []
    assert sum(added) == len(FEEDS)  # each feed reported added by exactly one daemon
    store = Store(url, schema=schema, create=False)
    try:
        with store.transaction() as conn:
            names = conn.execute(select(Feed.name, func.count()).group_by(Feed.name)).all()
        assert sorted(names) == sorted((f.name, 1) for f in FEEDS)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"statement_timeout": "1min", "lock_timeout": "10s"}),
        ("?options=-c%20statement_timeout%3D120s", {"statement_timeout": "2min", "lock_timeout": "10s"}),
    ],
    ids=["defaults", "url-overrides"],
)
def test_postgresql_connections_have_timeouts_and_keepalives(
    pg_schema: tuple[str, str], query: str, expected: dict[str, str]
) -> None:
    url, schema = pg_schema
    store = Store(url + query, schema=schema)
    try:
        with store.transaction() as conn:
            shown = {name: conn.execute(text(f"SHOW {name}")).scalar_one() for name in expected}
            assert conn.execute(text("SHOW search_path")).scalar_one() == schema
            params = conn.connection.driver_connection.info.get_parameters()  # type: ignore[union-attr]
        assert shown == expected
        keepalives = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10", "keepalives_count": "3"}
        assert {k: params.get(k) for k in keepalives} == keepalives
    finally:
        store.close()


# ---------------------------------------------------------------- a shorter interval, reloaded

FEED = rss([Item("A story", "https://news.example/story/1")])


@pytest.mark.timeout(120)
def test_a_reload_with_a_shorter_interval_brings_the_next_poll_forward(tmp_path: Path) -> None:
    with HTTPTestServer() as http:
        feeds: list[dict[str, object]] = [{"name": "wire", "url": http.route("/wire.xml", Static(FEED))}]
        database = f"sqlite:///{tmp_path / 'monitor.db'}"
        poll = {"timeout": "2s", "jitter": "0s"}
        config = write_config(tmp_path, database, feeds, poll={**poll, "interval": "1h"})
        rt = Runtime.build(load_config(config))
        try:
            rt.pipeline.run_cycle(force=True)
            (polled,) = rt.store.feeds()
            assert polled.last_poll_at is not None
            assert polled.next_poll_at >= polled.last_poll_at + dt.timedelta(minutes=59)
            write_config(tmp_path, database, feeds, poll={**poll, "interval": "5m"})
            rt.reload(load_config(config))
            (reloaded,) = rt.store.feeds()
            assert reloaded.interval_s == 300
            assert reloaded.next_poll_at == polled.last_poll_at + dt.timedelta(minutes=5)
        finally:
            rt.close()


@pytest.mark.timeout(120)
def test_a_reload_that_turns_learning_off_forgets_the_learned_interval(tmp_path: Path) -> None:
    with HTTPTestServer() as http:
        feeds: list[dict[str, object]] = [{"name": "wire", "url": http.route("/wire.xml", Static(FEED))}]
        database = f"sqlite:///{tmp_path / 'monitor.db'}"
        poll = {"timeout": "2s", "jitter": "0s", "interval": "10m", "max_interval": "1h"}
        config = write_config(tmp_path, database, feeds, poll=poll)
        rt = Runtime.build(load_config(config))
        try:
            rt.pipeline.run_cycle(force=True)
            with rt.store.transaction() as conn:  # as if the feed had been learned to be slow
                conn.execute(update(Feed).values(learned_interval_s=3600.0))
            (learned,) = rt.store.feeds()
            assert learned.learned_interval_s == 3600.0
            write_config(tmp_path, database, feeds, poll={**poll, "learn_cadence": False})
            rt.reload(load_config(config))
            (reloaded,) = rt.store.feeds()
            assert reloaded.learned_interval_s is None
            assert reloaded.last_poll_at is not None
            assert reloaded.next_poll_at <= reloaded.last_poll_at + dt.timedelta(minutes=10)
        finally:
            rt.close()
