"""The feedparser boundary: fetched bytes in, a :class:`ParsedFeed` or a ParseError out.

:func:`parse_feed` is the only place that calls feedparser. It is a top-level function
whose inputs and outputs are plain picklable values, so the pipeline can run it in a
``ProcessPoolExecutor`` (parsing is the expensive step of a poll cycle).

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
  summaries and content, which :func:`monitor.entries.html_to_text` turns into plain text
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
  (``&#55296;``) make feedparser raise instead of flagging the feed (feedparser #599).
  They are rewritten first: a surrogate pair written as two references (a common
  JavaScript-made emoji) becomes the real character, anything else U+FFFD. One bad
  character should not cost a feed all of its entries.

Judging the result: ``bozo`` alone means little. An encoding override or a non-XML
Content-Type with entries is harmless (recorded in ``warnings``); a recoverable XML
error with entries is a warning too (feedparser's loose parser got them). Errors are:
``empty`` (no bytes), ``not_a_feed`` (no RSS/Atom/RDF root and no entries: an HTML page,
JSON, random bytes), ``malformed`` (a feed root but broken XML and no entry recovered),
``entity_expansion`` and ``parser_crash`` (feedparser raised). A well-formed feed with
zero entries is not an error.
"""

from __future__ import annotations

import codecs
import io
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import feedparser

from monitor.entries import Entry, html_to_text, language_code, normalise_entry
from monitor.errors import ParseError

__all__ = ["MAX_ENTITY_DECLARATIONS", "MAX_ENTITY_EXPANSION", "ParsedFeed", "parse_feed"]

#: Most characters that declared XML entities may add to a document when expanded.
MAX_ENTITY_EXPANSION = 1_000_000
#: Most entity declarations a document may carry: feedparser's DOCTYPE handling takes
#: time quadratic in their number (40,000 tiny declarations cost 6 s), and no real feed
#: declares more than a few (an inlined XHTML entity set is about 250).
MAX_ENTITY_DECLARATIONS = 1_000


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A parsed feed: its own metadata and its normalised, de-duplicated entries."""

    title: str | None
    link: str | None
    language: str | None
    entries: tuple[Entry, ...]
    warnings: tuple[str, ...]  # harmless oddities, worth a debug log line


# Bozo exceptions that say nothing about the document's structure.
_HARMLESS = ("CharacterEncodingOverride", "NonXMLContentType")

_HEAD_END = re.compile(rb"<\w")
_ENTITY_DECL = re.compile(rb"<!ENTITY\s+([^\s%\"'>]+)\s+\"([^\"]*)\"")
_ENTITY_REF = re.compile(rb"&([^\s&;<>\"']{1,200});")
_SUSPICIOUS_CHARREF = re.compile(rb"&#0*[0-9]{5,};|&#[xX]0*(?:[dD][89a-fA-F][0-9a-fA-F]{2}|[0-9a-fA-F]{5,});")
_CHARREF = re.compile(rb"&#([xX][0-9a-fA-F]+|[0-9]+);")
_REPLACEMENT = b"&#xFFFD;"
# Byte-order marks and "<?" in encodings that are not ASCII-compatible.
_WIDE_ENCODINGS = (
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF16_BE, "utf-16"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (b"\x00\x00\x00\x3c", "utf-32-be"),
    (b"\x3c\x00\x00\x00", "utf-32-le"),
    (b"\x00\x3c\x00\x3f", "utf-16-be"),
    (b"\x3c\x00\x3f\x00", "utf-16-le"),
    (b"\x4c\x6f\xa7\x94", "cp037"),
)


def _ascii_compatible(body: bytes) -> bytes:
    """``body`` as UTF-8 if it is in a wide encoding (so byte regexes can read its
    markup), else ``body`` itself."""
    for marker, encoding in _WIDE_ENCODINGS:
        if body.startswith(marker):
            return body.decode(encoding, "replace").encode("utf-8")
    return body


def _check_entity_expansion(body: bytes) -> None:
    """Refuse documents whose declared entities would expand beyond the budget.

    Mirrors what feedparser keeps: entity declarations in the prolog with a
    double-quoted value (anything with ``&`` in it, i.e. nesting, it drops itself).
    """
    text = _ascii_compatible(body)
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


def _without_userinfo(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _describe(exc: object) -> str:
    return f"{type(exc).__name__}: {exc}"


def _not_a_feed_message(body: bytes, content_type: str | None) -> str:
    mime = (content_type or "").split(";")[0].strip().lower()
    start = _ascii_compatible(body[:4096]).lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    html_like = b"<html" in start or start.startswith(b"<!doctype html")
    if mime in ("text/html", "application/xhtml+xml") or html_like:
        return "the server returned an HTML page, not a feed (is the feed URL right?)"
    if mime.endswith("json") or start[:1] in (b"{", b"["):
        return "the server returned JSON, not an RSS, Atom or RDF feed (JSON Feed is not supported)"
    return "the response is not an RSS, Atom or RDF feed (no feed element found)"


def _completeness(entry: Entry) -> tuple[bool, bool, bool, int]:
    return (entry.link is not None, bool(entry.title), entry.date_from_feed, len(entry.summary))


def _collapse_duplicates(entries: list[Entry]) -> tuple[list[Entry], int]:
    """One entry per ``story_key``, the most complete of its copies (the first on a tie),
    at the position of the first copy. Collapsing on ``story_key`` rather than on the
    raw GUID matters: some feeds give every item the same GUID (the site's home page)
    while each item has its own link, and those are different stories."""
    chosen: dict[str, Entry] = {}
    for entry in entries:
        kept = chosen.get(entry.story_key)
        if kept is None or _completeness(entry) > _completeness(kept):
            chosen[entry.story_key] = entry
    return list(chosen.values()), len(entries) - len(chosen)


def _feed_text(feed: Mapping[str, Any], key: str) -> str | None:
    value = feed.get(key)
    if not isinstance(value, str):
        return None
    detail = feed.get(f"{key}_detail")
    kind = detail.get("type") if isinstance(detail, Mapping) else None
    text = html_to_text(value) if kind in ("text/html", "application/xhtml+xml") else value
    return " ".join(text.split()) or None


def _http_link(value: object, base: str) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        link = urljoin(base, value.strip())
        scheme = urlsplit(link).scheme
    except ValueError:
        return None
    return link if scheme in ("http", "https") else None


def parse_feed(
    body: bytes,
    *,
    url: str,
    content_type: str | None,
    fetched_at: datetime,
    default_language: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> ParsedFeed:
    """Parse fetched feed bytes into normalised entries (see the module docstring).

    ``url`` is the final URL the body came from (after redirects): relative links
    resolve against it. ``content_type`` is the response's Content-Type (None if
    absent; ``headers["content-type"]`` is used then). ``headers`` may also carry
    ``Content-Language``, used when the feed declares no language of its own.
    ``fetched_at`` (timezone-aware) stands in for missing or future entry dates.

    Raises :class:`monitor.errors.ParseError` with ``reason`` one of ``empty``,
    ``not_a_feed``, ``malformed``, ``entity_expansion``, ``parser_crash``; and
    ValueError for a naive ``fetched_at`` (a programming error, not a feed's fault).
    """
    if fetched_at.tzinfo is None or fetched_at.utcoffset() is None:
        raise ValueError("fetched_at must be timezone-aware")
    lowered = {key.lower(): value for key, value in (headers or {}).items()}
    content_type = content_type or lowered.get("content-type")
    if not body.lstrip(b"\xef\xbb\xbf \t\r\n\x00"):
        raise ParseError("the server returned an empty body, not a feed", reason="empty")

    _check_entity_expansion(body)
    repaired = _repair_charrefs(body)
    base = _without_userinfo(url)
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
        raise ParseError(_not_a_feed_message(body, content_type), reason="not_a_feed")

    feed = result.get("feed") or {}
    feed_language = language_code(feed.get("language")) or language_code(lowered.get("content-language"))
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
    dropped = len(raw_entries) - len(entries)
    if dropped:
        warnings.append(f"{dropped} empty entries dropped (no title, summary or link)")
    entries, collapsed = _collapse_duplicates(entries)
    if collapsed:
        warnings.append(f"{collapsed} duplicate entries collapsed")

    return ParsedFeed(
        title=_feed_text(feed, "title"),
        link=_http_link(feed.get("link"), base),
        language=feed_language or language_code(default_language),
        entries=tuple(entries),
        warnings=tuple(warnings),
    )
