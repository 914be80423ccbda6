"""Rendering alerts: what a reader sees in each channel, and what a hostile feed cannot do.

Slack bodies are CommonMark that Apprise turns into mrkdwn (see monitor/delivery/channels.py); the
Slack cases here check the CommonMark, and tests/test_notify.py checks the final Slack
payload that Apprise builds from it.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from monitor.delivery.channels import Message
from monitor.delivery.render import (
    ALSO_MAX,
    SUMMARY_MAX,
    TEMPLATE_NAMES,
    TITLE_MAX,
    AlertStory,
    OtherReport,
    Renderer,
)
from monitor.errors import ConfigError

PUBLISHED = datetime(2024, 6, 19, 5, 5, tzinfo=UTC)
TITLE = "Putin and Kim sign mutual defence pact in Pyongyang"
SUMMARY = "Russia and North Korea agreed to help each other if attacked, the Kremlin said."
LINK = "https://www.bbc.co.uk/news/articles/c1ww4gll8ppo"
LEMONDE_TITLE = "Poutine et Kim signent un pacte de défense mutuelle à Pyongyang"
LEMONDE_LINK = "https://www.lemonde.fr/international/article/2024/06/19/poutine-kim-pacte"
#: The same article in another feed, then another outlet's story of the same event.
OTHERS = (
    OtherReport("guardian-world", "en", TITLE, LINK, 7),
    OtherReport("lemonde-international", "fr", LEMONDE_TITLE, LEMONDE_LINK, 9),
)


def story(**changes: object) -> AlertStory:
    base = AlertStory(
        story_id=7,
        title=TITLE,
        link=LINK,
        source="bbc-world",
        published_at=PUBLISHED,
        summary=SUMMARY,
        watchlists=("dprk-russia-pact",),
        matched_terms=('"North Korea"', "pact"),
        highlights=(("title", 34, 38), ("summary", 11, 22)),  # "pact", "North Korea"
        also_reported_by=OTHERS,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_highlight_offsets_in_fixture_are_right() -> None:
    assert TITLE[34:38] == "pact" and SUMMARY[11:22] == "North Korea"


# -- content per channel -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "body_format", "title", "expected_in_body"),
    [
        (
            "email",
            "html",
            f"[dprk-russia-pact] {TITLE}",
            [
                '<a href="https://www.bbc.co.uk/news/articles/c1ww4gll8ppo"',
                "Putin and Kim sign mutual defence <mark>pact</mark> in Pyongyang",
                "bbc-world · 2024-06-19 14:05 KST",
                '<mark>"North Korea"</mark>, <mark>pact</mark>',
                "Russia and <mark>North Korea</mark> agreed to help each other",
                ">https://www.bbc.co.uk/news/articles/c1ww4gll8ppo</a>",
                "Watchlist: dprk-russia-pact",
                "Also reported by:",
                "<li>guardian-world (en)</li>",
                f'<li>lemonde-international (fr): {LEMONDE_TITLE} <a href="{LEMONDE_LINK}"',
            ],
        ),
        (
            "slack",
            "markdown",
            "Watchlist: dprk-russia-pact",
            [
                f"**[{TITLE}](<https://www.bbc.co.uk/news/articles/c1ww4gll8ppo>)**",
                "bbc-world · 2024-06-19 14:05 KST",
                'Matched: **"North Korea"**, **pact**',
                "Russia and **North Korea** agreed to help each other",
                "Watchlist: dprk-russia-pact",
                "Also reported by:\n• guardian-world (en)\n",
                f"• lemonde-international (fr): [{LEMONDE_TITLE}](<{LEMONDE_LINK}>)\n",
            ],
        ),
        (
            "text",
            "text",
            f"[dprk-russia-pact] {TITLE}",
            [
                "bbc-world · 2024-06-19 14:05 KST",
                'Matched: "North Korea", pact',
                SUMMARY,
                "https://www.bbc.co.uk/news/articles/c1ww4gll8ppo",
                "Watchlist: dprk-russia-pact",
                "Also reported by:\n- guardian-world (en)\n",
                f"- lemonde-international (fr): {LEMONDE_TITLE}\n  {LEMONDE_LINK}\n",
            ],
        ),
    ],
)
def test_alert_content_per_channel(
    kind: str, body_format: str, title: str, expected_in_body: list[str]
) -> None:
    message = Renderer(timezone="Asia/Seoul").alert(story(), kind)
    assert message.body_format == body_format
    assert message.title == title
    for fragment in expected_in_body:
        assert fragment in message.body, fragment


def test_text_body_has_no_markup() -> None:
    body = Renderer().alert(story(), "text").body
    assert not re.search(r"<[a-z]|\*\*|&[a-z]+;", body)


def test_email_is_a_whole_html_document() -> None:
    body = Renderer().alert(story(), "email").body
    assert body.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in body and body.rstrip().endswith("</html>")


@pytest.mark.parametrize(
    ("timezone", "published", "expected"),
    [
        ("UTC", PUBLISHED, "2024-06-19 05:05 UTC"),
        ("Asia/Seoul", PUBLISHED, "2024-06-19 14:05 KST"),
        ("Europe/Paris", PUBLISHED, "2024-06-19 07:05 CEST"),
        ("Europe/Paris", datetime(2024, 1, 10, 23, 30, tzinfo=UTC), "2024-01-11 00:30 CET"),
        ("America/New_York", PUBLISHED, "2024-06-19 01:05 EDT"),
        # A naive time is taken as UTC (the outbox's contract), not as local time.
        ("Asia/Seoul", datetime(2024, 6, 19, 5, 5), "2024-06-19 14:05 KST"),
    ],
)
def test_time_is_shown_in_the_configured_timezone(timezone: str, published: datetime, expected: str) -> None:
    renderer = Renderer(timezone=timezone)
    for kind in ("email", "slack", "text"):
        assert expected in renderer.alert(story(published_at=published), kind).body


def test_several_watchlists_are_all_named_in_one_message() -> None:
    s = story(watchlists=("dprk-russia-pact", "dprk-russia-sanctions"))
    renderer = Renderer()
    assert renderer.alert(s, "email").title.startswith("[dprk-russia-pact, dprk-russia-sanctions] ")
    assert renderer.alert(s, "slack").title == "Watchlists: dprk-russia-pact, dprk-russia-sanctions"
    for kind in ("email", "slack", "text"):
        assert "Watchlists: dprk-russia-pact, dprk-russia-sanctions" in renderer.alert(s, kind).body


def test_story_without_link_summary_or_other_sources() -> None:
    s = story(link=None, summary="", also_reported_by=())
    renderer = Renderer()
    email = renderer.alert(s, "email").body
    assert "<a " not in email and "Also reported by" not in email
    slack = renderer.alert(s, "slack").body
    assert slack.startswith("**Putin and Kim sign mutual defence pact in Pyongyang**\n")
    assert "](<" not in slack
    assert "Also reported by" not in renderer.alert(s, "text").body


# -- escaping: a feed is untrusted input ---------------------------------------------

HOSTILE_TITLE = "<!channel> & <http://evil|x> <@U123>"


@pytest.mark.parametrize(
    ("field", "value", "kind", "present", "absent"),
    [
        # Slack: < and > are CommonMark-escaped (Apprise turns \< into &lt;), so no
        # <!channel>, <@U…> or <url|text> can form; & is left for Apprise to escape.
        ("title", HOSTILE_TITLE, "slack", [r"\<\!channel\> & \<http://evil|x\> \<@U123\>"], []),
        ("summary", "Hi <!here> and <https://evil.example|click>", "slack", [r"\<\!here\>"], []),
        ("source", "<!everyone>", "slack", [r"\<\!everyone\>"], []),
        # Markdown a feed might carry cannot become links, bold or code spans in Slack.
        (
            "title",
            "[click](https://evil.example) **x** `y`",
            "slack",
            ["\\[click\\]\\(https://evil.example\\) \u2217\u2217x\u2217\u2217 \u02cby\u02cb"],
            ["[click](https"],
        ),
        # E-mail: HTML-escaped (the subject is plain text, and stays as it is).
        (
            "summary",
            "<script>alert(1)</script> <b>x</b>",
            "email",
            ["&lt;script&gt;alert(1)&lt;/script&gt; &lt;b&gt;x&lt;/b&gt;"],
            ["<script", "<b>x"],
        ),
        (
            "title",
            HOSTILE_TITLE,
            "email",
            ["&lt;!channel&gt; &amp; &lt;http://evil|x&gt;"],
            ["<!channel>", "<http://evil"],
        ),
        ("source", 'bbc"><script>', "email", ['bbc"&gt;&lt;script&gt;'], ["<script"]),
        # Terminal escape sequences from a feed never reach the console.
        ("title", "Breaking\x1b[2J\x1b]0;pwned\x07 news", "text", [], ["\x1b", "\x07"]),
        (
            "summary",
            "line one\x1b[31m red\r\nline\ttwo",
            "text",
            ["line one[31m red line two"],
            ["\x1b", "\r", "\t"],
        ),
    ],
)
def test_feed_values_are_escaped(
    field: str, value: str, kind: str, present: list[str], absent: list[str]
) -> None:
    message = Renderer().alert(story(**{field: value, "highlights": ()}), kind)
    for fragment in present:
        assert fragment in message.body, fragment
    checked = message.title + "\n" + message.body if kind == "text" else message.body
    for fragment in absent:
        assert fragment not in checked, fragment
    if kind == "slack":
        # Every "<" left is either escaped or opens our own link destination "](<".
        assert not re.search(r"(?<![\\(])<", message.body), message.body


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("https://example.org/a b?q=<x>&r=|", "https://example.org/a%20b?q=%3Cx%3E&r=%7C"),
        ("HTTPS://Example.org/path", "https://example.org/path"),
        ("https://bank.example@evil.example/login", "https://evil.example/login"),
        ("https://xn--bcher-kva.example/é", "https://xn--bcher-kva.example/%C3%A9"),
        ("https://bücher.example/", "https://xn--bcher-kva.example/"),
        ("javascript:alert(1)", None),
        ("data:text/html,<script>alert(1)</script>", None),
        ("file:///etc/passwd", None),
        ("//example.org/no-scheme", None),
        ("https://exa<mple.org/", None),
        ("", None),
    ],
)
def test_links_are_http_only_and_encoded(link: str, expected: str | None) -> None:
    renderer = Renderer()
    s = story(link=link, also_reported_by=())
    text = renderer.alert(s, "text").body
    email = renderer.alert(s, "email").body
    slack = renderer.alert(s, "slack").body
    if expected is None:
        assert "<a " not in email and "](<" not in slack
        assert link == "" or link not in text
    else:
        assert f"\n{expected}\n" in text
        assert f'href="{expected.replace("&", "&amp;")}"' in email
        assert f"](<{expected}>)" in slack


def test_email_html_is_sanitised_even_when_a_template_marks_feed_text_safe() -> None:
    # A user template that trusts feed text too much still cannot put active content in
    # an e-mail: the rendered fragment goes through nh3's allowlist.
    override = "<p>{{ story.title|safe }}</p><p>{{ story.summary|safe }}</p>"
    renderer = Renderer(overrides={"email.html": override})
    evil = story(
        title='<script>alert(1)</script><a href="javascript:alert(2)">x</a>',
        summary='<img src=x onerror="alert(3)"><iframe src="https://evil.example"></iframe><b>ok</b>',
        highlights=(),
    )
    body = renderer.alert(evil, "email").body
    for bad in ("<script", "alert(1)", "javascript:", "onerror", "<iframe", "<img"):
        assert bad not in body, bad
    assert "<b>ok</b>" in body


# -- highlights ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spans", "html", "slack"),
    [
        (
            "North Korea and Russia",
            [(0, 11)],
            "<mark>North Korea</mark> and Russia",
            "**North Korea** and Russia",
        ),
        # overlapping and adjacent spans merge into one highlight
        (
            "North Korea and Russia",
            [(0, 5), (3, 11), (11, 15)],
            "<mark>North Korea and</mark> Russia",
            "**North Korea and** Russia",
        ),
        # out-of-range, empty and reversed spans are ignored; a span past the end is cut
        ("Kursk", [(10, 20), (2, 2), (4, 1), (3, 99)], "Kur<mark>sk</mark>", "Kur**sk**"),
        # HTML inside a highlight is still escaped
        ("a <b> c", [(2, 5)], "a <mark>&lt;b&gt;</mark> c", r"a **\<b\>** c"),
        # a span ending on a space keeps the delimiters against the word (CommonMark rule)
        ("Moscow says", [(0, 7)], "<mark>Moscow </mark>says", "**Moscow** says"),
    ],
)
def test_summary_highlights(text: str, spans: list[tuple[int, int]], html: str, slack: str) -> None:
    s = story(summary=text, highlights=tuple(("summary", a, b) for a, b in spans))
    renderer = Renderer()
    assert f">{html}</p>" in renderer.alert(s, "email").body
    assert f"\n{slack}\n" in renderer.alert(s, "slack").body


def test_title_highlights_and_spans_on_other_fields_are_ignored() -> None:
    s = story(highlights=(("title", 0, 5), ("link", 0, 5), ("summary", 0, 6)))
    email = Renderer().alert(s, "email").body
    assert "<mark>Putin</mark> and Kim" in email
    assert "<mark>Russia</mark> and North Korea" in email


# -- sizes ---------------------------------------------------------------------------


def test_long_title_is_one_line_of_bounded_length() -> None:
    long_title = "Kremlin\nsays " + "very " * 100 + "long"
    for kind in ("email", "slack", "text"):
        message = Renderer().alert(story(title=long_title, watchlists=("w" * 300,)), kind)
        assert len(message.title) <= TITLE_MAX
        assert "\n" not in message.title and message.title.endswith("…")


def test_long_summary_is_cut_on_a_word_boundary() -> None:
    summary = "word " * 400
    body = Renderer().alert(story(summary=summary, highlights=()), "text").body
    line = next(line for line in body.splitlines() if line.startswith("word"))
    assert len(line) <= SUMMARY_MAX
    assert line.endswith("word…")


# -- digests -------------------------------------------------------------------------


def digest_stories() -> list[AlertStory]:
    return [
        story(
            story_id=1,
            title="Pact signed",
            watchlists=("dprk-russia-pact", "dprk-russia-sanctions"),
            highlights=(),
        ),
        story(story_id=2, title="Troops in Kursk", watchlists=("kursk-troops",), highlights=()),
        story(story_id=3, title="Treaty ratified", watchlists=("dprk-russia-pact",), highlights=()),
    ]


@pytest.mark.parametrize(
    ("kind", "sections"),
    [
        (
            "email",
            [
                ">dprk-russia-pact</h2>",
                "Pact signed",
                "Treaty ratified",
                ">kursk-troops</h2>",
                "Troops in Kursk",
            ],
        ),
        (
            "slack",
            ["**dprk-russia-pact**", "Pact signed", "Treaty ratified", "**kursk-troops**", "Troops in Kursk"],
        ),
        (
            "text",
            [
                "== dprk-russia-pact ==",
                "Pact signed",
                "Treaty ratified",
                "== kursk-troops ==",
                "Troops in Kursk",
            ],
        ),
    ],
)
def test_digest_groups_stories_by_watchlist(kind: str, sections: list[str]) -> None:
    message = Renderer().digest(digest_stories(), kind, title="Quiet hours: 3 stories")
    assert message.title == "Quiet hours: 3 stories"
    positions = [message.body.find(s) for s in sections]
    assert -1 not in positions, list(zip(sections, positions, strict=True))
    assert positions == sorted(positions)
    # Each story once, under its first watchlist; the other watchlist is named.
    assert message.body.count("Pact signed") == 1
    assert "dprk-russia-sanctions" in message.body.replace("\\", "")
    assert "3 stories" in message.body


# -- also reported by ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (
            "text",
            [
                "  Also reported by:\n  - guardian-world (en)\n",
                f"  - lemonde-international (fr): {LEMONDE_TITLE}\n    {LEMONDE_LINK}\n",
            ],
        ),
        (
            "slack",
            [
                "   ◦ also reported by guardian-world (en)\n",
                f"   ◦ also reported by lemonde-international (fr): [{LEMONDE_TITLE}](<{LEMONDE_LINK}>)\n",
            ],
        ),
        (
            "email",
            [
                "Also reported by:</p>",
                "<li>guardian-world (en)</li>",
                f'<li>lemonde-international (fr): {LEMONDE_TITLE} <a href="{LEMONDE_LINK}"',
                f">{LEMONDE_LINK}</a></li>",
            ],
        ),
    ],
)
def test_digest_lists_the_other_reports_under_each_story(kind: str, expected: list[str]) -> None:
    stories = [story(), story(story_id=8, watchlists=("kursk-troops",))]
    body = Renderer().digest(stories, kind, title="digest").body
    for fragment in expected:
        assert body.count(fragment) == 2, fragment  # under each story


def test_the_same_article_elsewhere_is_named_by_its_outlet_alone() -> None:
    # The sighting carries the story's own title and link: repeating them says nothing.
    renderer = Renderer()
    for kind in ("text", "slack", "email"):
        alone = renderer.digest([story(also_reported_by=())], kind, title="d").body
        body = renderer.digest([story(also_reported_by=OTHERS[:1])], kind, title="d").body
        assert "guardian-world (en)" in body and "guardian-world" not in alone
        assert body.count(LINK) == alone.count(LINK) and body.count("mutual defence") == alone.count("mutual defence")


HOSTILE_OTHER = OtherReport(
    outlet="<!everyone> wire\x1b[2J",
    language="fr\x07",
    title="<!channel> **pwned** <script>alert(1)</script> [x](https://evil.example)",
    link="javascript:alert(2)",
    story_id=5,
)


@pytest.mark.parametrize(
    ("kind", "present", "absent"),
    [
        (
            "slack",
            [
                r"\<\!everyone\> wire\[2J (fr): \<\!channel\> ∗∗pwned∗∗",
                r"\[x\]\(https://evil.example\)",
            ],
            ["<!channel>", "<!everyone>", "**pwned**", "[x](", "javascript:", "\x1b", "\x07"],
        ),
        (
            "email",
            ["&lt;!everyone&gt; wire[2J (fr): &lt;!channel&gt; **pwned** &lt;script&gt;"],
            ["<script", "<!channel>", "javascript:", "\x1b", "\x07"],
        ),
        (
            "text",
            ["- <!everyone> wire[2J (fr): <!channel> **pwned** <script>alert(1)</script>"],
            ["javascript:", "\x1b", "\x07"],
        ),
    ],
)
def test_other_reports_from_feeds_are_escaped(kind: str, present: list[str], absent: list[str]) -> None:
    renderer = Renderer()
    s = story(also_reported_by=(HOSTILE_OTHER,))
    for body in (renderer.alert(s, kind).body, renderer.digest([s], kind, title="d").body):
        for fragment in present:
            assert fragment in body, fragment
        for fragment in absent:
            assert fragment not in body, fragment
        if kind == "slack":
            assert not re.search(r"(?<![\\(])<", body), body


def test_a_long_list_of_other_reports_is_cut_and_counted() -> None:
    others = tuple(OtherReport(f"outlet-{i}", "en", f"Telling {i}", f"https://o{i}.example/a") for i in range(12))
    renderer = Renderer()
    for kind in ("text", "slack", "email"):
        body = renderer.digest([story(also_reported_by=others)], kind, title="d").body
        assert f"outlet-{ALSO_MAX - 1}" in body and f"outlet-{ALSO_MAX}" not in body
        assert f"and {12 - ALSO_MAX} more" in body


def test_an_override_that_joins_the_other_reports_lists_their_outlets() -> None:
    renderer = Renderer(overrides={"text.txt": "Also: {{ story.also_reported_by|join(', ') }}"})
    assert renderer.alert(story(), "text").body == "Also: guardian-world, lemonde-international\n"


# -- configuration -------------------------------------------------------------------


def test_override_replaces_one_template() -> None:
    renderer = Renderer(overrides={"text.txt": "{{ story.source }}: {{ story.title }} <{{ story.link }}>"})
    s = story()
    assert (
        renderer.alert(s, "text").body
        == f"bbc-world: {TITLE} <https://www.bbc.co.uk/news/articles/c1ww4gll8ppo>\n"
    )
    assert "<mark>pact</mark>" in renderer.alert(s, "email").body  # others stay built in


def test_slack_override_escapes_feed_values_by_default() -> None:
    renderer = Renderer(overrides={"slack.md": "{{ story.title }}"})
    assert renderer.alert(story(title="<!here>"), "slack").body == "\\<\\!here\\>\n"


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"email.htm": "x"}, "unknown template 'email.htm'"),
        ({"email.html": "{% if %}"}, "template 'email.html' line 1"),
        ({"slack.md": "{{ story.titel }}"}, "template 'slack.md' does not render"),
        (
            {"digest-text.txt": "{% for g in groups %}{{ g.nope }}{% endfor %}"},
            "template 'digest-text.txt' does not render",
        ),
    ],
)
def test_bad_override_is_a_config_error_naming_the_template(overrides: dict[str, str], error: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(error)) as info:
        Renderer(overrides=overrides)
    assert info.value.field == f"templates.{next(iter(overrides))}"


def test_template_names_are_the_shipped_files() -> None:
    assert set(TEMPLATE_NAMES) == {
        "email.html", "slack.md", "text.txt", "digest-email.html", "digest-slack.md", "digest-text.txt",
    }  # fmt: skip


def test_unknown_timezone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        Renderer(timezone="Mars/Olympus")


def test_unknown_flavour_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown channel flavour 'sms' \(known: email, slack, text\)"):
        Renderer().alert(story(), "sms")


def test_sample_story_renders_with_its_terms_highlighted() -> None:
    renderer = Renderer()
    sample = renderer.sample()
    assert sample.published_at.tzinfo is not None and sample.watchlists and sample.matched_terms
    for field, start, end in sample.highlights:
        text = sample.title if field == "title" else sample.summary
        assert text[start:end] in ("North Korean", "troops", "Kursk")
    email = renderer.alert(sample, "email").body
    assert "<mark>North Korean</mark>" in email and "<mark>Kursk</mark>" in email
    assert isinstance(renderer.alert(sample, "slack"), Message)
