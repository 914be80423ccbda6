"""The demo's news outlets: bundled sample feeds served on 127.0.0.1, gaining stories poll by poll.

Each file of ``feeds/`` is an RSS 2.0 document whose items carry two demo-only
elements: ``<demo:wave>`` (on which request of that feed the item appears: 0 on the
first, 1 from the second on, ...) and ``<demo:ago>`` (how many minutes before its wave
was first served it was published). :func:`render` removes both and writes each
item's ``pubDate``, so the stories are always fresh and a wave's items keep the same
dates on every later request (a poll that finds nothing new sees the same body).

:class:`FeedServer` is a real HTTP server on a random loopback port (the daemon fetches
from it like from any outlet: conditional GET, ETag, 304). It counts the requests of
each feed and calls ``on_wave(wave, feeds, stories)`` once, the first time a wave is
served, so the demo can say on the console what just happened.
"""

from __future__ import annotations

import email.utils
import hashlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from types import TracebackType

_ITEM_RE = re.compile(r"<item>.*?</item>\s*", re.DOTALL)
_WAVE_RE = re.compile(r"\s*<demo:wave>(\d+)</demo:wave>")
_AGO_RE = re.compile(r"\s*<demo:ago>(\d+)</demo:ago>")

OnWave = Callable[[int, int, int], object]  # (wave, feeds that have it, stories in it)


@dataclass(frozen=True, slots=True)
class DemoFeed:
    """One bundled sample feed: its name (the file's stem), language and text."""

    name: str
    language: str
    text: str

    @property
    def waves(self) -> tuple[int, ...]:
        """The wave of each item, in the file's order."""
        return tuple(int(m.group(1)) for m in _WAVE_RE.finditer(self.text))


def bundled_feeds() -> tuple[DemoFeed, ...]:
    """The sample feeds shipped in ``monitor/app/demo/feeds/``, by name."""
    out = []
    for entry in sorted(files("monitor.app.demo").joinpath("feeds").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".xml"):
            text = entry.read_text(encoding="utf-8")
            lang = re.search(r"<language>([A-Za-z]{2})", text)
            out.append(DemoFeed(entry.name.removesuffix(".xml"), lang.group(1).lower() if lang else "en", text))
    return tuple(out)


def render(feed: DemoFeed, wave: int, released: dict[int, float]) -> bytes:
    """The feed as served at ``wave``: the items of waves up to ``wave``, dated from
    ``released`` (wave -> Unix time it was first served), newest first. Pure."""
    kept: list[tuple[float, str]] = []
    for m in _ITEM_RE.finditer(feed.text):
        item = m.group(0)
        wave_m, ago_m = _WAVE_RE.search(item), _AGO_RE.search(item)
        item_wave = int(wave_m.group(1)) if wave_m else 0
        if item_wave > wave:
            continue
        when = released.get(item_wave, time.time()) - 60 * int(ago_m.group(1) if ago_m else 0)
        item = _AGO_RE.sub("", _WAVE_RE.sub("", item))
        date = email.utils.formatdate(when, usegmt=True)
        item = item.replace("</item>", f"<pubDate>{date}</pubDate>\n</item>", 1)
        kept.append((when, item.rstrip() + "\n"))
    matches = list(_ITEM_RE.finditer(feed.text))
    if not matches:
        return feed.text.encode("utf-8")
    head, tail = feed.text[: matches[0].start()], feed.text[matches[-1].end() :]
    body = "".join(item for _, item in sorted(kept, key=lambda k: -k[0]))
    return (head + body + tail).encode("utf-8")


class FeedServer:
    """The sample feeds on ``http://127.0.0.1:PORT/NAME.xml``; a context manager."""

    def __init__(self, feeds: tuple[DemoFeed, ...] | None = None, *, on_wave: OnWave | None = None) -> None:
        self.feeds = {f.name: f for f in (bundled_feeds() if feeds is None else feeds)}
        self.last_wave = max((w for f in self.feeds.values() for w in f.waves), default=0)
        self._on_wave = on_wave
        self._lock = threading.Lock()
        self._requests: dict[str, int] = {}
        self._released: dict[int, float] = {}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread: threading.Thread | None = None

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{name}.xml"

    def body(self, name: str) -> bytes | None:
        """The next answer for feed ``name`` (one more request counted), or None."""
        feed = self.feeds.get(name)
        if feed is None:
            return None
        announce: tuple[int, int, int] | None = None
        with self._lock:
            wave = min(self._requests.get(name, 0), self.last_wave)
            self._requests[name] = self._requests.get(name, 0) + 1
            if wave not in self._released:
                self._released[wave] = time.time()
                carrying = [f for f in self.feeds.values() if wave in f.waves]
                announce = (wave, len(carrying), sum(f.waves.count(wave) for f in carrying))
            released = dict(self._released)
        if announce is not None and self._on_wave is not None:
            self._on_wave(*announce)
        return render(feed, wave, released)

    def start(self) -> FeedServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="demo-feeds", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _handler(server: FeedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
            name = self.path.split("?", 1)[0].lstrip("/").removesuffix(".xml")
            body = server.body(name)
            if body is None:
                self._answer(404, b"no such feed\n", "text/plain; charset=utf-8")
                return
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            if self.headers.get("If-None-Match") == etag:
                self._answer(304, b"", None, etag)
                return
            self._answer(200, body, "application/rss+xml; charset=utf-8", etag)

        def _answer(self, status: int, body: bytes, ctype: str | None, etag: str | None = None) -> None:
            self.send_response(status)
            if ctype:
                self.send_header("Content-Type", ctype)
            if etag:
                self.send_header("ETag", etag)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
            """Requests are not logged: the demo's console tells the story instead."""

    return Handler


__all__ = ["DemoFeed", "FeedServer", "OnWave", "bundled_feeds", "render"]
