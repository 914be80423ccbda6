"""Light stemmers for English and French (pure, hand-written, no dependency).

A watchlist opts in with ``stem: [en, fr]``; then a plain query word such as
``sanction`` also finds ``sanctions``, ``sanctioned``, ``sanctioning``, ``sanctionne``,
``sanctionnés``, ``sanctionner``. Without ``stem`` a word matches only itself.

Why light and hand-written rather than Snowball: Snowball's French stemmer expects
accented text and conflates aggressively, while ours runs on *folded* words (no accents:
see :mod:`monitor.matching.textnorm`) and an alert system pays for every false positive. These
stemmers only remove inflections (plural, feminine, past participle, -ing, the common
French verb endings) and never derivational suffixes (-ment, -ation, -ité), so
``sanction`` never matches ``sanctuary`` and ``accord`` never matches ``accordingly``.
Known, accepted conflations: French ``traité``/``traite`` (both ``trait``), English
``army``/``arms`` stay apart but ``ally``/``allies``/``allied`` meet on ``alli``.

A query word matches a story word when their stems are equal in one of the
watchlist's languages. Stems are truncations, except that a final ``y`` becomes ``i``
(``treaty`` and ``treaties`` both give ``treati``). Words shorter than four letters and
words with characters outside a-z (Cyrillic, Hangul, digits) are returned unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["LANGUAGES", "stem", "stem_en", "stem_fr"]

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


_STEMMERS: dict[str, Callable[[str], str]] = {"en": stem_en, "fr": stem_fr}

#: Languages with a stemmer, in the spelling the ``stem:`` setting uses.
LANGUAGES: tuple[str, ...] = tuple(_STEMMERS)

_cache: dict[tuple[str, str], str] = {}


def stem(word: str, lang: str) -> str:
    """Stem a folded *word* for *lang* (``"en"`` or ``"fr"``); memoised.

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
