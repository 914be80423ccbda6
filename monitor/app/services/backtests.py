"""Backtests and live previews: what a watchlist, or a query being written, would match.

``news-monitor watchlist test`` and the web editor's preview both call
:func:`backtest_watchlist`: the pure :func:`~monitor.matching.backtest.backtest` over the
stored stories of the last N days, and, when a saved watchlist is named for comparison,
the same over its current query, for the stories gained and lost. Where the stories
come from is the caller's :data:`StoryWindow`: read on each call (:func:`stories_since`,
the CLI) or cached for a few seconds (:class:`RecentStories`, the preview, which runs
on every keystroke).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from monitor.app.services.common import Progress, checked_days, no_progress, require_watchlist
from monitor.config.model import Config
from monitor.errors import QuerySyntaxError
from monitor.matching.backtest import Backtest, BacktestMatch, backtest, days_ago
from monitor.matching.matcher import Matcher, WatchlistQuery
from monitor.storage.store import Store
from monitor.storage.stories import StoredStory

StoryWindow = Callable[[float], Sequence[StoredStory]]  # days -> stories published in them, newest first


@dataclass(frozen=True, slots=True)
class BacktestReport:
    """A backtest over the last ``days``; ``before``: the saved query's, when one is compared."""

    days: float
    query: str
    result: Backtest[StoredStory]
    before: Backtest[StoredStory] | None = None

    @property
    def gained(self) -> tuple[BacktestMatch[StoredStory], ...]:
        if self.before is None:
            return ()
        return tuple(m for m in self.result.matched if m.story.id not in self.before.ids)

    @property
    def lost(self) -> tuple[BacktestMatch[StoredStory], ...]:
        if self.before is None:
            return ()
        return tuple(m for m in self.before.matched if m.story.id not in self.result.ids)


def stories_since(store: Store) -> StoryWindow:
    """The stories of the last N days, read from ``store`` on each call."""
    return lambda days: store.stories_published_since(days_ago(days))


class RecentStories:
    """A :data:`StoryWindow` cached for ``seconds``: the live preview runs on every keystroke."""

    def __init__(self, store: Store, seconds: float = 20.0) -> None:
        self.store = store
        self.seconds = seconds
        self._cache: dict[float, tuple[float, list[StoredStory]]] = {}
        self._lock = threading.Lock()

    def __call__(self, days: float) -> list[StoredStory]:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(days)
            if hit and now - hit[0] < self.seconds:
                return hit[1]
        stories = self.store.stories_published_since(days_ago(days))
        with self._lock:
            self._cache = {days: (now, stories)}
        return stories


def watchlist_matcher(config: Config, name: str, *, query: str | None = None) -> Matcher:
    """A matcher of one configured watchlist (enabled or not), or of ``query`` under its name.

    Raises ``KeyError`` for an unknown name, :class:`~monitor.errors.QuerySyntaxError`
    for a bad query.
    """
    try:
        wl = config.watchlist(name)
        stem: tuple[str, ...] = tuple(wl.stem)
        text = wl.query if query is None else query
    except KeyError:
        if query is None:
            raise
        stem, text = (), query
    return Matcher([WatchlistQuery(name, text, stem)], config.aliases)


def _unnamed(exc: QuerySyntaxError) -> QuerySyntaxError:
    """The error of a query being tried, without the watchlist name it was compiled under."""
    base = exc.message.split(" at column ")[0]
    if exc.watchlist and base.startswith("watchlist "):
        base = base.split(": ", 1)[1]
    return QuerySyntaxError(base, query=exc.query, column=exc.column, expected=exc.expected)


def backtest_watchlist(
    config: Config,
    stories: StoryWindow,
    *,
    days: float,
    name: str | None = None,
    query: str | None = None,
    stem: Sequence[str] | None = None,
    compare_with: str | None = None,
    progress: Progress = no_progress,
) -> BacktestReport:
    """What watchlist ``name``, or ``query``, would have matched in the last ``days``.

    ``query`` replaces ``name``'s query (with ``name``'s stemming unless ``stem`` is
    given); ``compare_with`` names a saved watchlist whose current query is run too, for
    the stories gained and lost (none when it no longer exists). Raises
    :class:`UnknownWatchlistError` for an unknown ``name``, and a
    :class:`~monitor.errors.QuerySyntaxError` naming no watchlist for a bad ``query``,
    ``ValueError`` for ``days`` out of :func:`~monitor.app.services.common.checked_days`.
    """
    if name is None and query is None:
        raise ValueError("a watchlist name, or a query, or both")
    checked_days(days)
    label = name or "query"
    text = query if query is not None else require_watchlist(config, label).query
    if name is not None:
        stem = tuple(require_watchlist(config, name).stem) if stem is None else stem
    try:
        matcher = Matcher([WatchlistQuery(label, text, tuple(stem or ()))], config.aliases)
    except QuerySyntaxError as exc:
        if query is None:
            raise
        raise _unnamed(exc) from None
    baseline = None
    if compare_with is not None and compare_with in {w.name for w in config.watchlists}:
        baseline = watchlist_matcher(config, compare_with)
    window = stories(days)
    with progress(len(window) * (2 if baseline else 1), f"testing {label}") as advance:
        result = backtest(matcher, label, window, progress=advance)
        before = backtest(baseline, compare_with or label, window, progress=advance) if baseline else None
    return BacktestReport(days, text, result, before)


__all__ = [
    "BacktestReport",
    "RecentStories",
    "StoryWindow",
    "backtest_watchlist",
    "stories_since",
    "watchlist_matcher",
]
