"""``watchlist``: list, show, add, edit, remove and test (backtest) the watchlists."""

from __future__ import annotations

import json
from typing import Any

import click

from monitor.app.cli.common import (
    DAYS,
    Context,
    echo_saved,
    errors_as_click,
    highlight,
    open_store,
    pass_ctx,
    progress,
    stdout_console,
)
from monitor.app.services.backtests import BacktestReport, backtest_watchlist, stories_since
from monitor.app.services.common import Saved, UnknownWatchlistError
from monitor.app.services.watchlists import (
    WatchlistChanges,
    edit_watchlist,
    remove_watchlist,
    save_watchlist,
    watchlist_detail,
)
from monitor.errors import QuerySyntaxError

_BACKFILL_HELP = (
    "Also match the stored stories of the last DAYS (3, 12h, 2w; a bare number: days) and queue their alerts."
)


@click.group()
def watchlist() -> None:
    """List, show, add, edit, remove and test the watchlists of the config file.

    Edits keep the file's comments, order and formatting, are validated like the
    daemon validates, and are written atomically; a running daemon notices the change
    and reloads (a new watchlist alerts only on new stories, unless --backfill DAYS).

    Example:

    \b
        news-monitor watchlist add kursk --query '"North Korea" AND Kursk' --notify email
    """


def _echo_edit(saved: Saved, path: str) -> None:
    """What an edit did: the change, then its backfill (an error when the backfill failed)."""
    if not saved.changes and saved.backfill is None and saved.backfill_error is None:
        click.echo(f"nothing changed: watchlist {saved.name!r} already reads so ({path} not written)")
        return
    echo_saved(path, saved.summary)
    if saved.backfill_error is not None:
        raise click.ClickException(saved.backfill_error)
    b = saved.backfill
    if b is None:
        return
    if b.skipped:
        click.echo(b.skipped, err=True)
        return
    click.echo(
        f"backfill: {b.scanned} stories of the last {b.days:g} days scanned, {b.matches} new matches, "
        f"{b.alerts} alerts queued (a running daemon sends them; or run `news-monitor poll`)"
    )


@watchlist.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def watchlist_list(ctx: Context, as_json: bool) -> None:
    """List the watchlists: name, state, targets and query.

    Example:

    \b
        news-monitor watchlist list --json
    """
    with errors_as_click():
        config = ctx.loaded.config
    rows: list[dict[str, Any]] = [
        {"name": w.name, "enabled": w.enabled, "notify": w.notify, "stem": w.stem, "query": w.query}
        for w in config.watchlists
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for r in rows:
        state = "" if r["enabled"] else "  (disabled)"
        click.echo(f"{r['name']}{state}  -> {', '.join(r['notify']) or '-'}")
        click.echo(f"    {r['query']}")


@watchlist.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def watchlist_show(ctx: Context, name: str, as_json: bool) -> None:
    """Show one watchlist, where it is in the file, and its latest matches.

    Example:

    \b
        news-monitor watchlist show kursk-troops
    """
    with errors_as_click():
        loaded = ctx.loaded
        try:
            with open_store(loaded) as store:
                detail = watchlist_detail(loaded, store, name)
        except UnknownWatchlistError as exc:
            raise click.BadParameter(str(exc), param_hint="NAME") from None
    wl = detail.watchlist
    if as_json:
        out = {
            **wl.model_dump(),
            "file": detail.file,
            "line": detail.line,
            "recent_matches": [
                {"story": m.story_id, "title": m.title, "terms": m.terms, "matched_at": m.matched_at.isoformat()}
                for m in detail.recent
            ],
        }
        click.echo(json.dumps(out, indent=2, ensure_ascii=False, default=str))
        return
    click.echo(f"{wl.name}  ({detail.file}:{detail.line})")
    click.echo(f"  query:   {wl.query}")
    click.echo(f"  notify:  {', '.join(wl.notify) or '-'}")
    click.echo(f"  enabled: {'yes' if wl.enabled else 'no'}")
    if wl.stem:
        click.echo(f"  stem:    {', '.join(wl.stem)}")
    if wl.description:
        click.echo(f"  about:   {wl.description}")
    click.echo("  latest matches:" if detail.recent else "  no stored matches yet")
    for m in detail.recent:
        click.echo(f"    #{m.story_id} {m.matched_at:%Y-%m-%d %H:%M}  {m.title}  [{', '.join(m.terms)}]")


@watchlist.command("add")
@click.argument("name")
@click.option("--query", "-q", required=True, help="The query (see the README's query language).")
@click.option("--notify", "-n", "notify", multiple=True, required=True, help="Target to alert (repeatable).")
@click.option("--stem", multiple=True, type=click.Choice(["en", "fr", "ru", "uk"]), help="Light stemming (repeatable).")
@click.option("--description", default=None, help="A note for people reading the config.")
@click.option("--disabled", is_flag=True, help="Add it switched off.")
@click.option("--backfill", type=DAYS, metavar="DAYS", help=_BACKFILL_HELP)
@pass_ctx
def watchlist_add(
    ctx: Context,
    name: str,
    query: str,
    notify: tuple[str, ...],
    stem: tuple[str, ...],
    description: str | None,
    disabled: bool,
    backfill: float | None,
) -> None:
    """Add a watchlist to the config file.

    Without --backfill, only stories that arrive from now on can alert.

    Example:

    \b
        news-monitor watchlist add kursk --query 'Kursk AND (troops OR soldats)' --notify email --backfill 3
    """
    from monitor.config.edit import WatchlistSpec

    spec = WatchlistSpec(name, query, tuple(notify), tuple(stem), not disabled, description or None)
    with errors_as_click():
        saved = save_watchlist(ctx.config_path, spec, backfill_days=backfill, progress=progress)
    _echo_edit(saved, ctx.config_path)


@watchlist.command("edit")
@click.argument("name")
@click.option("--query", "-q", default=None, help="New query.")
@click.option("--notify", "-n", "notify", multiple=True, help="New targets (repeatable; replaces the list).")
@click.option("--stem", multiple=True, type=click.Choice(["en", "fr", "ru", "uk"]), help="New stemming languages.")
@click.option("--no-stem", is_flag=True, help="Switch stemming off.")
@click.option("--enable/--disable", "enabled", default=None, help="Switch the watchlist on or off.")
@click.option("--description", default=None, help="New note ('' removes it).")
@click.option("--rename", default=None, metavar="NEW", help="New name (stored matches keep the old one).")
@click.option("--backfill", type=DAYS, metavar="DAYS", help=_BACKFILL_HELP)
@pass_ctx
def watchlist_edit(
    ctx: Context,
    name: str,
    query: str | None,
    notify: tuple[str, ...],
    stem: tuple[str, ...],
    no_stem: bool,
    enabled: bool | None,
    description: str | None,
    rename: str | None,
    backfill: float | None,
) -> None:
    """Change a watchlist in place (other settings, comments and order are kept).

    Example:

    \b
        news-monitor watchlist edit kursk --query 'Kursk AND troops' --notify email --notify slack
    """
    changes = WatchlistChanges(query, notify, stem, no_stem, enabled, description, rename)
    with errors_as_click():
        saved = edit_watchlist(ctx.config_path, name, changes, backfill_days=backfill, progress=progress)
    _echo_edit(saved, ctx.config_path)


@watchlist.command("remove")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def watchlist_remove(ctx: Context, name: str, yes: bool) -> None:
    """Remove a watchlist from the config file (its stored matches and alerts stay).

    Example:

    \b
        news-monitor watchlist remove kursk --yes
    """

    def confirm() -> None:
        click.confirm(f"Remove watchlist {name!r} from {ctx.config_path}?", abort=True)

    with errors_as_click():
        saved = remove_watchlist(ctx.config_path, name, confirm=None if yes else confirm)
    echo_saved(ctx.config_path, saved.summary)


@watchlist.command("test")
@click.argument("name", required=False)
@click.option("--query", "-q", default=None, help="Test this query (with NAME: compare it with NAME's).")
@click.option(
    "--days",
    default=7.0,
    show_default=True,
    type=DAYS,
    help="Stories published in the last DAYS (7, 36h, 2w; a bare number: days).",
)
@click.option("--show", "show", default=20, show_default=True, help="Matching stories to list.")
@click.option("--misses", default=10, show_default=True, help="Non-matching stories to list (newest).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def watchlist_test(
    ctx: Context, name: str | None, query: str | None, days: float, show: int, misses: int, as_json: bool
) -> None:
    """Backtest: which stored stories of the last N days a watchlist (or query) would match.

    Prints counts, the matched terms (and how often each fired), the matching stories
    and the newest ones that would not match. With NAME and --query, the query is
    compared with NAME's current one: stories gained and lost.

    Example:

    \b
        news-monitor watchlist test kursk-troops --days 14 --query '@dprk AND Kursk'
    """
    if name is None and query is None:
        raise click.UsageError("give a watchlist NAME, or --query, or both")
    with errors_as_click():
        loaded = ctx.loaded
        try:
            with open_store(loaded) as store:
                report = backtest_watchlist(
                    loaded.config,
                    stories_since(store),
                    days=days,
                    name=name,
                    query=query,
                    compare_with=name if query is not None else None,
                    progress=progress,
                )
        except UnknownWatchlistError as exc:
            raise click.BadParameter(str(exc), param_hint="NAME") from None
        except QuerySyntaxError as exc:
            if query is None:
                raise
            raise click.ClickException(f"--query: {exc.message}\n{exc.caret()}") from None
    if as_json:
        click.echo(json.dumps(_backtest_json(report, name, misses), indent=2, ensure_ascii=False))
    else:
        _print_backtest(report, name, query, show, misses)


def _story_json(m: Any) -> dict[str, Any]:
    s = m.story if hasattr(m, "story") else m
    out = {"id": s.id, "feed": s.feed, "published": s.published_at.isoformat(), "title": s.title}
    if hasattr(m, "result"):
        out["terms"] = list(m.result.terms)
    return out


def _backtest_json(report: BacktestReport, name: str | None, misses: int) -> dict[str, Any]:
    result = report.result
    out: dict[str, Any] = {
        "watchlist": name,
        "query": report.query,
        "days": report.days,
        "stories": result.total,
        "matched_count": len(result.matched),
        "unmatched_count": len(result.unmatched),
        "terms": dict(result.term_counts.most_common()),
        "feeds": dict(result.feed_counts.most_common()),
        "matched": [_story_json(m) for m in result.matched],
        "unmatched": [_story_json(s) for s in result.unmatched[:misses]],
    }
    if report.before is not None:
        out["gained"] = [_story_json(m) for m in report.gained]
        out["lost"] = [_story_json(m) for m in report.lost]
    return out


def _print_backtest(report: BacktestReport, name: str | None, query: str | None, show: int, misses: int) -> None:
    from rich.markup import escape

    from monitor.matching.backtest import hit_spans

    console = stdout_console()
    markup = console.is_terminal
    result, gained, lost = report.result, report.gained, report.lost

    def line(text: str) -> None:
        console.print(text if markup else escape(text), soft_wrap=True)

    pct = 100.0 * len(result.matched) / result.total if result.total else 0.0
    what = f"watchlist {name!r}" if name and query is None else f"query {query!r}"
    line(escape(f"{what} over {result.total} stories published in the last {report.days:g} days:"))
    line(escape(f"  {len(result.matched)} would match ({pct:.1f} %), {len(result.unmatched)} would not"))
    if report.before is not None:
        line(escape(f"  compared with {name!r} now: {len(gained)} gained, {len(lost)} lost"))
    if result.term_counts:
        terms = ", ".join(f"{t} ×{n}" for t, n in result.term_counts.most_common(15))
        line(escape(f"  terms that fired: {terms}"))
    if result.feed_counts:
        line(escape("  by feed: " + ", ".join(f"{f} {n}" for f, n in result.feed_counts.most_common(10))))

    def show_match(m: Any, mark: str = " ") -> None:
        s = m.story
        title = highlight(s.title, hit_spans(m.result, "title"), markup=markup)
        head = escape(f"{mark} {s.published_at:%Y-%m-%d %H:%M}  {s.feed}  #{s.id}  ")
        line(head + (title if markup else escape(s.title)))
        line(escape(f"      terms: {', '.join(m.result.terms)}"))

    if gained:
        line(escape(f"\nGAINED ({len(gained)})"))
        for m in gained[:show]:
            show_match(m, "+")
    if lost:
        line(escape(f"\nLOST ({len(lost)})"))
        for m in lost[:show]:
            show_match(m, "-")
    newest = f", the {show} newest)" if len(result.matched) > show else ")"
    line(escape(f"\nWOULD MATCH ({len(result.matched)}{newest}"))
    for m in result.matched[:show]:
        show_match(m)
    if misses and result.unmatched:
        n = min(misses, len(result.unmatched))
        line(escape(f"\nWOULD NOT MATCH ({len(result.unmatched)}, the {n} newest)"))
        for s in result.unmatched[:n]:
            line(escape(f"  {s.published_at:%Y-%m-%d %H:%M}  {s.feed}  #{s.id}  {s.title}"))
