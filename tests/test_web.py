"""The web page over a real socket: pages, live preview, saving, feeds, health, metrics, security."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path

import feedparser
import httpx
import pytest

from monitor.app.metrics import Metrics
from monitor.app.poll import CycleReport, FeedOutcome
from monitor.app.services.backtests import watchlist_matcher
from monitor.app.web import WebServer, WebState
from monitor.config.model import load_config
from monitor.storage.store import Store
from tests.test_backtest import STORIES, seed

CONFIG = """\
# the desk's config
database: {db}
targets:
  mail: 'json://127.0.0.1:9/'
  slack: 'json://127.0.0.1:8/'
aliases:
  dprk: '"North Korea" OR "North Korean" OR Pyongyang OR "Corée du Nord"'
watchlists:
  - name: kursk-troops
    query: '@dprk AND (troops OR soldats OR soldiers) AND (Kursk OR Koursk)'
    notify: [mail]
"""


class Site:
    def __init__(self, path: Path, store: Store, server: WebServer, saved: list[int], alive: list[bool]) -> None:
        self.path, self.store, self.server, self.saved, self.alive = path, store, server, saved, alive
        self.http = httpx.Client(base_url=server.url, timeout=10)

    def csrf(self) -> str:
        page = self.http.get("/watchlists/new").text
        m = re.search(r'name="csrf-token" content="([0-9a-f]+)"', page)
        assert m
        return m.group(1)

    def preview(self, **form: str | list[str]) -> str:
        r = self.http.post("/watchlists/preview", data=form, headers={"X-CSRF-Token": self.csrf()})
        assert r.status_code == 200, r.text
        return re.sub(r"\s+", " ", r.text)


@pytest.fixture
def site(db_backend: tuple[str, str | None], tmp_path: Path) -> Iterator[Site]:
    url, schema = db_backend
    if schema:
        url = f"{url}?options=-csearch_path%3D{schema}"
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(db=url), encoding="utf-8")
    loaded = load_config(path)
    store = Store(loaded.database_url, schema=schema)
    matcher = watchlist_matcher(loaded.config, "kursk-troops")
    ids = seed(store, STORIES, matcher=matcher, targets={"kursk-troops": ("mail",)})
    # The same troops story seen in a second feed: "also reported by".
    seed(store, STORIES[:1], feed="wire", same_as="desk")
    assert ids
    saved: list[int] = []
    alive = [True]
    state = WebState(
        config_path=str(path),
        loaded=lambda: load_config(path),
        store=store,
        scheduler_alive=lambda: alive[0],
        metrics=Metrics(store=lambda: store),
        on_saved=lambda: saved.append(1),
    )
    server = WebServer(state, "127.0.0.1", 0).start()
    s = Site(path, store, server, saved, alive)
    try:
        yield s
    finally:
        s.http.close()
        server.stop()
        store.close()


def test_alerts_page_highlights_terms_and_names_other_sources(site: Site) -> None:
    page = site.http.get("/").text
    assert "<mark>North Korean</mark> <mark>troops</mark> fighting in <mark>Kursk</mark>" in page
    also = re.sub(r"\s+", " ", page).split('class="also"')[1]
    assert '<span class="also-head">Also reported by</span> <ul> <li><span class="source">wire</span>' in also
    assert "mail: pending" in page
    assert "Kursk submarine" not in page  # not alerted


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/feeds", ["desk", "wire", "Last error"]),
        ("/watchlists", ["kursk-troops", "/watchlists/kursk-troops.atom", 'data-label="Matches (7 days)">3</td>']),
        ("/watchlists/new", ['name="query"', 'value="mail"', 'value="slack"', "Live preview"]),
        ("/watchlists/kursk-troops/edit", ["@dprk AND (troops", 'name="original" value="kursk-troops"']),
        ("/search?q=koursk", ["<mark>Koursk</mark>", "La Corée du Nord"]),
        ("/watchlists/nope/edit", ["No such watchlist"]),
    ],
)
def test_pages_render(site: Site, path: str, expected: list[str]) -> None:
    r = site.http.get(path)
    assert r.status_code == (404 if "nope" in path else 200)
    for text in expected:
        assert text in r.text


def test_search_page_takes_the_watchlist_query_language(site: Site) -> None:
    r = site.http.get("/search", params={"q": "@dprk AND (Kursk OR Koursk) NOT soldats"})
    assert r.status_code == 200
    assert "<mark>North Korean</mark> troops fighting in <mark>Kursk</mark>" in r.text  # the matcher's hits
    assert "La Corée du Nord" not in r.text  # its summary says soldats
    bad = site.http.get("/search", params={"q": "Kursk or Koursk"})
    assert bad.status_code == 400
    assert "ambiguous lower-case &#39;or&#39; at column 7" in bad.text
    assert "Kursk or Koursk\n      ^" in bad.text  # the caret under the column


def test_story_page(site: Site) -> None:
    sid = site.store.matched_stories(watchlist="kursk-troops")[-1].story_id
    page = site.http.get(f"/stories/{sid}").text
    assert "North Korean troops fighting in Kursk" in page and "wire" in page and "mail" in page
    assert site.http.get("/stories/999999").status_code == 404


def test_live_preview_counts_highlights_and_compares(site: Site) -> None:
    html = site.preview(query="Kursk -submarine", days="7", original="kursk-troops")
    assert "<strong>2</strong> of 5 stories of the last 7 days would match" in html
    assert "+1" in html and "−1" in html  # nuclear plant gained, the French story lost
    assert "<mark>Kursk</mark> nuclear plant" in html
    assert "Kursk submarine" not in html.split("would not match")[0]
    assert "<strong>4</strong> of 6 stories" in site.preview(query="kursk", days="30")  # the 3-week-old one too
    html = site.preview(query="Kursk AND (troops", days="7")
    assert "unclosed &#39;(&#39;" in html and "column 18" in html
    assert "Kursk AND (troops ^" in html  # the caret under the column
    assert "Type a query" in site.preview(query="  ")
    html = site.preview(query="sanction", stem=["en"], days="7")
    assert "<mark>sanctions</mark>" in html


def test_save_writes_the_file_and_asks_for_a_reload(site: Site) -> None:
    before = site.path.read_text(encoding="utf-8")
    form = {
        "csrf": site.csrf(),
        "name": "kursk-all",
        "query": "Kursk OR Koursk",
        "notify": ["mail", "slack"],
        "stem": ["en"],
        "enabled": "1",
    }
    r = site.http.post("/watchlists/save", data=form)
    assert r.status_code == 303 and r.headers["location"] == "/watchlists?saved=kursk-all"
    assert site.saved == [1]
    after = site.path.read_text(encoding="utf-8")
    assert after.startswith(before)  # appended; the rest of the file untouched
    wl = load_config(site.path).config.watchlist("kursk-all")
    assert (wl.query, wl.notify, wl.stem, wl.enabled) == ("Kursk OR Koursk", ["mail", "slack"], ["en"], True)
    assert "Saved watchlist <strong>kursk-all</strong>" in site.http.get("/watchlists?saved=kursk-all").text


def test_editing_with_backfill_queues_old_matches(site: Site) -> None:
    page = site.http.get("/watchlists/kursk-troops/edit").text
    base = re.search(r'name="base" value="([0-9a-f]+)"', page)
    assert base
    form = {
        "csrf": site.csrf(),
        "original": "kursk-troops",
        "base": base.group(1),
        "name": "kursk-troops",
        "query": "Kursk",
        "notify": ["mail"],
        "enabled": "1",
        "backfill": "2",
    }
    r = site.http.post("/watchlists/save", data=form)
    assert r.status_code == 303
    assert "backfill%3A+3+stories+scanned%2C+1+alerts+queued" in r.headers["location"]  # the submarine
    assert load_config(site.path).config.watchlist("kursk-troops").query == "Kursk"
    # Saving again from the page opened before the first save is refused: it would undo it.
    r = site.http.post("/watchlists/save", data=form | {"query": "Kursk OR Koursk"})
    assert r.status_code == 400 and "was changed in the file since this page was opened" in r.text


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"name": "kursk-troops", "query": "x", "notify": "mail"}, "already exists"),
        ({"name": "new", "query": "x AND", "notify": "mail"}, "column 6"),
        ({"name": "new", "query": "x", "notify": "pager"}, "unknown target &#39;pager&#39;"),
        ({"name": "", "query": "x", "notify": "mail"}, "needs a name"),
        ({"name": "new", "query": "x"}, "needs at least one target"),
        ({"name": "new", "query": "x", "notify": "mail", "backfill": "-1"}, "backfill: a number of days"),
    ],
)
def test_invalid_saves_show_the_error_and_write_nothing(site: Site, form: dict[str, str], error: str) -> None:
    before = site.path.read_text(encoding="utf-8")
    r = site.http.post("/watchlists/save", data={"csrf": site.csrf(), "enabled": "1", **form})
    assert r.status_code == 400
    assert error in r.text
    assert site.path.read_text(encoding="utf-8") == before and site.saved == []


def test_delete(site: Site) -> None:
    r = site.http.post("/watchlists/kursk-troops/delete", data={"csrf": site.csrf()})
    assert r.status_code == 303 and site.saved == [1]
    assert load_config(site.path).config.watchlists == []


def test_per_watchlist_atom_and_json_feeds(site: Site) -> None:
    r = site.http.get("/watchlists/kursk-troops.atom")
    assert r.headers["content-type"].startswith("application/atom+xml")
    parsed = feedparser.parse(r.content)
    assert not parsed.bozo and parsed.feed.title == "news-monitor: kursk-troops"
    titles = [e.title for e in parsed.entries]
    assert "North Korean troops fighting in Kursk, Seoul says" in titles and len(titles) == 3
    entry = parsed.entries[titles.index("North Korean troops fighting in Kursk, Seoul says")]
    assert entry.link.startswith("https://desk.example/")
    assert {"Pyongyang", "Kursk"} <= {t.term for t in entry.tags}
    assert "Also reported by: wire (en)." in entry.summary

    doc = site.http.get("/watchlists/kursk-troops.json").json()
    assert doc["version"] == "https://jsonfeed.org/version/1.1" and len(doc["items"]) == 3
    item = next(i for i in doc["items"] if i["title"].startswith("North Korean troops"))
    assert [o["outlet"] for o in item["_news_monitor"]["also_reported_by"]] == ["wire"] and "troops" in item["tags"]
    assert site.http.get("/watchlists/nope.atom").status_code == 404


def test_healthz_needs_the_scheduler_and_the_database(site: Site) -> None:
    r = site.http.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "database": "ok", "scheduler": "running"}
    site.alive[0] = False
    r = site.http.get("/healthz")
    assert r.status_code == 503 and r.json()["scheduler"] == "stopped"


def test_healthz_and_metrics_when_the_database_is_down(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("targets: {m: 'json://127.0.0.1:9/'}\n", encoding="utf-8")
    down = Store("postgresql+psycopg://nobody@127.0.0.1:1/none", create=False)  # nothing listens
    state = WebState(str(path), lambda: load_config(path), down, scheduler_alive=lambda: True)
    server = WebServer(state, "127.0.0.1", 0).start()
    try:
        r = httpx.get(server.url + "/healthz", timeout=30)
        assert r.status_code == 503 and r.json()["database"] == "unreachable"
        metrics = httpx.get(server.url + "/metrics", timeout=30).text
        assert "news_monitor_database_up 0.0" in metrics
    finally:
        server.stop()
        down.close()


def test_metrics_counts_what_the_daemon_reports_and_what_the_database_holds(site: Site) -> None:
    metrics = site.server.state.metrics
    assert metrics is not None
    report = CycleReport(started_at=dt.datetime.now(dt.UTC), duration=1.5)
    report.outcomes += [
        FeedOutcome("desk", "new", new=3, matched=1, alerts=2),
        FeedOutcome("wire", "error", reason="timeout", error="read timed out"),
        FeedOutcome("other", "unchanged"),
    ]
    metrics.observe_cycle(report)
    text = site.http.get("/metrics").text
    for line in (
        'news_monitor_polls_total{outcome="new"} 1.0',
        'news_monitor_polls_total{outcome="error"} 1.0',
        'news_monitor_poll_errors_total{reason="timeout"} 1.0',
        "news_monitor_new_stories_total 3.0",
        "news_monitor_alerts_queued_total 2.0",
        "news_monitor_cycle_duration_seconds_count 1.0",
        "news_monitor_stories 6.0",
        "news_monitor_matches 3.0",
        'news_monitor_alerts{status="pending"} 3.0',
        'news_monitor_feeds{state="new"} 2.0',
        "news_monitor_database_up 1.0",
    ):
        assert line in text, line


def test_csrf_and_host_checks(site: Site) -> None:
    form = {"name": "x", "query": "x", "notify": "mail"}
    assert site.http.post("/watchlists/save", data=form).status_code == 403
    assert site.http.post("/watchlists/save", data=form | {"csrf": "0" * 64}).status_code == 403
    assert site.http.post("/watchlists/preview", json={"query": "x"}).status_code == 403
    assert site.http.post("/watchlists/kursk-troops/delete").status_code == 403
    rebinding = site.http.get("/", headers={"Host": "attacker.example:8080"})
    assert rebinding.status_code == 421
    assert site.http.get("/", headers={"Host": f"localhost:{site.server.port}"}).status_code == 200
    assert load_config(site.path).config.watchlists[0].name == "kursk-troops"


def test_a_token_when_set_guards_everything_but_healthz(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        f"database: sqlite:///{tmp_path / 'm.db'}\ntargets: {{m: 'json://127.0.0.1:9/'}}\n", encoding="utf-8"
    )
    store = Store(load_config(path).database_url)
    token = "s3cret-token-for-tests"
    server = WebServer(WebState(str(path), lambda: load_config(path), store), "127.0.0.1", 0, token=token).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/healthz").status_code == 200  # open: up or down only
            assert client.get("/watchlists").status_code == 401
            r = client.get("/watchlists", headers={"Accept": "text/html"})
            assert r.status_code == 303 and r.headers["location"] == "/login?next=/watchlists"
            assert client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
            assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
            assert client.get(f"/watchlists?token={token}").status_code == 200  # feed readers
            assert client.post("/login", data={"token": "wrong"}).status_code == 401
            r = client.post("/login?next=/feeds", data={"token": token})
            assert r.status_code == 303 and r.headers["location"] == "/feeds"
            cookie = r.headers["set-cookie"]
            assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
            assert token not in cookie
            assert client.get("/feeds").status_code == 200  # the cookie now
            r = client.post("/login?next=//evil.example/", data={"token": token})
            assert r.headers["location"] == "/"  # no open redirect
    finally:
        server.stop()
        store.close()


def test_a_non_loopback_address_without_token_is_refused(tmp_path: Path) -> None:
    from monitor.errors import ConfigError

    path = tmp_path / "config.yaml"
    path.write_text("targets: {m: 'json://127.0.0.1:9/'}\n", encoding="utf-8")
    state = WebState(str(path), lambda: load_config(path), Store(f"sqlite:///{tmp_path / 'm.db'}"))
    with pytest.raises(ConfigError, match="needs a token"):
        WebServer(state, "0.0.0.0", 0)
    state.store.close()


def test_inside_the_daemon_health_and_metrics_follow_the_scheduler(tmp_path: Path) -> None:
    import signal

    from tests.support.daemon import DaemonProcess
    from tests.support.feeds import Item, rss
    from tests.support.httpserver import HTTPTestServer, Static

    with HTTPTestServer() as feeds:
        feeds.route("/f.xml", Static(body=rss([Item("A story", "https://x.example/1")])))
        path = tmp_path / "config.yaml"
        path.write_text(
            "database: sqlite:///m.db\nweb: {listen: '127.0.0.1:0'}\n"
            "poll: {tick: 0.5s, timeout: 2s, deadline: 3s}\n"
            f"feeds: [{{name: f, url: '{feeds.url('/f.xml')}'}}]\n",
            encoding="utf-8",
        )
        daemon = DaemonProcess(path)
        try:
            line = daemon.wait_for_log(r"web interface on http://127\.0\.0\.1:\d+")
            base = line[line.index("http://") :].strip()
            daemon.wait_for_log(r"cycle: 1 feeds polled")  # the cycle is over: its metrics are in
            health = httpx.get(base + "/healthz", timeout=10)
            assert health.status_code == 200 and health.json()["scheduler"] == "running"
            text = httpx.get(base + "/metrics", timeout=10).text
            assert 'news_monitor_polls_total{outcome="new"} 1.0' in text
            assert "news_monitor_cycles_total" in text and "news_monitor_stories 1.0" in text
            daemon.signal(signal.SIGTERM)
            assert daemon.proc.wait(30) == 0
        finally:
            daemon.kill()


def test_news_monitor_web_runs_alone(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "config.yaml"
    path.write_text("database: sqlite:///m.db\ntargets: {m: 'json://127.0.0.1:9/'}\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWS_MONITOR")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "--config", str(path), "web", "--listen", "127.0.0.1:0"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 30
        base = ""
        while not base and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if "web interface on " in line:
                base = line[line.index("http://") :].strip()
        assert base, "the web command did not start"
        health = httpx.get(base + "/healthz", timeout=10)
        assert health.status_code == 200 and health.json()["scheduler"] == "not run by this process"
        assert "No watchlists yet" in httpx.get(base + "/watchlists", timeout=10).text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    refused = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(path), "web", "--listen", "0.0.0.0:0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert refused.returncode == 1 and "without a token" in refused.stderr
