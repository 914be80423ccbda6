"""Turn one feedparser entry into a clean, comparable :class:`Entry`.

Everything after parsing (matching, storing, alerting) works on :class:`Entry` only, so
this is where the feed's quirks end: text is plain (no tags, no entities, collapsed
whitespace), dates are aware UTC, links are absolute, and every entry has a
``story_key`` that stays the same from one poll to the next.

Pure module: no network, database or feedparser import (the raw entry is just a
mapping: feedparser's, or a JSON Feed item translated into feedparser's keys by
:mod:`monitor.ingest.formats.jsonfeed`), so it is cheap to test and safe to run in a
worker process.

Decisions (each tested in ``tests/test_entries.py``):

* **Link**: ``<feedburner:origLink>`` wins over ``<link>`` (the FeedBurner link is a
  redirect through ``feeds.reuters.com/~r/...`` that hides the article URL). A relative
  link is resolved against the feed URL (feedparser has already applied ``xml:base``).
  Only http(s) links are kept: ``javascript:`` or ``mailto:`` is no link at all. A link
  that feedparser derived from a GUID (``guidislink``) is kept only if it is already an
  absolute http(s) URL: RSS says a GUID is a permalink unless ``isPermaLink="false"``,
  and many feeds forget the attribute on GUIDs such as ``"12345"``, which would
  otherwise become ``https://site/feed/12345``.
* **Summary**: the longest plain text among the summary and the content elements. Feeds
  put a teaser in ``<description>`` and the article in ``<content:encoded>`` (or the
  reverse, or repeat one in the other); more text gives the matcher more to find, and
  the cap keeps it bounded. Capped at :data:`SUMMARY_MAX_CHARS` on a word boundary,
  with a trailing "…" when cut.
* **Title**: HTML titles go through :func:`html_to_text`; plain titles only have entities
  decoded again when they still contain some (``&amp;`` in a plain title is a
  double-escaping bug, not a headline about HTML) and whitespace collapsed. Capped at
  :data:`TITLE_MAX_CHARS`.
* **Dates**: ``published``, else ``updated``, else ``created``; feedparser's
  ``*_parsed`` tuples are naive UTC, converted with :func:`calendar.timegm` (never
  ``time.mktime``, which would apply the local zone). Missing or unusable dates fall
  back to ``fetched_at``; a date more than :data:`FUTURE_TOLERANCE` after
  ``fetched_at`` is clamped to ``fetched_at`` (a wrong time zone or a scheduled post
  must not sort above real news). ``date_from_feed`` says which happened.
* **Identity**: ``story_key`` is the link key when there is a link, else the GUID key,
  else a key of (title, summary). The link comes first because feeds that regenerate
  GUIDs on every build are common, while links stay put. A link to a site's home page
  (path ``/``, no query) gets no ``link_key``: some feeds link every item there, and
  those items are different stories. ``title_key`` is the key of
  the normalised title; for an entry without a title it is the ``story_key``, so that
  untitled entries never cluster together.
* **Nothing usable**: an entry with no title, no summary and no link is dropped
  (:func:`normalise_entry` returns None); the illegally nested ``<item />`` elements of
  some FeedBurner feeds produce exactly such empty entries.
* **Control characters** (except newline and tab) are removed from all text: PostgreSQL
  refuses NUL in text columns, and none of them is ever meaningful in a headline. So
  are bidirectional overrides and isolates (they make a title read differently from what
  it says), lone surrogates and Unicode noncharacters (U+FFFE and U+FFFF are not allowed
  in XML, so the watchlists' Atom feeds stay valid).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html import unescape
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

from monitor.ingest import dedupe

__all__ = [
    "FUTURE_TOLERANCE",
    "SUMMARY_MAX_CHARS",
    "TITLE_MAX_CHARS",
    "Entry",
    "html_to_text",
    "language_code",
    "normalise_entry",
]

SUMMARY_MAX_CHARS = 5000
TITLE_MAX_CHARS = 500
AUTHOR_MAX_CHARS = 200
FUTURE_TOLERANCE = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class Entry:
    """One story as a feed showed it, normalised (see the module docstring)."""

    guid: str | None
    link: str | None
    canonical_url: str | None
    title: str
    summary: str
    published_at: datetime
    date_from_feed: bool
    language: str | None
    author: str | None
    story_key: str
    link_key: str | None
    guid_key: str | None
    title_key: str


# --- HTML to text ---------------------------------------------------------------------

# Elements whose content is never text a reader sees.
_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "math", "iframe", "object"})
# Elements that start a new line of text.
_BLOCK = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "caption", "center", "dd", "details",
        "dialog", "div", "dl", "dt", "figcaption", "figure", "footer", "form", "h1", "h2", "h3",
        "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section",
        "summary", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
# Dropped from every text field: bidirectional embeddings, overrides and isolates (they
# spoof what a title says in pages and e-mail subjects), lone surrogates and Unicode
# noncharacters (XML 1.0 forbids U+FFFE/U+FFFF, so one in a title made the watchlist's
# Atom feed invalid).
_INVISIBLE = re.compile(
    "[\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufdd0-\ufdef"
    + "".join(chr(plane * 0x10000 + 0xFFFE) + chr(plane * 0x10000 + 0xFFFF) for plane in range(17))
    + "]"
)
_TAG = re.compile(r"<[^>]*>")
_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")
_CHUNK = 16384


class _TextExtractor(HTMLParser):
    """Collects visible text; block elements become line breaks."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pieces: list[str] = []
        self.size = 0
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self._skip += 1
        elif tag in _BLOCK:
            self.pieces.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK:
            self.pieces.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.pieces.append(data)
            self.size += len(data)

    def unknown_decl(self, data: str) -> None:
        # A CDATA section left inside HTML content is text, not a declaration.
        if data.startswith("CDATA["):
            self.handle_data(data[6:])


def _collapse_lines(text: str) -> str:
    """Collapse runs of whitespace inside lines and drop empty lines."""
    text = _CONTROL.sub(" ", text if text.isascii() else _INVISIBLE.sub("", text))
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _collapse(text: str) -> str:
    """All whitespace, line breaks included, to single spaces."""
    return " ".join(_CONTROL.sub(" ", text if text.isascii() else _INVISIBLE.sub("", text)).split())


def html_to_text(html: str, *, max_chars: int | None = None) -> str:
    """Visible text of an HTML fragment: tags removed, ``<script>``/``<style>`` contents
    dropped, entities decoded, block elements (``<p>``, ``<br>``, ``<li>``...) turned
    into line breaks, whitespace inside lines collapsed, empty lines dropped.

    Built on :class:`html.parser.HTMLParser`, which accepts any broken HTML (unclosed
    tags, stray ``<``). Text without ``<`` skips the parser entirely, which is most
    titles and many summaries. With ``max_chars``, parsing stops once that much text
    has been collected (the result may still be a little longer; callers cut it), so
    a 1 MB article costs no more than its first few kilobytes.
    """
    if "<" not in html:
        if "&" in html:
            html = unescape(html)
        return _collapse_lines(html.replace("\r", "\n"))
    extractor = _TextExtractor()
    try:
        for start in range(0, len(html), _CHUNK):
            extractor.feed(html[start : start + _CHUNK])
            if max_chars is not None and extractor.size > max_chars:
                break
        extractor.close()
        text = "".join(extractor.pieces)
    except Exception:  # any parser failure falls back to a crude strip
        text = unescape(_TAG.sub(" ", html))
    return _collapse_lines(text.replace("\r", "\n"))


def _cap(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters at a word boundary, marking the cut."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


# --- field helpers --------------------------------------------------------------------

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml", "html", "xhtml"})
_LANGUAGE = re.compile(r"^[a-z]{2,3}$")


def language_code(tag: object) -> str | None:
    """The primary language subtag of a language tag, lower-cased ("fr-FR" -> "fr",
    "en_us" -> "en"), or None when ``tag`` is not a plausible language tag."""
    if not isinstance(tag, str):
        return None
    primary = re.split(r"[-_\s]", tag.strip().lower(), maxsplit=1)[0]
    return primary if _LANGUAGE.match(primary) else None


def _text_of(value: object, content_type: object, *, max_chars: int | None = None) -> str:
    if not isinstance(value, str) or not value:
        return ""
    if isinstance(content_type, str) and content_type.lower() in _HTML_TYPES:
        return html_to_text(value, max_chars=max_chars)
    if "&" in value and _ENTITY.search(value):
        value = unescape(value)
    return _collapse_lines(value.replace("\r", "\n"))


def _detail(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, Mapping) else {}


def _http_url(value: object, base: str | None) -> str | None:
    """``value`` as an absolute http(s) URL (resolved against ``base`` if given)."""
    if not isinstance(value, str):
        return None
    value = _CONTROL.sub("", value).strip()
    if not value:
        return None
    if base is not None:
        try:
            value = urljoin(base, value)
        except ValueError:
            return None
    try:
        parts = urlsplit(value)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return None
    return value


def _link(raw: Mapping[str, Any], feed_url: str) -> str | None:
    orig = _http_url(raw.get("feedburner_origlink"), None)
    if orig:
        return orig
    if raw.get("guidislink"):
        # The link is the GUID: trust it only if it is already an absolute URL.
        return _http_url(raw.get("link"), None)
    link = _http_url(raw.get("link"), feed_url)
    if link:
        return link
    links = raw.get("links")
    if isinstance(links, Sequence):
        for item in links:
            if isinstance(item, Mapping) and item.get("rel", "alternate") == "alternate":
                link = _http_url(item.get("href"), feed_url)
                if link:
                    return link
    return None


def _is_site_root(canonical: str) -> bool:
    """A home page ("https://example.org/", no query) is not an article: feeds that link
    every item to their home page must not have all their items merged into one story
    (``?p=1609`` on the root is an article, so a query disqualifies)."""
    parts = urlsplit(canonical)
    return parts.path == "/" and not parts.query and not parts.fragment


def _published(raw: Mapping[str, Any], fetched_at: datetime) -> tuple[datetime, bool]:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = raw.get(key)
        if not parsed:
            continue
        try:
            when = datetime.fromtimestamp(calendar.timegm(tuple(parsed)[:9]), UTC)
        except (TypeError, ValueError, OverflowError, OSError):
            continue
        if when > fetched_at + FUTURE_TOLERANCE:
            return fetched_at, False
        return when, True
    return fetched_at, False


def _summary(raw: Mapping[str, Any]) -> str:
    candidates: list[tuple[object, object]] = []
    detail = _detail(raw, "summary_detail")
    candidates.append((raw.get("summary"), detail.get("type", "text/html")))
    contents = raw.get("content")
    if isinstance(contents, Sequence) and not isinstance(contents, str):
        for item in contents:
            if isinstance(item, Mapping):
                candidates.append((item.get("value"), item.get("type", "text/html")))
    best = ""
    for value, content_type in candidates:
        text = _text_of(value, content_type, max_chars=SUMMARY_MAX_CHARS)
        if len(text) > len(best):
            best = text
    return _cap(best, SUMMARY_MAX_CHARS)


def _entry_language(raw: Mapping[str, Any]) -> str | None:
    """The entry's own ``xml:lang``, as feedparser records it on text constructs."""
    details: Iterable[object] = (raw.get("title_detail"), raw.get("summary_detail"))
    contents = raw.get("content")
    if isinstance(contents, Sequence) and not isinstance(contents, str):
        details = [*details, *contents]
    for item in details:
        if isinstance(item, Mapping):
            code = language_code(item.get("language"))
            if code:
                return code
    return None


def _author(raw: Mapping[str, Any]) -> str | None:
    name = _detail(raw, "author_detail").get("name") or raw.get("author")
    if not isinstance(name, str):
        return None
    text = html_to_text(name, max_chars=AUTHOR_MAX_CHARS * 2) if "<" in name else unescape(name)
    text = _cap(_collapse(text), AUTHOR_MAX_CHARS)
    return text or None


def normalise_entry(
    raw: Mapping[str, Any],
    *,
    feed_url: str,
    fetched_at: datetime,
    default_language: str | None,
    feed_language: str | None,
) -> Entry | None:
    """Normalise one feedparser entry (see the module docstring for each rule).

    ``fetched_at`` must be timezone-aware; it stands in for a missing or absurd date.
    ``feed_language`` is the feed's ``<language>`` and ``default_language`` the one
    configured for the feed; the entry's own ``xml:lang`` wins over both.
    Returns None when the entry has no title, no summary and no link.
    """
    if fetched_at.tzinfo is None or fetched_at.utcoffset() is None:
        raise ValueError("fetched_at must be timezone-aware")
    fetched_at = fetched_at.astimezone(UTC)
    if type(raw) is not dict:
        # feedparser's FeedParserDict resolves key aliases on every lookup, which made
        # up a fifth of this function's time; a plain copy of its items is cheap.
        raw = dict(raw)

    guid_value = raw.get("id")
    guid = (_CONTROL.sub("", _INVISIBLE.sub("", guid_value)).strip() or None) if isinstance(guid_value, str) else None
    link = _link(raw, feed_url)
    title_detail = _detail(raw, "title_detail")
    title_text = _text_of(raw.get("title"), title_detail.get("type"), max_chars=TITLE_MAX_CHARS * 2)
    title = _cap(_collapse(title_text), TITLE_MAX_CHARS)
    summary = _summary(raw)
    if not title and not summary and not link:
        return None

    canonical = dedupe.canonical_url(link) if link else None
    link_key = dedupe.url_key(canonical) if canonical and not _is_site_root(canonical) else None
    guid_key = dedupe.text_key(guid) if guid else None
    story_key = link_key or guid_key or dedupe.text_key(title, summary)
    source = _detail(raw, "source").get("title")
    title_key = dedupe.title_key(title, source if isinstance(source, str) else None) if title else story_key
    published_at, date_from_feed = _published(raw, fetched_at)
    language = _entry_language(raw) or language_code(feed_language) or language_code(default_language)

    return Entry(
        guid=guid,
        link=link,
        canonical_url=canonical,
        title=title,
        summary=summary,
        published_at=published_at,
        date_from_feed=date_from_feed,
        language=language,
        author=_author(raw),
        story_key=story_key,
        link_key=link_key,
        guid_key=guid_key,
        title_key=title_key,
    )
