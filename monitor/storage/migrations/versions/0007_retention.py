"""Retention: the dedupe keys of pruned stories.

``pruned_stories``: one row per story the daily prune deleted (its identity, its feed
and GUID key, when), so that a feed still listing the entry does not bring it back as
new. Kept for ``retention.keys``; a removed feed takes its keys with it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 05:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from monitor.storage.schema import UTCDateTime

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pruned_stories",
        sa.Column("ident", sa.String(96), nullable=False),
        sa.Column("feed_id", sa.Integer(), nullable=False),
        sa.Column("guid_key", sa.String(64), nullable=True),
        sa.Column("pruned_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["feed_id"], ["feeds.id"], name="fk_pruned_stories_feed_id_feeds", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("ident", name="pk_pruned_stories"),
    )
    op.create_index("ix_pruned_stories_feed_guid", "pruned_stories", ["feed_id", "guid_key"])
    op.create_index("ix_pruned_stories_pruned_at", "pruned_stories", ["pruned_at"])


def downgrade() -> None:
    op.drop_index("ix_pruned_stories_pruned_at", table_name="pruned_stories")
    op.drop_index("ix_pruned_stories_feed_guid", table_name="pruned_stories")
    op.drop_table("pruned_stories")
