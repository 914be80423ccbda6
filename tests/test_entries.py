"""Entry normalisation and html_to_text, on feedparser-shaped entries.

The raw entries below have the shape feedparser 6 gives (``title_detail``,
``summary_detail``, ``content`` lists, naive-UTC ``*_parsed`` struct_times); the
fixture-driven tests in test_parse.py cover the same code through real feeds.
"""

from __future__ import annotations

import dataclasses
import pickle
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from monitor.ingest import dedupe
from monitor.ingest.entries import SUMMARY_MAX_CHARS, Entry, html_to_text, language_code, normalise_entry

FETCHED = datetime(2024, 3, 27, 12, 0, 0, tzinfo=UTC)
FEED_URL = "https://www.lemonde.fr/international/rss_full.xml"
ARTICLE = "https://www.lemonde.fr/international/article/2024/03/27/attentat-pres-de-moscou_6224408_3210.html"


def struct(dt: datetime) -> time.struct_time:
    """The naive-UTC struct_time feedparser puts in ``*_parsed``."""
    return dt.astimezone(UTC).utctimetuple()


def raw_entry(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "title": "Attentat près de Moscou",
        "title_detail": {"type": "text/plain", "language": None, "value": "Attentat près de Moscou"},
        "link": ARTICLE,
        "id": ARTICLE,
        "summary": "<p>La population russe semble condamnée…</p>",
        "summary_detail": {"type": "text/html", "language": None},
        "published_parsed": struct(datetime(2024, 3, 27, 8, 0, 14, tzinfo=UTC)),
    }
    base.update(fields)
    return {key: value for key, value in base.items() if value is not None}


def normalise(raw: dict[str, Any], **overrides: Any) -> Entry | None:
    kwargs: dict[str, Any] = {
        "feed_url": FEED_URL,
        "fetched_at": FETCHED,
        "default_language": None,
        "feed_language": None,
    }
    kwargs.update(overrides)
    return normalise_entry(raw, **kwargs)


def entry_of(raw: dict[str, Any], **overrides: Any) -> Entry:
    entry = normalise(raw, **overrides)
    assert entry is not None
    return entry


# --- html_to_text ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("html", "expected"),
    [
        ("<p>Hello <b>world</b></p><p>Second</p>", "Hello world\nSecond"),
        ("a<br>b<br/>c", "a\nb\nc"),
        ("<ul><li>one</li><li>two</li></ul>", "one\ntwo"),
        ("<p>a</p>\n\n\n<p>  b   c </p>", "a\nb c"),
        ("Caf&eacute; &amp; bar &#8217;s &#x2014; ok", "Café & bar ’s — ok"),
        ("x &nbsp; y", "x y"),
        ("tom &amp jerry", "tom & jerry"),
        ("before<script>alert('x')</script>after", "beforeafter"),
        ("<style>p { color: red }</style><p>text</p>", "text"),
        ("<noscript>enable js</noscript>visible", "visible"),
        ("text<script>never closed", "text"),
        ("<p>unclosed <b>bold", "unclosed bold"),
        ("5 < 6 and 7 > 3", "5 < 6 and 7 > 3"),
        ("a<!-- comment -->b", "ab"),
        ("<![CDATA[kept]]> text", "kept text"),
        ('<img alt="pic" src="x.jpg">caption', "caption"),
        ("plain text\r\nwith CRLF", "plain text\nwith CRLF"),
        ("nul\x00and\x07bell", "nul and bell"),
        ("", ""),
        # real Reuters description: the FeedBurner "feedflare" is links around images only
        (
            'WASHINGTON (Reuters) - North Korea\'s nuclear program has made strides.<div class="feedflare">\n'
            '<a href="http://feeds.reuters.com/~ff/Reuters/worldNews?a=c3wXZD4kLB8:gekfQ34kdOg:yIl2AUoC8zA">'
            '<img src="http://feeds.feedburner.com/~ff/Reuters/worldNews?d=yIl2AUoC8zA" border="0"></img></a>'
            '</div><img src="http://feeds.feedburner.com/~r/Reuters/worldNews/~4/c3wXZD4kLB8"'
            ' height="1" width="1"/>',
            "WASHINGTON (Reuters) - North Korea's nuclear program has made strides.",
        ),
    ],
)
def test_html_to_text(html: str, expected: str) -> None:
    assert html_to_text(html) == expected


def test_html_to_text_max_chars_stops_early_on_long_html() -> None:
    paragraph = "<p>" + "word " * 200 + "</p>"
    html = paragraph * 5000  # about 5 MB of HTML
    started = time.perf_counter()
    text = html_to_text(html, max_chars=5000)
    elapsed = time.perf_counter() - started
    assert 5000 <= len(text) < 50_000
    assert text.startswith("word word")
    assert elapsed < 0.5, f"html_to_text with max_chars took {elapsed:.2f}s on 5 MB"


# --- language codes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("fr-FR", "fr"),
        ("en_us", "en"),
        ("pt-pt", "pt"),
        ("DE", "de"),
        (" ur ", "ur"),
        ("haw", "haw"),
        ("English", None),
        ("", None),
        ("x", None),
        (None, None),
        (42, None),
    ],
)
def test_language_code(tag: object, expected: str | None) -> None:
    assert language_code(tag) == expected


# --- normalise_entry: links -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "feed_url", "expected"),
    [
        ({}, FEED_URL, ARTICLE),
        (
            {"link": "/blog/2012/07/16/Inhibiting-Suspend"},
            "http://intertwingly.net/blog/index.atom",
            "http://intertwingly.net/blog/2012/07/16/Inhibiting-Suspend",
        ),
        ({"link": "000001.html"}, "http://example.org/archives/", "http://example.org/archives/000001.html"),
        (
            {
                "link": "http://feeds.reuters.com/~r/Reuters/worldNews/~3/c3wXZD4kLB8/x",
                "feedburner_origlink": "http://www.reuters.com/article/x-idUSKBN1FJ23Z",
            },
            FEED_URL,
            "http://www.reuters.com/article/x-idUSKBN1FJ23Z",
        ),
        ({"link": "javascript:alert(1)"}, FEED_URL, None),
        ({"link": "mailto:desk@example.org"}, FEED_URL, None),
        ({"link": "  " + ARTICLE + "\n"}, FEED_URL, ARTICLE),
        (
            {
                "link": None,
                "links": [
                    {"rel": "enclosure", "href": "https://cdn.example.org/a.mp3"},
                    {"rel": "alternate", "href": "/story/7"},
                ],
            },
            "https://example.org/feed",
            "https://example.org/story/7",
        ),
        # guid used as link (RSS isPermaLink default): only when it is a real URL
        ({"link": "12345", "id": "12345", "guidislink": True}, FEED_URL, None),
        ({"link": ARTICLE, "guidislink": True}, FEED_URL, ARTICLE),
    ],
)
def test_link(fields: dict[str, Any], feed_url: str, expected: str | None) -> None:
    entry = entry_of(raw_entry(**fields), feed_url=feed_url)
    assert entry.link == expected
    assert entry.canonical_url == (dedupe.canonical_url(expected) if expected else None)
    assert entry.link_key == (dedupe.url_key(expected) if expected else None)


# --- normalise_entry: text ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"title": "\n      « Les soldats de Louis XVI »   \n    "}, "« Les soldats de Louis XVI »"),
        ({"title": "Hannity &amp; Fox", "title_detail": {"type": "text/plain"}}, "Hannity & Fox"),
        ({"title": "Tom & Jerry", "title_detail": {"type": "text/plain"}}, "Tom & Jerry"),
        ({"title": "Is 5 < 6?", "title_detail": {"type": "text/plain"}}, "Is 5 < 6?"),
        ({"title": "<b>Bold</b> move", "title_detail": {"type": "text/html"}}, "Bold move"),
        ({"title": "line one\nline two", "title_detail": {"type": "text/plain"}}, "line one line two"),
        ({"title": "x" * 2000}, "x" * 499 + "…"),
    ],
)
def test_title(fields: dict[str, Any], expected: str) -> None:
    assert entry_of(raw_entry(**fields)).title == expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"summary": "<p>Teaser.</p>"}, "Teaser."),
        # content:encoded is longer than the teaser: the longer text wins
        (
            {
                "summary": "<p>Teaser.</p>",
                "content": [{"type": "text/html", "value": "<p>Teaser.</p><p>Full article body.</p>"}],
            },
            "Teaser.\nFull article body.",
        ),
        # ...and a longer description beats a short content element
        (
            {
                "summary": "<p>A long description of the story.</p>",
                "content": [{"type": "text/html", "value": "<p>Short.</p>"}],
            },
            "A long description of the story.",
        ),
        (
            {
                "summary": None,
                "summary_detail": None,
                "content": [{"type": "text/plain", "value": "Plain <not a tag> text"}],
            },
            "Plain <not a tag> text",
        ),
        ({"summary": "<script>evil()</script><p>Safe</p>"}, "Safe"),
        ({"summary": None, "summary_detail": None}, ""),
    ],
)
def test_summary(fields: dict[str, Any], expected: str) -> None:
    assert entry_of(raw_entry(**fields)).summary == expected


def test_summary_is_capped_on_a_word_boundary() -> None:
    words = " ".join(f"word{i}" for i in range(3000))  # about 25,000 characters
    summary = entry_of(raw_entry(summary=f"<p>{words}</p>")).summary
    assert len(summary) <= SUMMARY_MAX_CHARS
    assert len(summary) > SUMMARY_MAX_CHARS - 20
    assert summary.endswith("…")
    last_word = summary[:-1].split()[-1]
    assert last_word in words.split()  # not cut in the middle of a word


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {
                "author_detail": {"name": "Emily Olson", "email": "e@example.org"},
                "author": "e@example.org (Emily Olson)",
            },
            "Emily Olson",
        ),
        ({"author": "  David Smith in   Washington "}, "David Smith in Washington"),
        ({"author": "Esme Cribb &amp; others"}, "Esme Cribb & others"),
        ({}, None),
        ({"author": "   "}, None),
    ],
)
def test_author(fields: dict[str, Any], expected: str | None) -> None:
    assert entry_of(raw_entry(**fields)).author == expected


def test_control_characters_are_removed() -> None:
    entry = entry_of(raw_entry(title="Bad\x00title\x1b", summary="sum\x00mary", id="guid\x00-1"))
    assert entry.title == "Bad title"
    assert entry.summary == "sum mary"
    assert entry.guid == "guid-1"


# --- normalise_entry: dates -----------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected", "from_feed"),
    [
        # feedparser's tuples are UTC: 08:00:14 stays 08:00:14 whatever the local zone
        ({}, datetime(2024, 3, 27, 8, 0, 14, tzinfo=UTC), True),
        (
            {"published_parsed": None, "updated_parsed": struct(datetime(2024, 3, 26, 23, 0, tzinfo=UTC))},
            datetime(2024, 3, 26, 23, 0, tzinfo=UTC),
            True,
        ),
        (
            {"published_parsed": None, "created_parsed": struct(datetime(2004, 4, 19, 7, 45, tzinfo=UTC))},
            datetime(2004, 4, 19, 7, 45, tzinfo=UTC),
            True,
        ),
        ({"published_parsed": None}, FETCHED, False),
        # in the future: within the tolerance kept, beyond it clamped
        ({"published_parsed": struct(FETCHED + timedelta(minutes=9))}, FETCHED + timedelta(minutes=9), True),
        ({"published_parsed": struct(FETCHED + timedelta(hours=5))}, FETCHED, False),
        ({"published_parsed": struct(datetime(2099, 1, 1, tzinfo=UTC))}, FETCHED, False),
        # unusable values fall through to the next date, then to fetched_at
        ({"published_parsed": (2024, 13, 45, 0, 0, 0, 0, 0, 0)}, FETCHED, False),
        ({"published_parsed": "yesterday"}, FETCHED, False),
        ({"published_parsed": (99999999, 1, 1, 0, 0, 0, 0, 1, 0)}, FETCHED, False),
        (
            {"published_parsed": "garbage", "updated_parsed": struct(datetime(2024, 3, 1, tzinfo=UTC))},
            datetime(2024, 3, 1, tzinfo=UTC),
            True,
        ),
    ],
)
def test_published_at(fields: dict[str, Any], expected: datetime, from_feed: bool) -> None:
    entry = entry_of(raw_entry(**fields))
    assert entry.published_at == expected
    assert entry.published_at.utcoffset() == timedelta(0)
    assert entry.date_from_feed is from_feed


def test_fetched_at_in_another_zone_is_converted_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    entry = entry_of(raw_entry(published_parsed=None), fetched_at=datetime(2024, 3, 27, 13, 0, tzinfo=paris))
    assert entry.published_at == FETCHED
    assert entry.published_at.tzinfo is UTC


def test_naive_fetched_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        normalise(raw_entry(), fetched_at=datetime(2024, 3, 27, 12, 0))


# --- normalise_entry: language --------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "feed_language", "default_language", "expected"),
    [
        ({}, "fr-FR", "en", "fr"),
        ({}, None, "en", "en"),
        ({}, None, None, None),
        ({"title_detail": {"type": "text/plain", "language": "de-DE"}}, "fr-FR", "en", "de"),
        ({"content": [{"type": "text/html", "value": "x", "language": "uk"}]}, "en-us", None, "uk"),
        ({}, "English", "ru", "ru"),
    ],
)
def test_language(
    fields: dict[str, Any], feed_language: str | None, default_language: str | None, expected: str | None
) -> None:
    entry = entry_of(raw_entry(**fields), feed_language=feed_language, default_language=default_language)
    assert entry.language == expected


# --- normalise_entry: identity --------------------------------------------------------


def test_story_key_prefers_the_link_so_changing_guids_do_not_matter() -> None:
    first = entry_of(raw_entry(id="urn:uuid:1111"))
    second = entry_of(raw_entry(id="urn:uuid:2222"))
    assert first.guid_key != second.guid_key
    assert first.story_key == second.story_key == first.link_key


def test_story_key_ignores_tracking_parameters_in_the_link() -> None:
    plain = entry_of(raw_entry())
    tracked = entry_of(raw_entry(link=ARTICLE + "?xtor=RSS-3208&utm_source=rss"))
    assert tracked.link == ARTICLE + "?xtor=RSS-3208&utm_source=rss"  # shown as published
    assert tracked.story_key == plain.story_key


def test_story_key_falls_back_to_guid_then_to_title_and_summary() -> None:
    by_guid = entry_of(raw_entry(link=None, id="tag:heise.de,2018:4204607"))
    assert by_guid.link is None
    assert by_guid.story_key == by_guid.guid_key == dedupe.text_key("tag:heise.de,2018:4204607")

    by_text = entry_of(raw_entry(link=None, id=None))
    assert by_text.guid is None and by_text.guid_key is None and by_text.link_key is None
    assert by_text.story_key == dedupe.text_key(by_text.title, by_text.summary)
    again = entry_of(raw_entry(link=None, id=None), fetched_at=FETCHED + timedelta(hours=1))
    assert again.story_key == by_text.story_key

    other = entry_of(raw_entry(link=None, id=None, title="Another story"))
    assert other.story_key != by_text.story_key


def test_title_key_uses_the_source_name_and_untitled_entries_never_cluster() -> None:
    google_news = entry_of(raw_entry(title="Putin says X - Kyiv Post", source={"title": "Kyiv Post"}))
    assert google_news.title_key == dedupe.title_key("Putin says X")

    first = entry_of(raw_entry(title=None, title_detail=None, link="https://example.org/1"))
    second = entry_of(raw_entry(title=None, title_detail=None, link="https://example.org/2"))
    assert first.title == "" and second.title == ""
    assert first.title_key != second.title_key
    assert first.title_key == first.story_key


@pytest.mark.parametrize(
    "fields",
    [
        {"title": None, "title_detail": None, "summary": None, "summary_detail": None, "link": None},
        {"title": "   ", "summary": "<p> </p>", "link": "javascript:void(0)"},
    ],
)
def test_entry_with_nothing_usable_is_dropped(fields: dict[str, Any]) -> None:
    assert normalise(raw_entry(**fields)) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"title": None, "title_detail": None, "summary": None, "summary_detail": None},  # link only
        {"title": None, "title_detail": None, "link": None},  # summary only
        {"summary": None, "summary_detail": None, "link": None},  # title only
    ],
)
def test_entry_with_one_usable_field_is_kept(fields: dict[str, Any]) -> None:
    assert normalise(raw_entry(**fields)) is not None


def test_entry_is_frozen_and_picklable() -> None:
    entry = entry_of(raw_entry())
    assert pickle.loads(pickle.dumps(entry)) == entry
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.title = "changed"  # type: ignore[misc]
