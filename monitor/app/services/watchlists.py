"""Watchlist edits (add, change, remove, with an optional backfill) and views.

Edits go through :class:`~monitor.config.edit.ConfigEditor` (validated like the daemon
validates, written atomically, comments and order kept). A backfill after an edit
matches the stored stories of the last N days for the watchlist as the file now has it
and queues their alerts, idempotently; a disabled watchlist is not backfilled.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from monitor.app.services.backtests import watchlist_matcher
from monitor.app.services.common import Backfill, Progress, Saved, no_progress, require_watchlist
from monitor.config.edit import ConfigEditor, WatchlistSpec
from monitor.config.model import Config, LoadedConfig, WatchlistConfig, load_config
from monitor.errors import ConfigError, MonitorError
from monitor.matching.backtest import backtest, days_ago
from monitor.matching.matcher import Matcher
from monitor.storage.store import Store
from monitor.storage.stories import MatchedStory


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
        """Watchlist ``name`` (written as ``base``) with these changes."""
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
    current = editor.watchlist(name)
    spec = changes.apply(current, name)
    if spec == current and not backfill_days:
        return Saved(config_path, (), name)  # nothing to write: the file stays as it is
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
    """What the watchlists page lists."""
    return WatchlistOverview(tuple(config.watchlists), store.match_counts(days_ago(7)))


@dataclass(frozen=True, slots=True)
class WatchlistFeed:
    """What a per-watchlist Atom or JSON feed lists: its latest matches, newest first, one
    per event cluster (the other stories of the cluster are its "also reported by")."""

    name: str
    query: str
    items: tuple[MatchedStory, ...]


def watchlist_feed(config: Config, store: Store, name: str, *, limit: int = 100) -> WatchlistFeed:
    """The feed of watchlist ``name`` (:class:`UnknownWatchlistError` when there is none)."""
    wl = require_watchlist(config, name)
    return WatchlistFeed(wl.name, wl.query, one_per_cluster(store.matched_stories(watchlist=name, limit=limit)))


def one_per_cluster(matches: Sequence[MatchedStory]) -> tuple[MatchedStory, ...]:
    """One match per event cluster, in the given order: the one that alerted, else the
    first given (the others are listed by its ``also_reported_by``)."""
    chosen: dict[int, MatchedStory] = {}
    for m in matches:
        held = chosen.get(m.cluster_id)
        if held is None or (m.alerted and not held.alerted):
            chosen[m.cluster_id] = m
    return tuple(m for m in matches if chosen[m.cluster_id] is m)


__all__ = [
    "EditableWatchlist",
    "WatchlistChanges",
    "WatchlistDetail",
    "WatchlistFeed",
    "WatchlistOverview",
    "backfill",
    "edit_watchlist",
    "editable_watchlist",
    "one_per_cluster",
    "remove_watchlist",
    "save_watchlist",
    "spec_version",
    "watchlist_detail",
    "watchlist_feed",
    "watchlist_overview",
]
