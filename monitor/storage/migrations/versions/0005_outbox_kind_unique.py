"""Surge follow-ups: the outbox is unique per (cluster, watchlist, target, kind).

A watchlist with ``escalate`` gets one more row for a cluster it was alerted about, of
kind ``surge`` ("now reported by N outlets"); the old key (cluster, watchlist, target)
would make it collide with the cluster's story alert. Existing rows keep their kinds,
and no two of them share the old key, so the new one holds for them at once.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 01:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint("uq_outbox_cluster_id", type_="unique")
        batch_op.create_unique_constraint("uq_outbox_cluster_id", ["cluster_id", "watchlist", "target", "kind"])


def downgrade() -> None:
    # The old key cannot hold surge rows beside their story alerts: they go first.
    op.execute("DELETE FROM outbox WHERE kind = 'surge'")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint("uq_outbox_cluster_id", type_="unique")
        batch_op.create_unique_constraint("uq_outbox_cluster_id", ["cluster_id", "watchlist", "target"])
