"""Why a story joined its cluster: the score and the features it shared.

``stories.cluster_id`` has pointed at the story's own row since the first migration; a
story that joins another's cluster now also records ``cluster_score`` (the mean score
over the cluster's members) and ``cluster_terms`` (the shared features, heaviest
first). Both are NULL for the first story of a cluster and for stories stored before
this migration, which stay clusters of one.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 00:50:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cluster_score", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("cluster_terms", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.drop_column("cluster_terms")
        batch_op.drop_column("cluster_score")
