"""Channel flavours (how a message is marked up) and the Channel protocol (how it is sent).

Pure: nh3, markupsafe and the standard library only; no transport is imported here.

**A flavour is one entry of** :data:`FLAVOURS`: the markup a kind of channel speaks. It
says how text from a feed is escaped, how a highlighted span is marked, which body
format the transport is told, which templates render a single alert and a digest, how
the message title is made, and what is done to the finished body. The renderer
(:mod:`monitor.delivery.render`) only looks a flavour up and calls these; it has no
branch for any one of them. **Adding a channel with its own markup** is one entry in
:data:`FLAVOURS` plus its two templates in ``monitor/delivery/templates/``; the transport
then names that flavour for its targets (:mod:`monitor.delivery.notify` maps Apprise
plugins to flavours in a table of its own).

The shipped flavours, and why they escape as they do:

* **email** is HTML (``body_format="html"``). Apprise's mailto plugin sends a
  ``multipart/alternative`` message whose ``text/plain`` part it derives itself from the
  HTML (``NotifyEmail.prepare_emails`` -> ``convert_between(HTML, TEXT, body)``); there is
  no way to hand it our own plain-text part. The derived text drops ``href`` targets, so
  the templates show the story URL as visible link text too, and the plain-text part
  still carries the link. Feed text is HTML-escaped (by Jinja's autoescape, see
  :func:`html_escape`), and the finished fragment goes through an nh3 allowlist as
  well, so even a user template that marks feed text ``|safe`` cannot put a script or a
  ``javascript:`` link into an e-mail. Highlights are ``<mark>``.
* **slack** is CommonMark (``body_format="markdown"``), which Apprise 2.x's Slack plugin
  translates into Slack mrkdwn (``NotifySlack._commonmark_to_slack``): ``**bold**`` ->
  ``*bold*``, ``[text](<url>)`` -> ``<url|text>``, ``&`` -> ``&amp;``, ``\\<`` -> ``&lt;``,
  ``\\>`` -> ``&gt;``. Handing Apprise ready-made mrkdwn does not work: declared as
  markdown it is converted (and double-escaped); undeclared, the legacy webhook mode
  escapes it and then *restores* anything shaped like ``<!channel>``, ``<@U…>`` or
  ``<url|…>``. So :func:`slack_escape` writes feed text so that what reaches Slack is
  escaped by Slack's own rule, and by nothing else: ``&``, ``<``, ``>`` arrive as
  ``&amp;``, ``&lt;``, ``&gt;`` (so ``<!channel>``, ``<!here>``, ``<@U…>`` and ``<url|x>``
  from a feed are inert text), and no backslash is added, because Slack's mrkdwn has no
  backslash escapes and shows them (``\\*urgent\\*``). Slack has no escape at all for
  its formatting characters ``*``, ``_``, ``~`` and backtick, so those are replaced with
  look-alikes (``∗`` U+2217, ``ˍ`` U+02CD, ``∼`` U+223C, ``ˋ`` U+02CB): a title still
  reads the same, and can neither turn itself bold or struck through nor close the
  bold the layout puts around it. Invisible separators (a zero-width space) were
  rejected: Apprise's converter pairs ``*`` and backticks across them (CommonMark does
  not count them as white space), and Slack users insert them on purpose to *force*
  formatting inside a word, so they cannot be relied on to prevent it. A backslash from
  a feed is followed by a word joiner (U+2060), so Apprise passes it on as the one
  backslash it is. A ``|`` in link text is harmless because Slack splits ``<url|text>``
  at the first pipe, and Apprise percent-encodes a ``|`` inside the URL. Highlights are
  ``**bold**`` (``*bold*`` in mrkdwn), but not in the title, which the layout already
  sets in bold (emphasis does not nest); the message title names the watchlists, since
  the story title is the first line of the body.
* **text** (console, JSON webhooks, anything else) is plain text: nothing to escape and
  no highlights. Terminal control characters are removed from every feed value by the
  renderer, whatever the flavour, so a feed cannot drive the daemon's console.

**A channel** (:class:`Channel`) is one configured target as delivery sees it: its name,
its flavour, its URL with secrets masked, and ``send(message) -> SendResult``. The
outbox drain loop talks to nothing else; Apprise is one implementation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

import nh3
from markupsafe import escape

from monitor.errors import NotifyError

__all__ = [
    "FLAVOURS",
    "BodyFormat",
    "Channel",
    "Flavour",
    "Message",
    "SendResult",
    "failure_message",
    "html_escape",
    "send_or_raise",
    "slack_escape",
    "template_names",
]

BodyFormat = Literal["text", "html", "markdown"]


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered alert, ready for one channel.

    ``title`` is plain text on one line: the e-mail subject, the Slack attachment title,
    the console headline. ``body`` is in ``body_format``, which is also what the
    transport declares (to Apprise) so that it converts the body right for the target.
    """

    title: str
    body: str
    body_format: BodyFormat
    # The same for every try of the same alerts: a target that honours an
    # ``Idempotency-Key`` header (a webhook receiver) can drop a repeat.
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class SendResult:
    """What one ``Channel.send`` did.

    ``reason`` (empty when delivered) says why a send failed, in words fit for a log
    line and the outbox's error column: it never holds a secret of the target.
    ``permanent`` means a retry cannot help, so the outbox gives up at once.
    """

    delivered: bool
    reason: str = ""
    permanent: bool = False

    def __post_init__(self) -> None:
        if self.delivered and (self.reason or self.permanent):
            raise ValueError("a delivered message has no failure reason")
        if not self.delivered and not self.reason:
            raise ValueError("a failed send needs a reason")

    @classmethod
    def sent(cls) -> SendResult:
        return cls(delivered=True)

    @classmethod
    def failed(cls, reason: str, *, permanent: bool = False) -> SendResult:
        return cls(delivered=False, reason=reason, permanent=permanent)


class Channel(Protocol):
    """A configured target that takes messages: all that delivery needs of a transport."""

    @property
    def name(self) -> str:
        """The target's name in the config."""

    @property
    def flavour(self) -> str:
        """The :data:`FLAVOURS` key its messages are rendered with."""

    @property
    def display_url(self) -> str:
        """Its URL with every secret masked, fit for logs and errors."""

    def send(self, message: Message) -> SendResult:
        """Deliver ``message``; failures are returned, never raised."""


def failure_message(channel: Channel, result: SendResult) -> str:
    """A failed send as one line naming the target: ``target 'desk' (mailto://…): reason``."""
    return f"target {channel.name!r} ({channel.display_url}): {result.reason}"


def send_or_raise(channel: Channel, message: Message) -> None:
    """Send once, for one-shot callers (``test-notify``): a failure raises :class:`NotifyError`."""
    result = channel.send(message)
    if not result.delivered:
        raise NotifyError(failure_message(channel, result), target=channel.name)


def html_escape(text: str) -> str:
    """HTML escaping, the ``escape`` of HTML flavours.

    The renderer recognises it and lets Jinja's autoescape apply it instead of a
    finalize hook: the same escaping, but autoescape also treats macro output and
    ``|safe`` values in user templates as markup already.
    """
    return str(escape(text))


def _bracketed_title(title: str, watchlists: Sequence[str]) -> str:
    """``[watchlist, …] story title``: a subject line that says why it arrived."""
    wl = ", ".join(watchlists)
    return f"[{wl}] {title}" if wl else title


def _watchlists_title(title: str, watchlists: Sequence[str]) -> str:
    """``Watchlist(s): …``, for layouts whose body starts with the story title."""
    return f"{'Watchlists' if len(watchlists) > 1 else 'Watchlist'}: {', '.join(watchlists)}"


def _as_is(body: str) -> str:
    return body


@dataclass(frozen=True, slots=True)
class Flavour:
    """How one kind of channel marks up a message.

    ``escape`` makes feed text inert in the markup (``None``: the format has no markup,
    text goes through as it is; :func:`html_escape` for HTML). ``mark`` wraps an
    already escaped highlighted span; ``highlight_title`` says whether the story title
    gets highlights too. ``title`` builds the message title from the story title and its
    watchlists (the renderer then folds it to one bounded line). ``finish`` post-processes
    the rendered body (stripped, one final newline) before it is sent.
    """

    name: str
    body_format: BodyFormat
    alert_template: str
    digest_template: str
    escape: Callable[[str], str] | None
    mark: Callable[[str], str] = _as_is
    highlight_title: bool = True
    title: Callable[[str, Sequence[str]], str] = _bracketed_title
    finish: Callable[[str], str] = _as_is


# -- email ---------------------------------------------------------------------------

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


def _html_mark(text: str) -> str:
    return f"<mark>{text}</mark>"


def _email_document(body: str) -> str:
    """The rendered fragment through the nh3 allowlist, inside a whole HTML document."""
    cleaned = nh3.clean(
        body,
        tags=_EMAIL_TAGS,
        attributes=_EMAIL_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        filter_style_properties=_EMAIL_STYLE_PROPERTIES,
    )
    return _EMAIL_SHELL.format(body=cleaned.strip())


# -- slack ---------------------------------------------------------------------------

# What each special character of feed text becomes in the CommonMark handed to Apprise
# (see the module docstring). < and > are backslash-escaped: Apprise turns \< and \> into
# &lt; and &gt;. [ ] ( ) ! # are backslash-escaped so that they open no link, image or
# heading: Apprise drops those backslashes. '&' needs nothing: Apprise escapes it.
_SLACK_ESCAPES = str.maketrans(
    {
        "<": "\\<", ">": "\\>",
        "[": "\\[", "]": "\\]", "(": "\\(", ")": "\\)", "!": "\\!", "#": "\\#",
        "\\": "\\\u2060",
        "*": "\u2217", "_": "\u02cd", "~": "\u223c", "`": "\u02cb",
    }
)  # fmt: skip


def slack_escape(text: str) -> str:
    """Feed text as CommonMark that Apprise turns into inert Slack mrkdwn (module docstring)."""
    return text.translate(_SLACK_ESCAPES)


def _md_bold(text: str) -> str:
    """``**text**``, with the delimiters against non-space text as CommonMark requires."""
    core = text.strip()
    if not core:
        return text
    lead = text[: len(text) - len(text.lstrip())]
    trail = text[len(text.rstrip()) :]
    return f"{lead}**{core}**{trail}"


#: Every flavour, by name. Channels name one of these; the renderer renders with it.
FLAVOURS: dict[str, Flavour] = {
    "email": Flavour(
        name="email",
        body_format="html",
        alert_template="email.html",
        digest_template="digest-email.html",
        escape=html_escape,
        mark=_html_mark,
        finish=_email_document,
    ),
    "slack": Flavour(
        name="slack",
        body_format="markdown",
        alert_template="slack.md",
        digest_template="digest-slack.md",
        escape=slack_escape,
        mark=_md_bold,
        highlight_title=False,
        title=_watchlists_title,
    ),
    "text": Flavour(
        name="text",
        body_format="text",
        alert_template="text.txt",
        digest_template="digest-text.txt",
        escape=None,
    ),
}


def template_names(flavours: Mapping[str, Flavour]) -> tuple[str, ...]:
    """The template files of ``flavours``, alerts first: the names template overrides use."""
    return tuple(f.alert_template for f in flavours.values()) + tuple(f.digest_template for f in flavours.values())
