"""A real HTTP server on 127.0.0.1 for the whole test suite.

Tests never touch the network, yet the fetcher, the pipeline and the notifiers must be
exercised against a *real* socket: a mock transport cannot trickle, hang, reset a
connection or send a gzip bomb, and those are exactly the cases that hang daemons in
the field. So this module runs a threaded stdlib ``socketserver`` speaking HTTP/1.1 in a daemon thread on
an ephemeral port and lets each test mount *routes*, each with a *behaviour*::

    with HTTPTestServer() as server:
        url = server.route("/feed.xml", Static(body=rss, etag='"v1"'))
        server.route("/moved", Redirect("/feed.xml", status=301))
        server.route("/slow", Trickle(body=rss, interval=0.2))
        ...
        assert server.requests("/feed.xml")[0].header("if-none-match") == '"v1"'

Behaviours (all dataclasses; pass a new one to :meth:`HTTPTestServer.route` to change a
route between two polls):

``Static``      a body with content type, optional gzip, ETag / Last-Modified and correct
                304s (``conditional=False``: a server that ignores conditional requests
                and always answers 200 with the same validators); ``delay`` holds each
                answer (to observe concurrency).
``Status``      any status with headers and a small body (500, 404, 410, 429 + Retry-After).
``Redirect``    301/302/303/307/308 to another route or any URL (two routes pointing at
                each other make a loop).
``Hang``        accepts, reads the request and never answers.
``Trickle``     headers at once, then the body one byte per ``interval``.
``Huge``        a body of ``size`` bytes generated on the fly (never held in memory),
                with a Content-Length or chunked.
``GzipBomb``    a small gzip body that expands to ``size`` zero bytes.
``Raw``         arbitrary bytes written straight to the socket, then the connection closes.
``Sequence``    one behaviour per request in turn (the last one repeats): 429 then 200.
``Dynamic``     a function of the request that returns the behaviour to use.

Every request is logged (:class:`LoggedRequest`: method, path, headers, body, host, time)
and the server counts requests in flight per host name, so a test can check a
concurrency cap (use host names ``127.0.0.1`` and ``localhost`` for two "hosts":
``server.url(path, host="localhost")``). :func:`closed_port` gives a port where nothing
listens (connection refused).

Stopping never hangs: handlers wait on the server's stop event instead of sleeping, and
every open connection is shut down, so hanging and trickling handlers end at once.

The pytest fixtures ``http_server``, ``make_http_server`` and ``refused_url`` at the end
can be imported into a ``conftest.py``.
"""

from __future__ import annotations

import email.utils
import functools
import gzip
import select
import socket
import socketserver
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol

import pytest

__all__ = [
    "Behaviour",
    "Dynamic",
    "Exchange",
    "GzipBomb",
    "HTTPTestServer",
    "Hang",
    "Huge",
    "LoggedRequest",
    "Raw",
    "Redirect",
    "Sequence",
    "Static",
    "Status",
    "Trickle",
    "closed_port",
    "http_date",
    "http_server",
    "make_http_server",
    "refused_url",
]

RSS_TYPE = "application/rss+xml; charset=utf-8"
_CHUNK = 64 * 1024
_MAX_LINE = 65536


def http_date(when: float | None = None) -> str:
    """An RFC 9110 date (``Last-Modified``, ``Retry-After``) for a Unix time (default: now)."""
    return email.utils.formatdate(time.time() if when is None else when, usegmt=True)


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class LoggedRequest:
    """One request as the server saw it; ``headers`` keys are lower-case."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    host: str
    time: float  # time.monotonic() when the request line had been read

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (any case), or None."""
        return self.headers.get(name.lower())


class Exchange:
    """What a behaviour can do with one request: answer it, stream, wait, or hang up."""

    def __init__(self, handler: _Handler, request: LoggedRequest, stop: threading.Event) -> None:
        self._handler = handler
        self.request = request
        self._stop = stop

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the server stops first; True if it is still running."""
        return not self._stop.wait(seconds)

    def head(self, status: int, headers: Mapping[str, str] | list[tuple[str, str]] | None = None) -> bytes:
        """The status line and header block, as bytes (for behaviours that stream)."""
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = "Unknown"
        items = headers.items() if isinstance(headers, Mapping) else headers or []
        lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in items]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send(
        self,
        status: int,
        headers: Mapping[str, str] | list[tuple[str, str]] | None = None,
        body: bytes = b"",
        *,
        length: bool = True,
    ) -> None:
        """Answer in one write (fast, and no Nagle stall); adds Content-Length if ``length``."""
        items = list(headers.items() if isinstance(headers, Mapping) else headers or [])
        if length and not (100 <= status < 200 or status in (204, 304)):
            items.append(("Content-Length", str(len(body))))
        self.write(self.head(status, items) + body)

    def write(self, data: bytes) -> None:
        self._handler.wfile.write(data)

    def client_gone(self) -> bool:
        """True once the client has closed its end (so a hanging handler can give up)."""
        sock = self._handler.connection
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def close_connection(self) -> None:
        """Close the connection once this behaviour returns (no keep-alive)."""
        self._handler.close_connection = True


class Behaviour(Protocol):
    """How a route answers. Implementations must end promptly once ``ex.stopping``."""

    def respond(self, ex: Exchange) -> None: ...


# ------------------------------------------------------------------------- behaviours


def _etag_matches(if_none_match: str, etag: str) -> bool:
    """Weak comparison, as RFC 9110 prescribes for If-None-Match."""
    if if_none_match.strip() == "*":
        return True
    mine = etag.strip().removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == mine for tag in if_none_match.split(","))


def _not_modified_since(if_modified_since: str, last_modified: str) -> bool:
    try:
        since = email.utils.parsedate_to_datetime(if_modified_since)
        modified = email.utils.parsedate_to_datetime(last_modified)
    except (TypeError, ValueError):
        return False
    return modified <= since


@dataclass(slots=True)
class Static:
    """A document with validators; answers 304 to a matching conditional request.

    ``gzip=True`` compresses the body whatever the client's Accept-Encoding (like some
    misconfigured servers), so a test knows the bytes on the wire were gzip.
    ``conditional=False`` ignores If-None-Match / If-Modified-Since: always 200.
    """

    body: bytes = b""
    content_type: str | None = RSS_TYPE
    status: int = 200
    etag: str | None = None
    last_modified: str | None = None
    conditional: bool = True
    gzip: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def respond(self, ex: Exchange) -> None:
        if self.delay and not ex.wait(self.delay):
            return
        validators = {}
        if self.etag is not None:
            validators["ETag"] = self.etag
        if self.last_modified is not None:
            validators["Last-Modified"] = self.last_modified
        if self.conditional and self.status == 200 and self._unchanged(ex.request):
            ex.send(304, {**validators, **self.headers})
            return
        headers = dict(validators)
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        body = self.body
        if self.gzip:
            body = gzip.compress(body, mtime=0)
            headers["Content-Encoding"] = "gzip"
        headers.update(self.headers)
        ex.send(self.status, headers, body)

    def _unchanged(self, request: LoggedRequest) -> bool:
        inm = request.header("if-none-match")
        if inm is not None:
            return self.etag is not None and _etag_matches(inm, self.etag)
        ims = request.header("if-modified-since")
        return (
            ims is not None
            and self.last_modified is not None
            and _not_modified_since(ims, self.last_modified)
        )


@dataclass(frozen=True, slots=True)
class Status:
    """Any status with headers, e.g. ``Status(429, {"Retry-After": "120"})``."""

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"

    def respond(self, ex: Exchange) -> None:
        ex.send(self.status, {"Content-Type": self.content_type, **self.headers}, self.body)


@dataclass(frozen=True, slots=True)
class Redirect:
    """A redirect; ``location`` is a route path (``/b``) or any absolute URL."""

    location: str
    status: int = 302

    def respond(self, ex: Exchange) -> None:
        ex.send(self.status, {"Location": self.location, "Content-Type": "text/plain"}, b"moved")


@dataclass(frozen=True, slots=True)
class Hang:
    """Read the request, then say nothing for ``seconds`` (default: until the server stops).

    The handler ends as soon as the client gives up, so a benchmark of many hanging
    feeds does not pile up server threads.
    """

    seconds: float | None = None

    def respond(self, ex: Exchange) -> None:
        end = time.monotonic() + (self.seconds if self.seconds is not None else 1e9)
        while (left := end - time.monotonic()) > 0 and ex.wait(min(left, 0.05)):
            if ex.client_gone():
                break
        ex.close_connection()


@dataclass(frozen=True, slots=True)
class Trickle:
    """Headers at once (with the full Content-Length), then one body byte per ``interval``.

    Each byte arrives well within any per-read timeout, so only an overall deadline
    stops the download: the classic way a slow server hangs a naive poller.
    """

    body: bytes = b"<rss>" + b" " * 1000 + b"</rss>"
    interval: float = 1.0
    content_type: str = RSS_TYPE

    def respond(self, ex: Exchange) -> None:
        ex.write(ex.head(200, {"Content-Type": self.content_type, "Content-Length": str(len(self.body))}))
        for i in range(len(self.body)):
            ex.write(self.body[i : i + 1])
            if not ex.wait(self.interval):
                ex.close_connection()
                return


@dataclass(frozen=True, slots=True)
class Huge:
    """``size`` bytes of filler generated chunk by chunk; chunked when ``content_length=False``."""

    size: int = 100_000_000
    content_length: bool = True
    content_type: str = RSS_TYPE

    def respond(self, ex: Exchange) -> None:
        chunk = b"<!-- filler -->\n" * (_CHUNK // 16)
        headers = {"Content-Type": self.content_type}
        if self.content_length:
            headers["Content-Length"] = str(self.size)
        else:
            headers["Transfer-Encoding"] = "chunked"
        ex.write(ex.head(200, headers))
        left = self.size
        while left > 0 and not ex.stopping:
            piece = chunk[: min(left, len(chunk))]
            ex.write(piece if self.content_length else b"%x\r\n%s\r\n" % (len(piece), piece))
            left -= len(piece)
        if not self.content_length and not ex.stopping:
            ex.write(b"0\r\n\r\n")


@functools.lru_cache(maxsize=4)
def _gzip_of_zeros(size: int) -> bytes:
    """Gzip of ``size`` zero bytes, built in 1 MB steps so it never holds ``size`` bytes."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    parts = []
    left = size
    while left > 0:
        parts.append(packer.compress(zeros[: min(left, len(zeros))]))
        left -= len(zeros)
    parts.append(packer.flush())
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class GzipBomb:
    """``Content-Encoding: gzip`` body that inflates to ``size`` zeros (about 1000:1).

    The payload is built when the behaviour is created (about 0.3 s per 100 MB, cached
    per size), so the first request is not slowed down by it.
    """

    size: int = 1_000_000_000
    content_type: str = RSS_TYPE

    def __post_init__(self) -> None:
        _gzip_of_zeros(self.size)  # build (and cache) now, not while a client waits

    def respond(self, ex: Exchange) -> None:
        payload = _gzip_of_zeros(self.size)
        ex.send(200, {"Content-Type": self.content_type, "Content-Encoding": "gzip"}, payload)


@dataclass(frozen=True, slots=True)
class Raw:
    """Exactly these bytes on the socket (a broken status line, a truncated body...), then close."""

    data: bytes

    def respond(self, ex: Exchange) -> None:
        ex.write(self.data)
        ex.close_connection()


class Sequence:
    """One behaviour per request, in order; the last one answers every later request."""

    def __init__(self, *behaviours: Behaviour) -> None:
        if not behaviours:
            raise ValueError("Sequence needs at least one behaviour")
        self._behaviours = list(behaviours)
        self._next = 0
        self._lock = threading.Lock()

    def respond(self, ex: Exchange) -> None:
        with self._lock:
            behaviour = self._behaviours[min(self._next, len(self._behaviours) - 1)]
            self._next += 1
        behaviour.respond(ex)


@dataclass(frozen=True, slots=True)
class Dynamic:
    """Pick the behaviour from the request (e.g. by a header or the request body)."""

    choose: Callable[[LoggedRequest], Behaviour]

    def respond(self, ex: Exchange) -> None:
        self.choose(ex.request).respond(ex)


# ----------------------------------------------------------------------------- server


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024  # the default of 5 makes bursts of connects wait for SYN retries
    owner: HTTPTestServer

    def process_request(self, request: Any, client_address: Any) -> None:
        self.owner._track(request, add=True)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        self.owner._track(request, add=False)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Print a behaviour's own bug (pytest shows it with the failing test), but not
        client hang-ups, which are normal here (a fetcher aborts huge bodies)."""
        if not isinstance(sys.exc_info()[1], OSError):
            traceback.print_exc()


class _Handler(socketserver.StreamRequestHandler):
    """HTTP/1.1 with keep-alive, parsed by hand.

    ``http.server`` parses headers with the e-mail parser, which made the server, not
    the client, the bottleneck of the 1,000-feed benchmark; this loop is ~3x cheaper.
    """

    disable_nagle_algorithm = True
    server: _Server
    close_connection: bool

    def handle(self) -> None:
        self.close_connection = False
        while not self.close_connection and not self.server.owner._stop.is_set():
            try:
                if not self._one_request():
                    return
            except OSError:  # the client went away: BrokenPipe, ConnectionReset...
                return

    def _one_request(self) -> bool:
        line = self.rfile.readline(_MAX_LINE)
        if not line:
            return False
        parts = line.decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self.wfile.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return False
        method, path, version = parts
        headers: dict[str, str] = {}
        while True:
            raw = self.rfile.readline(_MAX_LINE)
            if raw in (b"\r\n", b"\n", b""):
                break
            name, _, value = raw.decode("latin-1").partition(":")
            key = name.strip().lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            version == "HTTP/1.0" and connection != "keep-alive"
        )
        body = self._read_body(headers)
        owner = self.server.owner
        host = headers.get("host", "").rsplit(":", 1)[0]
        request = LoggedRequest(method, path, headers, body, host, time.monotonic())
        owner._record(request)
        behaviour = owner._lookup(path)
        owner._enter(host)
        try:
            behaviour.respond(Exchange(self, request, owner._stop))
        finally:
            owner._leave(host)
        return True

    def _read_body(self, headers: Mapping[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline(_MAX_LINE).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline(_MAX_LINE)
        length = int(headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""


class HTTPTestServer:
    """A threaded HTTP/1.1 server on an ephemeral port; a context manager.

    ``route(path, behaviour)`` mounts or replaces a route and returns its URL. A path
    with a query string is matched first as a whole, then by its path alone; unknown
    paths get a 404.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._bind = (host, port)
        self._routes: dict[str, Behaviour] = {}
        self._log: list[LoggedRequest] = []
        self._in_flight: dict[str, int] = {}
        self._max_in_flight: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> HTTPTestServer:
        if self._httpd is not None:
            return self
        httpd = _Server(self._bind, _Handler)
        httpd.owner = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, name="test-http-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut every open connection (ends hanging handlers too)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stop.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
            self._connections.clear()
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> HTTPTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # addresses
    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("server not started")
        return int(self._httpd.server_address[1])

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        """Absolute URL of ``path``; ``host="localhost"`` reaches the same server under a 2nd name."""
        return f"http://{host}:{self.port}{path}"

    # routes
    def route(self, path: str, behaviour: Behaviour, host: str = "127.0.0.1") -> str:
        """Mount (or replace) ``behaviour`` at ``path``; returns the URL for ``host``."""
        with self._lock:
            self._routes[path] = behaviour
        return self.url(path, host)

    def remove(self, path: str) -> None:
        with self._lock:
            self._routes.pop(path, None)

    def _lookup(self, path: str) -> Behaviour:
        with self._lock:
            found = self._routes.get(path) or self._routes.get(path.split("?", 1)[0])
        return found if found is not None else Status(404, body=b"no such route")

    # request log and concurrency statistics
    def requests(self, path: str | None = None) -> list[LoggedRequest]:
        """Requests received so far, oldest first (only those to ``path`` if given)."""
        with self._lock:
            log = list(self._log)
        if path is None:
            return log
        return [r for r in log if r.path == path or r.path.split("?", 1)[0] == path]

    def clear_log(self) -> None:
        with self._lock:
            self._log.clear()
            self._max_in_flight.clear()

    def max_in_flight(self, host: str | None = None) -> int:
        """Most requests being answered at once, to ``host`` (a Host header name) or in total."""
        with self._lock:
            return self._max_in_flight.get(host if host is not None else "*", 0)

    def _record(self, request: LoggedRequest) -> None:
        with self._lock:
            self._log.append(request)

    def _enter(self, host: str) -> None:
        with self._lock:
            for key in (host, "*"):
                now = self._in_flight.get(key, 0) + 1
                self._in_flight[key] = now
                self._max_in_flight[key] = max(now, self._max_in_flight.get(key, 0))

    def _leave(self, host: str) -> None:
        with self._lock:
            for key in (host, "*"):
                self._in_flight[key] -= 1

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)


@contextmanager
def closed_port() -> Iterator[int]:
    """A local port where nothing listens: connecting is refused at once.

    The socket stays bound (but not listening) while the context lasts, so no other
    test can grab the port in between.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture
def http_server() -> Iterator[HTTPTestServer]:
    """A started :class:`HTTPTestServer`, stopped after the test."""
    with HTTPTestServer() as server:
        yield server


@pytest.fixture
def make_http_server() -> Iterator[Callable[[], HTTPTestServer]]:
    """A factory of started servers (for tests that need several); all stopped afterwards."""
    servers: list[HTTPTestServer] = []

    def make() -> HTTPTestServer:
        server = HTTPTestServer().start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """``http://127.0.0.1:<port>/feed.xml`` where the connection is refused."""
    with closed_port() as port:
        yield f"http://127.0.0.1:{port}/feed.xml"
