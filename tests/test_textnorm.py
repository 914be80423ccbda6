"""Folding and word splitting: what makes a query term and a story word the same word."""

from __future__ import annotations

import codecs
import html
import json
import random
import re
from itertools import chain
from pathlib import Path

import feedparser
import pytest

from monitor.matching import textnorm
from monitor.matching.textnorm import (
    TokenOffsets,
    TokenWords,
    fold,
    fold_with_offsets,
    fold_words,
    is_hangul,
    pattern_words,
    token_starts,
    tokenize,
    word_spans,
    words,
)

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Koursk", "koursk"),
        ("KOURSK", "koursk"),
        ("Corée du Nord", "coree du nord"),
        ("CORÉE", "coree"),
        ("Core\u0301e", "coree"),  # decomposed é (e + U+0301)
        ("nord–coréen", "nord-coreen"),  # en dash
        ("nord—coréen", "nord-coreen"),  # em dash
        ("nord‑coréen", "nord-coreen"),  # non-breaking hyphen
        ("l’OTAN", "l'otan"),
        ("l‘OTAN", "l'otan"),
        ("lʼOTAN", "l'otan"),
        ("l`OTAN", "l'otan"),
        ("Café`s", "cafe's"),  # a grave accent is an apostrophe in accented text too
        ("«\u00a0Kursk\u00a0»", '" kursk "'),  # no-break spaces, guillemets
        ("“troops”", '"troops"'),
        ("Straße", "strasse"),
        ("ﬁnal", "final"),  # ligature (NFKC)
        ("ＫＵＲＳＫ", "kursk"),  # full-width (NFKC)
        ("main-d’œuvre", "main-d'oeuvre"),
        ("Ko\u00adursk", "koursk"),  # soft hyphen vanishes
        ("Курской", "курской"),  # Cyrillic: case folded
        ("Йошкар-Ола", "йошкар-ола"),  # й keeps its breve: a letter, not an accent
        ("ЁЛКА", "елка"),  # ё -> е, as Russian writing allows
        ("Їжак", "їжак"),  # Ukrainian ї kept
        ("сло\u0301во", "слово"),  # Russian stress mark dropped
        ("ΕΛΛΆΔΑ Ελλάδα", "ελλαδα ελλαδα"),  # Greek tonos dropped
        ("Müller в Москве", "muller в москве"),  # Latin accents go even beside Cyrillic
        ("북한은", "북한은"),  # Hangul untouched
        ("İstanbul", "istanbul"),
        ("Łódź", "lodz"),
        ("Ærø", "aero"),
    ],
)
def test_fold(text: str, expected: str) -> None:
    assert fold(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("La Corée du Nord", ["la", "coree", "du", "nord"]),
        ("nord-coréen", ["nord", "coreen"]),
        ("nord coréen", ["nord", "coreen"]),
        ("nord–coréen", ["nord", "coreen"]),
        ("selon l’OTAN,", ["selon", "otan"]),
        ("l'OTAN", ["otan"]),
        ("d’État", ["etat"]),
        ("qu’il", ["il"]),
        ("jusqu’à Koursk", ["a", "koursk"]),
        ("s’engageant", ["engageant"]),
        ("Russia’s troops", ["russia", "troops"]),
        ("aujourd’hui", ["aujourd", "hui"]),
        ("O’Brien", ["o", "brien"]),
        ("l'", ["l"]),  # nothing to elide in front of
        ("'s", ["s"]),
        ("Kursk: 3.5 km", ["kursk", "3", "5", "km"]),
        ("북한은 러시아와", ["북한은", "러시아와"]),
        ("в Курской области", ["в", "курской", "области"]),
        ("हिन्दी भाषा", ["हिन्दी", "भाषा"]),  # vowel signs stay inside the word
        ("Україна", ["україна"]),
        ("с\u0306ын", ["с\u0306ын"]),  # a mark left on a Cyrillic letter stays inside the word
        ("", []),
    ],
)
def test_words(text: str, expected: list[str]) -> None:
    assert words(fold(text)) == expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("nord-coréen*", ["nord", "coreen*"]),
        ("organi?ation", ["organi?ation"]),
        ("l'OTAN", ["otan"]),
        ("Kursk*", ["kursk*"]),
        ('"North Korea"', ["north", "korea"]),
    ],
)
def test_pattern_words_keep_wildcards(pattern: str, expected: list[str]) -> None:
    assert pattern_words(fold(pattern)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Selon l’OTAN, la Corée", [("selon", "Selon"), ("otan", "OTAN"), ("coree", "Corée")]),
        ("Core\u0301e du Nord", [("coree", "Core\u0301e"), ("nord", "Nord")]),  # decomposed accent
        ("Straße nach Kursk", [("strasse", "Straße"), ("kursk", "Kursk")]),
        ("… main-d’œuvre …", [("main", "main"), ("oeuvre", "œuvre")]),
        ("Ko\u00adursk troops", [("koursk", "Ko\u00adursk"), ("troops", "troops")]),
        ("ＫＵＲＳＫ", [("kursk", "ＫＵＲＳＫ")]),
        ("북한은 러시아와", [("북한은", "북한은"), ("러시아와", "러시아와")]),
    ],
)
def test_tokens_point_into_the_original_text(text: str, expected: list[tuple[str, str]]) -> None:
    tokens = [t for t in tokenize(text) if t.text not in ("la", "du", "nach")]
    assert [(t.text, text[t.start : t.end]) for t in tokens] == expected


def test_fold_with_offsets_maps_every_folded_character() -> None:
    text = "Straße … l’œuvre de Corée"
    folded, starts, ends = fold_with_offsets(text)
    assert folded == fold(text)
    assert len(starts) == len(ends) == len(folded)
    assert [text[starts[i] : ends[i]] for i in range(len(folded)) if folded[i] in "so"][:4] == [
        "S",
        "ß",
        "ß",
        "œ",
    ]


def _fixture_texts() -> list[str]:
    texts: list[str] = []
    for path in sorted(FIXTURES.glob("*.xml")):
        if path.name.startswith(("giantbomb-", "feedparser-")):
            continue
        for entry in feedparser.parse(path.read_bytes()).entries:
            texts.append(str(entry.get("title", "")))
            texts.append(html.unescape(re.sub(r"<[^>]+>", " ", str(entry.get("summary", "")))))
    return texts


def test_real_feed_text_folds_idempotently_and_tokens_round_trip() -> None:
    """On every title and summary of the real fixture feeds (English, French, Russian,
    German, Portuguese, Urdu): folding twice changes nothing, the fast word splitter
    and the offset-keeping one agree, and each token's offsets cover original text that
    folds to something containing the token."""
    texts = _fixture_texts()
    assert len(texts) > 500
    for text in texts:
        folded = fold(text)
        assert fold(folded) == folded
        ws = words(folded)
        assert word_spans(folded) == word_spans(folded, ws)
        tokens = tokenize(text)
        assert [t.text for t in tokens] == ws
        for t in tokens:
            assert t.text in fold(text[t.start : t.end]).replace("'", ""), (text, t)


def test_word_spans_by_find_agree_with_the_regex_on_tricky_apostrophes() -> None:
    """word_spans(folded, known) locates words with str.find; it must find exactly the
    words the regular expression finds, whatever apostrophes and fragments surround them."""
    rng = random.Random(7)
    pieces = ["l", "s", "'", "’", " ", "d", "qu", "or", "is", "us", "a", "-", "jusqu", "é", "t", "x"]
    for _ in range(5000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 14)))
        folded = fold(text)
        known = words(folded)
        assert word_spans(folded, known) == word_spans(folded), text
        assert [folded[a:b] for a, b in word_spans(folded)] == known, text


@pytest.mark.parametrize(("ch", "expected"), [("북", True), ("ㄱ", True), ("a", False), ("к", False)])
def test_is_hangul(ch: str, expected: bool) -> None:
    assert is_hangul(ch) is expected


# Characters that could make folding or splitting depend on what is around them:
# whitespace of every kind, combining marks (Latin, Cyrillic, stray), Hangul jamo that
# compose, characters that expand or vanish, apostrophes, elisions and possessives.
_AWKWARD = list("abcXYZ019_ '`’‘-–—“”,.()") + [
    *("\t", "\n", "\xa0", "\u2003", "\u3000", "\x1c", "\x85", "\u2028", "\u200b", "\u00ad", "\u2060"),
    *("\u0301", "\u0308", "\u0306", "\u0300", "й", "и", "е", "ё", "Й", "ά", "Σ", "ς"),
    *("한", "\u1100", "\u1161", "\u11a8", "ㄱ", "ㅏ", "ß", "œ", "Œ", "ﬁ", "½", "¨", "´"),
    *("é", "É", "ñ", "ø", "ł", "ı", "İ", "ِ", "ب", "ऩ", "न", "\u093c", "Ｋ", "ｏ"),
    *("l'", "qu'", "'s", "s", "ǖ", "ѐ", "ї", "\u0b3e", "\u0b47", "ﾡ", "Ǆ", "ŉ", "ﬆ"),
]


@pytest.mark.parametrize("limit", [200_000, 3])
def test_fold_words_is_words_of_fold_token_by_token(limit: int) -> None:
    """The matcher's memoised tokeniser gives exactly words(fold(text)): folding and word
    splitting never look across whitespace. Also with a memo so small it keeps clearing."""
    rng = random.Random(11)
    memo = TokenWords(limit)
    for _ in range(20_000):
        text = "".join(rng.choice(_AWKWARD) for _ in range(rng.randint(0, 25)))
        assert fold_words(text, memo) == words(fold(text)), text
    assert len(memo) <= limit


def test_fold_words_on_real_feed_text() -> None:
    memo = TokenWords()
    for text in _fixture_texts():
        assert fold_words(text, memo) == words(fold(text)), text
        assert fold_words(text, memo) == words(fold(text)), text  # from the memo this time


def _offsets_by_token(text: str, memo: TokenOffsets) -> list[tuple[int, int]]:
    """Word spans the way the matcher explains hits: each token's memoised offsets plus
    the token's start."""
    tokens, starts = token_starts(text)
    assert tokens == text.split(), text
    return [
        (start + char_starts[0], start + char_ends[-1])
        for token, start in zip(tokens, starts, strict=True)
        for char_starts, char_ends in memo[token]
    ]


def test_offsets_token_by_token_on_real_feed_text() -> None:
    """On real text they are exactly the offsets of tokenize() on the whole text."""
    memo = TokenOffsets()
    for text in _fixture_texts():
        assert _offsets_by_token(text, memo) == [(t.start, t.end) for t in tokenize(text)], text


def test_offsets_token_by_token_cover_their_words() -> None:
    """On random awkward text every span covers original text that folds to its word.
    (Left out: characters that NFC or NFKC compose with a neighbour that is not next to
    them, loose Hangul jamo and split vowel signs; offsets are estimates there, for the
    whole text as for a token.)"""
    rng = random.Random(12)
    memo = TokenOffsets()
    composing = {"\u1100", "\u1161", "\u11a8", "ㄱ", "ㅏ", "ﾡ", "\u0b3e", "\u0b47"}
    alphabet = [c for c in _AWKWARD if c not in composing]
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        spans = _offsets_by_token(text, memo)
        found = words(fold(text))
        assert len(spans) == len(found), text
        for (a, b), word in zip(spans, found, strict=True):
            assert word in fold(text[a:b]).replace("'", ""), (text, word, a, b)


# fold_words before the Latin fast path, kept verbatim as the reference the fast path must
# reproduce exactly: ASCII without apostrophes directly, everything else token by token.
_OLD_ASCII_WORDS = str.maketrans({chr(i): (chr(i) if chr(i).isalnum() or chr(i) in "_'" else " ") for i in range(128)})


def _old_fold_words(text: str, memo: TokenWords) -> list[str]:
    if text.isascii() and "'" not in text and "`" not in text:
        return text.lower().translate(_OLD_ASCII_WORDS).split()
    return list(chain.from_iterable(map(memo.__getitem__, text.split())))


def _every_fixture_text() -> list[str]:
    """Every title and summary (and JSON Feed content) of every fixture feed, raw (HTML
    and all) and as text, unlike _fixture_texts() which leaves out the synthetic ones."""
    texts: list[str] = []
    for path in sorted(FIXTURES.iterdir()):
        if path.suffix in (".xml", ".rdf"):
            for entry in feedparser.parse(path.read_bytes()).entries:
                texts += [str(entry.get("title", "")), str(entry.get("summary", ""))]
        elif path.suffix == ".json":
            for item in json.loads(path.read_text(encoding="utf-8")).get("items", []):
                texts += [str(item.get(k, "")) for k in ("title", "summary", "content_text", "content_html")]
    return texts + [html.unescape(re.sub(r"<[^>]+>", " ", t)) for t in texts]


def _latin(text: str) -> bool:
    """Whether *text* takes the Latin fast path of fold_words."""
    try:
        codecs.charmap_encode(text, "strict", textnorm._LATIN_CHARMAP)
    except UnicodeEncodeError:
        return False
    return True


def test_fold_words_is_the_old_fold_words_on_every_fixture_text() -> None:
    texts = _every_fixture_text()
    assert len(texts) > 5000
    latin = [t for t in texts if not t.isascii() and _latin(t)]
    assert len(latin) > 500  # the fast path is taken, and compared, on real text
    assert len(texts) - len(latin) - sum(t.isascii() for t in texts) > 300  # the memo path too
    new, old = TokenWords(), TokenWords()
    for text in texts:
        assert fold_words(text, new) == _old_fold_words(text, old) == words(fold(text)), text


@pytest.mark.parametrize(
    "text",
    [
        "Russia’s troops",
        "l’OTAN d‘Europe",
        "lʼOTAN",
        "l`OTAN",
        "Café`s",
        "O’Brien’s",
        "qu’",
        "’s",
        "x '' y",
        "aujourd’hui",
        "main-d’œuvre",
        "Œuvre ÆRØ",
        "ﬁnal ﬂow",
        "ﬀ",
        "Straße STRASSE ẞ",
        "Ärger Öl Übel",
        "Core\u0301e",
        "Corée",
        "e\u0301\u0301",
        "ǖ",
        "a\u0308\u0304",
        "Ñandú",
        "Ȩ",
        "İstanbul ıi IİI",
        "Łódź",
        "Ελλάδα ΟΔΟΣ Σ σς",
        "Ὀδυσσεύς",
        "сло\u0301во Ёлка Йошкар-Ола Їжак",
        "Müller в Москве",
        "µm",
        "Café µ\u0301",
        "北朝鮮 ロシア",
        "북한은 러시아와",
        "\u1100\u1161\u11a8",
        "ㄱㅏ",
        "ﾡ",
        "هندوستان کی خبریں",
        "שלום עולם",
        "हिन्दी भाषा",
        "Ｋｕｒｓｋ",
        "𝐊𝐮𝐫𝐬𝐤",
        "🇰🇵 🚀 troops👍",
        "👨‍👩‍👧",
        "zero\u200bwidth",
        "soft\u00adhyphen",
        "word\u2060joiner",
        "\ufeffbom",
        "zwj\u200dzwnj\u200c",
        "a\u00a0b",
        "a\u202fb",
        "a\u2009b\u3000c",
        "a\x85b\u2028c\u2029d\x1cе",
        "«\u00a0Kursk\u00a0»",
        "“troops” ‚low‘ „low“ ‹x› ″",
        "nord–coréen nord—coréen nord‑coréen −5 ―",
        "… ...",
        "3½ ¼ ² x³ ¹",
        "ª º",
        "¨´¸¯",
        "× ÷ ± § ¶ · © ®",
        "¿Qué? ¡Sí!",
        "DŽ ǆ Ǆ",
        "ŉ",
        "ﬆ",
        "ǅungla",
        "Å Å Å",
        "KOURSK",
        "MiXeD CaSe",
        "a_b __init__",
        "1,234.56 -7 +8 ½",
        "$5m 10% 3bn",
        "",
        " ",
        "\t\n",
        "l' 's ' '' ''' s'l'",
    ],
)
def test_fold_words_is_the_old_fold_words_on_edge_cases(text: str) -> None:
    assert fold_words(text, TokenWords()) == _old_fold_words(text, TokenWords()) == words(fold(text))


def test_the_latin_table_characters_fold_alone() -> None:
    """Each character of the fast path's table folds the same alone and beside any other
    table character, an ASCII character, a combining mark or a Cyrillic letter (pairs and
    triples: what would break if folding looked at a neighbour)."""
    accepted = [chr(c) for c in range(0x80, 0x3000) if _latin(chr(c))]
    assert len(accepted) == 128
    assert {"é", "ü", "ß", "’", "“", "—", "\u00a0", "…"} <= set(accepted)
    neighbours = accepted + list(" az'`_-0\t") + ["\u0301", "\u0308", "й", "Σ", "ب", "한", "ﬁ"]
    new, old = TokenWords(), TokenWords()
    for a in accepted:
        for b in neighbours:
            for text in (a + b, b + a, f"x{a}{b}y", f"{b}{a}'s"):
                assert fold_words(text, new) == _old_fold_words(text, old), text


def test_fold_words_is_the_old_fold_words_on_random_latin_text() -> None:
    rng = random.Random(13)
    alphabet = [*_AWKWARD, *"àâçéèêëîïôûùüÿæœÀÂÇÉÈÊËÎÏÔÛÙÜŸÆŒßäöÄÖÜñÑãõÃÕáíóúÁÍÓÚłŁšŠžŽčČ", *"’‘“”–—…«»\u00a0"]
    new, old = TokenWords(), TokenWords()
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 25)))
        assert fold_words(text, new) == _old_fold_words(text, old), text
