"""JSON Feed 1.0 and 1.1 (``monitor.ingest.formats.jsonfeed``) and the registry that
picks a format for a body (``monitor.ingest.formats``), on plain values: the two JSON
Feed fixtures (tests/fixtures/SOURCES.md), one item at a time for each field rule, every
hostile document, and the same story written as RSS and as JSON Feed. Last, end to end:
JSON Feeds served by a local HTTP server go through a real poll cycle and alert.
(The hostile JSON Feeds in a poll cycle are rows of ``tests/test_robustness.py``.)"""

from __future__ import annotations

import codecs
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from monitor.app.daemon import Runtime
from monitor.errors import ParseError
from monitor.ingest import dedupe
from monitor.ingest.formats import FORMATS, ParsedFeed, choose_format, parse_feed
from monitor.ingest.formats.jsonfeed import MAX_DEPTH
from monitor.ingest.formats.parsed import head_of
from monitor.ingest.pool import ParseJob, ParsePool
from monitor.storage.schema import Alert, Story
from tests.support.feeds import SEED_TITLE, seed_article
from tests.support.httpserver import HTTPTestServer, Static
from tests.test_pipeline import Harness

FIXTURES = Path(__file__).parent / "fixtures"
FETCHED = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
URL = "https://news.example/feeds/world.json"
V11 = "https://jsonfeed.org/version/1.1"
LECHO = "lecho-monde-jsonfeed11-fr-en.json"
NOTES = "eastern-front-notes-jsonfeed10-en.json"


def parse(body: bytes, *, content_type: str | None = "application/feed+json", **kwargs: Any) -> ParsedFeed:
    kwargs.setdefault("url", URL)
    kwargs.setdefault("fetched_at", FETCHED)
    return parse_feed(body, content_type=content_type, **kwargs)


def feed(*items: object, **fields: object) -> bytes:
    document = {"version": V11, "title": "World", **fields, "items": list(items)}
    return json.dumps(document, ensure_ascii=False).encode()


def one(item: dict[str, Any], **fields: object) -> Any:
    """The single entry that ``item`` becomes (None if it is dropped)."""
    entries = parse(feed(item, **fields)).entries
    return entries[0] if entries else None


# --- the fixtures -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("file", "url", "meta", "titles"),
    [
        (
            LECHO,
            "https://www.lecho-du-monde.example/international/feed.json",
            ("L'Écho du monde — International", "https://www.lecho-du-monde.example/international/", "fr"),
            [
                "Des soldats nord-coréens engagés dans la région de Koursk, selon Kiev",
                "North Korean troops in Kursk: what we know",
                "Washington sanctionne des entreprises liées au transfert d'armes nord-coréennes vers la Russie",
                "Guerre en Ukraine, en direct : Kiev fait état de « premiers combats » contre les soldats nord-coréens",
                "COP29 : à Bakou, les négociations climatiques s'ouvrent dans un climat de défiance",
            ],
        ),
        (
            NOTES,
            "https://eastern-front-notes.example/feed.json",
            ("Eastern Front Notes", "https://eastern-front-notes.example/", None),
            [
                "DPRK units spotted near Sudzha",
                "",
                "Treasury sanctions entities supporting North Korea's arms transfers to Russia",
                "Map update: the Kursk salient, week 14",
            ],
        ),
    ],
    ids=[LECHO, NOTES],
)
def test_fixture(file: str, url: str, meta: tuple[str, str, str | None], titles: list[str]) -> None:
    parsed = parse((FIXTURES / file).read_bytes(), url=url)
    assert (parsed.title, parsed.link, parsed.language) == meta
    assert [entry.title for entry in parsed.entries] == titles
    assert parsed.warnings == ()
    for entry in parsed.entries:
        assert entry.link is not None and entry.link.startswith("https://")
        assert entry.summary and entry.summary == entry.summary.strip()
        assert entry.published_at.tzinfo is UTC and entry.date_from_feed
    assert len({entry.story_key for entry in parsed.entries}) == len(titles)


@pytest.mark.parametrize(
    ("file", "url", "index", "expected"),
    [
        # utm_ parameters stay in the link and leave the canonical URL
        (LECHO, "https://www.lecho-du-monde.example/international/feed.json", 0, {
            "guid": "https://www.lecho-du-monde.example/international/article/2024/11/04/"
                    "des-soldats-nord-coreens-engages-dans-la-region-de-koursk_6377512.html",
            "canonical_url": "https://www.lecho-du-monde.example/international/article/2024/11/04/"
                             "des-soldats-nord-coreens-engages-dans-la-region-de-koursk_6377512.html",
            "published_at": datetime(2024, 11, 4, 17, 42, 10, tzinfo=UTC),
            "author": "Faustine Vincent",
            "language": "fr",
        }),
        # the item's own language beats the feed's
        (LECHO, "https://www.lecho-du-monde.example/international/feed.json", 1, {"language": "en"}),
        # a relative url resolves against the feed URL
        (LECHO, "https://www.lecho-du-monde.example/international/feed.json", 2, {
            "link": "https://www.lecho-du-monde.example/international/article/2024/11/05/"
                    "washington-sanctionne-des-entreprises-liees-au-transfert-d-armes-nord-coreennes_6377644.html",
            "guid": "6377644",
        }),
        # content_text keeps its paragraphs as lines, and beats the shorter summary
        (LECHO, "https://www.lecho-du-monde.example/international/feed.json", 3, {
            "summary": "Suivez notre direct. Le président ukrainien, Volodymyr Zelensky, a de nouveau appelé ses "
                       "alliés à réagir à l'envoi de troupes nord-coréennes en Russie.\nLes autorités russes n'ont ni "
                       "confirmé ni démenti la présence de militaires nord-coréens sur leur sol.",
            "author": None,
        }),
        # numeric ids become strings; JSON Feed 1.0's author object
        (NOTES, "https://eastern-front-notes.example/feed.json", 0, {"guid": "20241106", "author": "Jonas Lindqvist"}),
        # no title: the key comes from the link; relative url resolved
        (NOTES, "https://eastern-front-notes.example/feed.json", 1, {
            "link": "https://eastern-front-notes.example/2024/11/05/reading-list/",
            "title": "",
            "story_key": dedupe.url_key("https://eastern-front-notes.example/2024/11/05/reading-list/"),
        }),
        # external_url when there is no url; an RFC 822 date
        (NOTES, "https://eastern-front-notes.example/feed.json", 2, {
            "link": "https://home.treasury.example/news/press-releases/jy2694",
            "published_at": datetime(2024, 11, 5, 15, 30, tzinfo=UTC),
        }),
    ],
)
def test_fixture_entry(file: str, url: str, index: int, expected: dict[str, object]) -> None:
    entry = parse((FIXTURES / file).read_bytes(), url=url).entries[index]
    assert {key: getattr(entry, key) for key in expected} == expected


def test_html_content_is_made_plain_like_rss_descriptions() -> None:
    first = parse((FIXTURES / LECHO).read_bytes()).entries[0]
    assert first.summary.startswith("Les premières unités nord-coréennes déployées en Russie")
    assert "lundi 4 novembre" in first.summary and "&nbsp;" not in first.summary and "<" not in first.summary
    assert "dataLayer" not in first.summary  # <script> dropped
    assert "Un poste de contrôle près de Soudja" in first.summary


# --- one item, one rule ------------------------------------------------------------------

LINK = "https://news.example/world/1"


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        # ids
        ({"id": 42, "url": LINK}, {"guid": "42"}),
        ({"id": 4.5, "url": LINK}, {"guid": "4.5"}),
        ({"id": "  a-1\x00 ", "url": LINK}, {"guid": "a-1"}),
        # titles of the wrong type are no title; the item keeps its link
        ({"id": "a", "url": LINK, "title": 2026}, {"title": "", "link": LINK}),
        ({"id": "a", "url": LINK, "title": ["a", "list"]}, {"title": ""}),
        ({"id": "a", "url": LINK, "title": None}, {"title": ""}),
        ({"id": "a", "title": "AT&amp;T  fined\nin\tRussia\x00"}, {"title": "AT&T fined in Russia", "link": None}),
        # links: only http(s), resolved against the feed URL, url before external_url
        ({"id": "a", "title": "t", "url": "javascript:alert(1)"}, {"link": None}),
        ({"id": "a", "title": "t", "url": "javascript:alert(1)", "external_url": LINK}, {"link": LINK}),
        ({"id": "a", "title": "t", "url": 17}, {"link": None}),
        ({"id": "a", "title": "t", "url": {"href": LINK}}, {"link": None}),
        ({"id": "a", "title": "t", "url": "../europe/2"}, {"link": "https://news.example/europe/2"}),
        ({"id": "a", "title": "t", "url": LINK, "external_url": "https://other.example/x"}, {"link": LINK}),
        # text: the longest of summary and content wins; HTML made plain
        ({"id": "a", "url": LINK, "summary": "Short.", "content_text": "A longer one."}, {"summary": "A longer one."}),
        ({"id": "a", "url": LINK, "content_html": "<p>One</p><p>Two <script>x()</script>"}, {"summary": "One\nTwo"}),
        ({"id": "a", "url": LINK, "summary": 12, "content_html": ["<p>x</p>"]}, {"summary": ""}),
        # dates: RFC 3339 in any offset to UTC, zone-less as UTC, else the fetch time
        ({"id": "a", "url": LINK, "date_published": "2025-12-31T23:30:00-02:00"},
         {"published_at": datetime(2026, 1, 1, 1, 30, tzinfo=UTC), "date_from_feed": True}),
        ({"id": "a", "url": LINK, "date_published": "2025-12-31T08:00:00"},
         {"published_at": datetime(2025, 12, 31, 8, tzinfo=UTC), "date_from_feed": True}),
        ({"id": "a", "url": LINK, "date_modified": "2025-12-30T10:00:00.123456Z"},
         {"published_at": datetime(2025, 12, 30, 10, tzinfo=UTC), "date_from_feed": True}),
        ({"id": "a", "url": LINK, "date_published": "Wed, 31 Dec 2025 22:00:00 +0100"},
         {"published_at": datetime(2025, 12, 31, 21, tzinfo=UTC), "date_from_feed": True}),
        ({"id": "a", "url": LINK, "date_published": "2027-01-01T00:00:00Z"},
         {"published_at": FETCHED, "date_from_feed": False}),
        ({"id": "a", "url": LINK, "date_published": "2026-01-01T12:05:00Z"},
         {"published_at": FETCHED + timedelta(minutes=5), "date_from_feed": True}),
        ({"id": "a", "url": LINK, "date_published": "the day after tomorrow"},
         {"published_at": FETCHED, "date_from_feed": False}),
        ({"id": "a", "url": LINK, "date_published": 1735689600}, {"published_at": FETCHED, "date_from_feed": False}),
        ({"id": "a", "url": LINK, "date_published": "9999-12-31T23:59:59-05:00"},
         {"published_at": FETCHED, "date_from_feed": False}),
        # authors: 1.1's list before 1.0's object; names of the wrong type skipped
        ({"id": "a", "url": LINK, "authors": [{"name": 5}, {"name": "Ann Lee"}], "author": {"name": "Old"}},
         {"author": "Ann Lee"}),
        ({"id": "a", "url": LINK, "authors": "Ann Lee", "author": {"name": "Bo Kim"}}, {"author": "Bo Kim"}),
        ({"id": "a", "url": LINK, "authors": [{"url": "https://x.example/"}]}, {"author": None}),
        # languages: the item's, the feed's (see below), none
        ({"id": "a", "url": LINK, "language": "fr-CA"}, {"language": "fr"}),
        ({"id": "a", "url": LINK, "language": ["fr"]}, {"language": None}),
    ],
)
def test_item_rule(item: dict[str, Any], expected: dict[str, object]) -> None:
    entry = one(item)
    assert {key: getattr(entry, key) for key in expected} == expected


@pytest.mark.parametrize(
    ("fields", "headers", "default_language", "expected"),
    [
        ({"language": "en-GB"}, None, "fr", "en"),
        ({}, {"Content-Language": "de-DE"}, "fr", "de"),
        ({"language": 7}, None, "fr", "fr"),
        ({}, None, None, None),
    ],
)
def test_feed_language_falls_back_to_header_then_default(
    fields: dict[str, object], headers: dict[str, str] | None, default_language: str | None, expected: str | None
) -> None:
    parsed = parse(feed({"id": "a", "url": LINK}, **fields), headers=headers, default_language=default_language)
    assert parsed.language == expected and parsed.entries[0].language == expected


@pytest.mark.parametrize(
    ("items", "count", "warning"),
    [
        ([{"url": LINK}, {"id": "", "url": LINK}, {"id": True, "url": LINK}, {"id": "ok", "url": LINK}], 1,
         "3 items ignored: no id (JSON Feed requires one)"),
        (["a string", 5, None, [], {"id": "ok", "url": LINK}], 1, "4 items ignored: not JSON objects"),
        ([{"id": "empty"}, {"id": "ok", "url": LINK}], 1, "1 empty entries dropped (no title, summary or link)"),
        ([{"id": "a", "url": LINK, "title": "Short"}, {"id": "b", "url": LINK, "title": "Short", "summary": "More"}],
         1, "1 duplicate entries collapsed"),
    ],
)
def test_items_that_cannot_be_used_are_counted_in_warnings(items: list[object], count: int, warning: str) -> None:
    parsed = parse(feed(*items))
    assert len(parsed.entries) == count and warning in parsed.warnings


def test_duplicates_keep_the_most_complete_copy() -> None:
    copies = {"id": "a", "url": LINK, "title": "Short"}, {"id": "b", "url": LINK, "title": "Short", "summary": "More"}
    parsed = parse(feed(*copies))
    assert parsed.entries[0].summary == "More" and parsed.entries[0].guid == "b"


def test_a_feed_without_version_but_with_items_is_read_with_a_warning() -> None:
    parsed = parse(json.dumps({"title": "Sloppy", "items": [{"id": "a", "url": LINK}]}).encode())
    assert len(parsed.entries) == 1
    assert parsed.warnings == ('no JSON Feed "version"; read as one for its "items"',)


@pytest.mark.parametrize(
    "body",
    [feed(), b'{"version": "https://jsonfeed.org/version/1", "items": []}', feed(title=None, home_page_url="ftp://x")],
)
def test_a_json_feed_without_items_is_not_an_error(body: bytes) -> None:
    parsed = parse(body)
    assert parsed.entries == () and parsed.link is None


# --- hostile documents -------------------------------------------------------------------

NESTED = b'{"version": "https://jsonfeed.org/version/1.1", "items": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}"


@pytest.mark.parametrize(
    ("body", "reason", "message"),
    [
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": "a",}]}', "malformed",
         r"the JSON Feed is not valid JSON \(Expecting property name enclosed in double quotes at line 1 column"),
        (b"{oops, this is not JSON}", "not_a_feed", "starts like JSON but is not valid JSON"),
        (b"[1, 2, 3]", "not_a_feed", r"JSON, but not a JSON Feed \(the document is a list\)"),
        (b'{"status": "ok", "data": {"items": 3}}', "not_a_feed", "JSON, but not a JSON Feed"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "title": "No items"}', "malformed", 'no "items" list'),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": "none today"}', "malformed",
         "\"items\" is 'str', not a list"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": {"id": "a"}}', "malformed",
         "\"items\" is 'dict', not a list"),
        (NESTED, "malformed", f"more than {MAX_DEPTH} levels deep"),
        (b"[" * 1_000_000, "malformed", f"more than {MAX_DEPTH} levels deep"),
        (b"[" * (MAX_DEPTH + 1) + b'\\"' * 500_000, "malformed", f"more than {MAX_DEPTH} levels deep"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": NaN, "title": Infinity}]}', "malformed",
         "NaN is not a JSON value"),
        (b'{"version": "https://jsonfeed.org/version/1.1", "items": [{"id": ' + b"9" * 5000 + b"}]}", "malformed",
         "not valid JSON"),
        (b"Service Unavailable", "not_a_feed", "labelled as a JSON Feed but is not valid JSON"),
        (codecs.BOM_UTF8 + b"  \n", "empty", "empty"),
    ],
    ids=["trailing-comma", "not-json", "array", "other-json", "no-items", "items-string", "items-object",
         "nested-100000", "unclosed-1000000", "escaped-quotes", "nan", "huge-number", "text", "bom-only"],
)
def test_hostile_document_is_a_parse_error(body: bytes, reason: str, message: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ParseError, match=message) as caught:
        parse(body)
    assert caught.value.reason == reason
    assert time.perf_counter() - started < 1  # refused fast, not by the pool's deadline


def test_invalid_json_keeps_the_decoder_error_as_its_cause() -> None:
    with pytest.raises(ParseError) as caught:
        parse(b'{"version": "https://jsonfeed.org/version/1.1", "items": [}')
    assert isinstance(caught.value.__cause__, json.JSONDecodeError)


def test_nesting_up_to_the_limit_and_brackets_inside_strings_are_fine() -> None:
    deep_extension = {"_ext": json.loads("[" * (MAX_DEPTH - 4) + "]" * (MAX_DEPTH - 4))}
    title = "[[[[" * 30 + "{{{{" * 30 + ' \\" ]] "'
    parsed = parse(feed({"id": "a", "url": LINK, "title": title, **deep_extension}))
    assert parsed.entries[0].title == title


@pytest.mark.parametrize(
    ("body", "title", "warning"),
    [
        (codecs.BOM_UTF8 + feed({"id": "a", "url": LINK, "title": "Armée nord-coréenne"}), "Armée nord-coréenne", None),
        (codecs.BOM_UTF16_LE + feed({"id": "a", "url": LINK, "title": "Армия КНДР"}).decode().encode("utf-16-le"),
         "Армия КНДР", None),
        (feed({"id": "a", "url": LINK, "title": "Corée"}).decode().encode("utf-16-be"), "Corée", None),
        (feed({"id": "a", "url": LINK, "title": "Koursk : l’armée"}).decode().encode("cp1252"),
         "Koursk : l’armée", "not UTF-8: read as windows-1252"),
        (feed({"id": "a", "url": LINK, "title": "Séoul"}).replace(b"S\xc3\xa9oul", b"S\xc3\xa9oul \xff"),
         "Séoul \ufffd", "invalid UTF-8 bytes replaced"),
    ],
    ids=["utf-8-bom", "utf-16-bom", "utf-16-be-no-bom", "windows-1252", "one-bad-byte"],
)
def test_encodings(body: bytes, title: str, warning: str | None) -> None:
    parsed = parse(body)
    assert parsed.entries[0].title == title
    assert (warning in parsed.warnings) if warning else parsed.warnings == ()


# --- the same story as RSS and as JSON Feed ------------------------------------------------

HTML = "<p>Kyiv says <b>North Korean</b> units fought near Kursk.</p><p>Moscow denies it.</p>"


def test_the_same_story_in_rss_and_json_feed_gives_the_same_entry() -> None:
    rss = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>World desk</title>'
        "<link>https://news.example/</link><language>en</language><item>"
        '<guid isPermaLink="false">story-1</guid><title>North Korean troops in Kursk</title>'
        "<link>/world/kursk?utm_source=rss</link><description><![CDATA[" + HTML + "]]></description>"
        "<pubDate>Tue, 05 Nov 2024 07:30:00 GMT</pubDate></item></channel></rss>"
    ).encode()
    jsonfeed = feed(
        {"id": "story-1", "title": "North Korean troops in Kursk", "url": "/world/kursk?utm_source=rss",
         "content_html": HTML, "date_published": "2024-11-05T08:30:00+01:00"},
        title="World desk", home_page_url="https://news.example/", language="en",
    )
    from_rss = parse_feed(rss, url=URL, content_type="application/rss+xml", fetched_at=FETCHED)
    from_json = parse(jsonfeed)
    assert from_json == from_rss


# --- the registry --------------------------------------------------------------------------

RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
JSON = feed()


@pytest.mark.parametrize(
    ("body", "content_type", "chosen"),
    [
        (RSS, "application/rss+xml", "xml"),
        (RSS, None, "xml"),
        (RSS, "text/html; charset=utf-8", "xml"),
        (RSS, "application/json", "xml"),
        (RSS, "application/feed+json", "xml"),  # mislabelled: the bytes say XML
        (b"PHP Warning: something\n<?xml version='1.0'?><rss/>", "text/plain", "xml"),
        (b"<!DOCTYPE html><html></html>", "text/html", "xml"),  # feedparser words the HTML message
        (JSON, "application/feed+json", "jsonfeed"),
        (JSON, "application/feed+json; charset=utf-8", "jsonfeed"),
        (JSON, "application/json", "jsonfeed"),
        (JSON, "text/plain", "jsonfeed"),
        (JSON, None, "jsonfeed"),
        (JSON, "application/rss+xml", "jsonfeed"),  # mislabelled: the bytes say JSON
        (codecs.BOM_UTF8 + b"\n  " + JSON, None, "jsonfeed"),
        (codecs.BOM_UTF16_LE + JSON.decode().encode("utf-16-le"), None, "jsonfeed"),
        (b"Service Unavailable", "application/rss+xml", "xml"),  # named, and says why not itself
        (b"Service Unavailable", "application/feed+json", "jsonfeed"),
        (b"Service Unavailable", "text/plain", None),
        (b"Service Unavailable", "application/json", None),
        (b"Service Unavailable", None, None),
    ],
)
def test_choose_format(body: bytes, content_type: str | None, chosen: str | None) -> None:
    found = choose_format(head_of(body), content_type)
    assert (found.name if found else None) == chosen


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"Service Unavailable", "text/plain", "the response is not an RSS, Atom or RDF feed (no feed element found)"),
        (b"Service Unavailable", "application/json",
         "the response is labelled JSON but is neither a JSON Feed nor an RSS, Atom or RDF feed"),
        (b"Service Unavailable", "text/html", "the server returned an HTML page, not a feed (is the feed URL right?)"),
    ],
)
def test_nothing_fits_is_not_a_feed(body: bytes, content_type: str, message: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse(body, content_type=content_type)
    assert (caught.value.reason, str(caught.value)) == ("not_a_feed", message)


def test_each_format_has_its_own_name_and_mime_types() -> None:
    assert [f.name for f in FORMATS] == ["xml", "jsonfeed"]
    assert not FORMATS[0].mime_types & FORMATS[1].mime_types
    assert "application/feed+json" in FORMATS[1].mime_types and "application/json" not in FORMATS[1].mime_types


def test_a_json_feed_parses_in_the_worker_pool_exactly_like_in_process() -> None:
    body = (FIXTURES / LECHO).read_bytes()
    pool = ParsePool(1, timeout=10.0)
    try:
        remote = pool.submit(ParseJob(body, URL, "application/feed+json", FETCHED, None)).result(timeout=60)
        with pytest.raises(ParseError) as caught:
            pool.submit(ParseJob(NESTED, URL, "application/feed+json", FETCHED, None)).result(timeout=60)
    finally:
        pool.close()
    assert remote == parse(body)
    assert caught.value.reason == "malformed"


# --- end to end: a JSON Feed through a real poll cycle ---------------------------------------


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    with HTTPTestServer() as http:
        yield Harness(http, tmp_path, f"sqlite:///{tmp_path / 'monitor.db'}")


def alerts_by_story(rt: Runtime) -> dict[str, list[str]]:
    with rt.store.engine.connect() as conn:
        rows = conn.execute(select(Story.title, Alert.watchlist).join(Alert, Alert.story_id == Story.id))
        found: dict[str, list[str]] = {}
        for title, watchlist in rows:
            found.setdefault(title, []).append(watchlist)
    return {title: sorted(watchlists) for title, watchlists in found.items()}


def test_a_json_feed_goes_through_a_poll_cycle_and_its_matching_items_alert(harness: Harness) -> None:
    seed = seed_article()
    seed_feed = feed({"id": seed.guid, "url": seed.link, "title": seed.title, "content_text": seed.summary,
                      "date_published": "2026-11-24T08:30:00+01:00"}, language="fr")
    harness.feed("lecho", Static((FIXTURES / LECHO).read_bytes(), content_type="application/feed+json", etag='"l1"'))
    harness.feed("seed", Static(seed_feed, content_type="application/feed+json; charset=utf-8", etag='"s1"'))
    rt = harness.runtime()
    try:
        report = rt.pipeline.run_cycle(force=True)
        feeds = {f.name: f for f in rt.store.feeds()}
        assert {name: (f.state, f.last_error_reason, f.entries_seen) for name, f in feeds.items()} == {
            "lecho": ("ok", None, 5),
            "seed": ("ok", None, 1),
        }
        alerts = alerts_by_story(rt)
        # the seed article alerts its three watchlists, as it does from an RSS feed
        assert alerts[SEED_TITLE] == ["dprk-russia-pact", "dprk-russia-sanctions", "kursk-troops"]
        # the French report of the first combats in Kursk and the English "what we know" the
        # next morning tell one event: it alerts once, by its first telling
        assert alerts["Des soldats nord-coréens engagés dans la région de Koursk, selon Kiev"] == ["kursk-troops"]
        assert "North Korean troops in Kursk: what we know" not in alerts
        with rt.store.engine.connect() as conn:
            clusters = {t: c for t, c in conn.execute(select(Story.title, Story.cluster_id))}
        assert (
            clusters["North Korean troops in Kursk: what we know"]
            == clusters["Des soldats nord-coréens engagés dans la région de Koursk, selon Kiev"]
        )
        assert "COP29 : à Bakou, les négociations climatiques s'ouvrent dans un climat de défiance" not in alerts
        queued = report.total("alerts")
        assert queued == sum(len(watchlists) for watchlists in alerts.values())

        again = rt.pipeline.run_cycle(force=True)  # 304s: nothing parsed, nothing alerted twice
        assert {o.status for o in again.outcomes} == {"unchanged"} and again.total("alerts") == 0
    finally:
        rt.close()
