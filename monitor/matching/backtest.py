"""Backtesting a watchlist: what one query of a :class:`Matcher` would have matched.

Pure: the stories come in as plain values (anything with ``id``, ``feed``, ``title``
and ``summary``, such as the store's ``StoredStory``), and what comes out says which
would match and which would not, with the terms that made each match and how often
each term fired: the analyst's tuning tool behind ``news-monitor watchlist test``,
``--backfill`` and the web editor's live preview. Loading the stories and queueing
alerts is the service layer's business (:mod:`monitor.app.services`).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from monitor.matching.matcher import Hit, Matcher, MatchResult

PROGRESS_STEP = 500  # stories between two progress(n) calls


class BacktestStory(Protocol):
    """What a backtest reads of a stored story."""

    @property
    def id(self) -> int: ...

    @property
    def feed(self) -> str: ...

    @property
    def title(self) -> str: ...

    @property
    def summary(self) -> str: ...


S = TypeVar("S", bound=BacktestStory)


@dataclass(frozen=True, slots=True)
class BacktestMatch(Generic[S]):
    """A story the query matches, and why."""

    story: S
    result: MatchResult


@dataclass(frozen=True, slots=True)
class Backtest(Generic[S]):
    """What a watchlist (or query) would have matched among stored stories."""

    name: str
    total: int = 0
    matched: tuple[BacktestMatch[S], ...] = ()
    unmatched: tuple[S, ...] = ()
    term_counts: Counter[str] = field(default_factory=Counter)  # term -> matched stories it fired in
    feed_counts: Counter[str] = field(default_factory=Counter)  # feed -> matched stories

    @property
    def ids(self) -> frozenset[int]:
        return frozenset(m.story.id for m in self.matched)


def backtest(
    matcher: Matcher,
    name: str,
    stories: Iterable[S],
    *,
    progress: Callable[[int], object] | None = None,
) -> Backtest[S]:
    """Run watchlist ``name`` of ``matcher`` over ``stories`` (``progress(n)`` every 500).

    Raises ``KeyError`` when ``matcher`` has no watchlist ``name``.
    """
    matched: list[BacktestMatch[S]] = []
    unmatched: list[S] = []
    terms: Counter[str] = Counter()
    feeds: Counter[str] = Counter()
    total = 0
    for total, story in enumerate(stories, 1):
        result = matcher.match_one(name, story.title, story.summary)
        if result is None:
            unmatched.append(story)
        else:
            matched.append(BacktestMatch(story, result))
            terms.update(result.terms)
            feeds[story.feed] += 1
        if progress is not None and total % PROGRESS_STEP == 0:
            progress(PROGRESS_STEP)
    if progress is not None and total % PROGRESS_STEP:
        progress(total % PROGRESS_STEP)
    return Backtest(name, total, tuple(matched), tuple(unmatched), terms, feeds)


def merge_spans(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted (start, end) spans with overlapping and touching ones merged."""
    merged: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def hit_spans(result: MatchResult, field_name: str) -> list[tuple[int, int]]:
    """Offsets of a match's hits in one field, merged (for highlighting the original text)."""
    return merge_spans((h.start, h.end) for h in result.hits if h.field == field_name)


def stored_hit_spans(hits: Iterable[Hit], field_name: str) -> list[tuple[int, int]]:
    """Same as :func:`hit_spans` for the hits of a stored match."""
    return merge_spans((h.start, h.end) for h in hits if h.field == field_name)


def days_ago(days: float, now: dt.datetime | None = None) -> dt.datetime:
    """The instant ``days`` before ``now`` (default: the current time, UTC)."""
    return (now or dt.datetime.now(dt.UTC)) - dt.timedelta(days=days)


__all__ = [
    "Backtest",
    "BacktestMatch",
    "BacktestStory",
    "backtest",
    "days_ago",
    "hit_spans",
    "merge_spans",
    "stored_hit_spans",
]
