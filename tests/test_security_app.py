"""The command line and the web app against hostile input: nothing leaks, nothing crashes.

Feed URLs with credentials, story links with user-info, server text full of rich
markup, non-ASCII tokens, absurd numbers, hostile stdin, a database that is down or
refuses writes, secrets missing from the shell, feeds pointing at this machine.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from monitor.app.cli import cli
from monitor.app.deliver import DeliveryReport
from monitor.app.metrics import FAILING_AFTER, Metrics
from monitor.app.poll import CycleReport, FeedOutcome
from monitor.app.web import WebServer, WebState
from monitor.config.model import load_config
from monitor.storage.feeds import FeedConfigRow
from monitor.storage.store import Store
from tests.support.stories import entry, poll_failed, record, result

ROOT = Path(__file__).resolve().parent.parent
FEED_URL = "http://reader:hunter2@127.0.0.1:9/rss?token=s3cr3t-tok&edition=int"
LINK = "http://user:pw-in-link@news.example.org/story/1"
LONG_TITLE = "Kursk: troops seen " + "W" * 500  # no break opportunity in 500 characters
MARKUP_ERROR = "HTTP 500 [/bold] moved to [link=https://evil.example/]click[/link]"
CONFIG = """\
database: {db}
targets:
  mail: 'json://127.0.0.1:9/'
watchlists:
  - name: w
    query: 'Kursk'
    notify: [mail]
"""


@dataclass
class World:
    path: Path
    store: Store
    story_id: int

    def cli(self, *args: str, stdin: str | bytes | None = None, env: dict[str, str | None] | None = None) -> Result:
        return CliRunner().invoke(cli, ["--config", str(self.path), *args], input=stdin, env=env)


@pytest.fixture
def world(db_backend: tuple[str, str | None], tmp_path: Path) -> Iterator[World]:
    """A feed whose URL carries credentials and whose last error is rich markup, and a
    matched story whose link carries user-info."""
    url, schema = db_backend
    if schema:  # the CLI opens the database itself: point it at the test's schema
        url = f"{url}?options=-csearch_path%3D{schema}"
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(db=url), encoding="utf-8")
    store = Store(load_config(path).database_url, schema=schema)
    now = dt.datetime.now(dt.UTC)
    store.sync_feeds([FeedConfigRow("desk", FEED_URL, 600, "en")])
    (snap,) = store.claim_due_feeds(worker="test", lease=60, force=True)
    story = entry(1, link=LINK, title=LONG_TITLE)
    report = record(store, snap, [story], {0: [result("w")]}, targets={"w": ("mail",)}, now=now)
    poll_failed(store, snap.id, since=now, reason="http_500", message=f"127.0.0.1:9/rss: {MARKUP_ERROR}")
    try:
        yield World(path, store, report.new_story_ids[0])
    finally:
        store.close()


@pytest.fixture
def site(world: World) -> Iterator[httpx.Client]:
    state = WebState(config_path=str(world.path), loaded=lambda: load_config(world.path), store=world.store)
    server = WebServer(state, "127.0.0.1", 0).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            yield client
    finally:
        server.stop()


SECRETS = ("hunter2", "s3cr3t-tok", "pw-in-link", "reader:")


@pytest.mark.parametrize(
    ("where", "what", "shown"),
    [
        ("cli", "feeds", "HTTP 500"),
        ("cli", "feeds --json", "127.0.0.1:9/rss?token=***&edition=int"),
        ("cli", "stories show {id}", "link:      http://news.example.org/story/1"),
        ("cli", "stories show {id} --json", '"link": "http://news.example.org/story/1"'),
        ("cli", "stories search kursk --json", '"link": "http://news.example.org/story/1"'),
        ("web", "/feeds", "127.0.0.1:9/rss?token=***&amp;edition=int"),
        ("web", "/", 'href="http://news.example.org/story/1"'),
        ("web", "/search?q=kursk", 'href="http://news.example.org/story/1"'),
        ("web", "/stories/{id}", 'href="http://news.example.org/story/1"'),
        ("web", "/watchlists/w.atom", 'href="http://news.example.org/story/1"'),
        ("web", "/watchlists/w.json", '"url":"http://news.example.org/story/1"'),
    ],
)
def test_credentials_in_feed_urls_and_links_are_never_shown(
    world: World, site: httpx.Client, where: str, what: str, shown: str
) -> None:
    if where == "cli":
        out = world.cli(*what.format(id=world.story_id).split())
        assert out.exit_code == 0, out.output
        text = out.output
    else:
        r = site.get(what.format(id=world.story_id))
        assert r.status_code == 200, r.text
        text = r.text
    assert shown in text
    for secret in SECRETS:
        assert secret not in text


def test_server_text_reaches_the_terminal_as_text(world: World) -> None:
    out = world.cli("feeds")
    assert out.exit_code == 0, out.output
    flat = re.sub(r"\s+", "", out.output)  # the table folds long cells
    assert re.sub(r"\s+", "", MARKUP_ERROR) in flat
    assert "Traceback" not in out.output


@pytest.mark.parametrize(
    ("events", "status", "reason"),
    [
        ([], 200, None),
        (["cycle_failed"] * (FAILING_AFTER - 1), 200, None),
        (["cycle_failed"] * FAILING_AFTER, 503, f"the last {FAILING_AFTER} poll runs failed"),
        (["store_refused"] * FAILING_AFTER, 503, "results not stored: attempt to write a readonly database"),
        (["cycle_failed"] * FAILING_AFTER + ["cycle_ok"], 200, None),
        (["delivery_failed"] * FAILING_AFTER, 503, f"the last {FAILING_AFTER} delivery runs failed"),
        (["delivery_failed"] * FAILING_AFTER + ["delivery_ok"], 200, None),
    ],
)
def test_healthz_fails_while_the_daemon_keeps_failing(
    world: World, events: list[str], status: int, reason: str | None
) -> None:
    metrics = Metrics(store=lambda: world.store)
    state = WebState(
        config_path=str(world.path),
        loaded=lambda: load_config(world.path),
        store=world.store,
        scheduler_alive=lambda: True,
        metrics=metrics,
    )
    now = dt.datetime.now(dt.UTC)
    refused = FeedOutcome("desk", "error", reason="store", error="attempt to write a readonly database")
    record_event = {  # what the daemon's jobs report after each run
        "cycle_failed": lambda: metrics.cycle_failed("database: disk I/O error"),
        "store_refused": lambda: metrics.observe_cycle(CycleReport(now, 0.1, [refused])),
        "cycle_ok": lambda: metrics.observe_cycle(CycleReport(now, 0.1, [FeedOutcome("desk", "unchanged")])),
        "delivery_failed": lambda: metrics.delivery_failed("database: disk I/O error"),
        "delivery_ok": lambda: metrics.observe_delivery(DeliveryReport(sent=1, messages=1)),
    }
    for event in events:
        record_event[event]()
    server = WebServer(state, "127.0.0.1", 0).start()
    try:
        r = httpx.get(f"{server.url}/healthz", timeout=10)
        assert r.status_code == status, r.text
        assert r.json().get("reason") == reason or reason is not None and reason in r.json()["reason"]
        scraped = httpx.get(f"{server.url}/metrics", timeout=10).text
    finally:
        server.stop()
    cycles = events.count("cycle_failed") + events.count("store_refused")
    assert f"news_monitor_cycle_failures_total {float(cycles)}" in scraped
    assert f"news_monitor_delivery_failures_total {float(events.count('delivery_failed'))}" in scraped


TOKEN = "the-web-token"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "/", {"headers": {"Authorization": "Bearer tökén".encode()}}, 401),
        ("GET", "/?token=tökén", {}, 401),
        ("GET", "/watchlists/w.atom?token=%FF%FE", {}, 401),
        ("POST", "/login", {"data": {"token": "tökén"}}, 401),
        ("POST", "/watchlists/preview", {"headers": {"X-CSRF-Token": "ç∂".encode()}}, 403),
        ("POST", "/watchlists/preview", {"data": {"csrf": "ç∂", "query": "Kursk"}}, 403),
        ("POST", "/watchlists/w/delete", {"data": {"csrf": "ç∂"}}, 403),
    ],
)
def test_non_ascii_tokens_are_refused_not_a_crash(
    world: World, method: str, path: str, kwargs: dict[str, object], status: int
) -> None:
    state = WebState(config_path=str(world.path), loaded=lambda: load_config(world.path), store=world.store)
    server = WebServer(state, "127.0.0.1", 0, token=TOKEN).start()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            if method == "POST" and path != "/login":
                client.headers["Authorization"] = f"Bearer {TOKEN}"
            r = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    finally:
        server.stop()
    assert r.status_code == status, r.text
    assert "Traceback" not in r.text and "Internal Server Error" not in r.text
    assert world.path.read_text(encoding="utf-8").count("name: w") == 1  # nothing was removed


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/search?q=kursk&days=inf", 400, "at most 36600"),
        ("/search?q=kursk&days=nan", 400, "at most 36600"),
        ("/search?q=kursk&days=1e308", 400, "at most 36600"),
        ("/search?q=kursk&days=-1", 400, "greater than 0"),
        ("/search?q=kursk&days=30", 200, "Kursk"),
        ("/stories/99999999999999999999999999", 404, "No such story"),
        ("/stories/9223372036854775808", 404, "No such story"),
    ],
)
def test_absurd_numbers_in_the_web_app(site: httpx.Client, path: str, status: int, says: str) -> None:
    r = site.get(path)
    assert r.status_code == status, r.text
    assert says in r.text


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["stories", "search", "kursk", "--since", "99999999d"], 2, "--since"),
        (["stories", "search", "kursk", "--since", "infd"], 2, "--since"),
        (["watchlist", "test", "w", "--days", "inf"], 2, "at most 36600"),
        (["watchlist", "test", "w", "--days", "nan"], 2, "at most 36600"),
        (["watchlist", "test", "w", "--days", "1e400"], 2, "at most 36600"),
        (["stories", "show", "99999999999999999999999999"], 1, "no story #99999999999999999999999999"),
        (["stories", "show", "--", "-5"], 1, "no story #-5"),
    ],
)
def test_absurd_numbers_on_the_command_line(world: World, args: list[str], code: int, says: str) -> None:
    out = world.cli(*args)
    assert out.exit_code == code, out.output
    assert says in out.output
    assert "Traceback" not in out.output
    assert out.exception is None or isinstance(out.exception, SystemExit)


GOOD = '{"id": "next", "title": "Kursk troops", "summary": ""}'


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"[" * 200_000, "nested deeper than 32 levels"),
        (b'{"id": ' + b"[" * 40 + b"]" * 40 + b', "title": "Kursk"}', "nested deeper than 32 levels"),
        (b'{"id": 1e999, "title": "Kursk"}', "out of range"),
        (b'{"id": NaN, "title": "Kursk"}', "NaN is not a number JSON allows"),
        (b'{"id": Infinity, "title": "Kursk"}', "Infinity is not a number JSON allows"),
        (b'{"id": ' + b"9" * 5000 + b"}", "invalid JSON object"),
        (b'{"id": "' + b"x" * (1 << 20) + b'"}', "line longer than 1048576 bytes"),
        (b"{nope", "invalid JSON object"),
        (b"[1, 2]", "not a JSON object"),
    ],
)
def test_match_answers_each_bad_line_and_goes_on(line: bytes, error: str) -> None:
    stdin = line + b"\n" + GOOD.encode() + b"\n"
    out = CliRunner().invoke(cli, ["--config", str(ROOT / "config.yaml"), "match"], input=stdin)
    assert out.exit_code == 1
    (complaint, summary) = out.stderr.splitlines()  # one line for the bad input, then the count
    assert complaint.startswith("stdin line 1: invalid JSON object: ") and error in complaint
    assert len(complaint) < 200 and summary == "Error: 1 input line(s) could not be read (see above)"
    (answer,) = [json.loads(x) for x in out.stdout.splitlines()]
    assert answer["id"] == "next"


def test_match_reads_non_utf8_input_with_replacement() -> None:
    stdin = b'{"id": "caf\xe9", "title": "Kursk troops \xff", "summary": ""}\n'
    out = CliRunner().invoke(cli, ["--config", str(ROOT / "config.yaml"), "match"], input=stdin)
    assert out.exit_code == 0, out.output
    answer = json.loads(out.stdout)
    assert answer["id"] == "caf\N{REPLACEMENT CHARACTER}"


@pytest.mark.parametrize("path", ["/", "/feeds", "/search?q=kursk", "/watchlists", "/stories/1"])
def test_a_database_that_is_down_is_a_clear_page(tmp_path: Path, path: str) -> None:
    config = tmp_path / "config.yaml"
    down = "postgresql+psycopg://postgres@127.0.0.1:1/news?connect_timeout=2"
    config.write_text(CONFIG.format(db=f"'{down}'"), encoding="utf-8")
    store = Store(down, create=False)
    state = WebState(config_path=str(config), loaded=lambda: load_config(config), store=store)
    server = WebServer(state, "127.0.0.1", 0).start()
    try:
        r = httpx.get(f"{server.url}{path}", timeout=20)
    finally:
        server.stop()
        store.close()
    assert r.status_code == 503
    assert "Database unavailable" in r.text and "Traceback" not in r.text


MAILTO = "mailto://user:${SMTP_PASSWORD}@127.0.0.1:2525?to=a@example.org&from=b@example.org&mode=insecure"
OPML = b"""<?xml version="1.0"?><opml version="2.0"><head/><body>
<outline type="rss" text="Local" xmlUrl="http://localhost:9/local.xml"/></body></opml>"""


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["feeds"], 0, "desk"),
        (["feeds", "--json"], 0, '"desk"'),
        (["feeds", "add", "http://127.0.0.1:9/other.xml", "--no-check"], 0, "internal address (127.0.0.1)"),
        (["feeds", "import-opml", "{opml}"], 0, "localhost:9/local.xml points at an internal address ("),
        (["feeds", "import-opml", "{opml}", "--dry-run"], 0, "localhost:9/local.xml points at an internal address"),
        (["feeds", "export-opml"], 0, "<opml"),
        (["watchlist", "list"], 0, "Kursk"),
        (["watchlist", "show", "w"], 0, "Kursk"),
        (["watchlist", "test", "w", "--days", "30"], 0, "would match"),
        (["stories", "search", "kursk"], 0, "Kursk"),
        (["stories", "show", "{story}"], 0, "Kursk"),
        (["match"], 0, '"watchlists": ["w"]'),
        (["test-notify", "mail"], 1, "SMTP_PASSWORD"),
    ],
)
def test_commands_that_neither_send_nor_serve_need_no_sending_secrets(
    world: World, tmp_path: Path, args: list[str], code: int, says: str
) -> None:
    text = world.path.read_text(encoding="utf-8").replace("'json://127.0.0.1:9/'", f"'{MAILTO}'")
    world.path.write_text(text + "feeds:\n  - name: desk\n    url: 'http://127.0.0.1:9/rss'\n", encoding="utf-8")
    opml = tmp_path / "feeds.opml"
    opml.write_bytes(OPML)
    argv = [a.format(opml=opml, story=world.story_id) for a in args]
    out = world.cli(*argv, stdin=GOOD + "\n", env={"SMTP_PASSWORD": None})
    assert out.exit_code == code, out.output
    assert says in out.output
    written = world.path.read_text(encoding="utf-8")  # an internal feed is still added: the user's choice
    assert ("other.xml" in written) is (args[:2] == ["feeds", "add"])
    assert ("local.xml" in written) is (args[:2] == ["feeds", "import-opml"] and "--dry-run" not in args)


CSS = re.sub(r"/\*.*?\*/", "", (ROOT / "monitor/app/web/static/style.css").read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("selector", ["h1", "h2", "a", ".summary", ".ptitle", "table.grid td", ".meta"])
def test_long_unbroken_text_wraps(selector: str) -> None:
    wrapping = [
        sel.strip()
        for rule in re.findall(r"([^{}]+)\{([^}]*)\}", CSS)
        if "overflow-wrap: anywhere" in rule[1]
        for sel in rule[0].split(",")
    ]
    assert selector in wrapping


@pytest.mark.parametrize("db_backend", ["sqlite"], indirect=True)
def test_long_unbroken_titles_do_not_widen_pages_in_a_browser(world: World, site: httpx.Client) -> None:
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, chromium_or_skip

    chromium_or_skip()
    widths = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1024, "height": 768})
            for path in ("/", "/search?q=kursk", f"/stories/{world.story_id}", "/feeds"):
                page.goto(f"{site.base_url}{path}")
                assert "WWWWWWWWWW" in page.content() or path == "/feeds"
                widths[path] = page.evaluate("document.documentElement.scrollWidth")
        finally:
            browser.close()
    assert widths == dict.fromkeys(widths, 1024)


def test_healthz_fails_when_the_database_refuses_every_write(tmp_path: Path) -> None:
    """A real refusal (a trigger aborting like a read-only database would) reaches /healthz."""
    import sqlite3

    from monitor.app.daemon import Runtime
    from tests.support.feeds import Item, rss
    from tests.support.httpserver import HTTPTestServer, Static

    db = tmp_path / "monitor.db"
    with HTTPTestServer() as http:
        feeds = [f"desk{n}" for n in range(FAILING_AFTER)]
        listed = "".join(
            f"  - name: {name}\n    url: '{http.route(f'/{name}', Static(rss([Item(name, f'https://x.example/{name}')])))}'\n"
            for name in feeds
        )
        path = tmp_path / "config.yaml"
        path.write_text(CONFIG.format(db=f"sqlite:///{db}") + "feeds:\n" + listed, encoding="utf-8")
        rt = Runtime.build(load_config(path))
        with sqlite3.connect(db) as conn:
            conn.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON stories "
                "BEGIN SELECT RAISE(ABORT, 'attempt to write a readonly database'); END"
            )
        metrics = Metrics(store=lambda: rt.store)
        state = WebState(config_path=str(path), loaded=lambda: load_config(path), store=rt.store, metrics=metrics)
        server = WebServer(state, "127.0.0.1", 0).start()
        try:
            statuses = []
            for name in feeds:  # a feed whose results were not stored stays claimed: one feed a cycle
                metrics.observe_cycle(rt.pipeline.run_cycle(force=True, names=[name]))  # as the daemon's tick
                statuses.append(httpx.get(f"{server.url}/healthz", timeout=10).status_code)
            body = httpx.get(f"{server.url}/healthz", timeout=10).json()
            scraped = httpx.get(f"{server.url}/metrics", timeout=10).text
        finally:
            server.stop()
            rt.close()
    assert statuses == [200] * (FAILING_AFTER - 1) + [503]
    assert body["database"] == "ok" and "readonly database" in body["reason"]
    assert f"news_monitor_cycle_failures_total {float(FAILING_AFTER)}" in scraped
