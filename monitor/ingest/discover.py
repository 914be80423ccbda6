"""Feed discovery: the feeds a web page announces (pure).

A site's home page names its feeds in ``<head>`` with
``<link rel="alternate" type="application/rss+xml" href="...">`` (RSS Autodiscovery,
also used for Atom and JSON Feed). Given such a page, :func:`feed_links` returns the
feed URLs it announces, absolute, in document order, without duplicates: what
``news-monitor feeds add https://site.example/`` follows when the URL is a page, not a
feed. Only http(s) links count; the scan stops at ``</head>`` or after
:data:`MAX_SCAN` bytes, so a huge page costs no more than its head.
"""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urljoin, urlsplit

#: The feed types a link may announce (what the parser reads).
FEED_TYPES = frozenset(
    {"application/rss+xml", "application/atom+xml", "application/rdf+xml", "application/feed+json", "application/json"}
)
#: Bytes of a page looked at: feed links sit in its head.
MAX_SCAN = 512 * 1024


class _Links(HTMLParser):
    def __init__(self, base: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base = base
        self.found: list[str] = []
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.done:
            return
        if tag == "base":
            href = dict(attrs).get("href")
            if href:
                self.base = urljoin(self.base, href.strip())
        if tag != "link":
            return
        values = {k.lower(): (v or "") for k, v in attrs}
        rels = values.get("rel", "").lower().split()
        kind = values.get("type", "").split(";", 1)[0].strip().lower()
        href = values.get("href", "").strip()
        if "alternate" in rels and kind in FEED_TYPES and href:
            url = urljoin(self.base, href)
            if urlsplit(url).scheme in ("http", "https") and url not in self.found:
                self.found.append(url)

    def handle_endtag(self, tag: str) -> None:
        if tag == "head":
            self.done = True


def feed_links(page: bytes, base_url: str) -> list[str]:
    """The feed URLs that an HTML page announces, absolute, first first."""
    parser = _Links(base_url)
    try:
        parser.feed(page[:MAX_SCAN].decode("utf-8", errors="replace"))
        parser.close()
    except Exception:  # broken markup: what was found before it still counts
        pass
    return parser.found


def looks_like_html(body: bytes) -> bool:
    """A cheap sniff: the start of ``body`` is an HTML document."""
    head = body[:1024].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) or b"<html" in head[:512]
