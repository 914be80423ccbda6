"""Dedupe keys: canonical URLs, stable hashes and normalised titles.

A story must alert once, however many times and however many feeds show it. Three
things get in the way, and each has a key here:

* the same article URL comes back decorated with tracking parameters
  (``?xtor=RSS-3208``, ``?utm_source=rss``, ``?at_medium=RSS&at_campaign=KARANGA``) or
  with cosmetic differences (host case, ``:443``, ``#comments``): :func:`canonical_url`
  and :func:`url_key`;
* some feeds have no link or no GUID at all: :func:`text_key` hashes whatever identity
  is left;
* wire copy (Reuters, AP, AFP) is republished by many outlets under the same title with
  an outlet suffix such as ``" - Reuters"`` or ``" | AP News"``: :func:`normalise_title`
  and :func:`title_key` make those titles equal so a later clustering step can group them.

Pure module: standard library only, no I/O. It deliberately does not import
``monitor.matching.textnorm`` (the matcher's text folding) so that a change in how queries are
matched can never silently change the identity of stories already stored.

Decisions worth knowing (each is tested in ``tests/test_dedupe.py``):

* Tracking parameters are removed by *name* from a list of parameters that are known to
  carry campaign or referrer data only (:data:`TRACKING_PARAMS`, :data:`TRACKING_PREFIXES`,
  plus a few that are tracking only with a feed-ish value, :data:`TRACKING_IF_VALUE`).
  Every other parameter is kept, because many sites put the article id in the query
  (``?id=17703``, ``?p=1609``, ``?story=...``): dropping an unknown parameter could merge
  two different articles into one, which is a silently missed alert, whereas keeping a
  tracking parameter we do not know only risks a duplicate alert.
* A trailing ``/`` is removed from non-root paths (``/news/story/`` and ``/news/story``
  are the same article on every CMS we know; both spellings do occur across feeds and
  polls). The root path is always ``/``. The canonical URL is an identity, not a link to
  show: :class:`monitor.ingest.entries.Entry` keeps the feed's own link for display.
* The fragment is dropped, except a ``#!`` "hashbang" fragment, which on old AJAX sites
  carries the article route.
* User-info (``user:password@``) is dropped: it never identifies an article and must not
  end up in the database.
* Redirect wrappers are *not* unwrapped here: a FeedBurner link such as
  ``http://feeds.reuters.com/~r/Reuters/worldNews/~3/c3wXZD4kLB8/...`` does not contain
  the target URL, so the real URL only comes from ``<feedburner:origLink>``, which
  :mod:`monitor.ingest.entries` prefers when present.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "TRACKING_IF_VALUE",
    "TRACKING_PARAMS",
    "TRACKING_PREFIXES",
    "canonical_url",
    "normalise_title",
    "text_key",
    "title_key",
    "url_key",
]

#: Query parameters (compared case-insensitively) that only ever carry tracking data.
TRACKING_PARAMS: frozenset[str] = frozenset(
    {
        # ad-click identifiers (Facebook, Google, Microsoft, Yandex, DoubleClick, Instagram)
        "fbclid",
        "gclid",
        "gclsrc",
        "dclid",
        "msclkid",
        "yclid",
        "igshid",
        "twclid",
        "li_fat_id",
        # Mailchimp, Marketo, HubSpot, Google Analytics linker
        "mc_cid",
        "mc_eid",
        "mkt_tok",
        "_hsenc",
        "_hsmi",
        "_ga",
        "_gl",
        # news sites: MSN (ocid), Guardian/FT (CMP, cmpid), Le Monde/Le Figaro (xtor),
        # NYT (smid, smtyp, partner, emc), heise (wt_mc, wt_zmc: Webtrekk),
        # Reuters (feedType, feedName), PCMag (kc), Telegraph/Independent (icid),
        # BBC (at_medium, at_campaign and friends are matched by prefix below)
        "ocid",
        "cmp",
        "cmpid",
        "xtor",
        "smid",
        "smtyp",
        "partner",
        "emc",
        "wt_mc",
        "wt_zmc",
        "feedtype",
        "feedname",
        "kc",
        "icid",
        # referrer markers
        "ref",
        "ref_src",
        "ref_url",
        "referrer",
        "feature",
        "rss",
        "share",
        "spm",
    }
)

#: Query parameter prefixes (lower-case) that only ever carry tracking data: Google
#: Analytics ``utm_*``, Comscore ``ns_*`` (old BBC links), AT Internet ``at_*`` (BBC,
#: French outlets), HubSpot ``hsa_*``, Piwik/Matomo ``pk_*`` and ``mtm_*``.
TRACKING_PREFIXES: tuple[str, ...] = ("utm_", "ns_", "at_", "hsa_", "pk_", "mtm_")

#: Parameters that are tracking only when their value says "this came from a feed":
#: ``?from=rss`` and ``?source=rss`` are tracking, ``?from=2024-03-01`` is not.
TRACKING_IF_VALUE: dict[str, frozenset[str]] = {
    "from": frozenset({"rss", "feed", "feeds", "rss2", "atom", "feedburner", "rssfeed"}),
    "source": frozenset({"rss", "feed", "feeds", "rss2", "atom", "feedburner", "rssfeed"}),
    "src": frozenset({"rss", "feed", "feeds", "rss2", "atom", "feedburner", "rssfeed"}),
    "output": frozenset({"amp"}),
}

_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 unreserved characters: a percent-escape of one of these means the same URL
# as the character itself, so it is decoded; every other escape is kept (upper-cased).
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Characters that may stay literal in a path / a query component. Anything else (spaces,
# non-ASCII, quotes, ...) is percent-encoded as UTF-8 so "é" and "%C3%A9" compare equal.
_PATH_SAFE = frozenset("/:@!$&'()*+,;=%") | _UNRESERVED
_QUERY_SAFE = frozenset("/:@!$'()*+,;=?%") | _UNRESERVED  # "&" never reaches it: it splits pairs
_NEEDS_QUOTING = re.compile(r"[^A-Za-z0-9\-._~/:@!$&'()*+,;=?%]")


def _fix_escapes(text: str, safe: frozenset[str]) -> str:
    """Normalise percent-encoding: decode unreserved escapes, upper-case the others,
    encode what must be encoded (as UTF-8) and turn a stray ``%`` into ``%25``."""
    text = _STRAY_PERCENT.sub("%25", text)

    def _escape(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    text = _ESCAPE.sub(_escape, text)
    if not _NEEDS_QUOTING.search(text):
        return text
    out: list[str] = []
    for char in text:
        if char in safe:
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    return "".join(out)


def _is_tracking(name: str, value: str) -> bool:
    key = name.lower()
    if key in TRACKING_PARAMS or key.startswith(TRACKING_PREFIXES):
        return True
    feedish = TRACKING_IF_VALUE.get(key)
    return feedish is not None and value.lower() in feedish


def _canonical_host(netloc_host: str) -> str:
    host = netloc_host.lower().rstrip(".")
    if host and not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            pass  # keep the Unicode spelling: still a stable key
    return host


def _canonical_query(query: str) -> str:
    pairs: list[tuple[str, str]] = []
    for part in query.split("&"):
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = _fix_escapes(name, _QUERY_SAFE)
        value = _fix_escapes(value, _QUERY_SAFE)
        if _is_tracking(name, value):
            continue
        pairs.append((name, f"{name}{sep}{value}"))
    # Sort by name only: the sort is stable, so repeated names (?a=1&a=2) keep their
    # order, which some sites give meaning to.
    pairs.sort(key=lambda pair: pair[0])
    return "&".join(text for _, text in pairs)


def canonical_url(url: str) -> str:
    """The form of ``url`` used as an article's identity (see the module docstring).

    Never raises: a string that is not an http(s) URL is returned stripped, unchanged
    otherwise, so that it still works as a stable (if less forgiving) key.

    >>> canonical_url("HTTPS://www.LeMonde.fr:443/idees/article/x_6224413_3232.html?xtor=RSS-3208#top")
    'https://www.lemonde.fr/idees/article/x_6224413_3232.html'
    """
    url = url.strip()
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 literal "http://[::1"
        return url
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.netloc:
        return url
    host = _canonical_host(parts.hostname or "")
    if not host:  # "http://./x", "https://:80/": nothing to canonicalise against
        return url
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:  # a port that is not a number: not a URL we can reason about
        return url
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _fix_escapes(parts.path, _PATH_SAFE) or "/"
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    query = _canonical_query(parts.query) if parts.query else ""
    fragment = parts.fragment if parts.fragment.startswith("!") else ""
    return urlunsplit((scheme, netloc, path, query, fragment))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def url_key(url: str) -> str:
    """A 32-hex-digit key for an article URL (the first 128 bits of the SHA-256 of
    its :func:`canonical_url`), short enough to index, far too long to collide."""
    return _digest("url\x1f" + canonical_url(url))


def text_key(*parts: str) -> str:
    """A 32-hex-digit key for a tuple of texts, for identities that are not URLs
    (a GUID, or a title and summary when a feed gives neither GUID nor link).

    The parts are joined with a separator that cannot occur in feed text, so
    ``text_key("a b", "c") != text_key("a", "b c")``. Texts are used as given: callers
    pass already-normalised text so that the key is stable across polls.
    """
    return _digest("text\x1f" + "\x1f".join(parts))


# --- titles ---------------------------------------------------------------------------

#: Outlets whose name is stripped when it is appended or prepended to a title
#: (compared after :func:`_fold`). Wire services first: they are what makes the
#: same story appear under many outlets.
KNOWN_OUTLETS: frozenset[str] = frozenset(
    {
        "reuters",
        "thomson reuters",
        "ap",
        "ap news",
        "the associated press",
        "associated press",
        "afp",
        "agence france presse",
        "agence france-presse",
        "dpa",
        "ansa",
        "efe",
        "kyodo",
        "kyodo news",
        "yonhap",
        "tass",
        "interfax",
        "ria novosti",
        "xinhua",
        "upi",
        "bloomberg",
        "bbc",
        "bbc news",
        "bbc news online",
        "cnn",
        "cnn com",
        "npr",
        "the guardian",
        "guardian",
        "the new york times",
        "new york times",
        "nyt",
        "the washington post",
        "washington post",
        "the wall street journal",
        "wsj",
        "financial times",
        "ft",
        "the economist",
        "the independent",
        "the telegraph",
        "sky news",
        "al jazeera",
        "al jazeera english",
        "france 24",
        "france24",
        "euronews",
        "dw",
        "deutsche welle",
        "politico",
        "politico eu",
        "axios",
        "cnbc",
        "fox news",
        "nbc news",
        "abc news",
        "cbs news",
        "huffpost",
        "the huffington post",
        "yahoo news",
        "msn",
        "the japan times",
        "japan times",
        "the kyiv independent",
        "kyiv independent",
        "the moscow times",
        "le monde",
        "le monde fr",
        "le figaro",
        "liberation",
        "franceinfo",
        "ouest france",
        "ouest-france",
        "rfi",
        "der spiegel",
        "spiegel",
        "zeit online",
        "faz",
        "sueddeutsche zeitung",
        "suddeutsche zeitung",
        "tagesschau",
        "tagesschau de",
        "heise online",
        "golem de",
        "el pais",
        "corriere della sera",
        "jn",
        "jornal de noticias",
        "uol",
        "uol noticias",
        "talking points memo",
        "tpm",
    }
)

# Labels that outlets put before a title ("VIDEO:", "LIVE -", "Opinion |") or in
# brackets at either end ("(AFP)", "[Video]"). They say how a story is packaged, not
# what it is about.
_LABELS = (
    r"videos?|vid[eé]o|watch|live|live updates|live blog|liveblog|en direct|direct|"
    r"breaking|breaking news|exclusive|exclusif|analysis|opinion|editorial|comment|"
    r"photos?|in pictures|gallery|audio|podcast|listen|updated?(?:\s*\d+)?|"
    r"corrected|refile|rpt|wrapup(?:\s*\d+)?|factbox|insight|explainer|"
    r"eilmeldung|liveticker|ticker|kommentar|infographie|tribune|entretien|interview"
)
# Any case, followed by ":" / "|" / a spaced dash: "Live: ...", "Opinion | ...".
_PREFIX_LABEL = re.compile(rf"^\s*(?:{_LABELS})\s*(?::|\||\s[-–—])\s*", re.IGNORECASE)
# Upper case only, followed by "." or an unspaced "-": Reuters's "UPDATE 2-",
# "EXCLUSIVE-", franceinfo's "VIDEO." / "DIRECT.". Upper case only because
# "Live-action remake ..." and "Watch. Wait." are titles, not labels.
_PREFIX_LABEL_UPPER = re.compile(
    r"^\s*(?:VIDEOS?|VIDÉOS?|LIVE|DIRECT|EN DIRECT|BREAKING|EXCLUSIVE|EXCLUSIF|ANALYSIS|"
    r"UPDATE(?:\s*\d+)?|CORRECTED|REFILE|RPT|WRAPUP(?:\s*\d+)?|FACTBOX|INSIGHT|"
    r"BREAKINGVIEWS|INFOGRAPHIE|TRIBUNE|ENTRETIEN)\s*[.-]\s*"
)
_BRACKET_START = re.compile(r"^\s*[(\[]([^()\[\]]{1,40})[)\]]\s*")
_BRACKET_END = re.compile(r"\s*[(\[]([^()\[\]]{1,40})[)\]]\s*$")
_LABEL_ONLY = re.compile(rf"^(?:{_LABELS})$", re.IGNORECASE)
# Separators between a title and an outlet name: " - ", " – ", " — ", " | ", " :: ", " · ".
_SEPARATOR = re.compile(r"\s+(?:[-–—|·•]|::)\s+")
_DOMAIN = re.compile(r"^(?:www\.)?[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}$", re.IGNORECASE)
_APOSTROPHES = dict.fromkeys(map(ord, "'’‘ʼ`´"), None)
_DIGIT_GROUP = re.compile(r"(?<=\d)[,.\u00a0\u202f\u2009 ](?=\d{3}(?!\d))")


def _fold(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form: NFKD, combining marks and
    invisible format characters (soft hyphen, zero-width joiner) dropped, casefolded,
    apostrophes deleted ("don’t" = "dont"), other punctuation, symbols and controls
    turned into spaces, digit-group separators removed ("1,000" = "1 000" = "1000"),
    whitespace collapsed."""
    text = _DIGIT_GROUP.sub("", text)
    decomposed = unicodedata.normalize("NFKD", text).translate(_APOSTROPHES)
    out: list[str] = []
    for char in decomposed:
        category = unicodedata.category(char)
        if category in ("Mn", "Cf"):
            continue
        out.append(" " if category[0] in "PSZC" else char)
    return " ".join("".join(out).casefold().split())


def _is_outlet(segment: str, hint: str | None) -> bool:
    folded = _fold(segment)
    if not folded:
        return False
    if folded in KNOWN_OUTLETS or _DOMAIN.match(segment.strip()):
        return True
    if hint and len(folded) >= 3:
        # The hint is often the feed title ("Reuters: World News", "Le Monde.fr -
        # International"): the segment matches when it is the hint or its first words.
        return hint == folded or hint.startswith(folded + " ")
    return False


def _strip_once(title: str, hint: str | None) -> str | None:
    """Remove one decoration from ``title``; None when there is none left to remove."""
    separators = list(_SEPARATOR.finditer(title))
    if separators:
        last, first = separators[-1], separators[0]
        if _is_outlet(title[last.end() :], hint):
            return title[: last.start()]
        if _is_outlet(title[: first.start()], hint):
            return title[first.end() :]
    for pattern in (_PREFIX_LABEL, _PREFIX_LABEL_UPPER):
        match = pattern.match(title)
        if match:
            return title[match.end() :]
    for pattern in (_BRACKET_START, _BRACKET_END):
        match = pattern.search(title)
        if match and (_is_outlet(match.group(1), hint) or _LABEL_ONLY.match(match.group(1).strip())):
            return title[: match.start()] + " " + title[match.end() :]
    return None


def _strip_decorations(title: str, hint: str | None) -> str:
    # Decorations stack ("VIDEO: ... (AFP) - Yahoo News"); each pass removes one, and
    # a removal that would leave nothing is not made.
    for _ in range(8):
        shorter = _strip_once(title, hint)
        if shorter is None or not _fold(shorter):
            break
        title = shorter
    return title


def normalise_title(title: str, source_hint: str | None = None) -> str:
    """The title reduced to what identifies the story, for clustering across outlets.

    Outlet names are removed where outlets put them: after or before a separator
    (``"... - Reuters"``, ``"... | AP News"``, ``"... – Le Monde"``, ``"lemonde.fr - ..."``),
    or in brackets at either end (``"(AFP)"``); packaging labels are removed from the
    start (``"VIDEO:"``, ``"LIVE -"``, ``"UPDATE 2-"``) or from brackets (``"[Video]"``).
    Only *known* outlets, domain names and the ``source_hint`` (the feed's or the
    ``<source>``'s name) are removed, never an arbitrary short last segment: stripping
    "- Gaza" from "Live updates - Gaza" would merge different stories. The rest is
    folded (see :func:`_fold`). Never empties a title that has words: if the
    decorations are all there is, the folded original is returned.
    """
    hint = _fold(source_hint) if source_hint else None
    stripped = _fold(_strip_decorations(title, hint or None))
    return stripped or _fold(title)


def title_key(title: str, source_hint: str | None = None) -> str:
    """A 32-hex-digit key of :func:`normalise_title`: equal for wire copies of one story."""
    return _digest("title\x1f" + normalise_title(title, source_hint))
