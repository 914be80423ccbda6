"""Stored stories: the latest alerts, full-text search with highlight offsets, one story in detail."""

from __future__ import annotations

from dataclasses import dataclass

from monitor.matching.backtest import days_ago
from monitor.matching.matcher import Hit
from monitor.storage.search import SearchResult, search_stories, term_spans
from monitor.storage.store import Store
from monitor.storage.stories import MatchedStory, StoredStory, StoryDetail


@dataclass(frozen=True, slots=True)
class AlertedStory:
    """A story that alerted, with every watchlist match of it and their hits."""

    story: MatchedStory
    matches: tuple[MatchedStory, ...]
    hits: tuple[Hit, ...]


def recent_alerts(store: Store, *, scan: int = 150, limit: int = 60) -> tuple[AlertedStory, ...]:
    """The latest alerted stories (one entry per story, however many watchlists matched it)."""
    grouped: dict[int, list[MatchedStory]] = {}
    for m in store.matched_stories(alerted_only=True, limit=scan):
        grouped.setdefault(m.story_id, []).append(m)
    return tuple(
        AlertedStory(ms[0], tuple(ms), tuple(h for m in ms for h in m.hits)) for ms in list(grouped.values())[:limit]
    )


@dataclass(frozen=True, slots=True)
class StoryHit:
    """A story found by a search, with the offsets of the search terms in it."""

    story: StoredStory
    watchlists: tuple[str, ...]
    title_spans: tuple[tuple[int, int], ...]
    summary_spans: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class StorySearch:
    """The stories a search found, and which engine ran it (fts5, postgresql or a scan)."""

    query: str
    engine: str
    hits: tuple[StoryHit, ...]


def search(
    store: Store,
    query: str,
    *,
    since_days: float | None = None,
    watchlist: str | None = None,
    limit: int = 50,
    order: str = "date",
) -> StorySearch:
    """Full-text search of stored stories (``SearchSyntaxError`` for a search meaning nothing)."""
    since = days_ago(since_days) if since_days is not None else None
    found: SearchResult = search_stories(store, query, since=since, watchlist=watchlist, limit=limit, order=order)
    terms = found.query.terms
    return StorySearch(
        query,
        found.engine,
        tuple(
            StoryHit(
                h.story,
                h.watchlists,
                tuple(term_spans(h.story.title, terms)),
                tuple(term_spans(h.story.summary, terms)),
            )
            for h in found.hits
        ),
    )


def story_detail(store: Store, story_id: int) -> StoryDetail | None:
    """A stored story with its sightings, cluster, matches and alerts; None when there is none."""
    return store.story_detail(story_id)


__all__ = [
    "AlertedStory",
    "StoryHit",
    "StorySearch",
    "recent_alerts",
    "search",
    "story_detail",
]
