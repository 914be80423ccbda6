"""Fetch feeds over HTTP, politely and without ever hanging the daemon.

feedparser's own fetching has no timeout (a dead server blocks a job forever), so the
pipeline fetches here and hands bytes to the parser. What this module guarantees:

* **Bounded time.** httpx timeouts are per operation (connect, each read): a server that
  trickles one byte a second defeats them. Every request therefore also runs under an
  overall ``deadline`` (redirect hops and body download included), enforced with
  ``asyncio.timeout``; a server that accepts and never answers is given up after
  ``timeout``.
* **Bounded memory.** The body is read raw and decompressed here, in 64 KiB output
  steps (``zlib`` ``max_length``), and counted *after* decompression, so a gzip bomb
  stops at ``max_bytes`` instead of inflating a whole raw chunk (httpx's own decoder
  would turn one 64 KiB read into ~64 MB). ``fetch_many(window=)`` bounds how many
  finished bodies wait for a slow consumer (the parser).
* **Politeness.** Conditional GET (ETag / Last-Modified), a clear User-Agent, at most
  ``per_host`` requests at once per host and ``concurrency`` in total, and Retry-After:
  after a 429/503 that names a delay, requests to that host fail fast (reason
  ``rate_limited``, flagged ``deferred``: the request never left) without touching the
  network until the delay is over.
* **Honest redirects.** Redirects are followed by hand, hop by hop, so the caller only
  learns a new permanent URL when *every* hop was a 301/308 (following 302s into the
  stored URL is a known bug of other readers); loops and long chains are errors.
* **No way inside.** A redirect from a public address may not lead to a loopback,
  private or link-local one (the cloud metadata address included): the address checked
  is the one each connection actually reached, before the request is sent, so DNS
  rebinding, decimal IPs and IPv4-mapped IPv6 addresses do not pass. The configured URL
  itself may be anywhere (an intranet feed is the user's choice), and so may its
  redirects while they stay inside.
* **Cheap "unchanged".** A 304, a 200 whose ETag is the stored one, or a 200 whose body
  hashes to the stored sha256 all come back as ``not_modified``, so the caller skips
  the expensive parse.

Concurrency model: each :class:`Fetcher` owns one private asyncio event loop in a daemon
thread with one ``httpx.AsyncClient``; :meth:`Fetcher.fetch_many` may be called from any
thread and yields outcomes as they complete. Slots are taken host first, then global,
and released at every redirect hop, so a slow host never holds global slots while it
waits and no two requests can wait on each other.

Errors are :class:`FeedFetchError` (a :class:`~monitor.errors.FetchError` that also
carries its :class:`FetchRequest`), with short ``reason`` codes that the store keeps as
the feed's health: ``http_<status>``, ``gone``, ``rate_limited``, ``timeout``,
``deadline``, ``too_large``, ``connection``, ``redirect_loop``, ``too_many_redirects``,
``tls``, ``invalid_url``, ``decoding`` (a body that does not decompress, or a
Content-Encoding we did not ask for), ``cancelled`` (the fetcher was closed meanwhile),
``internal_address`` (see below).
Messages name the URL without user-info and without secret-looking query values.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import hashlib
import ipaddress
import logging
import math
import queue
import re
import ssl
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any, Literal, TypeVar
from urllib.parse import unquote_plus

import httpcore
import httpx

from monitor import __version__
from monitor.errors import FetchError

__all__ = [
    "DEFAULT_USER_AGENT",
    "FeedFetchError",
    "FetchRequest",
    "FetchResult",
    "FetchSettings",
    "Fetcher",
    "host_key",
    "is_internal_address",
    "parse_retry_after",
    "redact_url",
]

log = logging.getLogger("monitor.fetch")
_T = TypeVar("_T")

DEFAULT_USER_AGENT = f"news-monitor/{__version__} (+https://github.com/news-monitor/news-monitor)"
# The feed formats the parser reads, best first; anything else is still accepted (many
# servers label feeds text/html or application/octet-stream).
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/rdf+xml;q=0.9, "
    "application/xml;q=0.8, text/xml;q=0.8, application/json;q=0.8, */*;q=0.1"
)
# Only what _Inflater decodes with bounded output; br/zstd would need a decoder that
# can stop early, and none is installed.
ACCEPT_ENCODING = "gzip, deflate"
MAX_RETRY_AFTER = 86_400.0
"""Longest wait a server can impose (seconds): a typo'd or hostile Retry-After must not
silence a host for weeks."""

_STEP = 64 * 1024
_BAD_HOST = re.compile(r"[\s%<>\"{}|\\^`/?#@]")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_PERMANENT = frozenset({301, 308})
_SECRET_PARAM_WORDS = (
    "token",
    "secret",
    "passw",
    "apikey",
    "api_key",
    "api-key",
    "auth",
    "signature",
    "session",
)
_SECRET_PARAM_NAMES = frozenset({"key", "pass", "pwd", "sig", "sid", "code", "hash"})


# ------------------------------------------------------------------------------ data


@dataclass(frozen=True, slots=True)
class FetchRequest:
    """What to fetch, with the validators of the last successful fetch."""

    key: Any  # opaque caller key (feed id), returned with the outcome
    url: str
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None  # sha256 hex of the last body we parsed


@dataclass(frozen=True, slots=True)
class FetchResult:
    """A successful fetch. ``not_modified`` means: skip parsing, nothing changed.

    ``etag`` and ``last_modified`` are what to store for the next conditional request
    (on a 304 that did not repeat them, the request's own values).
    """

    request: FetchRequest
    status: Literal["ok", "not_modified"]
    http_status: int
    url: str  # final URL after redirects
    permanent_redirect: str | None  # new URL if every hop was 301/308, else None
    body: bytes  # decompressed; b"" when not_modified
    content_type: str | None
    etag: str | None
    last_modified: str | None
    body_hash: str | None  # sha256 hex of body (None when not_modified without a new body)
    elapsed: float  # seconds


@dataclass(frozen=True, slots=True)
class FetchSettings:
    """Limits of one :class:`Fetcher` (the ``poll:`` section of config.yaml, whose defaults
    are these)."""

    timeout: float = 20.0  # per operation (connect, read)
    deadline: float = 30.0  # whole request incl. redirects and body download
    max_bytes: int = 10_000_000  # after decompression
    concurrency: int = 16
    per_host: int = 2
    max_redirects: int = 5
    user_agent: str = DEFAULT_USER_AGENT
    # Addresses a redirect from elsewhere may not reach; None: every address that is not
    # globally routable (loopback, private, link-local, CGNAT, reserved, multicast).
    internal_networks: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("timeout", "deadline"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"FetchSettings.{name} must be a positive number of seconds, got {value!r}")
        for name in ("max_bytes", "concurrency", "per_host"):
            if getattr(self, name) < 1:
                raise ValueError(f"FetchSettings.{name} must be at least 1, got {getattr(self, name)!r}")
        if self.max_redirects < 0:
            raise ValueError(f"FetchSettings.max_redirects must be >= 0, got {self.max_redirects!r}")


class FeedFetchError(FetchError):
    """A :class:`FetchError` for one :class:`FetchRequest`: ``fetch_many`` yields these
    in place of results, so the caller can tell which feed failed."""

    def __init__(
        self,
        message: str,
        *,
        request: FetchRequest,
        reason: str,
        status: int | None = None,
        retry_after: float | None = None,
        deferred: bool = False,
    ) -> None:
        super().__init__(message, reason=reason, status=status, retry_after=retry_after)
        self.request = request
        # True when the request never left: its host asked us to wait (Retry-After) and
        # the wait is not over. Not the feed's failure: the caller should just try later.
        self.deferred = deferred


# ---------------------------------------------------------------------- pure helpers


def _is_secret_param(name: str) -> bool:
    lowered = name.lower()
    return lowered in _SECRET_PARAM_NAMES or any(word in lowered for word in _SECRET_PARAM_WORDS)


def _split_authority(url: str) -> tuple[int, int]:
    """Start and end of the authority (``user:pw@host:port``) in ``url``, or (-1, -1)."""
    sep = url.find("://")
    if sep < 0:
        return -1, -1
    start = sep + 3
    end = len(url)
    for ch in "/?#":
        at = url.find(ch, start)
        if at != -1:
            end = min(end, at)
    return start, end


def redact_url(url: str) -> str:
    """``url`` fit for logs and messages: no user-info, secret-looking query values masked.

    Works on malformed URLs too (plain string surgery), since those are exactly the
    ones that end up in error messages.
    """
    start, end = _split_authority(url)
    if start >= 0 and "@" in url[start:end]:
        url = url[:start] + url[start:end].rsplit("@", 1)[1] + url[end:]
    base, hash_sep, fragment = url.partition("#")
    path, q_sep, query = base.partition("?")
    if query:
        items = []
        for item in query.split("&"):
            name, eq, value = item.partition("=")
            if eq and value and _is_secret_param(unquote_plus(name)):
                item = f"{name}=***"
            items.append(item)
        base = f"{path}?{'&'.join(items)}"
    return base + hash_sep + fragment


def _secrets_in(url: str) -> list[str]:
    """The secret parts of ``url`` (user-info pieces, secret query values), longest first."""
    found: list[str] = []
    start, end = _split_authority(url)
    if start >= 0 and "@" in url[start:end]:
        userinfo = url[start:end].rsplit("@", 1)[0]
        user, _, password = userinfo.partition(":")
        found += [userinfo, user, password, unquote_plus(user), unquote_plus(password)]
    query = url.partition("#")[0].partition("?")[2]
    for item in query.split("&"):
        name, eq, value = item.partition("=")
        if eq and value and _is_secret_param(unquote_plus(name)):
            found += [value, unquote_plus(value)]
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def _scrub(text: str, url: str) -> str:
    for secret in _secrets_in(url):
        text = text.replace(secret, "***")
    return text


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delay-seconds or HTTP-date).

    None when absent or unreadable; clamped to ``[0, MAX_RETRY_AFTER]``. ``now`` is the
    Unix time the date is measured from (default: the wall clock).
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _same_tag(a: str, b: str) -> bool:
    """Weak ETag comparison (``W/"x"`` equals ``"x"``), as for If-None-Match."""
    return a.strip().removeprefix("W/") == b.strip().removeprefix("W/")


def _host_key(url: httpx.URL) -> str:
    port = url.port or (443 if url.scheme == "https" else 80)
    return f"{url.host}:{port}"


def host_key(url: str) -> str | None:
    """The key under which per-host limits and Retry-After apply (``host:port``), or
    None for a URL without a usable host. Feeds with the same key share a host."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return None
    if not parsed.host:
        return None
    return _host_key(parsed)


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)


class _Inflater:
    """One gzip or deflate layer, decoded with bounded output.

    ``feed`` yields pieces of at most 64 KiB, however compressible the input, so the
    byte cap is checked before more is inflated. Concatenated gzip members are joined;
    junk after the last member (some servers pad with zeros) is ignored; "deflate"
    accepts both the zlib-wrapped form (the standard) and raw deflate (what IIS sent).
    """

    def __init__(self, coding: str) -> None:
        self._gzip = coding in ("gzip", "x-gzip")
        self._wbits = zlib.MAX_WBITS | 16 if self._gzip else zlib.MAX_WBITS
        self._inflater = zlib.decompressobj(self._wbits)
        self._first_member = True
        self._member_output = False
        self._fed = False
        self._finished = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        buf = data
        while not self._finished:
            try:
                out = self._inflater.decompress(buf, _STEP)
            except zlib.error:
                if not self._gzip and not self._fed and self._wbits > 0:
                    self._wbits = -zlib.MAX_WBITS  # raw deflate: retry the same bytes
                    self._inflater = zlib.decompressobj(self._wbits)
                    continue
                if not self._first_member and not self._member_output:
                    self._finished = True  # trailing junk after a complete member
                    return
                raise
            self._fed = True
            if out:
                self._member_output = True
                yield out
            if self._inflater.eof:
                if not self._gzip:
                    self._finished = True
                    return
                # gzip: another member may follow, in this chunk or a later one
                buf = self._inflater.unused_data
                self._inflater = zlib.decompressobj(self._wbits)
                self._first_member = False
                self._member_output = False
                if not buf:
                    return
                continue
            buf = self._inflater.unconsumed_tail
            if not buf and len(out) < _STEP:
                return

    def finish(self) -> None:
        """Raise ``zlib.error`` if the body ended inside the first stream (truncated):
        half a feed would parse into a feed with entries silently missing."""
        if self._first_member and self._fed and not self._finished:
            raise zlib.error("compressed body is truncated")


def _decode(chain: list[_Inflater], data: bytes) -> Iterator[bytes]:
    """Run ``data`` through the decoders in order (last applied coding first)."""
    if not chain:
        if data:
            yield data
        return
    head, rest = chain[0], chain[1:]
    for piece in head.feed(data):
        yield from _decode(rest, piece)


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The ssl.SSLError behind an httpx error, if any (httpcore wraps it twice)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, ssl.SSLError):
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


# ------------------------------------------------------------------------ host blocks


class _HostBlocks:
    """Retry-After memory: host key -> monotonic time until which it must not be asked.

    Kept by the :class:`Fetcher` across batches; the lock lets any thread read it safely.
    """

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def block(self, key: str, seconds: float) -> None:
        with self._lock:
            until = self._clock() + seconds
            self._until[key] = max(until, self._until.get(key, until))

    def until(self, key: str) -> float | None:
        with self._lock:
            until = self._until.get(key)
            if until is not None and until <= self._clock():
                del self._until[key]
                return None
            return until


# ----------------------------------------------------------------------------- engine


class _InternalAddress(FetchError):
    """Raised inside the connection when a hop that must stay public reached ``address``
    (caught in :meth:`_Engine._exchange`, which reports it for the feed)."""

    def __init__(self, address: str) -> None:
        super().__init__(address, reason="internal_address")
        self.address = address


def _classifier(networks: tuple[str, ...] | None) -> Callable[[str], bool]:
    """``is_internal(address)`` for :attr:`FetchSettings.internal_networks`."""
    parsed = tuple(ipaddress.ip_network(n, strict=False) for n in networks) if networks is not None else None

    def is_internal(address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return True  # not an IP address (a Unix socket): never public
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        if parsed is None:
            return not ip.is_global or ip.is_multicast
        return any(ip in net for net in parsed)

    return is_internal


def is_internal_address(address: str) -> bool:
    """Whether ``address`` (an IP literal) is one the fetcher treats as internal by default:
    loopback, private, link-local, reserved or multicast (anything not a text IP is internal)."""
    return _classifier(None)(address)


#: Whether the hop being connected in this task must reach a public address only. Each
#: request runs in its own asyncio task, so the flag of one never leaks into another.
_PUBLIC_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("public_only", default=False)


class _GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, checking the address each new connection reached.

    The check is on the socket's peer, after DNS and the connect, so a host name that
    resolves to a public address when looked up and to an internal one when connected
    (DNS rebinding), a decimal IP or an IPv4-mapped IPv6 address cannot slip through;
    the connection is closed before a byte of the request is sent."""

    def __init__(self, is_internal: Callable[[str], bool]) -> None:
        self._inner = httpcore.AnyIOBackend()
        self._is_internal = is_internal

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        if _PUBLIC_ONLY.get():
            peer = _peer(stream)
            if peer is None or self._is_internal(peer):
                await stream.aclose()
                raise _InternalAddress(peer or host)
        return stream

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def _peer(stream: Any) -> str | None:
    """The IP address a connection (httpcore stream) is connected to."""
    addr = stream.get_extra_info("server_addr") if stream is not None else None
    return str(addr[0]) if isinstance(addr, tuple) and addr else None


_Outcome = tuple[int, str, bool]  # a redirect to follow: (status, Location, from an internal address)


class _Engine:
    """Everything that lives on the fetcher's event loop: client, semaphores, fetch logic.

    It holds no reference to its :class:`Fetcher`, so a forgotten Fetcher can still be
    garbage-collected and its finalizer can shut the engine down.
    """

    def __init__(self, settings: FetchSettings, clock: Callable[[], float], blocks: _HostBlocks) -> None:
        self.settings = settings
        self.clock = clock
        self.blocks = blocks
        self.is_internal = _classifier(settings.internal_networks)
        transport = httpx.AsyncHTTPTransport()
        # httpx offers no way to pass httpcore a network backend: the transport's pool is
        # replaced by the same pool over the guarded backend. Our semaphores bound
        # connections; a pool limit would only add a second, host-blind queue behind them.
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=None,
            max_keepalive_connections=settings.concurrency,
            keepalive_expiry=5.0,
            network_backend=_GuardedBackend(self.is_internal),
        )
        self.client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(settings.timeout),
            follow_redirects=False,
            headers={
                "User-Agent": settings.user_agent,
                "Accept": ACCEPT,
                "Accept-Encoding": ACCEPT_ENCODING,
            },
        )
        self.slots = asyncio.Semaphore(settings.concurrency)
        self.host_slots: dict[str, asyncio.Semaphore] = {}

    # -- the batch and the single request

    async def run_batch(
        self,
        requests: list[FetchRequest],
        put: Callable[[FetchResult | FeedFetchError], None],
        gate: asyncio.Semaphore | None = None,
    ) -> None:
        """Fetch all ``requests`` concurrently; ``put`` exactly one outcome for each.

        With a ``gate``, each request takes one of its slots before it starts (before
        any host or global slot, so a waiting request holds nothing); the consumer gives
        the slot back when it takes the outcome (see :meth:`Fetcher.fetch_many`).
        """

        async def one(request: FetchRequest) -> None:
            if gate is not None:
                try:
                    await gate.acquire()
                except asyncio.CancelledError:
                    put(_cancelled(request))
                    raise
            await self._settle(request, put)

        await asyncio.gather(*(one(r) for r in requests))

    async def _settle(self, request: FetchRequest, put: Callable[[FetchResult | FeedFetchError], None]) -> None:
        """Fetch one request and put exactly one outcome for it, whatever happens."""
        outcome: FetchResult | FeedFetchError
        try:
            outcome = await self.fetch(request)
        except FeedFetchError as exc:
            outcome = exc
        except asyncio.CancelledError:
            put(_cancelled(request))
            raise
        except Exception as exc:  # a bug must not lose an outcome nor stop the batch
            log.exception("unexpected error fetching %s", redact_url(request.url))
            outcome = FeedFetchError(
                f"{redact_url(request.url)}: internal error ({type(exc).__name__})",
                request=request,
                reason="internal",
            )
        put(outcome)

    async def run_stream(
        self,
        source: Callable[[], Sequence[FetchRequest]],
        put: Callable[[FetchResult | FeedFetchError], None],
        gate: asyncio.Semaphore,
    ) -> None:
        """Fetch what ``source`` hands out, group after group, until it hands out nothing.

        ``source`` (called in a thread of the loop's executor: it may block, e.g. on a
        database claim) is asked for the next group only once every request of the groups
        before has taken a ``gate`` slot, i.e. is running or done: what is handed out is
        in flight soon, and no more is taken than the window can start.
        """
        loop = asyncio.get_running_loop()
        waiting: collections.deque[FetchRequest] = collections.deque()
        tasks: set[asyncio.Task[None]] = set()

        try:
            while True:
                if not waiting:
                    waiting.extend(await loop.run_in_executor(None, source))
                    if not waiting:
                        break
                await gate.acquire()
                task = asyncio.create_task(self._settle(waiting.popleft(), put))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if tasks:
                await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def fetch(self, request: FetchRequest) -> FetchResult:
        settings = self.settings
        url = self._parse_url(request)
        origin = _origin(url)
        credentials = (url.username, url.password) if (url.username or url.password) else None
        visited = [url]
        permanent = True
        started: float | None = None
        loop = asyncio.get_running_loop()
        deadline = asyncio.timeout(None)
        current = url
        public_only = False  # the configured URL may be anywhere: it is the user's choice
        try:
            async with deadline:
                while True:
                    key = _host_key(current)
                    self._raise_if_blocked(request, key, current)
                    async with self._host_slot(key), self.slots:
                        self._raise_if_blocked(request, key, current)  # a 429 may have come meanwhile
                        if started is None:  # the deadline counts network time, not queueing
                            started = self.clock()
                            deadline.reschedule(loop.time() + settings.deadline)
                        moved = current if permanent and len(visited) > 1 else None
                        outcome = await self._exchange(request, current, key, started, moved, public_only)
                    if isinstance(outcome, FetchResult):
                        return outcome
                    status, location, from_internal = outcome
                    public_only = not from_internal  # a public server never sends us inside
                    current = self._next_url(request, current, location, origin, credentials)
                    permanent = permanent and status in _PERMANENT
                    if any(current == seen for seen in visited):
                        chain = " -> ".join(redact_url(str(u)) for u in [*visited, current])
                        raise self._error(request, "redirect_loop", f"redirect loop: {chain}")
                    if len(visited) > settings.max_redirects:
                        raise self._error(
                            request,
                            "too_many_redirects",
                            f"{redact_url(request.url)}: more than {settings.max_redirects} redirects "
                            f"(last to {redact_url(str(current))})",
                        )
                    visited.append(current)
        except TimeoutError as exc:
            if not deadline.expired():
                raise
            raise self._error(
                request,
                "deadline",
                f"{redact_url(str(current))}: download did not finish within the "
                f"{settings.deadline:g} s deadline (server too slow)",
            ) from exc

    # -- one hop

    async def _exchange(
        self,
        request: FetchRequest,
        url: httpx.URL,
        key: str,
        started: float,
        moved: httpx.URL | None,
        public_only: bool,
    ) -> FetchResult | _Outcome:
        headers = {}
        if request.etag:
            headers["If-None-Match"] = request.etag
        if request.last_modified:
            headers["If-Modified-Since"] = request.last_modified
        _PUBLIC_ONLY.set(public_only)
        try:
            async with self.client.stream("GET", url, headers=headers) as response:
                status = response.status_code
                location = response.headers.get("location")
                redirect = status in _REDIRECTS and bool(location)
                if public_only or redirect:  # the peer matters only for a redirect chain
                    peer = _peer(response.extensions.get("network_stream"))
                    internal = peer is None or self.is_internal(peer)
                    if public_only and internal:  # a kept-alive connection made for another feed
                        raise _InternalAddress(peer or url.host)
                    if redirect and location:
                        await _drain(response)
                        return status, location, internal
                return await self._conclude(request, response, url, key, started, moved)
        except _InternalAddress as exc:
            raise self._error(
                request,
                "internal_address",
                f"{redact_url(str(url))}: refused: a redirect from a public address led to the "
                f"internal address {exc.address} (loopback, private or link-local)",
            ) from exc
        except (httpx.HTTPError, httpx.InvalidURL, OSError) as exc:
            raise self._transport_error(request, url, exc) from exc

    async def _conclude(
        self,
        request: FetchRequest,
        response: httpx.Response,
        url: httpx.URL,
        key: str,
        started: float,
        moved: httpx.URL | None,
    ) -> FetchResult:
        status = response.status_code
        shown = redact_url(str(url))
        if not 200 <= status < 300:
            await _drain(response)
        if status in (429, 503):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after:
                self.blocks.block(key, retry_after)
            wait = f"retry after {retry_after:.0f} s" if retry_after is not None else "no Retry-After given"
            raise self._error(
                request,
                "rate_limited",
                f"{shown}: server is rate limiting or overloaded (HTTP {status}); {wait}",
                status=status,
                retry_after=retry_after,
            )
        if status == 410:
            raise self._error(request, "gone", f"{shown}: feed is gone (HTTP 410)", status=status)
        if status != 304 and not 200 <= status < 300:
            phrase = response.reason_phrase or "error"
            raise self._error(request, f"http_{status}", f"{shown}: HTTP {status} {phrase}", status=status)

        etag = response.headers.get("etag")
        last_modified = response.headers.get("last-modified")
        content_type = response.headers.get("content-type")

        def result(kind: Literal["ok", "not_modified"], body: bytes, body_hash: str | None) -> FetchResult:
            return FetchResult(
                request=request,
                status=kind,
                http_status=status,
                url=str(url),
                permanent_redirect=str(moved) if moved is not None else None,
                body=body,
                content_type=content_type,
                etag=etag,
                last_modified=last_modified,
                body_hash=body_hash,
                elapsed=self.clock() - started,
            )

        if status == 304:
            etag = etag or request.etag
            last_modified = last_modified or request.last_modified
            return result("not_modified", b"", None)
        if request.etag and etag and _same_tag(etag, request.etag):
            await _drain(response)
            return result("not_modified", b"", None)  # a server that ignores If-None-Match
        body = await self._read_body(request, response, shown)
        digest = hashlib.sha256(body).hexdigest()
        if request.body_hash and digest == request.body_hash:
            return result("not_modified", b"", digest)
        return result("ok", body, digest)

    async def _read_body(self, request: FetchRequest, response: httpx.Response, shown: str) -> bytes:
        limit = self.settings.max_bytes
        codings = [
            c.strip().lower()
            for c in response.headers.get("content-encoding", "").split(",")
            if c.strip() and c.strip().lower() != "identity"
        ]
        unknown = [c for c in codings if c not in ("gzip", "x-gzip", "deflate")]
        if unknown:
            raise self._error(
                request, "decoding", f"{shown}: unsupported Content-Encoding {', '.join(unknown)}"
            )
        declared = response.headers.get("content-length", "")
        if not codings and declared.isdigit() and int(declared) > limit:
            raise self._error(
                request,
                "too_large",
                f"{shown}: body of {int(declared):,} bytes exceeds the {limit:,}-byte limit",
            )
        chain = [_Inflater(c) for c in reversed(codings)]
        parts: list[bytes] = []
        total = 0
        try:
            async for raw in response.aiter_raw():
                for piece in _decode(chain, raw):
                    total += len(piece)
                    if total > limit:
                        raise self._error(
                            request,
                            "too_large",
                            f"{shown}: body exceeds the {limit:,}-byte limit (counted after decompression)",
                        )
                    parts.append(piece)
            for inflater in chain:
                inflater.finish()
        except zlib.error as exc:
            raise self._error(
                request, "decoding", f"{shown}: corrupt {'+'.join(codings)} body ({exc})"
            ) from exc
        return b"".join(parts)

    # -- helpers

    def _host_slot(self, key: str) -> asyncio.Semaphore:
        slot = self.host_slots.get(key)
        if slot is None:
            slot = self.host_slots[key] = asyncio.Semaphore(self.settings.per_host)
        return slot

    def _raise_if_blocked(self, request: FetchRequest, key: str, url: httpx.URL) -> None:
        until = self.blocks.until(key)
        if until is None:
            return
        remaining = max(until - self.clock(), 0.0)
        raise self._error(
            request,
            "rate_limited",
            f"{redact_url(str(url))}: host {url.host} asked us to wait; "
            f"{remaining:.0f} s left (not contacted)",
            retry_after=remaining,
            deferred=True,
        )

    def _parse_url(self, request: FetchRequest) -> httpx.URL:
        raw = request.url
        why = ""
        try:
            url = httpx.URL(raw)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            why = _scrub(str(exc), raw)
            url = None
        if url is not None:
            if url.scheme not in ("http", "https"):
                why = "only http and https are supported"
            elif not url.host:
                why = "no host"
            elif _BAD_HOST.search(url.host):
                why = "malformed host name"
            elif url.port is not None and not 0 < url.port < 65536:
                why = f"port {url.port} out of range"
            else:
                return url
        raise self._error(request, "invalid_url", f"invalid feed URL {redact_url(str(raw))!r}: {why}")

    def _next_url(
        self,
        request: FetchRequest,
        current: httpx.URL,
        location: str,
        origin: tuple[str, str, int],
        credentials: tuple[str, str] | None,
    ) -> httpx.URL:
        try:
            nxt = current.join(location.strip())
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise self._error(
                request,
                "invalid_url",
                f"{redact_url(str(current))}: redirect to an invalid URL ({_scrub(str(exc), location)})",
            ) from exc
        if nxt.scheme not in ("http", "https") or not nxt.host:
            raise self._error(
                request,
                "invalid_url",
                f"{redact_url(str(current))}: redirect to {redact_url(location)!r} refused",
            )
        # Credentials from the feed URL follow same-origin hops only (never to another host).
        if credentials and _origin(nxt) == origin and not (nxt.username or nxt.password):
            nxt = nxt.copy_with(username=credentials[0], password=credentials[1])
        return nxt

    def _transport_error(self, request: FetchRequest, url: httpx.URL, exc: BaseException) -> FeedFetchError:
        shown = redact_url(str(url))
        if isinstance(exc, httpx.TimeoutException):
            phase = {
                httpx.ConnectTimeout: "connect",
                httpx.ReadTimeout: "read",
                httpx.WriteTimeout: "write",
                httpx.PoolTimeout: "pool",
            }.get(type(exc), "network")
            return self._error(
                request, "timeout", f"{shown}: no answer within {self.settings.timeout:g} s ({phase} timeout)"
            )
        detail = _scrub(str(exc) or type(exc).__name__, request.url)
        detail = _scrub(detail, str(url))
        if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
            return self._error(request, "invalid_url", f"invalid feed URL {shown!r}: {detail}")
        tls = _ssl_error(exc)
        if tls is not None:
            reason = getattr(tls, "reason", None) or getattr(tls, "verify_message", None) or str(tls)
            return self._error(request, "tls", f"{shown}: TLS error: {_scrub(str(reason), request.url)}")
        return self._error(request, "connection", f"{shown}: connection failed: {detail}")

    @staticmethod
    def _error(
        request: FetchRequest,
        reason: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        deferred: bool = False,
    ) -> FeedFetchError:
        return FeedFetchError(
            message, request=request, reason=reason, status=status, retry_after=retry_after, deferred=deferred
        )

    async def shutdown(self) -> None:
        """Cancel whatever is still running on the loop, then close the client."""
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks() if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await self.client.aclose()


async def _drain(response: httpx.Response) -> None:
    """Read a small unwanted body (304, redirect, error page) to its end.

    httpcore returns a connection to the pool only when the response was read to the
    end; closing it unread costs a new TCP connection for the next request, which was
    most of the time of a cycle where every feed answers 304. Big or unsized bodies
    are not worth reading: the connection is simply closed.
    """
    declared = response.headers.get("content-length")
    bodiless = response.status_code in (204, 304)
    if not bodiless and (declared is None or not declared.isdigit() or int(declared) > _STEP):
        return
    try:
        async for _ in response.aiter_raw():
            pass
    except httpx.HTTPError:
        pass  # the answer we already have matters more than its leftovers


def _cancelled(request: FetchRequest) -> FeedFetchError:
    return FeedFetchError(
        f"{redact_url(request.url)}: fetch cancelled (fetcher closed)", request=request, reason="cancelled"
    )


# ------------------------------------------------------------------------ loop thread


class _LoopThread:
    """A private asyncio loop running in a daemon thread, with an idempotent stop."""

    _count = 0
    _count_lock = threading.Lock()

    def __init__(self) -> None:
        with _LoopThread._count_lock:
            _LoopThread._count += 1
            number = _LoopThread._count
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name=f"news-monitor-fetch-{number}", daemon=True)
        self._stopped = False
        self._stop_lock = threading.Lock()
        self.thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            try:
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            finally:
                self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, _T]) -> concurrent.futures.Future[_T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self.thread

    def stop(self, cleanup: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        if self.in_loop_thread():  # cannot wait for ourselves: best effort
            self.loop.stop()
            return
        if cleanup is not None and self.loop.is_running():
            try:
                self.submit(cleanup()).result(timeout=10)
            except Exception:  # closing must never raise; the loop dies with the thread anyway
                log.warning("fetcher shutdown did not complete cleanly", exc_info=True)
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def _shutdown(runner: _LoopThread, engine: _Engine) -> None:
    runner.stop(engine.shutdown)


# ---------------------------------------------------------------------------- fetcher


class Fetcher:
    """Fetches feeds concurrently; thread-safe; :meth:`close` (or ``with``) when done.

    The event-loop thread starts on first use, so an unused Fetcher costs nothing; a
    Fetcher that is garbage-collected without ``close()`` is shut down by a finalizer.
    """

    def __init__(self, settings: FetchSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._blocks = _HostBlocks(clock)
        self._lock = threading.Lock()
        self._closed = False
        self._runner: _LoopThread | None = None
        self._engine: _Engine | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> tuple[_LoopThread, _Engine]:
        with self._lock:
            if self._closed:
                raise RuntimeError("Fetcher is closed")
            if self._runner is None or self._engine is None:
                runner = _LoopThread()
                try:
                    engine = runner.submit(self._make_engine()).result()
                except BaseException:
                    runner.stop()
                    raise
                self._runner, self._engine = runner, engine
                self._finalizer = weakref.finalize(self, _shutdown, runner, engine)
            if self._runner.in_loop_thread():
                raise RuntimeError("Fetcher methods cannot be called from its own event loop")
            return self._runner, self._engine

    async def _make_engine(self) -> _Engine:
        return _Engine(self.settings, self._clock, self._blocks)

    def fetch_many(
        self, requests: Iterable[FetchRequest], *, window: int | None = None
    ) -> Iterator[FetchResult | FeedFetchError]:
        """Fetch all ``requests``; yield one outcome per request as each completes.

        A feed's failure is yielded as a :class:`FeedFetchError` (with ``.request``),
        never raised. Closing the generator early cancels what is still running.

        ``window`` bounds memory when the consumer is slower than the network (a
        parser behind a fast server): at most ``window`` requests are running or done
        but not yet taken from this iterator, so at most that many bodies wait in
        memory; the next request starts when the consumer asks for the next outcome.
        None: no bound (every request starts at once, within the concurrency caps).
        """
        batch = list(requests)
        if not batch:
            return
        if window is not None and window < 1:
            raise ValueError(f"window must be at least 1, got {window!r}")
        runner, engine = self._start()
        outcomes: queue.SimpleQueue[FetchResult | FeedFetchError] = queue.SimpleQueue()
        gate = asyncio.Semaphore(window) if window is not None else None
        future = runner.submit(engine.run_batch(batch, outcomes.put, gate))
        pending: dict[int, list[FetchRequest]] = {}
        for request in batch:
            pending.setdefault(id(request), []).append(request)
        try:
            for _ in batch:
                outcome = self._next_outcome(outcomes, future, runner)
                if outcome is None:
                    break
                pending[id(outcome.request)].pop()
                if gate is not None:
                    try:
                        runner.loop.call_soon_threadsafe(gate.release)
                    except RuntimeError:  # the loop was closed meanwhile (close())
                        pass
                yield outcome
            # The batch ended without an outcome for some requests (cancelled before they
            # ever ran, when the Fetcher was closed): they still get one each.
            for left in pending.values():
                for request in left:
                    yield _cancelled(request)
        finally:
            future.cancel()

    @staticmethod
    def _next_outcome(
        outcomes: queue.SimpleQueue[FetchResult | FeedFetchError],
        future: concurrent.futures.Future[None],
        runner: _LoopThread,
    ) -> FetchResult | FeedFetchError | None:
        """The next outcome, or None once the batch is over and nothing more will come."""
        while True:
            try:
                return outcomes.get(timeout=0.5)
            except queue.Empty:
                # a batch submitted while close() stopped the loop would never finish
                if not future.done() and runner.thread.is_alive():
                    continue
            try:  # the batch is over: whatever it put is already queued
                return outcomes.get_nowait()
            except queue.Empty:
                if not future.cancelled() and future.exception() is not None:
                    log.error("fetch batch failed", exc_info=future.exception())
                return None

    def fetch_stream(
        self, source: Callable[[], Sequence[FetchRequest]], *, window: int
    ) -> Iterator[FetchResult | FeedFetchError]:
        """Fetch the requests that ``source`` hands out, group after group, until it
        hands out an empty group; yield one outcome per request as each completes.

        Like :meth:`fetch_many` with ``window``, at most ``window`` requests are running
        or done but not yet taken from this iterator; ``source`` is asked for more only
        when all it gave before are started (see :meth:`_Engine.run_stream`), so the
        poll cycle claims feeds from the database as it has room for them. Closing the
        generator early cancels what is running (the requests ``source`` gave that never
        started get no outcome: their caller knows them).
        """
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window!r}")
        runner, engine = self._start()
        outcomes: queue.SimpleQueue[FetchResult | FeedFetchError] = queue.SimpleQueue()
        gate = asyncio.Semaphore(window)
        future = runner.submit(engine.run_stream(source, outcomes.put, gate))
        try:
            while (outcome := self._next_outcome(outcomes, future, runner)) is not None:
                try:
                    runner.loop.call_soon_threadsafe(gate.release)
                except RuntimeError:  # the loop was closed meanwhile (close())
                    pass
                yield outcome
        finally:
            future.cancel()

    def fetch(self, request: FetchRequest) -> FetchResult:
        """Fetch one feed; raises :class:`FeedFetchError` on failure."""
        runner, engine = self._start()
        future = runner.submit(engine.fetch(request))
        try:
            while True:
                try:
                    return future.result(timeout=0.5)
                except concurrent.futures.TimeoutError:
                    if not runner.thread.is_alive():  # closed meanwhile
                        raise _cancelled(request) from None
        except concurrent.futures.CancelledError:
            raise _cancelled(request) from None
        finally:
            future.cancel()

    def close(self) -> None:
        """Cancel running fetches (they end as ``cancelled``), close connections, stop the loop."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            finalizer = self._finalizer
        if finalizer is not None:
            finalizer()
