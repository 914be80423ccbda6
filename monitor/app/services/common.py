"""What the service modules share: progress reporting, the result of an edit, unknown names.

A long run reports progress through a :data:`Progress` factory: ``progress(total,
description)`` is a context manager yielding ``advance(n)``, so the CLI can draw a bar
and the web page draws nothing (:func:`no_progress`).

Numbers typed by a person are bounded here, once for the CLI and the web page:
:func:`checked_days` (a finite count of days back, at most :data:`MAX_DAYS`; ``inf``
would overflow the date arithmetic) and :data:`MAX_STORY_ID` (a story id the database's
64-bit key can hold; a bigger one is no story at all).

:func:`build_clusterer` makes the story clusterer of a config, for the daemon and for
``stories recluster`` alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

from monitor.clustering.clusterer import Clusterer
from monitor.clustering.features import vocabulary
from monitor.config.model import Config, WatchlistConfig
from monitor.errors import ConfigError
from monitor.ingest.decide import THEME
from monitor.matching.matcher import Matcher, WatchlistQuery

MAX_DAYS = 36_600  # a century: any longer look back is a typing mistake
MAX_STORY_ID = 2**63 - 1  # the largest value of the stories table's 64-bit key

Advance = Callable[[int], object]  # advance(n): n more items done
Progress = Callable[[int, str], AbstractContextManager[Advance]]


@contextmanager
def no_progress(_total: int, _description: str) -> Iterator[Advance]:
    """The :data:`Progress` of callers that show none."""
    yield lambda _n: None


def checked_days(days: float) -> float:
    """``days`` when it is a count of days back that can be counted; ``ValueError`` otherwise."""
    if not (math.isfinite(days) and 0 < days <= MAX_DAYS):
        raise ValueError(f"days: a number greater than 0 and at most {MAX_DAYS}, not {days:g}")
    return days


def build_clusterer(config: Config) -> Clusterer | None:
    """A fresh story clusterer with *config*'s ``cluster:`` settings and alias groups (None
    when ``cluster.enabled`` is off): the daemon's, and ``stories recluster``'s."""
    if not config.cluster.enabled:
        return None
    return Clusterer(vocabulary(config.aliases), config.cluster.rules())


def build_matcher(config: Config) -> Matcher:
    """The matcher of *config*'s enabled watchlists, plus one query per alias group
    (reported as ``@NAME``, see :data:`~monitor.ingest.decide.THEME`) when clustering is
    on: they tell which stories are on the watched themes, the ones that are clustered."""
    queries = [WatchlistQuery(w.name, w.query, tuple(w.stem)) for w in config.watchlists if w.enabled]
    if config.cluster.enabled:
        queries += [WatchlistQuery(f"{THEME}{name}", f"@{name}") for name in config.aliases]
    return Matcher(queries, config.aliases)


class UnknownWatchlistError(ConfigError):
    """A watchlist name the config does not have."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        super().__init__(f"no watchlist {name!r} (known: {', '.join(known) or 'none'})")


def require_watchlist(config: Config, name: str) -> WatchlistConfig:
    """The watchlist ``name`` of ``config``, or :class:`UnknownWatchlistError`."""
    try:
        return config.watchlist(name)
    except KeyError:
        raise UnknownWatchlistError(name, [w.name for w in config.watchlists]) from None


@dataclass(frozen=True, slots=True)
class Backfill:
    """A backfill: stored stories of the last ``days`` matched, their alerts queued."""

    watchlist: str
    days: float
    scanned: int = 0
    matches: int = 0
    alerts: int = 0
    skipped: str | None = None  # why nothing was done (a disabled watchlist)


@dataclass(frozen=True, slots=True)
class Saved:
    """An edit written to the config file."""

    path: str
    changes: tuple[str, ...]
    name: str = ""  # the watchlist or feed written
    backfill: Backfill | None = None
    backfill_error: str | None = None  # the edit is saved; the backfill after it failed

    @property
    def summary(self) -> str:
        return "; ".join(self.changes)


__all__ = [
    "MAX_DAYS",
    "MAX_STORY_ID",
    "Advance",
    "Backfill",
    "Progress",
    "Saved",
    "UnknownWatchlistError",
    "build_clusterer",
    "checked_days",
    "no_progress",
    "require_watchlist",
]
