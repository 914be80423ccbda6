"""Stored stories: the latest alerts, full-text search with highlight offsets, one story in detail.

Links of stories come from feeds: :func:`story_link` is what a page or a feed built
from them may show (http(s) only, user-info dropped, as the e-mail alerts do).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import urlsplit, urlunsplit

from monitor.app.services.common import MAX_STORY_ID, checked_days
from monitor.delivery.masking import mask_text
from monitor.matching.backtest import days_ago
from monitor.matching.matcher import Hit
from monitor.storage.search import SearchResult, search_stories, term_spans
from monitor.storage.store import Store
from monitor.storage.stories import MatchedStory, StoredStory, StoryDetail


@dataclass(frozen=True, slots=True)
class AlertedStory:
    """A story that alerted, with every watchlist match of its event cluster and their
    hits (the other stories of the cluster are ``story.also_reported_by``)."""

    story: MatchedStory
    matches: tuple[MatchedStory, ...]
    hits: tuple[Hit, ...]


def recent_alerts(store: Store, *, scan: int = 150, limit: int = 60) -> tuple[AlertedStory, ...]:
    """The latest alerted stories: one entry per event cluster, however many watchlists
    it alerted, led by its latest alerted story."""
    grouped: dict[int, list[MatchedStory]] = {}
    for m in store.matched_stories(alerted_only=True, limit=scan):
        grouped.setdefault(m.cluster_id, []).append(m)
    return tuple(
        AlertedStory(ms[0], tuple(ms), tuple(h for m in ms if m.story_id == ms[0].story_id for h in m.hits))
        for ms in list(grouped.values())[:limit]
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
    """Full-text search of stored stories (``SearchSyntaxError`` for a search meaning nothing).

    ``ValueError`` for ``since_days`` out of :func:`~monitor.app.services.common.checked_days`.
    """
    since = days_ago(checked_days(since_days)) if since_days is not None else None
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
    """A stored story with its sightings, cluster, matches and alerts; None when there is none
    (an id the database's key cannot hold included)."""
    if not 0 < story_id <= MAX_STORY_ID:
        return None
    detail = store.story_detail(story_id)
    if detail is None:
        return None
    # Errors are stored masked; rows written by older versions may not be: mask again.
    alerts = tuple(replace(a, last_error=mask_text(a.last_error) if a.last_error else None) for a in detail.alerts)
    return replace(detail, alerts=alerts)


def story_link(link: str | None) -> str | None:
    """``link`` fit to show and follow: http(s) only, without user-info, or None.

    ``https://bank.example@evil.example/`` is a phishing trick and ``user:pw@`` a
    credential: neither is ever part of a news link shown to a person.
    """
    if not link:
        return None
    try:
        parts = urlsplit(link.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme.lower(), netloc, parts.path, parts.query, parts.fragment))


__all__ = [
    "AlertedStory",
    "StoryHit",
    "StorySearch",
    "recent_alerts",
    "search",
    "story_detail",
    "story_link",
]
