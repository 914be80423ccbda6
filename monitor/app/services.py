"""What the command line and the web page do, done once: the service layer.

Every ``news-monitor`` command and every page of the web app is presentation only: it
parses its input, calls ONE function of this module and renders the frozen value it
returns. So a backtest, a live preview, a watchlist saved with a backfill, an OPML
import or a story search gives the same answer wherever it is asked.

Contract of each function: plain arguments in (a config path or a parsed
:class:`~monitor.config.model.Config`, a :class:`~monitor.storage.store.Store`, strings
and numbers); a frozen dataclass out; every refusal a
:class:`~monitor.errors.MonitorError` whose message a person can act on. Edits go
through :class:`~monitor.config.edit.ConfigEditor` (validated like the daemon validates,
atomic, comments kept). Long runs report progress through a ``Progress`` factory
(``progress(total, description)`` is a context manager yielding ``advance(n)``), so
the CLI can draw a bar and the web page draws nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from monitor.config.edit import ConfigEditor, FeedSpec, WatchlistSpec, slug, unique_name
from monitor.config.model import Config, LoadedConfig, WatchlistConfig, load_config
from monitor.config.opml import ExportFeed, export_opml, parse_opml, plan_import
from monitor.errors import ConfigError, MonitorError, QuerySyntaxError
from monitor.ingest.schedule import FeedSnapshot
from monitor.matching.backtest import Backtest, BacktestMatch, backtest, days_ago
from monitor.matching.matcher import Matcher, WatchlistQuery
from monitor.storage.search import SearchResult, search_stories, term_spans
from monitor.storage.store import MatchedStory, Store, StoredStory, StoryDetail

Advance = Callable[[int], object]
Progress = Callable[[int, str], AbstractContextManager[Advance]]
StoryWindow = Callable[[float], Sequence[StoredStory]]  # days -> stories published in them, newest first


@contextmanager
def no_progress(_total: int, _description: str) -> Iterator[Advance]:
    """The :data:`Progress` of callers that show none."""
    yield lambda _n: None


class UnknownWatchlistError(ConfigError):
    """A watchlist name the config does not have."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        super().__init__(f"no watchlist {name!r} (known: {', '.join(known) or 'none'})")


class FeedCheckError(MonitorError):
    """A feed that was fetched once before being added, and did not work."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url} was not added: {reason}")


# --------------------------------------------------------------------------- backtests and previews


@dataclass(frozen=True, slots=True)
class BacktestReport:
    """A backtest over the last ``days``; ``before``: the saved query's, when one is compared."""

    days: float
    query: str
    result: Backtest[StoredStory]
    before: Backtest[StoredStory] | None = None

    @property
    def gained(self) -> tuple[BacktestMatch[StoredStory], ...]:
        if self.before is None:
            return ()
        return tuple(m for m in self.result.matched if m.story.id not in self.before.ids)

    @property
    def lost(self) -> tuple[BacktestMatch[StoredStory], ...]:
        if self.before is None:
            return ()
        return tuple(m for m in self.before.matched if m.story.id not in self.result.ids)


def stories_since(store: Store) -> StoryWindow:
    """The stories of the last N days, read from ``store`` on each call."""
    return lambda days: store.stories_published_since(days_ago(days))


class RecentStories:
    """A :data:`StoryWindow` cached for ``seconds``: the live preview runs on every keystroke."""

    def __init__(self, store: Store, seconds: float = 20.0) -> None:
        self.store = store
        self.seconds = seconds
        self._cache: dict[float, tuple[float, list[StoredStory]]] = {}
        self._lock = threading.Lock()

    def __call__(self, days: float) -> list[StoredStory]:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(days)
            if hit and now - hit[0] < self.seconds:
                return hit[1]
        stories = self.store.stories_published_since(days_ago(days))
        with self._lock:
            self._cache = {days: (now, stories)}
        return stories


def watchlist_matcher(config: Config, name: str, *, query: str | None = None) -> Matcher:
    """A matcher of one configured watchlist (enabled or not), or of ``query`` under its name.

    Raises ``KeyError`` for an unknown name, :class:`~monitor.errors.QuerySyntaxError`
    for a bad query.
    """
    try:
        wl = config.watchlist(name)
        stem: tuple[str, ...] = tuple(wl.stem)
        text = wl.query if query is None else query
    except KeyError:
        if query is None:
            raise
        stem, text = (), query
    return Matcher([WatchlistQuery(name, text, stem)], config.aliases)


def require_watchlist(config: Config, name: str) -> WatchlistConfig:
    """The watchlist ``name`` of ``config``, or :class:`UnknownWatchlistError`."""
    try:
        return config.watchlist(name)
    except KeyError:
        raise UnknownWatchlistError(name, [w.name for w in config.watchlists]) from None


def _unnamed(exc: QuerySyntaxError) -> QuerySyntaxError:
    """The error of a query being tried, without the watchlist name it was compiled under."""
    base = exc.message.split(" at column ")[0]
    if exc.watchlist and base.startswith("watchlist "):
        base = base.split(": ", 1)[1]
    return QuerySyntaxError(base, query=exc.query, column=exc.column, expected=exc.expected)


def backtest_watchlist(
    config: Config,
    stories: StoryWindow,
    *,
    days: float,
    name: str | None = None,
    query: str | None = None,
    stem: Sequence[str] | None = None,
    compare_with: str | None = None,
    progress: Progress = no_progress,
) -> BacktestReport:
    """What watchlist ``name``, or ``query``, would have matched in the last ``days``.

    ``query`` replaces ``name``'s query (with ``name``'s stemming unless ``stem`` is
    given); ``compare_with`` names a saved watchlist whose current query is run too, for
    the stories gained and lost (none when it no longer exists). Raises
    :class:`UnknownWatchlistError` for an unknown ``name``, and a
    :class:`~monitor.errors.QuerySyntaxError` naming no watchlist for a bad ``query``.
    """
    if name is None and query is None:
        raise ValueError("a watchlist name, or a query, or both")
    label = name or "query"
    text = query if query is not None else require_watchlist(config, label).query
    if name is not None:
        stem = tuple(require_watchlist(config, name).stem) if stem is None else stem
    try:
        matcher = Matcher([WatchlistQuery(label, text, tuple(stem or ()))], config.aliases)
    except QuerySyntaxError as exc:
        if query is None:
            raise
        raise _unnamed(exc) from None
    baseline = None
    if compare_with is not None and compare_with in {w.name for w in config.watchlists}:
        baseline = watchlist_matcher(config, compare_with)
    window = stories(days)
    with progress(len(window) * (2 if baseline else 1), f"testing {label}") as advance:
        result = backtest(matcher, label, window, progress=advance)
        before = backtest(baseline, compare_with or label, window, progress=advance) if baseline else None
    return BacktestReport(days, text, result, before)


# --------------------------------------------------------------------------- watchlist edits


@dataclass(frozen=True, slots=True)
class Backfill:
    """A backfill: stored stories of the last ``days`` matched, their alerts queued."""

    watchlist: str
    days: float
    scanned: int = 0
    matches: int = 0
    alerts: int = 0
    skipped: str | None = None  # why nothing was done (a disabled watchlist)


@dataclass(frozen=True, slots=True)
class Saved:
    """An edit written to the config file."""

    path: str
    changes: tuple[str, ...]
    name: str = ""  # the watchlist or feed written
    backfill: Backfill | None = None
    backfill_error: str | None = None  # the edit is saved; the backfill after it failed

    @property
    def summary(self) -> str:
        return "; ".join(self.changes)


@dataclass(frozen=True, slots=True)
class EditableWatchlist:
    """A watchlist as the file has it, and a stamp of that version (to refuse lost updates)."""

    spec: WatchlistSpec
    version: str


@dataclass(frozen=True, slots=True)
class WatchlistChanges:
    """What ``watchlist edit`` changes: ``None`` (or empty) keeps the current value."""

    query: str | None = None
    notify: tuple[str, ...] = ()
    stem: tuple[str, ...] = ()
    no_stem: bool = False
    enabled: bool | None = None
    description: str | None = None  # "" removes it
    rename: str | None = None

    def apply(self, base: WatchlistSpec, name: str) -> WatchlistSpec:
        return WatchlistSpec(
            name=self.rename or name,
            query=base.query if self.query is None else self.query,
            notify=self.notify or base.notify,
            stem=() if self.no_stem else (self.stem or base.stem),
            enabled=base.enabled if self.enabled is None else self.enabled,
            description=base.description if self.description is None else (self.description or None),
        )


def spec_version(spec: WatchlistSpec) -> str:
    """A stamp of what a watchlist does (query, targets, stemming, state)."""
    return hashlib.sha256(json.dumps([spec.query, spec.notify, spec.stem, spec.enabled]).encode()).hexdigest()[:16]


def editable_watchlist(config_path: str, name: str) -> EditableWatchlist:
    """Watchlist ``name`` as written in the file (:class:`ConfigError` when it is not there)."""
    spec = ConfigEditor(config_path).watchlist(name)
    return EditableWatchlist(spec, spec_version(spec))


def backfill(
    store: Store,
    matcher: Matcher,
    name: str,
    targets: Sequence[str],
    *,
    days: float,
    progress: Progress = no_progress,
) -> Backfill:
    """Match the stories of the last ``days`` for one watchlist and queue their alerts.

    Idempotent: see :meth:`~monitor.storage.store.Store.record_backfill`.
    """
    stories = store.stories_published_since(days_ago(days))
    with progress(len(stories), f"backfill {name}") as advance:
        result = backtest(matcher, name, stories, progress=advance)
    n_matches, n_alerts = store.record_backfill(name, {m.story.id: m.result for m in result.matched}, targets)
    return Backfill(name, days, result.total, n_matches, n_alerts)


def _backfill_saved(config_path: str, name: str, days: float, store: Store | None, progress: Progress) -> Backfill:
    """Backfill watchlist ``name`` as the file now has it (``store``: None opens its database)."""
    loaded = load_config(config_path)
    wl = loaded.config.watchlist(name)
    if not wl.enabled:
        return Backfill(name, days, skipped=f"watchlist {name!r} is disabled: no backfill")
    own = store is None
    db = Store(loaded.database_url) if store is None else store
    try:
        return backfill(db, watchlist_matcher(loaded.config, name), name, wl.notify, days=days, progress=progress)
    finally:
        if own:
            db.close()


def _saved_with_backfill(
    config_path: str,
    editor: ConfigEditor,
    name: str,
    *,
    backfill_days: float | None,
    store: Store | None,
    progress: Progress,
) -> Saved:
    editor.save()
    done = Saved(config_path, tuple(editor.changes), name)
    if not backfill_days:
        return done
    try:
        return Saved(done.path, done.changes, name, _backfill_saved(config_path, name, backfill_days, store, progress))
    except MonitorError as exc:
        return Saved(done.path, done.changes, name, backfill_error=str(exc))


def save_watchlist(
    config_path: str,
    spec: WatchlistSpec,
    *,
    original: str | None = None,
    version: str | None = None,
    backfill_days: float | None = None,
    store: Store | None = None,
    progress: Progress = no_progress,
) -> Saved:
    """Add ``spec`` (``original`` None) or replace watchlist ``original`` with it.

    ``version``: the :func:`spec_version` of ``original`` when the edit started; a
    different one in the file now means someone else changed it, and the edit is refused.
    ``backfill_days``: then match the stored stories of those days and queue alerts.
    """
    editor = ConfigEditor(config_path)
    if original is None:
        editor.add_watchlist(spec)
    else:
        if version is not None and spec_version(editor.watchlist(original)) != version:
            raise ConfigError(
                f"watchlist {original!r} was changed in the file since this page was opened; "
                "reload the page to edit the current version"
            )
        editor.update_watchlist(original, spec)
    return _saved_with_backfill(
        config_path, editor, spec.name, backfill_days=backfill_days, store=store, progress=progress
    )


def edit_watchlist(
    config_path: str,
    name: str,
    changes: WatchlistChanges,
    *,
    backfill_days: float | None = None,
    store: Store | None = None,
    progress: Progress = no_progress,
) -> Saved:
    """Change some settings of watchlist ``name`` in place (the others, comments and order kept)."""
    editor = ConfigEditor(config_path)
    spec = changes.apply(editor.watchlist(name), name)
    editor.update_watchlist(name, spec)
    return _saved_with_backfill(
        config_path, editor, spec.name, backfill_days=backfill_days, store=store, progress=progress
    )


def remove_watchlist(config_path: str, name: str, *, confirm: Callable[[], object] | None = None) -> Saved:
    """Remove watchlist ``name`` (its stored matches and alerts stay).

    ``confirm`` is called once the removal is known to be valid, before anything is
    written; it aborts by raising.
    """
    editor = ConfigEditor(config_path)
    editor.remove_watchlist(name)
    if confirm is not None:
        confirm()
    editor.save()
    return Saved(config_path, tuple(editor.changes), name)


# --------------------------------------------------------------------------- watchlist views


@dataclass(frozen=True, slots=True)
class WatchlistDetail:
    """One watchlist, where it is written, and its latest stored matches."""

    watchlist: WatchlistConfig
    file: str
    line: int
    recent: tuple[MatchedStory, ...]


def watchlist_detail(loaded: LoadedConfig, store: Store, name: str, *, recent: int = 5) -> WatchlistDetail:
    """Watchlist ``name`` (:class:`UnknownWatchlistError` when the config has none)."""
    wl = require_watchlist(loaded.config, name)
    line = ConfigEditor(loaded.path).line_of("watchlists", name)
    return WatchlistDetail(wl, str(loaded.path), line, tuple(store.matched_stories(watchlist=name, limit=recent)))


@dataclass(frozen=True, slots=True)
class WatchlistOverview:
    """The watchlists of the config, with their matches of the last 7 days."""

    watchlists: tuple[WatchlistConfig, ...]
    counts: dict[str, int]


def watchlist_overview(config: Config, store: Store) -> WatchlistOverview:
    return WatchlistOverview(tuple(config.watchlists), store.match_counts(days_ago(7)))


@dataclass(frozen=True, slots=True)
class WatchlistFeed:
    """What a per-watchlist Atom or JSON feed lists: its latest matches, newest first."""

    name: str
    query: str
    items: tuple[MatchedStory, ...]


def watchlist_feed(config: Config, store: Store, name: str, *, limit: int = 100) -> WatchlistFeed:
    """The feed of watchlist ``name`` (:class:`UnknownWatchlistError` when there is none)."""
    wl = require_watchlist(config, name)
    return WatchlistFeed(wl.name, wl.query, tuple(store.matched_stories(watchlist=name, limit=limit)))


@dataclass(frozen=True, slots=True)
class AlertedStory:
    """A story that alerted, with every watchlist match of it and their hits."""

    story: MatchedStory
    matches: tuple[MatchedStory, ...]
    hits: tuple[tuple[str, str, int, int, str], ...]


def recent_alerts(store: Store, *, scan: int = 150, limit: int = 60) -> tuple[AlertedStory, ...]:
    """The latest alerted stories (one entry per story, however many watchlists matched it)."""
    grouped: dict[int, list[MatchedStory]] = {}
    for m in store.matched_stories(alerted_only=True, limit=scan):
        grouped.setdefault(m.story_id, []).append(m)
    return tuple(
        AlertedStory(ms[0], tuple(ms), tuple(h for m in ms for h in m.hits)) for ms in list(grouped.values())[:limit]
    )


# --------------------------------------------------------------------------- feeds


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """Every feed's state, and the outbox's alert counts by status."""

    feeds: tuple[FeedSnapshot, ...]
    alerts: dict[str, int]


def feed_status(store: Store) -> FeedStatus:
    return FeedStatus(tuple(store.feeds()), store.alert_counts())


def _probe_feeds(config: Config, urls: Sequence[str], *, progress: Progress = no_progress) -> dict[str, Any]:
    """Fetch and parse each URL once: url -> ParsedFeed, or the reason it is not a feed."""
    from monitor.app.daemon import fetch_settings
    from monitor.ingest.fetch import FeedFetchError, Fetcher, FetchRequest
    from monitor.ingest.parse import parse_feed

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


@dataclass(frozen=True, slots=True)
class FeedAdded:
    """A feed written to the config; ``title``/``entries`` when it was fetched first."""

    saved: Saved
    url: str
    title: str | None = None
    entries: int | None = None


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
    title = entries = None
    if check:
        got = _probe_feeds(loaded.config, [url], progress=progress)[url]
        if isinstance(got, str):
            raise FeedCheckError(url, got)
        title, entries = got.title, len(got.entries)
        language = language or (got.language[:16] if got.language else None)
    if name is None:
        base = slug(title or "", fallback="") or slug(url.split("://", 1)[-1])
        name = unique_name(base[:64], set(editor.feed_names()))
    editor.add_feed(FeedSpec(name, url, interval, language))
    editor.save()
    return FeedAdded(Saved(str(loaded.path), tuple(editor.changes), name), url, title, entries)


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
    if dry_run or not adding:
        return OpmlImport(tuple(adding), tuple(skipped), None)
    editor.add_feeds(adding)
    editor.save()
    return OpmlImport(tuple(adding), tuple(skipped), Saved(str(loaded.path), tuple(editor.changes)))


@dataclass(frozen=True, slots=True)
class OpmlExport:
    document: str
    feeds: int


def opml_export(config: Config) -> OpmlExport:
    """The configured feeds as an OPML 2.0 document."""
    doc = export_opml([ExportFeed(f.name, f.url, f.language, f.enabled) for f in config.feeds])
    return OpmlExport(doc, len(config.feeds))


# --------------------------------------------------------------------------- stories


@dataclass(frozen=True, slots=True)
class StoryHit:
    """A story found by a search, with the offsets of the search terms in it."""

    story: StoredStory
    watchlists: tuple[str, ...]
    title_spans: tuple[tuple[int, int], ...]
    summary_spans: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class StorySearch:
    query: str
    engine: str
    hits: tuple[StoryHit, ...]


def search(
    store: Store,
    query: str,
    *,
    since_days: float | None = None,
    watchlist: str | None = None,
    limit: int = 50,
    order: str = "date",
) -> StorySearch:
    """Full-text search of stored stories (``SearchSyntaxError`` for a search meaning nothing)."""
    since = days_ago(since_days) if since_days is not None else None
    found: SearchResult = search_stories(store, query, since=since, watchlist=watchlist, limit=limit, order=order)
    terms = found.query.terms
    return StorySearch(
        query,
        found.engine,
        tuple(
            StoryHit(
                h.story,
                h.watchlists,
                tuple(term_spans(h.story.title, terms)),
                tuple(term_spans(h.story.summary, terms)),
            )
            for h in found.hits
        ),
    )


def story_detail(store: Store, story_id: int) -> StoryDetail | None:
    """A stored story with its sightings, cluster, matches and alerts; None when there is none."""
    return store.story_detail(story_id)


__all__ = [
    "AlertedStory",
    "Backfill",
    "BacktestReport",
    "EditableWatchlist",
    "FeedAdded",
    "FeedCheckError",
    "FeedStatus",
    "OpmlExport",
    "OpmlImport",
    "Progress",
    "RecentStories",
    "Saved",
    "StoryHit",
    "StorySearch",
    "StoryWindow",
    "UnknownWatchlistError",
    "WatchlistChanges",
    "WatchlistDetail",
    "WatchlistFeed",
    "WatchlistOverview",
    "add_feed",
    "backfill",
    "backtest_watchlist",
    "edit_watchlist",
    "editable_watchlist",
    "feed_status",
    "import_opml",
    "no_progress",
    "opml_export",
    "recent_alerts",
    "remove_feed",
    "remove_watchlist",
    "require_watchlist",
    "save_watchlist",
    "search",
    "spec_version",
    "stories_since",
    "story_detail",
    "watchlist_detail",
    "watchlist_feed",
    "watchlist_matcher",
    "watchlist_overview",
]
