"""Event clustering on plain values: transliteration, numbers, joins, near misses, window,
the candidate index and B-cubed scoring."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.clustering.clusterer import SAME_TEXT, Clusterer, Placement
from monitor.clustering.decide import Settings, assign
from monitor.clustering.features import (
    Story,
    normalise_numbers,
    romanise_hangul,
    signature,
    translit_key,
    vocabulary,
)
from monitor.clustering.index import CandidateIndex
from monitor.clustering.score import b_cubed
from monitor.matching.textnorm import fold, words

ALIASES = {
    "dprk": '"North Korea*" | DPRK | Pyongyang | "Corée du Nord" | nord-coréen* | КНДР | "Северная Корея" | 북한',
    "russia": "Russia | Russian* | Moscow | Kremlin | Putin | Lavrov | Russie | russe | Moscou | Poutine | Росси*",
    "pact": "treaty | pact | traité | pacte | договор*",
}
VOCAB = vocabulary(ALIASES)
T0 = datetime(2024, 11, 4, 9, 0, tzinfo=UTC)


def _keys(text: str) -> list[str]:
    return [translit_key(w) for w in words(fold(text))]


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Sergei Lavrov", "Sergueï Lavrov"),
        ("Sergei Lavrov", "Сергей Лавров"),
        ("Sergey Lavrov", "Sergei Lavrov"),
        ("Kim Jong Un", "Kim Jong-un"),
        ("Kim Jong Un", "Kim Jong-oun"),
        ("Choe Son Hui", "Choe Son-hui"),
        ("Choe Son Hui", "Tchoe Son-hui"),
        ("Kursk", "Koursk"),
        ("Kursk", "Курск"),
        ("Shoigu", "Шойгу"),
    ],
)
def test_transliterations_of_one_name_fold_together(a: str, b: str) -> None:
    assert _keys(a) == _keys(b)


@pytest.mark.parametrize(
    ("hangul", "latin"),
    [("김정은", "Kim Jong Un"), ("최선희", "Choe Son Hui"), ("쇼이구", "Shoigu"), ("푸틴", "Putin")],
)
def test_korean_names_meet_their_wire_spelling(hangul: str, latin: str) -> None:
    assert romanise_hangul(hangul) == "".join(_keys(latin))


@pytest.mark.parametrize(("a", "b"), [("Lavrov", "Putin"), ("Kim", "Choe"), ("Kursk", "Kyiv")])
def test_different_names_stay_different(a: str, b: str) -> None:
    assert _keys(a) != _keys(b)


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("10,000 troops", ("10000",)),
        ("10 000 soldats", ("10000",)),
        ("10.000 Soldaten", ("10000",)),
        ("10\u00a0000 soldats", ("10000",)),
        ("10\u202f000 soldats", ("10000",)),
        ("1,500 killed and 3 000 wounded", ("1500", "3000")),
        ("in 2024 300 soldiers", ("2024", "300")),
        ("a 1.5 km zone, 2,5 km plus loin", ("1.5", "2.5")),
        ("6 тисяч саперів, 6 thousand deminers, 6 mille démineurs", ("6000", "6000", "6000")),
        ("특수부대 1천500명 파병…총 1만2천명 규모, 8천명", ("1500", "12000", "8000")),
        ("no figure here", ()),
    ],
)
def test_numbers_are_normalised(text: str, numbers: tuple[str, ...]) -> None:
    assert normalise_numbers(text) == numbers


def _story(title: str, summary: str, language: str, hours: float) -> Story:
    return Story(title, summary, language, T0 + timedelta(hours=hours))


def _run(stories: list[Story], settings: Settings | None = None) -> list[str]:
    settings = settings or Settings()
    index = CandidateIndex(keep=2 * settings.window)
    out: list[str] = []
    for i, story in enumerate(stories):
        sig = signature(story, VOCAB)
        chosen = assign(sig, index, settings).cluster
        cluster = str(i) if chosen is None else chosen
        index.add(cluster, sig)
        out.append(cluster)
    return out


RATIFY_EN = _story(
    "North Korea ratifies defence treaty with Russia - Reuters",
    "Kim Jong Un ratified the mutual defence treaty with Russia by decree, KCNA said on Tuesday.",
    "en",
    0,
)
RATIFY_FR = _story(
    "Kim Jong-un ratifie le traité de défense avec la Russie (AFP)",
    "Le dirigeant nord-coréen Kim Jong-un a ratifié par décret le traité de défense mutuelle avec la Russie,"
    " selon KCNA.",
    "fr",
    3,
)
RATIFY_EN_2 = _story(
    "(LEAD) N. Korea's Kim ratifies mutual defense treaty with Russia",
    "North Korean leader Kim Jong Un has ratified the defense treaty with Russia by decree, state media KCNA said.",
    "en",
    2,
)
US_SANCTIONS = _story(
    "US sanctions North Korean firms over arms shipments to Russia",
    "The US Treasury imposed sanctions on North Korean companies shipping artillery shells to Russia.",
    "en",
    0,
)
UK_SANCTIONS = _story(
    "UK sanctions North Korean firms over arms shipments to Russia",
    "Britain imposed sanctions on North Korean companies shipping artillery shells to Russia.",
    "en",
    4,
)
TROOPS_10000 = _story(
    "North Korea has sent 10,000 troops to Russia, Pentagon says",
    "About 10,000 North Korean soldiers are in Russia's Kursk region, the Pentagon said.",
    "en",
    0,
)
TROOPS_11000 = _story(
    "North Korea has sent 11,000 troops to Russia, Pentagon says",
    "About 11,000 North Korean soldiers are in Russia's Kursk region, the Pentagon said.",
    "en",
    30,
)
CAPTURE = _story(
    "Ukraine captures two North Korean soldiers in Kursk, Zelensky says",
    "President Volodymyr Zelensky said Ukrainian forces captured two North Korean soldiers in Kursk.",
    "en",
    0,
)
SWAP = _story(
    "Zelensky offers to hand North Korean prisoners to Kim in exchange for Ukrainians",
    "Ukraine is ready to hand the two soldiers over to Kim Jong Un if he can organise their exchange for"
    " Ukrainians held in Russia, Zelensky said in a video.",
    "en",
    26,
)
VIETNAM = _story(
    "Putin arrives in Vietnam for a state visit",
    "Russian President Vladimir Putin landed in Hanoi, where he will meet To Lam.",
    "en",
    1,
)


@pytest.mark.parametrize(
    "stories",
    [
        pytest.param([RATIFY_EN, RATIFY_EN_2], id="two English wires"),
        pytest.param([RATIFY_EN, RATIFY_EN_2, RATIFY_FR], id="a French rewrite joins"),
    ],
)
def test_tellings_of_one_event_join(stories: list[Story]) -> None:
    assert len(set(_run(stories))) == 1


@pytest.mark.parametrize(
    "stories",
    [
        pytest.param([US_SANCTIONS, UK_SANCTIONS], id="same sanctions by two issuers"),
        pytest.param([TROOPS_10000, TROOPS_11000], id="one figure, then a new one"),
        pytest.param([RATIFY_EN, VIETNAM], id="unrelated story of one actor"),
        pytest.param([CAPTURE, SWAP], id="a new act the next day"),
    ],
)
def test_near_misses_stay_apart(stories: list[Story]) -> None:
    assert len(set(_run(stories))) == len(stories)


@pytest.mark.parametrize(("hours", "joined"), [(2, True), (71, True), (73, False), (-73, False)])
def test_the_window_bounds_a_join(hours: float, joined: bool) -> None:
    later = _story(RATIFY_EN_2.title, RATIFY_EN_2.summary, "en", hours)
    settings = Settings(half_life=timedelta(days=365))  # no decay: the window alone decides
    clusters = _run([RATIFY_EN, later], settings)
    assert (clusters[0] == clusters[1]) is joined


def test_index_forgets_clusters_past_keep() -> None:
    index = CandidateIndex(keep=timedelta(hours=10))
    index.add("0", signature(RATIFY_EN, VOCAB))
    later = signature(_story(RATIFY_EN.title, RATIFY_EN.summary, "en", 11), VOCAB)
    assert index.candidates(later) == ("0",)
    index.add("1", later)
    assert index.candidates(later) == ("1",) and len(index) == 1


def test_an_assignment_says_what_is_shared() -> None:
    index = CandidateIndex()
    index.add("7", signature(RATIFY_EN, VOCAB))
    got = assign(signature(RATIFY_EN_2, VOCAB), index)
    assert got.cluster == "7" and got.score > 0 and "a:ratify" in got.shared


@pytest.mark.parametrize(
    ("predicted", "gold", "precision", "recall"),
    [
        ({"a": 1, "b": 1, "c": 2}, {"a": "x", "b": "x", "c": "y"}, 1.0, 1.0),
        ({"a": 1, "b": 1, "c": 1}, {"a": "x", "b": "x", "c": "y"}, (2 / 3 + 2 / 3 + 1 / 3) / 3, 1.0),
        ({"a": 1, "b": 2, "c": 3}, {"a": "x", "b": "x", "c": "y"}, 1.0, (1 / 2 + 1 / 2 + 1) / 3),
        ({"a": 1, "b": 1, "c": 2, "d": 2}, {"a": "x", "b": "y", "c": "x", "d": "y"}, 0.5, 0.5),
        ({}, {}, 1.0, 1.0),
    ],
)
def test_b_cubed_on_hand_examples(
    predicted: dict[str, int], gold: dict[str, str], precision: float, recall: float
) -> None:
    score = b_cubed(predicted, gold)
    assert score.precision == pytest.approx(precision) and score.recall == pytest.approx(recall)


def test_b_cubed_refuses_different_items() -> None:
    with pytest.raises(ValueError, match="same items"):
        b_cubed({"a": 1}, {"b": "x"})


def test_index_takes_a_story_back_out() -> None:
    index = CandidateIndex()
    first = signature(RATIFY_EN, VOCAB)
    index.add("a", first, "a")
    before = {f: index.weight(f) for f in first.features()}
    index.add("a", signature(RATIFY_EN_2, VOCAB), "b", frozenset({"pact"}))
    assert index.alerted("a") == {"pact"} and index.cluster_of("b") == "a"
    index.discard("b")
    assert index.alerted("a") == frozenset() and index.cluster_of("b") is None
    assert {f: index.weight(f) for f in first.features()} == before  # frequencies as they were
    assert len(index.members("a")) == 1
    index.discard("a")
    assert len(index) == 0 and index.candidates(first) == ()
    index.add("c", first, "c")  # the emptied cluster's heap entry is skipped, not evicted twice
    assert index.candidates(first) == ("c",)


def test_an_index_files_a_story_once() -> None:
    index = CandidateIndex()
    index.add("a", signature(RATIFY_EN, VOCAB), "a")
    index.add("b", signature(RATIFY_EN, VOCAB), "a")  # stored by another daemon meanwhile
    assert index.cluster_of("a") == "a" and len(index) == 1 and index.stories == 1


def test_a_story_republished_word_for_word_joins_without_a_search() -> None:
    clusterer = Clusterer(VOCAB)
    first = clusterer.sign(RATIFY_EN.title, RATIFY_EN.summary, "en", RATIFY_EN.published, "wire")
    assert clusterer.place("a", first).cluster == "a"
    later = RATIFY_EN.published + timedelta(hours=2)
    copy = clusterer.sign(RATIFY_EN.title, RATIFY_EN.summary, "en-GB", later, "paper")
    assert copy.features() == first.features() and copy.outlet == "paper"  # the text is read once
    assert clusterer.place("b", copy) == Placement("a", 1.0, (SAME_TEXT,))
    late = clusterer.sign(RATIFY_EN.title, RATIFY_EN.summary, "en", RATIFY_EN.published + timedelta(hours=80), "x")
    assert clusterer.place("c", late).cluster == "c"  # past the window: a story of its own
