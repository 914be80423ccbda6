"""The one exception tree of news-monitor.

Every error the library raises on purpose is a :class:`MonitorError`; errors of the
libraries underneath (httpx, feedparser, SQLAlchemy, Apprise, pydantic, ruamel.yaml)
are wrapped where they cross into our code, with ``raise ... from exc`` so the cause
stays visible in debug logs, and with a message a user can act on::

    MonitorError
    ├── ConfigError               bad config file: names the file, line and field
    │   ├── QuerySyntaxError      bad watchlist query: names the column and what was expected
    │   └── UnknownWatchlistError a watchlist name the config lacks   (app.services.common)
    ├── FetchError                a feed could not be fetched (HTTP status, timeout, size cap, ...)
    │   └── FeedFetchError        ... for one request of a batch     (ingest.fetch)
    ├── ParseError                fetched bytes are not a usable feed
    ├── StoreError                the database refused or is unreachable
    │   └── ClaimLostError        a claim this worker held was taken over: its work is dropped
    ├── FeedCheckError            a feed fetched before it is added did not work  (app.services.feeds)
    └── NotifyError               an alert could not be delivered to a target

The subclasses that carry values of a higher layer (a fetch request, a watchlist list)
live beside those values, named in brackets; everything else is defined here.
``tests/test_layout.py`` checks that every exception class of the package is in this tree.

Messages never contain secrets: URLs of targets are shown through
``monitor.delivery.masking.mask_url``, and feed URLs are shown without user-info.
"""

from __future__ import annotations


class MonitorError(Exception):
    """Base class of every error news-monitor raises on purpose."""


class ConfigError(MonitorError):
    """The configuration is invalid.

    ``file``, ``line`` (1-based) and ``field`` (a dotted path such as
    ``watchlists[2].notify``) are filled in whenever they are known, so the CLI can
    print ``config.yaml:42: watchlists[2].notify: unknown target 'slak' (known: ...)``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        self.hint = hint
        super().__init__(self.describe())

    def describe(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        elif self.line:
            where = f"line {self.line}: "
        field = f"{self.field}: " if self.field else ""
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{where}{field}{self.message}{hint}"


class QuerySyntaxError(ConfigError):
    """A watchlist query does not parse.

    ``column`` is 1-based within the query text; ``expected`` says what the parser
    wanted there (for example ``"a term, a phrase or '('"``).
    """

    def __init__(
        self,
        message: str,
        *,
        query: str,
        column: int,
        expected: str | None = None,
        watchlist: str | None = None,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.query = query
        self.column = column
        self.expected = expected
        self.watchlist = watchlist
        detail = f"{message} at column {column}"
        if expected:
            detail += f", expected {expected}"
        if watchlist:
            detail = f"watchlist {watchlist!r}: {detail}"
        super().__init__(detail, file=file, line=line, field=field)

    def with_context(
        self,
        *,
        watchlist: str | None = None,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> QuerySyntaxError:
        """Return a copy that also names where the query came from."""
        base = self.message.split(" at column ")[0]
        if self.watchlist and base.startswith("watchlist "):
            base = base.split(": ", 1)[1]
        return QuerySyntaxError(
            base,
            query=self.query,
            column=self.column,
            expected=self.expected,
            watchlist=watchlist or self.watchlist,
            file=file or self.file,
            line=line or self.line,
            field=field or self.field,
        )

    def caret(self) -> str:
        """The query and a caret under the offending column, for terminals."""
        return f"{self.query}\n{' ' * (self.column - 1)}^"


class FetchError(MonitorError):
    """A feed could not be fetched.

    ``reason`` is a short machine-friendly code (``http_500``, ``timeout``,
    ``too_large``, ``connection``, ``redirect_loop``, ``gone``, ...) stored in the
    feed's health; ``retry_after`` (seconds) is set when the server asked us to wait.
    """

    def __init__(
        self,
        message: str,
        *,
        reason: str,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        super().__init__(message)


class ParseError(MonitorError):
    """Fetched bytes are not a usable feed (HTML page, garbage, empty, parser crash)."""

    def __init__(self, message: str, *, reason: str = "not_a_feed") -> None:
        self.reason = reason
        super().__init__(message)


class StoreError(MonitorError):
    """The database refused an operation or cannot be reached."""


class ClaimLostError(StoreError):
    """Claims this worker held were taken by another (its lease ran out: a pause, a cut
    connection): the work done under them is dropped, not written."""

    def __init__(self, message: str, *, feed_ids: tuple[int, ...] = ()) -> None:
        self.feed_ids = feed_ids
        super().__init__(message)


class NotifyError(MonitorError):
    """An alert could not be delivered to a target."""

    def __init__(self, message: str, *, target: str | None = None) -> None:
        self.target = target
        super().__init__(message)
