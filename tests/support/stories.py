"""Building Entry and MatchResult values for store-level tests."""

from __future__ import annotations

import datetime as dt
import hashlib

from monitor.ingest.entries import Entry
from monitor.matching.matcher import Hit, MatchResult

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def entry(n: int, *, link: str | None = "auto", guid: str | None = "auto", title: str | None = None) -> Entry:
    """Story number ``n``; ``link``/``guid`` None to test entries without them."""
    link_v = f"https://news.example.org/story/{n}" if link == "auto" else link
    guid_v = f"urn:story:{n}" if guid == "auto" else guid
    lk = _key(link_v) if link_v else None
    gk = _key(guid_v) if guid_v else None
    return Entry(
        guid=guid_v,
        link=link_v,
        canonical_url=link_v,
        title=title or f"Story {n}",
        summary=f"Summary {n}",
        published_at=NOW,
        date_from_feed=True,
        language="en",
        author=None,
        story_key=lk or gk or _key(f"text {n}"),
        link_key=lk,
        guid_key=gk,
        title_key=_key(title or f"Story {n}"),
    )


def result(watchlist: str, term: str = "Kursk") -> MatchResult:
    """A match of ``watchlist`` on ``term`` at the start of the title."""
    return MatchResult(
        watchlist=watchlist, hits=(Hit(term=term, field="title", start=0, end=len(term), text=term),)
    )
