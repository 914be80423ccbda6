"""What every command group of the CLI shares: the context, error handling, output helpers.

Library errors (:class:`~monitor.errors.MonitorError`) become ``click.ClickException``
with the library's message, so a user sees ``config.yaml:42: watchlists[2].notify:
unknown target 'slak'`` and never a traceback. Output that comes from feeds, servers
or config files (titles, errors, names, URLs, progress descriptions) goes through
:func:`rich.markup.escape` before rich sees it: ``[link=...]`` in a redirect target
must not become a link, ``[/bold]`` in a reason phrase must not raise ``MarkupError``.

The config is loaded two ways: :attr:`Context.loaded` for the commands that neither
send nor serve (they work without the targets' and the web token's secrets in the
shell), :attr:`Context.sending` for ``run``, ``poll``, ``test-notify``, ``web`` and
``check-config`` (a missing variable is an error naming it).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from monitor.app.services.common import checked_days
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
        self._loaded: dict[bool, LoadedConfig] = {}

    def _load(self, for_sending: bool) -> LoadedConfig:
        if for_sending not in self._loaded:
            loaded = load_config(self.config_path, for_sending=for_sending)
            self._loaded[for_sending] = loaded
            setup_logging(self.log_level or loaded.config.log_level)
        return self._loaded[for_sending]

    @property
    def loaded(self) -> LoadedConfig:
        """The config, for commands that neither send nor serve (sending secrets may be unset)."""
        return self._load(False)

    @property
    def sending(self) -> LoadedConfig:
        """The config with every secret expanded, for commands that send alerts or serve the page."""
        return self._load(True)


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
    from rich.markup import escape

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
        task = bar.add_task(escape(description), total=total)
        yield lambda n: bar.advance(task, n)


def stdout_console() -> Console:
    """A console for stdout; piped into a file or a script, lines are not folded at 80."""
    from rich.console import Console

    return Console(highlight=False) if sys.stdout.isatty() else Console(width=200, highlight=False)


class Days(click.ParamType[float, object]):
    """A span of days back: a duration as the config writes them (``12h``, ``7d``, ``2w``)
    or a bare number of days (``0 < days <= 36600``, finite); ``inf`` or ``nan`` is a
    usage error."""

    name = "days"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from monitor.config.model import parse_duration

        if isinstance(value, float):
            number = value
        else:
            try:
                number = float(str(value))
            except ValueError:
                try:
                    number = parse_duration(str(value)) / 86400
                except ValueError:
                    self.fail(f"{value!r} is not a number of days nor a duration such as 12h, 7d, 2w", param, ctx)
        try:
            return checked_days(number)
        except ValueError as exc:
            self.fail(str(exc).removeprefix("days: "), param, ctx)


DAYS = Days()


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
