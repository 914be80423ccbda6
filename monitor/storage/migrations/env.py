"""Alembic environment: runs on the connection the store hands over.

The store calls ``alembic.command.upgrade`` with ``config.attributes["connection"]`` set,
so migrations run inside news-monitor's own engine (same SQLite pragmas, same
PostgreSQL schema/search_path) and need no ``alembic.ini`` URL. Developers generate a new
revision with ``news-monitor db revision -m "..."`` (autogenerate against schema.py).
"""

from __future__ import annotations

from alembic import context

from monitor.storage.schema import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached when run by hand without a connection
    raise RuntimeError("run migrations through news-monitor (monitor.storage.engine.migrate), not bare alembic")

from monitor.storage.search import include_name  # noqa: E402 - the search objects of 0002 have no model

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    include_name=include_name,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER most things
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
