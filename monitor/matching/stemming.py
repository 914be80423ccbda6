"""Light stemmers for English, French, Russian and Ukrainian (pure, hand-written, no dependency).

A watchlist opts in with ``stem: [en, fr, ru, uk]`` (any of them); then a plain query word
such as ``sanction`` also finds ``sanctions``, ``sanctioned``, ``sanctioning``,
``sanctionne``, ``sanctionnés``, ``sanctionner``; ``санкция`` finds ``санкции``,
``санкций``, ``санкциями`` and ``санкція`` finds ``санкції``, ``санкцій`` (a Russian word
finds Russian forms, a Ukrainian word Ukrainian ones: the spellings differ). Without
``stem`` a word matches only itself.

Why light and hand-written rather than Snowball: Snowball's French stemmer expects
accented text and conflates aggressively, while ours runs on *folded* words (no accents:
see :mod:`monitor.matching.textnorm`) and an alert system pays for every false positive. These
stemmers only remove inflections (plural, feminine, past participle, -ing, the common
French verb endings) and never derivational suffixes (-ment, -ation, -ité), so
``sanction`` never matches ``sanctuary`` and ``accord`` never matches ``accordingly``.
Known, accepted conflations: French ``traité``/``traite`` (both ``trait``), English
``army``/``arms`` stay apart but ``ally``/``allies``/``allied`` meet on ``alli``.

Russian and Ukrainian: one case, number or gender ending of a noun or an adjective is
removed (the longest that leaves four letters or more), never a verb ending or a
suffix. Folding keeps Cyrillic letters as they are (``й``, ``ї``, ``є`` stay; only
``ё`` becomes ``е`` and stress marks go), so the tables are written in folded letters.
``snowballstemmer`` (3.1) was tried first and left out: it has no Ukrainian stemmer; on
Russian it strips verb endings (``договор``, treaty, meets ``договорились``, they agreed),
and it splits a noun from its own cases (``Корея`` -> ``коре`` but ``Кореи`` -> ``кор``).
Cost (``bench/stem.py``, medians): ``stem_ru`` and ``stem_uk`` take what ``stem_en`` takes
(1.0-1.2x, 1.5-3 µs a word depending on the machine's load), Snowball's Russian 18-32x
that; the matcher memoises stems per distinct word anyway, and the shipped watchlists
match the same stories in the same time with ``ru, uk`` added (ratio 0.92-0.99).
Memory: 15 KB of ending tables, against 2.8 MiB (and 18 ms) to import Snowball.
Known, accepted conflations and misses: a surname in ``-ов``/``-ев`` loses it like a
genitive plural (``Лавров`` -> ``лавр``, while ``Лаврова`` -> ``лавров``: write ``Лавров*``),
``сталь`` (steel) and ``стал`` (became) meet as ``стали`` already does in writing, and
words of four letters or fewer keep their endings (``сила`` and ``силы`` stay apart).
A city and its adjective share a stem (``Курск``, ``Курской``: ``курск``), a noun and the
adjective made from it do not (``Корея`` -> ``коре``, ``корейский`` -> ``корейск``).

A query word matches a story word when their stems are equal in one of the
watchlist's languages. Stems are truncations, except that a final ``y`` becomes ``i``
(``treaty`` and ``treaties`` both give ``treati``). English and French leave words shorter
than four letters and words with characters outside a-z (Cyrillic, Hangul, digits)
unchanged; Russian and Ukrainian leave alone any word with a character that is not a
lower-case Cyrillic letter.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["LANGUAGES", "stem", "stem_en", "stem_fr", "stem_ru", "stem_uk"]

_VOWELS = frozenset("aeiouy")
_CACHE_LIMIT = 50_000


def _is_plain_latin(word: str) -> bool:
    return word.isascii() and word.isalpha()


def _undouble(word: str) -> str:
    """``bann`` -> ``ban``, ``sanctionn`` -> ``sanction``: doubled final consonants."""
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in _VOWELS:
        return word[:-1]
    return word


def _has_vowel(word: str) -> bool:
    return any(c in _VOWELS for c in word)


def stem_en(word: str) -> str:
    """English light stem of a folded word (plural, -ed, -ing, final -e / -y)."""
    if len(word) < 4 or not _is_plain_latin(word):
        return word
    w = word
    if w.endswith("ies") and len(w) > 4:
        w = w[:-2]  # treaties -> treati, allies -> alli
    elif w.endswith("sses"):
        w = w[:-2]
    elif w.endswith(("xes", "zes", "ches", "shes")):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    if w.endswith("eed"):
        w = w[:-1]  # agreed -> agree (then -> agre below)
    elif w.endswith("ed") and len(w) > 4 and _has_vowel(w[:-2]):
        w = w[:-2]
    elif w.endswith("ing") and len(w) > 5 and _has_vowel(w[:-3]):
        w = w[:-3]
    if w.endswith("y") and len(w) > 3 and w[-2] not in _VOWELS:
        w = w[:-1] + "i"  # treaty -> treati, ally -> alli
    elif w.endswith("e") and len(w) > 4:
        w = w[:-1]  # alliance -> allianc, agree -> agre
    return _undouble(w)


# Longest first; each is removed at most once, and only if four letters remain.
_FR_SUFFIXES = ("aient", "ait", "ant", "ent", "ons", "ez", "er", "ee", "e")


def stem_fr(word: str) -> str:
    """French light stem of a folded word (plural, feminine, participles, verb endings)."""
    if len(word) < 4 or not _is_plain_latin(word):
        return word
    w = word
    if w[-1] in "sx" and len(w) > 4:
        w = w[:-1]
    for suffix in _FR_SUFFIXES:
        if w.endswith(suffix) and len(w) - len(suffix) >= 4:
            w = w[: -len(suffix)]
            break
    return _undouble(w)


# Russian and Ukrainian case, number and gender endings of nouns and adjectives (folded:
# ``ё`` is already ``е``). Verb endings are absent on purpose: ``договор`` (treaty) must
# not meet ``договорились`` (they agreed). The endings that begin with ``и`` / ``і``
# belong to nouns in ``-ия`` / ``-ія`` (``санкция``, ``санкций``, ``санкциями``) and
# neuters in ``-ие`` (``соглашение``, ``соглашением``), whose ``и`` goes with the ending.
_RU_ENDINGS = frozenset(
    (
        # adjectives and participles
        "ый ий ой ая яя ое ее ые ие ого его ому ему ым им ую юю ых их ыми ими ою ею "
        # nouns
        "а я о е ы и у ю ь ом ем ей ам ям ах ях ами ями ов ев ьми "
        "ия ии ию ией ием иям иями иях ья ье ьи ью ьям ьями ьях ьев ьей"
    ).split()
)
_UK_ENDINGS = frozenset(
    (
        # adjectives and participles
        "ий ій ого ього ому ьому ім им ої ьої ою ьою их іх ими іми "
        # nouns
        "а я о е є у ю і ї и ь ом ем єм ею єю ам ям ах ях ами ями ів їв ей "
        "ія ії ію ією іям іями іях"
    ).split()
)
_LONGEST_ENDING = 4
_MIN_STEM = 4  # letters left after an ending goes: ``Росія`` -> ``росі``, never ``рос`` (``роса``, dew)
_CYRILLIC_LOWER = frozenset("абвгдежзийклмнопрстуфхцчшщъыьэюяёіїєґ")


def _strip_ending(word: str, endings: frozenset[str]) -> str:
    """Remove the longest ending of *endings* that leaves at least :data:`_MIN_STEM` letters."""
    if len(word) <= _MIN_STEM or not _CYRILLIC_LOWER.issuperset(word):
        return word
    for size in range(min(_LONGEST_ENDING, len(word) - _MIN_STEM), 0, -1):
        if word[-size:] in endings:
            return word[:-size]
    return word


def stem_ru(word: str) -> str:
    """Russian light stem of a folded word: one case / number / gender ending off."""
    return _strip_ending(word, _RU_ENDINGS)


def stem_uk(word: str) -> str:
    """Ukrainian light stem of a folded word: one case / number / gender ending off."""
    return _strip_ending(word, _UK_ENDINGS)


_STEMMERS: dict[str, Callable[[str], str]] = {"en": stem_en, "fr": stem_fr, "ru": stem_ru, "uk": stem_uk}

#: Languages with a stemmer, in the spelling the ``stem:`` setting uses.
LANGUAGES: tuple[str, ...] = tuple(_STEMMERS)

_cache: dict[tuple[str, str], str] = {}


def stem(word: str, lang: str) -> str:
    """Stem a folded *word* for *lang* (one of :data:`LANGUAGES`); memoised.

    Raises ``KeyError`` for a language without a stemmer: callers validate the
    ``stem:`` setting against :data:`LANGUAGES` first.
    """
    key = (lang, word)
    got = _cache.get(key)
    if got is None:
        got = _STEMMERS[lang](word)
        if len(_cache) >= _CACHE_LIMIT:
            _cache.clear()
        _cache[key] = got
    return got
