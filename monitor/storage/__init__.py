"""Storage: SQLAlchemy over SQLite (default) or PostgreSQL (several daemons).

Owns: the engine, Alembic migrations and the transaction helper (``engine``), the schema,
the store by aggregate (``feeds``, ``stories``, ``outbox``, composed by ``store``), story
search.
May import: ``matching``, ``ingest``, ``delivery`` and ``config`` for the values it stores
and returns. Never ``monitor.app``.
Storage decides nothing: it applies what the pure modules decided.
"""
