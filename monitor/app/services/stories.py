"""Stored stories: the latest alerts, search in the watchlist query language, one story in detail.

Links of stories come from feeds: :func:`story_link` is what a page or a feed built
from them may show (http(s) only, user-info dropped, as the e-mail alerts do).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlsplit, urlunsplit

from monitor.app.services.common import MAX_STORY_ID, checked_days
from monitor.delivery.masking import mask_text
from monitor.matching.backtest import days_ago, stored_hit_spans
from monitor.matching.matcher import Hit
from monitor.storage.search import SearchResult, search_stories
from monitor.storage.store import Store
from monitor.storage.stories import MatchedStory, StoredStory, StoryDetail


@dataclass(frozen=True, slots=True)
class AlertedStory:
    """A story that alerted, with every watchlist match of its event cluster and their
    hits (the other stories of the cluster are ``story.also_reported_by``)."""

    story: MatchedStory
    matches: tuple[MatchedStory, ...]
    hits: tuple[Hit, ...]


def recent_alerts(
    store: Store, *, watchlist: str | None = None, offset: int = 0, limit: int = 60
) -> tuple[AlertedStory, ...]:
    """The latest alerted stories, newest first, from the ``offset``-th; ``watchlist``: only
    that watchlist's alerts. One entry per event cluster of those stories, however many
    watchlists it alerted, led by its latest alerted story.

    Delivery errors are stored masked; rows written by older versions may not be: they are
    masked again here.
    """
    ids = store.alerted_story_ids(watchlist=watchlist, offset=offset, limit=limit)
    if not ids:
        return ()
    by_story: dict[int, list[MatchedStory]] = {sid: [] for sid in ids}
    for m in store.matched_stories(watchlist=watchlist, alerted_only=True, story_ids=ids, limit=None):
        errors = tuple((target, mask_text(error)) for target, error in m.delivery_errors)
        by_story[m.story_id].append(replace(m, delivery_errors=errors))
    grouped: dict[int, list[MatchedStory]] = {}
    for sid in ids:
        for m in by_story[sid]:
            grouped.setdefault(m.cluster_id, []).append(m)
    return tuple(
        AlertedStory(ms[0], tuple(ms), tuple(h for m in ms if m.story_id == ms[0].story_id for h in m.hits))
        for ms in grouped.values()
    )


MAX_PAGE = 10_000  # deeper than anyone pages; bounds the database's offset


@dataclass(frozen=True, slots=True)
class AlertsPage:
    """One page of the alerts page: its stories, and whether pages come before and after."""

    stories: tuple[AlertedStory, ...]
    watchlist: str | None
    page: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.page > 1


def alerts_page(store: Store, *, watchlist: str | None = None, page: int = 1, per_page: int = 30) -> AlertsPage:
    """Page ``page`` (from 1) of :func:`recent_alerts`; ``ValueError`` for a page out of range."""
    if not 1 <= page <= MAX_PAGE:
        raise ValueError(f"page: a whole number from 1 to {MAX_PAGE}, not {page}")
    found = recent_alerts(store, watchlist=watchlist, offset=(page - 1) * per_page, limit=per_page + 1)
    return AlertsPage(found[:per_page], watchlist, page, len(found) > per_page)


@dataclass(frozen=True, slots=True)
class StoryHit:
    """A story found by a search: the matcher's hits, and their offsets per field."""

    story: StoredStory
    watchlists: tuple[str, ...]
    hits: tuple[Hit, ...]
    title_spans: tuple[tuple[int, int], ...]
    summary_spans: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class StorySearch:
    """The stories a search found, which engine chose the candidates (fts5, postgresql or
    scan) and how many candidates the matcher decided."""

    query: str
    engine: str
    hits: tuple[StoryHit, ...]
    examined: int = 0


def search(
    store: Store,
    query: str,
    *,
    aliases: Mapping[str, str] | None = None,
    since_days: float | None = None,
    watchlist: str | None = None,
    limit: int = 50,
    order: str = "date",
) -> StorySearch:
    """Stored stories a watchlist with ``query`` would match (the watchlist query language,
    ``aliases`` for its ``@name`` groups); highlights are the matcher's hits.

    Raises :class:`~monitor.errors.QuerySyntaxError` (with the column) for a bad query,
    ``ValueError`` for ``since_days`` out of :func:`~monitor.app.services.common.checked_days`.
    """
    since = days_ago(checked_days(since_days)) if since_days is not None else None
    found: SearchResult = search_stories(
        store, query, aliases=aliases, since=since, watchlist=watchlist, limit=limit, order=order
    )
    return StorySearch(
        query,
        found.engine,
        tuple(
            StoryHit(
                h.story,
                h.watchlists,
                h.hits,
                tuple(stored_hit_spans(h.hits, "title")),
                tuple(stored_hit_spans(h.hits, "summary")),
            )
            for h in found.hits
        ),
        found.examined,
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
    "AlertsPage",
    "StoryHit",
    "StorySearch",
    "alerts_page",
    "recent_alerts",
    "search",
    "story_detail",
    "story_link",
]
