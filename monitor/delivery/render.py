"""Turn matched stories into alert messages, in the markup of any channel flavour.

Pure: Jinja2, markupsafe and the standard library only. What a channel's markup looks
like (escaping, highlights, body format, templates, title, post-processing) is its
:class:`~monitor.delivery.channels.Flavour` in :data:`~monitor.delivery.channels.FLAVOURS`;
this module does what is common to all of them and calls the flavour for the rest:

* feed values are cleaned (terminal control characters dropped, whitespace folded),
  links vetted (:func:`_safe_link`: http(s) only, encoded), summaries and titles cut to
  bounded sizes, highlight spans merged and clipped, times shown in the configured zone;
* each flavour gets its own Jinja environment: HTML flavours Jinja's autoescape, others
  a ``finalize`` hook that applies the flavour's ``escape`` to every printed value except
  the pieces built here already in the flavour's markup (highlighted title and summary,
  the vetted link), and markup-less flavours nothing.

Templates live in ``monitor/delivery/templates`` and can be replaced one by one from the
config (:data:`TEMPLATE_NAMES`). Overrides are compiled and test-rendered when the
:class:`Renderer` is built, so a broken one is a :class:`~monitor.errors.ConfigError` at
start-up rather than a failed alert at 3 a.m. A Renderer renders the flavours that were in
the table when it was built.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jinja2
from markupsafe import Markup

from monitor.delivery.channels import FLAVOURS, Flavour, Message, html_escape, template_names
from monitor.errors import ConfigError

__all__ = [
    "ALSO_MAX",
    "TEMPLATE_NAMES",
    "AlertStory",
    "OtherReport",
    "Renderer",
]

#: The templates of the shipped flavours: the names the config's template overrides use.
TEMPLATE_NAMES: tuple[str, ...] = template_names(FLAVOURS)

#: Subjects longer than this are cut: mail clients and Slack attachment titles show
#: one line, and RFC 5322 recommends header lines well under 998 characters.
TITLE_MAX = 250
#: A summary is a teaser, not the article; some feeds put whole articles in it.
SUMMARY_MAX = 600
#: "Also reported by" lists this many other reports; the rest are counted ("and 3 more").
ALSO_MAX = 8
#: Titles of other reports are cut shorter than the story's own: they are one line each.
OTHER_TITLE_MAX = 160

_TIME_FORMAT = "%Y-%m-%d %H:%M %Z"

# C0 and C1 control characters (ESC included) except tab/newline, which whitespace
# folding handles: a feed must not be able to send terminal escape sequences.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_SPACE_RE = re.compile(r"\s+")
_HOST_RE = re.compile(r"[A-Za-z0-9._:-]+")


@dataclass(frozen=True, slots=True)
class OtherReport:
    """Another telling of an alerted story, for "also reported by": the outlet (feed name)
    that carried it, its language, title and link (None when unknown).

    It is either the same article seen in another feed, or another story of the same
    event cluster (another outlet's article, possibly in another language). ``story_id``
    is the stored story it shows (None for a made-up one, such as the sample).
    """

    outlet: str
    language: str | None = None
    title: str | None = None
    link: str | None = None
    story_id: int | None = None


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
    also_reported_by: tuple[OtherReport, ...] = ()
    surge: bool = False  # a "now reported by N outlets" follow-up: ``also_reported_by`` lists them all


class _Prebuilt(str):
    """A string already in the flavour's markup: the ``finalize`` hook leaves it alone."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class _ReportView:
    """What templates see of an :class:`OtherReport`: values cleaned, the link vetted.

    ``title`` and ``link`` are empty / None when they are the alerted story's own (the
    same article in another feed): the outlet alone says it. Printed as a whole it is
    the outlet's name, so a template that joins ``story.also_reported_by`` lists outlets.
    """

    outlet: str
    language: str
    title: str
    link: str | None

    def __str__(self) -> str:
        return self.outlet


@dataclass(frozen=True, slots=True)
class _StoryView:
    """What templates see as ``story``: feed values cleaned, time localised.

    ``title_hl``/``summary_hl`` carry the highlights in the flavour's own markup and
    are marked as such (``link`` too, where the flavour escapes by ``finalize``); every
    other string is escaped by the template environment when printed.
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
    also_reported_by: tuple[_ReportView, ...]
    also_more: int = 0  # other reports left out of ``also_reported_by`` (beyond ALSO_MAX)
    other_watchlists: tuple[str, ...] = ()
    surge: bool = False  # templates head the reports "Reported by" rather than "Also reported by"


@dataclass(frozen=True, slots=True)
class _Group:
    """A digest section: one watchlist and the stories filed under it."""

    watchlist: str
    stories: tuple[_StoryView, ...]


def _clean(text: str) -> str:
    """Feed text as one line: controls dropped, whitespace runs folded to one space."""
    return _SPACE_RE.sub(" ", _CONTROL_RE.sub("", unicodedata.normalize("NFC", text)))


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


def _is_html(flavour: Flavour) -> bool:
    """Whether the flavour escapes as HTML: then Jinja's autoescape does it (see ``html_escape``)."""
    return flavour.escape is html_escape


def _finalizer(escape: Callable[[str], str]) -> Callable[[object], object]:
    """Jinja ``finalize`` for a flavour: escape every printed value but prebuilt markup."""

    def finalize(value: object) -> object:
        if value is None:
            return ""
        if isinstance(value, _Prebuilt):
            return value
        return escape(str(value))

    return finalize


def _environment(flavour: Flavour, common: Mapping[str, Any]) -> jinja2.Environment:
    if _is_html(flavour):
        return jinja2.Environment(autoescape=True, **common)
    if flavour.escape is None:
        return jinja2.Environment(autoescape=False, **common)
    return jinja2.Environment(autoescape=False, finalize=_finalizer(flavour.escape), **common)


def _marked_up(flavour: Flavour, text: str) -> str:
    """Text built in the flavour's markup, marked so its environment prints it as it is."""
    return Markup(text) if _is_html(flavour) else _Prebuilt(text)


def _templates_of(flavour: Flavour) -> tuple[tuple[str, str], ...]:
    """(purpose, template name) of each template the flavour renders with."""
    return (("alert", flavour.alert_template), ("digest", flavour.digest_template))


def _highlighted(flavour: Flavour, pieces: Sequence[tuple[str, bool]], *, highlight: bool = True) -> str:
    escape = flavour.escape or str  # no markup: the cleaned text is already what is shown
    return _marked_up(flavour, "".join(flavour.mark(escape(c)) if hl and highlight else escape(c) for c, hl in pieces))


class Renderer:
    """Renders stories into :class:`~monitor.delivery.channels.Message` objects, per flavour.

    ``timezone`` is an IANA zone name (``Europe/Paris``); times are shown in it.
    ``overrides`` maps template names (those of the flavours' templates) to template
    source from the user's config; the built-in templates are used for the others.
    """

    def __init__(self, *, timezone: str = "UTC", overrides: Mapping[str, str] | None = None) -> None:
        try:
            self._tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ConfigError(
                f"unknown time zone {timezone!r}", field="timezone", hint="an IANA name such as Europe/Paris"
            ) from exc
        self._flavours = dict(FLAVOURS)
        names = template_names(self._flavours)
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ConfigError(
                f"unknown template {unknown[0]!r} (known: {', '.join(names)})",
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
        self._templates: dict[tuple[str, str], jinja2.Template] = {}
        for flavour in self._flavours.values():
            env = _environment(flavour, common)
            for purpose, name in _templates_of(flavour):
                try:
                    self._templates[(purpose, flavour.name)] = env.get_template(name)
                except jinja2.TemplateSyntaxError as exc:
                    raise ConfigError(
                        f"template {name!r} line {exc.lineno}: {exc.message}", field=f"templates.{name}"
                    ) from exc
        self._try_overrides(overrides)

    def alert(self, story: AlertStory, flavour: str) -> Message:
        """One story as one message; a story matched by several watchlists names them all."""
        fl = self._flavour(flavour)
        view = self._view(story, fl)
        body = self._templates[("alert", fl.name)].render(story=view)
        return self._message(fl, _one_line(fl.title(view.title, view.watchlists)), body)

    def digest(self, stories: Sequence[AlertStory], flavour: str, *, title: str) -> Message:
        """Several stories in one message, in sections by watchlist.

        Each story appears once, under its first watchlist, and names the others it
        matched: with overlapping watchlists, repeating it in every section would make
        a digest longer without saying more. Sections and stories keep the order given.
        """
        fl = self._flavour(flavour)
        groups: dict[str, list[_StoryView]] = {}
        for story in stories:
            view = self._view(story, fl)
            first = view.watchlists[0] if view.watchlists else ""
            groups.setdefault(first, []).append(view)
        sections = tuple(_Group(watchlist=name, stories=tuple(views)) for name, views in groups.items())
        body = self._templates[("digest", fl.name)].render(title=_one_line(title), groups=sections, count=len(stories))
        return self._message(fl, _one_line(title), body)

    def sample(self, *, test: bool = False) -> AlertStory:
        """A realistic story, for template checks and ``news-monitor test-notify TARGET``
        (``test=True``: marked ``[TEST]`` in its title and summary, so nobody acts on it)."""
        title = "North Korean troops fighting alongside Russian forces in Kursk, Seoul says"
        summary = (
            "South Korea's spy agency says thousands of North Korean soldiers deployed to "
            "Russia's Kursk region have joined combat against Ukrainian forces, as "
            "Pyongyang and Moscow put their mutual defence treaty into practice."
        )
        if test:
            title = f"[TEST] {title}"
            summary = f"[TEST] A test message from news-monitor test-notify. {summary}"
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
            also_reported_by=(
                OtherReport("bbc-asia", "en"),
                OtherReport(
                    "lemonde-international",
                    "fr",
                    "Des soldats nord-coréens combattent aux côtés des forces russes dans la région de Koursk",
                    "https://example.org/international/soldats-nord-coreens-koursk",
                ),
            ),
        )

    # -- internals ---------------------------------------------------------------------

    def _try_overrides(self, overrides: Mapping[str, str]) -> None:
        """Render the sample story with every overridden template.

        A template that parses can still fail on its first render (a misspelt variable
        under StrictUndefined): find out now rather than at the first alert.
        """
        sample = self.sample()
        for flavour in self._flavours.values():
            for purpose, name in _templates_of(flavour):
                if name not in overrides:
                    continue
                try:
                    if purpose == "alert":
                        self.alert(sample, flavour.name)
                    else:
                        self.digest([sample], flavour.name, title="Sample digest")
                except jinja2.TemplateError as exc:
                    raise ConfigError(f"template {name!r} does not render: {exc}", field=f"templates.{name}") from exc

    def _flavour(self, name: str) -> Flavour:
        try:
            return self._flavours[name]
        except KeyError:
            known = ", ".join(self._flavours)
            raise ValueError(f"unknown channel flavour {name!r} (known: {known})") from None

    @staticmethod
    def _message(flavour: Flavour, title: str, body: str) -> Message:
        return Message(title=title, body=flavour.finish(body.strip() + "\n"), body_format=flavour.body_format)

    def _view(self, story: AlertStory, flavour: Flavour) -> _StoryView:
        published = story.published_at
        if published.tzinfo is None:
            published = published.replace(tzinfo=UTC)
        local = published.astimezone(self._tz)
        title_pieces = _segments(story.title, [(s, e) for f, s, e in story.highlights if f == "title"])
        summary_pieces = _truncate(
            _segments(story.summary, [(s, e) for f, s, e in story.highlights if f == "summary"]), SUMMARY_MAX
        )
        link = _safe_link(story.link)
        watchlists = tuple(_clean(w).strip() for w in story.watchlists)
        title = _plain(title_pieces) or "(untitled)"
        others = tuple(self._report(r, flavour, title, link) for r in story.also_reported_by[:ALSO_MAX])
        return _StoryView(
            story_id=story.story_id,
            title=title,
            title_hl=_highlighted(flavour, title_pieces, highlight=flavour.highlight_title) or "(untitled)",
            # A vetted URL is fit as it is for a link destination; HTML still escapes its '&'.
            link=link if link is None or _is_html(flavour) else _Prebuilt(link),
            source=_clean(story.source).strip(),
            published=local.strftime(_TIME_FORMAT),
            published_iso=local.isoformat(timespec="minutes"),
            summary=_plain(summary_pieces),
            summary_hl=_highlighted(flavour, summary_pieces),
            watchlists=watchlists,
            matched_terms=tuple(_clean(t).strip() for t in story.matched_terms),
            also_reported_by=others,
            also_more=max(0, len(story.also_reported_by) - ALSO_MAX),
            other_watchlists=watchlists[1:],
            surge=story.surge,
        )

    @staticmethod
    def _report(report: OtherReport, flavour: Flavour, title: str, link: str | None) -> _ReportView:
        """An other report as templates see it; what repeats the story's own title or link is left out."""
        same_title = _clean(report.title or "").strip() == title
        other_title = "" if same_title else _one_line(report.title or "", OTHER_TITLE_MAX)
        other_link = _safe_link(report.link)
        if other_link == link:
            other_link = None
        return _ReportView(
            outlet=_one_line(report.outlet, OTHER_TITLE_MAX) or "?",
            language=_one_line(report.language or "", 16),
            title=other_title,
            link=other_link if other_link is None or _is_html(flavour) else _Prebuilt(other_link),
        )
