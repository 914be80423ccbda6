"""Match stories against many watchlists at once, and explain every match (pure).

How it stays fast with thousands of watchlists:

* Conceptually a story is one *word stream*: ``" w1 w2 … \\n s1 s2 … "`` (folded title
  words, a newline, folded summary words; single spaces between words and at both ends
  of each field), and every term of every watchlist is a *key* to find in it. Spaces
  make word boundaries free: the term ``Kursk`` is the key ``" kursk "`` and cannot
  match inside ``kurskaya``; the wildcard ``Kursk*`` is ``" kursk"``; the phrase
  ``"North Korea"`` is ``" north korea "``. Positions (for NEAR, field scopes and the
  explanations) are positions in that stream.
* The stream is never scanned as a whole. Almost every word of a story has been seen
  before, so the work is done once per distinct *word*, and memoised: the keys inside
  its window ``" w "`` (one pass of ONE Aho-Corasick automaton over the window, with
  their offsets), its stem keys (watchlists with ``stem:``; looked up only if the word
  begins like some stem key), the one-word ``?`` patterns it matches (tried only when the
  pattern's longest literal piece, its *trigger*, is in the window), and whether a key
  spanning words (a phrase) may start in it, indexed by the next word the key needs.
  Likewise, the folding and splitting of text is memoised per whitespace-delimited token
  (:func:`monitor.matching.textnorm.fold_words`). A story then costs a few ``map`` calls over its
  tokens and words (in C), a set of the keys present, and a check of the phrases that
  may start in it against the following words. The memos are bounded (cleared when
  full) and a clear midway through a story is detected, so results never depend on them.
* From each query the compiler derives *required key groups*: sets of keys of which at
  least one must be present for the query to be true (each AND operand gives one; NOT
  gives none). Each key lists the watchlists that have it in their rarest group; the
  union over a story's keys (in C), less those whose second rarest group misses the
  story, leaves the few watchlists worth evaluating. This is sound because
  :func:`monitor.matching.query.parse_query` rejects queries that are true on a story without any
  of their terms.
* Each query is compiled to a small generated Python function of ``and``/``or``/``not``
  over set tests (see :func:`_generate`): cheap operands first, positions (NEAR,
  field scopes) computed only when the keys they need are present.

Matching is on words, per field: a phrase or NEAR never spans the title and the summary.
``NEAR/n`` means at most *n* other words between the two sides, either order; sides
that overlap count as near.

Explanations: every :class:`Hit` gives the term as written in the query, the field, and
``start``/``end`` offsets into the *original* title or summary (``title[h.start:h.end]
== h.text``). For a ``*`` wildcard or a stemmed word the hit covers the whole word
(``sanctions`` for ``sanction*``); for a Hangul word it covers the query word only
(``북한`` inside ``북한은``). Only terms that made the query true are reported: nothing
under a NOT, and for NEAR only the occurrences that were near each other. Explaining is
lookups, not a rescan, and runs for the stories that match only: a key's occurrences
come from the words that brought it (found in C among the story's keyed words) and,
for each such word, from a per-word memo of key -> end offsets in its window (built
the first time a matching story needs the word); each atom's occurrences become Hits
once per story whichever watchlists share them, and a match's hits are those lists
merged. The offsets come from the per-token memo of where each folded character came
from plus the token's start (running sums of the token lengths, in C).

Memory: every memo is capped at 200,000 entries and cleared when full (a clear midway
through a story is detected, see above): the token memos of
:mod:`monitor.matching.textnorm`, the word memo (keys, offsets, phrase leads, and the
explanations' key -> offsets, all cleared together) and the stem maps (one per
language, shared by all matchers). Not an LRU: an LRU's bookkeeping on every hit
would take the per-word lookups out of C ``map`` calls, which are the hot path (a clear costs
one recomputation of each word seen again, about 5 µs a word).
Measured (tracemalloc, 2,000 watchlists, 15,000 stories with six never-seen tokens
each): 33.9 MB for 88,843 distinct words, 381 bytes a word over all the memos, so
about 75 MB at the cap. Per-story work (occurrences, hits) lives on the story and is
freed with it.

Measured cost behind the decision (cProfile and timed parts on ``bench/match.py``'s
stories, 20,000 a round, warm memos, a shared 2-core machine): at 200 watchlists
(0.17 matches a story) explaining is 10-20 % of the matcher's time, and most of it
is finding the matches: folding and splitting the text (``fold_words``, about a third),
the word-memo lookups and the phrase checks of ``_Story``, the candidate filter. At
2,000 watchlists (1.54 matches a story) explaining was about 40 %, and half of that
was filing the occurrences of *every* key of every keyed word of the story once three
keys had been asked for (a Python loop over dozens of keys a word), where a match
needs two or three. Asking the per-word memo for the one key needed, and building each
atom's hits once a story, cut the matcher's time at 2,000 watchlists by about 18 %
(new/old 0.82, median of 15 interleaved rounds of 2,000 stories, the old and new
matcher in one process; 0.76-0.92 over four such runs) and left 200 within noise
(0.98; 0.90-1.13): the machine was shared and loaded. The rest is finding the
matches, which this does not change.

A :class:`Matcher` is immutable after construction and builds 200 watchlists in about
0.1 s; it pickles as its watchlists and aliases and rebuilds on unpickling, so the
daemon can simply build a new one on config reload.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, chain, compress, repeat
from operator import add, contains
from typing import Any

import ahocorasick

from monitor.errors import ConfigError, QuerySyntaxError
from monitor.matching.query import AliasRef, And, Field, Near, Node, Not, Or, Term, alias_resolver, parse_with
from monitor.matching.query import validate_aliases as _validate_aliases
from monitor.matching.stemming import LANGUAGES, stem
from monitor.matching.textnorm import TokenOffsets, TokenWords, fold_words, is_hangul, token_starts

__all__ = ["Hit", "MatchResult", "Matcher", "WatchlistQuery", "compile_query"]

_FIELD_NAMES = ("title", "summary")
_FIELD_INDEX = {name: i for i, name in enumerate(_FIELD_NAMES)}


@dataclass(frozen=True, slots=True)
class Hit:
    """One occurrence of a query term that made the query true."""

    term: str  # the query term as the user wrote it, e.g. '"Corée du Nord"', 'sanction*'
    field: str  # "title" or "summary"
    start: int  # offsets into the ORIGINAL (unfolded) title or summary
    end: int
    text: str  # the original text matched, e.g. "Corée du Nord"


@dataclass(frozen=True, slots=True)
class MatchResult:
    """A watchlist that matched a story, and why."""

    watchlist: str
    hits: tuple[Hit, ...]  # title hits first, then summary hits, each by position

    @property
    def terms(self) -> tuple[str, ...]:
        """Distinct matched terms, in first-occurrence order."""
        return tuple(dict.fromkeys(h.term for h in self.hits))


@dataclass(frozen=True, slots=True)
class WatchlistQuery:
    """A watchlist as the matcher needs it: a name, a query, and optional stemming."""

    name: str
    query: str
    stem: tuple[str, ...] = ()  # languages whose light stemming applies, e.g. ("en", "fr")


# --------------------------------------------------------------------------- compiled form

# Atom kinds: decided by a key of the word stream; decided by stems of the story's words
# (a one-word stemmed term is decided by its key alone; for a hyphenated one the key of
# its first word is a trigger); a key is only a trigger, confirmed by a regex over the
# stream (a '?' pattern of several words); decided by a key that the word memo gives
# the words matching a one-word '?' pattern (its trigger found, its regex confirmed).
_KEY, _STEM, _REGEX, _WORD = 0, 1, 2, 3
# How a _KEY occurrence ends: at the key's closing space; extended to the end of the
# word (``*``); right after the key (Hangul prefix).
_TAIL_EXACT, _TAIL_WORD, _TAIL_PREFIX = 0, 1, 2

# Node tags of the compiled query trees (tuples: cheap, and easy to generate code from).
#   (_N_KEYS, frozenset(keys), aid)       an atom decided by the presence of any key
#   (_N_ANY, frozenset(keys), {key: (aid, ...)}) an OR of such atoms
#   (_N_ATOM, aid)                        anything else: field-scoped, '?' wildcards
#   (_N_AND, (node, ...)), (_N_OR, (node, ...)), (_N_NOT, node)
#   (_N_NEAR, (aid, ...), (aid, ...), distance)
_N_KEYS, _N_ANY, _N_ATOM, _N_AND, _N_OR, _N_NOT, _N_NEAR = range(7)
_CNode = tuple[Any, ...]

_WORDCHAR = "[^ \\n]"
_STEM_KEY = "\x00"  # marks keys that are stems looked up outside the automaton
_PATTERN_KEY = "\x01"  # marks keys of one-word '?' patterns, confirmed word by word


@dataclass(frozen=True, slots=True)
class _Atom:
    raw: str
    field: int  # -1: any field; 0: title; 1: summary
    kind: int
    keys: tuple[int, ...]  # _KEY, _WORD: one key; _STEM: one per language; _REGEX: the trigger
    nwords: int = 1
    tail: int = _TAIL_EXACT
    stems: tuple[tuple[int, tuple[str, ...]], ...] = ()  # _STEM: (language index, stems of the words)
    regex: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class _Watchlist:
    name: str
    root: _CNode
    groups: tuple[frozenset[int], ...]
    # For the common shape "any of these AND any of those AND NOT ...": the keys whose
    # atoms explain a match (key -> atoms), so explaining is one intersection, no walk.
    flat: tuple[frozenset[int], dict[int, tuple[int, ...]]] | None = None


def _plain_word(word: str) -> bool:
    return "*" not in word and "?" not in word and not is_hangul(word[-1])


class _StemMap(dict[str, str]):
    """word -> stem for one language; ``map(m.__getitem__, words)`` runs in C once warm."""

    def __init__(self, lang: str) -> None:
        super().__init__()
        self.lang = lang

    def __missing__(self, word: str) -> str:
        if len(self) >= 200_000:  # bound memory on a long-running daemon
            self.clear()
        got = self[word] = stem(word, self.lang)
        return got


_STEM_MAPS: dict[str, _StemMap] = {lang: _StemMap(lang) for lang in LANGUAGES}


def _stem_head(stemmed: str) -> str:
    """What every word with this stem begins with: its first four letters, and never its
    last one. A stem is the word itself, or a truncation of it whose last letter may be
    a final y turned i (in stems of four letters or more), so all but its last letter
    begin the word, and a stem of three letters or fewer begins it whole."""
    return stemmed if len(stemmed) <= 3 else stemmed[: min(4, len(stemmed) - 1)]


_STARTS = -1  # in a word's memoised keys: a key spanning words may start in this word
# What may start in a word: keys whose next word is named whole, by that word
# (key, the words after it, the prefix of the word after those), and keys that only
# need a prefix of the next word (key, prefix).
_Leads = tuple[dict[str, tuple[tuple[int, list[str], str], ...]], tuple[tuple[int, str], ...]]


class _WordKeys(dict[str, tuple[int, ...]]):
    """word -> the keys it brings (see :meth:`Matcher._word_info`); ``map(m.__getitem__,
    words)`` runs in C once warm. Bounded: cleared when full (``clears`` counts that)."""

    limit = 200_000

    def __init__(self, info: Callable[[str], tuple[tuple[int, ...], tuple[tuple[int, int], ...]]]) -> None:
        super().__init__()
        self.info = info
        self.clears = 0

    def __missing__(self, word: str) -> tuple[int, ...]:
        return self.info(word)[0]


class _Compiler:
    """Turns parsed queries into atoms, automaton keys and tuple trees."""

    def __init__(self, langs: tuple[str, ...]) -> None:
        self.langs = langs  # stemming languages of all watchlists, in a fixed order
        self.keys: dict[str, int] = {}  # automaton keys, and _STEM_KEY + "<lang>:<stem>" keys
        self.atoms: list[_Atom] = []
        self.atom_ids: dict[_CNode, int] = {}
        # trigger key -> (regex, key) of the one-word '?' patterns it triggers
        self.patterns: dict[int, dict[int, re.Pattern[str]]] = {}

    def key(self, text: str) -> int:
        kid = self.keys.get(text)
        if kid is None:
            kid = self.keys[text] = len(self.keys)
        return kid

    def atom(self, term: Term, field: int, langs: tuple[str, ...]) -> int:
        ident = (term.raw, term.words, term.phrase, field, langs)
        aid = self.atom_ids.get(ident)
        if aid is None:
            aid = self.atom_ids[ident] = len(self.atoms)
            self.atoms.append(self._build_atom(term, field, langs))
        return aid

    def _build_atom(self, term: Term, field: int, langs: tuple[str, ...]) -> _Atom:
        ws = term.words
        n = len(ws)
        last = ws[-1]
        if langs and not term.phrase and all(_plain_word(w) for w in ws):
            stems = tuple((self.langs.index(lang), tuple(stem(w, lang) for w in ws)) for lang in langs)
            keys = tuple(dict.fromkeys(self.key(f"{_STEM_KEY}{self.langs[li]}:{seq[0]}") for li, seq in stems))
            return _Atom(term.raw, field, _STEM, keys, n, stems=stems)
        if all(_plain_word(w) for w in ws[:-1]) and "?" not in last:
            body = " ".join(ws[:-1] + (last.rstrip("*"),))
            if last.endswith("*"):
                return _Atom(term.raw, field, _KEY, (self.key(" " + body),), n, _TAIL_WORD)
            if is_hangul(last[-1]):
                return _Atom(term.raw, field, _KEY, (self.key(" " + body),), n, _TAIL_PREFIX)
            return _Atom(term.raw, field, _KEY, (self.key(" " + body + " "),), n)
        # '?' wildcards: a one-word pattern is tried once on each distinct word its trigger
        # lands in (the word memo); a longer one by a regex over the whole stream (rare).
        if n == 1:
            kid = self.key(_PATTERN_KEY + last)
            self.patterns.setdefault(self.key(_trigger_of(ws)), {})[kid] = _regex_of(ws)
            return _Atom(term.raw, field, _WORD, (kid,))
        return _Atom(term.raw, field, _REGEX, (self.key(_trigger_of(ws)),), n, regex=_regex_of(ws))

    def compile(self, node: Node, field: int, langs: tuple[str, ...]) -> _CNode:
        if isinstance(node, Term):
            aid = self.atom(node, field, langs)
            atom = self.atoms[aid]
            if field == -1 and (atom.kind in (_KEY, _WORD) or (atom.kind == _STEM and atom.nwords == 1)):
                return (_N_KEYS, frozenset(atom.keys), aid)
            return (_N_ATOM, aid)
        if isinstance(node, AliasRef):
            return self.compile(node.child, field, langs)
        if isinstance(node, Field):
            return self.compile(node.child, _FIELD_INDEX[node.name], langs)
        if isinstance(node, Not):
            return (_N_NOT, self.compile(node.child, field, langs))
        if isinstance(node, Near):
            return (
                _N_NEAR,
                tuple(self._near_atoms(node.left, field, langs)),
                tuple(self._near_atoms(node.right, field, langs)),
                node.distance,
            )
        children = [self.compile(c, field, langs) for c in node.children]
        if isinstance(node, And):
            flat: list[_CNode] = []
            for c in children:
                flat.extend(c[1] if c[0] == _N_AND else (c,))
            return (_N_AND, tuple(flat))
        # OR: merge the atoms decided by keys into one set test, which runs in C.
        keyed: list[_CNode] = []
        rest: list[_CNode] = []
        for c in children:
            for g in c[1] if c[0] == _N_OR else (c,):
                (keyed if g[0] in (_N_KEYS, _N_ANY) else rest).append(g)
        if len(keyed) > 1:
            kids: set[int] = set()
            aids: list[int] = []
            for k in keyed:
                kids.update(k[1])
                if k[0] == _N_KEYS:
                    aids.append(k[2])
                else:
                    aids.extend(a for group in k[2].values() for a in group)
            by_key: dict[int, list[int]] = {}
            for aid in dict.fromkeys(aids):
                for kid in self.atoms[aid].keys:
                    by_key.setdefault(kid, []).append(aid)
            keyed = [(_N_ANY, frozenset(kids), {k: tuple(v) for k, v in by_key.items()})]
        merged = keyed + rest
        return merged[0] if len(merged) == 1 else (_N_OR, tuple(merged))

    def _near_atoms(self, node: Node, field: int, langs: tuple[str, ...]) -> list[int]:
        if isinstance(node, Term):
            return [self.atom(node, field, langs)]
        if isinstance(node, Or):
            return [a for c in node.children for a in self._near_atoms(c, field, langs)]
        if isinstance(node, Field):
            return self._near_atoms(node.child, _FIELD_INDEX[node.name], langs)
        if isinstance(node, AliasRef):
            return self._near_atoms(node.child, field, langs)
        raise AssertionError(f"not a NEAR operand: {node!r}")  # the parser rejects these

    def needs(self, node: _CNode) -> list[frozenset[int]]:
        """Key groups of which one key at least must be present for *node* to be true."""
        tag = node[0]
        if tag in (_N_KEYS, _N_ANY):
            return [node[1]]
        if tag == _N_ATOM:
            return [frozenset(self.atoms[node[1]].keys)]
        if tag == _N_NEAR:
            return [frozenset(k for a in side for k in self.atoms[a].keys) for side in (node[1], node[2])]
        if tag == _N_AND:
            return [g for c in node[1] for g in self.needs(c)]
        if tag == _N_OR:
            # Whichever branch is true meets its own groups, so the union of one group
            # per branch is needed. Pairing the branches' 1st groups, then their 2nd, and
            # so on, gives as many groups as the longest branch has: (a AND b) OR (c AND d)
            # needs {a, c} and {b, d}.
            per_branch: list[list[frozenset[int]]] = []
            for c in node[1]:
                groups = sorted(self.needs(c), key=len)
                if not groups:
                    return []
                per_branch.append(groups)
            longest = max(len(g) for g in per_branch)
            return [frozenset().union(*(g[j % len(g)] for g in per_branch)) for j in range(longest)]
        return []  # NOT


def _trigger_of(ws: tuple[str, ...]) -> str:
    """The longest literal piece every occurrence of a wildcard pattern must contain."""
    best = ""
    for i, w in enumerate(ws):
        open_end = w.endswith("*") or is_hangul(w.rstrip("*")[-1])
        runs = w.rstrip("*").split("?")
        for j, run in enumerate(runs):
            if not run:
                continue
            cand = (" " if j == 0 else "") + run
            if j == len(runs) - 1 and not open_end:
                cand += " "
                k = i + 1  # a plain word followed by plain words: the piece can grow
                while k < len(ws) and _plain_word(ws[k]):
                    cand += ws[k] + " "
                    k += 1
            if len(cand.strip()) > len(best.strip()):
                best = cand
    return best


def _regex_of(ws: tuple[str, ...]) -> re.Pattern[str]:
    """Regex of a wildcard pattern over the word stream; a one-word pattern is instead
    anchored to one word (``match(stream, word_start, word_end)``)."""
    if len(ws) == 1:
        w = ws[0]
        core = _WORDCHAR.join(re.escape(run) for run in w.rstrip("*").split("?"))
        if w.endswith("*"):
            return re.compile(core + _WORDCHAR + "*")
        return re.compile(core if is_hangul(w[-1]) else core + "$")
    parts: list[str] = []
    for i, w in enumerate(ws):
        core = _WORDCHAR.join(re.escape(run) for run in w.rstrip("*").split("?"))
        if w.endswith("*") or (is_hangul(w[-1]) and i < len(ws) - 1):
            core += _WORDCHAR + "*"
        parts.append(core)
    tail = "" if ws[-1].endswith("*") or is_hangul(ws[-1][-1]) else "(?= )"
    return re.compile("(?<= )" + " ".join(parts) + tail)


# --------------------------------------------------------------------------- one story


class _Story:
    """The word stream of one story (``" t1 t2 \\n s1 s2 "``) plus facts computed on demand.

    Occurrences are ``(start, end)`` positions of whole or partial words in the stream.
    Words are numbered title first, then summary, for NEAR and stems.
    """

    __slots__ = (
        "m",
        "title",
        "summary",
        "tt",
        "st",
        "_stream",
        "tlen",
        "ws",
        "_keyed",
        "_keyed_words",
        "_multi",
        "present",
        "_by_kid",
        "_occ",
        "_starts",
        "_maps",
        "_stems",
        "_near",
        "_made",
        "_tagged",
    )

    def __init__(self, m: Matcher, title: str, summary: str) -> None:
        self.m = m
        self.title = title
        self.summary = summary
        self.tt = tt = fold_words(title, m._token_words)
        self.st = st = fold_words(summary, m._token_words)
        # len(" " + " ".join(tt) + " "): the title part of the stream, up to its "\n"
        self.tlen = sum(map(len, tt)) + len(tt) + 1 if tt else 2
        # Every key that lies inside one word's window " w " (and every stem key) comes
        # from the per-word memo; keys spanning words are checked where they can start.
        self.ws = ws = tt + st
        memo = m._word_keys
        clears = memo.clears
        self._keyed = keyed = list(map(memo.__getitem__, ws))
        if memo.clears != clears:  # the memo filled up midway: look again, all are in it now
            clears = memo.clears
            self._keyed = keyed = list(map(memo.__getitem__, ws))
        self.present = present = set(chain.from_iterable(keyed))
        self._multi: list[tuple[int, int, int, int]] = []
        if _STARTS in present:
            present.discard(_STARTS)
            self._multi = multi = m._spanning(tt, 0, clears) + m._spanning(st, len(tt), clears)
            present.update(kid for _, _, _, kid in multi)
        self._stream: str | None = None
        self._stems: dict[int, list[str]] = {}
        self._near: dict[int, list[tuple[int, int, int]]] = {}
        self._made: dict[tuple[int, int, int], Hit] = {}
        self._tagged: dict[int, list[tuple[tuple[int, int, int], Hit]]] = {}
        self._by_kid: dict[int, list[tuple[int, int]]] | None = None
        self._keyed_words: tuple[list[int], list[tuple[int, ...]]] | None = None
        self._occ: dict[int, list[tuple[int, int]]] = {}
        self._starts: list[int] | None = None
        self._maps: dict[int, tuple[list[int], list[int], list[str]]] = {}

    @property
    def stream(self) -> str:
        """The word stream ``" t1 t2 \\n s1 s2 "`` (built only when a pattern needs it)."""
        got = self._stream
        if got is None:
            got = self._stream = " " + " ".join(self.tt) + " \n " + " ".join(self.st) + " "
        return got

    # ---- occurrences, in exact-stream coordinates: (start, end) of the matched words

    def ends(self, kid: int) -> list[tuple[int, int]]:
        """``(word, end)`` of every occurrence of key *kid*: the word it ends in and its end
        position in the stream, as one automaton pass over the whole stream would report
        it, rebuilt from the per-word memo (the window ``" w "`` of word *i* starts at
        ``starts[i] - 1``).

        The words that bring the key are found in C (``compress`` over the story's keyed
        words), and each one's offsets of the key come from the word's memo
        (:meth:`Matcher._ends_of`): the cost is that of the key's occurrences, not of all
        the keys the story's words bring (thousands of watchlists bring dozens a word).
        """
        by_kid = self._by_kid
        if by_kid is None:
            by_kid = self._by_kid = {}
        else:
            got = by_kid.get(kid)
            if got is not None:
                return got
        out: list[tuple[int, int]] = []
        ws = self.ws
        keyed = self._keyed_words
        if keyed is None:  # (numbers of the words that bring keys, and their keys)
            keyed = self._keyed_words = (list(compress(range(len(ws)), self._keyed)), [k for k in self._keyed if k])
        where = list(compress(keyed[0], map(contains, keyed[1], repeat(kid))))
        if where:
            starts = self._starts or self._word_starts()
            word_ends = self.m._word_ends
            ends_of = self.m._ends_of
            for i in where:
                w = ws[i]
                offsets = word_ends.get(w) or ends_of(w)
                base = starts[i] - 1
                for off in offsets.get(kid, ()):
                    out.append((i, base + off))
        for _, j, tail, k in self._multi:
            if k == kid:
                out.append((j, self._multi_end(j, tail)))
        by_kid[kid] = out
        return out

    def _multi_end(self, j: int, tail: int) -> int:
        """End of a key spanning words that ends in word *j*, taking *tail* of its
        characters (0: the key ends with the space after word *j*)."""
        start = self._word_starts()[j]
        return start + tail - 1 if tail else start + len(self.ws[j])

    def occ(self, aid: int) -> list[tuple[int, int]]:
        got = self._occ.get(aid)
        if got is not None:
            return got
        atom = self.m._atoms[aid]
        out: list[tuple[int, int]] = []
        present = self.present
        if not present.isdisjoint(atom.keys):
            key_len = self.m._key_len
            if atom.kind == _KEY:
                kid = atom.keys[0]
                back = key_len[kid] - 2  # from the key's last character to its first word's start
                ends = self.ends(kid)
                if atom.tail == _TAIL_EXACT:
                    out = [(end - back, end) for _, end in ends]
                elif atom.tail == _TAIL_WORD:  # to the end of the word
                    find = self.stream.find
                    out = [(end - back, find(" ", end + 1)) for _, end in ends]
                else:
                    out = [(end - back, end + 1) for _, end in ends]
            elif atom.kind == _WORD or (atom.kind == _STEM and atom.nwords == 1):
                # The word memo recorded every word that matches the pattern, or whose stem
                # is a stem key, with the end of the match: the occurrence starts the word.
                starts = self._word_starts()
                spans = {(starts[i], end + 1) for k in atom.keys for i, end in self.ends(k)}
                out = sorted(spans)
            elif atom.kind == _STEM:
                out = self._stemmed(atom)
            else:
                assert atom.regex is not None
                out.extend(mt.span() for mt in atom.regex.finditer(self.stream))
            if atom.field == 0:
                out = [o for o in out if o[0] < self.tlen]
            elif atom.field == 1:
                out = [o for o in out if o[0] > self.tlen]
        self._occ[aid] = out
        return out

    def _word_starts(self) -> list[int]:
        """Stream position of every word: title words from 1, summary words from past the
        title's closing space, its newline and the summary's opening space (running sums
        of the word lengths plus one space each, in C)."""
        starts = self._starts
        if starts is None:
            tt, st = self.tt, self.st
            # (map stops at the shorter: the last running sum is past the last word)
            starts = list(map(add, accumulate(map(len, tt), initial=1), range(len(tt))))
            starts += map(add, accumulate(map(len, st), initial=self.tlen + 2), range(len(st)))
            self._starts = starts
        return starts

    def _stemmed(self, atom: _Atom) -> list[tuple[int, int]]:
        """Spans of the word sequences whose stems equal the atom's, in any of its languages."""
        tt, st = self.tt, self.st
        nt = len(tt)
        n = atom.nwords
        starts = self._word_starts()
        found: set[tuple[int, int]] = set()
        for li, seq in atom.stems:
            stems = self._stems.get(li)
            if stems is None:
                smap = self.m._stem_vocab[li][0]
                stems = self._stems[li] = list(map(smap.__getitem__, self.ws))
            i = -1
            while True:
                try:
                    i = stems.index(seq[0], i + 1)
                except ValueError:
                    break
                j = i + n - 1
                if n > 1 and ((i < nt) != (j < nt) or j >= len(stems) or tuple(stems[i : j + 1]) != seq):
                    continue
                word = tt[j] if j < nt else st[j - nt]
                found.add((starts[i], starts[j] + len(word)))
        return sorted(found)

    def word_index(self, pos: int) -> int:
        """Index (over title words then summary words) of the word at exact-stream *pos*."""
        return bisect_right(self._word_starts(), pos) - 1

    def near(self, node: _CNode) -> list[tuple[int, int, int]]:
        """Occurrences ``(aid, start, end)`` that take part in a true NEAR (memoised)."""
        got = self._near.get(id(node))
        if got is None:
            got = self._near[id(node)] = self._near_pairs(node)
        return got

    def _near_pairs(self, node: _CNode) -> list[tuple[int, int, int]]:
        left_aids, right_aids, dist = node[1], node[2], node[3]
        lefts = [(a, s, e) for a in left_aids for s, e in self.occ(a)]
        if not lefts:
            return []
        rights = [(a, s, e) for a in right_aids for s, e in self.occ(a)]
        if not rights:
            return []
        tlen = self.tlen
        wi = self.word_index
        used: dict[tuple[int, int, int], None] = {}
        for left in lefts:
            ls, le = left[1], left[2]
            l0, l1 = wi(ls), wi(le - 1)
            for right in rights:
                rs, r_end = right[1], right[2]
                if (ls < tlen) != (rs < tlen):
                    continue
                r0, r1 = wi(rs), wi(r_end - 1)
                gap = r0 - l1 - 1 if r0 > l1 else (l0 - r1 - 1 if l0 > r1 else 0)
                if gap <= dist:
                    used[left] = None
                    used[right] = None
        return list(used)

    # ---- boolean evaluation (the tree walker; generated code does the same) and hits

    def eval(self, node: _CNode) -> bool:
        tag = node[0]
        if tag == _N_KEYS or tag == _N_ANY:
            return not self.present.isdisjoint(node[1])
        if tag == _N_AND:
            return all(self.eval(c) for c in node[1])
        if tag == _N_OR:
            return any(self.eval(c) for c in node[1])
        if tag == _N_NOT:
            return not self.eval(node[1])
        if tag == _N_ATOM:
            return bool(self.occ(node[1]))
        return bool(self.near(node))

    def collect(self, node: _CNode, out: list[tuple[int, int, int]]) -> None:
        """Occurrences of the atoms that make the (true) *node* true."""
        tag = node[0]
        if tag == _N_KEYS or tag == _N_ATOM:
            aid: int = node[-1]
            out.extend((aid, s, e) for s, e in self.occ(aid))
        elif tag == _N_ANY:
            by_key: dict[int, tuple[int, ...]] = node[2]
            for kid in self.present.intersection(node[1]):
                for aid in by_key[kid]:
                    out.extend((aid, s, e) for s, e in self.occ(aid))
        elif tag == _N_AND:
            for c in node[1]:
                self.collect(c, out)
        elif tag == _N_OR:
            for c in node[1]:
                if self.eval(c):
                    self.collect(c, out)
        elif tag == _N_NEAR:
            out.extend(self.near(node))

    def _char_maps(self, field: int, i: int) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        """Where word *i* of a field (0: title, 1: summary) came from: the start of its
        token in the original text, and the original start and end (within the token) of
        each of its folded characters. Words decompose over whitespace-delimited tokens
        (see :func:`monitor.matching.textnorm.fold_words`): the tokens' starts and running word
        counts are computed once per story and field, in C (the words of each token are
        in the memo already), and the offsets of the one token needed come from a memo."""
        got = self._maps.get(field)
        if got is None:
            text = self.title if field == 0 else self.summary
            tokens = text.split()
            lengths = list(map(len, tokens))
            if len(text) == sum(lengths) + len(tokens) - 1:  # one space between tokens
                starts = list(map(add, accumulate(lengths, initial=0), range(len(tokens))))
            else:
                starts = token_starts(text)[1]
            counts = list(accumulate(map(len, map(self.m._token_words.__getitem__, tokens))))
            got = self._maps[field] = (counts, starts, tokens)
        counts, starts, tokens = got
        k = bisect_right(counts, i)  # the token: the first whose running word count passes i
        word = self.m._token_offsets[tokens[k]][i - counts[k - 1] if k else i]
        return starts[k], word[0], word[1]

    def result(self, wl: _Watchlist, *, walk: bool = False) -> MatchResult:
        """The explanation: map every contributing occurrence back to the original text.

        Each distinct occurrence becomes a :class:`Hit` once per story (see :meth:`_hit`),
        whichever watchlists share it. *walk*: explain by walking the query tree even
        when a direct lookup could (the tests compare the two).
        """
        # ((start, end, atom), Hit): sorts by position; each atom's list is made once a story
        made: list[tuple[tuple[int, int, int], Hit]] = []
        if wl.flat is not None and not walk:
            keys, by_key = wl.flat
            tagged = self._tagged
            for kid in self.present.intersection(keys):
                for aid in by_key[kid]:
                    got = tagged.get(aid)
                    if got is None:
                        got = tagged[aid] = [
                            (one, self._made_hit(one)) for one in ((s, e, aid) for s, e in self.occ(aid))
                        ]
                    made += got
        else:
            found: list[tuple[int, int, int]] = []
            self.collect(wl.root, found)
            made = [(one, self._made_hit(one)) for one in ((s, e, aid) for aid, s, e in found)]
        if len(made) == 1:
            return MatchResult(wl.name, (made[0][1],))
        made.sort()
        # Equal hits (the same words for the same term as written) are reported once.
        return MatchResult(wl.name, tuple(dict.fromkeys([hit for _, hit in made])))

    def _made_hit(self, one: tuple[int, int, int]) -> Hit:
        """The Hit of an occurrence ``(start, end, atom)``, built once per story whichever
        watchlists share it."""
        hit = self._made.get(one)
        if hit is None:
            hit = self._made[one] = self._hit(*one)
        return hit

    def _hit(self, s: int, e: int, aid: int) -> Hit:
        """Stream span -> words (bisect) -> characters of those words -> original offsets."""
        starts = self._word_starts()
        field = 0 if s < self.tlen else 1
        first = bisect_right(starts, s) - 1
        last = bisect_right(starts, e - 1) - 1
        offset = 0 if field == 0 else len(self.tt)
        base, char_starts, char_ends = self._char_maps(field, first - offset)
        start = base + char_starts[s - starts[first]]
        if last != first:
            base, _, char_ends = self._char_maps(field, last - offset)
        end = base + char_ends[e - 1 - starts[last]]
        original = self.title if field == 0 else self.summary
        return Hit(self.m._atoms[aid].raw, _FIELD_NAMES[field], start, end, original[start:end])


# --------------------------------------------------------------------------- the matcher


def _selectivity(key: str) -> float:
    """Guess how often a key occurs (lower is rarer): longer keys and phrases are rarer,
    prefixes commoner. Stem keys stand for a family of words."""
    if key.startswith(_STEM_KEY):
        return 3.0 / max(1, len(key) - 4) ** 2
    if key.startswith(_PATTERN_KEY):
        return 1.0 / max(1, len(key) - 1) ** 2
    core = key.strip()
    nwords = 1 + core.count(" ")
    return 1.0 / (len(core) ** 2) / (1 + 2 * (nwords - 1)) * (1.0 if key.endswith(" ") else 2.0)


def _check_watchlists(watchlists: Sequence[WatchlistQuery]) -> None:
    """Unique names and known stemmers (the config checks them too, with file and line)."""
    seen: set[str] = set()
    for i, wl in enumerate(watchlists):
        if wl.name in seen:
            raise ConfigError(f"duplicate watchlist name {wl.name!r}", field=f"watchlists[{i}].name")
        seen.add(wl.name)
        for lang in wl.stem:
            if lang not in LANGUAGES:
                raise ConfigError(
                    f"watchlist {wl.name!r}: no stemmer for language {lang!r}",
                    field=f"watchlists[{i}].stem",
                    hint="known: " + ", ".join(LANGUAGES),
                )


def _compile_watchlists(watchlists: Sequence[WatchlistQuery], compiler: _Compiler, resolver: Any) -> list[_Watchlist]:
    """Parse and compile every query with one alias resolver (each alias parsed once)."""
    compiled: list[_Watchlist] = []
    for wl in watchlists:
        try:
            query = parse_with(wl.query, resolver)
        except QuerySyntaxError as exc:
            if exc.watchlist and exc.watchlist.startswith("@"):
                raise  # an error inside an alias: name the alias, not the watchlist
            raise exc.with_context(watchlist=wl.name) from None
        root = compiler.compile(query.root, -1, tuple(dict.fromkeys(wl.stem)))
        groups = compiler.needs(root)
        if not groups:  # e.g. NOT NOT x: a match still needs one of the query's keys
            groups = [frozenset(k for a in _atoms_of(root) for k in compiler.atoms[a].keys)]
        compiled.append(_Watchlist(wl.name, root, _prune(groups), _flat(root)))
    return compiled


class Matcher:
    """All watchlists compiled into one automaton; see the module docstring."""

    def __init__(self, watchlists: Sequence[WatchlistQuery], aliases: Mapping[str, str] | None = None) -> None:
        self._spec = (tuple(watchlists), dict(aliases) if aliases else None)
        if aliases:
            _validate_aliases(aliases)
        _check_watchlists(watchlists)
        stem_langs = tuple(lang for lang in LANGUAGES if any(lang in wl.stem for wl in watchlists))
        compiler = _Compiler(stem_langs)
        compiled = _compile_watchlists(watchlists, compiler, alias_resolver(aliases))
        self._names = tuple(wl.name for wl in watchlists)
        self._watchlists = tuple(compiled)
        self._by_name = {w.name: i for i, w in enumerate(compiled)}
        self._atoms = tuple(compiler.atoms)
        key_text = sorted(compiler.keys, key=compiler.keys.__getitem__)
        self._key_len = tuple(len(k) for k in key_text)
        rank = [_selectivity(text) for text in key_text]
        self._index_keys(key_text, compiler, stem_langs)
        self._index_candidates(compiled, rank)
        self._tests = _generate([cw.root for cw in compiled], rank, self._atoms)

    def _index_keys(self, key_text: Sequence[str], compiler: _Compiler, stem_langs: tuple[str, ...]) -> None:
        """Where each key is looked for in a story's words.

        Keys inside one word's window " w " go to the automaton, which runs once per
        distinct word (memoised); stem keys are looked up among the word's stems; keys
        spanning words are indexed by their first window's part (their *lead*), e.g.
        " north " for " north korea ", and checked against the next words."""
        vocab: list[dict[str, int]] = [{} for _ in stem_langs]
        self._automaton: ahocorasick.Automaton | None = None
        automaton = ahocorasick.Automaton()
        leads: dict[str, list[tuple[int, list[str], str]]] = {}
        for kid, text in enumerate(key_text):
            if text.startswith(_STEM_KEY):
                lang, _, stemmed = text[1:].partition(":")
                vocab[stem_langs.index(lang)][stemmed] = kid
            elif text.startswith(_PATTERN_KEY):
                continue  # found through their trigger (see _word_info)
            elif " " in text.strip(" "):
                cut = text.index(" ", 1 if text[0] == " " else 0) + 1
                *full, last = text[cut:].split(" ")
                leads.setdefault(text[:cut], []).append((kid, full, last))
            else:
                automaton.add_word(text, kid)
        if len(automaton):
            automaton.make_automaton()
            self._automaton = automaton
        self._leads = {lead: tuple(found) for lead, found in leads.items()}
        self._patterns = {kid: tuple(pats.items()) for kid, pats in compiler.patterns.items()}
        self._stem_vocab = tuple((_STEM_MAPS[lang], vocab[i]) for i, lang in enumerate(stem_langs))
        self._token_words = TokenWords()
        self._token_offsets = TokenOffsets()
        self._word_keys = _WordKeys(self._word_info)
        # Only a word that begins with the head of some stem key can have that stem (see
        # _stem_head): most new words are never stemmed.
        heads: dict[int, set[str]] = {}
        for v in vocab:
            for st in v:
                head = _stem_head(st)
                heads.setdefault(len(head), set()).add(head)
        self._stem_heads = tuple((n, frozenset(h)) for n, h in sorted(heads.items()))
        # Leads not starting with a space end a word: try those lengths of suffix only.
        self._lead_cuts = tuple(sorted({len(lead) for lead in self._leads if lead[0] != " "}))
        self._word_hits: dict[str, tuple[tuple[int, int], ...]] = {}
        self._word_ends: dict[str, dict[int, tuple[int, ...]]] = {}
        self._word_leads: dict[str, _Leads] = {}

    def _index_candidates(self, compiled: Sequence[_Watchlist], rank: Sequence[float]) -> None:
        """The candidate filter: each key lists the watchlists that have it in their rarest
        required group, and those that have it in their second rarest; a story's
        candidates are the watchlists listed by its keys (a set union, in C) whose second
        rarest group (if any) meets the story too. (Lists of numbers, not big-integer bit
        masks: with thousands of watchlists every OR of masks allocated a few hundred
        bytes, per present key, per story.)"""
        first: dict[int, list[int]] = {}
        second: dict[int, list[int]] = {}
        single: set[int] = set()
        seconds: list[frozenset[int]] = []
        for w, cw in enumerate(compiled):
            ordered = sorted(cw.groups, key=lambda g: (sum(rank[k] for k in g), sorted(g)))
            for kid in ordered[0]:
                first.setdefault(kid, []).append(w)
            if len(ordered) > 1:
                for kid in ordered[1]:
                    second.setdefault(kid, []).append(w)
            else:
                single.add(w)
            seconds.append(ordered[1] if len(ordered) > 1 else ordered[0])
        self._first = ({k: tuple(v) for k, v in first.items()}, frozenset(first))
        self._second = ({k: tuple(v) for k, v in second.items()}, frozenset(second), frozenset(single))
        self._seconds = tuple(seconds)

    def _word_info(self, word: str) -> tuple[tuple[int, ...], tuple[tuple[int, int], ...]]:
        """Memoise what one distinct word brings: the keys inside its window ``" w "``
        (with their end offsets in the window) and its stem keys, plus :data:`_STARTS`
        when a key spanning words may start in it."""
        window = " " + word + " "
        found = tuple(self._automaton.iter(window)) if self._automaton is not None else ()
        keys = dict.fromkeys(kid for _, kid in found) if found else {}
        if found and self._patterns:
            matched: list[tuple[int, int]] = []
            for trigger in tuple(keys):
                for kid, regex in self._patterns.get(trigger, ()):
                    mt = regex.match(word)
                    if mt is not None:
                        keys[kid] = None
                        matched.append((mt.end(), kid))  # the window offset of its last character
            found += tuple(matched)
        stemmable = False
        for n, heads in self._stem_heads:
            if word[:n] in heads:
                stemmable = True
                break
        if stemmable:
            stemmed: list[tuple[int, int]] = []
            for smap, vocab in self._stem_vocab:
                skid = vocab.get(smap[word])
                if skid is not None:
                    keys[skid] = None
                    stemmed.append((len(word), skid))  # "ends" at the word's last character
            found += tuple(stemmed)
        leads = self._leads
        starts = leads.get(window, ())
        for cut in self._lead_cuts:
            if cut < len(window):
                starts += leads.get(window[-cut:], ())
        if starts:
            keys[_STARTS] = None
        memo = self._word_keys
        if len(memo) >= memo.limit:
            memo.clear()
            memo.clears += 1
            self._word_hits.clear()
            self._word_ends.clear()
            self._word_leads.clear()
        self._word_hits[word] = found
        if starts:
            # Index the keys that may start here by the next word, when they name it whole.
            by_next: dict[str, list[tuple[int, list[str], str]]] = {}
            prefixes: list[tuple[int, str]] = []
            for kid, full, last in starts:
                if full:
                    by_next.setdefault(full[0], []).append((kid, full[1:], last))
                else:
                    prefixes.append((kid, last))
            self._word_leads[word] = ({w: tuple(v) for w, v in by_next.items()}, tuple(prefixes))
        got = memo[word] = tuple(keys)
        return got, found

    def _ends_of(self, word: str) -> dict[int, tuple[int, ...]]:
        """Key -> end offsets in the window ``" w "`` of the keys a word brings (for
        explanations; built from :meth:`_word_info`'s memo the first time a story that
        matches needs it, and cleared with it)."""
        found = self._word_hits.get(word)
        if found is None:  # the memo was cleared since the story's words were seen
            found = self._word_info(word)[1]
        got: dict[int, tuple[int, ...]] = {}
        for off, kid in found:
            got[kid] = (*got[kid], off) if kid in got else (off,)
        self._word_ends[word] = got
        return got

    def _spanning(self, ws: list[str], offset: int, clears: int) -> list[tuple[int, int, int, int]]:
        """Keys spanning words of one field: ``(first word, last word, tail, key)`` with
        word numbers over title then summary (*offset*: number of the field's first word).

        *clears*: the word memo's clear count when the story's words were looked up; if it
        was cleared since (another thread), every word is looked up again.
        """
        out: list[tuple[int, int, int, int]] = []
        word_leads = self._word_leads
        nws = len(ws)
        where: Iterator[int]
        if self._word_keys.clears == clears:
            where = compress(range(nws - 1), map(word_leads.__contains__, ws))  # in C
        else:  # cleared since: look at every word again
            where = iter(range(nws - 1))
        for i in where:
            leads = word_leads.get(ws[i])
            if leads is None:
                self._word_info(ws[i])
                leads = word_leads.get(ws[i])
                if leads is None:
                    continue
            by_next, prefixes = leads
            nxt = ws[i + 1]
            for kid, last in prefixes:  # e.g. " nord coreen" (from nord-coréen*)
                if nxt.startswith(last):
                    out.append((offset + i, offset + i + 1, len(last), kid))
            for kid, full, last in by_next.get(nxt, ()):
                n = i + 2 + len(full)
                if ws[i + 2 : n] == full and (not last or (n < nws and ws[n].startswith(last))):
                    out.append((offset + i, offset + (n if last else n - 1), len(last), kid))
        return out

    def __reduce__(self) -> _CNode:
        """Pickle as the watchlists and aliases; unpickling rebuilds (milliseconds)."""
        return (Matcher, self._spec)

    @property
    def names(self) -> tuple[str, ...]:
        """Watchlist names, in the order given."""
        return self._names

    def match(self, title: str, summary: str) -> list[MatchResult]:
        """Every watchlist the story matches, in the order the watchlists were given."""
        story = _Story(self, title, summary)
        watchlists = self._watchlists
        return [story.result(watchlists[w]) for w in self._matching(story)]

    def _matching(self, story: _Story) -> list[int]:
        """Indexes of the watchlists the story matches, ascending."""
        present = story.present
        first, first_keys = self._first
        candidates = set(chain.from_iterable(map(first.__getitem__, first_keys.intersection(present))))
        if not candidates:
            return []
        tests = self._tests
        # A candidate's second rarest group must meet the story too: checked one by one
        # when they are few, by a second union and intersection (in C) when they are many
        # (a story about Russia is a candidate of every watchlist with "Russia").
        if len(candidates) > 8:
            second, second_keys, single = self._second
            seconded = set(chain.from_iterable(map(second.__getitem__, second_keys.intersection(present))))
            return [w for w in sorted((candidates & seconded) | (candidates & single)) if tests[w](present, story)]
        seconds = self._seconds
        return [w for w in sorted(candidates) if not present.isdisjoint(seconds[w]) and tests[w](present, story)]

    def match_one(self, name: str, title: str, summary: str) -> MatchResult | None:
        """Match one watchlist by name (``KeyError`` if unknown); None when it does not match."""
        w = self._by_name[name]
        story = _Story(self, title, summary)
        if self._tests[w](story.present, story):
            return story.result(self._watchlists[w])
        return None


def _atoms_of(node: _CNode) -> list[int]:
    tag = node[0]
    if tag in (_N_KEYS, _N_ATOM):
        return [node[-1]]
    if tag == _N_ANY:
        return list(dict.fromkeys(a for aids in node[2].values() for a in aids))
    if tag == _N_NEAR:
        return [*node[1], *node[2]]
    if tag == _N_NOT:
        return _atoms_of(node[1])
    return [a for c in node[1] for a in _atoms_of(c)]


def _flat(root: _CNode) -> tuple[frozenset[int], dict[int, tuple[int, ...]]] | None:
    """Key -> atoms whose occurrences explain a match, when that does not depend on which
    branch of an OR or which side of a NEAR was true: a conjunction of keyed atoms, ORs
    of them, and NOTs (which explain nothing). None for any other shape."""
    parts = [root] if root[0] in (_N_KEYS, _N_ANY) else list(root[1]) if root[0] == _N_AND else None
    if parts is None or any(c[0] not in (_N_KEYS, _N_ANY, _N_NOT) for c in parts):
        return None
    by_key: dict[int, list[int]] = {}
    for c in parts:
        if c[0] == _N_KEYS:
            for kid in c[1]:
                by_key.setdefault(kid, []).append(c[2])
        elif c[0] == _N_ANY:
            for kid, aids in c[2].items():
                by_key.setdefault(kid, []).extend(aids)
    return frozenset(by_key), {kid: tuple(dict.fromkeys(aids)) for kid, aids in by_key.items()}


def _prune(groups: list[frozenset[int]]) -> tuple[frozenset[int], ...]:
    """Drop duplicate groups and groups implied by a smaller one (supersets)."""
    out: list[frozenset[int]] = []
    for g in sorted(set(groups), key=len):
        if not any(h <= g for h in out):
            out.append(g)
    return tuple(out)


# --------------------------------------------------------------------------- generated tests

_MAX_GENERATED_DEPTH = 60
_Test = Callable[[set[int], _Story], bool]


def _cost(node: _CNode) -> int:
    """Rough evaluation cost, to test cheap operands of AND/OR first."""
    tag = node[0]
    if tag in (_N_KEYS, _N_ANY):
        return 0
    if tag == _N_ATOM:
        return 2
    if tag == _N_NEAR:
        return 3
    if tag == _N_NOT:
        return 1 + _cost(node[1])
    return 1 + max(_cost(c) for c in node[1])


def _depth(node: _CNode) -> int:
    tag = node[0]
    if tag == _N_NOT:
        return 1 + _depth(node[1])
    if tag in (_N_AND, _N_OR):
        return 1 + max(_depth(c) for c in node[1])
    return 1


def _set_test(keys: frozenset[int], consts: list[object]) -> str:
    if len(keys) == 1:
        return f"({next(iter(keys))} in p)"
    consts.append(keys)
    return f"(not p.isdisjoint(C[{len(consts) - 1}]))"


def _expr(node: _CNode, consts: list[object], rank: Sequence[float], atoms: Sequence[_Atom]) -> str:
    """Python source of a boolean expression over ``p`` (present keys) and ``s`` (the story).

    Only integers, ``C[i]`` (a table of constants) and fixed operators appear in the
    source; no text from a query ever does.
    """
    tag = node[0]
    if tag in (_N_KEYS, _N_ANY):
        return _set_test(node[1], consts)
    if tag == _N_ATOM:
        aid: int = node[1]
        # Test the trigger keys inline first: most atoms of most candidates are absent.
        return f"({_set_test(frozenset(atoms[aid].keys), consts)} and bool(s.occ({int(aid)})))"
    if tag == _N_NEAR:
        # Both sides' keys must be present before positions are worth computing.
        left, right = (frozenset(k for a in side for k in atoms[a].keys) for side in (node[1], node[2]))
        gate = f"{_set_test(left, consts)} and {_set_test(right, consts)}"
        consts.append(node)
        return f"({gate} and bool(s.near(C[{len(consts) - 1}])))"
    if tag == _N_NOT:
        inner = node[1]
        if inner[0] in (_N_KEYS, _N_ANY):
            keys: frozenset[int] = inner[1]
            if len(keys) == 1:
                return f"({next(iter(keys))} not in p)"
            consts.append(keys)
            return f"p.isdisjoint(C[{len(consts) - 1}])"
        return f"(not {_expr(inner, consts, rank, atoms)})"

    def order(c: _CNode) -> tuple[int, float]:
        # Cheapest first; among key tests, rarest first for AND (fails fast), commonest
        # first for OR (succeeds fast).
        freq = sum(rank[k] for k in c[1]) if c[0] in (_N_KEYS, _N_ANY) else 1.0
        return (_cost(c), freq if tag == _N_AND else -freq)

    children = sorted(node[1], key=order)
    joiner = " and " if tag == _N_AND else " or "
    return "(" + joiner.join(_expr(c, consts, rank, atoms) for c in children) + ")"


def _walker(root: _CNode) -> _Test:
    def test(p: set[int], s: _Story) -> bool:
        return s.eval(root)

    return test


def _generate(roots: Sequence[_CNode], rank: Sequence[float], atoms: Sequence[_Atom]) -> list[_Test]:
    """One generated test per watchlist (the tree walker for absurdly deep queries).

    Walking tuple trees costs a Python call per node; with thousands of watchlists the
    candidates' evaluation dominated matching, and a generated ``and``/``or`` expression
    runs several times faster. (The same technique as ``dataclasses`` and ``namedtuple``.)
    """
    consts: list[object] = []
    lines: list[str] = []
    for i, root in enumerate(roots):
        if _depth(root) <= _MAX_GENERATED_DEPTH:
            lines.append(f"def w{i}(p, s):\n    return {_expr(root, consts, rank, atoms)}\n")
    namespace: dict[str, Any] = {"C": tuple(consts)}
    exec(compile("\n".join(lines), "<watchlists>", "exec"), namespace)
    return [namespace.get(f"w{i}") or _walker(root) for i, root in enumerate(roots)]


def compile_query(query: str, aliases: Mapping[str, str] | None = None, stem: Sequence[str] = ()) -> Matcher:
    """A one-off Matcher with a single watchlist named ``"query"`` (``watchlist test --query``)."""
    return Matcher([WatchlistQuery("query", query, tuple(stem))], aliases)
