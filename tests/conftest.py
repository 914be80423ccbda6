"""Shared fixtures: databases (SQLite and, when MONITOR_TEST_POSTGRES_URL is set, PostgreSQL)."""

from __future__ import annotations

import os
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


@pytest.fixture(params=["sqlite", "postgresql"])
def db_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str | None]]:
    """(url, schema) of an empty database, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'monitor.db'}", None
    else:
        yield request.getfixturevalue("pg_schema")


@pytest.fixture
def store(db_backend: tuple[str, str | None]) -> Iterator[Store]:
    url, schema = db_backend
    s = Store(url, schema=schema)
    try:
        yield s
    finally:
        s.close()
