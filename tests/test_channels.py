"""Channel flavours: the table, what each flavour does to feed text, and adding one.

A flavour is one entry of ``FLAVOURS`` plus its templates; the tests at the end add a
Discord-markdown and a Matrix HTML-lite flavour in a fixture and render through the
unchanged renderer, which is the whole cost of a new channel markup.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from importlib.resources import files

import pytest

from monitor.delivery.channels import FLAVOURS, Flavour, SendResult, html_escape, template_names
from monitor.delivery.render import TEMPLATE_NAMES, AlertStory, Renderer
from monitor.errors import ConfigError

STORY = AlertStory(
    story_id=1,
    title="Kursk offensive stalls",
    link="https://example.org/world/kursk_offensive?a=1&b=2",
    source="wire",
    published_at=datetime(2024, 8, 20, 9, 30, tzinfo=UTC),
    summary="Troops dig in near Sudzha.",
    watchlists=("kursk",),
    matched_terms=("Kursk",),
    highlights=(("title", 0, 5), ("summary", 0, 6)),
)
TEMPLATES = files("monitor.delivery") / "templates"


# -- the shipped table -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "body_format", "templates"),
    [
        ("email", "html", ("email.html", "digest-email.html")),
        ("slack", "markdown", ("slack.md", "digest-slack.md")),
        ("text", "text", ("text.txt", "digest-text.txt")),
    ],
)
def test_shipped_flavours(name: str, body_format: str, templates: tuple[str, str]) -> None:
    flavour = FLAVOURS[name]
    assert flavour.name == name and flavour.body_format == body_format
    assert (flavour.alert_template, flavour.digest_template) == templates
    for template in templates:
        assert (TEMPLATES / template).is_file(), template
    assert Renderer().alert(STORY, name).body_format == body_format


def test_every_shipped_template_belongs_to_a_flavour() -> None:
    files = {p.name: p.read_text(encoding="utf-8") for p in TEMPLATES.iterdir() if p.is_file()}
    shipped = {name for name in files if not name.startswith("_")}
    assert shipped == set(template_names(FLAVOURS)) == set(TEMPLATE_NAMES)
    for partial in set(files) - shipped:  # a shared piece ("_name") is used by some template
        assert any(f'"{partial}"' in files[name] for name in shipped), partial


@pytest.mark.parametrize(
    ("name", "text", "escaped"),
    [
        ("email", "<b>Tom & Jerry</b>", "&lt;b&gt;Tom &amp; Jerry&lt;/b&gt;"),
        ("email", 'say "hi"', "say &#34;hi&#34;"),
        # CommonMark for Apprise's Slack converter: \< \> become &lt; &gt; and '&' &amp;
        # there; the backslashes before [ ] ( ) ! # are dropped by it (test_notify checks
        # what Slack receives).
        ("slack", "<!channel> & <@U1>", r"\<\!channel\> & \<@U1\>"),
        ("slack", "[x](http://e) #h", r"\[x\]\(http://e\) \#h"),
        # Slack has no escape for its formatting characters: look-alikes instead.
        ("slack", "*b* `c`", "\u2217b\u2217 \u02cbc\u02cb"),
        ("slack", "snake_case ~tilde~", "snake\u02cdcase \u223ctilde\u223c"),
        # A backslash stays one backslash: a word joiner keeps it from escaping anything.
        ("slack", r"C:\x", "C:\\\u2060x"),
    ],
)
def test_escape_makes_feed_text_inert(name: str, text: str, escaped: str) -> None:
    escape = FLAVOURS[name].escape
    assert escape is not None
    assert escape(text) == escaped


def test_text_flavour_has_no_markup() -> None:
    text = FLAVOURS["text"]
    assert text.escape is None and text.mark("Kursk") == "Kursk"


@pytest.mark.parametrize(
    ("name", "span", "marked"),
    [
        ("email", "Kursk", "<mark>Kursk</mark>"),
        ("email", "Moscow ", "<mark>Moscow </mark>"),
        ("slack", "Kursk", "**Kursk**"),
        # CommonMark emphasis must touch text: spaces stay outside the delimiters
        ("slack", " Moscow ", " **Moscow** "),
        ("slack", "  ", "  "),
        ("text", "Kursk", "Kursk"),
    ],
)
def test_mark_highlights_a_span(name: str, span: str, marked: str) -> None:
    assert FLAVOURS[name].mark(span) == marked


@pytest.mark.parametrize(
    ("name", "watchlists", "title"),
    [
        ("email", ("kursk",), "[kursk] Kursk offensive stalls"),
        ("email", ("kursk", "troops"), "[kursk, troops] Kursk offensive stalls"),
        ("email", (), "Kursk offensive stalls"),
        ("slack", ("kursk",), "Watchlist: kursk"),
        ("slack", ("kursk", "troops"), "Watchlists: kursk, troops"),
        ("text", ("kursk",), "[kursk] Kursk offensive stalls"),
    ],
)
def test_title_per_flavour(name: str, watchlists: tuple[str, ...], title: str) -> None:
    assert Renderer().alert(replace(STORY, watchlists=watchlists), name).title == title


def test_slack_title_is_never_highlighted_but_its_summary_is() -> None:
    body = Renderer().alert(STORY, "slack").body
    assert body.startswith("**[Kursk offensive stalls](<")
    assert "**Troops** dig in" in body


# -- the send result -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "delivered", "reason", "permanent"),
    [
        (SendResult.sent(), True, "", False),
        (SendResult.failed("connection refused"), False, "connection refused", False),
        (SendResult.failed("target removed", permanent=True), False, "target removed", True),
    ],
)
def test_send_result(result: SendResult, delivered: bool, reason: str, permanent: bool) -> None:
    assert (result.delivered, result.reason, result.permanent) == (delivered, reason, permanent)


@pytest.mark.parametrize(
    ("delivered", "reason", "permanent"),
    [(True, "why", False), (True, "", True), (False, "", False), (False, "", True)],
)
def test_send_result_refuses_contradictions(delivered: bool, reason: str, permanent: bool) -> None:
    with pytest.raises(ValueError):
        SendResult(delivered=delivered, reason=reason, permanent=permanent)


# -- adding a flavour: one table entry and its templates ---------------------------------

_DISCORD_SPECIAL_RE = re.compile(r"([\\*_~`|>#\[\]()])")


def _discord_escape(text: str) -> str:
    # A zero-width space after '@' keeps @everyone and @here from pinging.
    return _DISCORD_SPECIAL_RE.sub(r"\\\1", text).replace("@", "@\u200b")


def _discord_underline(text: str) -> str:
    return f"__{text}__"


def _matrix_strong(text: str) -> str:
    return f"<strong>{text}</strong>"


@dataclass(frozen=True, slots=True)
class NewFlavour:
    flavour: Flavour
    templates: dict[str, str]
    alert_has: tuple[str, ...]
    alert_lacks: tuple[str, ...]
    digest_has: tuple[str, ...]


NEW_FLAVOURS = {
    "discord": NewFlavour(
        Flavour(
            name="discord",
            body_format="markdown",
            alert_template="discord.md",
            digest_template="digest-discord.md",
            escape=_discord_escape,
            mark=_discord_underline,
        ),
        {
            "discord.md": "{{ story.title_hl }} ({{ story.source }})\n{{ story.summary_hl }}\n<{{ story.link }}>",
            "digest-discord.md": (
                "{% for g in groups %}# {{ g.watchlist }}\n"
                "{% for s in g.stories %}- {{ s.title_hl }}\n{% endfor %}{% endfor %}"
            ),
        },
        alert_has=(
            "@\u200beveryone: __Kursk__ offensive \\*stalls\\* (wire\\_desk)",
            "__Troops__ dig in",
            # The vetted link is prebuilt: not escaped like feed text.
            "<https://example.org/world/kursk_offensive?a=1&b=2>",
        ),
        alert_lacks=("@everyone", "*stalls*"),
        digest_has=("# kursk\n- @\u200beveryone: __Kursk__ offensive",),
    ),
    "matrix": NewFlavour(
        Flavour(
            name="matrix",
            body_format="html",
            alert_template="matrix.html",
            digest_template="digest-matrix.html",
            escape=html_escape,
            mark=_matrix_strong,
        ),
        {
            "matrix.html": (
                '<p><a href="{{ story.link }}">{{ story.title_hl }}</a> ({{ story.source }})</p>'
                "<p>{{ story.summary_hl }}</p>"
            ),
            "digest-matrix.html": (
                "{% for g in groups %}<h3>{{ g.watchlist }}</h3>"
                "{% for s in g.stories %}<p>{{ s.title_hl }}</p>{% endfor %}{% endfor %}"
            ),
        },
        alert_has=(
            '<a href="https://example.org/world/kursk_offensive?a=1&amp;b=2">',
            "@everyone: <strong>Kursk</strong> offensive *stalls*</a> (wire_desk)",
            "<strong>Troops</strong> dig in",
        ),
        alert_lacks=("<mark>", "a=1&b=2"),
        digest_has=("<h3>kursk</h3><p>@everyone: <strong>Kursk</strong> offensive",),
    ),
}


@pytest.fixture(params=sorted(NEW_FLAVOURS))
def new_flavour(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[NewFlavour]:
    case = NEW_FLAVOURS[request.param]
    monkeypatch.setitem(FLAVOURS, case.flavour.name, case.flavour)
    yield case


def test_a_registered_flavour_renders_through_the_renderer(new_flavour: NewFlavour) -> None:
    renderer = Renderer(overrides=new_flavour.templates)
    hostile = replace(
        STORY,
        title="@everyone: Kursk offensive *stalls*",
        source="wire_desk",
        highlights=(("title", 11, 16), ("summary", 0, 6)),
    )
    name = new_flavour.flavour.name
    message = renderer.alert(hostile, name)
    assert message.body_format == new_flavour.flavour.body_format
    assert message.title == "[kursk] @everyone: Kursk offensive *stalls*"
    for fragment in new_flavour.alert_has:
        assert fragment in message.body, fragment
    for fragment in new_flavour.alert_lacks:
        assert fragment not in message.body, fragment
    digest = renderer.digest([hostile], name, title="Digest")
    for fragment in new_flavour.digest_has:
        assert fragment in digest.body, fragment


def test_a_registered_flavours_template_is_checked_like_the_shipped_ones(new_flavour: NewFlavour) -> None:
    broken = dict(new_flavour.templates, **{new_flavour.flavour.alert_template: "{{ story.nope }}"})
    with pytest.raises(ConfigError, match=f"template '{new_flavour.flavour.alert_template}' does not render"):
        Renderer(overrides=broken)


def test_a_renderer_knows_the_flavours_of_when_it_was_built(monkeypatch: pytest.MonkeyPatch) -> None:
    renderer = Renderer()
    case = NEW_FLAVOURS["discord"]
    monkeypatch.setitem(FLAVOURS, "discord", case.flavour)
    with pytest.raises(ValueError, match="unknown channel flavour 'discord'"):
        renderer.alert(STORY, "discord")
    assert Renderer(overrides=case.templates).alert(STORY, "discord").body_format == "markdown"
