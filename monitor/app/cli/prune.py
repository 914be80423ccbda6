"""``prune``: delete old stories and log rows now, as the daemon does once a day."""

from __future__ import annotations

import click

from monitor.app.cli.common import Context, errors_as_click, open_store, pass_ctx
from monitor.app.services.retention import describe, prune


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@pass_ctx
def prune_command(ctx: Context, dry_run: bool) -> None:
    """Delete what the retention settings say is old: stories (by whole event clusters),
    delivery log rows, sent feed-health alerts, expired dedupe keys of pruned stories.

    Stories of open clusters and of alerts still to deliver stay, and a pruned story
    still listed by its feed is not alerted again. The daemon runs this once a day.

    Example:

    \b
        news-monitor prune --dry-run
    """
    with errors_as_click(), open_store(ctx.loaded) as store:
        report = prune(store, ctx.loaded.config, dry_run=dry_run)
    click.echo(describe(report))
