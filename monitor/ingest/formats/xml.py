"""RSS 0.9x/1.0/2.0, Atom and RDF, through feedparser: the only module that calls it.

:func:`parse` takes the bytes the registry (:mod:`monitor.ingest.formats`) hands it and
returns a :class:`ParsedFeed` or raises a ParseError. It runs in a parse worker process
(:mod:`monitor.ingest.pool`), under a deadline: feedparser can be made to take minutes
(a dense 10 MB feed, 200,000 nested elements).

How it talks to feedparser, and why:

* The body is passed as a :class:`io.BytesIO`, never as ``bytes`` or a URL: given a
  string, ``feedparser.parse`` first tries to *open it as a file name* (a body of
  ``b"/etc/passwd"`` would be read from disk) and fetches anything that looks like a URL,
  without a timeout.
* ``response_headers`` carry ``content-location`` (the feed URL without user-info, so
  that relative links resolve and no password ends up in a stored link) and
  ``content-type``. Without a Content-Type, ``application/xml`` is assumed: feedparser
  would otherwise fall back to ISO-8859-1 for documents without an XML declaration,
  where XML says UTF-8 (the Le Monde fixture is such a file), and flag every such
  feed as bozo.
* ``sanitize_html=False, resolve_relative_uris=False``: both only touch HTML *inside*
  summaries and content, which :func:`monitor.ingest.entries.html_to_text` turns into plain text
  anyway (dropping ``<script>``/``<style>``); the entry ``<link>`` is still resolved
  against ``xml:base`` and the feed URL (``tests/test_parse.py`` checks both relative-link
  fixtures). It makes parsing about a third faster.
* Undeclared encodings: feedparser asks ``chardet`` (when installed) before its own
  utf-8 / windows-1252 fallbacks; that is what decodes an undeclared KOI8-R feed.
  ``charset_normalizer`` is not consulted by feedparser (and guesses cp1250/cp1257 for
  our undeclared Latin-1 fixtures, so it would not be an improvement).

Defences before feedparser sees the bytes:

* Entity expansion: feedparser drops nested entity definitions (the billion laughs),
  but a single big entity referenced many times still expands in full (a 300 KB crafted
  feed becomes 2 GB of titles). :func:`_check_entity_expansion` computes what the
  declared entities would expand to and refuses more than :data:`MAX_ENTITY_EXPANSION`
  characters (``reason="entity_expansion"``). It also refuses more than
  :data:`MAX_ENTITY_DECLARATIONS` declarations, which feedparser handles in quadratic time.
* Character references outside Unicode (``&#x110000;``) or to lone surrogates
  (``&#55296;``) make feedparser 6.0.14 raise instead of flagging the feed.
  They are rewritten first: a surrogate pair written as two references (a common
  JavaScript-made emoji) becomes the real character, anything else U+FFFD. One bad
  character should not cost a feed all of its entries.

Judging the result: ``bozo`` alone means little. An encoding override or a non-XML
Content-Type with entries is harmless (recorded in ``warnings``); a recoverable XML
error with entries is a warning too (feedparser's loose parser got them). Errors are:
``not_a_feed`` (no RSS/Atom/RDF root and no entries: an HTML page, random bytes),
``malformed`` (a feed root but broken XML and no entry recovered), ``entity_expansion``
and ``parser_crash`` (feedparser raised). A well-formed feed with zero entries is not an
error.

No entry count cap: like every format, a feed is bounded by the fetcher's byte cap
(``poll.max_bytes``, after decompression) and by the pool's deadline and memory cap.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from monitor.errors import ParseError
from monitor.ingest.entries import Entry, html_to_text, language_code, normalise_entry
from monitor.ingest.formats.parsed import (
    ParsedFeed,
    ascii_compatible,
    finish,
    head_of,
    http_link,
    not_a_feed_message,
)

__all__ = ["MAX_ENTITY_DECLARATIONS", "MAX_ENTITY_EXPANSION", "MIME_TYPES", "parse", "sniff"]

#: Content types that name these formats (a body that sniffs as another format wins).
MIME_TYPES = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/rdf+xml",
        "application/xml",
        "text/xml",
    }
)
#: Most characters that declared XML entities may add to a document when expanded.
MAX_ENTITY_EXPANSION = 1_000_000
#: Most entity declarations a document may carry: feedparser's DOCTYPE handling takes
#: time quadratic in their number (40,000 tiny declarations cost 6 s), and no real feed
#: declares more than a few (an inlined XHTML entity set is about 250).
MAX_ENTITY_DECLARATIONS = 1_000

# Bozo exceptions that say nothing about the document's structure.
_HARMLESS = ("CharacterEncodingOverride", "NonXMLContentType")
# Root elements (and the declaration) that feedparser's loose parser finds even behind
# junk such as a PHP warning printed before the document.
_ROOTS = (b"<?xml", b"<rss", b"<feed", b"<rdf:rdf")

_HEAD_END = re.compile(rb"<\w")
_ENTITY_DECL = re.compile(rb"<!ENTITY\s+([^\s%\"'>]+)\s+\"([^\"]*)\"")
_ENTITY_REF = re.compile(rb"&([^\s&;<>\"']{1,200});")
_SUSPICIOUS_CHARREF = re.compile(rb"&#0*[0-9]{5,};|&#[xX]0*(?:[dD][89a-fA-F][0-9a-fA-F]{2}|[0-9a-fA-F]{5,});")
_CHARREF = re.compile(rb"&#([xX][0-9a-fA-F]+|[0-9]+);")
_REPLACEMENT = b"&#xFFFD;"


def sniff(head: bytes) -> bool:
    """Whether the start of a body (see :func:`~monitor.ingest.formats.parsed.head_of`)
    looks like markup: it starts with ``<`` or names a feed root."""
    if head.startswith(b"<"):
        return True
    lowered = head.lower()
    return any(root in lowered for root in _ROOTS)


def _check_entity_expansion(body: bytes) -> None:
    """Refuse documents whose declared entities would expand beyond the budget.

    Mirrors what feedparser keeps: entity declarations in the prolog with a
    double-quoted value (anything with ``&`` in it, i.e. nesting, it drops itself).
    """
    text = ascii_compatible(body)
    head_end = _HEAD_END.search(text)
    head = text[: head_end.start()] if head_end else text
    if b"<!ENTITY" not in head:
        return
    declarations = head.count(b"<!ENTITY")
    if declarations > MAX_ENTITY_DECLARATIONS:
        raise ParseError(
            f"the feed declares {declarations:,} XML entities (limit {MAX_ENTITY_DECLARATIONS:,}); "
            "refusing to parse it",
            reason="entity_expansion",
        )
    sizes = {name: len(value) for name, value in _ENTITY_DECL.findall(head) if b"&" not in value}
    if not sizes:
        return
    uses = Counter(_ENTITY_REF.findall(text, head_end.start() if head_end else len(text)))
    expansion = sum(size * uses[name] for name, size in sizes.items())
    if expansion > MAX_ENTITY_EXPANSION:
        raise ParseError(
            f"the feed declares XML entities that would expand to {expansion:,} characters "
            f"(limit {MAX_ENTITY_EXPANSION:,}); refusing to parse it",
            reason="entity_expansion",
        )


def _charref_value(ref: bytes) -> int:
    digits = ref.lstrip(b"xX").lstrip(b"0")
    if len(digits) > 8:  # beyond Unicode whatever the digits (and int() refuses 4,300+)
        return 0x110000
    return int(ref[1:] or b"0", 16) if ref[:1] in (b"x", b"X") else int(ref or b"0")


def _repair_charrefs(body: bytes) -> bytes:
    """Rewrite character references that would make feedparser raise (see module doc)."""
    if not _SUSPICIOUS_CHARREF.search(body):
        return body
    merged_at = -1  # start of a low-surrogate reference already merged into its pair

    def repair(match: re.Match[bytes]) -> bytes:
        nonlocal merged_at
        if match.start() == merged_at:
            return b""
        value = _charref_value(match.group(1))
        if 0xD800 <= value <= 0xDBFF:
            low = _CHARREF.match(body, match.end())
            if low and 0xDC00 <= (low_value := _charref_value(low.group(1))) <= 0xDFFF:
                merged_at = low.start()
                return b"&#x%X;" % (0x10000 + ((value - 0xD800) << 10) + (low_value - 0xDC00))
            return _REPLACEMENT
        if value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
            return _REPLACEMENT
        return match.group(0)

    return _CHARREF.sub(repair, body)


def _describe(exc: object) -> str:
    return f"{type(exc).__name__}: {exc}"


def _feed_text(feed: Mapping[str, Any], key: str) -> str | None:
    value = feed.get(key)
    if not isinstance(value, str):
        return None
    detail = feed.get(f"{key}_detail")
    kind = detail.get("type") if isinstance(detail, Mapping) else None
    text = html_to_text(value) if kind in ("text/html", "application/xhtml+xml") else value
    return " ".join(text.split()) or None


def parse(
    body: bytes,
    *,
    base: str,
    content_type: str | None,
    fetched_at: datetime,
    default_language: str | None,
    header_language: str | None,
) -> ParsedFeed:
    """Parse an RSS, Atom or RDF document (see the module docstring).

    ``base`` is the feed URL without user-info; ``header_language`` the response's
    Content-Language, used when the feed declares no language of its own.
    """
    _check_entity_expansion(body)
    repaired = _repair_charrefs(body)
    # Imported here: the daemon's own process only hands bytes to the workers, and
    # feedparser (with chardet) is 12 MB it does not need.
    import feedparser

    try:
        result = feedparser.parse(
            io.BytesIO(repaired),
            response_headers={"content-location": base, "content-type": content_type or "application/xml"},
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except Exception as exc:  # feedparser raises re.error, ValueError, RecursionError...
        raise ParseError(
            f"the feed parser failed on this document ({type(exc).__name__}: {exc})", reason="parser_crash"
        ) from exc

    version = result.get("version") or ""
    raw_entries = result.get("entries") or []
    bozo_exc = result.get("bozo_exception") if result.get("bozo") else None
    if not version and not raw_entries:
        raise ParseError(not_a_feed_message(head_of(body), content_type), reason="not_a_feed")

    feed = result.get("feed") or {}
    feed_language = language_code(feed.get("language")) or language_code(header_language)
    entries: list[Entry] = []
    for raw in raw_entries:
        entry = normalise_entry(
            raw,
            feed_url=base,
            fetched_at=fetched_at,
            default_language=default_language,
            feed_language=feed_language,
        )
        if entry is not None:
            entries.append(entry)
    structural = bozo_exc is not None and type(bozo_exc).__name__ not in _HARMLESS
    if structural and not entries:
        raise ParseError(
            f"the feed is not well-formed XML and no entry could be recovered ({_describe(bozo_exc)})",
            reason="malformed",
        )

    warnings: list[str] = []
    if bozo_exc is not None:
        warnings.append(_describe(bozo_exc))
    if repaired is not body:
        warnings.append("invalid character references replaced")
    return finish(
        title=_feed_text(feed, "title"),
        link=http_link(feed.get("link"), base),
        language=feed_language or language_code(default_language),
        entries=entries,
        normalised=len(raw_entries),
        warnings=warnings,
    )
