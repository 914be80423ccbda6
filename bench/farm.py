"""A farm of feeds for the polling benchmark, built from the real fixture feeds.

:func:`build_farm` turns the news fixtures of ``tests/fixtures/`` into ``n`` feeds of
about 25 entries each: feed ``i`` takes the items of fixture ``i % len(fixtures)``
(repeated when the fixture has fewer), and every item's link, GUID, Atom id,
FeedBurner original link and RDF ``about`` gets a marker unique to the feed and the
item, so no two items of the farm are the same story (a benchmark whose stories dedupe
into each other measures nothing). The bytes stay in the fixture's own encoding.

:func:`hostile_routes` is the robustness matrix of tests/test_robustness.py as server behaviours (the
same rows ``tests/test_robustness.py`` runs one by one), for a whole hostile cycle.

``python bench/farm.py serve --feeds 1000`` serves the farm (with ETag, Last-Modified
and 304s) from :class:`tests.support.httpserver.HTTPTestServer` and prints its port on
stdout (a JSON line); ``--hostile`` adds the hostile rows, each on its own 127.0.0.x.
The benchmark runs it in its own process, so the server never competes with the
measured process for the GIL.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FIXTURES = ROOT / "tests" / "fixtures"
LAST_MODIFIED = "Wed, 26 Nov 2025 10:00:00 GMT"
# Tiny synthetic parser samples (0-3 entries each) and broken ones make no news feed.
SKIP = ("feedparser-", "node-feedparser-")

_ITEM = re.compile(rb"<(item|entry)\b[^>]*?(?<!/)>.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
_URL_ELEMENT = re.compile(
    rb"(<(link|guid|id|feedburner:origLink)\b[^>]*>\s*(?:<!\[CDATA\[)?\s*)([^<\]\s]+)", re.IGNORECASE
)
_URL_ATTR = re.compile(rb"(<link\b[^>]*?\bhref=\"|\brdf:about=\")([^\"]+)", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FarmFeed:
    path: str
    body: bytes
    etag: str
    source: str  # the fixture it was made from


def _mark(value: bytes, marker: bytes) -> bytes:
    if value.lower().startswith((b"http://", b"https://")):
        sep = b"&amp;" if b"?" in value else b"?"
        return value + sep + b"nm=" + marker
    return value + b"-" + marker


def _unique_item(item: bytes, marker: bytes) -> bytes:
    item = _URL_ELEMENT.sub(lambda m: m.group(1) + _mark(m.group(3), marker), item)
    return _URL_ATTR.sub(lambda m: m.group(1) + _mark(m.group(2), marker), item)


def _split(doc: bytes) -> tuple[bytes, list[bytes], bytes] | None:
    items = list(_ITEM.finditer(doc))
    if len(items) < 3:
        return None
    head = doc[: items[0].start()]
    tail = doc[items[-1].end() :]
    # Whatever sits between items (RDF puts nothing there; a few feeds put comments)
    # is dropped: only the items are multiplied.
    return head, [m.group(0) for m in items], tail


def fixture_parts() -> list[tuple[str, bytes, list[bytes], bytes]]:
    """(name, head, items, tail) of every usable fixture, sorted by name."""
    out = []
    for path in sorted(FIXTURES.iterdir()):
        if path.suffix not in (".xml", ".rdf") or path.name.startswith(SKIP):
            continue
        parts = _split(path.read_bytes())
        if parts is not None:
            out.append((path.name, *parts))
    return out


def farm_paths(n: int) -> list[str]:
    """The URL paths of :func:`build_farm`'s feeds, without building them."""
    return [f"/feeds/{i}.xml" for i in range(n)]


def build_farm(n: int = 1000, entries: int = 25) -> list[FarmFeed]:
    """``n`` feeds of ``entries`` unique items each, deterministic for a given ``n``."""
    parts = fixture_parts()
    farm = []
    for i in range(n):
        name, head, items, tail = parts[i % len(parts)]
        chosen = [
            _unique_item(items[k % len(items)], b"f%dx%d" % (i, k)) for k in range(entries)
        ]
        body = head + b"\n".join(chosen) + tail
        farm.append(FarmFeed(f"/feeds/{i}.xml", body, f'"f{i}-v1"', name))
    return farm


# --------------------------------------------------------------------------- hostile


def dense_feed(size: int) -> bytes:
    """A valid RSS feed of ``size`` bytes made of tiny items: tens of thousands of
    entries, which feedparser parses at a few thousand a second."""
    item = b"<item><title>t %d</title><link>https://dense.example/%d</link><description>d</description></item>"
    head = b'<?xml version="1.0"?><rss version="2.0"><channel><title>dense</title><link>https://dense.example/</link>'
    parts = [head]
    total = len(head)
    i = 0
    while total < size - 40:
        piece = item % (i, i)
        parts.append(piece)
        total += len(piece)
        i += 1
    parts.append(b"</channel></rss>")
    return b"".join(parts)


def nested_feed(depth: int = 200_000) -> bytes:
    """One entry whose description nests ``depth`` elements (seconds of feedparser time)."""
    return (
        b'<?xml version="1.0"?><rss version="2.0"><channel><title>nested</title><item><title>deep</title>'
        b"<link>https://nested.example/1</link><description>"
        + b"<b>" * depth
        + b"</description></item></channel></rss>"
    )


def entity_bomb() -> bytes:
    """One 10 KB entity used 20,000 times: 200 MB of text if expanded."""
    return (
        b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY big "' + b"A" * 10_000 + b'">]>'
        b'<rss version="2.0"><channel><title>bomb</title><item><title>&big;</title><description>'
        + b"&big;" * 20_000
        + b"</description></item></channel></rss>"
    )


def hostile_routes() -> list[tuple[str, str, dict[str, Any]]]:
    """The hostile matrix: (path, expected reason, {path: behaviour} to mount together).

    Each row is served from its own loopback address (127.0.0.x) in :func:`serve`: on the
    Internet these are different sites, and one site's slow answers must not queue the
    others behind the per-host limit.
    """
    from tests.support.feeds import rss, seed_article
    from tests.support.httpserver import GzipBomb, Hang, Huge, Raw, Redirect, Static, Status, Trickle

    rng = random.Random(5)
    html = b"<!doctype html><html><body><h1>Welcome</h1></body></html>"
    return [
        ("/h/500.xml", "http_500", {"/h/500.xml": Status(500)}),
        ("/h/404.xml", "http_404", {"/h/404.xml": Status(404)}),
        ("/h/410.xml", "gone", {"/h/410.xml": Status(410)}),
        ("/h/hang.xml", "timeout", {"/h/hang.xml": Hang()}),
        ("/h/trickle.xml", "deadline", {"/h/trickle.xml": Trickle(interval=1.0)}),
        ("/h/huge.xml", "too_large", {"/h/huge.xml": Huge(size=100_000_000, content_length=False)}),
        ("/h/gzip-bomb.xml", "too_large", {"/h/gzip-bomb.xml": GzipBomb(size=1_000_000_000)}),
        ("/h/entity-bomb.xml", "entity_expansion", {"/h/entity-bomb.xml": Static(body=entity_bomb())}),
        ("/h/random.xml", "not_a_feed",
         {"/h/random.xml": Static(body=bytes(rng.randrange(256) for _ in range(50_000)))}),
        ("/h/html.xml", "not_a_feed", {"/h/html.xml": Static(body=html, content_type="text/html")}),
        ("/h/empty.xml", "empty", {"/h/empty.xml": Static(body=b"")}),
        ("/h/loop-a.xml", "redirect_loop",
         {"/h/loop-a.xml": Redirect("/h/loop-b.xml", status=301), "/h/loop-b.xml": Redirect("/h/loop-a.xml", 301)}),
        # 10 MB of tiny items: a minute of feedparser time, or 300 MB of its memory
        ("/h/dense.xml", "parse_memory or parse_timeout", {"/h/dense.xml": Static(body=dense_feed(9_900_000))}),
        # 200,000 nested elements: 7 s of parsing on a quiet machine, more on a busy one
        ("/h/nested.xml", "ok or parse_timeout", {"/h/nested.xml": Static(body=nested_feed())}),
        ("/h/raw.xml", "connection",
         {"/h/raw.xml": Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + os.urandom(20))}),
        # a good feed whose story matches the three shipped watchlists: alerted in the cycle
        ("/h/seed.xml", "ok", {"/h/seed.xml": Static(body=rss([seed_article()]))}),
    ]


# ----------------------------------------------------------------------------- serve


def serve(n: int, hostile: bool) -> None:
    """Serve the farm on 127.0.0.1 (and each hostile row on 127.0.0.<10+k>); print one
    JSON line: {"port": ..., "hostile": {url: expected reason}}."""
    from tests.support.httpserver import HTTPTestServer, Static

    servers = [HTTPTestServer().start()]
    for feed in build_farm(n):
        servers[0].route(
            feed.path,
            Static(
                body=feed.body,
                content_type="application/rss+xml",
                etag=feed.etag,
                last_modified=LAST_MODIFIED,
            ),
        )
    urls: dict[str, str] = {}
    if hostile:
        for k, (path, expected, routes) in enumerate(hostile_routes()):
            server = HTTPTestServer(host=f"127.0.0.{10 + k}").start()
            servers.append(server)
            for route, behaviour in routes.items():
                server.route(route, behaviour)
            urls[f"http://127.0.0.{10 + k}:{server.port}{path}"] = expected
    print(json.dumps({"port": servers[0].port, "hostile": urls}), flush=True)
    # Serve until the parent closes our stdin (or dies).
    done = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    done.wait()
    for server in servers:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve the farm; prints the port; stops when stdin closes")
    s.add_argument("--feeds", type=int, default=1000)
    s.add_argument("--hostile", action="store_true")
    c = sub.add_parser("check", help="parse every farm feed and show entries per fixture")
    c.add_argument("--feeds", type=int, default=60)
    args = parser.parse_args()
    if args.command == "serve":
        serve(args.feeds, args.hostile)
    else:
        import datetime as dt

        from monitor.ingest.formats import parse_feed

        now = dt.datetime.now(dt.UTC)
        keys: set[str] = set()
        total = 0
        for feed in build_farm(args.feeds):
            parsed = parse_feed(feed.body, url="http://127.0.0.1" + feed.path, content_type=None, fetched_at=now)
            keys.update(e.story_key for e in parsed.entries)
            total += len(parsed.entries)
            print(f"{feed.path:18} {feed.source[:48]:48} {len(feed.body) / 1000:7.1f} KB {len(parsed.entries):3}")
        print(f"{total} entries, {len(keys)} distinct stories")


if __name__ == "__main__":
    main()
