"""The first hour: ``init`` (flags and questions) and ``demo``, against real local servers."""

from __future__ import annotations

import datetime as dt
import html
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from monitor.app.cli import cli
from monitor.app.demo.server import FeedServer, bundled_feeds
from monitor.app.services.setup import (
    EmailSetup,
    InitPlan,
    SlackSetup,
    build_config_text,
    bundled_config,
    email_url,
    split_sections,
    validate_text,
)
from monitor.clustering.decide import assign
from monitor.clustering.features import Story, signature, vocabulary
from monitor.clustering.index import CandidateIndex
from monitor.config.model import load_config, parse_config
from monitor.matching.matcher import Matcher, WatchlistQuery
from tests.support.feeds import Item, rss
from tests.support.httpserver import HTTPTestServer, Static
from tests.support.smtpserver import SMTPTestServer

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")

PASSWORD = "Corr3ct-Horse-Battery"
KURSK = Item(
    title="North Korean troops deployed to Russia's Kursk region, NATO says",
    link="https://news.example.org/world/kursk",
    summary="NATO confirmed that North Korean soldiers are in the Kursk region.",
    guid="kursk-1",
)
WEATHER = Item(title="Storm closes ports along the coast", link="https://news.example.org/storm", guid="storm-1")
DEMO_WATCHLISTS = ("dprk-russia-pact", "kursk-troops", "dprk-russia-sanctions")


def invoke(config: Path, *args: str, env: dict[str, str] | None = None, input: str | None = None) -> Result:
    base = {k: None for k in os.environ if k.startswith(("SMTP_", "SLACK_", "NEWS_MONITOR"))}
    return CliRunner().invoke(cli, ["--config", str(config), *args], env={**base, **(env or {})}, input=input)


@pytest.fixture
def feed_server() -> Iterator[tuple[HTTPTestServer, str]]:
    with HTTPTestServer() as server:
        yield server, server.route("/world.xml", Static(body=rss([WEATHER])))


def test_init_with_flags_then_poll_once_delivers_by_email(
    tmp_path: Path, feed_server: tuple[HTTPTestServer, str]
) -> None:
    server, url = feed_server
    config = tmp_path / "config.yaml"
    with SMTPTestServer() as smtp:
        flags = ["--email-to", "desk@example.org", "--smtp-host", "127.0.0.1", "--smtp-port", str(smtp.port)]
        result = invoke(config, "init", *flags, "--smtp-security", "relay", "--feed", url)
        assert result.exit_code == 0, result.output
        [test_mail] = smtp.wait_for(1)
        assert test_mail["Subject"].startswith("[TEST]") or "[TEST]" in test_mail["Subject"]
        assert test_mail["To"] == "desk@example.org"
        assert f"news-monitor --config {config} run" in result.output

        checked = invoke(config, "check-config")
        assert checked.exit_code == 0, checked.output
        assert "watchlists: dprk-russia-pact, kursk-troops, dprk-russia-sanctions" in checked.output

        first = invoke(config, "poll", "--once")  # a new feed's first poll records, without alerts
        assert first.exit_code == 0, first.output
        server.route("/world.xml", Static(body=rss([KURSK, WEATHER])))
        second = invoke(config, "poll", "--once")
        assert second.exit_code == 0, second.output
        mails = smtp.wait_for(2)
    assert len(smtp.messages) == 2
    assert mails[1]["Subject"] == f"[kursk-troops] {KURSK.title}"


def test_init_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("# mine\n", encoding="utf-8")
    refused = invoke(config, "init", "--yes")
    assert refused.exit_code == 1
    assert "already exists; nothing was written" in refused.output and "--force" in refused.output
    assert config.read_text(encoding="utf-8") == "# mine\n"

    declined = invoke(config, "init", input="n\n")  # asked, answered no
    assert declined.exit_code == 1
    assert config.read_text(encoding="utf-8") == "# mine\n"

    forced = invoke(config, "init", "--yes", "--force")
    assert forced.exit_code == 0, forced.output
    assert load_config(config).config.watchlists[0].name == "dprk-russia-pact"


def test_interactive_init_logs_in_and_never_shows_the_password(
    tmp_path: Path, feed_server: tuple[HTTPTestServer, str]
) -> None:
    _, url = feed_server
    config = tmp_path / "conf" / "monitor.yaml"
    with SMTPTestServer(logins={"alerts@example.org": PASSWORD}) as smtp:
        answers = [
            "",  # the three default watchlists: yes
            "n",  # the bundled feeds: no...
            url,  # ...this one
            "",  # e-mail: yes
            "desk@example.org",
            "plain",  # SMTP with a login, no TLS (the local test server)
            "127.0.0.1",
            str(smtp.port),
            "alerts@example.org",
            PASSWORD,  # hidden
            "",  # Slack: no
        ]
        result = invoke(config, "init", input="\n".join(answers) + "\n")
        assert result.exit_code == 0, result.output
        [mail] = smtp.wait_for(1)  # the server requires the login: the password was used
    assert "[TEST]" in mail["Subject"]
    written = config.read_text(encoding="utf-8")
    assert PASSWORD not in result.output and PASSWORD not in written
    assert "alerts%40example.org:${SMTP_PASSWORD}@127.0.0.1" in written
    assert "read -rs SMTP_PASSWORD && export SMTP_PASSWORD" in result.output
    loaded = load_config(config, env={"SMTP_PASSWORD": PASSWORD})
    assert [f.url for f in loaded.config.feeds] == [url]
    assert {tuple(w.notify) for w in loaded.config.watchlists} == {("email",)}
    assert loaded.config.health.notify == ["email"]


def test_a_failed_test_send_is_reported_and_the_file_kept(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    with SMTPTestServer(logins={"alerts@example.org": PASSWORD}) as smtp:
        flags = ["--email-to", "desk@example.org", "--smtp-host", "127.0.0.1", "--smtp-port", str(smtp.port)]
        result = invoke(
            config,
            "init",
            *flags,
            "--smtp-security",
            "plain",
            "--smtp-user",
            "alerts@example.org",
            env={"SMTP_PASSWORD": "wrong-password"},
        )
        assert smtp.messages == []
    assert result.exit_code == 1
    assert "test alert to email FAILED" in result.output
    assert "wrong-password" not in result.output
    assert config.exists()


def test_slack_is_a_reference_to_the_webhook_variable(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    result = invoke(config, "init", "--slack", "--theme", "Kursk OR Koursk", "--theme", "@dprk missile*")
    assert result.exit_code == 0, result.output
    assert "test alert to slack not sent: SLACK_WEBHOOK_URL not set" in result.output
    written = config.read_text(encoding="utf-8")
    assert 'slack: "${SLACK_WEBHOOK_URL}"' in written
    hook = "https://hooks.slack.com/services/T0AAAAAAA/B0BBBBBBB/" + "c" * 24
    loaded = load_config(config, env={"SLACK_WEBHOOK_URL": hook})
    assert [(w.name, w.query, w.notify) for w in loaded.config.watchlists] == [
        ("kursk-or-koursk", "Kursk OR Koursk", ["slack"]),
        ("dprk-missile", "@dprk missile*", ["slack"]),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--email-to", "desk"], "recipient 'desk' is not an e-mail address"),
        (["--email-to", "a@example.org", "--smtp-host", "smtp example"], "SMTP server 'smtp example' is not a host"),
        (["--email-to", "a@example.org", "--smtp-port", "70000"], "SMTP port 70000 is not a port"),
        (["--email-to", "a@example.org", "--smtp-security", "plain"], "give a user, or choose 'relay'"),
        (
            ["--email-to", "a@example.org", "--smtp-security", "relay", "--smtp-user", "u"],
            "a local relay takes no login",
        ),
        (["--slack", "--slack-webhook-env", "1BAD"], "'1BAD' is not an environment variable name"),
        (["--theme", '"North Korea" AND ('], "theme: unexpected end of query at column 20"),
        (["--feed", "ftp://example.org/feed"], "is not an http(s) URL"),
    ],
)
def test_bad_answers_are_named_and_nothing_is_written(tmp_path: Path, args: list[str], message: str) -> None:
    config = tmp_path / "config.yaml"
    result = invoke(config, "init", "--no-test", *args)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert not config.exists()


@pytest.mark.parametrize(
    ("email", "url"),
    [
        (
            EmailSetup(to="desk@example.org", host="smtp.example.org", user="alerts@example.org"),
            "mailtos://alerts%40example.org:${SMTP_PASSWORD}@smtp.example.org:587"
            "?mode=starttls&from=alerts@example.org&to=desk@example.org",
        ),
        (
            EmailSetup(
                to="desk@example.org", host="mail.example.org", security="ssl", user="bot", password_env="MAILPW"
            ),
            "mailtos://bot:${MAILPW}@mail.example.org:465?mode=ssl&from=desk@example.org&to=desk@example.org",
        ),
        (
            EmailSetup(
                to="d@example.org", host="10.0.0.5", security="plain", port=2525, user="u", sender="s@example.org"
            ),
            "mailto://u:${SMTP_PASSWORD}@10.0.0.5:2525?mode=insecure&from=s@example.org&to=d@example.org",
        ),
        (
            EmailSetup(to="desk@example.org", security="relay"),
            "mailto://localhost:25?mode=insecure&from=desk@example.org&to=desk@example.org",
        ),
    ],
)
def test_email_urls_by_security(email: EmailSetup, url: str) -> None:
    assert email_url(email) == url


def test_the_written_file_keeps_the_bundled_comments() -> None:
    text = build_config_text(InitPlan(email=EmailSetup(to="desk@example.org"), slack=SlackSetup()))
    bundled = bundled_config()
    # Every comment of the sections taken over (all but the header and the targets) is kept.
    targets_block = re.search(r"^# Where alerts go.*?(?=^# Feed-health)", bundled, re.DOTALL | re.MULTILINE)
    assert targets_block is not None
    header = bundled.split("\n\n", 1)[0]
    skipped = header + targets_block.group(0)
    for line in bundled.splitlines():
        if line.lstrip().startswith("#") and line not in skipped:
            assert line in text, f"comment lost: {line}"
    config = validate_text(text, "config.yaml")
    bundled_config_value, _ = parse_config(bundled, env={}, for_sending=False)
    assert config.aliases == bundled_config_value.aliases
    assert [(w.name, w.query) for w in config.watchlists] == [
        (w.name, w.query) for w in bundled_config_value.watchlists
    ]
    assert all(w.notify == ["email", "slack"] for w in config.watchlists)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\n",
        "# head\n\n# about a\na:\n  b: 2  # inline\n\n  # indented comment\n  c: 3\n\n# about d\nd: [x]\n",
        "a:\n  - 1\n# trailing top-level comment\n",
        "# only comments\n\n# and more\n",
    ],
)
def test_sections_put_back_together_are_the_file(text: str) -> None:
    sections = split_sections(text)
    assert "".join(s.preamble + s.body for s in sections) == text
    assert [s.key for s in sections if s.key] == re.findall(r"^([a-z]+):", text, re.MULTILINE)


def test_the_bundled_config_is_the_repository_config() -> None:
    assert bundled_config() == (Path(__file__).resolve().parents[1] / "config.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("password", "warned"),
    [("Corr3ct-Horse-Battery", False), ("p@ss", True), ("a/b", True), ("x#y", True), ("50%off", True)],
)
def test_a_password_that_breaks_a_url_is_warned_about_without_showing_it(
    tmp_path: Path, password: str, warned: bool
) -> None:
    config = tmp_path / "config.yaml"
    args = ["--email-to", "d@example.org", "--smtp-host", "smtp.example.org", "--smtp-user", "u", "--no-test"]
    result = invoke(config, "init", *args, env={"SMTP_PASSWORD": password})
    assert result.exit_code == 0, result.output
    assert ("warning: the password in SMTP_PASSWORD holds a character" in result.output) is warned
    assert password not in result.output


# --- the demo -------------------------------------------------------------------------------


def _sample_stories() -> list[tuple[str, str, str, str, int]]:
    """(outlet, language, title, summary, wave) of every bundled sample item."""
    out = []
    for feed in bundled_feeds():
        for item in re.findall(r"<item>(.*?)</item>", feed.text, re.DOTALL):
            fields = {k: html.unescape(v) for k, v in re.findall(r"<(title|description|demo:wave)>(.*?)</", item)}
            out.append((feed.name, feed.language, fields["title"], fields["description"], int(fields["demo:wave"])))
    return out


def test_each_sample_event_fires_one_watchlist_and_is_one_cluster_across_outlets() -> None:
    bundled, _ = parse_config(bundled_config(), env={}, for_sending=False)
    matcher = Matcher([WatchlistQuery(w.name, w.query, tuple(w.stem)) for w in bundled.watchlists], bundled.aliases)
    vocab = vocabulary(bundled.aliases)
    index, clusters = CandidateIndex(), {}
    events: dict[str, set[int]] = {name: set() for name in DEMO_WATCHLISTS}
    outlets: dict[str, set[tuple[str, str]]] = {name: set() for name in DEMO_WATCHLISTS}
    now = dt.datetime.now(dt.UTC)
    for i, (outlet, lang, title, summary, wave) in enumerate(sorted(_sample_stories(), key=lambda s: s[4])):
        matched = [m.watchlist for m in matcher.match(title, summary)]
        assert len(matched) <= 1, (title, matched)
        assert (wave == 0) == (not matched), title  # the backlog is off-theme, the news is on it
        sig = signature(Story(title, summary, lang, now + dt.timedelta(minutes=wave), outlet), vocab)
        chosen = assign(sig, index).cluster
        cluster = i if chosen is None else chosen
        index.add(cluster, sig)
        clusters[title] = cluster
        if matched:
            events[matched[0]].add(cluster)
            outlets[matched[0]].add((outlet, lang))
    for name in DEMO_WATCHLISTS:
        assert len(events[name]) == 1, f"{name}: the outlets' stories are not one event"
        assert len(outlets[name]) >= 4 and {lang for _, lang in outlets[name]} == {"en", "fr"}


def test_the_sample_feeds_hold_back_their_news_until_later_polls() -> None:
    feeds = bundled_feeds()
    assert {f.language for f in feeds} == {"en", "fr"}
    waves: list[int] = []
    with FeedServer(feeds, on_wave=lambda wave, _feeds, _stories: waves.append(wave)) as server:
        name = feeds[0].name
        sizes = [httpx.get(server.url(name)).text.count("<item>") for _ in range(4)]
        assert "<demo:" not in httpx.get(server.url(name)).text
        assert httpx.get(server.url("missing")).status_code == 404
    assert sizes[0] < sizes[1] < sizes[2] == sizes[3]
    assert waves == [0, 1, 2]


class _Output:
    """A subprocess's merged output, read line by line as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    @property
    def text(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_until(self, found: re.Pattern[str] | str, timeout: float, count: int = 1) -> list[str]:
        rx = re.compile(found) if isinstance(found, str) else found
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(hits := [line for line in self.lines if rx.search(line)]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{found!r} not seen {count} time(s) in {timeout}s:\n" + "\n".join(self.lines))
                self._cond.wait(min(left, 0.2))
            return hits


def _demo(*args: str) -> tuple[subprocess.Popen[str], _Output]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWS_MONITOR")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "demo", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "PYTHONUNBUFFERED": "1"},
    )
    return proc, _Output(proc)


def test_demo_shows_alerts_for_the_three_themes_on_the_console_and_the_web_page() -> None:
    proc, out = _demo("--duration", "120")
    try:
        [web_line] = out.wait_until(r"web page:\s+http://127\.0\.0\.1:\d+/", timeout=60)
        for name in DEMO_WATCHLISTS:
            out.wait_until(rf"^\[{name}\] ", timeout=90)
        page = httpx.get(web_line.split()[-1], timeout=10)
        assert page.status_code == 200
        shown = html.unescape(re.sub(r"<[^>]+>", "", page.text))  # highlights are <mark> tags
        for name in DEMO_WATCHLISTS:  # the page lists the alerts the console printed
            first = next(line for line in out.lines if line.startswith(f"[{name}] "))
            assert first.split("] ", 1)[1] in shown
        # the other outlets' tellings come next: no second alert, listed under the first ones
        out.wait_until(r"more stories in \d+ feeds: other outlets", timeout=60)
        deadline = time.monotonic() + 60  # served now, stored at the next poll (every 10 s)
        while True:
            page = html.unescape(re.sub(r"<[^>]+>", "", httpx.get(web_line.split()[-1], timeout=10).text))
            if page.count("Also reported by") >= len(DEMO_WATCHLISTS) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert page.count("Also reported by") >= len(DEMO_WATCHLISTS)
        time.sleep(2)  # an alert they caused would be printed by now
        alerted = [line for line in out.lines if re.match(r"^\[[a-z-]+\] ", line)]
        assert len(alerted) == len(DEMO_WATCHLISTS), alerted
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    text = out.text
    assert "first poll: the 10 stories already in the 5 feeds are recorded without alerting" in text
    assert "news breaks" in text
    assert "demo stopped" in text
    assert "Traceback" not in text


def test_demo_stops_by_itself_after_its_duration() -> None:
    proc, out = _demo("--duration", "3")
    try:
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    out.wait_until("demo stopped", timeout=5)
    assert "Traceback" not in out.text
