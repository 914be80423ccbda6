"""story search: an FTS5 index on SQLite, a full-text expression index on PostgreSQL

``news-monitor stories search`` and the web page's search box (monitor/search.py).

SQLite: ``stories_fts``, an FTS5 table with *external content* (the text stays in
``stories`` only; the index holds tokens), kept in sync by three triggers. The update
trigger fires only when the title or summary change, not on the ``cluster_id`` update
that follows every insert. Tokenizer ``unicode61 remove_diacritics 2``: case and
accents folded (``Coree`` finds ``Corée``). Existing stories are indexed by a rebuild.
An SQLite built without FTS5 gets nothing here, and search scans instead.

PostgreSQL: a GIN index on the same expression search.py queries (``PG_DOCUMENT``,
repeated here verbatim on purpose, since a migration must not change when the code
does; tests/test_search.py checks the two are equal).

Neither object is in schema.py (SQLAlchemy has no model for them); ``env.py`` and the
schema test leave them out of comparisons with ``monitor.storage.search.include_name``.
Note for later migrations: a batch (copy-and-move) migration of ``stories`` on SQLite
drops these triggers with the old table; recreate them after it.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ACCENTED = "àáâãäåāăąçćčďèéêëēĕėęěìíîïĩīįñńňòóôõöøōőùúûüũūůűųýÿžźżśšşťţľĺłŕřğ"
_PLAIN = "aaaaaaaaacccdeeeeeeeeeiiiiiiinnnoooooooouuuuuuuuuyyzzzsssttlllrrg"
PG_DOCUMENT = (
    "to_tsvector('simple'::regconfig, translate(lower(coalesce(title, '') || ' ' || coalesce(summary, '')), "
    f"'{_ACCENTED + _ACCENTED.upper()}', '{_PLAIN * 2}'))"
)

_SQLITE_UP = [
    """CREATE VIRTUAL TABLE IF NOT EXISTS stories_fts USING fts5(
        title, summary, content='stories', content_rowid='id',
        tokenize='unicode61 remove_diacritics 2')""",
    """CREATE TRIGGER IF NOT EXISTS stories_fts_ai AFTER INSERT ON stories BEGIN
        INSERT INTO stories_fts(rowid, title, summary) VALUES (new.id, new.title, new.summary);
    END""",
    """CREATE TRIGGER IF NOT EXISTS stories_fts_ad AFTER DELETE ON stories BEGIN
        INSERT INTO stories_fts(stories_fts, rowid, title, summary)
        VALUES ('delete', old.id, old.title, old.summary);
    END""",
    """CREATE TRIGGER IF NOT EXISTS stories_fts_au AFTER UPDATE OF title, summary ON stories BEGIN
        INSERT INTO stories_fts(stories_fts, rowid, title, summary)
        VALUES ('delete', old.id, old.title, old.summary);
        INSERT INTO stories_fts(rowid, title, summary) VALUES (new.id, new.title, new.summary);
    END""",
    "INSERT INTO stories_fts(stories_fts) VALUES ('rebuild')",
]


def _has_fts5() -> bool:
    bind = op.get_bind()
    return bool(bind.execute(text("SELECT sqlite_compileoption_used('ENABLE_FTS5')")).scalar())


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        if _has_fts5():
            for statement in _SQLITE_UP:
                op.execute(statement)
    elif dialect == "postgresql":
        op.execute(f"CREATE INDEX IF NOT EXISTS ix_stories_search ON stories USING gin (({PG_DOCUMENT}))")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for name in ("stories_fts_ai", "stories_fts_ad", "stories_fts_au"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS stories_fts")
    elif dialect == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_stories_search")
