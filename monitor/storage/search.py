"""Searching stored stories.

**Search** (``news-monitor stories search``, the web page's search box) takes what
people type into a search engine: words, ``"quoted phrases"``, ``prefix*``, ``OR``
between alternatives, ``-word`` to exclude. :func:`parse_search` turns it into a small
:class:`SearchQuery` (pure), which is rendered for the database at hand:

* **SQLite**: FTS5, an external-content index ``stories_fts`` over title and summary
  kept in sync by triggers (migration 0002), tokenizer ``unicode61 remove_diacritics 2``
  so ``Coree`` finds ``Corée``. Every term is sent as a quoted FTS5 string, so no user
  input can be FTS5 syntax (``nord-coréen`` would otherwise be a syntax error).
* **PostgreSQL**: its own full-text search, ``to_tsvector('simple', ...)`` over the
  lower-cased, accent-stripped text, with a GIN expression index (migration 0002); the
  query is a ``to_tsquery`` built from the same terms, passed as a bound parameter.
* **Anything else** (an SQLite built without FTS5): the stories of the period are
  scanned in Python with the same folding. Slower, same answers.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, exists, func, literal_column, select, text

from monitor.errors import MonitorError
from monitor.matching.backtest import merge_spans
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
_WORD = re.compile(r"\w+")
_TOKEN = re.compile(r'\s*(-?)(?:"([^"]*)"?|(\S+))')


class SearchSyntaxError(MonitorError):
    """A search that cannot mean anything (only exclusions, a dangling OR, ...)."""


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


# --------------------------------------------------------------------------- the query


@dataclass(frozen=True, slots=True)
class SearchTerm:
    """A word or a phrase, as the lower-cased words it is made of; ``prefix``: ``sanction*``."""

    words: tuple[str, ...]
    prefix: bool = False
    raw: str = ""


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """AND of groups, each an OR of terms, minus the excluded terms."""

    groups: tuple[tuple[SearchTerm, ...], ...]
    excluded: tuple[SearchTerm, ...] = ()

    @property
    def terms(self) -> tuple[SearchTerm, ...]:
        return tuple(t for g in self.groups for t in g)


def _term(raw: str, *, phrase: bool) -> SearchTerm | None:
    prefix = not phrase and raw.endswith("*")
    words = tuple(w.lower() for w in _WORD.findall(raw))
    if not words:
        return None
    return SearchTerm(words, prefix, raw)


def parse_search(query: str) -> SearchQuery:
    """``"North Korea" troops OR soldiers -exercise`` -> groups and exclusions (pure)."""
    groups: list[list[SearchTerm]] = []
    excluded: list[SearchTerm] = []
    join_next = False
    pos = 0
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        negate, phrase, word = m.group(1) == "-", m.group(2), m.group(3)
        if word is not None and word.upper() == "OR" and not negate:
            if not groups or join_next:
                raise SearchSyntaxError(f"OR needs a term on each side: {query!r}")
            join_next = True
            continue
        if word is not None and word.upper() == "AND" and not negate:
            continue  # AND is what juxtaposition means already
        term = _term(phrase if phrase is not None else word or "", phrase=phrase is not None)
        if term is None:
            continue  # punctuation only
        if negate:
            if join_next:
                raise SearchSyntaxError(f"cannot OR an excluded term: {query!r}")
            excluded.append(term)
        elif join_next:
            groups[-1].append(term)
            join_next = False
        else:
            groups.append([term])
    if join_next:
        raise SearchSyntaxError(f"OR needs a term on each side: {query!r}")
    if not groups:
        raise SearchSyntaxError("a search needs at least one word or phrase to look for (not only -excluded ones)")
    return SearchQuery(tuple(tuple(g) for g in groups), tuple(excluded))


def fts5_query(q: SearchQuery) -> str:
    """The FTS5 MATCH string: every term quoted, so user text is never FTS5 syntax."""

    def term(t: SearchTerm) -> str:
        return '"' + " ".join(t.words) + '"' + (" *" if t.prefix else "")

    def group(g: Sequence[SearchTerm]) -> str:
        return "(" + " OR ".join(term(t) for t in g) + ")"

    out = " AND ".join(group(g) for g in q.groups)
    if q.excluded:
        out = f"({out}) NOT {group(q.excluded)}"
    return out


def pg_fold(word: str) -> str:
    return word.lower().translate(_PG_TABLE)


def tsquery(q: SearchQuery) -> str:
    """The ``to_tsquery('simple', ...)`` text; words are ``\\w+`` only, quoted as lexemes."""

    def term(t: SearchTerm) -> str:
        lexemes = [f"'{pg_fold(w)}'" for w in t.words]
        if t.prefix:
            lexemes[-1] += ":*"
        return "(" + " <-> ".join(lexemes) + ")"

    def group(g: Sequence[SearchTerm]) -> str:
        return "(" + " | ".join(term(t) for t in g) + ")"

    out = " & ".join(group(g) for g in q.groups)
    if q.excluded:
        out += " & !" + group(q.excluded)
    return out


# --------------------------------------------------------------------------- folding and highlighting


def _fold_char(ch: str) -> str:
    base = unicodedata.normalize("NFD", ch)[0]
    low = base.lower()
    return low[0] if low else base


def fold_same_length(text: str) -> str:
    """Lower-case, accents off, one character for one, so offsets stay valid for the original."""
    return "".join(_fold_char(c) if not c.isascii() else c.lower() for c in text)


def _term_regex(t: SearchTerm) -> re.Pattern[str]:
    words = [re.escape(fold_same_length(w)) for w in t.words]
    body = r"\W+".join(words)
    return re.compile(r"(?<!\w)" + body + (r"\w*" if t.prefix else r"(?!\w)"))


def term_spans(text: str, terms: Iterable[SearchTerm]) -> list[tuple[int, int]]:
    """Sorted, merged (start, end) offsets in ``text`` of every occurrence of the terms."""
    folded = fold_same_length(text)
    return merge_spans(m.span() for t in terms for m in _term_regex(t).finditer(folded))


def matches_text(q: SearchQuery, title: str, summary: str) -> bool:
    """The query on one story, in Python (the fallback, and tests' reference)."""
    folded = fold_same_length(f"{title}\n{summary}")

    def has(t: SearchTerm) -> bool:
        return _term_regex(t).search(folded) is not None

    return all(any(has(t) for t in g) for g in q.groups) and not any(has(t) for t in q.excluded)


def snippet(text: str, spans: Sequence[tuple[int, int]], width: int = 240) -> tuple[str, list[tuple[int, int]]]:
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
    story: StoredStory
    watchlists: tuple[str, ...]  # watchlists the story matched


@dataclass(frozen=True, slots=True)
class SearchResult:
    query: SearchQuery
    hits: tuple[SearchHit, ...]
    engine: str  # "fts5", "postgresql" or "scan"


def _has_fts5(conn: Connection) -> bool:
    row = conn.execute(text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :n"), {"n": FTS_TABLE}).first()
    return row is not None


def search_stories(
    store: Store,
    query: str | SearchQuery,
    *,
    since: dt.datetime | None = None,
    watchlist: str | None = None,
    limit: int = 20,
    order: str = "date",
) -> SearchResult:
    """Stored stories matching ``query``, newest first (``order="relevance"``: best first).

    Raises :class:`SearchSyntaxError` for a query that means nothing and
    :class:`~monitor.errors.StoreError` when the database fails. One transaction.
    """
    q = parse_search(query) if isinstance(query, str) else query
    if order not in ("date", "relevance"):
        raise ValueError(f"order must be 'date' or 'relevance', not {order!r}")
    conds = []
    if since is not None:
        conds.append(Story.published_at >= since)
    if watchlist is not None:
        conds.append(exists().where(Match.story_id == Story.id, Match.watchlist == watchlist))
    by_date = (Story.published_at.desc(), Story.id.desc())
    with store.transaction() as conn:
        if store.dialect == "sqlite" and _has_fts5(conn):
            engine = "fts5"
            fts = text(f"SELECT rowid AS id, bm25({FTS_TABLE}) AS rank FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH :q")
            sub = fts.columns(literal_column("id"), literal_column("rank")).subquery("fts")
            stmt = stored_story_select().join(sub, sub.c.id == Story.id).where(*conds)
            stmt = stmt.order_by(sub.c.rank, *by_date) if order == "relevance" else stmt.order_by(*by_date)
            rows = conn.execute(stmt.limit(limit), {"q": fts5_query(q)}).all()
        elif store.dialect == "postgresql":
            engine = "postgresql"
            doc: Any = literal_column(_PG_QUERY_DOCUMENT)
            tsq = func.to_tsquery(literal_column("'simple'::regconfig"), tsquery(q))
            stmt = stored_story_select().where(doc.op("@@")(tsq), *conds)
            if order == "relevance":
                stmt = stmt.order_by(func.ts_rank(doc, tsq).desc(), *by_date)
            else:
                stmt = stmt.order_by(*by_date)
            rows = conn.execute(stmt.limit(limit)).all()
        else:
            engine = "scan"
            rows = []
            for row in conn.execute(stored_story_select().where(*conds).order_by(*by_date)):
                if matches_text(q, row.title, row.summary):
                    rows.append(row)
                    if len(rows) >= limit:
                        break
        stories = [StoredStory(*tuple(r)) for r in rows]
        matched: dict[int, list[str]] = {}
        if stories:
            for sid, wl in conn.execute(
                select(Match.story_id, Match.watchlist)
                .where(Match.story_id.in_([s.id for s in stories]))
                .order_by(Match.watchlist)
            ):
                matched.setdefault(sid, []).append(wl)
    return SearchResult(q, tuple(SearchHit(s, tuple(matched.get(s.id, ()))) for s in stories), engine)


__all__ = [
    "FTS_TABLE",
    "PG_DOCUMENT",
    "PG_INDEX",
    "SearchHit",
    "SearchQuery",
    "SearchResult",
    "SearchSyntaxError",
    "SearchTerm",
    "fts5_query",
    "include_name",
    "matches_text",
    "parse_search",
    "search_stories",
    "snippet",
    "term_spans",
    "tsquery",
]
