"""JSON Feed 1.0 and 1.1 (https://www.jsonfeed.org/version/1.1/), with the standard library's json.

:func:`parse` reads the document and translates each item into the vocabulary of a
feedparser entry (``id``, ``link``, ``title``/``title_detail``, ``summary``, ``content``,
``published_parsed``, ``author``...), then hands it to
:func:`monitor.ingest.entries.normalise_entry`, exactly like the XML format: text is
made plain the same way (``content_html`` through ``html_to_text``, ``content_text``,
``summary`` and ``title`` as plain text), the longest of summary and content wins,
dates end in UTC with future ones clamped, links resolve against the feed URL and only
http(s) ones are kept, and the dedupe keys are the same functions. ``tags`` are read by
no one (as XML categories are not); attachments are not stories.

Item rules from the specification: an item without an ``id`` is dropped ("any item
without an id must be discarded"); a numeric ``id`` becomes a string. ``url`` is the
link; ``external_url`` is used when ``url`` is missing or not http(s). ``authors``
(1.1) wins over ``author`` (1.0); the item's ``language`` (1.1) over the feed's.
``date_published`` (else ``date_modified``) is RFC 3339; RFC 822 dates, seen in the
wild, are read too.

Hardening (every failure is a ParseError with a reason a user can act on):

* Bytes: JSON is UTF-8 (RFC 8259), so a Content-Type charset is not consulted. A
  UTF-8 byte-order mark is skipped, UTF-16/32 bodies are read as such; a body that is
  not UTF-8 is read as windows-1252 when it holds no UTF-8 sequence at all (a legacy
  encoding), else with its few invalid bytes replaced; both leave a warning.
* Nesting: more than :data:`MAX_DEPTH` levels of arrays and objects is refused before
  ``json.loads`` runs (``reason="malformed"``); Python's parser would otherwise raise
  RecursionError near 1,000 levels. A JSON Feed needs five (feed, items, item,
  authors, author). The check strips strings with one linear regex and stops at the
  first bracket too deep: about 3 ms for a 300 KB feed.
* ``NaN`` and ``Infinity`` (which Python's json accepts) are refused as not JSON.
* Types: ``items`` that is not a list, or a feed without ``items``, is ``malformed``;
  an item that is not an object is skipped; a title, summary, URL or date of the wrong
  type is ignored (the item keeps what else it has); a JSON document that is not a JSON
  Feed (no ``version`` of jsonfeed.org and no ``items``, or not an object at all) is
  ``not_a_feed``. Invalid JSON is ``malformed`` when its start names a JSON Feed
  version, else ``not_a_feed``.
* Size: like XML, no entry count cap: the fetcher's byte cap and the pool's deadline
  and memory cap bound a feed. Items are translated and normalised one at a time;
  normalising is the cost (measured here: 50,000 small items, 4.2 MB, in 3 s and
  40 MB above the worker's own memory; 18,000 in 1.2 s).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from itertools import accumulate
from typing import Any

from monitor.errors import ParseError
from monitor.ingest.entries import Entry, language_code, normalise_entry
from monitor.ingest.formats.parsed import ParsedFeed, finish, head_of, http_link

__all__ = ["MAX_DEPTH", "MIME_TYPES", "nests_deeper", "parse", "sniff"]

#: The content type of JSON Feed (``application/json`` is read when the body sniffs as JSON).
MIME_TYPES = frozenset({"application/feed+json"})
#: Deepest nesting of arrays and objects read.
MAX_DEPTH = 64

_VERSION_PREFIXES = ("https://jsonfeed.org/version/", "http://jsonfeed.org/version/")
# A string runs to its closing quote or, unterminated, to the end of the text: a match
# from every quote always succeeds, so stripping strings is linear (a pattern that can
# fail there is retried from each later quote: 5 s for 40 KB of ``\"``).
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_UTF8_SEQUENCE = re.compile(rb"[\xc2-\xf4][\x80-\xbf]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def sniff(head: bytes) -> bool:
    """Whether the start of a body (see :func:`~monitor.ingest.formats.parsed.head_of`)
    looks like JSON: an object or an array."""
    return head.startswith((b"{", b"["))


def _decode(body: bytes, warnings: list[str]) -> str:
    encoding = json.detect_encoding(body)
    if encoding.startswith("utf-16") or encoding.startswith("utf-32"):
        return body.decode(encoding, "replace")
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    if _UTF8_SEQUENCE.search(body):
        warnings.append("invalid UTF-8 bytes replaced")
        return body.decode("utf-8-sig", "replace")
    warnings.append("not UTF-8: read as windows-1252")
    return body.decode("cp1252", "replace")


def nests_deeper(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON ``text`` nests arrays and objects more than ``limit`` levels, found
    without parsing it (Python's json recurses, and dies near 1,000 levels). Linear; few
    brackets skip the scan."""
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return any(depth > limit for depth in accumulate(map(_STEP.__getitem__, brackets)))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _load(body: bytes, warnings: list[str]) -> Any:
    text = _decode(body, warnings)
    if nests_deeper(text):
        raise ParseError(
            f"the JSON nests arrays and objects more than {MAX_DEPTH} levels deep; refusing to parse it",
            reason="malformed",
        )
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        head = head_of(body)
        if any(prefix.encode() in head for prefix in _VERSION_PREFIXES):
            raise ParseError(f"the JSON Feed is not valid JSON ({detail}{where})", reason="malformed") from exc
        start = "starts like JSON" if sniff(head) else "is labelled as a JSON Feed"
        raise ParseError(f"the response {start} but is not valid JSON ({detail}{where})", reason="not_a_feed") from exc


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _plain(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return " ".join(_CONTROL.sub(" ", value).split()) or None


def _item_id(value: object) -> str | None:
    """The spec's id: a string, or a number coerced to one; blank is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return str(value)
    if isinstance(value, str):
        return _CONTROL.sub("", value).strip() or None
    return None


def _date(value: object) -> time.struct_time | None:
    """An RFC 3339 (or RFC 822) date as a naive UTC time tuple, like feedparser's."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    try:
        return (when if when.tzinfo else when.replace(tzinfo=UTC)).astimezone(UTC).utctimetuple()
    except (ValueError, OverflowError):
        return None


def _author(item: Mapping[str, Any]) -> str | None:
    authors = item.get("authors")
    candidates = authors if isinstance(authors, list) and authors else [item.get("author")]
    for author in candidates:
        if isinstance(author, Mapping) and isinstance(name := author.get("name"), str) and name.strip():
            return name
    return None


def _raw_entry(item: Mapping[str, Any], guid: str) -> dict[str, Any]:
    """``item`` in the keys :func:`~monitor.ingest.entries.normalise_entry` reads."""
    published = _date(item.get("date_published"))
    updated = _date(item.get("date_modified"))
    return {
        "id": guid,
        "link": _text(item.get("url")),
        "links": [{"rel": "alternate", "href": _text(item.get("external_url"))}],
        "title": _text(item.get("title")),
        "title_detail": {"type": "text/plain", "language": _text(item.get("language"))},
        "summary": _text(item.get("summary")),
        "summary_detail": {"type": "text/plain"},
        "content": [
            {"value": _text(item.get("content_html")), "type": "text/html"},
            {"value": _text(item.get("content_text")), "type": "text/plain"},
        ],
        "published_parsed": published,
        "updated_parsed": updated,
        "author": _author(item),
    }


def _feed(document: Any) -> tuple[Mapping[str, Any], list[Any], list[str]]:
    """The feed object and its items, or the ParseError that says why it is not one."""
    if not isinstance(document, Mapping):
        kind = "a list" if isinstance(document, list) else f"a {type(document).__name__}"
        raise ParseError(f"the server returned JSON, but not a JSON Feed (the document is {kind})", reason="not_a_feed")
    version = document.get("version")
    versioned = isinstance(version, str) and version.strip().lower().startswith(_VERSION_PREFIXES)
    items = document.get("items")
    if not versioned and not isinstance(items, list):
        raise ParseError(
            'the server returned JSON, but not a JSON Feed (no "version": "https://jsonfeed.org/version/1.1" '
            'and no "items")',
            reason="not_a_feed",
        )
    if items is None:
        raise ParseError('the JSON Feed has no "items" list', reason="malformed")
    if not isinstance(items, list):
        raise ParseError(f'the JSON Feed\'s "items" is {type(items).__name__!r}, not a list', reason="malformed")
    warnings = [] if versioned else ['no JSON Feed "version"; read as one for its "items"']
    return document, items, warnings


def parse(
    body: bytes,
    *,
    base: str,
    content_type: str | None,
    fetched_at: datetime,
    default_language: str | None,
    header_language: str | None,
) -> ParsedFeed:
    """Parse a JSON Feed (see the module docstring); ``content_type`` is not consulted
    (JSON has one encoding)."""
    decoding: list[str] = []
    feed, items, warnings = _feed(_load(body, decoding))
    warnings = decoding + warnings
    feed_language = language_code(feed.get("language")) or language_code(header_language)
    entries: list[Entry] = []
    normalised = not_objects = without_id = 0
    for item in items:  # one translated item at a time: a 10 MB feed holds no second copy
        if not isinstance(item, Mapping):
            not_objects += 1
        elif (guid := _item_id(item.get("id"))) is None:
            without_id += 1
        else:
            normalised += 1
            entry = normalise_entry(
                _raw_entry(item, guid),
                feed_url=base,
                fetched_at=fetched_at,
                default_language=default_language,
                feed_language=feed_language,
            )
            if entry is not None:
                entries.append(entry)
    if not_objects:
        warnings.append(f"{not_objects} items ignored: not JSON objects")
    if without_id:
        warnings.append(f"{without_id} items ignored: no id (JSON Feed requires one)")
    return finish(
        title=_plain(feed.get("title")),
        link=http_link(feed.get("home_page_url"), base),
        language=feed_language or language_code(default_language),
        entries=entries,
        normalised=normalised,
        warnings=warnings,
    )
