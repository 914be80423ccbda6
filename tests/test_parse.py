"""parse_feed over the real-world RSS, Atom and RDF fixtures (tests/fixtures/, see
SOURCES.md there) and over crafted inputs: HTML pages, garbage, entity bombs, inputs that
crash feedparser (the XML format, ``monitor.ingest.formats.xml``); and the ParsePool
(``monitor.ingest.pool``) that runs it in worker processes under a deadline. JSON Feed
and the choice between formats: ``tests/test_jsonfeed.py``."""

from __future__ import annotations

import codecs
import os
import pickle
import random
import re
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.errors import ParseError
from monitor.ingest import dedupe
from monitor.ingest.formats import ParsedFeed, parse_feed
from monitor.ingest.pool import ParseJob, ParsePool

FIXTURES = Path(__file__).parent / "fixtures"
FETCHED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def parse(body: bytes, url: str = "https://example.org/feed.xml", **kwargs: object) -> ParsedFeed:
    kwargs.setdefault("content_type", None)
    kwargs.setdefault("fetched_at", FETCHED)
    return parse_feed(body, url=url, **kwargs)  # type: ignore[arg-type]


def rss(items: str, channel: str = "<title>Test feed</title><link>https://example.org/</link>") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
        f"{channel}{items}</channel></rss>"
    ).encode()


# --- the real fixtures ----------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    file: str
    url: str
    count: int
    title: str  # the title of the first entry
    language: str | None
    dated: bool = True  # every entry carries its own date


FIXTURE_CASES = [
    Case(
        "bbc-news-front-page-rss2.xml",
        "https://feeds.bbci.co.uk/news/rss.xml",
        16,
        "Firm in data scandal 'made election boasts'",
        "en",
    ),
    Case(
        "bbc-urdu-rss2-ur.xml",
        "https://feeds.bbci.co.uk/urdu/rss.xml",
        26,
        "امریکی عسکری امداد کی بندش کی وجوہات: انڈیا سے جنگ، جوہری پروگرام اور اب دہشت گردوں کی پشت پناہی",
        "ur",
    ),
    Case(
        "nyt-top-stories-rss2.xml",
        "https://rss.nytimes.com/services/xml/rss/nyt/HomePage.xml",
        25,
        "Can the Palestinian Authority Really Govern Gaza After the War?",
        "en",
    ),
    Case(
        "npr-news-rss2.xml",
        "https://feeds.npr.org/1001/rss.xml",
        15,
        "Oscar Pistorius, Paralympian convicted of murder, to be released on parole",
        "en",
    ),
    Case(
        "japantimes-latest-rss2.xml",
        "https://www.japantimes.co.jp/feed/",
        30,
        "Syphilis cases hit record high for third straight year in Japan",
        "en",
    ),
    Case(
        "reuters-worldnews-feedburner-rss2-2018-crlf.xml",
        "http://feeds.reuters.com/Reuters/worldNews",
        10,
        "U.S. general says North Korea not demonstrated all components of ICBM",
        "en",
    ),
    Case(
        "huffpost-world-news-rss2-meta-in-rss.xml",
        "https://www.huffpost.com/section/world-news/feed",
        31,
        "Thousands Of Protesters Demand Civilian Rule In Sudan, Soldiers Fire Shots In Air",
        "en",
    ),
    Case(
        "guardian-us-edition-rss2-2018.xml",
        "https://www.theguardian.com/us/rss",
        55,
        "Trump State of the Union address promised unity but emphasized discord",
        "en",
    ),
    Case(
        "lemonde-international-rss2-fr.xml",
        "https://www.lemonde.fr/international/rss_full.xml",
        20,
        "« Les soldats de Louis XVI qui combattirent aux côtés des révolutionnaires américains "
        "jouèrent un rôle déterminant dans la Révolution française »",
        "fr",
    ),
    Case(
        "tpm-all-news-atom-2017.xml",
        "https://talkingpointsmemo.com/feed/all",
        20,
        "Hannity Announces Fox Has Hired Sebastian Gorka As NatSec Strategist",
        "en",
    ),
    Case(
        "heise-developer-atom-de.xml",
        "https://www.heise.de/developer/rss/news-atom.xml",
        15,
        "Java-Anwendungsserver: Red Hat gibt WildFly 10 frei",
        None,
    ),
    Case(
        "heise-online-rss090-rdf-de.xml",
        "https://www.heise.de/newsticker/heise.rdf",
        60,
        "OLED-TVs: Vorsichtsmaßnahmen gegen Einbrennen",
        None,
        dated=False,
    ),
    Case(
        "golem-de-rss2-iso-8859-1.xml",
        "https://rss.golem.de/rss.php?feed=RSS2.0",
        40,
        "Red Dead Redemption 2: Hinweise auf PC-Umsetzung in App von Rockstar Games",
        "de",
    ),
    Case(
        "jn-pt-ultimas-rss2-pt-iso-8859-1.xml",
        "http://feeds.jn.pt/JN-ULTIMAS",
        40,
        "Mãe de utente é a nova presidente da Raríssimas",
        "pt",
    ),
    Case(
        "uol-noticias-rss2-pt-latin1-undeclared.xml",
        "https://rss.uol.com.br/feed/noticias.xml",
        15,
        "Ibope: Bolsonaro perde de Haddad, Ciro e Alckmin em simulações de 2º turno",
        None,
        dated=False,
    ),
    Case(
        "le-cercle-psy-rss2-fr-iso-8859-1-no-xml-decl.xml",
        "https://le-cercle-psy.scienceshumaines.com/rss",
        9,
        "Perturbateurs endocriniens : quels effets sur le cerveau ?",
        None,
    ),
    Case("ibash-org-ru-rss2-windows-1251.xml", "http://ibash.org.ru/rss.xml", 50, "Цитата #17703", "ru"),
    Case(
        "oren-ru-news-rss2-ru-windows-1251.xml",
        "http://www.oren.ru/rss/",
        10,
        "В Бузулуке главные стройплощадки – детсад и Ледовый дворец",
        None,
    ),
    Case(
        "pcmag-dvorak-feedburner-rss2-illegally-nested.xml",
        "http://feeds.feedburner.com/ziffdavis/pcmag/dvorak",
        10,
        "My Professional Armchair Analysis of CES",
        "en",
    ),
    Case(
        "intertwingly-sam-ruby-atom-relative-links.xml",
        "http://intertwingly.net/blog/index.atom",
        20,
        "Inhibiting Suspend",
        None,
    ),
    Case(
        "feedparser-atom03-xml-base-relative-links.xml",
        "http://example.org/index.atom",
        1,
        "First entry title",
        None,
    ),
    Case("feedparser-rss10-rdf-example.rdf", "http://example.org/index.rdf", 1, "First of all", "en"),
    Case(
        "feedparser-touchnokia-ru-atom-needs-sanitising.xml",
        "http://touchnokia.ru/atom.xml",
        15,
        "Невидимая броня для Вашего Nokia 5800",
        "ru",
    ),
    Case(
        "node-feedparser-saxerror-unescaped-ampersand.xml",
        "http://example.com/feed.xml",
        3,
        "Good Item",
        None,
        dated=False,
    ),
]


@pytest.mark.parametrize("case", FIXTURE_CASES, ids=lambda case: case.file)
def test_fixture(case: Case) -> None:
    feed = parse(fixture(case.file), case.url)
    assert len(feed.entries) == case.count
    first = feed.entries[0]
    assert first.title == case.title
    assert first.language == case.language
    for entry in feed.entries:
        assert entry.title == entry.title.strip() and "\n" not in entry.title
        assert entry.summary == entry.summary.strip()
        assert entry.link is not None and entry.link.startswith(("http://", "https://"))
        assert entry.published_at.tzinfo is UTC
        assert entry.date_from_feed is case.dated
        if not case.dated:
            assert entry.published_at == FETCHED
    assert len({entry.story_key for entry in feed.entries}) == case.count


def test_fixture_parse_is_picklable_and_runs_in_a_process_pool() -> None:
    body = fixture("lemonde-international-rss2-fr.xml")
    url = "https://www.lemonde.fr/international/rss_full.xml"
    local = parse_feed(body, url=url, content_type="application/rss+xml", fetched_at=FETCHED)
    assert pickle.loads(pickle.dumps(local)) == local
    with ProcessPoolExecutor(max_workers=1) as pool:
        remote = pool.submit(
            parse_feed, body, url=url, content_type="application/rss+xml", fetched_at=FETCHED
        ).result(timeout=60)
    assert remote == local


@pytest.mark.parametrize(
    ("file", "feed_title", "feed_link", "feed_language"),
    [
        ("nyt-top-stories-rss2.xml", "NYT > Top Stories", "https://www.nytimes.com", "en"),
        (
            "lemonde-international-rss2-fr.xml",
            "International : Toute l’actualité sur Le Monde.fr.",
            "https://www.lemonde.fr/international/rss_full.xml",
            "fr",
        ),
        (
            "huffpost-world-news-rss2-meta-in-rss.xml",
            "World News - Breaking News, Top Stories",
            "https://www.huffpost.com/section/world-news",
            "en",
        ),
        (
            "jn-pt-ultimas-rss2-pt-iso-8859-1.xml",
            "Jornal de Notícias - Últimas Notícias",
            "http://www.jn.pt",
            "pt",
        ),
        (
            "feedparser-atom03-xml-base-relative-links.xml",
            "Sample Feed",
            "http://example.org/index.html",
            None,
        ),
        ("intertwingly-sam-ruby-atom-relative-links.xml", "Sam Ruby", "http://intertwingly.net/blog/", None),
        (
            "oren-ru-news-rss2-ru-windows-1251.xml",
            "Новости Оренбурга и области / Раздел Новости",
            "http://www.oren.ru",
            None,
        ),
    ],
)
def test_feed_metadata(file: str, feed_title: str, feed_link: str, feed_language: str | None) -> None:
    case = next(case for case in FIXTURE_CASES if case.file == file)
    feed = parse(fixture(file), case.url)
    assert (feed.title, feed.link, feed.language) == (feed_title, feed_link, feed_language)


# --- links ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "url", "index", "link"),
    [
        # relative hrefs, no xml:base: resolved against the feed URL
        (
            "intertwingly-sam-ruby-atom-relative-links.xml",
            "http://intertwingly.net/blog/index.atom",
            0,
            "http://intertwingly.net/blog/2012/07/16/Inhibiting-Suspend",
        ),
        (
            "intertwingly-sam-ruby-atom-relative-links.xml",
            "https://mirror.example.net/feeds/sam.atom",
            0,
            "https://mirror.example.net/blog/2012/07/16/Inhibiting-Suspend",
        ),
        (
            "tpm-all-news-atom-2017.xml",
            "https://talkingpointsmemo.com/feed/all",
            0,
            "https://talkingpointsmemo.com/livewire/hannity-announces-fox-hired-sebastian-gorka-national-security-strategist",
        ),
        # nested xml:base on feed and entry wins over the feed URL
        (
            "feedparser-atom03-xml-base-relative-links.xml",
            "https://elsewhere.example.com/feed",
            0,
            "http://example.org/archives/000001.html",
        ),
        # feedburner:origLink wins over the feedproxy redirect
        (
            "reuters-worldnews-feedburner-rss2-2018-crlf.xml",
            "http://feeds.reuters.com/Reuters/worldNews",
            0,
            "http://www.reuters.com/article/us-northkorea-missiles-usa/u-s-general-says-north-korea-not-demonstrated-"
            "all-components-of-icbm-idUSKBN1FJ23Z?feedType=RSS&feedName=worldNews",
        ),
        (
            "jn-pt-ultimas-rss2-pt-iso-8859-1.xml",
            "http://feeds.jn.pt/JN-ULTIMAS",
            0,
            "https://www.jn.pt/nacional/interior/sonia-laig-e-a-nova-presidente-da-rarissimas-9021600.html",
        ),
        # the unescaped "&" that breaks the XML survives in the recovered link
        (
            "node-feedparser-saxerror-unescaped-ampersand.xml",
            "http://example.com/feed.xml",
            1,
            "http://example.com/bad?foo=1&bar=2",
        ),
    ],
)
def test_entry_links(file: str, url: str, index: int, link: str) -> None:
    assert parse(fixture(file), url).entries[index].link == link


def test_reuters_links_are_the_articles_not_feedburner_redirects() -> None:
    feed = parse(
        fixture("reuters-worldnews-feedburner-rss2-2018-crlf.xml"),
        "http://feeds.reuters.com/Reuters/worldNews",
    )
    for entry in feed.entries:
        assert entry.link is not None and entry.link.startswith("http://www.reuters.com/article/")
        assert entry.canonical_url is not None and "feedType" not in entry.canonical_url
        assert "feedflare" not in entry.summary and "feeds.reuters.com" not in entry.summary


def test_feed_url_credentials_never_reach_links() -> None:
    url = "http://reader:s3cret@intertwingly.net/blog/index.atom"
    feed = parse(fixture("intertwingly-sam-ruby-atom-relative-links.xml"), url)
    assert feed.entries[0].link == "http://intertwingly.net/blog/2012/07/16/Inhibiting-Suspend"
    assert not any("s3cret" in repr(entry) for entry in feed.entries)
    assert "s3cret" not in repr(feed)


# --- dates ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "index", "published_at"),
    [
        (
            "reuters-worldnews-feedburner-rss2-2018-crlf.xml",
            0,
            datetime(2018, 1, 30, 17, 29, 57, tzinfo=UTC),
        ),  # -0500
        ("golem-de-rss2-iso-8859-1.xml", 0, datetime(2018, 10, 28, 12, 48, tzinfo=UTC)),  # +0100
        (
            "pcmag-dvorak-feedburner-rss2-illegally-nested.xml",
            0,
            datetime(2018, 1, 17, 20, 50, tzinfo=UTC),
        ),  # EST
        ("giantbomb-podcast-rss2-huge-1.6mb.xml", 0, datetime(2019, 10, 1, 22, 30, tzinfo=UTC)),  # PST
        ("lemonde-international-rss2-fr.xml", 0, datetime(2024, 3, 27, 8, 0, 14, tzinfo=UTC)),
        ("feedparser-atom03-xml-base-relative-links.xml", 0, datetime(2004, 4, 20, 0, 23, 47, tzinfo=UTC)),
        ("heise-online-rss090-rdf-de.xml", 0, FETCHED),  # no dates at all
    ],
)
def test_entry_dates(file: str, index: int, published_at: datetime) -> None:
    case = next((case for case in FIXTURE_CASES if case.file == file), None)
    feed = parse(fixture(file), case.url if case else "https://www.giantbomb.com/podcast-xml/giant-bombcast/")
    assert feed.entries[index].published_at == published_at


def test_future_date_is_clamped_and_bad_date_falls_back() -> None:
    body = rss(
        "<item><title>From the future</title><link>https://example.org/future</link>"
        "<pubDate>Sat, 01 Jan 2028 00:00:00 GMT</pubDate></item>"
        "<item><title>Slightly early clock</title><link>https://example.org/early</link>"
        "<pubDate>Thu, 01 Jan 2026 12:05:00 GMT</pubDate></item>"
        "<item><title>Nonsense date</title><link>https://example.org/nonsense</link>"
        "<pubDate>the day after tomorrow</pubDate></item>"
    )
    future, early, nonsense = parse(body).entries
    assert (future.published_at, future.date_from_feed) == (FETCHED, False)
    assert (early.published_at, early.date_from_feed) == (FETCHED + timedelta(minutes=5), True)
    assert (nonsense.published_at, nonsense.date_from_feed) == (FETCHED, False)


# --- encodings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "content_type", "expected_text"),
    [
        ("ibash-org-ru-rss2-windows-1251.xml", None, "Цитата #17703"),
        ("oren-ru-news-rss2-ru-windows-1251.xml", "text/xml", "детсад и Ледовый дворец"),
        ("golem-de-rss2-iso-8859-1.xml", None, "Viele Spieler wünschen sich eine PC-Version"),
        ("jn-pt-ultimas-rss2-pt-iso-8859-1.xml", None, "Jornal de Notícias - Últimas Notícias"),
        ("uol-noticias-rss2-pt-latin1-undeclared.xml", None, "Alckmin em simulações de 2º turno"),
        ("uol-noticias-rss2-pt-latin1-undeclared.xml", "text/xml", "Alckmin em simulações de 2º turno"),
        (
            "le-cercle-psy-rss2-fr-iso-8859-1-no-xml-decl.xml",
            None,
            "La criminalité liée surtout à... l'ennui ?",
        ),
        ("le-cercle-psy-rss2-fr-iso-8859-1-no-xml-decl.xml", None, "L'oisiveté est mère de tous les vices"),
        # KOI8-R without any declaration: needs chardet (feedparser asks it before guessing)
        ("feedparser-illformed-ru-koi8-r-no-encoding-decl.xml", None, "Как пережить новогоднюю ночь"),
        # U+0092 written where the cp1252 apostrophe belongs
        ("feedparser-encoding-cp1252-smart-quote-demoronize.xml", None, "don’t"),
        # UTF-8 without declaration, whatever the server says
        ("lemonde-international-rss2-fr.xml", None, "Toute l’actualité sur Le Monde.fr."),
        ("lemonde-international-rss2-fr.xml", "text/xml", "Toute l’actualité sur Le Monde.fr."),
        ("lemonde-international-rss2-fr.xml", "application/rss+xml; charset=ISO-8859-1", "Toute l’actualité"),
        (
            "lemonde-international-rss2-fr.xml",
            "text/html; charset=utf-8",
            "Toute l’actualité sur Le Monde.fr.",
        ),
        ("bbc-urdu-rss2-ur.xml", "application/rss+xml", "امریکی عسکری امداد"),
        ("feedparser-touchnokia-ru-atom-needs-sanitising.xml", None, "Невидимая броня для Вашего"),
    ],
)
def test_decoded_text(file: str, content_type: str | None, expected_text: str) -> None:
    feed = parse(fixture(file), content_type=content_type)
    texts = [feed.title or ""] + [text for entry in feed.entries for text in (entry.title, entry.summary)]
    assert any(expected_text in text for text in texts), texts[:5]
    assert not any("Ã" in text or "Ð" in text or "\ufffd" in text for text in texts)


def test_harmless_bozo_reasons_are_warnings() -> None:
    feed = parse(fixture("le-cercle-psy-rss2-fr-iso-8859-1-no-xml-decl.xml"))
    assert any(warning.startswith("CharacterEncodingOverride") for warning in feed.warnings)
    assert any("1 empty entries dropped" in warning for warning in feed.warnings)
    sax = parse(fixture("node-feedparser-saxerror-unescaped-ampersand.xml"))
    assert any("not well-formed" in warning for warning in sax.warnings)
    assert parse(fixture("nyt-top-stories-rss2.xml"), content_type="application/rss+xml").warnings == ()


# --- fixture quirks -------------------------------------------------------------------


def test_lemonde_titles_lose_the_whitespace_around_cdata() -> None:
    raw = fixture("lemonde-international-rss2-fr.xml").decode("utf-8")
    assert re.search(r"<title>\s+<!\[CDATA\[", raw)  # the quirk is really in the fixture
    feed = parse(
        fixture("lemonde-international-rss2-fr.xml"), "https://www.lemonde.fr/international/rss_full.xml"
    )
    for entry in feed.entries:
        assert entry.title and entry.title == " ".join(entry.title.split())
        assert entry.summary and not entry.summary[0].isspace()
    assert feed.entries[1].title.startswith("Attentat près de Moscou : « La population russe")


def test_pcmag_illegally_nested_items_leave_no_empty_entries() -> None:
    feed = parse(fixture("pcmag-dvorak-feedburner-rss2-illegally-nested.xml"))
    assert len(feed.entries) == 10
    assert all(entry.title and entry.link and entry.date_from_feed for entry in feed.entries)
    assert "10 empty entries dropped (no title, summary or link)" in feed.warnings


def test_huffpost_meta_element_between_rss_and_channel() -> None:
    raw = fixture("huffpost-world-news-rss2-meta-in-rss.xml")
    assert b'<meta content="noindex, nofollow" name="robots" />' in raw
    feed = parse(raw, "https://www.huffpost.com/section/world-news/feed")
    assert len(feed.entries) == 31
    assert all(
        entry.link and entry.link.startswith("https://www.huffpost.com/entry/") for entry in feed.entries
    )


def test_feeds_without_guids_get_distinct_keys_that_are_stable_across_polls() -> None:
    for file in (
        "heise-online-rss090-rdf-de.xml",
        "jn-pt-ultimas-rss2-pt-iso-8859-1.xml",
        "uol-noticias-rss2-pt-latin1-undeclared.xml",
        "le-cercle-psy-rss2-fr-iso-8859-1-no-xml-decl.xml",
        "oren-ru-news-rss2-ru-windows-1251.xml",
    ):
        first = parse(fixture(file))
        later = parse(fixture(file), fetched_at=FETCHED + timedelta(hours=3))
        assert all(entry.guid is None for entry in first.entries), file
        keys = [entry.story_key for entry in first.entries]
        assert len(set(keys)) == len(keys), file
        assert keys == [entry.story_key for entry in later.entries], file


def test_huge_feed_parses_in_reasonable_time() -> None:
    body = fixture("giantbomb-podcast-rss2-huge-1.6mb.xml")
    started = time.perf_counter()
    feed = parse(body, "https://www.giantbomb.com/podcast-xml/giant-bombcast/")
    elapsed = time.perf_counter() - started
    assert len(feed.entries) == 730
    assert elapsed < 10, f"1.6 MB feed took {elapsed:.1f}s"


# --- identity: GUIDs and links --------------------------------------------------------


def test_entries_without_guid_or_link_get_stable_distinct_keys() -> None:
    body = rss(
        "<item><title>Only a title</title></item>"
        "<item><description>Only a description</description></item>"
        "<item><title>Title</title><description>and description</description></item>"
    )
    first, later = parse(body), parse(body, fetched_at=FETCHED + timedelta(days=1))
    assert len(first.entries) == 3
    assert all(entry.guid is None and entry.link is None for entry in first.entries)
    assert len({entry.story_key for entry in first.entries}) == 3
    assert [entry.story_key for entry in first.entries] == [entry.story_key for entry in later.entries]


def test_guids_changing_every_poll_with_stable_links_keep_the_story_key() -> None:
    def build(poll: int) -> bytes:
        return rss(
            "".join(
                f"<item><title>Story {n}</title><link>https://example.org/story/{n}?utm_source=rss&amp;poll={poll}"
                f"</link><guid isPermaLink='false'>build-{poll}-{n}</guid></item>"
                for n in range(3)
            ).replace("&amp;poll", "&amp;utm_campaign")
        )

    first, second = parse(build(1)), parse(build(2))
    assert [e.guid for e in first.entries] != [e.guid for e in second.entries]
    assert [e.story_key for e in first.entries] == [e.story_key for e in second.entries]
    assert [e.story_key for e in first.entries] == [
        dedupe.url_key(f"https://example.org/story/{n}") for n in range(3)
    ]


def test_duplicate_guids_are_collapsed_keeping_the_most_complete() -> None:
    body = rss(
        "<item><guid isPermaLink='false'>dup-1</guid><title>Sanctions on Russia</title></item>"
        "<item><guid isPermaLink='false'>other</guid><title>Another story</title></item>"
        "<item><guid isPermaLink='false'>dup-1</guid><title>Sanctions on Russia</title>"
        "<description>EU adopts a new package.</description>"
        "<pubDate>Thu, 01 Jan 2026 08:00:00 GMT</pubDate></item>"
    )
    feed = parse(body)
    assert [entry.guid for entry in feed.entries] == ["dup-1", "other"]
    kept = feed.entries[0]
    assert kept.summary == "EU adopts a new package." and kept.date_from_feed
    assert "1 duplicate entries collapsed" in feed.warnings


def test_shared_guid_with_distinct_links_keeps_every_story() -> None:
    # Some CMSs give every item the site's home page as GUID: the links tell them apart.
    body = rss(
        "".join(
            f"<item><guid>https://example.org/</guid><title>Story {n}</title>"
            f"<link>https://example.org/news/{n}</link></item>"
            for n in range(4)
        )
    )
    feed = parse(body)
    assert [entry.link for entry in feed.entries] == [f"https://example.org/news/{n}" for n in range(4)]
    assert len({entry.story_key for entry in feed.entries}) == 4


def test_items_all_linking_to_the_home_page_stay_distinct() -> None:
    body = rss(
        "<item><guid isPermaLink='false'>a-1</guid><title>First</title><link>https://example.org/</link></item>"
        "<item><guid isPermaLink='false'>a-2</guid><title>Second</title><link>https://example.org</link></item>"
        "<item><title>Third</title><link>https://example.org/</link></item>"
        "<item><title>Fourth</title><link>https://example.org/?p=1609</link></item>"
    )
    feed = parse(body)
    assert [entry.title for entry in feed.entries] == ["First", "Second", "Third", "Fourth"]
    assert [entry.link_key is None for entry in feed.entries] == [True, True, True, False]
    assert feed.entries[0].story_key == dedupe.text_key("a-1")
    assert len({entry.story_key for entry in feed.entries}) == 4


# --- languages ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "default_language", "expected"),
    [
        (None, None, None),
        (None, "de", "de"),
        ({"Content-Language": "de-DE"}, None, "de"),
        ({"Content-Language": "de-DE"}, "en", "de"),
    ],
)
def test_language_falls_back_to_header_then_default(
    headers: dict[str, str] | None, default_language: str | None, expected: str | None
) -> None:
    # heise developer declares no language anywhere
    feed = parse(fixture("heise-developer-atom-de.xml"), headers=headers, default_language=default_language)
    assert feed.language == expected
    assert {entry.language for entry in feed.entries} == {expected}


def test_feed_language_beats_the_configured_default() -> None:
    feed = parse(fixture("lemonde-international-rss2-fr.xml"), default_language="en")
    assert {entry.language for entry in feed.entries} == {"fr"}


# --- what is not a feed ---------------------------------------------------------------

HTML_PAGE = b"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Page not found</title></head>
<body><h1>404</h1><p>Sorry, this page does not exist.</p></body></html>"""


@pytest.mark.parametrize(
    ("body", "content_type", "reason", "message"),
    [
        (b"", None, "empty", "empty"),
        (b"  \r\n\t ", "application/rss+xml", "empty", "empty"),
        (codecs.BOM_UTF8 + b"\n", None, "empty", "empty"),
        (HTML_PAGE, "text/html; charset=utf-8", "not_a_feed", "HTML page, not a feed"),
        (HTML_PAGE, None, "not_a_feed", "HTML page, not a feed"),
        (b"<html><body>Maintenance</body></html>", "application/xml", "not_a_feed", "HTML page"),
        (b'{"status": "ok", "count": 0}', "application/feed+json", "not_a_feed", "JSON, but not a JSON Feed"),
        (random.Random(1234).randbytes(4096), None, "not_a_feed", "not an RSS, Atom or RDF feed"),
        (b"Service Unavailable", "text/plain", "not_a_feed", "not an RSS, Atom or RDF feed"),
        (fixture("feedparser-illformed-incomplete-cdata.xml"), None, "malformed", "not well-formed"),
    ],
)
def test_not_a_feed(body: bytes, content_type: str | None, reason: str, message: str) -> None:
    with pytest.raises(ParseError, match=message) as caught:
        parse(body, content_type=content_type)
    assert caught.value.reason == reason


def test_body_is_never_opened_as_a_file_name(tmp_path: Path) -> None:
    # feedparser.parse(bytes) would read a local file whose name equals the body
    path = tmp_path / "feed.xml"
    path.write_bytes(fixture("nyt-top-stories-rss2.xml"))
    with pytest.raises(ParseError) as caught:
        parse(str(path).encode())
    assert caught.value.reason == "not_a_feed"


@pytest.mark.parametrize(
    "body",
    [
        rss(""),
        fixture("feedparser-illformed-greek-iso-8859-7-date.xml"),
        b'<?xml version="1.0"?><feed xmlns="http://www.w3.org/2005/Atom"><title>Quiet</title></feed>',
    ],
)
def test_valid_feed_without_entries_is_not_an_error(body: bytes) -> None:
    assert parse(body, content_type="text/xml").entries == ()


def test_naive_fetched_at_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse(rss(""), fetched_at=datetime(2026, 1, 1))


# --- hostile input --------------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY lol "lol">\n'
    + b"".join(
        b'<!ENTITY lol%d "%s">\n' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10)
        for i in range(1, 10)
    )
    + b']>\n<rss version="2.0"><channel><title>&lol9;</title>'
    + b"<item><title>&lol9;</title><link>https://example.org/a</link></item></channel></rss>"
)
BIG_ENTITY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY big "' + b"A" * 100_000 + b'">\n]>\n'
    b'<rss version="2.0"><channel><title>t</title>'
    + b"".join(
        b"<item><title>item %d %s</title><link>https://example.org/%d</link></item>" % (i, b"&big;" * 10, i)
        for i in range(1000)
    )
    + b"</channel></rss>"
)


def test_billion_laughs_parses_fast_into_harmless_text() -> None:
    started = time.perf_counter()
    feed = parse(BILLION_LAUGHS)
    assert time.perf_counter() - started < 2
    assert len(feed.entries) == 1
    assert len(feed.entries[0].title) < 100
    assert "lollollol" not in feed.entries[0].title


@pytest.mark.parametrize(
    "body",
    [BIG_ENTITY, codecs.BOM_UTF16_LE + BIG_ENTITY.decode("ascii").encode("utf-16-le")],
    ids=["utf-8", "utf-16"],
)
def test_big_entity_used_many_times_is_refused_fast(body: bytes) -> None:
    started = time.perf_counter()
    with pytest.raises(ParseError, match="expand to 1,000,000,000 characters") as caught:
        parse(body)
    assert caught.value.reason == "entity_expansion"
    assert time.perf_counter() - started < 2


def test_thousands_of_entity_declarations_are_refused_fast() -> None:
    # feedparser's DOCTYPE handling is quadratic in the number of declarations
    declarations = b"".join(b'<!ENTITY e%d "x">\n' % i for i in range(40_000))
    body = b'<?xml version="1.0"?>\n<!DOCTYPE rss [\n' + declarations + b"]>\n" + rss("").split(b"\n", 1)[1]
    started = time.perf_counter()
    with pytest.raises(ParseError, match="declares 40,000 XML entities") as caught:
        parse(body)
    assert caught.value.reason == "entity_expansion"
    assert time.perf_counter() - started < 2


def test_small_declared_entities_still_work() -> None:
    body = (
        b'<?xml version="1.0"?>\n<!DOCTYPE rss [\n<!ENTITY org "Example News Org">\n]>\n'
        + rss("<item><title>Report by &org;</title><link>https://example.org/r</link></item>").split(
            b"\n", 1
        )[1]
    )
    assert parse(body).entries[0].title == "Report by Example News Org"


@pytest.mark.parametrize(
    ("title", "expected"),
    [
        ("Bad ref &#x110000; here", "Bad ref \ufffd here"),
        ("Bad ref &#1114112; here", "Bad ref \ufffd here"),
        ("Lone surrogate &#55296; here", "Lone surrogate \ufffd here"),
        ("Emoji as a pair &#55357;&#56832; here", "Emoji as a pair \U0001f600 here"),
        ("Emoji as hex pair &#xD83D;&#xDE00;", "Emoji as hex pair \U0001f600"),
        ("Fine ref &#128512; and &#8217;", "Fine ref \U0001f600 and ’"),
        ("Quote then pair &#8217;&#55357;&#56832;", "Quote then pair ’\U0001f600"),
        ("Reversed pair &#56832;&#55357;", "Reversed pair \ufffd\ufffd"),
        ("Absurd ref &#" + "9" * 5000 + ";", "Absurd ref \ufffd"),
    ],
)
def test_invalid_character_references_do_not_cost_the_feed(title: str, expected: str) -> None:
    # feedparser 6.0.14 raises ValueError/UnicodeEncodeError on these
    body = rss(
        f"<item><title>{title}</title><link>https://example.org/a</link></item>"
        "<item><title>Next story</title><link>https://example.org/b</link></item>"
    )
    feed = parse(body)
    assert [entry.title for entry in feed.entries] == [expected, "Next story"]


def test_feedparser_crash_becomes_parse_error() -> None:
    # a backslash in a DOCTYPE entity value reaches feedparser's re.sub() as a
    # replacement template and raises re.error on 6.0.14
    body = (
        b'<!DOCTYPE rss [\n<!ENTITY path "C:\\data">\n]>\n'
        b'<rss version="2.0"><channel><title>&path;</title>'
        b"<item><title>x</title><link>https://example.org/x</link></item></channel></rss>"
    )
    with pytest.raises(ParseError, match="feed parser failed") as caught:
        parse(body)
    assert caught.value.reason == "parser_crash"
    assert isinstance(caught.value.__cause__, re.error)


# --- the parse pool: every parse in a worker process, under a deadline -----------------

# 200,000 nested elements: feedparser needs seconds for this 600 KB document.
SLOW = rss(
    "<item><title>deep</title><link>https://example.org/deep</link><description>"
    + "<b>" * 200_000
    + "</description></item>"
)


def job(body: bytes, url: str = "https://example.org/feed.xml") -> ParseJob:
    return ParseJob(body, url, "application/rss+xml", FETCHED, None)


@pytest.fixture
def pool() -> Iterator[ParsePool]:
    p = ParsePool(1, timeout=1.0)
    yield p
    p.close()


def test_pool_parses_exactly_like_in_process(pool: ParsePool) -> None:
    body = fixture("lemonde-international-rss2-fr.xml")
    url = "https://www.lemonde.fr/international/rss_full.xml"
    remote = pool.submit(job(body, url)).result(timeout=60)
    assert remote == parse_feed(body, url=url, content_type="application/rss+xml", fetched_at=FETCHED)


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"", "empty"), (b"<html><body>hi</body></html>", "not_a_feed"), (BIG_ENTITY, "entity_expansion")],
)
def test_pool_keeps_the_parse_error_reason(pool: ParsePool, body: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        pool.submit(job(body)).result(timeout=60)
    assert caught.value.reason == reason


def test_a_parse_over_the_deadline_is_stopped_and_the_worker_replaced(pool: ParsePool) -> None:
    pool.submit(job(rss(""))).result(timeout=60)  # the worker is up
    (before,) = pool.worker_pids()
    started = time.monotonic()
    slow = pool.submit(job(SLOW))
    after = pool.submit(job(fixture("npr-news-rss2.xml")))
    with pytest.raises(ParseError, match="longer than 1 s") as caught:
        slow.result(timeout=60)
    assert caught.value.reason == "parse_timeout"
    assert time.monotonic() - started < 3
    assert len(after.result(timeout=60).entries) == 15  # the next job runs in a fresh worker
    assert pool.worker_pids() != [before] and pool.restarts == 1


def test_a_worker_that_dies_fails_its_job_and_the_pool_carries_on(pool: ParsePool) -> None:
    pool.submit(job(rss(""))).result(timeout=60)
    (pid,) = pool.worker_pids()
    slow = pool.submit(job(SLOW))
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)  # what the OOM killer or a segfault looks like
    with pytest.raises(ParseError, match="parser process died") as caught:
        slow.result(timeout=60)
    assert caught.value.reason == "parser_crash"
    assert len(pool.submit(job(fixture("npr-news-rss2.xml"))).result(timeout=60).entries) == 15


def test_submit_waits_while_the_pool_is_full() -> None:
    pool = ParsePool(1, timeout=1.0, backlog=1)
    try:
        first = pool.submit(job(SLOW))
        second: list[Future[ParsedFeed]] = []
        waiting = threading.Thread(target=lambda: second.append(pool.submit(job(rss("")))))
        waiting.start()
        time.sleep(0.3)
        assert not second and not first.done()  # blocked: the one slot is taken
        waiting.join(10)
        assert first.exception() is not None and second[0].result(timeout=60).entries == ()
    finally:
        pool.close()


def test_a_worker_that_grew_too_big_is_replaced_after_its_job() -> None:
    pool = ParsePool(1, timeout=10.0, recycle_rss=1)  # every worker is "too big" after a job
    try:
        pids = []
        for _ in range(3):
            assert len(pool.submit(job(fixture("npr-news-rss2.xml"))).result(timeout=60).entries) == 15
            pids.append(tuple(pool.worker_pids()))
        assert pids == [(), (), ()]  # each retired right after its reply
        assert pool.restarts == 0  # retiring is not a crash
    finally:
        pool.close()


@pytest.mark.parametrize("after", [0.0, 0.3], ids=["while-the-worker-starts", "while-it-parses"])
def test_close_stops_a_running_parse_and_fails_queued_jobs(after: float) -> None:
    pool = ParsePool(1, timeout=30.0, backlog=4)
    running = pool.submit(job(SLOW))
    queued = pool.submit(job(rss("")))
    time.sleep(after)
    started = time.monotonic()
    pool.close()
    assert time.monotonic() - started < 3
    for future in (running, queued):
        with pytest.raises(ParseError) as caught:
            future.result(timeout=5)
        assert caught.value.reason == "cancelled"
    assert pool.worker_pids() == []
    with pytest.raises(ParseError):
        pool.submit(job(rss(""))).result(timeout=5)


def test_a_parse_that_needs_too_much_memory_is_stopped() -> None:
    # one 5 MB description: feedparser holds several copies of it at once
    heavy = rss(
        "<item><title>heavy</title><link>https://example.org/h</link><description>"
        + "word " * 1_000_000
        + "</description></item>"
    )
    pool = ParsePool(1, timeout=30.0, memory_limit=60 * 2**20)
    try:
        started = time.monotonic()
        with pytest.raises(ParseError, match="more than 60 MB") as caught:
            pool.submit(job(heavy)).result(timeout=60)
        assert caught.value.reason == "parse_memory"
        assert time.monotonic() - started < 10
        assert len(pool.submit(job(fixture("npr-news-rss2.xml"))).result(timeout=60).entries) == 15
    finally:
        pool.close()


@pytest.mark.parametrize(("big_body", "serial"), [(100_000, True), (10_000_000, False)], ids=["big", "small"])
def test_big_bodies_are_parsed_one_at_a_time(big_body: int, serial: bool) -> None:
    pool = ParsePool(2, timeout=1.0, big_body=big_body)
    try:
        for future in [pool.submit(job(rss(""))) for _ in range(2)]:  # both workers up
            future.result(timeout=60)
        started = time.monotonic()
        for future in [pool.submit(job(SLOW)), pool.submit(job(SLOW))]:
            with pytest.raises(ParseError):
                future.result(timeout=60)
        elapsed = time.monotonic() - started
        assert (elapsed > 1.9) is serial, elapsed  # two 1 s deadlines one after the other, or together
    finally:
        pool.close()


def test_an_idle_worker_exits_and_the_next_job_starts_a_new_one() -> None:
    pool = ParsePool(1, timeout=5.0, idle_exit=0.3)
    try:
        pool.warm()
        deadline = time.monotonic() + 10
        while not pool.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        (first,) = pool.worker_pids()
        time.sleep(0.8)
        assert pool.worker_pids() == []  # gone while idle: no memory held between cycles
        assert len(pool.submit(job(fixture("npr-news-rss2.xml"))).result(timeout=60).entries) == 15
        assert pool.worker_pids() not in ([], [first])
    finally:
        pool.close()
