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


IDLE_GRACE = dt.timedelta(minutes=2)
"""How long a due feed may wait for a running daemon before the page says none polls."""


@dataclass(frozen=True, slots=True)
class FeedsOverview:
    """The feeds page: failing feeds first, and what the whole set says.

    ``failing``: a sentence when most feeds fail (the cause is then likely on this side);
    ``idle``: no daemon has polled since a feed became due, so "next poll" times in the
    past mean nothing: those feeds are due now, and ``last_poll_at`` is the latest poll of
    any feed (None: never).
    """

    feeds: tuple[FeedSnapshot, ...]
    now: dt.datetime
    failing: str | None
    idle: bool
    last_poll_at: dt.datetime | None


def is_failing(feed: FeedSnapshot) -> bool:
    """The feed's last poll failed (it is backing off, or was just retried and failed)."""
    return feed.enabled and feed.consecutive_failures > 0


def is_polled(feed: FeedSnapshot) -> bool:
    """A daemon polls the feed when it is due (not disabled in the config, nor gone: a 410)."""
    return feed.enabled and feed.state != "disabled"


def failing_banner(feeds: Sequence[FeedSnapshot]) -> str | None:
    """One sentence when most of the polled feeds (two or more) are failing, else None."""
    polled = [f for f in feeds if f.enabled and f.last_poll_at is not None]
    failing = [f for f in polled if is_failing(f)]
    if len(failing) < 2 or 2 * len(failing) <= len(polled):
        return None
    head = f"{len(failing)} of {len(polled)} feeds are failing"
    reasons = {f.last_error_reason for f in failing}
    if len(reasons) != 1:
        return f"{head}, for different reasons: see each feed's last error below."
    from monitor.app.poll import shared_cause  # the poll cycle's wording, without its imports at start-up

    (reason,) = reasons
    errors = [f.last_error for f in failing]
    return f"{head} {shared_cause(reason, errors, otherwise='see the errors below')}"


def daemon_idle(feeds: Sequence[FeedSnapshot], now: dt.datetime) -> bool:
    """True when a feed has been due for longer than :data:`IDLE_GRACE` and no feed was
    polled since it became due: no daemon is polling this database."""
    overdue = [f.next_poll_at for f in feeds if is_polled(f) and f.next_poll_at < now - IDLE_GRACE]
    if not overdue:
        return False
    polls = [f.last_poll_at for f in feeds if f.last_poll_at is not None]
    return not polls or max(polls) < min(overdue)


def feeds_overview(store: Store, *, now: dt.datetime | None = None) -> FeedsOverview:
    """What the feeds page shows: every feed, failing ones first (most failures first)."""
    now = now or dt.datetime.now(dt.UTC)
    feeds = store.feeds()
    ordered = sorted(feeds, key=lambda f: (not is_failing(f), -f.consecutive_failures if is_failing(f) else 0))
    polls = [f.last_poll_at for f in feeds if f.last_poll_at is not None]
    return FeedsOverview(
        tuple(ordered), now, failing_banner(feeds), daemon_idle(feeds, now), max(polls) if polls else None
    )


def duration_text(seconds: float) -> str:
    """``90s``, ``10m``, ``2h``, ``2.5h``: an interval as people write it."""
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s % 3600 == 0:
        return f"{s // 3600}h"
    return f"{s // 60}m" if s < 7200 else f"{s / 3600:.1f}h"


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


def _follow_page(config: Config, url: str, reason: str, editor: ConfigEditor, progress: Progress) -> tuple[str, Any]:
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
    "FeedsOverview",
    "OpmlExport",
    "OpmlImport",
    "add_feed",
    "daemon_idle",
    "duration_text",
    "failing_banner",
    "feeds_overview",
    "feed_status",
    "import_opml",
    "internal_warnings",
    "is_failing",
    "is_polled",
    "opml_export",
    "remove_feed",
]
