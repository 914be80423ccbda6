"""``news-monitor workers``: the daemons sharing the database, and what each holds."""

from __future__ import annotations

import datetime as dt
import json

import click

from monitor.app.cli.common import Context, errors_as_click, open_store, pass_ctx, stdout_console
from monitor.storage.engine import utcnow
from monitor.storage.workers import WorkerInfo


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def workers(ctx: Context, as_json: bool) -> None:
    """Workers sharing the database: live or dead, claims held, last heartbeat.

    A worker is a running daemon (or poll command). One whose heartbeat is older
    than workers.lease is dead: its claims have run out and others took its work.

    Example:

    \b
        news-monitor workers --json
    """
    with errors_as_click(), open_store(ctx.loaded) as store:
        found = store.workers(lease=ctx.loaded.config.workers.lease)
    if as_json:
        click.echo(json.dumps({"workers": [_worker_json(w) for w in found]}, indent=2))
        return
    if not found:
        click.echo("no worker registered: no daemon is running on this database")
        return
    from rich.markup import escape
    from rich.table import Table

    now = utcnow()
    table = Table("worker", "role", "state", "pid", "started", "heartbeat", "feeds held", "alerts held", "take-overs")
    for w in found:
        table.add_row(
            escape(w.id),
            w.role,
            "live" if w.alive else "dead",
            str(w.pid),
            w.started_at.isoformat(timespec="seconds"),
            f"{_seconds(now - w.heartbeat_at)} ago",
            str(w.feeds),
            str(w.alerts),
            str(w.stats.get("takeovers", 0)),
        )
    stdout_console().print(table)


def _seconds(delta: dt.timedelta) -> str:
    s = max(0.0, delta.total_seconds())
    return f"{s:.1f}s" if s < 120 else f"{s / 60:.0f}m"


def _worker_json(w: WorkerInfo) -> dict[str, object]:
    return {
        "id": w.id,
        "host": w.host,
        "pid": w.pid,
        "alive": w.alive,
        "role": w.role,
        "started_at": w.started_at.isoformat(timespec="seconds"),
        "heartbeat_at": w.heartbeat_at.isoformat(timespec="milliseconds"),
        "feeds_claimed": w.feeds,
        "alerts_claimed": w.alerts,
        "stats": dict(w.stats),
    }
