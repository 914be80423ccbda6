"""Several daemons on one database: a workers registry, fencing tokens, feed hosts.

- ``workers``: one row per running daemon or ``poll`` command (id, host, pid, started,
  heartbeat from the database's clock, and its counters). ``process`` identifies the
  process exactly on its machine (boot, PID namespace, PID, start time), so a daemon
  restarted after ``kill -9`` on the same machine takes its predecessor's work at once.
  ``role`` is ``daemon`` (polls on its own schedule: it gets a share of the hosts) or
  ``command`` (``poll``, ``notify``: it claims what it is asked for and no more). A claim whose worker's
  heartbeat is older than the dead-after time is free for any other worker, on any host.
- ``feeds.claim_version`` and ``outbox.claim_version``: bumped by every claim; a state
  write or a send checks ``claimed_by`` and ``claim_version`` both (a fencing token), so a
  worker that lost a claim and took it again cannot write with the old one.
- ``feeds.host``: the feed's ``host:port``, so that claims keep each host with one worker
  at a time (``per_host`` holds for the whole fleet). Filled here for existing feeds.
- ``deliveries.duplicates`` and ``deliveries.worker``: alerts sent whose claim had been
  lost meanwhile (a possible duplicate), counted where the send is logged.

Plain ALTER TABLE on both backends (see 0004 on why not a batch operation).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 04:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from monitor.ingest.fetch import host_key
from monitor.storage.schema import UTCDateTime

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("process", sa.String(160), nullable=True),
        sa.Column("role", sa.String(16), nullable=False, server_default="daemon"),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=True),
    )
    op.create_index("ix_workers_heartbeat_at", "workers", ["heartbeat_at"])
    op.add_column("feeds", sa.Column("claim_version", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("feeds", sa.Column("host", sa.String(255), nullable=True))
    op.create_index("ix_feeds_host", "feeds", ["host"])
    op.add_column("outbox", sa.Column("claim_version", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("deliveries", sa.Column("duplicates", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("deliveries", sa.Column("worker", sa.String(80), nullable=True))
    conn = op.get_bind()
    feeds = sa.table("feeds", sa.column("id", sa.Integer()), sa.column("fetch_url", sa.Text()), sa.column("host"))
    rows = conn.execute(sa.select(feeds.c.id, feeds.c.fetch_url)).all()
    for feed_id, url in rows:
        conn.execute(sa.update(feeds).where(feeds.c.id == feed_id).values(host=host_key(url)))


def downgrade() -> None:
    op.drop_column("deliveries", "worker")
    op.drop_column("deliveries", "duplicates")
    op.drop_column("outbox", "claim_version")
    op.drop_index("ix_feeds_host", table_name="feeds")
    op.drop_column("feeds", "host")
    op.drop_column("feeds", "claim_version")
    op.drop_index("ix_workers_heartbeat_at", table_name="workers")
    op.drop_table("workers")
