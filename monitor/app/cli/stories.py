"""``stories``: search stored stories in the watchlist query language, and one story in detail.

Links are shown through :func:`~monitor.app.services.stories.story_link` (no user-info),
as the web page shows them.
"""

from __future__ import annotations

import json

import click

from monitor.app.cli.common import DAYS, Context, errors_as_click, highlight, open_store, pass_ctx, stdout_console
from monitor.app.services.common import require_watchlist
from monitor.app.services.stories import StorySearch, search, story_detail, story_link
from monitor.errors import QuerySyntaxError


@click.group()
def stories() -> None:
    """Search stored stories, and show one with its cluster, matches and alerts.

    Example:

    \b
        news-monitor stories search '"North Korea" troops NOT exercise' --since 7d
    """


@stories.command("search")
@click.argument("query")
@click.option("--watchlist", "-w", default=None, help="Only stories this watchlist matched.")
@click.option(
    "--since",
    type=DAYS,
    default=None,
    metavar="DURATION",
    help="Only stories published since, e.g. 7d, 12h (a bare number: days).",
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000), help="Most stories shown.")
@click.option(
    "--sort",
    type=click.Choice(["date", "relevance"]),
    default="date",
    show_default=True,
    help="Newest first, or best match first.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def stories_search(
    ctx: Context, query: str, watchlist: str | None, since: float | None, limit: int, sort: str, as_json: bool
) -> None:
    """Search stored stories with a watchlist query (titles and summaries).

    The query language of watchlists: "quoted phrases", AND, OR, NOT (or -word),
    NEAR/n, prefix*, title: and summary:, @alias groups from the config; case and
    accents do not matter. The stories shown are those a watchlist with this query
    would match, its matching words highlighted.

    Example:

    \b
        news-monitor stories search '@dprk AND (Kursk OR Koursk) NOT exercise' --since 7d
    """
    with errors_as_click():
        config = ctx.loaded.config
        if watchlist is not None:
            require_watchlist(config, watchlist)
        try:
            with open_store(ctx.loaded) as store:
                found = search(
                    store,
                    query,
                    aliases=config.aliases,
                    since_days=since,
                    watchlist=watchlist,
                    limit=limit,
                    order=sort,
                )
        except QuerySyntaxError as exc:
            raise click.BadParameter(f"{exc.message}\n{exc.caret()}", param_hint="QUERY") from None
    if as_json:
        click.echo(json.dumps(_search_json(found), indent=2, ensure_ascii=False))
    else:
        _print_search(found, limit)


def _search_json(found: StorySearch) -> dict[str, object]:
    out = [
        {
            "id": h.story.id,
            "feed": h.story.feed,
            "published": h.story.published_at.isoformat(),
            "title": h.story.title,
            "link": story_link(h.story.link),
            "watchlists": list(h.watchlists),
            "terms": list(dict.fromkeys(hit.term for hit in h.hits)),
        }
        for h in found.hits
    ]
    return {"query": found.query, "engine": found.engine, "stories": out}


def _print_search(found: StorySearch, limit: int) -> None:
    from rich.markup import escape

    from monitor.storage.search import snippet

    console = stdout_console()
    markup = console.is_terminal
    if not found.hits:
        console.print(escape(f"no stored story matches {found.query!r}"))
        return
    for h in found.hits:
        s = h.story
        title = highlight(s.title, h.title_spans, markup=markup)
        wls = f"  [{', '.join(h.watchlists)}]" if h.watchlists else ""
        console.print(escape(f"#{s.id}  {s.published_at:%Y-%m-%d %H:%M}  {s.feed}{wls}"), soft_wrap=True)
        console.print("  " + (title if markup else escape(s.title)), soft_wrap=True)
        text, spans = snippet(s.summary, list(h.summary_spans), 200)
        if text:
            console.print("  " + (highlight(text, spans, markup=True) if markup else escape(text)), soft_wrap=True)
    console.print(escape(f"{len(found.hits)} stories" + (f" (the first {limit})" if len(found.hits) == limit else "")))


@stories.command("show")
@click.argument("story_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def stories_show(ctx: Context, story_id: int, as_json: bool) -> None:
    """Show a stored story: where it was seen, its cluster, its matches and alerts.

    Example:

    \b
        news-monitor stories show 1234
    """
    with errors_as_click(), open_store(ctx.loaded) as store:
        detail = story_detail(store, story_id)
    if detail is None:
        raise click.ClickException(f"no story #{story_id}")
    s = detail.story
    if as_json:
        import dataclasses

        out = dataclasses.asdict(detail)
        for story in (out["story"], *out["cluster"]):
            story["link"] = story_link(story["link"])
        click.echo(json.dumps(out, indent=2, ensure_ascii=False, default=str))
        return
    click.echo(f"#{s.id}  {s.title}")
    click.echo(f"  link:      {story_link(s.link) or '-'}")
    click.echo(f"  published: {s.published_at:%Y-%m-%d %H:%M} UTC   first seen {s.first_seen_at:%Y-%m-%d %H:%M} UTC")
    click.echo(f"  feed:      {s.feed}" + (f"   language {detail.language}" if detail.language else ""))
    if s.summary:
        click.echo(f"  summary:   {s.summary[:500]}")
    click.echo("  seen in:   " + ", ".join(f"{n} ({t:%m-%d %H:%M})" for n, t in detail.sightings))
    if detail.cluster:
        click.echo("  same story elsewhere (cluster):")
        for c in detail.cluster:
            click.echo(f"    #{c.id} {c.feed}: {c.title}")
    click.echo("  matches:" if detail.matches else "  matches:   none")
    for wl, terms, when, alerted in detail.matches:
        how = "alerted" if alerted else "recorded without alert"
        click.echo(f"    {wl}: {', '.join(terms)}  ({how}, {when:%Y-%m-%d %H:%M})")
    click.echo("  alerts:" if detail.alerts else "  alerts:    none")
    for a in detail.alerts:
        sent = f" at {a.sent_at:%Y-%m-%d %H:%M}" if a.sent_at else ""
        err = f" — {a.last_error}" if a.last_error and a.status != "sent" else ""
        click.echo(f"    {a.watchlist} -> {a.target}: {a.status}{sent}, {a.attempts} attempt(s){err}")
