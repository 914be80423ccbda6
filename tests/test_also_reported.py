""" "Also reported by": the other tellings of an alerted story's event, wherever the story is
shown — the alerts page and the story page, the per-watchlist Atom and JSON feeds, and the
messages (instant alerts and digests) sent to a local webhook and SMTP server.

One event (North Korea ratifies its defence treaty with Russia) is told by three outlets in
two languages, and the first telling is also carried by a second feed. Stories are stored
through the real ingest path: the config's matcher and clusterer, the Decider and
Store.apply_poll. Only the first telling alerts; the others are shown with it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import feedparser
import httpx
import pytest

from monitor.app.daemon import build_clusterer, build_watch
from monitor.app.deliver import Deliverer, Policies
from monitor.app.web import WebServer, WebState
from monitor.clustering.clusterer import Clusterer
from monitor.config.model import LoadedConfig, load_config
from monitor.delivery.notify import load_channels
from monitor.delivery.render import Renderer
from monitor.matching.matcher import Matcher
from monitor.storage.feeds import FeedConfigRow
from monitor.storage.store import Store
from tests.support.smtpserver import SMTPTestServer
from tests.support.stories import NOW, entry, record
from tests.support.webhook import WebhookReceiver

CONFIG = """\
database: {db}
timezone: Europe/Paris
targets:
  hook: {{url: "{hook}"}}
  mail: "{mail}"
aliases:
  dprk: '"North Korea" OR "North Korean" OR Pyongyang OR "Corée du Nord" OR "nord-coréen"'
  russia: 'Russia OR Russian OR Moscow OR Kremlin OR Russie OR Moscou'
  pact: 'treaty OR pact OR traité OR pacte'
watchlists:
  - name: pact
    query: '@pact AND @russia'
    notify: [hook, mail]
    mode: {mode}
    schedule: "0 8 * * *"
{extra}"""
#: A second watchlist that only the French telling matches: it alerts from that story.
TRAITE = """\
  - name: traite
    query: 'traité AND Russie'
    notify: [hook]
"""


@dataclass(frozen=True, slots=True)
class Telling:
    feed: str
    language: str
    title: str
    summary: str
    link: str


REUTERS = Telling(
    "reuters",
    "en",
    "North Korea ratifies defence treaty with Russia - Reuters",
    "Kim Jong Un ratified the mutual defence treaty with Russia by decree, KCNA said on Tuesday.",
    "https://reuters.example/world/north-korea-ratifies-treaty",
)
AFP = Telling(
    "afp",
    "fr",
    "Kim Jong-un ratifie le traité de défense avec la Russie (AFP)",
    "Le dirigeant nord-coréen Kim Jong-un a ratifié par décret le traité de défense mutuelle avec la Russie,"
    " selon KCNA.",
    "https://afp.example/monde/kim-ratifie-traite?id=42&src=rss",
)
# A feed's title is untrusted text: it must reach every page, feed and message inert.
YONHAP = Telling(
    "yonhap",
    "en",
    "(LEAD) N. Korea's Kim ratifies mutual defense treaty with Russia <script>alert(1)</script>",
    "North Korean leader Kim Jong Un has ratified the defense treaty with Russia by decree, state media KCNA said.",
    "https://yonhap.example/AEN20241112000351315",
)
FEEDS = {"reuters": "en", "afp": "fr", "yonhap": "en", "wire": "en"}


@dataclass
class World:
    path: Path
    loaded: LoadedConfig
    store: Store
    matcher: Matcher
    targets: Mapping[str, Sequence[str]]
    clusterer: Clusterer
    ids: dict[str, int]

    def tell(self, telling: Telling, *, feed: str | None = None, n: int = 0, now: dt.datetime = NOW) -> None:
        """A poll of ``feed`` (the telling's own by default) that carries ``telling``."""
        name = feed or telling.feed
        (snap,) = self.store.claim_due_feeds(worker="t", lease=60, now=now, force=True, names=[name])
        e = dataclasses.replace(
            entry(n, link=telling.link, title=telling.title, guid=None),
            summary=telling.summary,
            language=telling.language,
        )
        matches = {0: self.matcher.match(e.title, e.summary)}
        report = record(self.store, snap, [e], matches, targets=self.targets, now=now, clusters=self.clusterer)
        for sid in report.new_story_ids:
            self.ids[name] = sid


def make_world(
    tmp_path: Path,
    *,
    backend: tuple[str, str | None] | None = None,
    mode: str = "digest",
    hook: str = "json://127.0.0.1:9/",
    mail: str = "",
    extra: str = "",
) -> World:
    """The config, the store (SQLite, or the ``db_backend`` given) and the ingest parts."""
    url, schema = backend or (f"sqlite:///{tmp_path / 'monitor.db'}", None)
    if schema:
        url = f"{url}?options=-csearch_path%3D{schema}"
    path = tmp_path / "config.yaml"
    mail = mail or "mailto://127.0.0.1:9?from=a@example.org&to=b@example.org&mode=insecure"
    path.write_text(CONFIG.format(db=url, hook=hook, mail=mail, mode=mode, extra=extra), encoding="utf-8")
    loaded = load_config(path)
    store = Store(loaded.database_url, schema=schema)
    store.sync_feeds([FeedConfigRow(n, f"https://{n}.example/rss", 600, lang) for n, lang in FEEDS.items()], now=NOW)
    clusterer = build_clusterer(loaded.config)
    assert clusterer is not None
    watch = build_watch(loaded.config)
    return World(path, loaded, store, watch.matcher, watch.targets, clusterer, {})


def tell_everything(w: World) -> None:
    for n, telling in enumerate((REUTERS, AFP, YONHAP)):
        w.tell(telling, n=n, now=NOW + dt.timedelta(minutes=n))
    w.tell(REUTERS, feed="wire", now=NOW + dt.timedelta(minutes=5))  # the same article, another feed


def test_the_tellings_form_one_cluster_that_alerted_once(tmp_path: Path, db_backend: tuple[str, str | None]) -> None:
    w = make_world(tmp_path, backend=db_backend)
    try:
        tell_everything(w)
        members = w.store.cluster_members([w.ids["reuters"]])[w.ids["reuters"]]
        assert [m.feed for m in members] == ["reuters", "afp", "yonhap"]
        alerted = w.store.matched_stories(alerted_only=True)
        assert [(m.story_id, m.source) for m in alerted] == [(w.ids["reuters"], "reuters")]
        (story,) = alerted
        others = [(o.outlet, o.language, o.title, o.link) for o in story.also_reported_by]
        assert others == [
            ("wire", "en", REUTERS.title, REUTERS.link),
            ("afp", "fr", AFP.title, AFP.link),
            ("yonhap", "en", YONHAP.title, YONHAP.link),
        ]
        # A later telling's own (unalerted) match names the alerted one among its others.
        afp = next(m for m in w.store.matched_stories() if m.source == "afp")
        assert [o.outlet for o in afp.also_reported_by] == ["reuters", "yonhap"]
    finally:
        w.store.close()


# -- the web app ------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path, db_backend: tuple[str, str | None]) -> Iterator[tuple[World, httpx.Client]]:
    w = make_world(tmp_path, backend=db_backend)
    tell_everything(w)
    with serve(w) as http:
        yield w, http


@contextmanager
def serve(w: World) -> Iterator[httpx.Client]:
    state = WebState(
        config_path=str(w.path),
        loaded=lambda: load_config(w.path),
        store=w.store,
        scheduler_alive=lambda: True,
    )
    server = WebServer(state, "127.0.0.1", 0).start()
    http = httpx.Client(base_url=server.url, timeout=10)
    try:
        yield http
    finally:
        http.close()
        server.stop()
        w.store.close()


def _flat(html: str) -> str:
    return re.sub(r"\s+", " ", html)


def test_alerts_page_groups_the_other_tellings_under_the_alerted_story(site: tuple[World, httpx.Client]) -> None:
    w, http = site
    page = _flat(http.get("/").text)
    assert page.count('<article class="story">') == 1  # one event, one alert, one entry
    article = page.split('<article class="story">')[1].split("</article>")[0]
    assert f'<a href="{REUTERS.link}"' in article.split('class="also"')[0]
    also = article.split('class="also"')[1]
    assert re.search(r'<li><span class="source">wire</span> <span class="lang">en</span></li>', also)
    afp_link = AFP.link.replace("&", "&amp;")
    assert (
        f'<span class="source">afp</span> <span class="lang">fr</span>: '
        f'<a href="{afp_link}" rel="noopener noreferrer">{AFP.title}</a>'
    ) in also
    assert f'href="/stories/{w.ids["afp"]}"' in also and f'href="/stories/{w.ids["yonhap"]}"' in also
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in also and "<script>" not in page
    assert also.index(">afp<") < also.index(">yonhap<")  # first seen first


def test_a_cluster_that_alerted_two_watchlists_is_one_entry(tmp_path: Path) -> None:
    w = make_world(tmp_path, extra=TRAITE)
    tell_everything(w)
    with serve(w) as http:
        page = _flat(http.get("/").text)
    assert page.count('<article class="story">') == 1
    article = page.split('<article class="story">')[1]
    head, also = article.split('class="also"')
    # Led by its latest alerted story (the French one, for "traite"), naming both watchlists.
    assert f'<a href="{AFP.link.replace("&", "&amp;")}"' in head
    assert re.findall(r'class="wl" href="/watchlists/(\w+)/edit"', article) == ["traite", "pact"]
    assert f'<a href="{REUTERS.link}" rel="noopener noreferrer">{REUTERS.title}</a>' in also
    assert ">yonhap<" in also and ">afp<" not in also


def test_story_page_lists_the_other_tellings(site: tuple[World, httpx.Client]) -> None:
    w, http = site
    page = _flat(http.get(f"/stories/{w.ids['reuters']}").text)
    also = page.split("Also reported by")[1]
    assert f'<a href="/stories/{w.ids["afp"]}">{AFP.title}</a>' in also
    assert f'href="{AFP.link.replace("&", "&amp;")}"' in also
    assert "&lt;script&gt;" in also and "<script>" not in page


def test_watchlist_feeds_carry_the_other_tellings(site: tuple[World, httpx.Client]) -> None:
    w, http = site
    r = http.get("/watchlists/pact.atom")
    assert b"<script>" not in r.content
    parsed = feedparser.parse(r.content)
    assert not parsed.bozo
    (entry_,) = parsed.entries
    related = [(link.href, link.get("title")) for link in entry_.links if link.rel == "related"]
    assert related == [
        (AFP.link, f'afp (fr): "{AFP.title}"'),
        (YONHAP.link, f'yonhap (en): "{YONHAP.title}"'),
    ]  # the same article in another feed has no link of its own
    assert (
        f'Also reported by: wire (en); afp (fr): "{AFP.title}" <{AFP.link}>; yonhap (en): "{YONHAP.title}"'
        in entry_.summary
    )

    doc = http.get("/watchlists/pact.json").json()
    (item,) = doc["items"]
    assert item["_news_monitor"]["also_reported_by"] == [
        {"outlet": "wire", "language": "en", "title": REUTERS.title, "url": REUTERS.link},
        {"outlet": "afp", "language": "fr", "title": AFP.title, "url": AFP.link},
        {"outlet": "yonhap", "language": "en", "title": YONHAP.title, "url": YONHAP.link},
    ]
    assert f'afp (fr): "{AFP.title}" <{AFP.link}>' in item["content_text"]
    html = item["content_html"]
    assert f'<li>afp (fr): <a href="{AFP.link.replace("&", "&amp;")}">{AFP.title}</a></li>' in html
    assert "<li>wire (en)</li>" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html


# -- messages -----------------------------------------------------------------------------


@pytest.fixture
def servers() -> Iterator[tuple[SMTPTestServer, WebhookReceiver]]:
    with SMTPTestServer() as smtp, WebhookReceiver() as hook:
        yield smtp, hook


def deliverer(w: World, clock: list[dt.datetime]) -> Deliverer:
    config = w.loaded.config
    return Deliverer(
        w.store,
        load_channels(config.target_urls, timeout=5),
        Renderer(timezone=config.timezone),
        config.delivery,
        worker="host:1:x",
        policies=Policies.from_config(config),
        clock=lambda: clock[0],
        rand=lambda: 1.0,
    )


def test_the_digest_lists_the_other_tellings_under_the_story(
    tmp_path: Path, db_backend: tuple[str, str | None], servers: tuple[SMTPTestServer, WebhookReceiver]
) -> None:
    smtp, hook = servers
    w = make_world(tmp_path, backend=db_backend, hook=hook.apprise_json_url("/h"), mail=smtp.apprise_url())
    clock = [NOW + dt.timedelta(minutes=10)]
    d = deliverer(w, clock)
    try:
        w.tell(REUTERS, n=0)
        assert d.deliver().held == 2  # a digest watchlist: held for 08:00, for both targets
        w.tell(AFP, n=1, now=NOW + dt.timedelta(minutes=1))
        w.tell(YONHAP, n=2, now=NOW + dt.timedelta(minutes=2))
        w.tell(REUTERS, feed="wire", now=NOW + dt.timedelta(minutes=5))
        clock[0] = dt.datetime.fromisoformat("2026-11-27T08:00:00+01:00")
        report = d.deliver()
        assert (report.messages, report.sent) == (2, 2)  # one digest per target, nothing for the later tellings

        (post,) = hook.hooks
        text = post.json["message"]
        assert post.json["title"] == "news-monitor digest: 1 story (pact)"
        assert REUTERS.title in text
        assert (
            "  Also reported by:\n"
            "  - wire (en)\n"
            f"  - afp (fr): {AFP.title}\n"
            f"    {AFP.link}\n"
            f"  - yonhap (en): {YONHAP.title}\n"
            f"    {YONHAP.link}\n"
        ) in text + "\n"

        (mail,) = smtp.wait_for(1)
        html_part = mail.get_body(("html",))
        assert html_part is not None
        html = _flat(html_part.get_content())
        afp_link = AFP.link.replace("&", "&amp;")
        assert f'<li>afp (fr): {AFP.title} <a href="{afp_link}"' in html
        assert "<li>wire (en)</li>" in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>" not in html
        assert d.deliver().messages == 0
    finally:
        w.store.close()


def test_an_instant_alert_lists_the_tellings_known_when_it_is_sent(
    tmp_path: Path, servers: tuple[SMTPTestServer, WebhookReceiver]
) -> None:
    smtp, hook = servers
    w = make_world(tmp_path, mode="instant", hook=hook.apprise_json_url("/h"), mail=smtp.apprise_url())
    clock = [NOW + dt.timedelta(minutes=10)]
    d = deliverer(w, clock)
    try:
        w.tell(REUTERS, n=0)
        w.tell(AFP, n=1, now=NOW + dt.timedelta(minutes=1))
        assert d.deliver().messages == 2
        (post,) = hook.hooks
        assert f"Also reported by:\n- afp (fr): {AFP.title}\n  {AFP.link}" in post.json["message"]
        assert "yonhap" not in post.json["message"]  # not told yet
        w.tell(YONHAP, n=2, now=NOW + dt.timedelta(minutes=2))
        assert d.deliver().messages == 0  # a later telling never alerts again
    finally:
        w.store.close()
