"""What every command group of the CLI shares: the context, error handling, output helpers.

Library errors (:class:`~monitor.errors.MonitorError`) become ``click.ClickException``
with the library's message, so a user sees ``config.yaml:42: watchlists[2].notify:
unknown target 'slak'`` and never a traceback. Output that comes from feeds goes
through :func:`rich.markup.escape` before rich sees it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from monitor.config.model import LoadedConfig, load_config
from monitor.errors import MonitorError, QuerySyntaxError

if TYPE_CHECKING:
    from rich.console import Console

    from monitor.app.services.common import Advance
    from monitor.storage.store import Store

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    """One line per event, to stderr (the journal under systemd)."""
    logging.basicConfig(level=level, format=LOG_FORMAT, datefmt="%Y-%m-%dT%H:%M:%S%z", force=True)
    # Libraries' chatter stays out unless asked for; Apprise and httpx may log URLs.
    for name in ("apprise", "httpx", "httpcore", "apscheduler", "alembic"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))


class Context:
    """The root group's options; the config is loaded (and logging set up) on first use."""

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


@contextmanager
def open_store(loaded: LoadedConfig) -> Iterator[Store]:
    """The config's database, closed when the command is done with it."""
    from monitor.storage.store import Store

    store = Store(loaded.database_url)
    try:
        yield store
    finally:
        store.close()


@contextmanager
def progress(total: int, description: str) -> Iterator[Advance]:
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


def stdout_console() -> Console:
    """A console for stdout; piped into a file or a script, lines are not folded at 80."""
    from rich.console import Console

    return Console(highlight=False) if sys.stdout.isatty() else Console(width=200, highlight=False)


def echo_saved(path: str, what: str) -> None:
    click.echo(f"{what}; saved {path}")
    click.echo("A running daemon picks the change up within seconds (it watches the file).")


def highlight(text: str, spans: list[tuple[int, int]] | tuple[tuple[int, int], ...], *, markup: bool) -> str:
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
