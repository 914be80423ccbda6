"""Feed status, and feed edits: add (after fetching the feed once), remove, OPML import and export.

A feed URL whose host resolves to an internal address (loopback, private, link-local:
:func:`~monitor.ingest.fetch.is_internal_address`) is still added (a URL the user adds
is the user's choice), with a warning naming the address: an OPML file from elsewhere
could point the daemon at this machine's own services. Each distinct host is resolved
once, one after the other (a cached resolver answers in microseconds; an unknown name
costs the resolver's own timeout once).
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from monitor.app.services.common import Progress, Saved, no_progress
from monitor.config.edit import ConfigEditor, FeedSpec, normalise_feed_url, slug, unique_name
from monitor.config.model import Config, LoadedConfig, escape_env
from monitor.config.opml import ExportFeed, export_opml, parse_opml, plan_import
from monitor.errors import ConfigError, MonitorError
from monitor.ingest.fetch import is_internal_address, redact_url
from monitor.ingest.schedule import FeedSnapshot
from monitor.storage.store import Store


class FeedCheckError(MonitorError):
    """A feed that was fetched once before being added, and did not work."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url} was not added: {reason}")


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """Every feed's state, and the outbox's alert counts by status."""

    feeds: tuple[FeedSnapshot, ...]
    alerts: dict[str, int]


def feed_status(store: Store) -> FeedStatus:
    """What ``news-monitor feeds`` and the feeds page show."""
    return FeedStatus(tuple(store.feeds()), store.alert_counts())


def _probe_feeds(config: Config, urls: Sequence[str], *, progress: Progress = no_progress) -> dict[str, Any]:
    """Fetch and parse each URL once: url -> ParsedFeed, or the reason it is not a feed."""
    from monitor.app.daemon import fetch_settings
    from monitor.ingest.fetch import FeedFetchError, Fetcher, FetchRequest
    from monitor.ingest.formats import parse_feed

    out: dict[str, Any] = {}
    now = dt.datetime.now(dt.UTC)
    with Fetcher(fetch_settings(config)) as fetcher, progress(len(urls), "checking feeds") as advance:
        for outcome in fetcher.fetch_many(FetchRequest(key=u, url=u) for u in urls):
            url = outcome.request.key
            advance(1)
            if isinstance(outcome, FeedFetchError):
                out[url] = f"{outcome.reason}: {outcome}"
                continue
            try:
                out[url] = parse_feed(outcome.body, url=outcome.url, content_type=outcome.content_type, fetched_at=now)
            except MonitorError as exc:
                out[url] = f"not a feed: {exc}"
    return out


def _discover(config: Config, url: str) -> list[str]:
    """The feeds the page at ``url`` announces (``<link rel="alternate">``), if it is a page."""
    from monitor.app.daemon import fetch_settings
    from monitor.ingest.discover import feed_links, looks_like_html
    from monitor.ingest.fetch import FeedFetchError, Fetcher, FetchRequest

    with Fetcher(fetch_settings(config)) as fetcher:
        try:
            page = fetcher.fetch(FetchRequest(key=url, url=url))
        except FeedFetchError:
            return []
    return feed_links(page.body, page.url) if looks_like_html(page.body) else []


def _internal_address(host: str) -> str | None:
    """The first internal address ``host`` resolves to, or None (public, or unresolvable)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return None
    for info in infos:
        address = str(info[4][0])
        if is_internal_address(address):
            return address
    return None


def internal_warnings(urls: Sequence[str]) -> tuple[str, ...]:
    """One warning per URL whose host resolves to an internal address, naming the address."""
    found: dict[str, str | None] = {}
    out = []
    for url in urls:
        try:
            host = urlsplit(url).hostname
        except ValueError:
            continue
        if not host:
            continue
        if host not in found:
            found[host] = _internal_address(host)
        address = found[host]
        if address is not None:
            out.append(
                f"warning: {redact_url(url)} points at an internal address ({address}): "
                "the daemon will fetch from this machine's network"
            )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class FeedAdded:
    """A feed written to the config; ``title``/``entries`` when it was fetched first;
    ``warnings``: its host is internal (:func:`internal_warnings`)."""

    saved: Saved
    url: str
    title: str | None = None
    entries: int | None = None
    warnings: tuple[str, ...] = ()


def add_feed(
    loaded: LoadedConfig,
    url: str,
    *,
    name: str | None = None,
    language: str | None = None,
    interval: str | None = None,
    check: bool = True,
    progress: Progress = no_progress,
) -> FeedAdded:
    """Add a feed, after fetching it once (``check``) to see it is one (:class:`FeedCheckError`).

    The name defaults to a slug of the feed's title (or of its URL), made unique.
    """
    editor = ConfigEditor(loaded.path)
    _refuse_duplicate(editor, url)  # before any request
    title = entries = None
    if check:
        got = _probe_feeds(loaded.config, [url], progress=progress)[url]
        if isinstance(got, str) and got.startswith("not a feed"):
            url, got = _follow_page(loaded.config, url, got, editor, progress)
        if isinstance(got, str):
            raise FeedCheckError(url, got)
        title, entries = got.title, len(got.entries)
        language = language or (got.language[:16] if got.language else None)
    if name is None:
        base = slug(title or "", fallback="") or slug(url.split("://", 1)[-1])
        name = unique_name(base[:64], set(editor.feed_names()))
    editor.add_feed(FeedSpec(name, url, interval, language))
    editor.save()
    saved = Saved(str(loaded.path), tuple(editor.changes), name)
    return FeedAdded(saved, url, title, entries, internal_warnings([url]))


def _refuse_duplicate(editor: ConfigEditor, url: str) -> None:
    known = editor.feed_urls().get(normalise_feed_url(escape_env(url)))
    if known is not None:
        raise ConfigError(f"the feed {redact_url(url)} is already configured as {known!r}", file=editor.file)


def _follow_page(
    config: Config, url: str, reason: str, editor: ConfigEditor, progress: Progress
) -> tuple[str, Any]:
    """``url`` is not a feed: when it is a web page announcing feeds, the first that works.

    Returns the URL to add and its probe (a ParsedFeed, or why nothing worked, with a
    suggestion)."""
    links = _discover(config, url)
    if not links:
        return url, (
            f"{reason}; no feed is announced on that page either: use the feed's own URL "
            "(look for an RSS or Atom link; it often ends in /feed, /rss or /atom.xml)"
        )
    probes = _probe_feeds(config, links[:5], progress=progress)
    for link in links[:5]:
        if not isinstance(probes[link], str):
            _refuse_duplicate(editor, link)
            return link, probes[link]
    tried = "; ".join(f"{redact_url(link)}: {probes[link]}" for link in links[:5])
    return url, f"the page announces feeds, but none works ({tried})"


def remove_feed(config_path: str, name: str) -> Saved:
    """Remove a feed from the config (its stored stories stay; polling stops)."""
    editor = ConfigEditor(config_path)
    editor.remove_feed(name)
    editor.save()
    return Saved(config_path, tuple(editor.changes), name)


@dataclass(frozen=True, slots=True)
class OpmlImport:
    """The feeds of an OPML file added (or, on a dry run, that would be), and those skipped."""

    added: tuple[FeedSpec, ...]
    skipped: tuple[tuple[str, str], ...]  # (outline or URL, reason)
    saved: Saved | None  # None: nothing written (a dry run, or nothing to add)
    warnings: tuple[str, ...] = ()  # added feeds whose host is internal


def import_opml(
    loaded: LoadedConfig,
    data: bytes,
    *,
    file: str = "OPML file",
    language: str | None = None,
    check: bool = False,
    dry_run: bool = False,
    progress: Progress = no_progress,
) -> OpmlImport:
    """Add the feeds of an OPML document not configured yet (same URL); ``check``: working ones only."""
    found, skipped = parse_opml(data, file=file)
    editor = ConfigEditor(loaded.path)
    plan = plan_import(found, names=editor.feed_names(), urls=editor.feed_urls(), language=language)
    adding = list(plan.add)
    skipped += list(plan.skipped)
    if check and adding:
        probed = _probe_feeds(loaded.config, [f.url for f in adding], progress=progress)
        skipped += [(f.url, probed[f.url]) for f in adding if isinstance(probed[f.url], str)]
        adding = [f for f in adding if not isinstance(probed[f.url], str)]
    warnings = internal_warnings([f.url for f in adding])
    if dry_run or not adding:
        return OpmlImport(tuple(adding), tuple(skipped), None, warnings)
    editor.add_feeds(adding)
    editor.save()
    return OpmlImport(tuple(adding), tuple(skipped), Saved(str(loaded.path), tuple(editor.changes)), warnings)


@dataclass(frozen=True, slots=True)
class OpmlExport:
    """An OPML 2.0 document and the number of feeds in it."""

    document: str
    feeds: int


def opml_export(config: Config) -> OpmlExport:
    """The configured feeds as an OPML 2.0 document."""
    doc = export_opml([ExportFeed(f.name, f.url, f.language, f.enabled) for f in config.feeds])
    return OpmlExport(doc, len(config.feeds))


__all__ = [
    "FeedAdded",
    "FeedCheckError",
    "FeedStatus",
    "OpmlExport",
    "OpmlImport",
    "add_feed",
    "feed_status",
    "import_opml",
    "internal_warnings",
    "opml_export",
    "remove_feed",
]
