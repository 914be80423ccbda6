"""Story search: the watchlist query language over stored stories, narrowed by FTS5 on
SQLite or full-text search on PostgreSQL and decided by the matcher; the CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from click.testing import CliRunner
from sqlalchemy import delete, text, update

from monitor.app.cli import cli
from monitor.config.model import Config, load_config
from monitor.matching.matcher import Matcher, WatchlistQuery
from monitor.matching.query import parse_query
from monitor.storage import search
from monitor.storage.engine import MIGRATIONS
from monitor.storage.schema import Story
from monitor.storage.search import fts5_query, narrowing, search_stories, tsquery
from monitor.storage.store import Store
from tests.test_backtest import CONFIG, STORIES, seed

MORE: list[tuple[str, str, float]] = [
    ("Sanctions contre la Corée du Nord : Washington frappe", "Le Trésor américain sanctionne des sociétés.", 3),
    ("Nord-coréens au front : l’OTAN s’inquiète", "Des soldats nord-coréens près de Koursk.", 4),
    ("Military exercise near Kursk", "Routine drills, the ministry says.", 6),
    ("Seoul: 북한은 병력을 쿠르스크에 보냈다", "Reports from Yonhap.", 8),
    ("Manœuvres navales russes en mer du Japon", "Escale près de la Hauptstraße de Vladivostok.", 9),
]
ALIASES = {"dprk": '"North Korea" OR "North Korean" OR Pyongyang OR "Corée du Nord" OR 북한'}

# (query, the stories it finds: title prefixes)
CASES = [
    ("kursk", {"North Korean troops", "Kursk submarine", "Kursk nuclear", "Military exercise", "Old story"}),
    ('"North Korean" troops', {"North Korean troops"}),  # phrase AND word
    ('"troops North"', set()),  # a phrase is these words in this order
    ("kursk AND NOT (submarine OR nuclear OR exercise)", {"North Korean troops", "Old story"}),
    ("kursk -submarine -nuclear -exercise", {"North Korean troops", "Old story"}),
    ("submarine OR Murmansk OR IAEA", {"Kursk submarine", "Kursk nuclear"}),  # summaries count too
    ("troops NEAR/1 Kursk", {"Old story"}),  # 'troops in Kursk'; 'troops fighting in Kursk' has 2 between
    ("troops NEAR/2 Kursk", {"North Korean troops", "Old story"}),
    ("sanction*", {"Iran sanctions", "Sanctions contre la Corée"}),  # prefix
    ("coree", {"La Corée du Nord", "Sanctions contre la Corée"}),  # accents and case do not matter
    ("CORÉE DU NORD", {"La Corée du Nord", "Sanctions contre la Corée"}),
    ("nord-coréens", {"Nord-coréens au front"}),  # 'nord coreens' as a phrase, in title and summary
    ("otan", {"Nord-coréens au front"}),  # l’OTAN, typographic apostrophe
    ("@dprk", {"North Korean troops", "La Corée du Nord", "Sanctions contre la Corée", "Old story", "Seoul"}),
    ("@dprk AND (Kursk OR Koursk)", {"North Korean troops", "La Corée du Nord", "Old story"}),
    ("title:Pyongyang", {"Old story"}),  # field scope: not the summaries that say Pyongyang
    ("북한", {"Seoul"}),  # a Hangul word matches with its particle (북한은)
    ("organi?ation OR Yon?ap", {"Seoul"}),  # '?' is one letter: the index takes 'yon' as a prefix
    ("manoeuvre*", {"Manœuvres"}),  # œ, which the index does not unfold, is looked up both ways
    ("MANŒUVRES AND hauptstrasse", {"Manœuvres"}),  # so is ß
    ("mano*", {"Manœuvres"}),
    ("venezuela", set()),
]


def titles_of(prefixes: set[str]) -> set[str]:
    return {t for t, _, _ in STORIES + MORE if any(t.startswith(p) for p in prefixes)}


@pytest.mark.parametrize(("query", "expected"), CASES)
def test_search_is_the_watchlist_query_language(store: Store, query: str, expected: set[str]) -> None:
    seed(store, STORIES + MORE)
    found = search_stories(store, query, aliases=ALIASES, limit=50)
    assert found.engine == ("fts5" if store.dialect == "sqlite" else "postgresql")
    titles = {h.story.title for h in found.hits}
    assert titles == titles_of(expected)
    # Exactly what a watchlist with the same query matches on the same stories.
    matcher = Matcher([WatchlistQuery("w", query)], ALIASES)
    assert titles == {t for t, s, _ in STORIES + MORE if matcher.match_one("w", t, s) is not None}
    # The highlights are the matcher's hits, offsets into the stored text.
    for h in found.hits:
        result = matcher.match_one("w", h.story.title, h.story.summary)
        assert result is not None and h.hits == result.hits


@pytest.mark.parametrize(
    ("query", "fts5", "pg"),
    [
        ("kursk", '"kursk"', "('kursk')"),
        (
            '"Corée du Nord" troops',
            '(("coree" AND "du" AND "nord") AND "troops")',
            "((('coree') & ('du') & ('nord')) & ('troops'))",
        ),
        ("kursk OR koursk", '("kursk" OR "koursk")', "(('kursk') | ('koursk'))"),
        ("kursk NOT submarine", '"kursk"', "('kursk')"),  # NOT needs nothing: the matcher excludes
        ("sanction* NEAR/3 iran", '("sanction" * AND "iran")', "(('sanction':*) & ('iran'))"),
        ("organi?ation", '"organi" *', "('organi':*)"),
        ("Œuvre", '("oeuvre" OR "œuvre")', "(('oeuvre') | ('œuvre'))"),
        ("stras*", '("stras" * OR "straß" *)', "(('stras':*) | ('straß':*))"),
        ("북한", '"북한" *', "('북한':*)"),
        ("title:(a1 OR b2) @x", '(("a1" OR "b2") AND "x")', "((('a1') | ('b2')) & ('x'))"),
        ('"NEAR col:vv*" x', '(("near" AND "col" AND "vv" *) AND "x")', "((('near') & ('col') & ('vv':*)) & ('x'))"),
    ],
)
def test_the_index_narrows_by_the_words_a_match_must_contain(query: str, fts5: str, pg: str | None) -> None:
    n = narrowing(parse_query(query, {"x": "x"}).root)
    assert n is not None
    assert fts5_query(n) == fts5
    if pg is not None:
        assert tsquery(n) == pg


@pytest.mark.parametrize("query", ["a? OR kursk", "kursk OR (troops NOT kursk) OR a?", "x? AND y?"])
def test_a_query_without_words_to_look_up_is_not_narrowed(query: str) -> None:
    assert narrowing(parse_query(query).root) is None


def test_a_rare_word_decides_few_stories_and_a_query_without_one_scans(store: Store) -> None:
    seed(store, STORIES + MORE)
    found = search_stories(store, "submarine kursk")
    assert [h.story.title[:15] for h in found.hits] == ["Kursk submarine"]
    assert found.examined == 1  # the index handed over the one story with both words
    scanned = search_stories(store, "i?an")
    assert scanned.engine == "scan" and scanned.examined == len(STORIES + MORE)
    assert [h.story.title for h in scanned.hits] == ["Iran sanctions tightened"]


def test_pg_document_is_the_indexed_expression_of_migration_0002() -> None:
    spec = importlib.util.spec_from_file_location("m0002", MIGRATIONS / "versions" / "0002_story_search.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.PG_DOCUMENT == search.PG_DOCUMENT


def test_search_filters_since_watchlist_and_orders(store: Store) -> None:
    from monitor.app.services.backtests import watchlist_matcher
    from monitor.matching.backtest import days_ago

    config = load_config_from(
        "targets: {m: 'json://127.0.0.1:9/'}\nwatchlists: [{name: w, query: troops, notify: [m]}]\n"
    )
    seed(store, STORIES + MORE, matcher=watchlist_matcher(config, "w"), targets={"w": ("m",)})
    newest_first = [h.story.title[:12] for h in search_stories(store, "kursk OR koursk").hits]
    assert newest_first == [
        "North Korean",
        "Nord-coréens",
        "Kursk submar",
        "Military exe",
        "La Corée du ",
        "Kursk nuclea",
        "Old story: P",
    ]
    assert len(search_stories(store, "kursk OR koursk", since=days_ago(1)).hits) == 4
    assert [h.story.title[:12] for h in search_stories(store, "kursk", watchlist="w").hits] == [
        "North Korean",
        "Old story: P",
    ]
    assert search_stories(store, "kursk", limit=2).hits[0].watchlists == ("w",)
    relevance = search_stories(store, "kursk", order="relevance").hits
    assert {h.story.title for h in relevance} == {h.story.title for h in search_stories(store, "kursk").hits}


def load_config_from(text_: str) -> Config:
    from monitor.config.model import parse_config

    return parse_config(text_)[0]


def test_the_index_follows_updates_and_deletes(store: Store) -> None:
    ids = seed(store, STORIES)
    with store.engine.begin() as conn:
        conn.execute(update(Story).where(Story.id == ids[3]).values(title="Venezuela sanctions tightened"))
        conn.execute(delete(Story).where(Story.id == ids[1]))
    assert [h.story.id for h in search_stories(store, "venezuela").hits] == [ids[3]]
    assert search_stories(store, "iran").hits == ()
    assert search_stories(store, "submarine").hits == ()


def test_migration_0002_downgrades_and_upgrades_again(store: Store) -> None:
    ids = seed(store, STORIES)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0001")
    with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            names = {r[0] for r in conn.execute(text("SELECT name FROM sqlite_master WHERE name LIKE 'stories_fts%'"))}
        else:
            names = {
                r[0]
                for r in conn.execute(
                    text(
                        "SELECT indexname FROM pg_indexes"
                        " WHERE indexname = 'ix_stories_search' AND schemaname = current_schema()"
                    )
                )
            }
    assert names == set()
    with store.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert [h.story.id for h in search_stories(store, "submarine").hits] == [ids[1]]  # existing rows indexed


def test_without_fts5_the_scan_gives_the_same_answers(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'm.db'}")
    try:
        seed(store, STORIES + MORE)
        with store.engine.begin() as conn:
            for name in ("stories_fts_ai", "stories_fts_ad", "stories_fts_au"):
                conn.execute(text(f"DROP TRIGGER {name}"))
            conn.execute(text("DROP TABLE stories_fts"))
        found = search_stories(store, "coree -sanctions")
        assert found.engine == "scan"
        assert [h.story.title[:16] for h in found.hits] == ["La Corée du Nord"]
    finally:
        store.close()


@pytest.fixture
def cli_config(db_backend: tuple[str, str | None], tmp_path: Path) -> tuple[Path, Store]:
    url, schema = db_backend
    if schema:
        url = f"{url}?options=-csearch_path%3D{schema}"
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(db=url), encoding="utf-8")
    store = Store(load_config(path).database_url, schema=schema)
    return path, store


def test_cli_stories_search_and_show(cli_config: tuple[Path, Store]) -> None:
    path, store = cli_config
    from monitor.app.services.backtests import watchlist_matcher

    matcher = watchlist_matcher(load_config(path).config, "kursk-troops")
    ids = seed(store, STORIES + MORE, matcher=matcher, targets={"kursk-troops": ("mail",)})
    runner = CliRunner()
    out = runner.invoke(cli, ["--config", str(path), "stories", "search", "koursk", "--since", "2d"])
    assert out.exit_code == 0, out.output
    assert "Nord-coréens au front" in out.output and "La Corée du Nord" in out.output
    assert "[kursk-troops]" in out.output and "2 stories" in out.output
    data = json.loads(
        runner.invoke(cli, ["--config", str(path), "stories", "search", "kursk", "-w", "kursk-troops", "--json"]).output
    )
    assert [s["id"] for s in data["stories"]] == [ids[0], ids[5]]
    bad = runner.invoke(cli, ["--config", str(path), "stories", "search", "kursk", "--since", "soon"])
    assert bad.exit_code == 2 and "nor a duration such as 12h" in bad.output

    show = runner.invoke(cli, ["--config", str(path), "stories", "show", str(ids[0])])
    assert show.exit_code == 0, show.output
    assert "North Korean troops fighting in Kursk" in show.output
    assert "seen in:   desk" in show.output
    assert "kursk-troops: " in show.output and "(alerted" in show.output
    assert "kursk-troops -> mail: pending" in show.output
    missing = runner.invoke(cli, ["--config", str(path), "stories", "show", "999999"])
    assert missing.exit_code == 1 and "no story #999999" in missing.output
    store.close()


@pytest.mark.parametrize(
    ("query", "column", "says"),
    [
        ("kursk or koursk", 7, "ambiguous lower-case 'or'"),
        ('"North Korea troops', 1, "unterminated phrase"),
        ("(kursk OR koursk", 17, "unclosed '('"),
        ("troops NEAR/500 kursk", 13, "bad NEAR distance"),
        ("s* kursk", 1, "wildcard prefix 's*' is too short"),
        ("kursk AND @nowhere", 11, "unknown alias '@nowhere'"),
        ("-kursk", 1, "would match stories that contain none of its terms"),
    ],
)
def test_cli_a_bad_query_is_an_error_at_its_column(
    cli_config: tuple[Path, Store], query: str, column: int, says: str
) -> None:
    path, store = cli_config
    store.close()
    bad = CliRunner().invoke(cli, ["--config", str(path), "stories", "search", "--", query])
    assert bad.exit_code == 2
    assert bad.exception is None or isinstance(bad.exception, SystemExit)  # no traceback
    assert "Traceback" not in bad.output
    assert says in bad.output and f"at column {column}" in bad.output
    lines = bad.output.splitlines()
    assert lines[-1] == " " * (column - 1) + "^" and lines[-2] == query  # the caret under the column


def test_cli_search_takes_the_config_aliases_and_highlights_nothing_on_a_pipe(cli_config: tuple[Path, Store]) -> None:
    path, store = cli_config
    seed(store, STORIES + MORE)
    store.close()
    out = CliRunner().invoke(
        cli, ["--config", str(path), "stories", "search", "@dprk AND (Kursk OR Koursk) NOT soldats", "--json"]
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert [s["title"][:19] for s in data["stories"]] == ["North Korean troops", "Old story: Pyongyan"]
    assert data["stories"][0]["terms"] == ['"North Korean"', "Kursk", "Pyongyang"]
