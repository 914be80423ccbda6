"""Turn matched stories into alert messages for e-mail, Slack and plain-text channels.

Pure: Jinja2, nh3, markupsafe and the standard library only. :mod:`monitor.delivery.notify` hands
the resulting :class:`Message` to Apprise; this module knows what each channel does with
it, because that decides how feed text must be escaped:

* **E-mail** gets HTML (``body_format="html"``). Apprise's mailto plugin then sends a
  ``multipart/alternative`` message whose ``text/plain`` part it derives itself from the
  HTML (``NotifyEmail.prepare_emails`` -> ``convert_between(HTML, TEXT, body)``); there is
  no way to hand it our own plain-text part. The derived text drops ``href`` targets, so
  the templates show the story URL as visible link text too, and the plain-text part
  still carries the link. Every value from a feed is HTML-escaped by Jinja's autoescape,
  and the finished fragment goes through an nh3 allowlist as well, so even a user
  template that marks feed text ``|safe`` cannot put a script or a ``javascript:`` link
  into an e-mail.
* **Slack** gets CommonMark (``body_format="markdown"``), which Apprise 2.x's Slack plugin
  translates into Slack mrkdwn: ``**bold**`` -> ``*bold*``, ``[text](<url>)`` ->
  ``<url|text>``, ``&`` -> ``&amp;``, ``\\<`` -> ``&lt;``, ``\\>`` -> ``&gt;``. Handing
  Apprise ready-made mrkdwn does not work: declared as markdown it is converted (and
  double-escaped); undeclared, the legacy webhook mode escapes it and then *restores*
  anything shaped like ``<!channel>``, ``<@U…>`` or ``<url|…>``. So every value from a
  feed is CommonMark-escaped here (``<`` and ``>`` above all, which become entities), and
  a feed title such as ``<!channel> <http://evil|x>`` reaches Slack as inert text. Only
  ``&``, ``<`` and ``>`` are control characters for Slack; a ``|`` in link text is
  harmless because Slack splits ``<url|text>`` at the first pipe, and Apprise
  percent-encodes a ``|`` inside the URL.
* **Text** (console, JSON webhooks, anything else) gets plain text, with terminal control
  characters removed from feed values so a feed cannot drive the daemon's console.

Templates live in ``monitor/delivery/templates`` and can be replaced one by one from the config
(:data:`TEMPLATE_NAMES`). Overrides are compiled and test-rendered when the
:class:`Renderer` is built, so a broken one is a :class:`~monitor.errors.ConfigError` at
start-up rather than a failed alert at 3 a.m.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args
from urllib.parse import quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
import nh3
from markupsafe import Markup, escape

from monitor.errors import ConfigError

__all__ = [
    "TEMPLATE_NAMES",
    "AlertStory",
    "ChannelKind",
    "Message",
    "Renderer",
]

ChannelKind = Literal["email", "slack", "text"]
BodyFormat = Literal["text", "html", "markdown"]

_KINDS: tuple[ChannelKind, ...] = get_args(ChannelKind)

#: Template file for each (purpose, channel kind); these are the names the config's
#: template overrides use.
_TEMPLATES: dict[tuple[str, ChannelKind], str] = {
    ("alert", "email"): "email.html",
    ("alert", "slack"): "slack.md",
    ("alert", "text"): "text.txt",
    ("digest", "email"): "digest-email.html",
    ("digest", "slack"): "digest-slack.md",
    ("digest", "text"): "digest-text.txt",
}
TEMPLATE_NAMES: tuple[str, ...] = tuple(_TEMPLATES.values())

_BODY_FORMAT: dict[ChannelKind, BodyFormat] = {"email": "html", "slack": "markdown", "text": "text"}

#: Subjects longer than this are cut: mail clients and Slack attachment titles show
#: one line, and RFC 5322 recommends header lines well under 998 characters.
TITLE_MAX = 250
#: A summary is a teaser, not the article; some feeds put whole articles in it.
SUMMARY_MAX = 600

_TIME_FORMAT = "%Y-%m-%d %H:%M %Z"

# C0 and C1 control characters (ESC included) except tab/newline, which whitespace
# folding handles: a feed must not be able to send terminal escape sequences.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACE_RE = re.compile(r"\s+")
_HOST_RE = re.compile(r"[A-Za-z0-9._:-]+")
# CommonMark backslash escapes for the characters that matter when Apprise turns the
# text into Slack mrkdwn: < and > (Slack controls, become &lt; &gt;), [ ] ( ) ! (links
# and images), * and ` (emphasis and code spans that could swallow our own markup),
# # (headings) and the backslash itself. '&' needs nothing: Apprise escapes it. '_' and
# '~' are left alone: Apprise passes them through unchanged, and at worst they italicise
# a word.
_MD_SPECIAL_RE = re.compile(r"([\\<>\[\]()!*`#])")

# Tags and attributes an alert e-mail may contain after rendering (nh3 allowlist).
_EMAIL_TAGS = {
    "a", "b", "strong", "i", "em", "mark", "p", "br", "div", "span", "h1", "h2", "h3", "h4",
    "ul", "ol", "li", "small", "table", "thead", "tbody", "tr", "td", "th", "hr",
    "blockquote", "code", "pre",
}  # fmt: skip
_EMAIL_ATTRIBUTES = {"a": {"href", "title"}, "*": {"style"}}
_EMAIL_STYLE_PROPERTIES = {
    "color", "background", "background-color", "font-family", "font-size", "font-weight",
    "font-style", "line-height", "margin", "margin-top", "margin-bottom", "margin-left",
    "margin-right", "padding", "padding-left", "padding-right", "padding-top",
    "padding-bottom", "border", "border-left", "border-bottom", "border-top",
    "border-radius", "text-decoration", "max-width", "width",
}  # fmt: skip
_EMAIL_SHELL = '<!DOCTYPE html>\n<html><head><meta charset="utf-8"></head>\n<body>\n{body}\n</body></html>\n'


@dataclass(frozen=True, slots=True)
class AlertStory:
    """One story to alert about, as the outbox hands it over.

    ``highlights`` are ``(field, start, end)`` character spans into ``title`` or
    ``summary`` (``field`` is ``"title"`` or ``"summary"``) that the matcher found;
    spans that are out of range, empty or on another field are ignored, overlapping
    ones are merged, so a slightly stale span never breaks an alert.
    """

    story_id: int
    title: str
    link: str | None
    source: str
    published_at: datetime
    summary: str
    watchlists: tuple[str, ...]
    matched_terms: tuple[str, ...]
    highlights: tuple[tuple[str, int, int], ...] = ()
    also_reported_by: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered alert, ready for one channel.

    ``title`` is plain text on one line (at most :data:`TITLE_MAX` characters): the
    e-mail subject, the Slack attachment title, the console headline. ``body`` is in
    ``body_format``, which is also what :mod:`monitor.delivery.notify` declares to Apprise so
    that Apprise converts it correctly for the target (see the module docstring).
    """

    title: str
    body: str
    body_format: BodyFormat


class _MdSafe(str):
    """A string already in CommonMark form: the Slack environment does not escape it."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class _StoryView:
    """What templates see as ``story``: feed values cleaned, time localised.

    ``title_hl``/``summary_hl`` carry the highlights in the channel's own markup and
    are marked safe for that channel; every other string is escaped by the template
    environment when printed.
    """

    story_id: int
    title: str
    title_hl: str
    link: str | None
    source: str
    published: str
    published_iso: str
    summary: str
    summary_hl: str
    watchlists: tuple[str, ...]
    matched_terms: tuple[str, ...]
    also_reported_by: tuple[str, ...]
    other_watchlists: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Group:
    """A digest section: one watchlist and the stories filed under it."""

    watchlist: str
    stories: tuple[_StoryView, ...]


def _clean(text: str) -> str:
    """Feed text as one line: controls dropped, whitespace runs folded to one space."""
    return _SPACE_RE.sub(" ", _CONTROL_RE.sub("", unicodedata.normalize("NFC", text)))


def _md_escape(value: object) -> str:
    """Jinja ``finalize`` of the Slack environment: escape all but pre-built markup."""
    if value is None:
        return ""
    if isinstance(value, _MdSafe):
        return value
    return _MD_SPECIAL_RE.sub(r"\\\1", str(value))


def _segments(text: str, spans: Sequence[tuple[int, int]]) -> list[tuple[str, bool]]:
    """Split ``text`` into (chunk, highlighted) pieces; bad spans are ignored.

    Offsets refer to the raw text, so the split happens before any cleaning, and each
    chunk is cleaned afterwards.
    """
    good = sorted((max(0, s), min(len(text), e)) for s, e in spans if min(len(text), e) > max(0, s))
    merged: list[tuple[int, int]] = []
    for start, end in good:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    pieces: list[tuple[str, bool]] = []
    pos = 0
    for start, end in merged:
        pieces.append((text[pos:start], False))
        pieces.append((text[start:end], True))
        pos = end
    pieces.append((text[pos:], False))
    cleaned = [(_clean(chunk), hl) for chunk, hl in pieces]
    # Whitespace folding per chunk can leave a double space at a boundary.
    out: list[tuple[str, bool]] = []
    for chunk, hl in cleaned:
        if out and out[-1][0].endswith(" ") and chunk.startswith(" "):
            chunk = chunk[1:]
        if chunk:
            out.append((chunk, hl))
    if out:
        out[0] = (out[0][0].lstrip(), out[0][1])
        out[-1] = (out[-1][0].rstrip(), out[-1][1])
    return [(c, hl) for c, hl in out if c]


def _truncate(pieces: list[tuple[str, bool]], limit: int) -> list[tuple[str, bool]]:
    """Cut segmented text to ``limit`` characters on a word boundary, adding an ellipsis."""
    if sum(len(c) for c, _ in pieces) <= limit:
        return pieces
    out: list[tuple[str, bool]] = []
    room = limit - 1
    for chunk, hl in pieces:
        if len(chunk) <= room:
            out.append((chunk, hl))
            room -= len(chunk)
            continue
        cut = chunk[:room]
        if " " in cut and not chunk[room : room + 1].isspace():
            cut = cut[: cut.rfind(" ")]
        if cut.strip():
            out.append((cut.rstrip(), hl))
        break
    out.append(("…", False))
    return out


def _plain(pieces: Sequence[tuple[str, bool]]) -> str:
    return "".join(c for c, _ in pieces)


def _html_highlight(pieces: Sequence[tuple[str, bool]]) -> Markup:
    return Markup("").join(Markup("<mark>%s</mark>") % c if hl else escape(c) for c, hl in pieces)


def _md_highlight(pieces: Sequence[tuple[str, bool]]) -> _MdSafe:
    out = []
    for chunk, hl in pieces:
        text = _md_escape(chunk)
        if hl and chunk.strip():
            # Emphasis delimiters must touch non-space text on both sides.
            core = text.strip()
            lead = text[: len(text) - len(text.lstrip())]
            trail = text[len(text.rstrip()) :]
            text = f"{lead}**{core}**{trail}"
        out.append(text)
    return _MdSafe("".join(out))


def _safe_link(link: str | None) -> str | None:
    """An http(s) URL fit for an ``href`` and a CommonMark ``<…>`` destination, or None.

    Other schemes (``javascript:``, ``data:``, ``file:``) never become links in an
    alert. Characters that are not valid in a URL (spaces, ``<``, ``>``, ``|``,
    quotes, non-ASCII) are percent-encoded, the host IDNA-encoded.
    """
    if not link:
        return None
    link = _CONTROL_RE.sub("", link).strip()
    try:
        parts = urlsplit(link)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return None
    if not _HOST_RE.fullmatch(host):
        return None
    # User-info is dropped: "https://bank.example@evil.example/" is a phishing trick,
    # never a news link.
    netloc = (f"[{host}]" if ":" in host else host) + (f":{port}" if port is not None else "")
    safe = "!#$%&'()*+,/:;=?@[]~"
    return urlunsplit(
        (
            parts.scheme.lower(),
            netloc,
            quote(parts.path, safe=safe),
            quote(parts.query, safe=safe),
            quote(parts.fragment, safe=safe),
        )
    )


def _one_line(text: str, limit: int = TITLE_MAX) -> str:
    text = _clean(text).strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rfind(" ")]
    return cut.rstrip() + "…"


class Renderer:
    """Renders stories into :class:`Message` objects for each channel kind.

    ``timezone`` is an IANA zone name (``Europe/Paris``); times are shown in it.
    ``overrides`` maps template names (:data:`TEMPLATE_NAMES`) to template source from
    the user's config; the built-in templates are used for the others.
    """

    def __init__(self, *, timezone: str = "UTC", overrides: Mapping[str, str] | None = None) -> None:
        try:
            self._tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(
                f"unknown time zone {timezone!r}", field="timezone", hint="an IANA name such as Europe/Paris"
            ) from exc
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(TEMPLATE_NAMES))
        if unknown:
            raise ConfigError(
                f"unknown template {unknown[0]!r} (known: {', '.join(TEMPLATE_NAMES)})",
                field=f"templates.{unknown[0]}",
            )
        loader = jinja2.ChoiceLoader(
            [jinja2.DictLoader(overrides), jinja2.PackageLoader("monitor.delivery", "templates")]
        )
        common: dict[str, Any] = {
            "loader": loader,
            "undefined": jinja2.StrictUndefined,
            "trim_blocks": True,
            "lstrip_blocks": True,
            "auto_reload": False,
        }
        self._envs: dict[ChannelKind, jinja2.Environment] = {
            "email": jinja2.Environment(autoescape=True, **common),
            "slack": jinja2.Environment(autoescape=False, finalize=_md_escape, **common),
            "text": jinja2.Environment(autoescape=False, **common),
        }
        self._templates: dict[tuple[str, ChannelKind], jinja2.Template] = {}
        for (purpose, kind), name in _TEMPLATES.items():
            try:
                self._templates[(purpose, kind)] = self._envs[kind].get_template(name)
            except jinja2.TemplateSyntaxError as exc:
                raise ConfigError(
                    f"template {name!r} line {exc.lineno}: {exc.message}", field=f"templates.{name}"
                ) from exc
        # A template that parses can still fail on its first render (a misspelt
        # variable under StrictUndefined): find out now, with the sample story.
        sample = self.sample()
        for (purpose, kind), name in _TEMPLATES.items():
            if name not in overrides:
                continue
            try:
                if purpose == "alert":
                    self.alert(sample, kind)
                else:
                    self.digest([sample], kind, title="Sample digest")
            except jinja2.TemplateError as exc:
                raise ConfigError(
                    f"template {name!r} does not render: {exc}", field=f"templates.{name}"
                ) from exc

    def alert(self, story: AlertStory, kind: ChannelKind) -> Message:
        """One story as one message; a story matched by several watchlists names them all."""
        kind = self._check_kind(kind)
        view = self._view(story, kind)
        body = self._templates[("alert", kind)].render(story=view)
        wl = ", ".join(view.watchlists)
        if kind == "slack":
            # The story title is the bold link at the top of the body already.
            title = _one_line(f"{'Watchlists' if len(view.watchlists) > 1 else 'Watchlist'}: {wl}")
        else:
            title = _one_line(f"[{wl}] {view.title}" if wl else view.title)
        return self._message(kind, title, body)

    def digest(self, stories: Sequence[AlertStory], kind: ChannelKind, *, title: str) -> Message:
        """Several stories in one message, in sections by watchlist.

        Each story appears once, under its first watchlist, and names the others it
        matched: with overlapping watchlists, repeating it in every section would make
        a digest longer without saying more. Sections and stories keep the order given.
        """
        kind = self._check_kind(kind)
        groups: dict[str, list[_StoryView]] = {}
        for story in stories:
            view = self._view(story, kind)
            first = view.watchlists[0] if view.watchlists else ""
            groups.setdefault(first, []).append(view)
        sections = tuple(_Group(watchlist=name, stories=tuple(views)) for name, views in groups.items())
        body = self._templates[("digest", kind)].render(
            title=_one_line(title), groups=sections, count=len(stories)
        )
        return self._message(kind, _one_line(title), body)

    def sample(self) -> AlertStory:
        """A realistic story, for ``news-monitor test-notify TARGET`` and template checks."""
        title = "North Korean troops fighting alongside Russian forces in Kursk, Seoul says"
        summary = (
            "South Korea's spy agency says thousands of North Korean soldiers deployed to "
            "Russia's Kursk region have joined combat against Ukrainian forces, as "
            "Pyongyang and Moscow put their mutual defence treaty into practice."
        )
        terms = ("North Korean", "troops", "Kursk")
        highlights = tuple(
            (field, m.start(), m.end())
            for field, text in (("title", title), ("summary", summary))
            for term in terms
            for m in re.finditer(re.escape(term), text)
        )
        return AlertStory(
            story_id=0,
            title=title,
            link="https://example.org/world/asia/north-korean-troops-kursk",
            source="yonhap-en",
            published_at=datetime.now(UTC).replace(second=0, microsecond=0),
            summary=summary,
            watchlists=("kursk-troops",),
            matched_terms=('"North Korean"', "troops", "Kursk"),
            highlights=highlights,
            also_reported_by=("bbc-asia", "lemonde-international"),
        )

    # -- internals ---------------------------------------------------------------------

    @staticmethod
    def _check_kind(kind: str) -> ChannelKind:
        for known in _KINDS:
            if kind == known:
                return known
        raise ValueError(f"unknown channel kind {kind!r} (known: {', '.join(_KINDS)})")

    def _message(self, kind: ChannelKind, title: str, body: str) -> Message:
        body = body.strip() + "\n"
        if kind == "email":
            cleaned = nh3.clean(
                body,
                tags=_EMAIL_TAGS,
                attributes=_EMAIL_ATTRIBUTES,
                url_schemes={"http", "https", "mailto"},
                filter_style_properties=_EMAIL_STYLE_PROPERTIES,
            )
            body = _EMAIL_SHELL.format(body=cleaned.strip())
        return Message(title=title, body=body, body_format=_BODY_FORMAT[kind])

    def _view(self, story: AlertStory, kind: ChannelKind) -> _StoryView:
        published = story.published_at
        if published.tzinfo is None:
            published = published.replace(tzinfo=UTC)
        local = published.astimezone(self._tz)
        title_pieces = _segments(story.title, [(s, e) for f, s, e in story.highlights if f == "title"])
        summary_pieces = _truncate(
            _segments(story.summary, [(s, e) for f, s, e in story.highlights if f == "summary"]), SUMMARY_MAX
        )
        title_hl: str
        summary_hl: str
        link = _safe_link(story.link)
        if kind == "email":
            title_hl, summary_hl = _html_highlight(title_pieces), _html_highlight(summary_pieces)
        elif kind == "slack":
            # The title is already bold in the Slack layout, and emphasis does not nest.
            title_hl, summary_hl = _MdSafe(_md_escape(_plain(title_pieces))), _md_highlight(summary_pieces)
            link = _MdSafe(link) if link else None
        else:
            title_hl, summary_hl = _plain(title_pieces), _plain(summary_pieces)
        watchlists = tuple(_clean(w).strip() for w in story.watchlists)
        return _StoryView(
            story_id=story.story_id,
            title=_plain(title_pieces) or "(untitled)",
            title_hl=title_hl or "(untitled)",
            link=link,
            source=_clean(story.source).strip(),
            published=local.strftime(_TIME_FORMAT),
            published_iso=local.isoformat(timespec="minutes"),
            summary=_plain(summary_pieces),
            summary_hl=summary_hl,
            watchlists=watchlists,
            matched_terms=tuple(_clean(t).strip() for t in story.matched_terms),
            also_reported_by=tuple(_clean(s).strip() for s in story.also_reported_by),
            other_watchlists=watchlists[1:],
        )
