"""Story search: the query syntax, FTS5 on SQLite, full-text search on PostgreSQL, the CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from click.testing import CliRunner
from sqlalchemy import text, update

from monitor.app.cli import cli
from monitor.config.model import load_config
from monitor.storage import search
from monitor.storage.engine import MIGRATIONS
from monitor.storage.schema import Story
from monitor.storage.search import (
    SearchSyntaxError,
    SearchTerm,
    fts5_query,
    matches_text,
    parse_search,
    search_stories,
    term_spans,
    tsquery,
)
from monitor.storage.store import Store
from tests.test_backtest import CONFIG, STORIES, seed

MORE = [
    ("Sanctions contre la Corée du Nord : Washington frappe", "Le Trésor américain sanctionne des sociétés.", 3),
    ("Nord-coréens au front : l’OTAN s’inquiète", "Des soldats nord-coréens près de Koursk.", 4),
    ("Military exercise near Kursk", "Routine drills, the ministry says.", 6),
]


@pytest.mark.parametrize(
    ("query", "groups", "excluded"),
    [
        ("kursk", [["kursk"]], []),
        ('"North Korea" troops', [["north korea"], ["troops"]], []),
        ("troops OR soldats OR soldiers kursk", [["troops", "soldats", "soldiers"], ["kursk"]], []),
        ('kursk -submarine -"nuclear plant"', [["kursk"]], ["submarine", "nuclear plant"]),
        ("sanction* AND Corée", [["sanction*"], ["corée"]], []),
        ("nord-coréens l'OTAN", [["nord coréens"], ["l otan"]], []),
        ('"unterminated phrase', [["unterminated phrase"]], []),
        ("kursk ... !!", [["kursk"]], []),
    ],
)
def test_parse_search(query: str, groups: list[list[str]], excluded: list[str]) -> None:
    def show(t: SearchTerm) -> str:
        return " ".join(t.words) + ("*" if t.prefix else "")

    q = parse_search(query)
    assert [[show(t) for t in g] for g in q.groups] == groups
    assert [show(t) for t in q.excluded] == excluded


@pytest.mark.parametrize("query", ["", "   ", "-kursk", "OR kursk", "kursk OR", "kursk OR -troops", "!!! ..."])
def test_queries_that_mean_nothing_are_refused(query: str) -> None:
    with pytest.raises(SearchSyntaxError):
        parse_search(query)


def test_user_text_never_becomes_fts5_or_tsquery_syntax() -> None:
    q = parse_search('NEAR(a b) "x" OR y* -"z w" col:v')
    assert fts5_query(q) == '(("near a") AND ("b") AND ("x" OR "y" *) AND ("col v")) NOT ("z w")'
    assert tsquery(q) == "(('near' <-> 'a')) & (('b')) & (('x') | ('y':*)) & (('col' <-> 'v')) & !(('z' <-> 'w'))"


def test_pg_document_is_the_indexed_expression_of_migration_0002() -> None:
    spec = importlib.util.spec_from_file_location("m0002", MIGRATIONS / "versions" / "0002_story_search.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.PG_DOCUMENT == search.PG_DOCUMENT


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("kursk", {"North Korean troops", "Kursk submarine", "Kursk nuclear", "Military exercise", "Old story"}),
        ("koursk", {"La Corée du Nord", "Nord-coréens au front"}),
        ("coree", {"La Corée du Nord", "Sanctions contre la Corée"}),  # accents do not matter
        ("CORÉE DU NORD", {"La Corée du Nord", "Sanctions contre la Corée"}),
        ('"North Korean" troops', {"North Korean troops"}),
        ("kursk -submarine -nuclear -exercise", {"North Korean troops", "Old story"}),
        ("sanction*", {"Iran sanctions", "Sanctions contre la Corée"}),
        ("nord-coréens OR pyongyang", {"North Korean troops", "La Corée du Nord", "Nord-coréens", "Old story"}),
        ("otan", {"Nord-coréens au front"}),  # l’OTAN, with a typographic apostrophe
        ("murmansk families", {"Kursk submarine"}),  # summaries are searched too
        ("venezuela", set()),
    ],
)
def test_search_on_both_databases(store: Store, query: str, expected: set[str]) -> None:
    seed(store, STORIES + MORE)
    found = search_stories(store, query, limit=50)
    assert found.engine == ("fts5" if store.dialect == "sqlite" else "postgresql")
    titles = {h.story.title for h in found.hits}
    assert titles == {t for t, _, _ in STORIES + MORE if any(t.startswith(p) for p in expected)}
    # The Python reference (the fallback scan) agrees with the database.
    reference = {t for t, s, _ in STORIES + MORE if matches_text(parse_search(query), t, s)}
    assert reference == titles


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


def load_config_from(text_: str) -> object:
    from monitor.config.model import parse_config

    return parse_config(text_)[0]


def test_the_index_follows_updates_and_deletes(store: Store) -> None:
    ids = seed(store, STORIES)
    with store.engine.begin() as conn:
        conn.execute(update(Story).where(Story.id == ids[3]).values(title="Venezuela sanctions tightened"))
        conn.execute(Story.__table__.delete().where(Story.id == ids[1]))
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
                for r in conn.execute(text(
                    "SELECT indexname FROM pg_indexes"
                    " WHERE indexname = 'ix_stories_search' AND schemaname = current_schema()"
                ))
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


def test_term_spans_highlight_the_original_text() -> None:
    title = "Nord-coréens au front : l’OTAN et la Corée du Nord, SANCTIONNÉE"
    spans = term_spans(title, parse_search('otan "coree du nord" sanction*').terms)
    assert [title[s:e] for s, e in spans] == ["OTAN", "Corée du Nord", "SANCTIONNÉE"]


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
    bad = runner.invoke(cli, ["--config", str(path), "stories", "search", "--", "-kursk"])
    assert bad.exit_code == 1 and "at least one word" in bad.output
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
