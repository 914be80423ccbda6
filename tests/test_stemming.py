"""Russian and Ukrainian light stemming: the inflections that must meet, the words that must not.

Every word goes through :func:`~monitor.matching.textnorm.fold` first, as in the matcher,
and the last tests go through the real matcher with a stemmed watchlist.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.config.model import parse_config
from monitor.errors import ConfigError
from monitor.matching.matcher import Matcher, WatchlistQuery, _stem_head, compile_query
from monitor.matching.stemming import LANGUAGES, stem
from monitor.matching.textnorm import fold, words

LABELLED = Path(__file__).parent / "data" / "labelled_headlines.jsonl"


def _stem(word: str, lang: str) -> str:
    return stem(fold(word), lang)


# Forms of one word, as the news writes them: each group must give one stem.
MEET = [
    ("ru", ("Курск", "Курская", "Курской", "Курскую", "Курском")),  # the city and "of Kursk"
    ("ru", ("Корея", "Кореи", "Корее", "Корею", "Кореей")),
    ("ru", ("Северная", "Северной", "Северную", "северных")),
    ("ru", ("войска", "войск", "войсками", "войсках", "войскам")),
    ("ru", ("санкция", "санкции", "санкций", "санкциями", "санкциях", "санкцию")),
    ("ru", ("Россия", "России", "Россию", "Россией")),
    ("ru", ("область", "области", "областью", "областях")),
    ("ru", ("договор", "договора", "договору", "договором", "договоре", "договоры", "договоров")),
    ("ru", ("соглашение", "соглашения", "соглашений", "соглашением", "соглашении")),
    ("ru", ("северокорейский", "северокорейская", "северокорейские", "северокорейских", "северокорейского")),
    ("ru", ("военные", "военных", "военными", "военный")),
    ("ru", ("Путин", "Путина", "Путину", "Путиным")),
    ("ru", ("КНДР",)),  # an abbreviation: no ending to take off
    ("ru", ("партнёрство", "партнерства", "партнёрстве")),  # ё folds to е
    ("uk", ("Курщина", "Курщини", "Курщині", "Курщину", "Курщиною")),
    ("uk", ("Курська", "Курської", "Курській", "Курську")),
    ("uk", ("Корея", "Кореї", "Корею", "Кореєю")),
    ("uk", ("Північна", "Північної", "Північній", "Північну", "Північною")),
    ("uk", ("військові", "військових", "військовими", "військовий")),
    ("uk", ("війська", "військ")),
    ("uk", ("санкція", "санкції", "санкцій", "санкціями", "санкціях")),
    ("uk", ("Росія", "Росії", "Росію", "Росією")),
    ("uk", ("область", "області", "областю")),
    ("uk", ("Києва", "Києві")),
]


@pytest.mark.parametrize(("lang", "forms"), MEET)
def test_inflected_forms_meet(lang: str, forms: tuple[str, ...]) -> None:
    stems = {f: _stem(f, lang) for f in forms}
    assert len(set(stems.values())) == 1, stems


# Different words that share letters: a case ending is all that may go, never a suffix
# or a verb ending, and never so much that a short root is left.
APART = [
    ("ru", "Курск", "курс"),  # Kursk / course, exchange rate
    ("ru", "Курской", "курсы"),
    ("ru", "войска", "война"),  # troops / war
    ("ru", "войск", "воин"),  # troops / warrior
    ("ru", "Корея", "корейский"),  # a noun / the adjective made from it
    ("ru", "договор", "договорились"),  # treaty / they agreed (a verb)
    ("ru", "договор", "договорённость"),  # treaty / an understanding
    ("ru", "санкции", "санкционный"),  # sanctions / the adjective
    ("ru", "Россия", "российский"),
    ("ru", "Россия", "россиянин"),
    ("ru", "Северная", "север"),  # northern / the north
    ("ru", "военные", "война"),
    ("ru", "сила", "силос"),  # short words keep their endings
    ("ru", "мирный", "мир"),
    ("uk", "Росія", "роса"),  # Russia / dew: the stem keeps four letters
    ("uk", "Курщина", "курс"),
    ("uk", "Корея", "корейський"),
    ("uk", "війська", "війна"),  # troops / war
    ("uk", "військові", "війська"),  # the adjective (soldiers) / the noun (troops)
    ("uk", "санкції", "санкціонований"),
    ("uk", "Північна", "північ"),  # northern / the north
]


@pytest.mark.parametrize(("lang", "a", "b"), APART)
def test_unrelated_words_stay_apart(lang: str, a: str, b: str) -> None:
    assert _stem(a, lang) != _stem(b, lang)


@pytest.mark.parametrize(
    ("lang", "word"),
    [
        ("ru", "sanctions"),  # Latin words are the English and French stemmers' business
        ("uk", "Kursk"),
        ("ru", "북한은"),
        ("uk", "2024"),
        ("ru", "ИИ-2"),  # not only Cyrillic letters
    ],
)
def test_other_scripts_are_left_alone(lang: str, word: str) -> None:
    for w in words(fold(word)):
        assert stem(w, lang) == w


@pytest.mark.parametrize(("lang", "word"), [("en", "Кореи"), ("fr", "санкции")])
def test_latin_stemmers_leave_cyrillic_alone(lang: str, word: str) -> None:
    assert _stem(word, lang) == fold(word)


def test_stems_are_truncations_that_begin_with_their_head() -> None:
    """The matcher looks a word up only if it begins with the head of some stem key, so a
    Cyrillic stem must be a prefix of its word, like the others (on every labelled word)."""
    items = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]
    vocabulary = {w for item in items for w in words(fold(f"{item['title']} {item['summary']}"))}
    cyrillic = {w for w in vocabulary if not w.isascii()}
    assert len(cyrillic) > 100
    for lang in LANGUAGES:
        for word in cyrillic:
            stemmed = stem(word, lang)
            assert word.startswith(stemmed) and word.startswith(_stem_head(stemmed)), (lang, word, stemmed)


@pytest.mark.parametrize(
    ("query", "stem_langs", "text", "matched"),
    [
        ("санкция", ("ru",), "Минфин США ввёл новые санкции против КНДР", True),
        ("санкция", (), "Минфин США ввёл новые санкции против КНДР", False),
        ("санкция", ("en", "fr"), "Минфин США ввёл новые санкции против КНДР", False),
        ("Курщина", ("uk",), "Бої на Курщині тривають", True),
        ("Курская-область", ("ru",), "Бои в Курской области продолжаются", True),  # hyphen: every word stemmed
        ("Північна-Корея", ("uk",), "Військові Північної Кореї на фронті", True),
        ("Курск", ("ru",), "Курс рубля упал", False),
        ("договор", ("ru",), "Москва и Пхеньян договорились о поставках", False),
        ('"Северная Корея"', ("ru",), "Войска Северной Кореи", False),  # phrases are not stemmed
    ],
)
def test_stemmed_watchlists_match_cyrillic_inflections(
    query: str, stem_langs: tuple[str, ...], text: str, matched: bool
) -> None:
    results = compile_query(query, stem=stem_langs).match(text, "")
    assert bool(results) is matched
    if matched:
        for hit in results[0].hits:
            assert text[hit.start : hit.end] == hit.text


CONFIG = """\
targets:
  console: console://
watchlists:
  - name: sanctions
    query: санкция OR санкція
    notify: [console]
    stem: [{langs}]
"""


def test_the_config_accepts_ru_and_uk_and_refuses_unknown_languages() -> None:
    config, _ = parse_config(CONFIG.format(langs="ru, uk"), file="cfg.yaml", env={})
    assert config.watchlists[0].stem == ["ru", "uk"]
    matcher = Matcher([WatchlistQuery(w.name, w.query, tuple(w.stem)) for w in config.watchlists], config.aliases)
    assert [r.watchlist for r in matcher.match("Нові санкції США проти КНДР", "")] == ["sanctions"]
    assert [r.watchlist for r in matcher.match("Минфин США ввёл пакет санкций", "")] == ["sanctions"]
    assert matcher.match("Санкционный список расширен", "") == []
    with pytest.raises(ConfigError) as info:
        parse_config(CONFIG.format(langs="ru, de"), file="cfg.yaml", env={})
    assert "watchlists[0].stem" in str(info.value)
