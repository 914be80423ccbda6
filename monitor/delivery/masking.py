"""Target URLs with their secrets masked: the only form in which a target URL is shown.

Pure: the standard library only. :func:`mask_url` is what every log line, error message,
``check-config`` line and outbox error shows of a target; :func:`url_secrets` lists
the masked parts so that a log filter can also remove them from text that merely
quotes them (a token in an error message); :func:`mask_text` masks every URL and every
HTTP request path inside a piece of text, whatever logged it.

Apprise's own ``url(privacy=True)`` is not enough: it shows the paths of ``json://``,
``form://`` and ``xml://`` targets (where webhook services put their token), every
``+Header=value`` / ``-Header=value`` (``+Authorization=Bearer …``), and it shows two
characters of each token it does mask. So the rule here works on the URL as written,
string surgery rather than a URL parser (the malformed URLs are the ones that end up
in error messages), and shows a part only when it is known to be harmless:

* **user-info**: a password is always masked; the user name is shown only when a
  password follows it (then it is a login). A lone ``token@host`` is masked: Matrix,
  Pushover and ntfy put access tokens there.
* **host**: shown when it is a host name with a dot, ``localhost``, an IP literal, or
  any name followed by a numeric port; anything else (Slack's first token, a Discord
  webhook id, ``bot-id:token`` for Telegram, Pushover's application token) is masked.
* **path**: every segment is masked, except e-mail addresses (mail recipients) and
  ``#channel``, ``@user`` and ``!room`` references; ``,``-separated lists are judged item
  by item. Webhook services put tokens in any segment (``json://host/hooks/<token>``),
  and no rule about what a token looks like is safe: a 12-letter token has no digit.
  ``#`` is part of the path here, as in Apprise's URLs (``slack://…/#channel``).
* **query**: a value is shown only for Apprise's well-known options (``to``, ``from``,
  ``mode``, ``format``, …) or when it is a list of e-mail addresses; every other value is
  masked, and so is every ``+Header`` / ``-Header`` value, every ``:payload`` value and
  every value whose name speaks of a password, token, key, secret, signature or auth,
  whatever the option. Names stay visible, so a reader still sees what is configured.

Masked parts become ``****``. Cost: one pass of string operations per URL, done once
per target at start-up, and per log record only for the URLs it contains.
"""

from __future__ import annotations

import re
from urllib.parse import quote, quote_plus, unquote, unquote_plus

__all__ = ["MASK", "NOT_A_URL", "encoded_forms", "mask_text", "mask_url", "url_secrets"]

MASK = "****"
NOT_A_URL = "(not a URL)"

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_HOSTPORT_RE = re.compile(r"(?P<host>\[[0-9A-Fa-f:.]+\]|[^:\[\]]*)(?::(?P<port>\d+))?")
_DOTTED_HOST_RE = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+\.?")
_BARE_HOST_RE = re.compile(r"[A-Za-z0-9-]+")
_EMAIL_RE = re.compile(r"[^@\s/]+@[^@\s/]+\.[^@\s/]+")
# What a log line may quote of a URL: an absolute URL, or the request target of a
# urllib3 request line / a requests exception ("POST /path HTTP/1.1", "with url: /path").
_URL_IN_TEXT_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]*")
_PATH_IN_TEXT_RE = re.compile(r"(?P<lead>\"[A-Z]+ |with url: )(?P<target>/[^\s'\"<>]*)")

#: Apprise options whose values name recipients or settings, never credentials.
_PLAIN_OPTIONS = frozenset(
    {
        "avatar", "batch", "bcc", "blocks", "cc", "channel", "channels", "content", "cto",
        "detect", "discovery", "emojis", "fields", "footer", "footer_logo", "format",
        "from", "hsreq", "image", "lang", "mdv", "method", "mode", "msgtype", "name",
        "optional", "overflow", "preview", "priority", "reply", "retry", "rto", "silent",
        "smtp", "sound", "tags", "timestamp", "title", "to", "tts", "tz", "user",
        "verify", "version", "wait",
    }
)  # fmt: skip
#: A name containing one of these is a credential's, whatever else it says.
_SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "sig", "auth", "cred", "session", "bearer")
#: Below this, a masked part is not looked for as a substring of log text: scrubbing
#: "hook" or "alerts" everywhere would mangle every line. URLs and request paths
#: quoted in a log line are still masked whole by :func:`mask_text`.
_MIN_LOOSE_SECRET = 8


def mask_url(url: str) -> str:
    """``url`` with every part that may be a secret replaced by ``****`` (rules: module docstring)."""
    return _mask(url)[0]


def url_secrets(url: str, *, every_part: bool = False) -> frozenset[str]:
    """The parts of ``url`` worth looking for in log text, as written and percent-decoded.

    Passwords, header values and secret-named query values always; other masked parts
    (hosts, user names, path segments, other query values) when they are long enough
    or mix letters and digits, so that a common word in a path is not scrubbed from
    every log line, or all of them with ``every_part`` (for text known to be about this
    URL, such as Apprise's complaints while it loads it). Each whitespace-separated word
    of a value is listed too: an ``Authorization`` header's credential shows up without
    its ``Bearer``.
    """
    strong, loose = _mask(url)[1:]
    found: set[str] = set()
    for part in strong + [p for p in loose if every_part or _token_like(unquote_plus(p))]:
        words = [w for w in unquote_plus(part).split() if _token_like(w)]
        for piece in [part, *words]:
            found.update(encoded_forms(piece))
    return frozenset(f for f in found if len(f) >= 3)


def mask_text(text: str) -> str:
    """``text`` with every URL in it masked by :func:`mask_url`, request paths likewise.

    Punctuation that ends a sentence or closes a parenthesis around a URL (``(url):``)
    is kept outside it.
    """
    text = _URL_IN_TEXT_RE.sub(lambda m: _mask_quoted(m.group()), text)
    return _PATH_IN_TEXT_RE.sub(lambda m: m.group("lead") + _mask_target(m.group("target")), text)


def encoded_forms(secret: str) -> set[str]:
    """``secret`` as written, percent-encoded (both ways) and percent-decoded: logs show each."""
    plain = unquote(secret)
    return {secret, plain, unquote_plus(secret), quote(plain, safe=""), quote_plus(plain, safe="")}


# -- internals ---------------------------------------------------------------------------


def _mask_quoted(url: str) -> str:
    """A URL found in text, masked, with the punctuation that follows it kept as it is."""
    end = len(url)
    while end:
        last = url[end - 1]
        unbalanced = last == ")" and url.count(")", 0, end) > url.count("(", 0, end)
        if last not in ".,;:" and not unbalanced:
            break
        end -= 1
    return mask_url(url[:end]) + url[end:]


def _token_like(text: str) -> bool:
    """Long enough to be worth a substring scrub: 8+ characters, or letters and digits mixed."""
    has_mix = any(c.isdigit() for c in text) and any(c.isalpha() for c in text)
    return len(text) >= _MIN_LOOSE_SECRET or (len(text) >= 4 and has_mix)


def _mask(url: str) -> tuple[str, list[str], list[str]]:
    """(masked URL, strong secrets, loose secrets) of ``url``; see :func:`url_secrets`."""
    scheme, sep, rest = url.strip().partition("://")
    if not sep or not _SCHEME_RE.fullmatch(scheme):
        return NOT_A_URL, [url], []
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    authority, tail = rest[:cut], rest[cut:]
    path, qmark, query = tail.partition("?")
    strong: list[str] = []
    loose: list[str] = []
    shown = _mask_authority(authority, strong, loose) + _mask_path(path, loose)
    if qmark:
        shown += "?" + _mask_query(query, strong, loose)
    return f"{scheme}://{shown}", strong, loose


def _mask_authority(authority: str, strong: list[str], loose: list[str]) -> str:
    userinfo, at, hostport = authority.rpartition("@")
    shown_user = ""
    if at:
        user, colon, password = userinfo.partition(":")
        if colon:
            strong.append(password)
            shown_user = f"{user}:{MASK}@" if password else f"{user}:@"
        else:
            loose.append(user)
            shown_user = f"{MASK}@" if user else "@"
    match = _HOSTPORT_RE.fullmatch(hostport)
    if match is None:
        strong.append(hostport)
        return shown_user + MASK
    host, port = match.group("host"), match.group("port")
    if _is_host_name(host, has_port=port is not None):
        return shown_user + hostport
    loose.append(host)
    return shown_user + MASK + (f":{port}" if port is not None else "")


def _is_host_name(host: str, *, has_port: bool) -> bool:
    if not host or host.startswith("[") or host.lower() == "localhost":
        return True
    if _DOTTED_HOST_RE.fullmatch(host):
        return True
    return has_port and _BARE_HOST_RE.fullmatch(host) is not None


def _is_reference(item: str) -> bool:
    """A recipient or channel name rather than a credential (see the module docstring)."""
    plain = unquote(item)
    return not plain or plain[0] in "#@!" or _EMAIL_RE.fullmatch(plain) is not None


def _mask_path(path: str, loose: list[str]) -> str:
    segments = []
    for segment in path.split("/"):
        items = []
        for item in segment.split(","):
            if _is_reference(item):
                items.append(item)
            else:
                loose.append(item)
                items.append(MASK)
        segments.append(",".join(items))
    return "/".join(segments)


def _is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return (bool(name) and name[0] in "+-:") or any(word in lowered for word in _SECRET_WORDS)


def _mask_query(query: str, strong: list[str], loose: list[str]) -> str:
    return "&".join(_mask_option(item, strong, loose) for item in query.split("&"))


def _mask_option(item: str, strong: list[str], loose: list[str]) -> str:
    """One ``name=value`` of a query, its value masked unless known to be harmless."""
    raw_name, eq, value = item.partition("=")
    name = unquote_plus(raw_name)
    plain = name.lower() in _PLAIN_OPTIONS
    if not eq:  # a bare word: a flag Apprise knows, or anything at all
        if plain or not item:
            return item
        loose.append(item)
        return MASK
    if not value:
        return item
    if _is_secret_name(name):
        strong.append(value)
        return f"{raw_name}={MASK}"
    if plain or _is_address_list(value):
        return item
    loose.append(value)
    return f"{raw_name}={MASK}"


def _is_address_list(value: str) -> bool:
    items = [v for v in re.split(r"[,\s]+", unquote_plus(value)) if v]
    return bool(items) and all(_EMAIL_RE.fullmatch(v) for v in items)


def _mask_target(target: str) -> str:
    """A request target (``/path?query``) masked as the path and query of a URL are."""
    path, qmark, query = target.partition("?")
    shown = _mask_path(path, [])
    return shown + ("?" + _mask_query(query, [], []) if qmark else "")
