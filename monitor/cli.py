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

from . import __version__
from .config import DEFAULT_CONFIG, LoadedConfig, load_config
from .errors import ConfigError, MonitorError, QuerySyntaxError

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
    from .daemon import Daemon

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
    from .daemon import Runtime

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
                result = rt.deliverer.deliver()
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
    from .notify import Notifier
    from .render import Renderer

    with errors_as_click():
        loaded = ctx.loaded
        cfg = loaded.config
        notifier = Notifier(cfg.targets, renderer=Renderer(timezone=cfg.timezone))
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
    from .notify import Notifier
    from .render import Renderer

    with errors_as_click():
        cfg = ctx.loaded.config
        renderer = Renderer(timezone=cfg.timezone)
        notifier = Notifier(cfg.targets, renderer=renderer, timeout=cfg.delivery.timeout)
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
    from .daemon import build_watch

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
    from .store import Store

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
        "state": f.state,
        "last_poll": iso(f.last_poll_at),
        "last_success": iso(f.last_success_at),
        "last_error": f.last_error,
        "last_error_reason": f.last_error_reason,
        "consecutive_failures": f.consecutive_failures,
        "next_poll": iso(f.next_poll_at),
        "entries_seen": f.entries_seen,
        "interval": f.interval_s,
        "learned_interval": f.learned_interval_s,
    }


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
    for col in ("feed", "state", "last poll", "last success", "fails", "entries", "next poll", "last error"):
        table.add_column(col, overflow="fold")
    styles = {"ok": "green", "backoff": "yellow", "disabled": "red", "new": "cyan"}
    for f in rows:
        state = "backing off" if f.state == "backoff" else f.state
        table.add_row(
            f.name,
            f"[{styles.get(f.state, '')}]{state}[/]",
            _ago(f.last_poll_at, now),
            _ago(f.last_success_at, now),
            str(f.consecutive_failures),
            str(f.entries_seen),
            _ago(f.next_poll_at, now),
            f"{f.last_error_reason}: {f.last_error}" if f.last_error and f.state != "ok" else "",
        )
    # Piped into a file or a script, do not fold columns to 80 characters.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table)
    pending = alerts.get("pending", 0) + alerts.get("sending", 0)
    console.print(
        f"alerts: {alerts.get('sent', 0)} sent, {pending} pending, "
        f"{alerts.get('failed', 0)} given up" + (" [red](see the log)[/]" if alerts.get("failed") else "")
    )


def _safe_db(url: str) -> str:
    from .store import safe_url

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
