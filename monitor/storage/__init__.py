"""Storage: SQLAlchemy over SQLite (default) or PostgreSQL (several daemons).

Owns: the engine and Alembic migrations, the schema, the store (feeds, stories, outbox),
story search.
May import: ``matching``, ``ingest``, ``delivery`` and ``config`` for the values it stores
and returns. Never ``monitor.app``.
Storage decides nothing: it applies what the pure modules decided.
"""
