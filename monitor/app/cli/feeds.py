"""``feeds``: feed status, and adding, removing, importing and exporting feeds (OPML).

Feed URLs are shown through :func:`~monitor.ingest.fetch.redact_url` (no user-info, no
secret-looking query values), in the table and in ``--json`` alike; every text of the
table that a feed, its server or an OPML file chose is escaped for rich. Adding a feed
whose host is internal prints a warning naming the address (the feed is added).
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

import click

from monitor.app.cli.common import Context, echo_saved, errors_as_click, open_store, pass_ctx, progress
from monitor.app.services.feeds import (
    FeedCheckError,
    FeedsOverview,
    add_feed,
    duration_text,
    feed_status,
    feeds_overview,
    import_opml,
    is_polled,
    opml_export,
    remove_feed,
)
from monitor.ingest.fetch import redact_url
from monitor.storage.engine import utcnow


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def feeds(click_ctx: click.Context, as_json: bool) -> None:
    """Feed status: state, last poll, last error, entries, next poll.

    Example:

    \b
        news-monitor feeds --json
    """
    if click_ctx.invoked_subcommand is not None:
        return
    ctx: Context = click_ctx.obj
    with errors_as_click(), open_store(ctx.loaded) as store:
        status = feed_status(store)
        overview = feeds_overview(store)
    if as_json:
        click.echo(json.dumps({"feeds": [_feed_json(f) for f in status.feeds], "alerts": status.alerts}, indent=2))
        return
    _print_feeds(list(overview.feeds), status.alerts, overview)


def _feed_json(f: Any) -> dict[str, Any]:
    def iso(v: dt.datetime | None) -> str | None:
        return v.isoformat(timespec="seconds") if v else None

    return {
        "name": f.name,
        "url": redact_url(f.fetch_url),
        "state": f.state,  # new | ok | backoff | disabled
        "status": _STATE_WORDS.get(f.state, f.state),
        "last_poll": iso(f.last_poll_at),
        "last_success": iso(f.last_success_at),
        "last_error": f.last_error,
        "last_error_reason": f.last_error_reason,
        "last_error_at": iso(f.last_error_at),
        "failing_since": iso(f.failing_since),
        "consecutive_failures": f.consecutive_failures,
        "next_poll": iso(f.next_poll_at),
        "entries_seen": f.entries_seen,
        "interval": f.interval_s,
        "learned_interval": f.learned_interval_s,
        "effective_interval": f.effective_interval,
        # Held by a worker now (news-monitor workers lists them); null when free.
        "claimed_by": f.claimed_by if f.claim_until and f.claim_until >= utcnow() else None,
        "claim_until": iso(f.claim_until) if f.claim_until and f.claim_until >= utcnow() else None,
    }


_STATE_WORDS = {"ok": "ok", "backoff": "backing off", "disabled": "disabled", "new": "new"}


def _interval_cell(f: Any) -> str:
    """The interval polls are scheduled with, and whether it was learned from the feed."""
    if f.learned_interval_s and f.learned_interval_s > f.interval_s:
        return f"{duration_text(f.effective_interval)} (learned)"
    return duration_text(f.interval_s)


def _ago(v: dt.datetime | None, now: dt.datetime) -> str:
    if v is None:
        return "never"
    s = int((now - v).total_seconds())
    future = s < 0
    s = abs(s)
    text = f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h" if s < 172800 else f"{s // 86400}d"
    return f"in {text}" if future else f"{text} ago"


def _next_poll(f: Any, overview: FeedsOverview) -> str:
    """When the feed is polled next; "due now" when no daemon polls and the time is past."""
    if not is_polled(f):
        return "-"
    if overview.idle and f.next_poll_at <= overview.now:
        return "due now"
    return _ago(f.next_poll_at, overview.now)


def _print_feeds(rows: list[Any], alerts: dict[str, int], overview: FeedsOverview) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    now = overview.now
    table = Table(title="Feeds", show_lines=False)
    columns = (
        "feed", "state", "last poll", "last success", "fails", "entries", "interval", "next poll", "last error",
    )  # fmt: skip
    for col in columns:
        table.add_column(col, overflow="fold")
    styles = {"ok": "green", "backoff": "yellow", "disabled": "red", "new": "cyan"}
    for f in rows:
        error = ""
        if f.last_error and f.state != "ok":
            error = f"{f.last_error_reason} ({_ago(f.last_error_at, now)}): {f.last_error}"
        table.add_row(
            escape(f.name),
            f"[{styles.get(f.state, '')}]{_STATE_WORDS.get(f.state, f.state)}[/]",
            _ago(f.last_poll_at, now),
            _ago(f.last_success_at, now),
            str(f.consecutive_failures),
            str(f.entries_seen),
            _interval_cell(f),
            _next_poll(f, overview),
            escape(error),
        )
    # Piped into a file or a script, do not fold columns to 80 characters.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    if overview.failing:
        console.print(f"[yellow]{escape(overview.failing)}[/]")
    if overview.idle:
        since = (
            f"since {overview.last_poll_at:%Y-%m-%d %H:%M} UTC ({_ago(overview.last_poll_at, now)})"
            if overview.last_poll_at
            else "these feeds yet"
        )
        console.print(f"No daemon has polled {since}: the feeds are due now. Start one with `news-monitor run`.")
    console.print(table)
    pending = alerts.get("pending", 0) + alerts.get("sending", 0)
    console.print(
        f"alerts: {alerts.get('sent', 0)} sent, {pending} pending, "
        f"{alerts.get('failed', 0)} given up" + (" [red](see the log)[/]" if alerts.get("failed") else "")
    )


@feeds.command("add")
@click.argument("url")
@click.option("--name", default=None, help="Feed name (default: from the feed's title).")
@click.option("--language", default=None, help="Language code, e.g. en, fr (default: the feed's own).")
@click.option("--interval", default=None, help="Poll interval, e.g. 30m (default: poll.interval).")
@click.option("--no-check", is_flag=True, help="Do not fetch the URL first.")
@pass_ctx
def feeds_add(
    ctx: Context, url: str, name: str | None, language: str | None, interval: str | None, no_check: bool
) -> None:
    """Add a feed to the config file, after fetching it once to check it is a feed.

    URL may also be a web page that announces its feed (<link rel="alternate">): the
    first feed it announces that works is added.

    Example:

    \b
        news-monitor feeds add https://www.lemonde.fr/international/rss_full.xml --name lemonde-intl
    """
    with errors_as_click():
        try:
            added = add_feed(
                ctx.loaded, url, name=name, language=language, interval=interval, check=not no_check, progress=progress
            )
        except FeedCheckError as exc:
            raise click.ClickException(f"{exc} (use --no-check to add it anyway)") from None
    if added.url != url:
        click.echo(f"{redact_url(url)} is a web page; it announces the feed {redact_url(added.url)}")
    if added.entries is not None:
        click.echo(f"{redact_url(added.url)}: {added.title or 'untitled'} ({added.entries} entries)")
    for warning in added.warnings:
        click.echo(warning, err=True)
    echo_saved(ctx.config_path, f"added feed {added.saved.name!r}")


@feeds.command("remove")
@click.argument("name")
@pass_ctx
def feeds_remove(ctx: Context, name: str) -> None:
    """Remove a feed from the config file (its stored stories stay; polling stops).

    Example:

    \b
        news-monitor feeds remove bbc-world
    """
    with errors_as_click():
        remove_feed(ctx.config_path, name)
    echo_saved(ctx.config_path, f"removed feed {name!r}")


@feeds.command("import-opml")
@click.argument("file", type=click.File("rb"))
@click.option("--language", default=None, help="Language of feeds whose outline gives none.")
@click.option("--check", is_flag=True, help="Fetch every feed first and import only those that work.")
@click.option("--dry-run", is_flag=True, help="Show what would be added; write nothing.")
@pass_ctx
def feeds_import_opml(ctx: Context, file: Any, language: str | None, check: bool, dry_run: bool) -> None:
    """Import the feeds of an OPML file (from a feed reader) into the config file.

    Feeds already configured (same URL) are skipped; names come from the titles.

    Example:

    \b
        news-monitor feeds import-opml subscriptions.opml --check
    """
    with errors_as_click():
        done = import_opml(
            ctx.loaded,
            file.read(),
            file=getattr(file, "name", "OPML file"),
            language=language,
            check=check,
            dry_run=dry_run,
            progress=progress,
        )
    for label, reason in done.skipped:
        click.echo(f"skipped {redact_url(label)}: {reason}", err=True)
    for warning in done.warnings:
        click.echo(warning, err=True)
    if dry_run:
        for f in done.added:
            click.echo(f"would add {f.name}: {redact_url(f.url)}")
        click.echo(f"{len(done.added)} feeds would be added, {len(done.skipped)} skipped (dry run: nothing written)")
    elif done.saved is None:
        click.echo(f"nothing to add ({len(done.skipped)} skipped)")
    else:
        echo_saved(ctx.config_path, f"imported {len(done.added)} feeds ({len(done.skipped)} skipped)")


@feeds.command("export-opml")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None, help="File.")
@pass_ctx
def feeds_export_opml(ctx: Context, output: str | None) -> None:
    """Export the configured feeds as OPML 2.0 (for a feed reader, or another instance).

    Example:

    \b
        news-monitor feeds export-opml -o feeds.opml
    """
    with errors_as_click():
        export = opml_export(ctx.loaded.config)
    if output:
        from pathlib import Path

        Path(output).write_text(export.document, encoding="utf-8")
        click.echo(f"{export.feeds} feeds written to {output}", err=True)
    else:
        click.echo(export.document, nl=False)
