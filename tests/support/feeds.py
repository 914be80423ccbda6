"""Building small RSS documents for tests, and the seed article as a feed item."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SEED_TITLE = "La Corée du Nord et la Russie réaffirment leur pacte de défense mutuelle"


@dataclass(frozen=True)
class Item:
    title: str
    link: str
    summary: str = ""
    guid: str | None = None
    published: float | None = None  # epoch seconds


def rss(items: list[Item], *, title: str = "Test feed", link: str = "https://news.example.org/") -> bytes:
    """An RSS 2.0 document (UTF-8) with the given items."""
    parts = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<rss version="2.0"><channel>',
        f"<title>{escape(title)}</title><link>{escape(link)}</link><description>test</description>",
    ]
    for it in items:
        parts.append("<item>")
        parts.append(f"<title>{escape(it.title)}</title><link>{escape(it.link)}</link>")
        if it.summary:
            parts.append(f"<description>{escape(it.summary)}</description>")
        if it.guid:
            parts.append(f'<guid isPermaLink="false">{escape(it.guid)}</guid>')
        if it.published is not None:
            parts.append(f"<pubDate>{email.utils.formatdate(it.published, usegmt=True)}</pubDate>")
        parts.append("</item>")
    parts.append("</channel></rss>")
    return "\n".join(parts).encode("utf-8")


def seed_article() -> Item:
    """The article the product began from, as a French outlet's feed would carry it."""
    text = (FIXTURES / "seed-article-fr.txt").read_text(encoding="utf-8")
    return Item(
        title=SEED_TITLE,
        link="https://www.example.fr/international/article/coree-du-nord-russie-pacte?xtor=RSS-3208&utm_source=rss",
        summary=text,
        guid="seed-article-1",
    )
