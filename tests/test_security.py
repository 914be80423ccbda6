"""Hostile and careless input: a clear error or a result, never a traceback.

Each row is one way a user, a feed or an attacker was found to break something; the
test asserts what the user sees instead.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from sqlalchemy import update

from monitor.app.services.stories import story_detail
from monitor.config.model import MAX_DURATION, MAX_SIZE, parse_config
from monitor.errors import ConfigError, QuerySyntaxError
from monitor.ingest.entries import normalise_entry
from monitor.ingest.fetch import FeedFetchError, Fetcher, FetchRequest, FetchResult, FetchSettings, is_internal_address
from monitor.matching.query import MAX_DEPTH, parse_query
from monitor.storage.feeds import FeedConfigRow
from monitor.storage.schema import Alert
from monitor.storage.store import Store
from tests.support.feeds import Item, rss
from tests.support.httpserver import HTTPTestServer, Redirect, Static
from tests.support.stories import entry, record, result


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (".inf", "longer than the longest duration accepted"),
        ("-.inf", "cannot be negative or NaN"),
        (".nan", "cannot be negative or NaN"),
        ("99999999999d", "longer than the longest duration accepted"),
        ("1e999", "longer than the longest duration accepted"),
        ("367d", "longer than the longest duration accepted"),
    ],
)
def test_durations_are_finite_and_bounded(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f"poll: {{backoff_max: {value}}}\nfeeds: []\n", file="config.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("config.yaml:1: poll.backoff_max: ")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"99999999999999999999GB"', "larger than the largest size accepted"),
        ("1e999", "expected a size"),
        ("2000000000", "larger than the largest size accepted"),
    ],
)
def test_sizes_are_bounded(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f"poll: {{max_bytes: {value}}}\nfeeds: []\n", file="config.yaml")
    assert message in str(err.value)


def test_the_bounds_themselves_are_accepted() -> None:
    config = parse_config(f"poll: {{backoff_max: 366d, max_bytes: {MAX_SIZE}}}\nfeeds: []\n")[0]
    assert (config.poll.backoff_max, config.poll.max_bytes) == (MAX_DURATION, MAX_SIZE)


@pytest.mark.parametrize(
    ("query", "column"),
    [
        ("(" * 250 + "Kursk" + ")" * 250, MAX_DEPTH + 1),
        ("(" * 200 + "Kursk" + ")" * 200, MAX_DEPTH + 1),
        ("NOT " * 300 + "Kursk Moscow", 4 * MAX_DEPTH + 1),
        ("title:" + "(" * 100 + "Kursk" + ")" * 100, 6 + MAX_DEPTH + 1),
    ],
)
def test_deep_nesting_is_a_syntax_error_with_its_column(query: str, column: int) -> None:
    with pytest.raises(QuerySyntaxError) as err:
        parse_query(query)
    assert err.value.column == column
    assert f"nests deeper than {MAX_DEPTH} levels" in str(err.value)


def test_nesting_up_to_the_limit_parses() -> None:
    query = "(" * MAX_DEPTH + "Kursk OR Koursk" + ")" * MAX_DEPTH
    assert {t.raw for t in parse_query(query).terms()} == {"Kursk", "Koursk"}


def test_aliases_count_towards_the_depth() -> None:
    aliases = {f"a{i}": f"@a{i + 1} x{i}" for i in range(200)} | {"a200": "Kursk"}
    with pytest.raises(QuerySyntaxError) as err:
        parse_query("@a0", aliases)
    assert "nests deeper than" in str(err.value)
    assert err.value.watchlist is not None and err.value.watchlist.startswith("@a")


@pytest.mark.parametrize("value", [".inf", ".nan", "99999999999d"])
def test_check_config_prints_one_line_not_a_traceback(tmp_path: Path, value: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"poll:\n  interval: {value}\nfeeds: []\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), "check-config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    assert f"{config}:2: poll.interval: " in done.stderr + done.stdout


# --------------------------------------------------------------------------- ${VAR} expansion

CONSOLE = "targets: {c: 'console://'}\n"
SECRET_ENV = {"SMTP_PASSWORD": "hunter2-smtp-secret", "WEB_TOKEN": "tok-0123456789abcdef", "DB": "sqlite:///x.db"}


@pytest.mark.parametrize(
    ("yaml_text", "read", "expected"),
    [
        # Expanded: the fields that carry secrets or the user's own addresses.
        ("database: ${DB}\n", lambda c: c.database, "sqlite:///x.db"),
        ("targets: {m: 'json://u:${SMTP_PASSWORD}@127.0.0.1/'}\n", lambda c: c.targets["m"].url,
         "json://u:hunter2-smtp-secret@127.0.0.1/"),
        ("targets: {m: {url: 'json://u:${SMTP_PASSWORD}@127.0.0.1/'}}\n", lambda c: c.targets["m"].url,
         "json://u:hunter2-smtp-secret@127.0.0.1/"),
        ("web: {listen: '127.0.0.1:8080', token: '${WEB_TOKEN}'}\n", lambda c: c.web.token, "tok-0123456789abcdef"),
        ("feeds: [{name: a, url: 'https://u:${SMTP_PASSWORD}@a.example/rss'}]\n", lambda c: c.feeds[0].url,
         "https://u:hunter2-smtp-secret@a.example/rss"),
        ("feeds: [{name: a, url: 'https://a.example/rss?x=$${SMTP_PASSWORD}'}]\n", lambda c: c.feeds[0].url,
         "https://a.example/rss?x=${SMTP_PASSWORD}"),
        # Literal: everything else, whoever wrote it.
        (
            "watchlists: [{name: w, query: '\"${SMTP_PASSWORD}\" OR Kursk', notify: [c]}]\n" + CONSOLE,
            lambda c: c.watchlists[0].query,
            '"${SMTP_PASSWORD}" OR Kursk',
        ),
        ("watchlists: [{name: w, query: Kursk, description: 'see ${SMTP_PASSWORD}', notify: [c]}]\n" + CONSOLE,
         lambda c: c.watchlists[0].description, "see ${SMTP_PASSWORD}"),
        ("aliases: {x: '${SMTP_PASSWORD} OR Kursk'}\nwatchlists: [{name: w, query: '@x', notify: [c]}]\n" + CONSOLE,
         lambda c: c.aliases["x"], "${SMTP_PASSWORD} OR Kursk"),
        ("templates: {text.txt: 'pw ${SMTP_PASSWORD} {{ story.title }}'}\n", lambda c: c.templates["text.txt"],
         "pw ${SMTP_PASSWORD} {{ story.title }}"),
    ],
)
def test_only_secret_fields_expand_variables(yaml_text: str, read: Any, expected: object) -> None:
    config = parse_config(yaml_text, env=SECRET_ENV)[0]
    assert read(config) == expected


def test_an_unset_variable_outside_the_secret_fields_is_not_an_error() -> None:
    """The old "not set" error let anyone who can save a query probe variable names."""
    text = "watchlists: [{name: w, query: '${NO_SUCH_VAR} OR Kursk', notify: [c]}]\n" + CONSOLE
    config = parse_config(text, env={})[0]
    assert config.watchlists[0].query == "${NO_SUCH_VAR} OR Kursk"


def test_commands_that_send_nothing_need_no_sending_secrets() -> None:
    text = "targets: {m: 'mailto://u:${SMTP_PASSWORD}@127.0.0.1:25?to=a@b.example'}\nfeeds: []\n"
    with pytest.raises(ConfigError, match="SMTP_PASSWORD is not set"):
        parse_config(text, env={})
    config = parse_config(text, env={}, for_sending=False)[0]
    assert "${SMTP_PASSWORD}" in config.targets["m"].url
    with pytest.raises(ConfigError, match="DB_URL is not set"):  # the database is needed to read
        parse_config("database: '${DB_URL}'\n", env={}, for_sending=False)


def test_an_opml_import_cannot_send_the_daemons_secrets_to_a_feed_host(tmp_path: Path) -> None:
    """The OPML's xmlUrl carries ``${SMTP_PASSWORD}``: the poller requests it literally."""
    with HTTPTestServer() as http:
        http.route("/rss", Static(body=rss([Item("Old news", "https://x.example/old")]), etag='"1"'))
        config = tmp_path / "config.yaml"
        config.write_text(
            "database: sqlite:///monitor.db\n"
            "targets:\n  mail: 'mailto://u:${SMTP_PASSWORD}@127.0.0.1:9?from=a@example.org&to=b@example.org&mode=insecure'\n"
            "feeds: []\nwatchlists: []\n",
            encoding="utf-8",
        )
        opml = tmp_path / "hostile.opml"
        opml.write_text(
            '<?xml version="1.0"?><opml version="2.0"><body>'
            f'<outline text="x" xmlUrl="{http.url("/rss")}?x=${{SMTP_PASSWORD}}"/>'
            "</body></opml>",
            encoding="utf-8",
        )
        env = {**os.environ, "SMTP_PASSWORD": SECRET_ENV["SMTP_PASSWORD"]}
        for args in (["feeds", "import-opml", str(opml)], ["poll", "--once"]):
            done = subprocess.run(
                [sys.executable, "-m", "monitor", "--config", str(config), *args],
                capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
            )
            assert done.returncode == 0, done.stderr
            assert SECRET_ENV["SMTP_PASSWORD"] not in done.stdout + done.stderr
        assert "$${SMTP_PASSWORD}" in config.read_text(encoding="utf-8")
        (request,) = http.requests("/rss")
        assert SECRET_ENV["SMTP_PASSWORD"] not in request.path
        assert unquote(request.path) == "/rss?x=${SMTP_PASSWORD}"


def _laughs(levels: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "templates:\n" + "".join(f"  {line}\n" for line in lines)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_laughs(9), "expands to more than 200,000 values"),
        ("feeds: []\n" + "# padding\n" * 500_000, "larger than 4 MB"),
    ],
)
def test_yaml_bombs_are_refused_before_they_are_built(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):  # at once: before, the bomb ran for minutes
        parse_config(text, file="config.yaml")


def test_a_few_yaml_aliases_still_work() -> None:
    text = (
        "targets:\n  a: &quiet {url: 'console://', quiet_hours: '22:00-07:00'}\n"
        "  b: *quiet\nfeeds: []\n"
    )
    config = parse_config(text)[0]
    assert config.targets["b"].quiet_hours == "22:00-07:00"


# --------------------------------------------------------------------------- hostile redirects

# In these tests 127.0.0.1 plays a public host and 127.0.0.2 an internal one: both are on
# this machine (the only place tests may send traffic); the classifier is told which is which.
AS_IF_PUBLIC = FetchSettings(timeout=2.0, deadline=4.0, internal_networks=("127.0.0.2/32",))


@pytest.mark.parametrize(
    ("address", "internal"),
    [
        ("127.0.0.1", True),
        ("10.20.30.40", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),  # the cloud metadata address
        ("100.64.0.1", True),  # carrier-grade NAT
        ("0.0.0.0", True),
        ("::1", True),
        ("fe80::1", True),
        ("fd00::1", True),
        ("::ffff:10.0.0.1", True),
        ("::ffff:127.0.0.1", True),
        ("224.0.0.1", True),
        ("8.8.8.8", False),
        ("2001:4860:4860::8888", False),
        ("::ffff:8.8.8.8", False),
    ],
)
def test_internal_addresses_by_default(address: str, internal: bool) -> None:
    assert is_internal_address(address) is internal


@pytest.fixture
def two_hosts() -> Iterator[tuple[HTTPTestServer, HTTPTestServer]]:
    with HTTPTestServer() as public, HTTPTestServer(host="127.0.0.2") as internal:
        internal.route("/secret", Static(body=rss([Item("Internal memo", "https://intranet.example/memo")])))
        internal.route("/hop", Redirect("/secret"))
        yield public, internal


def _fetch(url: str) -> FetchResult | FeedFetchError:
    with Fetcher(AS_IF_PUBLIC) as fetcher:
        try:
            return fetcher.fetch(FetchRequest(key=1, url=url))
        except FeedFetchError as exc:
            return exc


@pytest.mark.parametrize(
    ("chain", "refused"),
    [
        # A URL the user configured is the user's choice, wherever it points.
        (lambda pub, internal: internal.url("/secret", "127.0.0.2"), False),
        (lambda pub, internal: internal.url("/hop", "127.0.0.2"), False),
        (lambda pub, internal: pub.url("/ok"), False),
        # A public server may not send the poller inside, however the address is written.
        (lambda pub, internal: pub.route("/r", Redirect(internal.url("/secret", "127.0.0.2"))), True),
        (lambda pub, internal: pub.route("/r", Redirect(internal.url("/secret", "127.0.0.2"), 301)), True),
        (lambda pub, internal: pub.route("/r", Redirect(f"http://2130706434:{internal.port}/secret")), True),
        (lambda pub, internal: pub.route("/r", Redirect(f"http://0x7f000002:{internal.port}/secret")), True),
        (
            lambda pub, internal: pub.route(
                "/r", Redirect(pub.route("/r2", Redirect(internal.url("/secret", "127.0.0.2"))))
            ),
            True,
        ),
    ],
)
def test_a_public_redirect_cannot_reach_an_internal_address(
    two_hosts: tuple[HTTPTestServer, HTTPTestServer], chain: Callable[..., str], refused: bool
) -> None:
    public, internal = two_hosts
    public.route("/ok", Static(body=rss([Item("Public news", "https://x.example/p")])))
    outcome = _fetch(chain(public, internal))
    if refused:
        assert isinstance(outcome, FeedFetchError)
        assert outcome.reason == "internal_address"
        assert "127.0.0.2" in str(outcome)
        assert internal.requests("/secret") == []  # the request never reached it
    else:
        assert isinstance(outcome, FetchResult) and outcome.status == "ok"


def test_a_kept_alive_connection_to_an_internal_feed_is_not_a_way_in(
    two_hosts: tuple[HTTPTestServer, HTTPTestServer],
) -> None:
    public, internal = two_hosts
    redirect = public.route("/r", Redirect(internal.url("/secret", "127.0.0.2")))
    with Fetcher(AS_IF_PUBLIC) as fetcher:
        own = fetcher.fetch(FetchRequest(key=1, url=internal.url("/secret", "127.0.0.2")))
        assert own.status == "ok"  # the user's intranet feed, connection kept alive
        with pytest.raises(FeedFetchError) as err:
            fetcher.fetch(FetchRequest(key=2, url=redirect))
    assert err.value.reason == "internal_address"


def test_an_ipv4_mapped_ipv6_redirect_is_refused(two_hosts: tuple[HTTPTestServer, HTTPTestServer]) -> None:
    public, internal = two_hosts
    outcome = _fetch(public.route("/r", Redirect(f"http://[::ffff:127.0.0.2]:{internal.port}/secret")))
    assert isinstance(outcome, FeedFetchError)
    assert outcome.reason in ("internal_address", "connection")  # refused, or no IPv6 socket here
    assert internal.requests("/secret") == []


# --------------------------------------------------------------------------- text from feeds

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("title", "shown"),
    [
        ("Kursk\ufffe troops\uffff confirmed", "Kursk troops confirmed"),  # XML forbids these
        ("Sanctions \ufdd0list\U0010fffe", "Sanctions list"),  # other noncharacters
        ("Invoice \u202egnp.exe", "Invoice gnp.exe"),  # right-to-left override
        ("Pact \u2066signed\u2069 \u202aMoscow\u202c", "Pact signed Moscow"),  # isolates, embeddings
        ("Lone \ud800surrogate", "Lone surrogate"),
        ("Tab\there\x0bvertical\x00nul", "Tab here vertical nul"),
    ],
)
def test_text_from_feeds_loses_invisible_and_forbidden_characters(title: str, shown: str) -> None:
    entry = normalise_entry(
        {"title": title, "summary": f"<p>{title}</p>", "link": "https://x.example/a", "id": f"g-{title}"},
        feed_url="https://x.example/rss",
        fetched_at=NOW,
        default_language=None,
        feed_language=None,
    )
    assert entry is not None
    assert (entry.title, entry.summary) == (shown, shown)
    assert entry.guid is not None and not set(entry.guid) & set("\ufffe\uffff\u202e\u2066\ud800\x00")


# --------------------------------------------------------------------------- stored errors


def test_an_error_stored_in_clear_by_an_older_version_is_shown_masked(store: Store) -> None:
    store.sync_feeds([FeedConfigRow("wire", "http://127.0.0.1/wire.xml", 600, "en")])
    (feed,) = store.claim_due_feeds(worker="t", lease=60, force=True)
    (story_id,) = record(store, feed, [entry(1)], {0: [result("kursk")]}, targets={"kursk": ["hook"]}).new_story_ids
    leaked = "target 'hook' (json://127.0.0.1:9/hooks/a1b2c3d4e5f6g7h8?+Authorization=Bearer%20s3cr3t): HTTP 500"
    with store.transaction() as conn:
        conn.execute(update(Alert).values(last_error=leaked, status="failed"))
    detail = story_detail(store, story_id)
    assert detail is not None
    (shown,) = [a.last_error for a in detail.alerts]
    assert shown is not None and shown.startswith("target 'hook' (json://127.0.0.1:9/")
    assert "a1b2c3d4e5f6g7h8" not in shown and "s3cr3t" not in shown
