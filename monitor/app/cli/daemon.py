"""Commands that run the monitor: ``run`` (the daemon), ``poll`` (one cycle), ``check-config``."""

from __future__ import annotations

import sys

import click

from monitor.app.cli.common import Context, errors_as_click, pass_ctx
from monitor.errors import ConfigError


@click.command()
@pass_ctx
def run(ctx: Context) -> None:
    """Run the daemon: poll feeds on schedule and deliver alerts until SIGTERM.

    SIGHUP reloads the config; an invalid new config is rejected and logged.

    Example:

    \b
        news-monitor --config config.yaml run
    """
    from monitor.app.daemon import Daemon

    with errors_as_click():
        ctx.sending  # noqa: B018 - validate and configure logging before anything starts
        daemon = Daemon(ctx.config_path)
    sys.exit(daemon.run())


@click.command()
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

    \b
        news-monitor poll --once
    """
    from monitor.app.daemon import Runtime

    with errors_as_click():
        loaded = ctx.sending
        unknown = [f for f in feeds if f not in {c.name for c in loaded.config.feeds}]
        if unknown:
            known = ", ".join(f.name for f in loaded.config.feeds) or "none"
            raise click.BadParameter(f"unknown feed(s): {', '.join(unknown)} (known: {known})", param_hint="--feed")
        rt = Runtime.build(loaded)
        try:
            report = rt.pipeline.run_cycle(force=once, names=list(feeds) or None, catchup=catchup)
            click.echo(report.summary(), err=True)
            for o in report.errors:
                click.echo(f"  {o.feed}: {o.reason}: {o.error}", err=True)
            if (sentence := report.common_failure()) is not None:
                click.echo(sentence, err=True)
            if (sentence := report.first_readings()) is not None:
                click.echo(sentence, err=True)
            if not no_deliver:
                result = rt.deliver()
                click.echo(
                    f"delivery: {result.sent} alerts sent in {result.messages} messages, "
                    f"{result.retrying} to retry, {result.given_up} given up",
                    err=True,
                )
        finally:
            rt.close()


@click.command("check-config")
@pass_ctx
def check_config(ctx: Context) -> None:
    """Validate the config file (and its queries and targets) without starting anything.

    Exits 1 with the file, line and field of the first error.

    Example:

    \b
        news-monitor --config config.yaml check-config
    """
    from monitor.delivery.notify import load_channels
    from monitor.delivery.render import Renderer
    from monitor.storage.engine import check_location, safe_url

    with errors_as_click():
        loaded = ctx.sending
        cfg = loaded.config
        Renderer(timezone=cfg.timezone, overrides=cfg.templates)  # checks the templates
        try:
            channels = load_channels(cfg.target_urls)
        except ConfigError as exc:  # point at the target's line, as the loader does
            if exc.field and exc.file is None:
                exc = ConfigError(
                    exc.message,
                    file=str(loaded.path),
                    line=loaded.line_of(*exc.field.split(".")),
                    field=exc.field,
                    hint=exc.hint,
                )
            raise exc from None
        check_location(loaded.database_url)
    click.echo(f"{loaded.path}: OK")
    click.echo(f"  database:   {safe_url(loaded.database_url)}")
    click.echo(f"  feeds:      {len(cfg.feeds)} ({sum(not f.enabled for f in cfg.feeds)} disabled)")
    click.echo(f"  watchlists: {', '.join(w.name for w in cfg.watchlists) or '-'}")
    for name, channel in channels.items():
        click.echo(f"  target {name}: {channel.display_url}")
    for warning in cfg.warnings():
        click.echo(f"  warning: {warning}")
