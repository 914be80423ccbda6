"""OPML import and export of feed lists (pure: bytes in, specs out; specs in, text out).

OPML is how feed readers exchange subscriptions: ``<outline>`` elements with an
``xmlUrl``, nested in category outlines. Import reads every outline with an http(s)
``xmlUrl`` at any depth (case of the attribute names varies between exporters), names
each feed from its title (``Le Monde – International`` -> ``le-monde-international``),
made unique against the names already in the config, and reports what it skipped and
why; nothing is guessed silently.

The file is untrusted input: a document declaring entities is refused (no entity
expansion, no external entities), and its size is capped.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.utils import format_datetime
from xml.sax.saxutils import quoteattr

from monitor.config.edit import FeedSpec, normalise_feed_url, slug, unique_name
from monitor.errors import ConfigError

MAX_OPML_BYTES = 20_000_000
_URL = re.compile(r"^https?://[^\s/?#]+[^\s]*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class OpmlFeed:
    """One subscription of an OPML file."""

    title: str
    url: str
    category: str | None = None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What an import would add, and what it skips with the reason."""

    add: tuple[FeedSpec, ...]
    skipped: tuple[tuple[str, str], ...]  # (url or title, reason)


def _attr(el: ET.Element, name: str) -> str | None:
    lowered = name.lower()
    for key, value in el.attrib.items():
        if key.lower() == lowered:
            return value.strip() or None
    return None


def parse_opml(data: bytes, *, file: str = "OPML file") -> tuple[list[OpmlFeed], list[tuple[str, str]]]:
    """Subscriptions in document order, and the outlines skipped (label, reason)."""
    if len(data) > MAX_OPML_BYTES:
        raise ConfigError(f"too large ({len(data)} bytes; at most {MAX_OPML_BYTES})", file=file)
    if re.search(rb"<!(?:ENTITY|DOCTYPE[^>]*\[)", data, re.IGNORECASE):
        raise ConfigError("refusing an OPML file that declares entities", file=file)
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else None
        raise ConfigError(f"not valid XML: {exc}", file=file, line=line) from None
    if root.tag.lower() != "opml":
        raise ConfigError(f"not an OPML document (root element <{root.tag}>)", file=file)
    body = next((c for c in root if c.tag.lower() == "body"), None)
    if body is None:
        raise ConfigError("an OPML document needs a <body>", file=file)
    feeds: list[OpmlFeed] = []
    skipped: list[tuple[str, str]] = []

    def walk(el: ET.Element, category: str | None) -> None:
        for child in el:
            if child.tag.lower() != "outline":
                continue
            title = _attr(child, "title") or _attr(child, "text")
            url = _attr(child, "xmlUrl")
            if url is None:
                walk(child, title or category)  # a category (or a plain note)
                continue
            if not _URL.match(url):
                skipped.append((url, "not an http(s) URL"))
                continue
            feeds.append(OpmlFeed(title or url, url, category, _attr(child, "language")))
            walk(child, category)

    walk(body, None)
    return feeds, skipped


def plan_import(
    feeds: Iterable[OpmlFeed], *, names: Iterable[str], urls: Iterable[str], language: str | None = None
) -> ImportPlan:
    """Feeds to add (unique names, not already configured) and those skipped."""
    taken = set(names)
    known = {normalise_feed_url(u) for u in urls}
    add: list[FeedSpec] = []
    skipped: list[tuple[str, str]] = []
    for feed in feeds:
        key = normalise_feed_url(feed.url)
        if key in known:
            skipped.append((feed.url, "already configured"))
            continue
        known.add(key)
        base = slug(feed.title, fallback="") or slug(re.sub(r"^https?://(www\.)?", "", feed.url))
        name = unique_name(base[:64], taken)
        taken.add(name)
        lang = feed.language or language
        add.append(FeedSpec(name=name, url=feed.url, language=lang[:16] if lang else None))
    return ImportPlan(tuple(add), tuple(skipped))


@dataclass(frozen=True, slots=True)
class ExportFeed:
    name: str
    url: str
    language: str | None = None
    enabled: bool = True


def export_opml(
    feeds: Sequence[ExportFeed], *, title: str = "news-monitor feeds", now: dt.datetime | None = None
) -> str:
    """An OPML 2.0 document of the feeds (disabled ones included, marked ``isDisabled``)."""
    now = now or dt.datetime.now(dt.UTC)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<opml version="2.0">',
        "  <head>",
        f"    <title>{_text(title)}</title>",
        f"    <dateCreated>{_text(format_datetime(now, usegmt=True))}</dateCreated>",
        "  </head>",
        "  <body>",
    ]
    for f in feeds:
        attrs = [
            f"text={quoteattr(f.name)}",
            f"title={quoteattr(f.name)}",
            'type="rss"',
            f"xmlUrl={quoteattr(f.url)}",
        ]
        if f.language:
            attrs.append(f"language={quoteattr(f.language)}")
        if not f.enabled:
            attrs.append('isDisabled="true"')
        lines.append(f"    <outline {' '.join(attrs)}/>")
    lines += ["  </body>", "</opml>", ""]
    return "\n".join(lines)


def _text(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


__all__ = ["ExportFeed", "ImportPlan", "OpmlFeed", "export_opml", "parse_opml", "plan_import"]
