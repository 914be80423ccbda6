"""Match stories against many watchlists at once, and explain every match (pure).

How it stays fast with thousands of watchlists:

* A story's title and summary are folded and split into words (:mod:`monitor.textnorm`)
  and re-joined as one *word stream*: ``" w1 w2 … \\n s1 s2 … "`` (title words, a newline,
  summary words; single spaces between words and at both ends of each field).
* Every term of every watchlist becomes a key of ONE Aho-Corasick automaton over that
  stream. Spaces make word boundaries free: the term ``Kursk`` is the key
  ``" kursk "`` and cannot match inside ``kurskaya``; the wildcard ``Kursk*`` is
  ``" kursk"``; the phrase ``"North Korea"`` is ``" north korea "``. One pass of the
  automaton finds every term of every watchlist (``automaton.iter``, in C).
* Stemmed terms (watchlists with ``stem:``) are not in the automaton: for each stemming
  language in use, the story's words are mapped to their stems through a memo dict and
  intersected with the set of all stemmed terms (``map`` and ``set.intersection``, in C).
* A ``?`` wildcard gets a key for its longest literal piece (the *trigger*); only when
  the trigger occurs is the pattern tried on the word it landed in.
* From each query the compiler derives *required key groups*: sets of keys of which at
  least one must be present for the query to be true (each AND operand gives one; NOT
  gives none). Each watchlist is a bit in two big-integer masks per key, for its
  rarest and second rarest group; OR-ing the masks of a story's keys and AND-ing the two
  results (in C) leaves the few watchlists worth evaluating. This is sound because
  :func:`monitor.query.parse_query` rejects queries that are true on a story without any
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
under a NOT, and for NEAR only the occurrences that were near each other. The maps back
to the original text are built only for stories that match, and shared by all the
watchlists that match the same story.

A :class:`Matcher` is immutable after construction and builds 200 watchlists in about
0.1 s; it pickles as its watchlists and aliases and rebuilds on unpickling, so the
daemon can simply build a new one on config reload.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import reduce
from operator import itemgetter, or_
from typing import Any

import ahocorasick

from monitor.errors import ConfigError, QuerySyntaxError
from monitor.query import AliasRef, And, Field, Near, Node, Not, Or, Term, alias_resolver, parse_with
from monitor.query import validate_aliases as _validate_aliases
from monitor.stemming import LANGUAGES, stem
from monitor.textnorm import extend_word_starts, fold, fold_offsets, is_hangul, words

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
# its first word is a trigger); a key is only a trigger, confirmed by a regex ('?').
_KEY, _STEM, _REGEX = 0, 1, 2
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


@dataclass(frozen=True, slots=True)
class _Atom:
    raw: str
    field: int  # -1: any field; 0: title; 1: summary
    kind: int
    keys: tuple[int, ...]  # _KEY: one key; _STEM: one per language; _REGEX: the trigger
    nwords: int = 1
    tail: int = _TAIL_EXACT
    stems: tuple[tuple[int, tuple[str, ...]], ...] = ()  # _STEM: (language index, stems of the words)
    regex: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class _Watchlist:
    name: str
    root: _CNode
    groups: tuple[frozenset[int], ...]


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


class _Compiler:
    """Turns parsed queries into atoms, automaton keys and tuple trees."""

    def __init__(self, langs: tuple[str, ...]) -> None:
        self.langs = langs  # stemming languages of all watchlists, in a fixed order
        self.keys: dict[str, int] = {}  # automaton keys, and _STEM_KEY + "<lang>:<stem>" keys
        self.atoms: list[_Atom] = []
        self.atom_ids: dict[_CNode, int] = {}

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
        # '?' wildcards: a one-word pattern is tried on the word each trigger lands in
        # (cheap); a longer one by a regex over the whole stream (rare).
        return _Atom(term.raw, field, _REGEX, (self.key(_trigger_of(ws)),), n, regex=_regex_of(ws))

    def compile(self, node: Node, field: int, langs: tuple[str, ...]) -> _CNode:
        if isinstance(node, Term):
            aid = self.atom(node, field, langs)
            atom = self.atoms[aid]
            if field == -1 and (atom.kind == _KEY or (atom.kind == _STEM and atom.nwords == 1)):
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
        "tf",
        "sf",
        "tt",
        "st",
        "stream",
        "tlen",
        "hits",
        "present",
        "_by_kid",
        "_asked",
        "_occ",
        "_starts",
        "_maps",
        "_stems",
        "_near",
        "_hits",
    )

    def __init__(self, m: Matcher, title: str, summary: str) -> None:
        self.m = m
        self.title = title
        self.summary = summary
        self.tf = tf = fold(title)
        self.sf = sf = fold(summary)
        self.tt = tt = words(tf)
        self.st = st = words(sf)
        ts = " " + " ".join(tt) + " "
        self.tlen = len(ts)
        self.stream = stream = ts + "\n " + " ".join(st) + " "
        automaton = m._automaton
        self.hits: list[tuple[int, int]] = list(automaton.iter(stream)) if automaton is not None else []
        self.present: set[int] = set(map(itemgetter(1), self.hits))
        if m._stem_vocab:
            all_words = tt + st
            for smap, vocab, stems in m._stem_vocab:
                found = stems.intersection(map(smap.__getitem__, all_words))
                if found:
                    self.present.update(map(vocab.__getitem__, found))
        self._stems: dict[int, list[str]] = {}
        self._near: dict[int, list[tuple[int, int, int]]] = {}
        self._hits: dict[tuple[int, int, int], Hit] = {}
        self._by_kid: dict[int, list[int]] | None = None
        self._asked = 0
        self._occ: dict[int, list[tuple[int, int]]] = {}
        self._starts: list[int] | None = None
        self._maps: dict[int, tuple[list[int], Sequence[int], Sequence[int]]] = {}

    # ---- occurrences, in exact-stream coordinates: (start, end) of the matched words

    def ends(self, kid: int) -> list[int]:
        """End positions of every occurrence of key *kid*.

        The first two requests of a story filter the hit list directly (the evaluation
        of candidates usually needs one or two); later ones share a dictionary.
        """
        by_kid = self._by_kid
        if by_kid is None:
            self._asked += 1
            if self._asked <= 2:
                return [end for end, k in self.hits if k == kid]
            by_kid = self._by_kid = {}
            for end, k in self.hits:
                by_kid.setdefault(k, []).append(end)
        return by_kid.get(kid, [])

    def occ(self, aid: int) -> list[tuple[int, int]]:
        got = self._occ.get(aid)
        if got is not None:
            return got
        atom = self.m._atoms[aid]
        out: list[tuple[int, int]] = []
        present = self.present
        if not present.isdisjoint(atom.keys):
            stream = self.stream
            key_len = self.m._key_len
            if atom.kind == _KEY:
                kid = atom.keys[0]
                klen = key_len[kid]
                tail = atom.tail
                for end in self.ends(kid):
                    if tail == _TAIL_EXACT:
                        e = end
                    elif tail == _TAIL_WORD:
                        e = stream.find(" ", end + 1)
                    else:
                        e = end + 1
                    out.append((end - klen + 2, e))
            elif atom.kind == _STEM:
                out = self._stemmed(atom)
            else:
                assert atom.regex is not None
                if atom.nwords == 1:
                    out = self._one_word_pattern(atom)
                else:
                    out.extend(mt.span() for mt in atom.regex.finditer(stream))
            if atom.field == 0:
                out = [o for o in out if o[0] < self.tlen]
            elif atom.field == 1:
                out = [o for o in out if o[0] > self.tlen]
        self._occ[aid] = out
        return out

    def _one_word_pattern(self, atom: _Atom) -> list[tuple[int, int]]:
        """Occurrences of a one-word wildcard pattern: try it on each word a trigger hit."""
        assert atom.regex is not None
        stream = self.stream
        kid = atom.keys[0]
        klen = self.m._key_len[kid]
        inner = klen - 1 if self.m._key_closed[kid] else klen  # chars of the key inside the word
        found: set[tuple[int, int]] = set()
        for end in self.ends(kid):
            pos = end - (klen - inner)  # a character of the word
            start = stream.rfind(" ", 0, pos) + 1
            stop = stream.find(" ", pos)
            m = atom.regex.match(stream, start, stop)
            if m is not None:
                found.add(m.span())
        return sorted(found)

    def _word_starts(self) -> list[int]:
        starts = self._starts
        if starts is None:
            starts = []
            p = 1
            for w in self.tt:
                starts.append(p)
                p += len(w) + 1
            p = self.tlen + 2  # past the title, its newline and the summary's first space
            for w in self.st:
                starts.append(p)
                p += len(w) + 1
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
                stems = self._stems[li] = list(map(smap.__getitem__, tt + st))
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

    def _field_maps(self, field: int, upto: int) -> tuple[list[int], Sequence[int], Sequence[int]]:
        """(folded start of each word, known at least up to word *upto*; original offsets
        of each folded character) for one field. Word starts are found on demand: hits
        are usually early in a story, and the summary is long."""
        got = self._maps.get(field)
        folded, ws = (self.tf, self.tt) if field == 0 else (self.sf, self.st)
        if got is None:
            starts, ends = fold_offsets(self.title if field == 0 else self.summary, folded)
            got = self._maps[field] = ([], starts, ends)
        if len(got[0]) <= upto:
            extend_word_starts(folded, ws, got[0], upto)
        return got

    def result(self, wl: _Watchlist) -> MatchResult:
        """The explanation: map every contributing occurrence back to the original text.

        Stream position -> word (bisect) -> folded offset (word spans) -> original
        offset (fold offsets); the maps are built once per story and field.
        """
        occs: list[tuple[int, int, int]] = []
        self.collect(wl.root, occs)
        made = self._hits  # watchlists share terms: build each Hit once per story
        hits: dict[Hit, None] = {}
        for occ in sorted(set(occs), key=_by_position):
            got = made.get(occ)
            if got is None:
                got = made[occ] = self._hit(*occ)
            hits[got] = None
        return MatchResult(wl.name, tuple(hits))

    def _hit(self, aid: int, s: int, e: int) -> Hit:
        starts = self._word_starts()
        field = 0 if s < self.tlen else 1
        first = bisect_right(starts, s) - 1
        last = bisect_right(starts, e - 1) - 1
        offset = 0 if field == 0 else len(self.tt)
        folded_starts, ostarts, oends = self._field_maps(field, last - offset)
        start = ostarts[folded_starts[first - offset] + (s - starts[first])]
        end = oends[folded_starts[last - offset] + (e - starts[last]) - 1]
        original = self.title if field == 0 else self.summary
        return Hit(self.m._atoms[aid].raw, _FIELD_NAMES[field], start, end, original[start:end])


def _by_position(occ: tuple[int, int, int]) -> tuple[int, int, int]:
    return (occ[1], occ[2], occ[0])


# --------------------------------------------------------------------------- the matcher


def _selectivity(key: str) -> float:
    """Guess how often a key occurs (lower is rarer): longer keys and phrases are rarer,
    prefixes commoner. Stem keys stand for a family of words."""
    if key.startswith(_STEM_KEY):
        return 3.0 / max(1, len(key) - 4) ** 2
    core = key.strip()
    nwords = 1 + core.count(" ")
    return 1.0 / (len(core) ** 2) / (1 + 2 * (nwords - 1)) * (1.0 if key.endswith(" ") else 2.0)


class Matcher:
    """All watchlists compiled into one automaton; see the module docstring."""

    def __init__(self, watchlists: Sequence[WatchlistQuery], aliases: Mapping[str, str] | None = None) -> None:
        self._spec = (tuple(watchlists), dict(aliases) if aliases else None)
        if aliases:
            _validate_aliases(aliases)
        resolver = alias_resolver(aliases)
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
        stem_langs = tuple(lang for lang in LANGUAGES if any(lang in wl.stem for wl in watchlists))
        compiler = _Compiler(stem_langs)
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
            compiled.append(_Watchlist(wl.name, root, _prune(groups)))
        self._names = tuple(wl.name for wl in watchlists)
        self._watchlists = tuple(compiled)
        self._by_name = {w.name: i for i, w in enumerate(compiled)}
        self._atoms = tuple(compiler.atoms)
        key_text = sorted(compiler.keys, key=compiler.keys.__getitem__)
        self._key_len = tuple(len(k) for k in key_text)
        self._key_closed = tuple(k.endswith(" ") for k in key_text)
        # Stem keys are looked up among the stems of the story's words (a set
        # intersection, in C); every other key goes to the automaton.
        vocab: list[dict[str, int]] = [{} for _ in stem_langs]
        self._automaton: ahocorasick.Automaton | None = None
        automaton = ahocorasick.Automaton()
        for kid, text in enumerate(key_text):
            if not text.startswith(_STEM_KEY):
                automaton.add_word(text, kid)
            else:
                lang, _, stemmed = text[1:].partition(":")
                vocab[stem_langs.index(lang)][stemmed] = kid
        if len(automaton):
            automaton.make_automaton()
            self._automaton = automaton
        self._stem_vocab = tuple((_STEM_MAPS[lang], vocab[i], frozenset(vocab[i])) for i, lang in enumerate(stem_langs))
        # Candidate filter: watchlist w is bit w of two masks per key. A story's candidates
        # are the watchlists with a present key in their rarest required group AND (if
        # they have one) in their second rarest; big-int ORs and one AND do that in C.
        rank = [_selectivity(text) for text in key_text]
        first: dict[int, int] = {}
        second: dict[int, int] = {}
        single = 0
        for w, cw in enumerate(compiled):
            bit = 1 << w
            ordered = sorted(cw.groups, key=lambda g: (sum(rank[k] for k in g), sorted(g)))
            for kid in ordered[0]:
                first[kid] = first.get(kid, 0) | bit
            if len(ordered) > 1:
                for kid in ordered[1]:
                    second[kid] = second.get(kid, 0) | bit
            else:
                single |= bit
        self._first = (first, frozenset(first))
        self._second = (second, frozenset(second), single)
        self._tests = _generate([cw.root for cw in compiled], rank, self._atoms)

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
        candidates = reduce(or_, map(first.__getitem__, first_keys.intersection(present)), 0)
        if not candidates:
            return []
        second, second_keys, single = self._second
        candidates &= reduce(or_, map(second.__getitem__, second_keys.intersection(present)), single)
        tests = self._tests
        out: list[int] = []
        while candidates:  # lowest bit first: watchlists in the order given
            low = candidates & -candidates
            candidates ^= low
            w = low.bit_length() - 1
            if tests[w](present, story):
                out.append(w)
        return out

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
