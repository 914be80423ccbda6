"""Source formats as plug-ins: the registry, and :func:`parse_feed`, which picks one.

A format is one module (``formats/xml.py``: RSS, Atom and RDF through feedparser;
``formats/jsonfeed.py``: JSON Feed 1.0 and 1.1) and one :class:`Format` line in
:data:`FORMATS`. Every format returns the same :class:`ParsedFeed`, its entries made by
:func:`monitor.ingest.entries.normalise_entry`, so nothing after parsing knows which
format a feed was in.

Choosing (:func:`choose_format`), on the response's Content-Type and the first bytes:

1. the format that lists the MIME type, if the body's start does not say otherwise;
2. else the first format whose sniff recognises the start (``<`` or a feed root for
   XML, ``{`` or ``[`` for JSON): ``application/json``, ``text/html``, ``text/plain``
   or no Content-Type at all, and a body under the wrong label (an RSS document served
   as ``application/feed+json``) end here;
3. else the format the MIME type named, which reports its own error;
4. else nothing fits: ``ParseError(reason="not_a_feed")`` with the message a user
   can act on ("the server returned an HTML page...", "not an RSS, Atom or RDF feed").

Before choosing: an empty body is ``reason="empty"`` whatever the format, and
user-info is taken out of the URL that links resolve against.

:func:`parse_feed` is a top-level function whose inputs and outputs are plain picklable
values: :class:`monitor.ingest.pool.ParsePool` runs it in worker processes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from monitor.errors import ParseError
from monitor.ingest.formats import jsonfeed, xml
from monitor.ingest.formats.parsed import ParsedFeed, head_of, not_a_feed_message, without_userinfo

__all__ = ["FORMATS", "Format", "FormatParser", "ParsedFeed", "choose_format", "parse_feed"]


class FormatParser(Protocol):
    """What a format module's ``parse`` takes: the body, the feed URL without user-info
    (``base``), the response's Content-Type and Content-Language, the configured
    language and the fetch time (aware)."""

    def __call__(
        self,
        body: bytes,
        *,
        base: str,
        content_type: str | None,
        fetched_at: datetime,
        default_language: str | None,
        header_language: str | None,
    ) -> ParsedFeed: ...


@dataclass(frozen=True, slots=True)
class Format:
    """One source format: its name, the MIME types that name it, a cheap test of a
    body's first bytes (:func:`~monitor.ingest.formats.parsed.head_of`) and its parser."""

    name: str
    mime_types: frozenset[str]
    sniff: Callable[[bytes], bool]
    parse: FormatParser


FORMATS: tuple[Format, ...] = (
    Format("xml", xml.MIME_TYPES, xml.sniff, xml.parse),
    Format("jsonfeed", jsonfeed.MIME_TYPES, jsonfeed.sniff, jsonfeed.parse),
)


def choose_format(head: bytes, content_type: str | None) -> Format | None:
    """The format to parse a body with (see the module docstring), None if none fits."""
    mime = (content_type or "").split(";")[0].strip().lower()
    named = next((f for f in FORMATS if mime in f.mime_types), None)
    if named is not None and named.sniff(head):
        return named
    return next((f for f in FORMATS if f.sniff(head)), named)


def parse_feed(
    body: bytes,
    *,
    url: str,
    content_type: str | None,
    fetched_at: datetime,
    default_language: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> ParsedFeed:
    """Parse fetched feed bytes into normalised entries, in whichever format they are.

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
    head = head_of(body)
    chosen = choose_format(head, content_type)
    if chosen is None:
        raise ParseError(not_a_feed_message(head, content_type), reason="not_a_feed")
    return chosen.parse(
        body,
        base=without_userinfo(url),
        content_type=content_type,
        fetched_at=fetched_at,
        default_language=default_language,
        header_language=lowered.get("content-language"),
    )
