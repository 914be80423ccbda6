"""Per-watchlist feeds: ``/watchlists/NAME.atom`` (Atom 1.0) and ``.json`` (JSON Feed 1.1).

Any feed reader can follow a watchlist: its latest matches, newest first, each with
the terms that matched, its source and the other outlets that reported the story (the
same article in other feeds, and the other stories of its event cluster).

"Also reported by" travels three ways: as a line of the item's text (and a list in
JSON Feed's ``content_html``), as Atom ``<link rel="related" href=… title=…>`` elements,
and in the JSON Feed extension object ``_news_monitor`` (JSON Feed 1.1: custom keys start
with an underscore and readers that do not know them ignore them), whose
``also_reported_by`` is a list of ``{"outlet", "language", "title", "url"}`` (null when
unknown). Links go through :func:`~monitor.app.services.stories.story_link` (no
user-info; anything but http(s) is dropped); every text is escaped by the serialiser
(ElementTree, JSON) or, in ``content_html``, by markupsafe.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree as ET

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from monitor.app.services.common import UnknownWatchlistError
from monitor.app.services.stories import story_link
from monitor.app.services.watchlists import WatchlistFeed, watchlist_feed
from monitor.app.web.ui import Ui
from monitor.delivery.render import OtherReport
from monitor.storage.stories import MatchedStory


class Syndication:
    """The per-watchlist feeds' routes."""

    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def routes(self) -> list[Route]:
        return [
            Route("/watchlists/{name}.atom", self.atom),
            Route("/watchlists/{name}.json", self.json_feed),
        ]

    def _feed(self, request: Request) -> WatchlistFeed | None:
        try:
            return watchlist_feed(self.ui.config().config, self.ui.state.store, request.path_params["name"])
        except UnknownWatchlistError:
            return None

    def atom(self, request: Request) -> Response:
        feed = self._feed(request)
        if feed is None:
            return PlainTextResponse("no such watchlist", status_code=404)
        base = str(request.base_url).rstrip("/")
        return Response(
            atom_feed(feed.name, feed.query, feed.items, base=base),
            media_type="application/atom+xml; charset=utf-8",
        )

    def json_feed(self, request: Request) -> Response:
        feed = self._feed(request)
        if feed is None:
            return JSONResponse({"error": "no such watchlist"}, status_code=404)
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            json_feed_doc(feed.name, feed.query, feed.items, base=base),
            media_type="application/feed+json",
        )


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _other(m: MatchedStory, other: OtherReport, *, with_link: bool = True) -> str:
    """One other report as text: ``outlet (fr): "title" <url>``; the same article in
    another feed is its outlet alone."""
    text = other.outlet + (f" ({other.language})" if other.language else "")
    if other.story_id == m.story_id:
        return text
    link = story_link(other.link) if with_link else None
    return text + (f': "{other.title}"' if other.title else "") + (f" <{link}>" if link else "")


def _item_text(m: Any) -> str:
    parts = [m.summary] if m.summary else []
    parts.append(f"Matched: {', '.join(m.terms)}. Source: {m.source}.")
    if m.also_reported_by:
        parts.append(f"Also reported by: {'; '.join(_other(m, o) for o in m.also_reported_by)}.")
    return "\n\n".join(parts)


def _item_html(m: MatchedStory) -> str:
    """The item's content as HTML: the summary, what matched, and "also reported by" as links."""
    parts = [Markup("<p>{}</p>").format(m.summary)] if m.summary else []
    parts.append(Markup("<p>Matched: {}. Source: {}.</p>").format(", ".join(m.terms), m.source))
    if m.also_reported_by:
        items = []
        for o in m.also_reported_by:
            who = o.outlet + (f" ({o.language})" if o.language else "")
            link = story_link(o.link) if o.story_id != m.story_id else None
            title = o.title if o.story_id != m.story_id else None
            if title and link:
                items.append(Markup('<li>{}: <a href="{}">{}</a></li>').format(who, link, title))
            else:
                items.append(Markup("<li>{}{}</li>").format(who, f": {title}" if title else ""))
        parts.append(Markup("<p>Also reported by:</p><ul>{}</ul>").format(Markup("").join(items)))
    return str(Markup("\n").join(parts))


def _extension(other: OtherReport) -> dict[str, str | None]:
    """One other report in the ``_news_monitor`` extension object."""
    return {"outlet": other.outlet, "language": other.language, "title": other.title, "url": story_link(other.link)}


def atom_feed(name: str, query: str, items: Sequence[Any], *, base: str) -> bytes:
    """An Atom 1.0 document of a watchlist's matches, newest first."""
    ns = "http://www.w3.org/2005/Atom"
    ET.register_namespace("", ns)
    feed = ET.Element(f"{{{ns}}}feed")

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ns}}}{tag}", attrs)
        if text is not None:
            el.text = text
        return el

    sub(feed, "id", f"{base}/watchlists/{quote(name)}.atom")
    sub(feed, "title", f"news-monitor: {name}")
    sub(feed, "subtitle", query)
    sub(feed, "updated", _iso(items[0].matched_at if items else dt.datetime.now(dt.UTC)))
    sub(feed, "link", rel="self", href=f"{base}/watchlists/{quote(name)}.atom")
    sub(feed, "link", rel="alternate", href=f"{base}/watchlists")
    sub(feed, "generator", "news-monitor")
    for m in items:
        entry = sub(feed, "entry")
        sub(entry, "id", f"{base}/stories/{m.story_id}#{quote(name)}")
        sub(entry, "title", m.title)
        link = story_link(m.link)
        if link:
            sub(entry, "link", rel="alternate", href=link)
        sub(entry, "updated", _iso(m.matched_at))
        sub(entry, "published", _iso(m.published_at))
        author = sub(entry, "author")
        sub(author, "name", m.source)
        for term in m.terms:
            sub(entry, "category", term=term)
        for other in m.also_reported_by:
            related = story_link(other.link)
            if related and related != link:
                sub(entry, "link", rel="related", href=related, title=_other(m, other, with_link=False))
        sub(entry, "summary", _item_text(m), type="text")
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body


def json_feed_doc(name: str, query: str, items: Sequence[Any], *, base: str) -> dict[str, Any]:
    """A JSON Feed 1.1 document of a watchlist's matches, newest first."""
    return {
        "version": "https://jsonfeed.org/version/1.1",
        "title": f"news-monitor: {name}",
        "description": query,
        "home_page_url": f"{base}/watchlists",
        "feed_url": f"{base}/watchlists/{quote(name)}.json",
        "items": [
            {
                "id": f"{base}/stories/{m.story_id}#{quote(name)}",
                "url": story_link(m.link),
                "title": m.title,
                "content_text": _item_text(m),
                "content_html": _item_html(m),
                "date_published": _iso(m.published_at),
                "date_modified": _iso(m.matched_at),
                "authors": [{"name": m.source}],
                "tags": list(m.terms),
                "_news_monitor": {
                    "story": m.story_id,
                    "terms": list(m.terms),
                    "source": m.source,
                    "also_reported_by": [_extension(o) for o in m.also_reported_by],
                    "alerted": m.alerted,
                },
            }
            for m in items
        ],
    }
