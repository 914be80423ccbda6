"""Why a story joined its cluster: the score and the features it shared.

``stories.cluster_id`` has pointed at the story's own row since the first migration; a
story that joins another's cluster now also records ``cluster_score`` (the mean score
over the cluster's members) and ``cluster_terms`` (the shared features, heaviest
first). Both are NULL for the first story of a cluster and for stories stored before
this migration, which stay clusters of one. ``clustered`` says the clusterer placed the
story (it is on the watched themes): the open clusters are rebuilt from those.

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


# Plain ALTER TABLE on both backends (SQLite 3.35+ drops columns in place): a batch
# operation would copy the stories table, which SQLite refuses while other tables' rows
# refer to it.


def upgrade() -> None:
    op.add_column("stories", sa.Column("cluster_score", sa.Float(), nullable=True))
    op.add_column("stories", sa.Column("cluster_terms", sa.JSON(), nullable=True))
    op.add_column("stories", sa.Column("clustered", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column("stories", "clustered")
    op.drop_column("stories", "cluster_terms")
    op.drop_column("stories", "cluster_score")
