"""The command line: a thin click layer over the library.

Each command's docstring is its ``--help`` text, with an example; library errors
(:class:`~monitor.errors.MonitorError`) become ``click.ClickException`` with the
library's message, so a user sees ``config.yaml:42: watchlists[2].notify: unknown
target 'slak'`` and never a traceback.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from monitor import __version__
from monitor.config.model import DEFAULT_CONFIG, LoadedConfig, load_config
from monitor.errors import ConfigError, MonitorError, QuerySyntaxError

F = TypeVar("F", bound=Callable[..., Any])

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    """One line per event, to stderr (the journal under systemd)."""
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S%z", force=True)
    # Libraries' chatter stays out unless asked for; Apprise and httpx may log URLs.
    for name in ("apprise", "httpx", "httpcore", "apscheduler", "alembic"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))


class Context:
    def __init__(self, config_path: str, log_level: str | None) -> None:
        self.config_path = config_path
        self.log_level = log_level
        self._loaded: LoadedConfig | None = None

    @property
    def loaded(self) -> LoadedConfig:
        if self._loaded is None:
            self._loaded = load_config(self.config_path)
            setup_logging(self.log_level or self._loaded.config.log_level)
        return self._loaded


pass_ctx = click.make_pass_decorator(Context)


@contextmanager
def errors_as_click() -> Iterator[None]:
    """Library errors -> click errors with the library's own actionable message."""
    try:
        yield
    except QuerySyntaxError as exc:
        raise click.ClickException(f"{exc}\n{exc.caret()}") from None
    except MonitorError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "-c",
    "config_path",
    default=DEFAULT_CONFIG,
    show_default=True,
    envvar="NEWS_MONITOR_CONFIG",
    type=click.Path(dir_okay=False),
    help="Config file (env NEWS_MONITOR_CONFIG).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default=None,
    help="Override the config's log_level.",
)
@click.version_option(__version__, prog_name="news-monitor")
@click.pass_context
def cli(ctx: click.Context, config_path: str, log_level: str | None) -> None:
    """news-monitor: poll news feeds, match watchlists, alert once per story.

    Example:

        news-monitor --config /etc/news-monitor/config.yaml run
    """
    ctx.obj = Context(config_path, log_level.upper() if log_level else None)
    setup_logging(ctx.obj.log_level or "INFO")


@cli.command()
@pass_ctx
def run(ctx: Context) -> None:
    """Run the daemon: poll feeds on schedule and deliver alerts until SIGTERM.

    SIGHUP reloads the config; an invalid new config is rejected and logged.

    Example:

        news-monitor --config config.yaml run
    """
    from monitor.app.daemon import Daemon

    with errors_as_click():
        ctx.loaded  # noqa: B018 - validate and configure logging before anything starts
        daemon = Daemon(ctx.config_path)
    sys.exit(daemon.run())


@cli.command()
@click.option("--once", is_flag=True, help="Poll every enabled feed now, ignoring schedules and backoff.")
@click.option("--feed", "feeds", multiple=True, metavar="NAME", help="Only this feed (repeatable).")
@click.option("--catchup", is_flag=True, help="Record new stories as seen without alerting.")
@click.option("--no-deliver", is_flag=True, help="Queue alerts but do not send them.")
@pass_ctx
def poll(ctx: Context, once: bool, feeds: tuple[str, ...], catchup: bool, no_deliver: bool) -> None:
    """Run one poll cycle, deliver the alerts, and exit (for cron or a first try).

    Without --once only feeds that are due are polled (their schedule and backoff
    are respected), which suits a cron job.

    Example:

        news-monitor poll --once
    """
    from monitor.app.daemon import Runtime

    with errors_as_click():
        loaded = ctx.loaded
        unknown = [f for f in feeds if f not in {c.name for c in loaded.config.feeds}]
        if unknown:
            raise click.BadParameter(f"unknown feed(s): {', '.join(unknown)}", param_hint="--feed")
        rt = Runtime.build(loaded)
        try:
            report = rt.pipeline.run_cycle(force=once, names=list(feeds) or None, catchup=catchup)
            click.echo(report.summary(), err=True)
            for o in report.errors:
                click.echo(f"  {o.feed}: {o.reason}: {o.error}", err=True)
            if not no_deliver:
                result = rt.deliver()
                click.echo(
                    f"delivery: {result.sent} alerts sent in {result.messages} messages, "
                    f"{result.retrying} to retry, {result.given_up} given up",
                    err=True,
                )
        finally:
            rt.close()


@cli.command("check-config")
@pass_ctx
def check_config(ctx: Context) -> None:
    """Validate the config file (and its queries and targets) without starting anything.

    Exits 1 with the file, line and field of the first error.

    Example:

        news-monitor --config config.yaml check-config
    """
    from monitor.delivery.notify import Notifier
    from monitor.delivery.render import Renderer

    with errors_as_click():
        loaded = ctx.loaded
        cfg = loaded.config
        notifier = Notifier(cfg.target_urls, renderer=Renderer(timezone=cfg.timezone, overrides=cfg.templates))
    click.echo(f"{loaded.path}: OK")
    click.echo(f"  database:   {_safe_db(loaded.database_url)}")
    click.echo(f"  feeds:      {len(cfg.feeds)} ({sum(not f.enabled for f in cfg.feeds)} disabled)")
    click.echo(f"  watchlists: {', '.join(w.name for w in cfg.watchlists) or '-'}")
    for name in notifier.names:
        click.echo(f"  target {name}: {notifier.describe(name)}")


@cli.command("test-notify")
@click.argument("target")
@pass_ctx
def test_notify(ctx: Context, target: str) -> None:
    """Send a sample alert to TARGET through the real template.

    Example:

        news-monitor test-notify email
    """
    from monitor.delivery.notify import Notifier
    from monitor.delivery.render import Renderer

    with errors_as_click():
        cfg = ctx.loaded.config
        renderer = Renderer(timezone=cfg.timezone, overrides=cfg.templates)
        notifier = Notifier(cfg.target_urls, renderer=renderer, timeout=cfg.delivery.timeout)
        if target not in notifier.names:
            raise click.BadParameter(
                f"unknown target {target!r} (known: {', '.join(notifier.names) or 'none'})",
                param_hint="TARGET",
            )
        notifier.send(target, renderer.alert(renderer.sample(), notifier.kind(target)))
    click.echo(f"sample alert sent to {target} ({notifier.describe(target)})")


@cli.command()
@click.option("--watchlist", "-w", "names", multiple=True, help="Only these watchlists (repeatable).")
@pass_ctx
def match(ctx: Context, names: tuple[str, ...]) -> None:
    """Try watchlists offline: JSON lines in, JSON lines out.

    Reads one JSON object per line on stdin, {"id", "title", "summary"}, and prints
    one per input: {"id", "watchlists": [...], "terms": {watchlist: [terms]}}.

    Example:

        echo '{"id": 1, "title": "Pyongyang troops in Kursk", "summary": ""}' | news-monitor match
    """
    from monitor.app.daemon import build_watch

    with errors_as_click():
        watch = build_watch(ctx.loaded.config)
    for lineno, line in enumerate(sys.stdin, 1):
        line = line.strip()
        if not line:
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise click.ClickException(f"stdin line {lineno}: invalid JSON object: {exc}") from None
        results = watch.matcher.match(str(item.get("title") or ""), str(item.get("summary") or ""))
        if names:
            results = [r for r in results if r.watchlist in names]
        out = {
            "id": item.get("id"),
            "watchlists": [r.watchlist for r in results],
            "terms": {r.watchlist: list(r.terms) for r in results},
        }
        click.echo(json.dumps(out, ensure_ascii=False))


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def feeds(click_ctx: click.Context, as_json: bool) -> None:
    """Feed status: state, last poll, last error, entries, next poll.

    Example:

        news-monitor feeds --json
    """
    if click_ctx.invoked_subcommand is not None:
        return
    from monitor.storage.store import Store

    ctx: Context = click_ctx.obj
    with errors_as_click():
        loaded = ctx.loaded
        store = Store(loaded.database_url)
        try:
            rows = store.feeds()
            alerts = store.alert_counts()
        finally:
            store.close()
    if as_json:
        click.echo(json.dumps({"feeds": [_feed_json(f) for f in rows], "alerts": alerts}, indent=2))
        return
    _print_feeds(rows, alerts)


def _feed_json(f: Any) -> dict[str, Any]:
    def iso(v: dt.datetime | None) -> str | None:
        return v.isoformat(timespec="seconds") if v else None

    return {
        "name": f.name,
        "url": f.fetch_url,
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
    }


_STATE_WORDS = {"ok": "ok", "backoff": "backing off", "disabled": "disabled", "new": "new"}


def _duration_text(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s % 3600 == 0:
        return f"{s // 3600}h"
    return f"{s // 60}m" if s < 7200 else f"{s / 3600:.1f}h"


def _interval_cell(f: Any) -> str:
    """The interval polls are scheduled with, and whether it was learned from the feed."""
    if f.learned_interval_s and f.learned_interval_s > f.interval_s:
        return f"{_duration_text(f.effective_interval)} (learned)"
    return _duration_text(f.interval_s)


def _ago(v: dt.datetime | None, now: dt.datetime) -> str:
    if v is None:
        return "never"
    s = int((now - v).total_seconds())
    future = s < 0
    s = abs(s)
    text = (
        f"{s}s"
        if s < 120
        else f"{s // 60}m"
        if s < 7200
        else f"{s // 3600}h"
        if s < 172800
        else f"{s // 86400}d"
    )
    return f"in {text}" if future else f"{text} ago"


def _print_feeds(rows: list[Any], alerts: dict[str, int]) -> None:
    from rich.console import Console
    from rich.table import Table

    now = dt.datetime.now(dt.UTC)
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
            f.name,
            f"[{styles.get(f.state, '')}]{_STATE_WORDS.get(f.state, f.state)}[/]",
            _ago(f.last_poll_at, now),
            _ago(f.last_success_at, now),
            str(f.consecutive_failures),
            str(f.entries_seen),
            _interval_cell(f),
            _ago(f.next_poll_at, now) if f.state != "disabled" else "-",
            error,
        )
    # Piped into a file or a script, do not fold columns to 80 characters.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table)
    pending = alerts.get("pending", 0) + alerts.get("sending", 0)
    console.print(
        f"alerts: {alerts.get('sent', 0)} sent, {pending} pending, "
        f"{alerts.get('failed', 0)} given up" + (" [red](see the log)[/]" if alerts.get("failed") else "")
    )


# --- editing watchlists and feeds, backtest, search, web (issues 3 and 6) ----------------


@contextmanager
def _progress(total: int, description: str) -> Iterator[Callable[[int], object]]:
    """A rich progress bar on a terminal; nothing at all otherwise (pipes and logs stay clean)."""
    from rich.console import Console

    console = Console(stderr=True)
    if not console.is_terminal or total <= 0:
        yield lambda _n: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


def _saved(path: str, what: str) -> None:
    click.echo(f"{what}; saved {path}")
    click.echo("A running daemon picks the change up within seconds (it watches the file).")


def _highlight(text: str, spans: list[tuple[int, int]], *, markup: bool) -> str:
    """Matched spans in bold on a terminal (rich markup); the text as it is otherwise."""
    if not markup:
        return text
    from rich.markup import escape

    out, pos = [], 0
    for s, e in spans:
        out += [escape(text[pos:s]), "[bold yellow]", escape(text[s:e]), "[/]"]
        pos = e
    out.append(escape(text[pos:]))
    return "".join(out)


def _store_for(loaded: LoadedConfig) -> Any:
    from monitor.storage.store import Store

    return Store(loaded.database_url)


def _run_backfill(loaded: LoadedConfig, name: str, days: float) -> None:
    from monitor.storage.search import backfill, watchlist_matcher

    config = loaded.config
    wl = config.watchlist(name)
    if not wl.enabled:
        click.echo(f"watchlist {name!r} is disabled: no backfill", err=True)
        return
    store = _store_for(loaded)
    try:
        from monitor.storage.search import days_ago

        total = len(store.stories_published_since(days_ago(days)))
        with _progress(total, f"backfill {name}") as advance:
            scanned, n_matches, n_alerts = backfill(
                store, watchlist_matcher(config, name), name, wl.notify, days=days, progress=advance
            )
    finally:
        store.close()
    click.echo(
        f"backfill: {scanned} stories of the last {days:g} days scanned, {n_matches} new matches, "
        f"{n_alerts} alerts queued (a running daemon sends them; or run `news-monitor poll`)"
    )


def _watchlist_spec_from(
    base: Any,
    *,
    name: str,
    query: str | None,
    notify: tuple[str, ...],
    stem: tuple[str, ...],
    no_stem: bool,
    enabled: bool | None,
    description: str | None,
) -> Any:
    from monitor.config.edit import WatchlistSpec

    return WatchlistSpec(
        name=name,
        query=base.query if query is None else query,
        notify=tuple(notify) or base.notify,
        stem=() if no_stem else (tuple(stem) or base.stem),
        enabled=base.enabled if enabled is None else enabled,
        description=base.description if description is None else (description or None),
    )


@cli.group()
def watchlist() -> None:
    """List, show, add, edit, remove and test the watchlists of the config file.

    Edits keep the file's comments, order and formatting, are validated like the
    daemon validates, and are written atomically; a running daemon notices the change
    and reloads (a new watchlist alerts only on new stories, unless --backfill DAYS).

    Example:

        news-monitor watchlist add kursk --query '"North Korea" AND Kursk' --notify email
    """


_BACKFILL_HELP = "Also match the stored stories of the last DAYS days and queue their alerts."


@watchlist.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def watchlist_list(ctx: Context, as_json: bool) -> None:
    """List the watchlists: name, state, targets and query.

    Example:

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

        news-monitor watchlist show kursk-troops
    """
    from monitor.config.edit import ConfigEditor

    with errors_as_click():
        loaded = ctx.loaded
        try:
            wl = loaded.config.watchlist(name)
        except KeyError:
            known = ", ".join(w.name for w in loaded.config.watchlists) or "none"
            raise click.BadParameter(f"no watchlist {name!r} (known: {known})", param_hint="NAME") from None
        line = ConfigEditor(loaded.path).line_of("watchlists", name)
        store = _store_for(loaded)
        try:
            recent = store.matched_stories(watchlist=name, limit=5)
        finally:
            store.close()
    if as_json:
        out = {
            **wl.model_dump(),
            "file": str(loaded.path),
            "line": line,
            "recent_matches": [
                {"story": m.story_id, "title": m.title, "terms": m.terms, "matched_at": m.matched_at.isoformat()}
                for m in recent
            ],
        }
        click.echo(json.dumps(out, indent=2, ensure_ascii=False, default=str))
        return
    click.echo(f"{wl.name}  ({loaded.path}:{line})")
    click.echo(f"  query:   {wl.query}")
    click.echo(f"  notify:  {', '.join(wl.notify) or '-'}")
    click.echo(f"  enabled: {'yes' if wl.enabled else 'no'}")
    if wl.stem:
        click.echo(f"  stem:    {', '.join(wl.stem)}")
    if wl.description:
        click.echo(f"  about:   {wl.description}")
    click.echo("  latest matches:" if recent else "  no stored matches yet")
    for m in recent:
        click.echo(f"    #{m.story_id} {m.matched_at:%Y-%m-%d %H:%M}  {m.title}  [{', '.join(m.terms)}]")


@watchlist.command("add")
@click.argument("name")
@click.option("--query", "-q", required=True, help="The query (see the README's query language).")
@click.option("--notify", "-n", "notify", multiple=True, required=True, help="Target to alert (repeatable).")
@click.option("--stem", multiple=True, type=click.Choice(["en", "fr"]), help="Light stemming (repeatable).")
@click.option("--description", default=None, help="A note for people reading the config.")
@click.option("--disabled", is_flag=True, help="Add it switched off.")
@click.option("--backfill", type=click.FloatRange(min=0, min_open=True), metavar="DAYS", help=_BACKFILL_HELP)
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

        news-monitor watchlist add kursk --query 'Kursk AND (troops OR soldats)' --notify email --backfill 3
    """
    from monitor.config.edit import ConfigEditor, WatchlistSpec

    with errors_as_click():
        editor = ConfigEditor(ctx.config_path)
        editor.add_watchlist(
            WatchlistSpec(name, query, tuple(notify), tuple(stem), not disabled, description or None)
        )
        editor.save()
        _saved(ctx.config_path, f"added watchlist {name!r}")
        if backfill:
            _run_backfill(load_config(ctx.config_path), name, backfill)


@watchlist.command("edit")
@click.argument("name")
@click.option("--query", "-q", default=None, help="New query.")
@click.option("--notify", "-n", "notify", multiple=True, help="New targets (repeatable; replaces the list).")
@click.option("--stem", multiple=True, type=click.Choice(["en", "fr"]), help="New stemming languages.")
@click.option("--no-stem", is_flag=True, help="Switch stemming off.")
@click.option("--enable/--disable", "enabled", default=None, help="Switch the watchlist on or off.")
@click.option("--description", default=None, help="New note ('' removes it).")
@click.option("--rename", default=None, metavar="NEW", help="New name (stored matches keep the old one).")
@click.option("--backfill", type=click.FloatRange(min=0, min_open=True), metavar="DAYS", help=_BACKFILL_HELP)
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

        news-monitor watchlist edit kursk --query 'Kursk AND troops' --notify email --notify slack
    """
    from monitor.config.edit import ConfigEditor

    with errors_as_click():
        editor = ConfigEditor(ctx.config_path)
        spec = _watchlist_spec_from(
            editor.watchlist(name),
            name=rename or name,
            query=query,
            notify=notify,
            stem=stem,
            no_stem=no_stem,
            enabled=enabled,
            description=description,
        )
        editor.update_watchlist(name, spec)
        editor.save()
        _saved(ctx.config_path, "; ".join(editor.changes))
        if backfill:
            _run_backfill(load_config(ctx.config_path), spec.name, backfill)


@watchlist.command("remove")
@click.argument("name")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def watchlist_remove(ctx: Context, name: str, yes: bool) -> None:
    """Remove a watchlist from the config file (its stored matches and alerts stay).

    Example:

        news-monitor watchlist remove kursk --yes
    """
    from monitor.config.edit import ConfigEditor

    with errors_as_click():
        editor = ConfigEditor(ctx.config_path)
        editor.remove_watchlist(name)
        if not yes:
            click.confirm(f"Remove watchlist {name!r} from {ctx.config_path}?", abort=True)
        editor.save()
    _saved(ctx.config_path, f"removed watchlist {name!r}")


@watchlist.command("test")
@click.argument("name", required=False)
@click.option("--query", "-q", default=None, help="Test this query (with NAME: compare it with NAME's).")
@click.option("--days", default=7.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
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

        news-monitor watchlist test kursk-troops --days 14 --query '@dprk AND Kursk'
    """
    from rich.console import Console

    from monitor.storage.search import backtest, days_ago, hit_spans, watchlist_matcher

    if name is None and query is None:
        raise click.UsageError("give a watchlist NAME, or --query, or both")
    with errors_as_click():
        loaded = ctx.loaded
        config = loaded.config
        if name is not None:
            try:
                config.watchlist(name)
            except KeyError:
                known = ", ".join(w.name for w in config.watchlists) or "none"
                raise click.BadParameter(f"no watchlist {name!r} (known: {known})", param_hint="NAME") from None
        label = name or "query"
        try:
            matcher = watchlist_matcher(config, label, query=query)
        except QuerySyntaxError as exc:
            if query is None:
                raise
            detail = exc.message.removeprefix(f"watchlist {label!r}: ")
            raise click.ClickException(f"--query: {detail}\n{exc.caret()}") from None
        baseline = watchlist_matcher(config, name) if name is not None and query is not None else None
        store = _store_for(loaded)
        try:
            stories = store.stories_published_since(days_ago(days))
        finally:
            store.close()
        with _progress(len(stories) * (2 if baseline else 1), f"testing {label}") as advance:
            result = backtest(matcher, label, stories, progress=advance)
            before = backtest(baseline, label, stories, progress=advance) if baseline else None
    gained = [m for m in result.matched if before is not None and m.story.id not in before.ids]
    lost = [m for m in before.matched if m.story.id not in result.ids] if before is not None else []

    def story_json(m: Any) -> dict[str, Any]:
        s = m.story if hasattr(m, "story") else m
        out = {"id": s.id, "feed": s.feed, "published": s.published_at.isoformat(), "title": s.title}
        if hasattr(m, "result"):
            out["terms"] = list(m.result.terms)
        return out

    if as_json:
        out: dict[str, Any] = {
            "watchlist": name,
            "query": query if query is not None else config.watchlist(label).query,
            "days": days,
            "stories": result.total,
            "matched_count": len(result.matched),
            "unmatched_count": len(result.unmatched),
            "terms": dict(result.term_counts.most_common()),
            "feeds": dict(result.feed_counts.most_common()),
            "matched": [story_json(m) for m in result.matched],
            "unmatched": [story_json(s) for s in result.unmatched[:misses]],
        }
        if before is not None:
            out["gained"] = [story_json(m) for m in gained]
            out["lost"] = [story_json(m) for m in lost]
        click.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    console = Console(highlight=False) if sys.stdout.isatty() else Console(width=200, highlight=False)
    markup = console.is_terminal
    from rich.markup import escape

    def line(text: str) -> None:
        console.print(text if markup else escape(text), soft_wrap=True)

    pct = 100.0 * len(result.matched) / result.total if result.total else 0.0
    what = f"watchlist {name!r}" if name and query is None else f"query {query!r}"
    line(escape(f"{what} over {result.total} stories published in the last {days:g} days:"))
    line(escape(f"  {len(result.matched)} would match ({pct:.1f} %), {len(result.unmatched)} would not"))
    if before is not None:
        line(escape(f"  compared with {name!r} now: {len(gained)} gained, {len(lost)} lost"))
    if result.term_counts:
        terms = ", ".join(f"{t} ×{n}" for t, n in result.term_counts.most_common(15))
        line(escape(f"  terms that fired: {terms}"))
    if result.feed_counts:
        line(escape("  by feed: " + ", ".join(f"{f} {n}" for f, n in result.feed_counts.most_common(10))))

    def show_match(m: Any, mark: str = " ") -> None:
        s = m.story
        title = _highlight(s.title, hit_spans(m.result, "title"), markup=markup)
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


# --- feeds add / remove / OPML ----------------------------------------------------------------


def _probe(loaded: LoadedConfig, urls: list[str]) -> dict[str, Any]:
    """Fetch and parse each URL once: url -> ParsedFeed, or the error message."""
    from monitor.app.daemon import fetch_settings
    from monitor.ingest.fetch import FeedFetchError, Fetcher, FetchRequest
    from monitor.ingest.parse import parse_feed

    out: dict[str, Any] = {}
    now = dt.datetime.now(dt.UTC)
    with Fetcher(fetch_settings(loaded.config)) as fetcher, _progress(len(urls), "checking feeds") as advance:
        for outcome in fetcher.fetch_many(FetchRequest(key=u, url=u) for u in urls):
            url = outcome.request.key
            advance(1)
            if isinstance(outcome, FeedFetchError):
                out[url] = f"{outcome.reason}: {outcome}"
                continue
            try:
                out[url] = parse_feed(outcome.body, url=outcome.url, content_type=outcome.content_type, fetched_at=now)
            except MonitorError as exc:
                out[url] = f"not a feed: {exc}"
    return out


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

    Example:

        news-monitor feeds add https://www.lemonde.fr/international/rss_full.xml --name lemonde-intl
    """
    from monitor.config.edit import ConfigEditor, FeedSpec, slug, unique_name

    with errors_as_click():
        loaded = ctx.loaded
        editor = ConfigEditor(ctx.config_path)
        title = None
        if not no_check:
            got = _probe(loaded, [url])[url]
            if isinstance(got, str):
                raise click.ClickException(f"{url} was not added: {got} (use --no-check to add it anyway)")
            title = got.title
            language = language or (got.language[:16] if got.language else None)
            click.echo(f"{url}: {got.title or 'untitled'} ({len(got.entries)} entries)")
        if name is None:
            base = slug(title or "", fallback="") or slug(url.split("://", 1)[-1])
            name = unique_name(base[:64], set(editor.feed_names()))
        editor.add_feed(FeedSpec(name, url, interval, language))
        editor.save()
    _saved(ctx.config_path, f"added feed {name!r}")


@feeds.command("remove")
@click.argument("name")
@pass_ctx
def feeds_remove(ctx: Context, name: str) -> None:
    """Remove a feed from the config file (its stored stories stay; polling stops).

    Example:

        news-monitor feeds remove bbc-world
    """
    from monitor.config.edit import ConfigEditor

    with errors_as_click():
        editor = ConfigEditor(ctx.config_path)
        editor.remove_feed(name)
        editor.save()
    _saved(ctx.config_path, f"removed feed {name!r}")


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

        news-monitor feeds import-opml subscriptions.opml --check
    """
    from monitor.config.edit import ConfigEditor
    from monitor.config.opml import parse_opml, plan_import

    with errors_as_click():
        loaded = ctx.loaded
        found, skipped = parse_opml(file.read(), file=getattr(file, "name", "OPML file"))
        editor = ConfigEditor(ctx.config_path)
        plan = plan_import(found, names=editor.feed_names(), urls=editor.feed_urls(), language=language)
        adding = list(plan.add)
        skipped += list(plan.skipped)
        if check and adding:
            probed = _probe(loaded, [f.url for f in adding])
            bad = [(f.url, probed[f.url]) for f in adding if isinstance(probed[f.url], str)]
            adding = [f for f in adding if not isinstance(probed[f.url], str)]
            skipped += bad
        for label, reason in skipped:
            click.echo(f"skipped {label}: {reason}", err=True)
        if dry_run:
            for f in adding:
                click.echo(f"would add {f.name}: {f.url}")
            click.echo(f"{len(adding)} feeds would be added, {len(skipped)} skipped (dry run: nothing written)")
            return
        if not adding:
            click.echo(f"nothing to add ({len(skipped)} skipped)")
            return
        editor.add_feeds(adding)
        editor.save()
    _saved(ctx.config_path, f"imported {len(adding)} feeds ({len(skipped)} skipped)")


@feeds.command("export-opml")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None, help="File.")
@pass_ctx
def feeds_export_opml(ctx: Context, output: str | None) -> None:
    """Export the configured feeds as OPML 2.0 (for a feed reader, or another instance).

    Example:

        news-monitor feeds export-opml -o feeds.opml
    """
    from monitor.config.opml import ExportFeed, export_opml

    with errors_as_click():
        config = ctx.loaded.config
    doc = export_opml([ExportFeed(f.name, f.url, f.language, f.enabled) for f in config.feeds])
    if output:
        from pathlib import Path

        Path(output).write_text(doc, encoding="utf-8")
        click.echo(f"{len(config.feeds)} feeds written to {output}", err=True)
    else:
        click.echo(doc, nl=False)


# --- stories ---------------------------------------------------------------------------------


@cli.group()
def stories() -> None:
    """Search stored stories, and show one with its cluster, matches and alerts.

    Example:

        news-monitor stories search '"North Korea" troops -exercise' --since 7d
    """


@stories.command("search")
@click.argument("query")
@click.option("--watchlist", "-w", default=None, help="Only stories this watchlist matched.")
@click.option("--since", default=None, metavar="DURATION", help="Only stories published since, e.g. 7d, 12h.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--sort", type=click.Choice(["date", "relevance"]), default="date", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def stories_search(
    ctx: Context, query: str, watchlist: str | None, since: str | None, limit: int, sort: str, as_json: bool
) -> None:
    """Full-text search of stored stories (titles and summaries).

    Words, "quoted phrases", prefix*, OR between alternatives, -word to exclude;
    case and accents do not matter.

    Example:

        news-monitor stories search 'Kursk (troops OR soldats)' --since 7d --watchlist kursk-troops
    """
    from rich.console import Console
    from rich.markup import escape

    from monitor.config.model import parse_duration
    from monitor.storage.search import days_ago, search_stories, snippet, term_spans

    with errors_as_click():
        try:
            since_dt = days_ago(parse_duration(since) / 86400) if since else None
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--since") from None
        store = _store_for(ctx.loaded)
        try:
            found = search_stories(store, query, since=since_dt, watchlist=watchlist, limit=limit, order=sort)
        finally:
            store.close()
    if as_json:
        out = [
            {
                "id": h.story.id,
                "feed": h.story.feed,
                "published": h.story.published_at.isoformat(),
                "title": h.story.title,
                "link": h.story.link,
                "watchlists": list(h.watchlists),
            }
            for h in found.hits
        ]
        click.echo(json.dumps({"query": query, "engine": found.engine, "stories": out}, indent=2, ensure_ascii=False))
        return
    console = Console(highlight=False) if sys.stdout.isatty() else Console(width=200, highlight=False)
    markup = console.is_terminal
    if not found.hits:
        console.print(escape(f"no stored story matches {query!r}"))
        return
    for h in found.hits:
        s = h.story
        title = _highlight(s.title, term_spans(s.title, found.query.terms), markup=markup)
        wls = f"  [{', '.join(h.watchlists)}]" if h.watchlists else ""
        console.print(escape(f"#{s.id}  {s.published_at:%Y-%m-%d %H:%M}  {s.feed}{wls}"), soft_wrap=True)
        console.print("  " + (title if markup else escape(s.title)), soft_wrap=True)
        text, spans = snippet(s.summary, term_spans(s.summary, found.query.terms), 200)
        if text:
            console.print("  " + (_highlight(text, spans, markup=True) if markup else escape(text)), soft_wrap=True)
    console.print(escape(f"{len(found.hits)} stories" + (f" (the first {limit})" if len(found.hits) == limit else "")))


@stories.command("show")
@click.argument("story_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@pass_ctx
def stories_show(ctx: Context, story_id: int, as_json: bool) -> None:
    """Show a stored story: where it was seen, its cluster, its matches and alerts.

    Example:

        news-monitor stories show 1234
    """
    with errors_as_click():
        store = _store_for(ctx.loaded)
        try:
            detail = store.story_detail(story_id)
        finally:
            store.close()
    if detail is None:
        raise click.ClickException(f"no story #{story_id}")
    s = detail.story
    if as_json:
        import dataclasses

        click.echo(json.dumps(dataclasses.asdict(detail), indent=2, ensure_ascii=False, default=str))
        return
    click.echo(f"#{s.id}  {s.title}")
    click.echo(f"  link:      {s.link or '-'}")
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
        when = f" at {a.sent_at:%Y-%m-%d %H:%M}" if a.sent_at else ""
        err = f" — {a.last_error}" if a.last_error and a.status != "sent" else ""
        click.echo(f"    {a.watchlist} -> {a.target}: {a.status}{when}, {a.attempts} attempt(s){err}")


# --- web ---------------------------------------------------------------------------------------


@cli.command()
@click.option("--listen", default=None, metavar="HOST:PORT", help="Address (default: web.listen or 127.0.0.1:8080).")
@pass_ctx
def web(ctx: Context, listen: str | None) -> None:
    """Serve the web page (alerts, feeds, watchlist editor, search) without the daemon.

    Bound to 127.0.0.1 by default; any other address needs web.token in the config.
    Saving a watchlist writes the config file; a running daemon reloads it.

    Example:

        news-monitor web --listen 127.0.0.1:8080
    """
    from monitor.app.web import WebServer, WebState
    from monitor.app.web.app import CachedConfig
    from monitor.config.model import split_listen

    with errors_as_click():
        loaded = ctx.loaded
        settings = loaded.config.web
        address = listen or settings.listen or "127.0.0.1:8080"
        try:
            host, port = split_listen(address)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--listen") from None
        if host not in ("127.0.0.1", "localhost", "::1") and not settings.token:
            raise click.ClickException(
                f"refusing to serve on {address} without a token: set web.token in the config"
            )
        store = _store_for(loaded)
        state = WebState(config_path=ctx.config_path, loaded=CachedConfig(ctx.config_path, loaded), store=store)
        server = WebServer(state, host, port, token=settings.token)
        try:
            server.serve_forever()
        finally:
            store.close()


def _safe_db(url: str) -> str:
    from monitor.storage.engine import safe_url

    return safe_url(url)


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="news-monitor")
    except ConfigError as exc:  # raised outside a command (should not happen, but never a traceback)
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
