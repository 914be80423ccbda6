"""The command line: a thin click layer over the library and :mod:`monitor.app.services`.

One module per command group (``daemon``: run, poll, check-config; ``notify``:
test-notify; ``match``; ``feeds``; ``watchlist``; ``stories``; ``web``; ``prune``; ``setup``: init, demo), each command
a thin wrapper over one library or service call whose docstring is its ``--help``
text, with an example. This module holds the root group, its options and ``main``.
"""

from __future__ import annotations

import sys

import click

from monitor import __version__
from monitor.app.cli.common import Context, setup_logging
from monitor.app.cli.daemon import check_config, poll, run
from monitor.app.cli.feeds import feeds
from monitor.app.cli.match import match
from monitor.app.cli.notify import test_notify
from monitor.app.cli.prune import prune_command
from monitor.app.cli.setup import demo, init
from monitor.app.cli.stories import stories
from monitor.app.cli.watchlist import watchlist
from monitor.app.cli.web import web
from monitor.app.cli.workers import workers
from monitor.config.model import DEFAULT_CONFIG
from monitor.errors import ConfigError


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

    \b
        news-monitor --config /etc/news-monitor/config.yaml run
    """
    ctx.obj = Context(config_path, log_level.upper() if log_level else None)
    setup_logging(ctx.obj.log_level or "INFO")


for command in (run, poll, check_config, test_notify, match, feeds, watchlist, stories, web, workers, prune_command):
    cli.add_command(command)
cli.add_command(init)
cli.add_command(demo)


def main() -> None:
    """Console-script entry point."""
    try:
        cli(prog_name="news-monitor")
    except ConfigError as exc:  # raised outside a command (should not happen, but never a traceback)
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
