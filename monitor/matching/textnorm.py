"""Text folding and tokenisation shared by the query parser and the matcher (pure).

Queries and stories go through the *same* two steps, so a query term and a story
word compare equal exactly when an analyst would expect them to:

1. :func:`fold` normalises a string: Unicode compatibility forms are unified (NFKC:
   ``ﬁ`` -> ``fi``, full-width ``Ｋ`` -> ``K``, no-break spaces -> spaces), case is
   folded (``KOURSK`` -> ``koursk``, ``Курск`` -> ``курск``, ``ß`` -> ``ss``), accents are
   removed from *Latin* letters (``Corée`` -> ``coree``, ``Koursk`` stays); on Cyrillic
   and Greek letters only stress marks go (acute and grave: ``сло́во`` -> ``слово``,
   ``Ελλάδα`` -> ``ελλαδα``), since ``й`` and ``ї`` are letters of their own, not
   accented ``и`` and ``і``; Russian ``ё`` becomes ``е``, as Russian writing itself
   allows. The ligatures ``œ æ`` become ``oe ae`` and ``ø đ ł ı ð þ`` their plain
   letters, every apostrophe (``’ ‘ ʼ ʻ ′ ` ＇``) becomes ``'``, every dash
   (``‐ ‑ ‒ – — ― − ﹣ －``) becomes ``-``, every double quote (``“ ” „ « » ‹ ›``)
   becomes ``"``, and soft hyphens and zero-width joiners-of-nothing vanish. Hangul
   stays Hangul. (Unifying punctuation also keeps most folded Latin text pure ASCII,
   which :func:`words` splits several times faster.)

2. :func:`words` splits folded text into words: maximal runs of letters, digits and
   combining marks. Everything else (spaces, punctuation, dashes, apostrophes) separates
   words, so ``nord-coréen``, ``nord coréen`` and ``nord–coréen`` are all the two words
   ``nord coreen``. Around apostrophes two rules apply: French elided articles and
   pronouns (``l' d' j' m' n' s' t' c' qu' jusqu' lorsqu' puisqu' quoiqu'``) in front
   of a word are dropped, so ``l’OTAN`` is the single word ``otan``; an English
   possessive ``'s`` at the end of a word is dropped, so ``Russia's`` is ``russia``.
   Any other apostrophe just separates (``aujourd'hui`` -> ``aujourd hui``).

Offsets: matching runs on folded words, but explanations must point into the original
title or summary. :func:`fold_with_offsets` gives, for every folded character, the
span of original characters it came from, and :func:`word_spans` gives the folded span
of every word; :func:`tokenize` combines both into :class:`Token` objects whose
``start``/``end`` index the original string (``text[t.start:t.end]`` is the word as
published, e.g. ``OTAN`` inside ``l’OTAN``).

Speed matters here (every story of every feed goes through it), so :func:`fold` and
:func:`words` run whole-string C-level operations (``lower``/``translate``/``split``
for ASCII; NFKD, casefold, a regular-expression pass and NFC otherwise). Only the
explanation path, which runs for the few stories that match, looks at single
characters, and then only at the few that do not fold one to one (``œ``, ``ß``, ``…``).

The matcher's :func:`fold_words` has three paths: pure ASCII without apostrophes
(``lower``/``translate``/``split``); text whose other characters are among 128 common
Latin letters and typographic marks that each fold to ASCII on their own (``é ü ß ’ “
— …`` and no-break spaces; see ``_folds_alone``), through ``codecs.charmap_encode`` (one
byte each), ``bytes.translate`` and ``split``, with the apostrophe rules applied per
apostrophe of the text; and the rest (Cyrillic, Arabic script, CJK, Hangul, combining
marks...) token by token through the memo. Measured cost behind the decision
(``bench/fold_words.py``: ``bench/match.py``'s 40,000 texts, warm memos, CPU medians,
old and new interleaved in one process, a shared 2-core machine under load 4-7): before,
half the texts were Latin text with a curly apostrophe or an accent and went token by
token (split, a dict lookup per token, ``chain``): ~6-8 µs for 217 characters; the
charmap path takes 0.58x that; the ASCII and memo paths are unchanged (1.00-1.07x: a
failed encode costs ~0.5 µs); all texts 0.76x. The whole matcher, old and new
``fold_words`` in alternate rounds (``--matcher``): 0.93x a story at 200 watchlists
(62 -> 55 µs) and at 2,000 (154 -> 142 µs). A ``str.translate`` with a cached
per-character table was slower than the memo (7 µs: a dict lookup per character), a
Python loop over the chunks to apply the apostrophe rules cost 3 µs a text, and the
charmap leaves a byte for only 128 characters: Latin-1 first, then punctuation, then
the commonest Central European letters.
"""

from __future__ import annotations

import codecs
import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate, chain

__all__ = [
    "ELISIONS",
    "Token",
    "TokenOffsets",
    "TokenWords",
    "WordMaps",
    "fold",
    "fold_offsets",
    "fold_words",
    "fold_with_offsets",
    "extend_word_starts",
    "next_word",
    "is_hangul",
    "pattern_words",
    "token_starts",
    "tokenize",
    "word_spans",
    "words",
]

#: French elided words: dropped when written in front of another word with an apostrophe.
ELISIONS: frozenset[str] = frozenset(
    {"l", "d", "j", "m", "n", "s", "t", "c", "qu", "jusqu", "lorsqu", "puisqu", "quoiqu"}
)

# Characters that survive NFKD + casefold + NFC but must still change. Apostrophes and
# dashes are unified so that fold() output is predictable for callers (and the word
# splitter only has to know "'"), letters without a canonical decomposition get their
# usual plain spelling, and invisible characters go away.
_APOSTROPHES = "\u2019\u2018\u201b\u02bc\u02bb\u2032`"
_DASHES = "\u2010\u2012\u2013\u2014\u2015\u2212\u2043\u2e3a\u2e3b\u058a\u05be"
_QUOTES = "\u201c\u201d\u201e\u201f\u00ab\u00bb\u2039\u203a\u201a"
_SPECIAL: dict[str, str] = {c: "'" for c in _APOSTROPHES}
_SPECIAL.update({c: "-" for c in _DASHES})
_SPECIAL.update({c: '"' for c in _QUOTES})
_SPECIAL.update(
    {
        "\u0153": "oe",  # œ
        "\u00e6": "ae",  # æ
        "\u00f8": "o",  # ø
        "\u0111": "d",  # đ
        "\u0142": "l",  # ł
        "\u0131": "i",  # ı (dotless i)
        "\u00f0": "d",  # ð
        "\u00fe": "th",  # þ
        "\u0451": "\u0435",  # ё -> е
        "\u00ad": "",  # soft hyphen: an invisible line-break hint inside a word
        "\u200b": " ",  # zero-width space: a word break that is not shown
        "\u2060": "",  # word joiner
        "\ufeff": "",  # byte-order mark / zero-width no-break space
    }
)
_SPECIAL_RE = re.compile("[" + re.escape("".join(_SPECIAL)) + "]")
# Combining diacritical marks: removed from Latin letters. The fast path removes all of
# them, which is right as long as the text has no Greek or Cyrillic letter; otherwise the
# slower expression keeps the marks that sit on those letters (й, ї), stress marks aside.
_MARKS_RE = re.compile("[\u0300-\u036f]+")
_STRESS_RE = re.compile("[\u0300\u0301]+")
_GREEK_CYRILLIC_RE = re.compile("[\u0370-\u03ff\u0400-\u052f\u1f00-\u1fff\u2de0-\u2dff\ua640-\ua69f]")
_MARKS_NOT_ON_GREEK_CYRILLIC_RE = re.compile(
    "(?<![\u0370-\u03ff\u0400-\u052f\u1f00-\u1fff\u2de0-\u2dff\ua640-\ua69f])[\u0300-\u036f]+"
)


def _special(m: re.Match[str]) -> str:
    return _SPECIAL[m.group()]


def fold(text: str) -> str:
    """Fold *text* for matching: NFKC, casefold, Latin accents off, one apostrophe, one dash.

    See the module docstring for the exact rules. ``fold`` is idempotent, and it is
    the only normalisation used on both sides of a match, so a query and a story can
    never disagree about what a word is.
    """
    if text.isascii():
        folded = text.lower()
        return folded.replace("`", "'") if "`" in folded else folded
    t = unicodedata.normalize("NFKD", text).casefold()
    if _GREEK_CYRILLIC_RE.search(t) is None:
        t = _MARKS_RE.sub("", t)
    else:
        t = _STRESS_RE.sub("", _MARKS_NOT_ON_GREEK_CYRILLIC_RE.sub("", t))
    t = unicodedata.normalize("NFC", t)
    if not t.isascii() or "`" in t:  # a grave accent is an apostrophe even in "café`s"
        t = _SPECIAL_RE.sub(_special, t)
    return t


def _mark_ranges() -> str:
    """Character-class ranges of the combining marks of the BMP.

    ``\\w`` in Python excludes combining marks, which would cut Hindi, Thai or Arabic
    words at every vowel sign, and Russian words at a stress mark (Latin diacritics are
    gone after :func:`fold`, those on Cyrillic and Greek letters stay). The BMP only:
    scanning all of Unicode would cost 0.2 s at import.
    """
    ranges: list[tuple[int, int]] = []
    for cp in (*range(0x0300, 0xD800), *range(0xF900, 0x10000)):
        if unicodedata.category(chr(cp)) in ("Mn", "Mc", "Me"):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1] = (ranges[-1][0], cp)
            else:
                ranges.append((cp, cp))
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


_MARKS_CLASS = _mark_ranges()
_WORD_RE = re.compile(rf"[\w{_MARKS_CLASS}]+")
_WORD_CHAR_RE = re.compile(rf"[\w{_MARKS_CLASS}]")
_WORD_APOS_RE = re.compile(rf"[\w{_MARKS_CLASS}']+")
# Query patterns: like words, plus the wildcards '?' (one character) and '*' (suffix).
_PATTERN_RE = re.compile(rf"[\w{_MARKS_CLASS}'?*]+")


def _split_apostrophes(chunk: str) -> list[tuple[int, str]]:
    """Words of a chunk that contains apostrophes, with their offsets in the chunk.

    Elided French words in front of a word are dropped (``l'otan`` -> ``otan``), as is
    an English possessive ``'s`` at the end (``russia's`` -> ``russia``).
    """
    parts = chunk.split("'")
    out: list[tuple[int, str]] = []
    pos = 0
    last = len(parts) - 1
    for i, part in enumerate(parts):
        if part:
            elided = i < last and part in ELISIONS and parts[i + 1] != ""
            possessive = i == last and i > 0 and part == "s" and parts[i - 1] != ""
            if not (elided or possessive):
                out.append((pos, part))
        pos += len(part) + 1
    return out


# ASCII fast path of words(): in ASCII, "[\w']+" is exactly "letters, digits, '_' and
# the apostrophe", so mapping every other character to a space and splitting on
# whitespace gives the same chunks as the regular expression, four times faster
# (str.translate has an ASCII-to-ASCII fast path; the regex engine costs ~30 ns a char).
_ASCII_WORDS = str.maketrans({chr(i): (chr(i) if chr(i).isalnum() or chr(i) in "_'" else " ") for i in range(128)})


def words(folded: str) -> list[str]:
    """The words of already-folded text, in order (see the module docstring)."""
    if folded.isascii():
        chunks = folded.translate(_ASCII_WORDS).split()
        if "'" not in folded:
            return chunks
        out: list[str] = []
        for chunk in chunks:
            if "'" in chunk:
                out.extend(w for _, w in _split_apostrophes(chunk))
            else:
                out.append(chunk)
        return out
    if "'" not in folded:
        return _WORD_RE.findall(folded)
    out = []
    for chunk in _WORD_APOS_RE.findall(folded):
        if "'" in chunk:
            out.extend(w for _, w in _split_apostrophes(chunk))
        else:
            out.append(chunk)
    return out


class TokenWords(dict[str, tuple[str, ...]]):
    """Memo for :func:`fold_words`: whitespace-delimited token -> ``tuple(words(fold(token)))``.

    Bounded (cleared when full) so that a long-running daemon's memory stays flat;
    news vocabulary is Zipfian, so a warm memo answers almost every token of a story.
    Each :class:`~monitor.matching.matcher.Matcher` owns one, freed with it on reload.
    """

    def __init__(self, limit: int = 200_000) -> None:
        super().__init__()
        self.limit = limit

    def __missing__(self, token: str) -> tuple[str, ...]:
        if len(self) >= self.limit:
            self.clear()
        got = self[token] = tuple(words(fold(token)))
        return got


#: Per word of a token: where each folded character of the word came from in the token
#: (start offsets, end offsets), as :func:`fold_with_offsets` says.
WordMaps = tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]


class TokenOffsets(dict[str, WordMaps]):
    """Memo: whitespace-delimited token -> :data:`WordMaps` of its words (explanations).

    Offsets decompose over whitespace like the words do (see :func:`fold_words`), so a
    word's original offsets are its token's start plus the offsets within the token.
    """

    def __init__(self, limit: int = 200_000) -> None:
        super().__init__()
        self.limit = limit

    def __missing__(self, token: str) -> WordMaps:
        if len(self) >= self.limit:
            self.clear()
        folded, starts, ends = fold_with_offsets(token)
        got = self[token] = tuple((tuple(starts[a:b]), tuple(ends[a:b])) for a, b in word_spans(folded, words(folded)))
        return got


_TOKENS_RE = re.compile(r"(\S+)")


def token_starts(text: str) -> tuple[list[str], list[int]]:
    """The ``str.split()`` tokens of *text* and where each starts (all in C: one regular
    expression split, then running sums of the pieces' lengths)."""
    parts = _TOKENS_RE.split(text)
    ends = list(accumulate(map(len, parts)))
    return parts[1::2], ends[0::2][: len(parts) // 2]


# Fast path of fold_words() for text that is ASCII but for common Latin letters and
# typographic punctuation (French, German, Portuguese, English with curly quotes...).
# Each such character folds on its own to ASCII, whatever surrounds it (see
# _folds_alone), so fold(text) is the concatenation of the folds of its characters and
# words(fold(text)) can be computed with whole-string C operations: an encoding through
# a charmap (each accepted character -> one byte of its own), a bytes.translate that
# maps every byte to its folded, lower-case ASCII letter or digit, "'" or a space, and
# a split. A text with any other character makes the encoding fail at that character,
# and takes the memo path.
_LATIN_CANDIDATES = (
    [chr(i) for i in range(0xA0, 0x100)]
    + list("\u2019\u2018\u201c\u201d\u2013\u2014\u2026\u201a\u201e\u2039\u203a\u2032\u2033\u201b\u201f")
    + list("\u2010\u2011\u2012\u2015\u2212\u202f\u2009\u200a\u2002\u2003\u2007\u2008\u2002\u2004\u2005\u2006")
    + list("\u0161\u0160\u017e\u017d\u010d\u010c\u0107\u0106\u0142\u0141\u0119\u0105\u015b\u017c\u017a\u0144")
    + list("\u0159\u011b\u016f\u0131\u0130\u011f\u015f\u015e\u0151\u0171\u0103\u0219\u021b\u0218\u021a")
    + [chr(i) for i in range(0x100, 0x180)]
)


def _folds_alone(c: str) -> bool:
    """True if *c* folds to ASCII whatever surrounds it: it is no combining mark and its
    NFKD does not start with one (so nothing reorders or composes across it), and its
    fold is ASCII (so no Greek or Cyrillic letter, whose presence changes how marks are
    removed, comes out of it; and NFC has nothing left to compose)."""
    decomposed = unicodedata.normalize("NFKD", c)
    return (
        not c.isascii()
        and unicodedata.combining(c) == 0
        and unicodedata.combining(decomposed[0]) == 0
        and fold(c).isascii()
    )


def _latin_accepted() -> str:
    """The characters of the Latin fast path: the first 128 candidates that fold alone.

    A charmap gives every character a byte of its own, and there are 128 bytes above
    ASCII; each must be taken, since a byte left free would decode to some character
    that a text could bring."""
    accepted = "".join(dict.fromkeys(c for c in _LATIN_CANDIDATES if _folds_alone(c)))[:128]
    if len(accepted) != 128:
        raise AssertionError(f"only {len(accepted)} characters for the 128 bytes of the charmap")
    return accepted


def _latin_words(accepted: str) -> tuple[bytes, tuple[tuple[bytes, bytes], ...]]:
    """(bytes.translate table, multi-character folds) of the Latin fast path.

    The table maps ASCII as the ASCII path of words() sees fold(text) (letters and
    digits lower-cased, ``_`` and ``'`` kept, a backtick is an apostrophe, the rest a
    space) and each accepted character's byte to its fold, mapped the same way; the few
    whose fold is not one character (``ß``, ``æ``, ``…``, soft hyphen) keep their byte
    and are replaced afterwards."""
    table = bytearray(ord(c) for c in fold("".join(map(chr, range(128)))).translate(_ASCII_WORDS))
    multi: list[tuple[bytes, bytes]] = []
    for i, c in enumerate(accepted, start=128):
        f = fold(c).translate(_ASCII_WORDS)
        if len(f) == 1:
            table.append(ord(f))
        else:
            table.append(i)
            multi.append((bytes([i]), f.encode("ascii")))
    return bytes(table), tuple(multi)


_LATIN_ACCEPTED = _latin_accepted()
_LATIN_CHARMAP = codecs.charmap_build("".join(map(chr, range(128))) + _LATIN_ACCEPTED)
_LATIN_WORDS, _LATIN_MULTI = _latin_words(_LATIN_ACCEPTED)
_charmap_encode = codecs.charmap_encode


def fold_words(text: str, memo: TokenWords) -> list[str]:
    """``words(fold(text))``, computed token by token through *memo* (the matcher's hot path).

    Folding and splitting whole stories cost more than everything else the matcher does
    per story (NFKD, casefold, NFC and regular-expression passes over every character of
    mostly non-ASCII text). They decompose over whitespace: no rule of :func:`fold` or
    :func:`words` looks across a whitespace character (nothing composes with a space,
    case folding has no context, and words never contain whitespace), so the words of a
    text are the words of its ``str.split()`` tokens, in order, and each distinct token
    is folded once. ``tests/test_textnorm.py`` checks the equivalence on random text made
    of the awkward characters. Pure-ASCII text without apostrophes takes the direct path,
    which is faster still; so does text whose other characters are common Latin letters
    and typographic punctuation (through a charmap, see ``_latin_words``).
    """
    if text.isascii():
        if "'" not in text and "`" not in text:
            return text.lower().translate(_ASCII_WORDS).split()
        data = text.encode("ascii").translate(_LATIN_WORDS)
    else:
        try:
            data = _charmap_encode(text, "strict", _LATIN_CHARMAP)[0].translate(_LATIN_WORDS)
        except UnicodeEncodeError:  # a character outside the table: fold token by token
            return list(chain.from_iterable(map(memo.__getitem__, text.split())))
    if not data.isascii():
        for byte, folded in _LATIN_MULTI:
            data = data.replace(byte, folded)
    if b"'" in data:
        data = _drop_apostrophe_fragments(data)
    return data.decode("ascii").split()


_ELISIONS_BYTES = frozenset(e.encode("ascii") for e in ELISIONS)


def _drop_apostrophe_fragments(data: bytes) -> bytes:
    """*data* (folded ASCII mapped as words() sees it: word characters, ``'`` and spaces)
    with the fragments words() drops around apostrophes removed and every apostrophe made
    a space: the rules of :func:`_split_apostrophes`, applied at each apostrophe of the
    whole text rather than to each chunk of it (a text has a few apostrophes, and dozens
    of chunks: a Python loop over the chunks cost more than the rest of the fast path).

    Between pieces ``left'right``: the last word of *left* is an elided article if it is
    one of ELISIONS (it is a whole part: a space, an apostrophe or the start is before
    it) and *right* starts with a word character; the first character of *right* is a
    possessive ``s`` if it ends its chunk and *left* ends with a word character.
    """
    pieces = data.split(b"'")
    last = len(pieces) - 1
    starts = [0] * len(pieces)
    ends = [len(p) for p in pieces]
    for k in range(last):
        left, right = pieces[k], pieces[k + 1]
        if right[:1] not in (b"", b" "):
            tail = left.rpartition(b" ")[2]
            if tail in _ELISIONS_BYTES:
                ends[k] -= len(tail)
        ends_chunk = right[1:2] == b" " or (len(right) == 1 and k + 1 == last)
        if right[:1] == b"s" and ends_chunk and left[-1:] not in (b"", b" "):
            starts[k + 1] = 1
    return b" ".join([p[a:b] for p, a, b in zip(pieces, starts, ends, strict=True)])


def next_word(folded: str, word: str, pos: int) -> int:
    """Where the next word of :func:`words` starts, given that it is *word* and that
    the previous one ended at *pos* (faster than a second regular-expression pass).

    Between two words lie only non-word characters and the fragments words() drops
    around apostrophes (``l'``, ``'s``). So the answer is the first occurrence of *word*
    from *pos* on that stands alone (no word character on either side) and is not such
    a fragment itself.
    """
    find = folded.find
    is_word_char = _WORD_CHAR_RE.match
    n = len(folded)
    i = find(word, pos)
    while i >= 0:
        end = i + len(word)
        alone = (i == 0 or not is_word_char(folded, i - 1)) and (end == n or not is_word_char(folded, end))
        if alone and "'" in folded:
            elided = (
                word in ELISIONS and end + 1 < n and folded[end] == "'" and is_word_char(folded, end + 1) is not None
            )
            possessive = (
                word == "s"
                and i >= 2
                and folded[i - 1] == "'"
                and is_word_char(folded, i - 2) is not None
                and (end == n or folded[end] != "'")
            )
            alone = not (elided or possessive)
        if alone:
            return i
        i = find(word, i + 1)
    raise ValueError(f"{word!r} is not a word of the text after position {pos}")


# Every substring of a fragment that words() drops around apostrophes: only such a word
# can be mistaken for a dropped fragment by a plain str.find.
_DROPPED_PARTS = frozenset(e[i:j] for e in (*ELISIONS, "s") for i in range(len(e)) for j in range(i + 1, len(e) + 1))


def extend_word_starts(folded: str, known: Sequence[str], starts: list[int], upto: int) -> None:
    """Append to *starts* the start of each word ``known[len(starts)]`` ... ``known[upto]``
    in *folded* (``known = words(folded)``); see :func:`next_word`.

    Without apostrophes, and for any word that no dropped fragment contains, the next
    occurrence found by ``str.find`` is the word itself, so the careful search is only
    needed for the odd short word (``s``, ``l``, ``qu``...) in text with apostrophes.
    """
    find = folded.find
    careful = "'" in folded
    k = len(starts)
    pos = starts[-1] + len(known[k - 1]) if k else 0
    for w in known[k : upto + 1]:
        pos = next_word(folded, w, pos) if careful and w in _DROPPED_PARTS else find(w, pos)
        starts.append(pos)
        pos += len(w)


def word_spans(folded: str, known: Sequence[str] | None = None) -> list[tuple[int, int]]:
    """``(start, end)`` of every word of :func:`words` within *folded*, same order and count.

    Pass ``known=words(folded)`` if you have it: words are then located with ``str.find``
    (see :func:`extend_word_starts`) rather than by a second regular-expression pass.
    """
    spans: list[tuple[int, int]] = []
    if known is not None:
        starts: list[int] = []
        extend_word_starts(folded, known, starts, len(known) - 1)
        return [(a, a + len(w)) for a, w in zip(starts, known, strict=True)]
    for m in _WORD_APOS_RE.finditer(folded):
        chunk = m.group()
        if "'" in chunk:
            base = m.start()
            spans.extend((base + off, base + off + len(w)) for off, w in _split_apostrophes(chunk))
        else:
            spans.append(m.span())
    return spans


def pattern_words(folded_pattern: str) -> list[str]:
    """Words of a folded query term or phrase, keeping the wildcards ``?`` and ``*``.

    Same splitting and apostrophe rules as :func:`words`, so ``l'OTAN`` in a query is the
    word ``otan`` and ``nord-coréen*`` is ``nord`` followed by ``coreen*``.
    """
    out: list[str] = []
    for chunk in _PATTERN_RE.findall(folded_pattern):
        if "'" in chunk:
            out.extend(w for _, w in _split_apostrophes(chunk))
        else:
            out.append(chunk)
    return out


def _is_cluster_continuation(ch: str) -> bool:
    cp = ord(ch)
    # Combining marks, and Hangul vowel/final jamo which NFC composes with what precedes.
    return unicodedata.combining(ch) != 0 or 0x1160 <= cp <= 0x11FF or 0xD7B0 <= cp <= 0xD7FF


def _irregular_class() -> tuple[str, str]:
    """Character classes: characters that do not fold to exactly one character, and
    cluster continuations (which fold together with the character before them).

    Text without any of them folds character by character, one to one, so its offset map
    is the identity and :func:`fold_with_offsets` needs no per-character work. Computed
    for the BMP on first use (about 60 ms, once per process, so that importing the module
    stays cheap for processes that never explain a match).
    """
    irregular: list[int] = []
    continuation: list[int] = []
    for cp in range(0x80, 0x10000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        c = chr(cp)
        if _is_cluster_continuation(c):
            continuation.append(cp)
        elif 0x3130 <= cp <= 0x318F or 0xFFA0 <= cp <= 0xFFDC:
            irregular.append(cp)  # compatibility jamo: NFKC may compose them with neighbours
        elif c in _SPECIAL or c.casefold() != c or unicodedata.decomposition(c):
            if len(fold(c)) != 1:
                irregular.append(cp)
    return _ranges_class(irregular), _ranges_class(continuation)


def _ranges_class(cps: list[int]) -> str:
    ranges: list[tuple[int, int]] = []
    for cp in cps:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1] = (ranges[-1][0], cp)
        else:
            ranges.append((cp, cp))
    return "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges)


@functools.cache
def _irregular_res() -> tuple[re.Pattern[str], re.Pattern[str]]:
    """(any irregular character, one unit to fold on its own): an irregular character
    with its marks, or any character followed by marks."""
    irregular, continuation = _irregular_class()
    return (
        re.compile(f"[{irregular}{continuation}]"),
        re.compile(f"[{irregular}][{continuation}]*|[^{continuation}]?[{continuation}]+", re.DOTALL),
    )


def fold_with_offsets(text: str) -> tuple[str, Sequence[int], Sequence[int]]:
    """Fold *text* and say where every folded character came from.

    Returns ``(folded, starts, ends)``: folded character ``i`` comes from
    ``text[starts[i]:ends[i]]``. ``folded`` is always ``fold(text)``. Most text folds one
    to one (accented letters, curly apostrophes and dashes all do), and then the maps are
    cheap ``range`` objects; otherwise the characters that expand, vanish or combine
    (``œ``, ``ß``, ``…``, soft hyphens, combining marks) are folded one unit at a time.
    In the pathological case where that does not reproduce ``fold(text)``, the offsets
    fall back to a proportional estimate, still inside the text.
    """
    folded = fold(text)
    starts, ends = fold_offsets(text, folded)
    return folded, starts, ends


def fold_offsets(text: str, folded: str) -> tuple[Sequence[int], Sequence[int]]:
    """The ``(starts, ends)`` of :func:`fold_with_offsets`, when ``folded == fold(text)``
    is already at hand (the matcher folded every story once already)."""
    n = len(text)
    if text.isascii():
        return range(n), range(1, n + 1)
    any_irregular, cluster = _irregular_res()
    if any_irregular.search(text) is None:
        return range(n), range(1, n + 1)
    # Between irregular units every character folds to exactly one character, so only the
    # units themselves need folding; the total length double-checks the result.
    starts: list[int] = []
    ends: list[int] = []
    prev = 0
    for m in cluster.finditer(text):
        a, b = m.span()
        if a > prev:
            starts.extend(range(prev, a))
            ends.extend(range(prev + 1, a + 1))
        width = len(fold(text[a:b]))
        starts.extend([a] * width)
        ends.extend([b] * width)
        prev = b
    if prev < n:
        starts.extend(range(prev, n))
        ends.extend(range(prev + 1, n + 1))
    if len(starts) != len(folded):
        starts, ends = _offsets_by_cluster(text, folded)
    return starts, ends


def _offsets_by_cluster(text: str, folded: str) -> tuple[list[int], list[int]]:
    """Slow, thorough fallback of :func:`fold_offsets`: fold every base character with its
    marks separately. If even that does not add up to ``folded`` (NFKC composing across
    characters, e.g. loose compatibility jamo), spread the offsets proportionally."""
    n = len(text)
    starts: list[int] = []
    ends: list[int] = []
    pieces: list[str] = []
    i = 0
    while i < n:
        j = i + 1
        while j < n and _is_cluster_continuation(text[j]):
            j += 1
        piece = fold(text[i:j])
        pieces.append(piece)
        starts.extend([i] * len(piece))
        ends.extend([j] * len(piece))
        i = j
    if "".join(pieces) != folded:
        m = len(folded) or 1
        starts = [min(n - 1, k * n // m) for k in range(len(folded))]
        ends = [min(n, max(s + 1, (k + 1) * n // m)) for k, s in enumerate(starts)]
    return starts, ends


@dataclass(frozen=True, slots=True)
class Token:
    """One word of a text: its folded form and where it sits in the original string."""

    text: str
    start: int
    end: int


def tokenize(text: str) -> list[Token]:
    """Words of the original *text*, folded, with offsets into *text* (not the folded copy)."""
    folded, starts, ends = fold_with_offsets(text)
    return [Token(folded[a:b], starts[a], ends[b - 1]) for a, b in word_spans(folded)]


def is_hangul(ch: str) -> bool:
    """True for Hangul syllables and jamo.

    Korean attaches particles to the noun without a space (``북한은``, ``북한이``), so the
    matcher treats a query word that ends in Hangul as a prefix of a story word.
    """
    cp = ord(ch)
    return (
        0xAC00 <= cp <= 0xD7A3
        or 0x1100 <= cp <= 0x11FF
        or 0x3130 <= cp <= 0x318F
        or 0xA960 <= cp <= 0xA97F
        or 0xD7B0 <= cp <= 0xD7FF
    )
