"""Shared fixtures: databases (SQLite and, when MONITOR_TEST_POSTGRES_URL is set, PostgreSQL)."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from monitor.storage.engine import normalise_url
from monitor.storage.store import Store

FIXTURES = Path(__file__).parent / "fixtures"
POSTGRES_URL = os.environ.get("MONITOR_TEST_POSTGRES_URL")
NO_POSTGRES = (
    "PostgreSQL tests need MONITOR_TEST_POSTGRES_URL "
    "(e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test); .ci/run sets it"
)


@contextmanager
def fresh_schema() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL schema: (url, schema), dropped afterwards."""
    assert POSTGRES_URL is not None
    url = normalise_url(POSTGRES_URL)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield url, schema
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def pg_schema() -> Iterator[tuple[str, str]]:
    """A fresh PostgreSQL schema per test: (url, schema), dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    with fresh_schema() as made:
        yield made


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database with every migration applied, made once per session:
    each test starts from a copy (migrating a new file costs 0.2 s, a copy 1 ms)."""
    path = tmp_path_factory.mktemp("template") / "monitor.db"
    Store(f"sqlite:///{path}").close()  # the last connection closed: the WAL is folded in
    return path


@pytest.fixture(scope="session")
def pg_shared() -> Iterator[tuple[str, str]]:
    """One migrated PostgreSQL schema for the session; :func:`db_backend` empties it for
    each test (a TRUNCATE costs 20 ms, a new schema migrated 0.3 s)."""
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    with fresh_schema() as (url, schema):
        Store(url, schema=schema).close()
        yield url, schema


def _emptied(url: str, schema: str) -> tuple[str, str]:
    """Empty every table of *schema* but Alembic's, ids restarting at 1."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("SET LOCAL lock_timeout = '20s'"))
            names = conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = :s AND tablename <> 'alembic_version'"),
                {"s": schema},
            ).scalars()
            tables = ", ".join(f'"{schema}"."{n}"' for n in names)
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    finally:
        engine.dispose()
    return url, schema


@pytest.fixture(params=["sqlite", "postgresql"])
def db_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """(url, schema) of an empty, migrated database, once per backend."""
    if request.param == "sqlite":
        shutil.copyfile(request.getfixturevalue("sqlite_template"), tmp_path / "monitor.db")
        yield f"sqlite:///{tmp_path / 'monitor.db'}", None
    else:
        yield _emptied(*request.getfixturevalue("pg_shared"))


@pytest.fixture
def store(db_backend: tuple[str, str | None]) -> Iterator[Store]:
    url, schema = db_backend
    s = Store(url, schema=schema)
    try:
        yield s
    finally:
        s.close()


# The modules that take longest (seconds of a whole run, measured), longest first. `make
# test` spreads whole modules over processes (pytest-xdist, ``--dist loadfile``) in
# collection order; starting the long ones first keeps one process from being handed a
# 60-second module while the others have finished.
SLOW_MODULES = (
    "test_robustness",
    "test_scaleout",
    "test_security_app",
    "test_web",
    "test_setup",
    "test_retention",
    "test_first_run",
    "test_end_to_end",
    "test_faults",
    "test_web_first_hour",
    "test_parse",
    "test_browser_pages",
    "test_daemon",
    "test_fetch",
    "test_storage_ops",
    "test_reload",
    "test_delivery",
    "test_cluster_end_to_end",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_MODULES)}
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (rank.get(item.path.stem, len(rank)), order[id(item)]))
