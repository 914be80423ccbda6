"""``stories``: search stored stories in the watchlist query language, one story in
detail, event clusters (``clusters`` lists them, ``recluster`` builds them again with the
current settings).

Links are shown through :func:`~monitor.app.services.stories.story_link` (no user-info),
as the web page shows them. ``clusters``, ``recluster`` and the cluster part of ``show``
are over :mod:`monitor.app.services.clusters`.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from monitor.app.cli.common import DAYS, Context, errors_as_click, highlight, open_store, pass_ctx, stdout_console
from monitor.app.services.clusters import (
    Cluster,
    RecentClusters,
    Recluster,
    StoryInCluster,
    clusters_json,
    describe_terms,
    member_json,
    recent_clusters,
    recluster,
    story_in_cluster,
)
from monitor.app.services.common import require_watchlist
from monitor.app.services.stories import StorySearch, search, story_link
from monitor.errors import QuerySyntaxError
from monitor.storage.stories import ClusterMember

if TYPE_CHECKING:
    from rich.console import Console


@click.group()
def stories() -> None:
    """Search stored stories, show one with its cluster, matches and alerts, list and
    re-build event clusters.

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

    The cluster part says which cluster the story joined and why (the score and the
    features it shares with the cluster's closest story), and lists the other stories
    of the cluster ("also reported by": outlet, language, title, link).

    Example:

    \b
        news-monitor stories show 1234
    """
    with errors_as_click(), open_store(ctx.loaded) as store:
        found = story_in_cluster(store, story_id)
    if found is None:
        raise click.ClickException(f"no story #{story_id}")
    if as_json:
        click.echo(json.dumps(_show_json(found), indent=2, ensure_ascii=False, default=str))
        return
    detail = found.detail
    s = detail.story
    click.echo(f"#{s.id}  {s.title}")
    click.echo(f"  link:      {story_link(s.link) or '-'}")
    click.echo(f"  published: {s.published_at:%Y-%m-%d %H:%M} UTC   first seen {s.first_seen_at:%Y-%m-%d %H:%M} UTC")
    click.echo(f"  feed:      {s.feed}" + (f"   language {detail.language}" if detail.language else ""))
    if s.summary:
        click.echo(f"  summary:   {s.summary[:500]}")
    click.echo("  seen in:   " + ", ".join(f"{n} ({t:%m-%d %H:%M})" for n, t in detail.sightings))
    _print_story_cluster(found)
    click.echo("  matches:" if detail.matches else "  matches:   none")
    for wl, terms, when, alerted in detail.matches:
        how = "alerted" if alerted else "recorded without alert"
        click.echo(f"    {wl}: {', '.join(terms)}  ({how}, {when:%Y-%m-%d %H:%M})")
    click.echo("  alerts:" if detail.alerts else "  alerts:    none")
    for a in detail.alerts:
        sent = f" at {a.sent_at:%Y-%m-%d %H:%M}" if a.sent_at else ""
        err = f" — {a.last_error}" if a.last_error and a.status != "sent" else ""
        click.echo(f"    {a.watchlist} -> {a.target}: {a.status}{sent}, {a.attempts} attempt(s){err}")


def _show_json(found: StoryInCluster) -> dict[str, object]:
    import dataclasses

    out = dataclasses.asdict(found.detail)
    for story in (out["story"], *out["cluster"]):
        story["link"] = story_link(story["link"])
    me = found.member
    out["joined"] = (
        {
            "cluster": found.detail.cluster_id,
            "first": member_json(found.first),
            "score": me.score,
            "shared": member_json(me)["shared"],
            "features": list(me.terms),
        }
        if found.joined and me is not None and found.first is not None
        else None
    )
    out["also_reported_by"] = [member_json(m) for m in found.others]
    return out


def _print_story_cluster(found: StoryInCluster) -> None:
    me, first = found.member, found.first
    if found.joined and me is not None and first is not None:
        score = f"score {me.score:.3f}" if me.score is not None else "score -"
        why = describe_terms(me.terms)
        click.echo(f"  cluster:   joined #{first.story_id} ({first.feed}: {first.title})")
        click.echo(f"             {score}" + (f"; {why}" if why else ""))
    elif found.others:
        click.echo(f"  cluster:   #{found.detail.cluster_id}, first story of its cluster")
    else:
        click.echo("  cluster:   none (no other outlet told this event)")
    if found.others:
        click.echo("  also reported by:")
        for m in found.others:
            click.echo(f"    {_member_line(m)}")


def _member_line(m: ClusterMember) -> str:
    lang = f" ({m.language})" if m.language else ""
    return f"#{m.story_id} {m.feed}{lang}: {m.title}  {story_link(m.link) or '-'}"


@stories.command("clusters")
@click.option(
    "--days",
    type=DAYS,
    default=1.0,
    metavar="DURATION",
    help="Clusters with a story first seen in this span back, e.g. 12h, 7d (a bare number: days; default 1d).",
)
@click.option(
    "--min-size",
    default=1,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Only clusters of at least this many stories (2: events several outlets told).",
)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), help="Most clusters shown.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (format above).")
@pass_ctx
def stories_clusters(ctx: Context, days: float, min_size: int, limit: int, as_json: bool) -> None:
    """List the event clusters with a story first seen recently, newest activity first.

    Each cluster lists its stories, first seen first (its first story leads): outlet,
    language, title, link, publication time, and for each later story why it joined:
    its score and the features it shares with the cluster's closest story, by kind
    (names, concepts, acts, issuers, numbers, words, word pairs).

    \b
    --json prints one object:
      {"days", "min_size", "limit", "clusters": [{"id", "size", "last_seen",
       "members": [{"id", "outlet", "language", "title", "link", "published",
                    "first_seen", "score", "shared", "features"}]}]}
    "id" of a cluster is the id of its first story; times are ISO 8601 UTC; "score" is
    null and "shared" empty for the first story; "shared" maps a kind to its values;
    "features" are the raw features (n: name, t: name in the title, c: concept, a: act,
    i: issuer, #: number, w: word, s: word pair).

    Example:

    \b
        news-monitor stories clusters --days 2d --min-size 2
    """
    with errors_as_click(), open_store(ctx.loaded) as store:
        found = recent_clusters(store, days=days, min_size=min_size, limit=limit)
    if as_json:
        click.echo(json.dumps(clusters_json(found), indent=2, ensure_ascii=False))
    else:
        _print_clusters(found)


def _print_clusters(found: RecentClusters) -> None:
    from rich.markup import escape

    console = stdout_console()
    if not found.clusters:
        size = f" of {found.min_size} stories or more" if found.min_size > 1 else ""
        console.print(escape(f"no cluster{size} with a story first seen in the last {_span(found.days)}"))
        return
    for c in found.clusters:
        _print_cluster(console, c)
    more = f" (the first {found.limit})" if len(found.clusters) == found.limit else ""
    console.print(escape(f"{len(found.clusters)} clusters{more}"))


def _print_cluster(console: Console, c: Cluster) -> None:
    from rich.markup import escape

    console.print(escape(f"cluster #{c.id}  {len(c.members)} stories, last seen {c.last_seen:%Y-%m-%d %H:%M} UTC"))
    for m in c.members:
        lang = f" ({m.language})" if m.language else ""
        console.print(escape(f"  #{m.story_id}  {m.published_at:%Y-%m-%d %H:%M}  {m.feed}{lang}"), soft_wrap=True)
        console.print("    " + escape(m.title), soft_wrap=True)
        console.print("    " + escape(story_link(m.link) or "-"), soft_wrap=True)
        if m.story_id != c.id:
            why = describe_terms(m.terms)
            score = f"{m.score:.3f}" if m.score is not None else "-"
            console.print(escape(f"    joined: score {score}" + (f"; {why}" if why else "")), soft_wrap=True)
    console.print("")


@stories.command("recluster")
@click.option(
    "--days",
    type=DAYS,
    required=True,
    metavar="DURATION",
    help="Re-cluster the stories first seen in this span back, e.g. 12h, 7d (a bare number: days).",
)
@click.option("--dry-run", is_flag=True, help="Show what would change; write nothing.")
@pass_ctx
def stories_recluster(ctx: Context, days: float, dry_run: bool) -> None:
    """Re-cluster recent stories with the config's current cluster: settings and aliases.

    The stories first seen in the last --days are placed again, in the order they
    were first seen, by a fresh clusterer; the stories of the span before are taken
    as they are stored (so a recent story may still join an older cluster) and are
    not rewritten. Each story's cluster, score and shared features are written in one
    transaction. Nothing is sent: no alert is queued, no match changes; alerts
    already queued stay with the cluster they were queued for. Prints the clusters
    before and after and the stories that moved.

    A running daemon keeps its clusters in memory: it uses the new clusters after a
    restart.

    Example:

    \b
        news-monitor stories recluster --days 3d --dry-run
    """
    with errors_as_click(), open_store(ctx.loaded) as store:
        done = recluster(store, ctx.loaded.config, days, dry_run=dry_run)
    _print_recluster(done)


def _span(days: float) -> str:
    return "day" if days == 1 else f"{days:g} days"


def _print_recluster(done: Recluster) -> None:
    from rich.markup import escape

    console = stdout_console()
    if not done.enabled:
        console.print("clustering is off in the config (cluster.enabled): every story is a cluster of its own")
    console.print(
        escape(
            f"{done.stories} stories first seen in the last {_span(done.days)} "
            f"({done.context} earlier stories taken as they are)"
        )
    )
    console.print(f"clusters: {done.clusters_before} before, {done.clusters_after} after")
    for mv in done.moves:
        why = describe_terms(mv.terms)
        where = f"cluster #{mv.after}" if mv.after != mv.story_id else "a cluster of its own"
        score = f", score {mv.score:.3f}" if mv.score is not None else ""
        console.print(escape(f"  #{mv.story_id} {mv.feed}: {mv.title}"), soft_wrap=True)
        console.print(
            escape(f"    moved from cluster #{mv.before} to {where}{score}" + (f"; {why}" if why else "")),
            soft_wrap=True,
        )
    console.print(f"{len(done.moves)} stories moved, {done.rescored} kept their cluster with a new score")
    if done.dry_run:
        console.print("dry run: nothing written")
    else:
        console.print(f"{done.written} stories written; a running daemon uses the new clusters after a restart")
