"""The fetcher against a real local HTTP server: every way a feed server misbehaves.

Settings are short (1 s per operation, 2 s deadline) so the slow cases stay fast.
"""

from __future__ import annotations

import base64
import gc
import gzip
import hashlib
import threading
import time
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.errors import FetchError
from monitor.ingest.fetch import (
    DEFAULT_USER_AGENT,
    MAX_RETRY_AFTER,
    FeedFetchError,
    Fetcher,
    FetchRequest,
    FetchResult,
    FetchSettings,
    host_key,
    parse_retry_after,
    redact_url,
)
from tests.support.httpserver import (
    Behaviour,
    GzipBomb,
    Hang,
    HTTPTestServer,
    Huge,
    Raw,
    Redirect,
    Static,
    Status,
    Trickle,
    closed_port,
    http_date,
)

FEED = (Path(__file__).parent / "fixtures" / "npr-news-rss2.xml").read_bytes()
FEED_HASH = hashlib.sha256(FEED).hexdigest()
FAST = FetchSettings(timeout=1.0, deadline=2.0, max_bytes=1_000_000)
LAST_MODIFIED = "Fri, 24 Nov 2023 10:00:00 GMT"


class FakeClock:
    """A monotonic clock the test moves by hand (Retry-After memory, elapsed)."""

    def __init__(self) -> None:
        self.now = 5_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as srv:
        yield srv


@pytest.fixture
def make_fetcher() -> Iterator[Callable[..., Fetcher]]:
    made: list[Fetcher] = []

    def make(settings: FetchSettings = FAST, clock: Callable[[], float] = time.monotonic) -> Fetcher:
        fetcher = Fetcher(settings, clock=clock)
        made.append(fetcher)
        return fetcher

    yield make
    for fetcher in made:
        fetcher.close()


@pytest.fixture
def fetcher(make_fetcher: Callable[..., Fetcher]) -> Fetcher:
    return make_fetcher()


def failure(fetcher: Fetcher, request: FetchRequest) -> FeedFetchError:
    with pytest.raises(FeedFetchError) as info:
        fetcher.fetch(request)
    assert isinstance(info.value, FetchError)
    assert info.value.request is request
    return info.value


# ---------------------------------------------------------------------------- success


def test_ok_returns_body_validators_and_hash(server: HTTPTestServer, fetcher: Fetcher) -> None:
    url = server.route("/feed.xml", Static(FEED, etag='"v1"', last_modified=LAST_MODIFIED))
    request = FetchRequest("npr", url)

    result = fetcher.fetch(request)

    assert result.request is request
    assert (result.status, result.http_status, result.url) == ("ok", 200, url)
    assert result.body == FEED
    assert result.body_hash == FEED_HASH
    assert result.content_type == "application/rss+xml; charset=utf-8"
    assert (result.etag, result.last_modified) == ('"v1"', LAST_MODIFIED)
    assert result.permanent_redirect is None
    assert 0 <= result.elapsed < 1


def test_sends_user_agent_accept_and_encodings(server: HTTPTestServer, fetcher: Fetcher) -> None:
    fetcher.fetch(FetchRequest(1, server.route("/feed.xml", Static(FEED))))

    sent = server.requests("/feed.xml")[0]
    assert sent.header("user-agent") == DEFAULT_USER_AGENT
    assert "news-monitor/" in DEFAULT_USER_AGENT
    assert "application/rss+xml" in (sent.header("accept") or "")
    assert (sent.header("accept-encoding") or "").replace(" ", "") == "gzip,deflate"
    assert sent.header("if-none-match") is None and sent.header("if-modified-since") is None


def test_custom_user_agent(server: HTTPTestServer, make_fetcher: Callable[..., Fetcher]) -> None:
    fetcher = make_fetcher(FetchSettings(timeout=1, deadline=2, user_agent="acme-watch/2 (ops@acme.example)"))
    fetcher.fetch(FetchRequest(1, server.route("/feed.xml", Static(FEED))))
    assert server.requests()[0].header("user-agent") == "acme-watch/2 (ops@acme.example)"


@pytest.mark.parametrize(
    ("route", "stored", "expected_status", "expected_http", "expected_hash"),
    [
        pytest.param(
            Static(FEED, etag='"v1"'), {"etag": '"v1"'}, "not_modified", 304, None, id="304-on-if-none-match"
        ),
        pytest.param(
            Static(FEED, etag='W/"v1"'), {"etag": '"v1"'}, "not_modified", 304, None, id="304-weak-etag"
        ),
        pytest.param(
            Static(FEED, last_modified=LAST_MODIFIED),
            {"last_modified": LAST_MODIFIED},
            "not_modified",
            304,
            None,
            id="304-on-if-modified-since",
        ),
        pytest.param(
            Static(FEED, etag='"v1"', conditional=False),
            {"etag": '"v1"'},
            "not_modified",
            200,
            None,
            id="200-with-same-etag",
        ),
        pytest.param(
            Static(FEED, conditional=False),
            {"body_hash": FEED_HASH},
            "not_modified",
            200,
            FEED_HASH,
            id="same-hash",
        ),
        pytest.param(
            Static(FEED, etag='"v2"'),
            {"etag": '"v1"', "body_hash": "0" * 64},
            "ok",
            200,
            FEED_HASH,
            id="changed",
        ),
    ],
)
def test_unchanged_feeds_are_not_modified(
    server: HTTPTestServer,
    fetcher: Fetcher,
    route: Static,
    stored: dict[str, str],
    expected_status: str,
    expected_http: int,
    expected_hash: str | None,
) -> None:
    request = FetchRequest(1, server.route("/feed.xml", route), **stored)

    result = fetcher.fetch(request)

    assert (result.status, result.http_status, result.body_hash) == (
        expected_status,
        expected_http,
        expected_hash,
    )
    assert result.body == (FEED if expected_status == "ok" else b"")
    sent = server.requests("/feed.xml")[0]
    assert sent.header("if-none-match") == stored.get("etag")
    assert sent.header("if-modified-since") == stored.get("last_modified")


def test_304_keeps_stored_validators_when_server_omits_them(server: HTTPTestServer, fetcher: Fetcher) -> None:
    url = server.route("/feed.xml", Status(304))
    result = fetcher.fetch(FetchRequest(1, url, etag='"v1"', last_modified=LAST_MODIFIED))
    assert (result.status, result.etag, result.last_modified) == ("not_modified", '"v1"', LAST_MODIFIED)


def test_200_with_same_body_but_new_etag_reports_new_validator(
    server: HTTPTestServer, fetcher: Fetcher
) -> None:
    url = server.route("/feed.xml", Static(FEED, etag='"v2"'))
    result = fetcher.fetch(FetchRequest(1, url, etag='"v1"', body_hash=FEED_HASH))
    assert (result.status, result.etag, result.body) == ("not_modified", '"v2"', b"")


def test_route_changed_between_polls(server: HTTPTestServer, fetcher: Fetcher) -> None:
    route = Static(b"<rss>one</rss>", etag='"1"')
    url = server.route("/feed.xml", route)
    first = fetcher.fetch(FetchRequest(1, url))
    route.body, route.etag = b"<rss>two</rss>", '"2"'
    second = fetcher.fetch(FetchRequest(1, url, etag=first.etag, body_hash=first.body_hash))
    assert (second.status, second.body, second.etag) == ("ok", b"<rss>two</rss>", '"2"')


def _gzip_members() -> bytes:
    half = len(FEED) // 2
    return gzip.compress(FEED[:half]) + gzip.compress(FEED[half:])


def _raw_deflate() -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return packer.compress(FEED) + packer.flush()


@pytest.mark.parametrize(
    ("encoding", "wire"),
    [
        pytest.param("gzip", gzip.compress(FEED), id="gzip"),
        pytest.param("x-gzip", gzip.compress(FEED), id="x-gzip"),
        pytest.param("gzip", _gzip_members(), id="gzip-two-members"),
        pytest.param("gzip", gzip.compress(FEED) + b"\0" * 10, id="gzip-zero-padding"),
        pytest.param("deflate", zlib.compress(FEED), id="deflate-zlib"),
        pytest.param("deflate", _raw_deflate(), id="deflate-raw"),
        pytest.param("identity", FEED, id="identity"),
    ],
)
def test_compressed_bodies_are_decompressed(
    server: HTTPTestServer, fetcher: Fetcher, encoding: str, wire: bytes
) -> None:
    url = server.route("/feed.xml", Static(wire, headers={"Content-Encoding": encoding}))
    result = fetcher.fetch(FetchRequest(1, url))
    assert result.body == FEED
    assert result.body_hash == FEED_HASH


def test_gzip_route_of_test_server_is_decompressed(server: HTTPTestServer, fetcher: Fetcher) -> None:
    assert fetcher.fetch(FetchRequest(1, server.route("/g.xml", Static(FEED, gzip=True)))).body == FEED


@pytest.mark.parametrize(
    ("headers", "wire"),
    [
        pytest.param(
            {"Content-Encoding": "gzip"}, b"\x1f\x8b\x08\x00 this is not gzip at all", id="corrupt-gzip"
        ),
        pytest.param({"Content-Encoding": "br"}, b"\x0b\x02\x80hello\x03", id="unrequested-brotli"),
        pytest.param({"Content-Encoding": "gzip"}, gzip.compress(FEED)[:-100], id="truncated-gzip"),
        pytest.param({"Content-Encoding": "deflate"}, zlib.compress(FEED)[:-100], id="truncated-deflate"),
    ],
)
def test_undecodable_bodies_fail_as_decoding(
    server: HTTPTestServer, fetcher: Fetcher, headers: dict[str, str], wire: bytes
) -> None:
    error = failure(fetcher, FetchRequest(1, server.route("/feed.xml", Static(wire, headers=headers))))
    assert error.reason == "decoding"


# -------------------------------------------------------------------------- redirects


@pytest.mark.parametrize(
    ("statuses", "permanent"),
    [
        ([301], True),
        ([308], True),
        ([301, 308, 301], True),
        ([302], False),
        ([307], False),
        ([303], False),
        ([301, 302], False),
        ([302, 301], False),
    ],
)
def test_redirect_chains(
    server: HTTPTestServer, fetcher: Fetcher, statuses: list[int], permanent: bool
) -> None:
    final = server.route("/final.xml", Static(FEED))
    for i, status in enumerate(statuses):
        target = f"/hop{i + 1}" if i + 1 < len(statuses) else "/final.xml"
        server.route(f"/hop{i}", Redirect(target, status=status))

    result = fetcher.fetch(FetchRequest(1, server.url("/hop0")))

    assert (result.status, result.url, result.body) == ("ok", final, FEED)
    assert result.permanent_redirect == (final if permanent else None)
    assert [r.path for r in server.requests()] == [f"/hop{i}" for i in range(len(statuses))] + ["/final.xml"]


def test_permanent_redirect_to_another_host(server: HTTPTestServer, fetcher: Fetcher) -> None:
    new = server.route("/new.xml", Static(FEED), host="localhost")
    result = fetcher.fetch(FetchRequest(1, server.route("/old.xml", Redirect(new, status=301))))
    assert (result.url, result.permanent_redirect) == (new, new)


def test_redirect_loop(server: HTTPTestServer, fetcher: Fetcher) -> None:
    server.route("/a", Redirect("/b", status=301))
    server.route("/b", Redirect("/a", status=301))
    error = failure(fetcher, FetchRequest(1, server.url("/a")))
    assert error.reason == "redirect_loop"
    assert "/a -> " in str(error) and "/b" in str(error)
    assert len(server.requests()) == 2


@pytest.mark.parametrize(("hops", "reason"), [(5, None), (6, "too_many_redirects")])
def test_redirect_cap(server: HTTPTestServer, fetcher: Fetcher, hops: int, reason: str | None) -> None:
    server.route("/final.xml", Static(FEED))
    for i in range(hops):
        server.route(f"/r{i}", Redirect(f"/r{i + 1}" if i + 1 < hops else "/final.xml"))
    request = FetchRequest(1, server.url("/r0"))
    if reason is None:
        assert fetcher.fetch(request).body == FEED
    else:
        assert failure(fetcher, request).reason == reason
        assert len(server.requests()) == FAST.max_redirects + 1


def test_redirect_to_non_http_scheme_is_refused(server: HTTPTestServer, fetcher: Fetcher) -> None:
    error = failure(fetcher, FetchRequest(1, server.route("/r", Redirect("file:///etc/passwd", status=301))))
    assert error.reason == "invalid_url"


# ---------------------------------------------------------------------- HTTP failures


@pytest.mark.parametrize(
    ("route", "reason", "status", "retry_after"),
    [
        (Status(500), "http_500", 500, None),
        (Status(404), "http_404", 404, None),
        (Status(403), "http_403", 403, None),
        (Status(410), "gone", 410, None),
        (Status(429, {"Retry-After": "120"}), "rate_limited", 429, 120.0),
        (Status(503, {"Retry-After": "30"}), "rate_limited", 503, 30.0),
        (Status(429), "rate_limited", 429, None),
        (Status(503), "rate_limited", 503, None),
        (Redirect("", status=302), "http_302", 302, None),
    ],
)
def test_http_errors(
    server: HTTPTestServer,
    fetcher: Fetcher,
    route: Status | Redirect,
    reason: str,
    status: int,
    retry_after: float | None,
) -> None:
    error = failure(fetcher, FetchRequest(1, server.route("/feed.xml", route)))
    assert (error.reason, error.status, error.retry_after) == (reason, status, retry_after)
    assert server.url("/feed.xml") in str(error)


def test_retry_after_as_http_date(server: HTTPTestServer, fetcher: Fetcher) -> None:
    url = server.route("/feed.xml", Status(503, {"Retry-After": http_date(time.time() + 90)}))
    error = failure(fetcher, FetchRequest(1, url))
    assert error.reason == "rate_limited"
    assert error.retry_after is not None and 85 <= error.retry_after <= 91


def test_rate_limited_host_is_not_contacted_until_retry_after(
    server: HTTPTestServer, make_fetcher: Callable[..., Fetcher]
) -> None:
    clock = FakeClock()
    fetcher = make_fetcher(FAST, clock)
    server.route("/a.xml", Status(429, {"Retry-After": "120"}))
    server.route("/b.xml", Static(FEED))

    assert failure(fetcher, FetchRequest("a", server.url("/a.xml"))).retry_after == 120

    clock.now += 20
    started = time.monotonic()
    blocked = failure(fetcher, FetchRequest("b", server.url("/b.xml")))
    assert time.monotonic() - started < 0.5
    assert (blocked.reason, blocked.retry_after, blocked.status) == ("rate_limited", 100, None)
    assert [r.path for r in server.requests()] == ["/a.xml"]  # the second one never left

    # another host (same server under another name) is not affected
    assert fetcher.fetch(FetchRequest("c", server.url("/b.xml", host="localhost"))).status == "ok"

    clock.now += 101
    assert fetcher.fetch(FetchRequest("b", server.url("/b.xml"))).body == FEED


def test_blocked_host_fails_fast_in_fetch_many(server: HTTPTestServer, fetcher: Fetcher) -> None:
    server.route("/limited.xml", Status(429, {"Retry-After": "60"}))
    server.route("/feed.xml", Static(FEED))
    failure(fetcher, FetchRequest(0, server.url("/limited.xml")))

    outcomes = list(fetcher.fetch_many(FetchRequest(i, server.url("/feed.xml")) for i in range(5)))

    assert all(isinstance(o, FeedFetchError) and o.reason == "rate_limited" for o in outcomes)
    assert server.requests("/feed.xml") == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("-5", 0.0),
        ("1.5", 1.5),
        ("999999999", MAX_RETRY_AFTER),
        (http_date(1_000_090), 90.0),
        (http_date(999_000), 0.0),
        ("Wed, 21 Oct 2015 07:28:00 GMT", MAX_RETRY_AFTER),  # years after `now`: capped
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=1_000_000) == expected


# ----------------------------------------------------------------- transport failures


def test_connection_refused(fetcher: Fetcher) -> None:
    with closed_port() as port:
        started = time.monotonic()
        error = failure(fetcher, FetchRequest(1, f"http://127.0.0.1:{port}/feed.xml"))
    assert error.reason == "connection"
    assert time.monotonic() - started < 1
    assert f"127.0.0.1:{port}/feed.xml" in str(error)


def test_unknown_host(fetcher: Fetcher) -> None:
    assert failure(fetcher, FetchRequest(1, "http://no-such-host.invalid/feed.xml")).reason == "connection"


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"this is not HTTP\r\n\r\n", id="garbage"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n<rss>", id="truncated-body"),
        pytest.param(b"", id="closed-without-answer"),
    ],
)
def test_broken_responses(server: HTTPTestServer, fetcher: Fetcher, data: bytes) -> None:
    assert failure(fetcher, FetchRequest(1, server.route("/feed.xml", Raw(data)))).reason == "connection"


def test_tls_failure(server: HTTPTestServer, fetcher: Fetcher) -> None:
    server.route("/feed.xml", Static(FEED))
    error = failure(fetcher, FetchRequest(1, f"https://127.0.0.1:{server.port}/feed.xml"))
    assert error.reason == "tls"


def test_never_answering_server_times_out(server: HTTPTestServer, fetcher: Fetcher) -> None:
    url = server.route("/feed.xml", Hang())
    started = time.monotonic()
    error = failure(fetcher, FetchRequest(1, url))
    took = time.monotonic() - started
    assert error.reason == "timeout"
    assert 0.9 <= took < 1.8
    assert "1 s" in str(error)


def test_trickling_server_hits_the_deadline(server: HTTPTestServer, fetcher: Fetcher) -> None:
    url = server.route("/feed.xml", Trickle(interval=0.1))
    started = time.monotonic()
    error = failure(fetcher, FetchRequest(1, url))
    took = time.monotonic() - started
    assert error.reason == "deadline"
    assert 1.9 <= took < 2.8


# ------------------------------------------------------------------------- size caps


@pytest.mark.parametrize(
    "route",
    [
        pytest.param(Huge(100_000_000, content_length=True), id="100MB-with-length"),
        pytest.param(Huge(100_000_000, content_length=False), id="100MB-chunked"),
        pytest.param(GzipBomb(100_000_000), id="gzip-bomb-100MB"),
    ],
)
def test_huge_bodies_are_cut_early_and_cheaply(
    server: HTTPTestServer, fetcher: Fetcher, route: Behaviour
) -> None:
    url = server.route("/feed.xml", route)
    tracemalloc.start()
    try:
        started = time.monotonic()
        error = failure(fetcher, FetchRequest(1, url))
        took = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error.reason == "too_large"
    assert "1,000,000" in str(error)
    assert took < 2
    assert peak < 20_000_000  # the cap is 1 MB; the body is 100 MB


@pytest.mark.parametrize(
    ("size", "ok"),
    [(1_000_000, True), (1_000_001, False)],
)
@pytest.mark.parametrize("framing", ["length", "chunked", "gzip"])
def test_size_cap_boundary(
    server: HTTPTestServer, fetcher: Fetcher, size: int, ok: bool, framing: str
) -> None:
    body = b"x" * size
    if framing == "gzip":
        route: Behaviour = Static(body, gzip=True)
    else:
        route = Huge(size, content_length=framing == "length")
    request = FetchRequest(1, server.route("/feed.xml", route))
    if ok:
        assert len(fetcher.fetch(request).body) == size
    else:
        assert failure(fetcher, request).reason == "too_large"


# ----------------------------------------------------------------------- bad URLs


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        "ftp://example.org/feed.xml",
        "http://",
        "http://example.org:99999/feed.xml",
        "http://example.org:0/feed.xml",
        "http://exa mple.org/feed.xml",
        "/relative/feed.xml",
    ],
)
def test_invalid_urls(fetcher: Fetcher, url: str) -> None:
    assert failure(fetcher, FetchRequest(1, url)).reason == "invalid_url"


# ------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://alice:s3cret@example.org/feed", "https://example.org/feed"),
        ("https://alice@example.org/feed", "https://example.org/feed"),
        ("https://example.org/feed?token=abc&page=2", "https://example.org/feed?token=***&page=2"),
        ("https://example.org/feed?apiKey=abc&id=7#top", "https://example.org/feed?apiKey=***&id=7#top"),
        ("https://example.org/feed?p=1", "https://example.org/feed?p=1"),
        ("http://u:p@w@[bad/feed", "http://[bad/feed"),
        ("no scheme at all", "no scheme at all"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    "route",
    [
        pytest.param(Status(500), id="http-error"),
        pytest.param(Status(429, {"Retry-After": "5"}), id="rate-limited"),
        pytest.param(Redirect("/feed.xml", status=301), id="redirect-loop"),
        pytest.param(Raw(b"garbage\r\n\r\n"), id="broken"),
        pytest.param(Huge(5_000_000), id="too-large"),
    ],
)
def test_secrets_never_appear_in_errors(server: HTTPTestServer, fetcher: Fetcher, route: Behaviour) -> None:
    server.route("/feed.xml", route)
    url = f"http://alice:Pa55word@127.0.0.1:{server.port}/feed.xml?token=T0KEN-42"
    error = failure(fetcher, FetchRequest(1, url))
    text = f"{error} {error!r}"
    for secret in ("Pa55word", "T0KEN-42", "alice"):
        assert secret not in text
    assert f"127.0.0.1:{server.port}/feed.xml" in text


def test_secrets_hidden_for_refused_and_invalid_urls(fetcher: Fetcher) -> None:
    with closed_port() as port:
        refused = failure(fetcher, FetchRequest(1, f"http://bob:Hunter22@127.0.0.1:{port}/f?key=K3Y-99"))
    invalid = failure(fetcher, FetchRequest(2, "gopher://bob:Hunter22@example.org/f?key=K3Y-99"))
    for error in (refused, invalid):
        assert "Hunter22" not in str(error) and "K3Y-99" not in str(error)


def test_credentials_in_url_are_used_for_basic_auth(server: HTTPTestServer, fetcher: Fetcher) -> None:
    server.route("/private.xml", Static(FEED))
    server.route("/old.xml", Redirect("/private.xml", status=301))
    result = fetcher.fetch(FetchRequest(1, f"http://alice:Pa55word@127.0.0.1:{server.port}/old.xml"))
    expected = "Basic " + base64.b64encode(b"alice:Pa55word").decode()
    assert [r.header("authorization") for r in server.requests()] == [expected, expected]
    assert result.permanent_redirect == f"http://alice:Pa55word@127.0.0.1:{server.port}/private.xml"


# ------------------------------------------------------------ concurrency and batches


def test_per_host_cap(server: HTTPTestServer, make_fetcher: Callable[..., Fetcher]) -> None:
    fetcher = make_fetcher(FetchSettings(timeout=1, deadline=3, concurrency=16, per_host=2))
    server.route("/slow.xml", Static(FEED, delay=0.15))
    requests = [
        FetchRequest(i, server.url("/slow.xml", host=("127.0.0.1", "localhost")[i % 2])) for i in range(12)
    ]

    outcomes = list(fetcher.fetch_many(requests))

    assert all(isinstance(o, FetchResult) and o.status == "ok" for o in outcomes)
    assert server.max_in_flight("127.0.0.1") == 2
    assert server.max_in_flight("localhost") == 2
    assert server.max_in_flight() == 4  # the two hosts were served in parallel


def test_global_cap(server: HTTPTestServer, make_fetcher: Callable[..., Fetcher]) -> None:
    fetcher = make_fetcher(FetchSettings(timeout=1, deadline=3, concurrency=3, per_host=3))
    server.route("/slow.xml", Static(FEED, delay=0.15))
    requests = [
        FetchRequest(i, server.url("/slow.xml", host=("127.0.0.1", "localhost")[i % 2])) for i in range(12)
    ]

    assert len(list(fetcher.fetch_many(requests))) == 12
    assert server.max_in_flight() == 3


def test_fetch_many_one_outcome_per_request_and_failures_are_isolated(
    server: HTTPTestServer, fetcher: Fetcher
) -> None:
    server.route("/ok.xml", Static(FEED))
    server.route("/missing.xml", Status(404))
    server.route("/hang.xml", Hang())
    with closed_port() as port:
        requests = [
            FetchRequest("ok1", server.url("/ok.xml")),
            FetchRequest("missing", server.url("/missing.xml")),
            FetchRequest("refused", f"http://127.0.0.1:{port}/feed.xml"),
            FetchRequest("hang", server.url("/hang.xml")),
            FetchRequest("invalid", "nonsense"),
            FetchRequest("ok2", server.url("/ok.xml", host="localhost")),
        ]
        outcomes = list(fetcher.fetch_many(requests))

    by_key = {o.request.key: o for o in outcomes}
    assert len(outcomes) == len(requests) == len(by_key)
    assert {k: o.reason for k, o in by_key.items() if isinstance(o, FeedFetchError)} == {
        "missing": "http_404",
        "refused": "connection",
        "hang": "timeout",
        "invalid": "invalid_url",
    }
    for key in ("ok1", "ok2"):
        ok = by_key[key]
        assert isinstance(ok, FetchResult) and ok.body == FEED
    assert outcomes[-1].request.key == "hang"  # yielded as completed, the slowest last


def test_fetch_many_yields_each_outcome_as_it_completes(server: HTTPTestServer, fetcher: Fetcher) -> None:
    server.route("/fast.xml", Static(FEED))
    server.route("/slow.xml", Static(FEED, delay=1.0))
    started = time.monotonic()
    outcomes = fetcher.fetch_many(
        [FetchRequest("slow", server.url("/slow.xml")), FetchRequest("fast", server.url("/fast.xml"))]
    )

    first = next(outcomes)
    first_at = time.monotonic() - started
    second = next(outcomes)

    assert (first.request.key, second.request.key) == ("fast", "slow")
    assert first_at < 0.5
    assert list(outcomes) == []


def test_fetch_many_window_bounds_bodies_waiting_for_a_slow_consumer(
    server: HTTPTestServer, fetcher: Fetcher
) -> None:
    server.route("/feed.xml", Static(FEED))
    outcomes = fetcher.fetch_many([FetchRequest(i, server.url(f"/feed.xml?n={i}")) for i in range(10)], window=3)

    first = next(outcomes)
    deadline = time.monotonic() + 5
    while len(server.requests("/feed.xml")) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # a consumer busy parsing: the fetcher must not run ahead
    assert len(server.requests("/feed.xml")) == 4  # the 3 of the window, and 1 more once one was taken

    rest = [first, *outcomes]
    assert sorted(o.request.key for o in rest) == list(range(10))
    assert all(isinstance(o, FetchResult) and o.body == FEED for o in rest)


def test_fetch_many_window_must_be_positive(fetcher: Fetcher) -> None:
    with pytest.raises(ValueError, match="window"):
        list(fetcher.fetch_many([FetchRequest(1, "http://127.0.0.1:9/")], window=0))


def test_rate_limited_is_deferred_only_when_not_contacted(server: HTTPTestServer, fetcher: Fetcher) -> None:
    server.route("/limited.xml", Status(429, {"Retry-After": "60"}))
    server.route("/other.xml", Static(FEED))
    contacted = failure(fetcher, FetchRequest("a", server.url("/limited.xml")))
    skipped = failure(fetcher, FetchRequest("b", server.url("/other.xml")))
    assert (contacted.reason, contacted.status, contacted.deferred) == ("rate_limited", 429, False)
    assert (skipped.reason, skipped.status, skipped.deferred) == ("rate_limited", None, True)


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://Example.org/feed", "example.org:80"),
        ("https://example.org/feed", "example.org:443"),
        ("https://user:pw@example.org:8443/feed", "example.org:8443"),
        ("nonsense", None),
    ],
)
def test_host_key(url: str, key: str | None) -> None:
    assert host_key(url) == key


def test_fetch_many_of_nothing(fetcher: Fetcher) -> None:
    assert list(fetcher.fetch_many([])) == []


def test_fetch_many_from_several_threads(server: HTTPTestServer, fetcher: Fetcher) -> None:
    server.route("/feed.xml", Static(FEED, etag='"v1"'))
    results: dict[int, list[str]] = {}

    def worker(n: int) -> None:
        outcomes = fetcher.fetch_many(
            FetchRequest((n, i), server.url("/feed.xml"), etag='"v1"') for i in range(20)
        )
        results[n] = [o.status for o in outcomes if isinstance(o, FetchResult)]

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {n: ["not_modified"] * 20 for n in range(4)}


def test_fetcher_recovers_after_timeouts_and_deadlines(
    server: HTTPTestServer, make_fetcher: Callable[..., Fetcher]
) -> None:
    fetcher = make_fetcher(FetchSettings(timeout=0.5, deadline=1.0, concurrency=4, per_host=4))
    server.route("/hang.xml", Hang())
    server.route("/trickle.xml", Trickle(interval=0.05))
    server.route("/huge.xml", Huge(50_000_000, content_length=False))
    server.route("/feed.xml", Static(FEED))
    bad = ["/hang.xml", "/trickle.xml", "/huge.xml"] * 2
    outcomes = list(fetcher.fetch_many(FetchRequest(i, server.url(p)) for i, p in enumerate(bad)))
    reasons = sorted({o.reason for o in outcomes if isinstance(o, FeedFetchError)})
    assert len(outcomes) == len(bad)
    assert reasons == ["deadline", "timeout", "too_large"]

    good = list(fetcher.fetch_many(FetchRequest(i, server.url("/feed.xml")) for i in range(20)))
    assert all(isinstance(o, FetchResult) and o.body == FEED for o in good)


# ------------------------------------------------------------------------- lifecycle


def test_close_cancels_running_fetches_quickly(server: HTTPTestServer) -> None:
    fetcher = Fetcher(FetchSettings(timeout=30, deadline=60))
    server.route("/hang.xml", Hang())
    server.route("/feed.xml", Static(FEED))
    outcomes: list[FetchResult | FeedFetchError] = []
    requests = [FetchRequest(i, server.url("/hang.xml")) for i in range(40)]

    consumer = threading.Thread(target=lambda: outcomes.extend(fetcher.fetch_many(requests)))
    consumer.start()
    time.sleep(0.3)
    started = time.monotonic()
    fetcher.close()
    consumer.join(5)

    assert time.monotonic() - started < 2
    assert not consumer.is_alive()
    assert len(outcomes) == 40
    assert {o.reason for o in outcomes if isinstance(o, FeedFetchError)} == {"cancelled"}
    with pytest.raises(RuntimeError):
        fetcher.fetch(FetchRequest(1, server.url("/feed.xml")))
    fetcher.close()  # idempotent


def test_close_ends_a_single_fetch_waiting_in_another_thread(server: HTTPTestServer) -> None:
    fetcher = Fetcher(FetchSettings(timeout=30, deadline=60))
    errors: list[FeedFetchError] = []

    def call() -> None:
        try:
            fetcher.fetch(FetchRequest("h", server.route("/hang.xml", Hang())))
        except FeedFetchError as exc:
            errors.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.3)
    fetcher.close()
    caller.join(5)
    assert [(e.reason, e.request.key) for e in errors] == [("cancelled", "h")]


def fetch_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("news-monitor-fetch")]


def test_no_thread_leak_across_fetchers(server: HTTPTestServer) -> None:
    server.route("/feed.xml", Static(FEED))
    before = fetch_threads()
    for i in range(10):
        with Fetcher(FAST) as fetcher:
            assert fetcher.fetch(FetchRequest(i, server.url("/feed.xml"))).status == "ok"
            assert len(fetch_threads()) == len(before) + 1
    unused = Fetcher(FAST)  # never used: never starts a thread
    assert fetch_threads() == before
    unused.close()
    assert fetch_threads() == before


def test_forgotten_fetcher_is_shut_down_by_the_garbage_collector(server: HTTPTestServer) -> None:
    server.route("/feed.xml", Static(FEED))
    before = fetch_threads()
    fetcher = Fetcher(FAST)
    fetcher.fetch(FetchRequest(1, server.url("/feed.xml")))
    assert len(fetch_threads()) == len(before) + 1
    del fetcher
    gc.collect()
    assert fetch_threads() == before


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"timeout": 0}, "timeout"),
        ({"deadline": -1}, "deadline"),
        ({"deadline": float("inf")}, "deadline"),
        ({"max_bytes": 0}, "max_bytes"),
        ({"concurrency": 0}, "concurrency"),
        ({"per_host": 0}, "per_host"),
        ({"max_redirects": -1}, "max_redirects"),
    ],
)
def test_settings_are_validated(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FetchSettings(**changes)
