"""The matcher: which stories match which watchlists, and the explanation of each match."""

from __future__ import annotations

import functools
import importlib.util
import pickle
import random
import re
import time
from pathlib import Path

import feedparser
import pytest

from monitor.errors import ConfigError, QuerySyntaxError
from monitor.matching.matcher import Hit, Matcher, MatchResult, WatchlistQuery, _stem_head, compile_query
from monitor.matching.stemming import LANGUAGES, stem
from monitor.matching.textnorm import fold, words

FIXTURES = Path(__file__).parent / "fixtures"

ALIASES = {
    "dprk": '"North Korea" | "North Korean" | DPRK | Pyongyang | "Corée du Nord" | nord-coréen* '
    '| "Северная Корея" | КНДР | 북한',
    "russia": "Russia | Russian | Moscow | Kremlin | Russie | russe | Moscou | Россия | 러시아",
}


def _check_offsets(result: MatchResult, title: str, summary: str) -> None:
    for hit in result.hits:
        source = title if hit.field == "title" else summary
        assert source[hit.start : hit.end] == hit.text, hit


@pytest.mark.parametrize(
    ("query", "title", "summary", "matched", "terms"),
    [
        # word boundaries and wildcards
        ("Kursk", "Troops in Kursk", "", True, ("Kursk",)),
        ("Kursk", "Troops in Kurskaya oblast", "", False, ()),
        ("Kursk*", "Troops in Kurskaya oblast", "", True, ("Kursk*",)),
        ("Kursk", "Kursk's governor", "", True, ("Kursk",)),
        ("sanction*", "New sanctions", "", True, ("sanction*",)),
        ("organi?ation", "The organisation", "", True, ("organi?ation",)),
        ("organi?ation", "The organization", "", True, ("organi?ation",)),
        ("organi?ation", "The organiation", "", False, ()),
        # case and accents
        ("Koursk", "KOURSK", "", True, ("Koursk",)),
        ("koursk", "La région de Koursk", "", True, ("koursk",)),
        ('"Corée du Nord"', "LA COREE DU NORD", "", True, ('"Corée du Nord"',)),
        ('"Coree du Nord"', "la Corée du Nord", "", True, ('"Coree du Nord"',)),
        # French elision and apostrophes of every kind
        ("OTAN", "Selon l’OTAN", "", True, ("OTAN",)),
        ("OTAN", "Selon l'OTAN", "", True, ("OTAN",)),
        ("l'OTAN", "OTAN summit", "", True, ("l'OTAN",)),
        ("l’OTAN", "selon l'OTAN", "", True, ("l’OTAN",)),
        ('"défense de l\'Ukraine"', "la défense de l’Ukraine", "", True, ('"défense de l\'Ukraine"',)),
        # hyphens and dashes
        ("nord-coréen", "des soldats nord-coréen", "", True, ("nord-coréen",)),
        ("nord-coréen", "des soldats nord coréen", "", True, ("nord-coréen",)),
        ("nord-coréen", "des soldats nord–coréen", "", True, ("nord-coréen",)),
        ("nord-coréen", "des soldats nordcoréen", "", False, ()),
        ("nord-coréen", "des soldats nord-coréens", "", False, ()),
        ("nord-coréen*", "des soldats nord-coréens", "", True, ("nord-coréen*",)),
        # Cyrillic: case folded, whole words unless wildcarded
        ("Курск", "бои в Курской области", "", False, ()),
        ("Курск*", "бои в Курской области", "", True, ("Курск*",)),
        ("курск", "КУРСК", "", True, ("курск",)),
        ('"Северная Корея"', "СЕВЕРНАЯ КОРЕЯ и Россия", "", True, ('"Северная Корея"',)),
        # Hangul: a query word is a prefix of the story word (particles are glued on)
        ("북한", "북한은 러시아와", "", True, ("북한",)),
        ("북한", "북한이 파병", "", True, ("북한",)),
        ("북한", "남북한 관계", "", False, ()),
        # phrases: words in order, within one field
        ('"North Korea"', "Korea North", "", False, ()),
        ('"North Korea"', "News from North", "Korea today", False, ()),
        ('"North Korea"', "", "troops from North Korea", True, ('"North Korea"',)),
        # NEAR: either order, within the window, same field
        ('"North Korea" NEAR/5 troops', "North Korea sends troops", "", True, ('"North Korea"', "troops")),
        ('"North Korea" NEAR/5 troops', "troops sent by North Korea", "", True, ("troops", '"North Korea"')),
        # exactly 5 words in between, then 6
        (
            '"North Korea" NEAR/5 troops',
            "troops sent by the regime of North Korea",
            "",
            True,
            ("troops", '"North Korea"'),
        ),
        ('"North Korea" NEAR/5 troops', "troops sent by the old regime of North Korea", "", False, ()),
        ("Kursk NEAR/1 troops", "Kursk troops", "", True, ("Kursk", "troops")),
        ("Kursk NEAR/1 troops", "Kursk border troops", "", True, ("Kursk", "troops")),
        ("Kursk NEAR/1 troops", "Kursk border region troops", "", False, ()),
        ("Kursk NEAR/3 troops", "Kursk", "troops", False, ()),
        ("(Kursk OR Koursk) NEAR/2 (troops OR soldats)", "soldats à Koursk", "", True, ("soldats", "Koursk")),
        # field scopes
        ("title:Kursk", "Kursk", "", True, ("Kursk",)),
        ("title:Kursk", "News", "Kursk", False, ()),
        ("summary:Kursk", "News", "Kursk", True, ("Kursk",)),
        ("summary:Kursk", "Kursk", "News", False, ()),
        ('title:("North Korea" OR DPRK) troops', "DPRK news", "troops", True, ("DPRK", "troops")),
        ('title:("North Korea" OR DPRK) troops', "News", "DPRK troops", False, ()),
        # NOT and -term
        ("Kursk -submarine", "Kursk troops", "", True, ("Kursk",)),
        ("Kursk -submarine", "Kursk submarine anniversary", "", False, ()),
        ('Kursk NOT "nuclear plant"', "Kursk nuclear plant", "", False, ()),
        ('Kursk NOT "nuclear plant"', "Kursk plant nuclear", "", True, ("Kursk",)),
        ("Kursk -title:submarine", "Kursk troops", "the submarine sank", True, ("Kursk",)),
        # AND / OR explanations: every true branch, nothing under NOT
        ("(Kursk OR Koursk) troops", "Kursk and Koursk", "troops", True, ("Kursk", "Koursk", "troops")),
        ("Kursk OR (troops -Kursk)", "Kursk troops", "", True, ("Kursk",)),
        # odd shapes the candidate filter must still get right
        ("NOT NOT Kursk", "Kursk", "", True, ()),  # true, but no hit outside a NOT
        ("NOT NOT Kursk", "Koursk", "", False, ()),
        ("(Kursk -troops) OR (Koursk -soldats)", "Koursk troops", "", True, ("Koursk",)),
        ("(Kursk -troops) OR (Koursk -soldats)", "Koursk soldats Kursk troops", "", False, ()),
        ("title:(Kursk OR Koursk) summary:troops", "Koursk", "troops", True, ("Koursk", "troops")),
        # aliases
        ("@dprk @russia", "La Corée du Nord et la Russie", "", True, ('"Corée du Nord"', "Russie")),
        ("@dprk @russia", "북한은 러시아와 조약", "", True, ("북한", "러시아")),
        ("@dprk @russia", "КНДР и Россия", "", True, ("КНДР", "Россия")),
        ("@dprk @russia", "Des soldats nord-coréens", "en Russie", True, ("nord-coréen*", "Russie")),
        ("@dprk @russia", "North Korea", "", False, ()),
    ],
)
def test_match(query: str, title: str, summary: str, matched: bool, terms: tuple[str, ...]) -> None:
    matcher = compile_query(query, ALIASES)
    results = matcher.match(title, summary)
    assert bool(results) is matched
    assert (matcher.match_one("query", title, summary) is not None) is matched
    if matched:
        (result,) = results
        assert result.watchlist == "query"
        assert result.terms == terms
        _check_offsets(result, title, summary)


@pytest.mark.parametrize(
    ("stem", "text", "matched"),
    [
        ((), "sanction", True),
        ((), "sanctions", False),
        (("en",), "sanctions", True),
        (("en",), "sanctioned", True),
        (("en",), "sanctioning", True),
        (("en",), "sanctionner", False),
        (("fr",), "sanctionne", True),
        (("fr",), "sanctionnés", True),
        (("fr",), "sanctionnée", True),
        (("fr",), "sanctionner", True),
        (("en", "fr"), "sanctions", True),
        (("en", "fr"), "sanctionnés", True),
        (("en", "fr"), "sanctuary", False),  # a different word, not an inflection
        (("en", "fr"), "sanctity", False),
    ],
)
def test_stemming_applies_only_when_asked(stem: tuple[str, ...], text: str, matched: bool) -> None:
    matcher = compile_query("sanction", stem=stem)
    result = matcher.match(f"New {text} announced", "")
    assert bool(result) is matched
    if matched:
        assert [(h.term, h.text) for h in result[0].hits] == [("sanction", text)]


@pytest.mark.parametrize(
    ("query", "text", "matched"),
    [
        ("treaty", "two treaties signed", True),
        ("nord-coréen", "des soldats nord-coréens", True),  # hyphenated: every part stemmed
        ("nord-coréen", "des soldats nord coréennes", True),
        ('"North Korean troops"', "North Korean troop movements", False),  # phrases are not stemmed
        ("troop*", "troopers", True),  # a wildcard stays a wildcard
        ("Kursk", "Kursks", True),
    ],
)
def test_stemmed_watchlist(query: str, text: str, matched: bool) -> None:
    matcher = compile_query(query, stem=("en", "fr"))
    results = matcher.match(text, "")
    assert bool(results) is matched
    if matched:
        _check_offsets(results[0], text, "")


def test_hits_point_into_the_original_text() -> None:
    title = "Selon l’OTAN, des soldats NORD–CORÉENS sont à Koursk"
    summary = "Pyongyang et Moscou… la « Corée du Nord » a envoyé des troupes. Straße. Koursk!"
    matcher = Matcher(
        [WatchlistQuery("kursk-troops", "@dprk (soldats OR troupes) (Kursk OR Koursk OR OTAN)", ("fr",))],
        ALIASES,
    )
    (result,) = matcher.match(title, summary)
    assert [(h.field, h.term, h.text) for h in result.hits] == [
        ("title", "OTAN", "OTAN"),
        ("title", "soldats", "soldats"),
        ("title", "nord-coréen*", "NORD–CORÉENS"),
        ("title", "Koursk", "Koursk"),
        ("summary", "Pyongyang", "Pyongyang"),
        ("summary", '"Corée du Nord"', "Corée du Nord"),
        ("summary", "troupes", "troupes"),
        ("summary", "Koursk", "Koursk"),
    ]
    _check_offsets(result, title, summary)
    assert result.terms == (
        "OTAN",
        "soldats",
        "nord-coréen*",
        "Koursk",
        "Pyongyang",
        '"Corée du Nord"',
        "troupes",
    )


def test_near_reports_only_the_occurrences_that_are_near() -> None:
    title = "Troops: Kursk fighting, far away from anything in the text, then troops again"
    (result,) = compile_query("Kursk NEAR/2 troops").match(title, "")
    assert [(h.text, h.start) for h in result.hits] == [("Troops", 0), ("Kursk", 8)]


def test_hits_in_decomposed_and_expanded_text() -> None:
    title = "Core\u0301e du Nord : l\u2019\u0152uvre de Pyongyang\u2026 Stra\u00dfe"
    (result,) = compile_query('"Corée du Nord" OR oeuvre OR strasse').match(title, "")
    assert [h.text for h in result.hits] == ["Core\u0301e du Nord", "\u0152uvre", "Stra\u00dfe"]
    _check_offsets(result, title, "")


def test_results_come_in_watchlist_order_with_names() -> None:
    watchlists = [
        WatchlistQuery("z-sanctions", "sanction* (Russia OR DPRK)"),
        WatchlistQuery("a-kursk", "Kursk"),
        WatchlistQuery("m-none", "Pyongyang"),
        WatchlistQuery("b-both", "Kursk sanction*"),
    ]
    matcher = Matcher(watchlists)
    assert matcher.names == ("z-sanctions", "a-kursk", "m-none", "b-both")
    results = matcher.match("Russia faces sanctions over Kursk", "")
    assert [r.watchlist for r in results] == ["z-sanctions", "a-kursk", "b-both"]
    assert matcher.match_one("m-none", "Russia faces sanctions over Kursk", "") is None
    with pytest.raises(KeyError):
        matcher.match_one("unknown", "", "")


def test_many_watchlists_agree_with_one_at_a_time() -> None:
    """The shared automaton and candidate filter give exactly what each watchlist gives
    on its own, over real feed entries."""
    queries = [
        "Russie OR russe* OR Moscou OR Kremlin",
        "Ukraine -Kremlin",
        '"guerre en Ukraine" OR (Kiev NEAR/5 Moscou)',
        "title:Moscou summary:(EI OR État*)",
        "Trump OR Biden OR Kennedy",
        "Baltimore pont",
        "(Brésil OR Lula) climat*",
        "Poutine Navalny",
        "sanction* OR restriction*",
        "attentat",
    ]
    watchlists = [WatchlistQuery(f"w{i}", q, ("fr",) if i % 2 else ()) for i, q in enumerate(queries)]
    together = Matcher(watchlists)
    alone = {w.name: Matcher([w]) for w in watchlists}
    entries = feedparser.parse((FIXTURES / "lemonde-international-rss2-fr.xml").read_bytes()).entries
    seen = 0
    for entry in entries:
        title, summary = entry.title.strip(), entry.summary.strip()
        expected = [r for w in watchlists for r in alone[w.name].match(title, summary)]
        got = together.match(title, summary)
        assert [(r.watchlist, r.hits) for r in got] == [(r.watchlist, r.hits) for r in expected]
        for r in got:
            _check_offsets(r, title, summary)
        seen += len(got)
    assert seen >= 10


def test_real_feed_titles() -> None:
    entries = feedparser.parse((FIXTURES / "lemonde-international-rss2-fr.xml").read_bytes()).entries
    titles = {e.title.strip(): e for e in entries}
    matcher = Matcher([WatchlistQuery("russie", "@russia -Ukraine")], ALIASES)
    title = "Attentat près de Moscou : l’EI-K, nouvelle menace terroriste mondiale ?"
    entry = titles[title]
    (result,) = matcher.match(title, entry.summary)
    assert result.hits[0] == Hit("Moscou", "title", 17, 23, "Moscou")
    _check_offsets(result, title, entry.summary)
    war = next(t for t in titles if t.startswith("En direct, guerre en Ukraine"))
    assert matcher.match(war, titles[war].summary) == []


def test_matcher_pickles_and_rebuilds() -> None:
    matcher = Matcher([WatchlistQuery("kt", "@dprk (troops OR soldats) Kursk*", ("en",))], ALIASES)
    copy = pickle.loads(pickle.dumps(matcher))
    story = ("North Korean soldiers in Kurskaya", "DPRK troops near Kursk")
    assert copy.match(*story) == matcher.match(*story) != []
    assert copy.names == ("kt",)


def test_errors_name_the_watchlist_or_the_alias() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        Matcher([WatchlistQuery("ok", "Kursk"), WatchlistQuery("bad", "Kursk AND (troops")])
    assert (info.value.watchlist, info.value.column) == ("bad", 18)
    assert str(info.value).startswith("watchlist 'bad': unclosed '(' at column 18")

    with pytest.raises(QuerySyntaxError) as info:
        Matcher([WatchlistQuery("w", "@a")], {"a": "x OR"})
    assert (info.value.watchlist, info.value.query) == ("@a", "x OR")

    with pytest.raises(QuerySyntaxError) as info:
        compile_query("Kursk or Koursk")
    assert info.value.watchlist == "query"


@pytest.mark.parametrize(
    ("watchlists", "message"),
    [
        ([WatchlistQuery("a", "x"), WatchlistQuery("a", "y")], "duplicate watchlist name 'a'"),
        ([WatchlistQuery("a", "x", ("de",))], "watchlist 'a': no stemmer for language 'de'"),
    ],
)
def test_config_errors(watchlists: list[WatchlistQuery], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Matcher(watchlists)


def test_two_hundred_watchlists_build_in_well_under_a_second() -> None:
    """The daemon rebuilds the matcher on every config reload."""
    words = sorted({w for t in _lemonde_titles() for w in t.split() if w.isalpha() and len(w) > 4})
    assert len(words) > 100
    watchlists = [
        WatchlistQuery(
            f"w{i}",
            f"(@dprk OR {words[i % len(words)]} OR {words[(i * 7) % len(words)]}*) "
            f'(@russia OR "{words[(i * 3) % len(words)]} {words[(i * 5) % len(words)]}") '
            f"-{words[(i * 11) % len(words)]}",
            ("en", "fr") if i % 3 == 0 else (),
        )
        for i in range(200)
    ]
    started = time.perf_counter()
    matcher = Matcher(watchlists, ALIASES)
    assert time.perf_counter() - started < 1.0
    assert len(matcher.names) == 200


def _lemonde_titles() -> list[str]:
    entries = feedparser.parse((FIXTURES / "lemonde-international-rss2-fr.xml").read_bytes()).entries
    return [e.title.strip() for e in entries] + [e.summary.strip() for e in entries]


def test_no_watchlists_match_nothing() -> None:
    matcher = Matcher([])
    assert matcher.names == ()
    assert matcher.match("Kursk", "troops") == []


@pytest.mark.parametrize(
    ("query", "title", "summary", "expected"),
    [
        # phrases are found across punctuation and tokens, never across title and summary
        ('"North Korea"', "North Korea's troops", "", [("title", "North Korea")]),
        ('"North Korea"', "Troops of North", "Korea deploys", []),
        ('"North Korea"', "Of North Korea", "North Korea's", [("title", "North Korea"), ("summary", "North Korea")]),
        ('"the army"', "the the army", "", [("title", "the army")]),
        ('"Kim Jong Un"', "", "Leader Kim Jong-Un said", [("summary", "Kim Jong-Un")]),
        # a prefix wildcard after a phrase word, within one token and across two
        ("nord-coréen*", "soldats nord-coréens", "", [("title", "nord-coréens")]),
        ("nord-coréen*", "soldats nord coréens", "", [("title", "nord coréens")]),
        ("nord-coréen*", "soldats nord", "coréens", []),
        # '?' wildcards: in one word, and in a phrase whose trigger starts mid-word
        ("sanc?ion*", "New sanctions", "", [("title", "sanctions")]),
        ('"ab?c de fg"', "xx abxc de fg yy", "", [("title", "abxc de fg")]),
        ('"ab?c de fg"', "xx abxc de fh", "", []),
        # Hangul: a query word is a prefix of the story word (particles attach to nouns)
        ('"북한 군대"', "북한 군대가", "", [("title", "북한 군대")]),
    ],
)
def test_terms_spanning_words(query: str, title: str, summary: str, expected: list[tuple[str, str]]) -> None:
    """Terms of several words are found where they start (the per-word memo) and checked
    against the words that follow, in the same field only."""
    (result,) = compile_query(query).match(title, summary) or [MatchResult("none", ())]
    assert [(h.field, h.text) for h in result.hits] == expected
    _check_offsets(result, title, summary)


def test_results_do_not_depend_on_what_the_memos_remember() -> None:
    """The per-word and per-token memos are bounded: cleared when full. A matcher whose
    memos hold three entries (so they clear inside almost every story) gives exactly the
    results of one with room to spare, over real feed entries and many watchlists."""
    queries = [
        "@russia -Ukraine",
        '@dprk (troops OR soldats OR "forces armées") Kursk*',
        '"guerre en Ukraine" OR (Kiev NEAR/5 Moscou)',
        "title:Moscou summary:(EI OR État*)",
        "organi?ation* OR sanc?ion*",
        '"Gaza" OR "Israël" OR "Hamas"',
        "sanction* traité",
        "nord-coréen* OR 북한",
    ]
    watchlists = [WatchlistQuery(f"w{i}", q, ("en", "fr") if i % 2 else ()) for i, q in enumerate(queries)]
    roomy = Matcher(watchlists, ALIASES)
    cramped = Matcher(watchlists, ALIASES)
    cramped._word_keys.limit = 3  # private: force the clearing paths
    cramped._token_words.limit = 3
    seen = 0
    for feed in _fixture_feeds():
        for title, summary in feed[:40]:
            expected = roomy.match(title, summary)
            assert cramped.match(title, summary) == expected
            seen += len(expected)
    assert cramped._word_keys.clears > 100
    assert seen >= 20


def test_words_begin_with_the_head_of_their_stem() -> None:
    """The matcher stems a word only if it begins with the head of some stem key; that
    is sound because every word begins with the head of its own stem (all but the last
    letter of the stem, at most four; the whole stem if it has three letters or fewer)."""
    vocabulary = {w for path in FIXTURES.glob("*.xml") for w in words(fold(path.read_text(errors="replace")))}
    vocabulary |= {"ties", "uses", "toys", "treaty", "treaties", "ally", "allies", "agreed", "axes", "hills", "bannis"}
    for lang in LANGUAGES:
        for word in vocabulary:
            assert word.startswith(_stem_head(stem(word, lang))), (lang, word)


@pytest.mark.parametrize(
    ("query", "text"),
    [("hill", "Azabudai Hills"), ("ax", "new axes"), ("treaty", "the treaties"), ("ally", "allies")],
)
def test_short_stems_still_match(query: str, text: str) -> None:
    """Stems of three letters or fewer (``hil`` from ``hills``, ``ax`` from ``axes``)."""
    assert compile_query(query, stem=("en", "fr")).match(text, "") != []


@pytest.mark.parametrize(
    "summary",
    [
        "Troops from North Korea in Kursk",  # single spaces
        "  Troops from\tNorth  Korea\u00a0in\n\nKursk  ",  # any whitespace, any amount
        "Troops\u3000from North\u2003Korea in Kursk",  # ideographic and em spaces
    ],
)
def test_hit_offsets_whatever_the_whitespace(summary: str) -> None:
    """Offsets come from each word's token and the token's place in the text."""
    (result,) = compile_query('"North Korea" Kursk troops').match("", summary)
    phrase = re.search(r"North\s+Korea", summary)
    assert phrase is not None
    assert [(h.text, h.start) for h in result.hits] == [
        ("Troops", summary.index("Troops")),
        (phrase.group(), phrase.start()),
        ("Kursk", summary.index("Kursk")),
    ]


@pytest.mark.parametrize("others", [3, 30])
def test_a_story_that_is_a_candidate_of_many_watchlists(others: int) -> None:
    """Many watchlists share their rarest term (a story about Russia is a candidate of all
    of them): the second filter keeps exactly those whose other group meets the story,
    whether it checks the few candidates one by one or the many by sets."""
    queries = ["Kremlin"] + [f"Kremlin AND (word{i} OR term{i})" for i in range(others)]
    watchlists = [WatchlistQuery(f"w{i}", q) for i, q in enumerate(queries)]
    matcher = Matcher(watchlists)
    got = matcher.match("The Kremlin", "word1 and term2, not word")
    assert [r.watchlist for r in got] == ["w0", "w2", "w3"]
    assert [r.terms for r in got] == [("Kremlin",), ("Kremlin", "word1"), ("Kremlin", "term2")]


def test_benchmark_script_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """bench/match.py (figures only, no timing asserted) still runs against this matcher:
    it reaches into private parts for its diagnostic."""
    spec = importlib.util.spec_from_file_location("bench_match", Path(__file__).parents[1] / "bench" / "match.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--stories", "300", "--runs", "1", "--watchlists", "4", "--scale", "3", "--per-feed", "20"])
    out = capsys.readouterr().out
    assert "ratio match/parse at 4 watchlists" in out
    assert "ratio 12/4 watchlists" in out


def test_many_varied_watchlists_agree_with_one_at_a_time_on_every_feed() -> None:
    """Shared memos, candidate filter and explanations give exactly what each watchlist
    gives alone, for every kind of term, over the entries of every fixture feed."""
    forms = [
        '"{a} {b}" OR {c}*',
        "{a_}? OR ({b} NEAR/3 {c})",
        "title:{a} OR summary:({b} {c})",
        "{a4}* -{b}",
        '"{a2}?{a3} {b}" OR {c}',
        "@dprk OR @russia OR {a}",
        "({a} OR {b}) AND ({c} OR {a4}*)",
    ]
    texts = [text for feed in _fixture_feeds() for text in feed[:15]]
    vocabulary = sorted({w for t, s in texts for w in f"{t} {s}".split() if w.isalpha() and 4 < len(w) < 12})
    rng = random.Random(3)
    watchlists = []
    for i in range(42):
        a, b, c = rng.sample(vocabulary, 3)
        query = forms[i % len(forms)].format(a=a, b=b, c=c, a_=a[:-1], a4=a[:4], a2=a[:2], a3=a[3:])
        watchlists.append(WatchlistQuery(f"w{i}", query, ("en", "fr") if i % 3 == 0 else ()))
    together = Matcher(watchlists, ALIASES)
    alone = [Matcher([w], ALIASES) for w in watchlists]
    seen = 0
    for title, summary in texts:
        expected = [r for m in alone for r in m.match(title, summary)]
        assert together.match(title, summary) == expected
        seen += len(expected)
    assert seen >= 50


@functools.cache
def _fixture_feeds() -> tuple[tuple[tuple[str, str], ...], ...]:
    """(title, summary) of the entries of each fixture feed, raw as feedparser gives them
    (HTML included), parsed once for the tests that want many real stories. The 1.6 MB
    podcast feed is left out: 730 near-identical entries, slow to parse."""
    return tuple(
        tuple((str(e.get("title", "")), str(e.get("summary", ""))) for e in feedparser.parse(path.read_bytes()).entries)
        for path in sorted(FIXTURES.glob("*.xml"))
        if not path.name.startswith("giantbomb-")
    )
