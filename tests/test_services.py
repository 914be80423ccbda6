"""The service layer the CLI and the web page share: backtests, previews, edits, imports.

Plain values in, frozen values out: the pure backtest runs on stories made here, the
services on a real config file and (for backfills) a real database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.app.services.backtests import StoryWindow, backtest_watchlist
from monitor.app.services.common import Backfill, UnknownWatchlistError
from monitor.app.services.feeds import import_opml, opml_export
from monitor.app.services.watchlists import WatchlistChanges, editable_watchlist, remove_watchlist, save_watchlist
from monitor.config.edit import WatchlistSpec
from monitor.config.model import Config, load_config, parse_config
from monitor.errors import ConfigError, QuerySyntaxError
from monitor.matching.backtest import backtest, hit_spans, stored_hit_spans
from monitor.matching.matcher import Hit, Matcher, WatchlistQuery
from monitor.storage.store import Store
from monitor.storage.stories import StoredStory
from tests.test_backtest import STORIES, seed

NOW = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Story:
    id: int
    feed: str
    title: str
    summary: str


PLAIN = [Story(i, "desk" if i % 2 else "wire", t, s) for i, (t, s, _) in enumerate(STORIES, 1)]


@pytest.mark.parametrize(
    ("query", "matched", "terms"),
    [
        ("Kursk", [1, 2, 5, 6], {"Kursk": 4}),
        ("Kursk -submarine", [1, 5, 6], {"Kursk": 3}),
        ("Pyongyang AND (troops OR soldats)", [1, 3, 6], {"Pyongyang": 3, "troops": 2, "soldats": 1}),
        ("Tehran", [], {}),
    ],
)
def test_a_backtest_on_plain_values_says_what_matches_and_why(
    query: str, matched: list[int], terms: dict[str, int]
) -> None:
    matcher = Matcher([WatchlistQuery("w", query)], None)
    result = backtest(matcher, "w", PLAIN)
    assert [m.story.id for m in result.matched] == matched
    assert result.ids == frozenset(matched)
    assert [s.id for s in result.unmatched] == [s.id for s in PLAIN if s.id not in matched]
    assert dict(result.term_counts) == terms
    assert result.total == len(PLAIN)
    assert sum(result.feed_counts.values()) == len(matched)


@pytest.mark.parametrize(("n", "ticks"), [(0, []), (3, [3]), (500, [500]), (1201, [500, 500, 201])])
def test_backtest_progress_adds_up_to_the_stories_seen(n: int, ticks: list[int]) -> None:
    seen: list[int] = []
    stories = [Story(i, "f", "Kursk", "") for i in range(n)]
    backtest(Matcher([WatchlistQuery("w", "Kursk")], None), "w", stories, progress=seen.append)
    assert seen == ticks


@pytest.mark.parametrize(
    ("hits", "field", "spans"),
    [
        ([("a", "title", 5, 9, "x"), ("b", "title", 0, 3, "y")], "title", [(0, 3), (5, 9)]),
        ([("a", "title", 0, 5, "x"), ("b", "title", 3, 8, "y")], "title", [(0, 8)]),
        ([("a", "title", 0, 3, "x"), ("b", "title", 3, 6, "y")], "title", [(0, 6)]),  # touching
        ([("a", "summary", 0, 3, "x")], "title", []),
    ],
)
def test_stored_hit_spans_are_sorted_and_merged(
    hits: list[tuple[str, str, int, int, str]], field: str, spans: list[tuple[int, int]]
) -> None:
    assert stored_hit_spans([Hit(*h) for h in hits], field) == spans


def test_hit_spans_of_a_live_match_highlight_the_original_text() -> None:
    result = Matcher([WatchlistQuery("w", '"Corée du Nord" OR Koursk')], None).match_one(
        "w", "La Corée du Nord à Koursk", ""
    )
    assert result is not None
    assert hit_spans(result, "title") == [(3, 16), (19, 25)]


CONFIG = """\
targets: {mail: 'json://127.0.0.1:9/'}
aliases:
  dprk: '"North Korea" OR "North Korean" OR Pyongyang OR "Corée du Nord"'
watchlists:
  - name: kursk-troops
    query: '@dprk AND (troops OR soldats OR soldiers) AND (Kursk OR Koursk)'
    notify: [mail]
  - name: sanctions
    query: sanction
    stem: [en]
    notify: [mail]
"""


def _config(text: str = CONFIG) -> Config:
    return parse_config(text)[0]


def _window() -> StoryWindow:
    stories = [
        StoredStory(i, "desk", t, s, None, NOW - dt.timedelta(hours=h), NOW) for i, (t, s, h) in enumerate(STORIES, 1)
    ]
    return lambda days: [s for s in stories if s.published_at >= NOW - dt.timedelta(days=days)]


@pytest.mark.parametrize(
    ("request_", "matched", "gained", "lost"),
    [
        ({"name": "kursk-troops"}, [1, 3], None, None),
        (
            {"name": "kursk-troops", "query": "Kursk OR Koursk", "compare_with": "kursk-troops"},
            [1, 2, 3, 5],
            [2, 5],
            [],
        ),
        ({"query": "Kursk", "compare_with": "kursk-troops"}, [1, 2, 5], [2, 5], [3]),
        ({"query": "Kursk", "compare_with": "removed-meanwhile"}, [1, 2, 5], None, None),
        ({"name": "sanctions"}, [4], None, None),  # its own stemming: "sanction" finds "sanctions"
        ({"name": "sanctions", "query": "sanction", "stem": ()}, [], None, None),
    ],
)
def test_backtest_of_a_watchlist_or_query_with_its_comparison(
    request_: dict[str, object], matched: list[int], gained: list[int] | None, lost: list[int] | None
) -> None:
    report = backtest_watchlist(_config(), _window(), days=7, **request_)  # type: ignore[arg-type]
    assert [m.story.id for m in report.result.matched] == matched
    if gained is None:
        assert report.before is None and report.gained == () and report.lost == ()
    else:
        assert [m.story.id for m in report.gained] == gained
        assert [m.story.id for m in report.lost] == lost


def test_a_bad_query_under_test_names_no_watchlist_and_an_unknown_name_lists_the_known() -> None:
    with pytest.raises(QuerySyntaxError) as bad:
        backtest_watchlist(_config(), _window(), days=7, name="kursk-troops", query="Kursk AND (troops")
    assert bad.value.message.startswith("unclosed '(' at column 18") and bad.value.column == 18
    with pytest.raises(UnknownWatchlistError, match=r"no watchlist 'nope' \(known: kursk-troops, sanctions\)"):
        backtest_watchlist(_config(), _window(), days=7, name="nope")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (WatchlistChanges(), WatchlistSpec("w", "q", ("mail",), ("en",), True, "note")),
        (
            WatchlistChanges(query="x", notify=("slack",), rename="v"),
            WatchlistSpec("v", "x", ("slack",), ("en",), True, "note"),
        ),
        (WatchlistChanges(no_stem=True, enabled=False), WatchlistSpec("w", "q", ("mail",), (), False, "note")),
        (
            WatchlistChanges(stem=("fr",), description=""),
            WatchlistSpec("w", "q", ("mail",), ("fr",), True, None),
        ),
    ],
)
def test_watchlist_changes_keep_what_they_do_not_name(changes: WatchlistChanges, expected: WatchlistSpec) -> None:
    base = WatchlistSpec("w", "q", ("mail",), ("en",), True, "note")
    assert changes.apply(base, "w") == expected


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_an_edit_from_a_stale_version_is_refused_and_writes_nothing(config_file: Path) -> None:
    opened = editable_watchlist(str(config_file), "sanctions")
    changed = WatchlistSpec("sanctions", "sanction OR embargo", ("mail",), ("en",))
    saved = save_watchlist(str(config_file), changed, original="sanctions", version=opened.version)
    assert saved.summary and load_config(config_file).config.watchlist("sanctions").query == "sanction OR embargo"
    before = config_file.read_text(encoding="utf-8")
    with pytest.raises(ConfigError, match="was changed in the file since this page was opened"):
        save_watchlist(str(config_file), opened.spec, original="sanctions", version=opened.version)
    assert config_file.read_text(encoding="utf-8") == before


@pytest.mark.parametrize(
    ("enabled", "expected"),
    [
        (True, Backfill("kursk", 2, scanned=3, matches=2, alerts=2)),
        (False, Backfill("kursk", 2, skipped="watchlist 'kursk' is disabled: no backfill")),
    ],
)
def test_saving_with_a_backfill_queues_alerts_of_an_enabled_watchlist_only(
    store: Store, config_file: Path, enabled: bool, expected: Backfill
) -> None:
    seed(store)
    spec = WatchlistSpec("kursk", "Kursk", ("mail",), (), enabled)
    saved = save_watchlist(str(config_file), spec, backfill_days=2, store=store)
    assert saved.changes == ("added watchlist 'kursk'",) and saved.backfill_error is None
    assert saved.backfill == expected


def test_removing_asks_for_confirmation_after_checking_the_name(config_file: Path) -> None:
    asked: list[int] = []
    with pytest.raises(ConfigError):
        remove_watchlist(str(config_file), "nope", confirm=lambda: asked.append(1))
    assert asked == []
    saved = remove_watchlist(str(config_file), "sanctions", confirm=lambda: asked.append(1))
    assert asked == [1] and saved.changes == ("removed watchlist 'sanctions'",)
    assert [w.name for w in load_config(config_file).config.watchlists] == ["kursk-troops"]


OPML = b"""<opml version="2.0"><body>
<outline type="rss" text="Desk" xmlUrl="https://desk.example/rss"/>
<outline type="rss" text="Gopher" xmlUrl="gopher://example.org/news"/>
</body></opml>"""


@pytest.mark.parametrize("dry_run", [True, False])
def test_opml_import_and_export_round_trip(config_file: Path, dry_run: bool) -> None:
    before = config_file.read_text(encoding="utf-8")
    done = import_opml(load_config(config_file), OPML, dry_run=dry_run)
    assert [(f.name, f.url) for f in done.added] == [("desk", "https://desk.example/rss")]
    assert done.skipped == (("gopher://example.org/news", "not an http(s) URL"),)
    if dry_run:
        assert done.saved is None and config_file.read_text(encoding="utf-8") == before
        return
    exported = opml_export(load_config(config_file).config)
    assert exported.feeds == 1 and 'xmlUrl="https://desk.example/rss"' in exported.document
    again = import_opml(load_config(config_file), OPML)
    assert again.added == () and again.saved is None
