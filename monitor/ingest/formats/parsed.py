"""What every source format produces, and the steps all formats share.

:class:`ParsedFeed` is the one result of parsing, whatever the format: the pool sends it
back from its worker processes (so it is a plain picklable value) and the poll cycle
reads it. The helpers here are the parts of parsing that do not depend on the format:
looking at the first bytes of a body (:func:`head_of`), the not-a-feed message, the
feed URL without its password, the feed's own link, and :func:`finish`, which collapses
duplicate entries and words the warnings the same way for every format.

Pure module: no parser, network or database import; the format modules and the
registry import it, never the other way round.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

from monitor.ingest.entries import Entry

__all__ = [
    "HEAD_BYTES",
    "ParsedFeed",
    "ascii_compatible",
    "finish",
    "head_of",
    "http_link",
    "not_a_feed_message",
    "without_userinfo",
]

#: How much of a body the format sniffers and the not-a-feed message look at.
HEAD_BYTES = 4096


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A parsed feed: its own metadata and its normalised, de-duplicated entries."""

    title: str | None
    link: str | None
    language: str | None
    entries: tuple[Entry, ...]
    warnings: tuple[str, ...]  # harmless oddities, worth a debug log line


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
_LEADING = b"\xef\xbb\xbf \t\r\n"


def ascii_compatible(body: bytes) -> bytes:
    """``body`` as UTF-8 if it is in a wide encoding (so byte regexes can read its
    markup), else ``body`` itself."""
    for marker, encoding in _WIDE_ENCODINGS:
        if body.startswith(marker):
            return body.decode(encoding, "replace").encode("utf-8")
    return body


def head_of(body: bytes) -> bytes:
    """The first :data:`HEAD_BYTES` of ``body``, ASCII-compatible, without a leading
    byte-order mark or white space: what sniffers look at."""
    return ascii_compatible(body[:HEAD_BYTES]).lstrip(_LEADING)


def not_a_feed_message(head: bytes, content_type: str | None) -> str:
    """Why a body that no format recognised is no feed, in words a user can act on."""
    mime = (content_type or "").split(";")[0].strip().lower()
    start = head.lower()
    html_like = b"<html" in start or start.startswith(b"<!doctype html")
    if mime in ("text/html", "application/xhtml+xml") or html_like:
        return "the server returned an HTML page, not a feed (is the feed URL right?)"
    if mime.endswith("json"):
        return "the response is labelled JSON but is neither a JSON Feed nor an RSS, Atom or RDF feed"
    return "the response is not an RSS, Atom or RDF feed (no feed element found)"


def without_userinfo(url: str) -> str:
    """``url`` without ``user:password@``: the base links resolve against, which must
    not carry a password into a stored link."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def http_link(value: object, base: str) -> str | None:
    """``value`` resolved against ``base`` if it is an http(s) URL, else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        link = urljoin(base, value.strip())
        scheme = urlsplit(link).scheme
    except ValueError:
        return None
    return link if scheme in ("http", "https") else None


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


def finish(
    *,
    title: str | None,
    link: str | None,
    language: str | None,
    entries: list[Entry],
    normalised: int,
    warnings: list[str],
) -> ParsedFeed:
    """The :class:`ParsedFeed` of ``entries``, the non-empty results of normalising
    ``normalised`` raw entries: duplicates collapsed, and both counts added to
    ``warnings``."""
    dropped = normalised - len(entries)
    if dropped:
        warnings.append(f"{dropped} empty entries dropped (no title, summary or link)")
    kept, collapsed = _collapse_duplicates(entries)
    if collapsed:
        warnings.append(f"{collapsed} duplicate entries collapsed")
    return ParsedFeed(title=title, link=link, language=language, entries=tuple(kept), warnings=tuple(warnings))
