"""What a new user meets on the web page in the first hour, over a real socket.

The feeds page (URLs without secrets, intervals, failing feeds first, a banner when
most fail, "due now" when no daemon polls, adding a feed as ``feeds add`` does), the
alerts page (filtered by watchlist, paged, a pending alert's last error) and the alias
groups in the watchlist editor. The decisions behind the banners are tested as plain
values first.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from monitor.app.cli import cli
from monitor.app.services.backtests import watchlist_matcher
from monitor.app.services.feeds import daemon_idle, failing_banner
from monitor.app.web import WebServer, WebState
from monitor.config.model import load_config
from monitor.ingest.decide import FeedIntent
from monitor.ingest.schedule import FeedSnapshot, FeedUpdate
from monitor.storage.feeds import FeedConfigRow
from monitor.storage.store import Store
from tests.support.feeds import Item, rss
from tests.support.httpserver import HTTPTestServer, Static, closed_port
from tests.test_backtest import seed

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
DNS = "http://wire.example/rss: connection failed: [Errno -3] Temporary failure in name resolution"

BASE = FeedSnapshot(
    id=1, name="f", url="https://f.example/rss", fetch_url="https://f.example/rss", language="en",
    interval_s=600.0, enabled=True, state="ok", title=None, etag=None, last_modified=None, body_hash=None,
    redirect_to=None, redirect_seen=0, initialized=True, consecutive_failures=0, failing_since=None,
    last_poll_at=NOW - dt.timedelta(minutes=5), last_success_at=NOW - dt.timedelta(minutes=5),
    last_error_at=None, last_status=200, last_error=None, last_error_reason=None, total_polls=1,
    total_failures=0, entries_seen=10, learned_interval_s=None, next_poll_at=NOW + dt.timedelta(minutes=5),
    health_alerted_at=None,
)  # fmt: skip


def ok() -> FeedSnapshot:
    return BASE


def failed(reason: str = "connection", error: str = DNS) -> FeedSnapshot:
    return dataclasses.replace(
        BASE, state="backoff", consecutive_failures=3, last_error_reason=reason, last_error=error
    )


@pytest.mark.parametrize(
    ("feeds", "banner"),
    [
        ([failed()] * 3 + [ok()], "3 of 4 feeds are failing with DNS errors: is this machine online?"),
        ([failed("tls", "x")] * 2, "2 of 2 feeds are failing the same way (tls): is this machine's clock right"),
        ([failed("http_500", "x")] * 3, "3 of 3 feeds are failing the same way (http_500): see the errors below"),
        ([failed("tls", "x"), failed("timeout", "y")], "2 of 2 feeds are failing, for different reasons"),
        ([failed()] * 2 + [ok()] * 2, None),  # half is not most
        ([failed()], None),  # one feed says nothing about this machine
        (
            [failed()] * 2 + [dataclasses.replace(ok(), last_poll_at=None)] * 5,
            "2 of 2 feeds",
        ),  # never polled: not counted
        ([failed(), dataclasses.replace(failed(), enabled=False), ok()], None),  # a disabled feed is not failing
        ([], None),
    ],
)
def test_a_banner_when_most_feeds_fail(feeds: list[FeedSnapshot], banner: str | None) -> None:
    found = failing_banner(feeds)
    if banner is None:
        assert found is None
    else:
        assert found is not None and found.startswith(banner)


def at(next_min: float, last_min: float | None) -> FeedSnapshot:
    """A feed due ``next_min`` minutes from NOW (negative: in the past), last polled ``last_min`` ago."""
    last = None if last_min is None else NOW - dt.timedelta(minutes=last_min)
    return dataclasses.replace(BASE, next_poll_at=NOW + dt.timedelta(minutes=next_min), last_poll_at=last)


@pytest.mark.parametrize(
    ("feeds", "idle"),
    [
        ([at(-60, 70), at(-50, 65)], True),  # due for an hour, nothing polled since
        ([at(-60, 70), at(5, 1)], False),  # something was polled a minute ago: a daemon runs, busy
        ([at(-1, 11), at(5, 5)], False),  # due a minute ago: within the grace
        ([at(-600, None)], True),  # never polled at all
        ([at(5, None)], False),  # a new feed not due yet
        ([dataclasses.replace(at(-60, 70), enabled=False)], False),  # disabled feeds are never due
        ([dataclasses.replace(at(-60, 70), state="disabled")], False),  # nor gone ones (a 410)
        ([], False),
    ],
)
def test_no_daemon_polling_is_told_from_stored_times(feeds: list[FeedSnapshot], idle: bool) -> None:
    assert daemon_idle(feeds, NOW) is idle


# --- over a real socket ------------------------------------------------------------------

CONFIG = """\
# the desk's config
database: {db}
targets:
  mail: 'json://127.0.0.1:9/'
aliases:
  dprk: '"North Korea" OR "North Korean" OR Pyongyang'
  kursk: 'Kursk OR Koursk'
  front: '@kursk OR Donbas'
watchlists:
  - name: kursk
    query: '@kursk'
    notify: [mail]
  - name: dprk
    query: '@dprk'
    notify: [mail]
"""
KURSK = [(f"Kursk front report number {i}", f"Update {i} from the region.", 1 + i) for i in range(35)]
DPRK = [("Pyongyang fires a missile", "Seoul reports a launch.", 0.5)]


class Site:
    def __init__(self, path: Path, store: Store, server: WebServer, saved: list[int]) -> None:
        self.path, self.store, self.server, self.saved = path, store, server, saved
        self.http = httpx.Client(base_url=server.url, timeout=30)

    def csrf(self) -> str:
        m = re.search(r'name="csrf-token" content="([0-9a-f]+)"', self.http.get("/feeds").text)
        assert m
        return m.group(1)

    def feed_id(self, name: str) -> int:
        return next(f.id for f in self.store.feeds() if f.name == name)

    def set_feed(self, name: str, **update: Any) -> None:
        """Write a feed's scheduling state as a poll would."""
        update.setdefault("next_poll_at", dt.datetime.now(dt.UTC) + dt.timedelta(minutes=10))
        self.store.apply_poll([FeedIntent(self.feed_id(name), FeedUpdate(**update))])

    def fail_unpolled(self, failures: int) -> dt.datetime:
        """Both feeds failed with DNS errors three hours ago, and no daemon polled since."""
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
        for name in ("desk", "wire"):
            self.set_feed(
                name,
                last_poll_at=long_ago,
                next_poll_at=long_ago + dt.timedelta(minutes=10),
                state="backoff",
                consecutive_failures=failures,
                last_error_reason="connection",
                last_error=DNS,
            )
        return long_ago


def make_site(tmp_path: Path, db: str, schema: str | None = None) -> tuple[Site, WebServer]:
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(db=db), encoding="utf-8")
    loaded = load_config(path)
    store = Store(loaded.database_url, schema=schema)
    for name, stories, feed in (("kursk", KURSK, "desk"), ("dprk", DPRK, "wire")):
        matcher = watchlist_matcher(loaded.config, name)
        assert seed(store, stories, feed=feed, matcher=matcher, targets={name: ("mail",)})
    saved: list[int] = []
    state = WebState(
        config_path=str(path), loaded=lambda: load_config(path), store=store, on_saved=lambda: saved.append(1)
    )
    server = WebServer(state, "127.0.0.1", 0).start()
    return Site(path, store, server, saved), server


@pytest.fixture
def site(db_backend: tuple[str, str | None], tmp_path: Path) -> Iterator[Site]:
    url, schema = db_backend
    if schema:
        url = f"{url}?options=-csearch_path%3D{schema}"
    s, server = make_site(tmp_path, url, schema)
    try:
        yield s
    finally:
        s.http.close()
        server.stop()
        s.store.close()


def titles(page: str) -> list[str]:
    """The titles of the stories on an alerts page, in order (highlighting removed)."""
    return [
        " ".join(re.sub(r"<[^>]+>", "", h).split())
        for h in re.findall(r'<article class="story">\s*<h2>(.*?)</h2>', page, re.S)
    ]


def test_alerts_are_filtered_by_watchlist_and_paged(site: Site) -> None:
    first = site.http.get("/").text
    shown = titles(first)
    assert len(shown) == 30
    assert shown[0] == "Pyongyang fires a missile"  # newest alert first, whatever its watchlist
    assert 'rel="next" href="/?page=2"' in first and 'rel="prev"' not in first

    second = site.http.get("/?page=2").text
    assert len(titles(second)) == 6 and not set(titles(second)) & set(shown)
    assert 'rel="prev" href="/?page=1"' in second and 'rel="next"' not in second

    only = site.http.get("/", params={"watchlist": "dprk"}).text
    assert titles(only) == ["Pyongyang fires a missile"]
    assert "<option selected>dprk</option>" in only and 'rel="next"' not in only

    kursk = site.http.get("/", params={"watchlist": "kursk"}).text
    assert "Pyongyang fires a missile" not in kursk
    assert 'rel="next" href="/?watchlist=kursk&amp;page=2"' in kursk
    last = site.http.get("/", params={"watchlist": "kursk", "page": "2"}).text
    assert titles(last) == [f"Kursk front report number {i}" for i in range(4, -1, -1)]  # stored first: oldest
    assert "No alerts here for watchlist kursk." in site.http.get("/?watchlist=kursk&page=3").text


@pytest.mark.parametrize("page", ["0", "abc", "-1", "99999999"])
def test_a_bad_page_number_is_a_clear_400(site: Site, page: str) -> None:
    r = site.http.get("/", params={"page": page})
    assert r.status_code == 400
    assert "page: a whole number from 1" in r.text and "Traceback" not in r.text


def test_a_pending_alert_shows_its_last_error_with_secrets_masked(site: Site) -> None:
    (claimed,) = [a for a in site.store.claim_alerts(worker="w", lease=60) if a.watchlist == "dprk"]
    site.store.mark_failed(
        [claimed],
        worker="w",
        error="connection refused by https://bot:hunter2secret@hooks.example/notify",
        next_attempt_at=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5),
        give_up=False,
    )
    page = re.sub(r"\s+", " ", site.http.get("/", params={"watchlist": "dprk"}).text)
    assert "mail: pending" in page
    assert "last error: connection refused by https://" in page
    assert "hunter2secret" not in page
    # A sent alert has no error to show.
    assert "last error" not in site.http.get("/", params={"watchlist": "kursk"}).text


def test_the_feeds_page_shows_urls_intervals_failing_first_and_a_banner(site: Site) -> None:
    now = dt.datetime.now(dt.UTC)
    secret = "https://api.example/rss?token=s3cr3tvalue&lang=en"
    rows = [FeedConfigRow(f.name, f.url, f.interval_s, f.language) for f in site.store.feeds()]
    rows += [FeedConfigRow("keyed", secret, 900, "en")]
    site.store.sync_feeds(rows)
    site.set_feed("desk", last_poll_at=now, state="ok", learned_interval_s=3600.0)
    for name in ("wire", "keyed"):
        site.set_feed(
            name,
            last_poll_at=now,
            state="backoff",
            consecutive_failures=2 if name == "wire" else 5,
            last_error_reason="connection",
            last_error=DNS,
            learned_interval_s=300.0,  # shorter than configured: not the one used, not shown
        )
    page = re.sub(r"\s+", " ", site.http.get("/feeds").text)
    assert "https://api.example/rss?token=***&amp;lang=en" in page and "s3cr3tvalue" not in page
    assert "https://desk.example/rss" in page
    order = re.findall(r'<tr id="feed-([\w-]+)"', page)
    assert order == ["keyed", "wire", "desk"]  # failing first, most failures first
    assert re.search(r'id="feed-desk".*?class="interval">10m<br><small class="muted">learned 1h</small>', page)
    assert re.search(r'id="feed-keyed".*?class="interval">15m</td>', page)
    assert re.search(r'id="feed-wire".*?class="interval">10m</td>', page)
    assert "2 of 3 feeds are failing with DNS errors: is this machine online?" in page
    assert 'id="idle-banner"' not in page  # polled just now


def test_next_poll_says_due_now_when_no_daemon_polls(site: Site) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    for name in ("desk", "wire"):
        site.set_feed(name, last_poll_at=long_ago, next_poll_at=long_ago + dt.timedelta(minutes=10))
    page = re.sub(r"\s+", " ", site.http.get("/feeds").text)
    assert f"No daemon has polled since {long_ago:%Y-%m-%d %H:%M} UTC (3h ago): the feeds are due now" in page
    assert page.count('class="next">due now <small class="muted">(no daemon polling)</small>') == 2
    assert 'ago</td> <td data-label="Last error"' not in page  # no next poll "in the past"

    site.set_feed("wire", last_poll_at=dt.datetime.now(dt.UTC))  # a daemon polled one: it runs
    page = re.sub(r"\s+", " ", site.http.get("/feeds").text)
    assert 'id="idle-banner"' not in page
    assert 'class="next">due now</td>' in page and 'class="next">in 9m</td>' in page

    site.set_feed("desk", state="disabled", next_poll_at=long_ago)  # gone (a 410): never polled again
    page = re.sub(r"\s+", " ", site.http.get("/feeds").text)
    assert re.search(r'id="feed-desk".*?class="next">—</td>', page) and 'id="idle-banner"' not in page


def add(site: Site, **form: str) -> httpx.Response:
    return site.http.post("/feeds/add", data={"csrf": site.csrf(), **form}, follow_redirects=True)


def test_adding_a_feed_from_the_page_works_like_feeds_add(site: Site) -> None:
    with HTTPTestServer() as http:
        feed = rss([Item("Une histoire", "https://x.example/1")], title="Le Monde – Asie-Pacifique")
        url = http.route("/feeds/asie.xml", Static(body=feed))
        page = (
            b"<!doctype html><html><head><title>Asie</title>"
            b'<link rel="alternate" type="application/rss+xml" title="Asie" href="feeds/asie.xml">'
            b"</head><body>news</body></html>"
        )
        home = http.route("/", Static(body=page, content_type="text/html; charset=utf-8"))
        http.route("/empty", Static(body=b"<!doctype html><html><head></head></html>", content_type="text/html"))

        r = add(site, url=home, interval="30m")  # a web page: the feed it announces is added
        assert r.status_code == 200 and str(r.url.path) == "/feeds", r.text
        text = re.sub(r"\s+", " ", r.text)
        assert "Added feed <strong>le-monde-asie-pacifique</strong>" in text
        assert f"{home} is a web page; it announces the feed {url}" in text
        assert "Le Monde – Asie-Pacifique: 1 entries" in text
        feed_cfg = load_config(site.path).config.feed("le-monde-asie-pacifique")
        assert feed_cfg.url == url and feed_cfg.interval == 1800
        assert site.path.read_text(encoding="utf-8").startswith("# the desk's config")
        assert site.saved == [1]  # the daemon is asked to reload

        again = add(site, url=url, name="again")
        assert again.status_code == 400
        assert "already configured as &#39;le-monde-asie-pacifique&#39;" in again.text
        assert f'value="{url}"' in again.text  # the form keeps what was typed

        empty = add(site, url=http.url("/empty"))
        assert empty.status_code == 400 and "no feed is announced on that page either" in empty.text
    assert [f.name for f in load_config(site.path).config.feeds] == ["le-monde-asie-pacifique"]
    assert site.saved == [1]


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("", "a feed needs a URL"),
        (
            "http://127.0.0.1:{port}/rss?token=s3cr3tvalue",
            "http://127.0.0.1:{port}/rss?token=*** was not added: connection",
        ),
        ("ftp://example.org/rss", "only http and https are supported"),
    ],
)
def test_a_feed_that_cannot_be_added_says_why(site: Site, url: str, error: str) -> None:
    with closed_port() as port:
        url = url.format(port=port)
        r = add(site, url=url)
    assert r.status_code == 400
    assert error.format(port=port) in r.text.replace("&#39;", "'")
    assert "s3cr3tvalue" not in r.text.replace(f'value="{url}"', "")  # only in the field the user typed it in
    assert load_config(site.path).config.feeds == [] and site.saved == []


def test_adding_a_feed_needs_the_form_token_and_web_editing(site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    assert site.http.post("/feeds/add", data={"url": "https://example.org/rss"}).status_code == 403
    assert 'id="add-feed"' in site.http.get("/feeds").text
    # A config file this process cannot write (a read-only /etc under systemd): no form, and a post is refused.
    monkeypatch.setattr("monitor.app.web.ui.os.access", lambda path, mode: False)
    page = site.http.get("/feeds").text
    assert 'id="add-feed"' not in page and "Web editing is not enabled" in page
    r = add(site, url="https://example.org/rss")
    assert r.status_code == 403 and "web editing is not enabled" in r.text
    assert load_config(site.path).config.feeds == []


def test_the_editor_lists_the_alias_groups(site: Site) -> None:
    page = re.sub(r"\s+", " ", site.http.get("/watchlists/new").text)
    assert '<dt id="alias-dprk" data-alias="dprk"><code>@dprk</code></dt>' in page
    assert "<dd><code>&#34;North Korea&#34; OR &#34;North Korean&#34; OR Pyongyang</code></dd>" in page
    assert "<dd><code>@kursk OR Donbas</code></dd>" in page


def test_the_cli_feeds_table_says_the_same(site: Site) -> None:
    long_ago = site.fail_unpolled(failures=1)
    out = CliRunner().invoke(cli, ["--config", str(site.path), "feeds"])
    assert out.exit_code == 0, out.output
    text = re.sub(r"\s+", " ", out.output)
    assert "2 of 2 feeds are failing with DNS errors: is this machine online?" in text
    assert f"No daemon has polled since {long_ago:%Y-%m-%d %H:%M} UTC (3h ago): the feeds are due now" in text
    assert text.count("due now") == 3 and " ago │ connection" not in text  # no next poll in the past
