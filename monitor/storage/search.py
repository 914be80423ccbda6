"""Searching stored stories with the watchlist query language.

``news-monitor stories search`` and the web page's search box take a watchlist query
(:mod:`monitor.matching.query`: phrases, ``AND``/``OR``/``NOT``, ``NEAR/n``, ``prefix*``,
``title:``/``summary:``, ``@alias`` groups, case and accent folding), and a bad query is
the same :class:`~monitor.errors.QuerySyntaxError`, at a column, as ``watchlist test``
reports. The answer is exactly what a watchlist with that query would match: every
candidate story is decided by the real :class:`~monitor.matching.matcher.Matcher`, whose
:class:`~monitor.matching.matcher.Hit`\\ s are the highlights.

The full-text index only narrows the candidates. :func:`narrowing` reads the query's
tree and keeps what a matching story must contain (pure): the words of every term, as
exact words or, for ``prefix*``, ``organi?ation`` and Hangul words, as prefixes, each
also spelt with ``œ``, ``æ``, ``ß`` where it has ``oe``, ``ae``, ``ss``; AND and
NEAR keep what their sides need, OR needs one of its sides, NOT needs nothing (the
matcher excludes). It is a necessary condition, so no story the matcher would take is
left out, as long as the index folds a word the way the matcher does (below). Words of a
phrase are required each, not as a phrase: the index splits ``l'OTAN`` into ``l otan``
where the matcher reads ``otan``, so index adjacency is not the matcher's.

* **SQLite**: FTS5, an external-content index ``stories_fts`` over title and summary
  kept in sync by triggers (migration 0002), tokenizer ``unicode61 remove_diacritics 2``
  (``coree`` finds ``Corée``). Every word is sent as a quoted FTS5 string, so no text of
  the query is ever FTS5 syntax.
* **PostgreSQL**: ``to_tsvector('simple', ...)`` over the lower-cased, accent-stripped
  text, with a GIN expression index (migration 0002); the ``to_tsquery`` text is built
  from the same words, each a quoted lexeme.
* **No index to use** (an SQLite built without FTS5, or a query none of whose required
  words the index can look up, such as ``a?``): the stories of the period are scanned
  and every one goes through the matcher. Slower, same answers.

Where the index and the matcher still fold differently, the index can miss a candidate:
the letters ``ø đ ð ł ı þ`` (the matcher reads ``Łódź`` as ``lodz``, FTS5 as ``łodz``;
PostgreSQL's folding knows ``ø`` and ``ł``) and compatibility forms (full-width ``Ｋ``,
the ligature ``ﬁ``), which the matcher folds and the indexes do not; on PostgreSQL also
words its parser keeps whole (a host name ``kursk.example.com``, an e-mail address, a
decimal number ``3.5``). A story that spells a query word only that way is found by a
watchlist but not by a search.

Cost, measured with ``bench/search.py`` (SQLite, 100,000 stored stories, limit 20, a
shared two-core machine): the index does the looking up and the matcher decides only
the candidates it hands over, newest first, until ``limit`` stories match. A query with
rare required words (``@dprk AND (troops OR soldiers)``: 4 candidates) takes about 4 ms;
common words 10 to 25 ms (``government``: 20 candidates for 20 stories; ``government
NOT election``: 21); ``NEAR`` and phrases about the same (``minister NEAR/3 foreign``:
22 candidates, 9 ms). Only a query with no word to look up scans: ``k?rsk OR m?scow``
decided 11,000 stories before it had 20 (0.6 s), and ``q?xz``, which matches nothing,
decided all 100,000 (7 s). Results come newest first, or by the index's rank
(``order="relevance"``).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, exists, func, literal_column, select, text

from monitor.matching.matcher import Hit, Matcher, WatchlistQuery
from monitor.matching.query import MIN_PREFIX, And, Near, Node, Not, Or, Query, Term, parse_query
from monitor.matching.textnorm import is_hangul
from monitor.storage.schema import Match, Story
from monitor.storage.store import Store
from monitor.storage.stories import StoredStory, stored_story_select

FTS_TABLE = "stories_fts"
PG_INDEX = "ix_stories_search"
# Accent folding PostgreSQL can do in an immutable expression (so it can be indexed):
# translate() of the lower-cased text. Upper-case accented letters are listed too, for
# databases whose lower() leaves non-ASCII letters alone (C collation).
_ACCENTED = "àáâãäåāăąçćčďèéêëēĕėęěìíîïĩīįñńňòóôõöøōőùúûüũūůűųýÿžźżśšşťţľĺłŕřğ"
_PLAIN = "aaaaaaaaacccdeeeeeeeeeiiiiiiinnnoooooooouuuuuuuuuyyzzzsssttlllrrg"
PG_FOLD_FROM = _ACCENTED + _ACCENTED.upper()
PG_FOLD_TO = _PLAIN * 2
assert len(PG_FOLD_FROM) == len(PG_FOLD_TO)
#: The indexed expression, verbatim in migration 0002 (a test keeps the two equal).
PG_DOCUMENT = (
    "to_tsvector('simple'::regconfig, translate(lower(coalesce(title, '') || ' ' || coalesce(summary, '')), "
    f"'{PG_FOLD_FROM}', '{PG_FOLD_TO}'))"
)
# The same expression with qualified columns, for queries that join other tables: the
# planner matches it with the index expression all the same (same columns of stories).
_PG_QUERY_DOCUMENT = PG_DOCUMENT.replace("(title,", "(stories.title,").replace("(summary,", "(stories.summary,")
_PG_TABLE = str.maketrans(PG_FOLD_FROM, PG_FOLD_TO)
# Letters and digits without the underscore: what both indexes' tokenizers keep in a word.
_INDEX_WORD = re.compile(r"[^\W_]+")
# Letters the matcher unfolds and the indexes do not (``œuvre`` is ``oeuvre`` to the
# matcher, ``œuvre`` to FTS5 and PostgreSQL): a query word is looked up in both spellings.
_LIGATURES = {"oe": "œ", "ae": "æ", "ss": "ß"}
_LIGATURE_STARTS = {"o": "œ", "a": "æ", "s": "ß"}
_MAX_SPELLINGS = 8
#: The watchlist name the search query is compiled under (never shown).
QUERY_NAME = "search"
#: Candidate rows fetched from the database at a time while the matcher decides.
BATCH = 256


def include_name(name: str | None, type_: str, _parent: object = None) -> bool:
    """Alembic filter: the search objects of migration 0002 are not in ``schema.py``.

    FTS5 creates ``stories_fts`` and its shadow tables (``stories_fts_data``, ``_idx``,
    ``_docsize``, ``_config``); PostgreSQL has one expression index. Only those names are
    left out of autogenerate and of the test comparing the database with the models.
    """
    if name is None:
        return True
    if type_ == "table":
        return not (name == FTS_TABLE or name.startswith(FTS_TABLE + "_"))
    if type_ == "index":
        return name != PG_INDEX
    return True


# --------------------------------------------------------------------------- narrowing (pure)


@dataclass(frozen=True, slots=True)
class IndexWord:
    """A word a matching story must contain: ``text`` exactly, or as a prefix."""

    text: str
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class AllOf:
    children: tuple[Narrowing, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    children: tuple[Narrowing, ...]


Narrowing = IndexWord | AllOf | AnyOf


def _spellings(literal: str, prefix: bool) -> list[str] | None:
    """The spellings of ``literal`` the index may hold for what the matcher folds to it:
    each ``oe``, ``ae`` and ``ss`` may be written ``œ``, ``æ`` and ``ß`` (which the index
    does not unfold), and a prefix may end in the first letter of one. None beyond
    :data:`_MAX_SPELLINGS`."""
    n = len(literal)
    tails: list[list[str]] = [[] for _ in range(n + 1)]  # tails[i]: spellings of literal[i:]
    tails[n] = [""]
    if prefix and literal[-1:] in _LIGATURE_STARTS:
        tails[n - 1] = [literal[-1], _LIGATURE_STARTS[literal[-1]]]
        n -= 1
    for i in range(n - 1, -1, -1):
        got = [literal[i] + t for t in tails[i + 1]]
        pair = literal[i : i + 2]
        if pair in _LIGATURES:
            got += [_LIGATURES[pair] + t for t in tails[i + 2]]
        if len(got) > _MAX_SPELLINGS:
            return None
        tails[i] = got
    return list(dict.fromkeys(tails[0]))


def _word(word: str) -> Narrowing | None:
    """What the index can look up of one query word (None: nothing it can use)."""
    literal = word.rstrip("*")
    prefix = literal != word or (literal != "" and is_hangul(literal[-1]))
    if "?" in literal:
        literal, prefix = literal[: literal.index("?")], True
    if _INDEX_WORD.search(literal) is None:
        return None
    if prefix and len(literal) < MIN_PREFIX and not is_hangul(literal[-1]):
        return None  # 'a*' would hand over most of the stories: cheaper to scan them
    spellings = _spellings(literal, prefix)
    if spellings is None:
        return None
    if len(spellings) == 1:
        return IndexWord(literal, prefix)
    return AnyOf(tuple(IndexWord(s, prefix) for s in spellings))


def _all(parts: list[Narrowing | None]) -> Narrowing | None:
    kept = tuple(p for p in parts if p is not None)
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else AllOf(kept)


def narrowing(node: Node) -> Narrowing | None:
    """What every story matching ``node`` contains, for the index; None when it cannot say.

    Necessary, not sufficient: the matcher decides every candidate it lets through.
    """
    if isinstance(node, Term):
        return _all([_word(w) for w in node.words])
    if isinstance(node, And):
        return _all([narrowing(c) for c in node.children])
    if isinstance(node, Near):
        return _all([narrowing(node.left), narrowing(node.right)])
    if isinstance(node, Or):
        sides = [narrowing(c) for c in node.children]
        if any(s is None for s in sides):
            return None
        return AnyOf(tuple(s for s in sides if s is not None))
    if isinstance(node, Not):
        return None
    return narrowing(node.child)  # Field, AliasRef


def fts5_query(n: Narrowing) -> str:
    """The FTS5 MATCH text: every word a quoted string, so no query text is FTS5 syntax."""
    if isinstance(n, IndexWord):
        return '"' + n.text.replace('"', '""') + '"' + (" *" if n.prefix else "")
    joiner = " AND " if isinstance(n, AllOf) else " OR "
    return "(" + joiner.join(fts5_query(c) for c in n.children) + ")"


def pg_fold(word: str) -> str:
    return word.lower().translate(_PG_TABLE)


def tsquery(n: Narrowing) -> str:
    """The ``to_tsquery('simple', ...)`` text: lexemes of letters and digits, each quoted."""
    if isinstance(n, IndexWord):
        parts = _INDEX_WORD.findall(pg_fold(n.text))
        lexemes = [f"'{p}'" for p in parts]
        if n.prefix:
            lexemes[-1] += ":*"
        return "(" + " & ".join(lexemes) + ")"
    joiner = " & " if isinstance(n, AllOf) else " | "
    return "(" + joiner.join(tsquery(c) for c in n.children) + ")"


# --------------------------------------------------------------------------- highlighting


def snippet(
    text: str, spans: list[tuple[int, int]] | tuple[tuple[int, int], ...], width: int = 240
) -> tuple[str, list[tuple[int, int]]]:
    """A window of ``text`` around its first span, and the spans shifted into it."""
    if len(text) <= width:
        return text, list(spans)
    first = spans[0][0] if spans else 0
    start = max(0, min(first - width // 3, len(text) - width))
    space = text.rfind(" ", 0, start + 1)
    if start and space > start - 20:
        start = space + 1
    end = min(len(text), start + width)
    out = ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")
    shift = (1 if start else 0) - start
    return out, [(s + shift, min(e, end) + shift) for s, e in spans if s >= start and s < end]


# --------------------------------------------------------------------------- running a search


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A story the query matches: the watchlists that matched it when stored, and the hits."""

    story: StoredStory
    watchlists: tuple[str, ...]
    hits: tuple[Hit, ...]


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The stories found, which engine chose the candidates, and how many were decided."""

    query: Query
    hits: tuple[SearchHit, ...]
    engine: str  # "fts5", "postgresql" or "scan"
    examined: int


def _has_fts5(conn: Connection) -> bool:
    row = conn.execute(text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :n"), {"n": FTS_TABLE}).first()
    return row is not None


def _candidates(
    conn: Connection, dialect: str, narrow: Narrowing | None, conds: list[Any], order: str
) -> tuple[str, Iterator[Any]]:
    """The engine's name and the candidate rows (StoredStory columns), in the order asked."""
    by_date = (Story.published_at.desc(), Story.id.desc())
    if narrow is not None and dialect == "sqlite" and _has_fts5(conn):
        fts = text(f"SELECT rowid AS id, bm25({FTS_TABLE}) AS rank FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :q")
        sub = fts.columns(literal_column("id"), literal_column("rank")).subquery("fts")
        stmt = stored_story_select().join(sub, sub.c.id == Story.id).where(*conds)
        stmt = stmt.order_by(sub.c.rank, *by_date) if order == "relevance" else stmt.order_by(*by_date)
        return "fts5", iter(conn.execute(stmt.execution_options(yield_per=BATCH), {"q": fts5_query(narrow)}))
    if narrow is not None and dialect == "postgresql":
        doc: Any = literal_column(_PG_QUERY_DOCUMENT)
        tsq = func.to_tsquery(literal_column("'simple'::regconfig"), tsquery(narrow))
        stmt = stored_story_select().where(doc.op("@@")(tsq), *conds)
        stmt = (
            stmt.order_by(func.ts_rank(doc, tsq).desc(), *by_date) if order == "relevance" else stmt.order_by(*by_date)
        )
        return "postgresql", iter(conn.execute(stmt.execution_options(yield_per=BATCH)))
    stmt = stored_story_select().where(*conds).order_by(*by_date)
    return "scan", iter(conn.execute(stmt.execution_options(yield_per=BATCH)))


def search_stories(
    store: Store,
    query: str,
    *,
    aliases: Mapping[str, str] | None = None,
    since: dt.datetime | None = None,
    watchlist: str | None = None,
    limit: int = 20,
    order: str = "date",
) -> SearchResult:
    """Stored stories a watchlist with ``query`` would match, newest first (or best first).

    ``aliases`` are the config's alias groups (``@name``); ``watchlist`` keeps the stories
    that watchlist matched when they were stored. Raises
    :class:`~monitor.errors.QuerySyntaxError` for a query that does not parse (its column
    says where) and :class:`~monitor.errors.StoreError` when the database fails. One
    transaction.
    """
    if order not in ("date", "relevance"):
        raise ValueError(f"order must be 'date' or 'relevance', not {order!r}")
    parsed = parse_query(query, aliases)
    matcher = Matcher([WatchlistQuery(QUERY_NAME, query)], aliases)
    conds: list[Any] = []
    if since is not None:
        conds.append(Story.published_at >= since)
    if watchlist is not None:
        conds.append(exists().where(Match.story_id == Story.id, Match.watchlist == watchlist))
    found: list[tuple[StoredStory, tuple[Hit, ...]]] = []
    examined = 0
    with store.transaction() as conn:
        engine, rows = _candidates(conn, store.dialect, narrowing(parsed.root), conds, order)
        for row in rows:
            examined += 1
            result = matcher.match_one(QUERY_NAME, row.title, row.summary)
            if result is not None:
                found.append((StoredStory(*tuple(row)), result.hits))
                if len(found) >= limit:
                    break
        matched: dict[int, list[str]] = {}
        if found:
            for sid, wl in conn.execute(
                select(Match.story_id, Match.watchlist)
                .where(Match.story_id.in_([s.id for s, _ in found]))
                .order_by(Match.watchlist)
            ):
                matched.setdefault(sid, []).append(wl)
    hits = tuple(SearchHit(s, tuple(matched.get(s.id, ())), h) for s, h in found)
    return SearchResult(parsed, hits, engine, examined)


__all__ = [
    "FTS_TABLE",
    "PG_DOCUMENT",
    "PG_INDEX",
    "QUERY_NAME",
    "AllOf",
    "AnyOf",
    "IndexWord",
    "Narrowing",
    "SearchHit",
    "SearchResult",
    "fts5_query",
    "include_name",
    "narrowing",
    "search_stories",
    "snippet",
    "tsquery",
]
