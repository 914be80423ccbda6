"""End to end: the real CLI in a subprocess, real local feed, SMTP and webhook servers.

The story a user lives through: a first poll records what the feeds already carry
without alerting; the seed article appears and triggers all three default watchlists,
in one e-mail and one webhook post; a second run sends nothing; while the SMTP server is
down the e-mail waits in the outbox and arrives exactly once when it is back. Broken
feeds (500, garbage, a server that never answers) are logged by name and never stop the
good ones.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.support.cli import run_monitor
from tests.support.feeds import FIXTURES, SEED_TITLE, Item, rss, seed_article
from tests.support.httpserver import Hang, HTTPTestServer, Raw, Static, Status
from tests.support.smtpserver import SMTPTestServer
from tests.support.webhook import WebhookReceiver

ROOT = Path(__file__).resolve().parent.parent


def shipped_watch() -> tuple[dict[str, str], list[dict[str, object]]]:
    """The aliases and watchlists of the bundled config.yaml, as users get them."""
    data = YAML(typ="safe").load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    return data.get("aliases") or {}, data["watchlists"]


@dataclass
class Env:
    http: HTTPTestServer
    smtp: SMTPTestServer
    hook: WebhookReceiver
    config: Path
    db: Path
    seed_items: list[Item]

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return run_monitor(self.config, *args, timeout=timeout)

    def outbox(self) -> dict[str, int]:
        with sqlite3.connect(self.db) as conn:
            return dict(conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    aliases, watchlists = shipped_watch()
    with HTTPTestServer() as http, SMTPTestServer() as smtp, WebhookReceiver() as hook:
        reuters = (FIXTURES / "reuters-worldnews-feedburner-rss2-2018-crlf.xml").read_bytes()
        lemonde = (FIXTURES / "lemonde-international-rss2-fr.xml").read_bytes()
        seed_items = [
            Item("Météo : un automne doux", "https://www.example.fr/meteo/automne", "Rien à signaler.")
        ]
        http.route("/reuters.xml", Static(body=reuters, etag='"r1"'))
        http.route("/lemonde.xml", Static(body=lemonde, last_modified="Wed, 27 Mar 2024 10:00:00 GMT"))
        http.route("/seed.xml", Static(body=rss(seed_items), etag='"s1"'))
        http.route("/broken.xml", Status(500))
        http.route(
            "/garbage.xml",
            Raw(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\nContent-Length: 64\r\n\r\n"
                + os.urandom(64)
            ),
        )
        http.route("/hang.xml", Hang())
        db = tmp_path / "monitor.db"
        for wl in watchlists:
            wl["notify"] = ["mail", "hook"]
        config = {
            "database": f"sqlite:///{db}",
            "timezone": "Europe/Paris",
            "poll": {"timeout": "1s", "deadline": "2s", "interval": "10m"},
            "delivery": {"retry_base": "1s", "retry_max": "2s"},
            "targets": {
                "mail": smtp.apprise_url(),
                "hook": hook.apprise_json_url("/alerts"),
            },
            "feeds": [
                {"name": "reuters", "url": http.url("/reuters.xml"), "language": "en"},
                {"name": "lemonde", "url": http.url("/lemonde.xml"), "language": "fr"},
                {"name": "seed-desk", "url": http.url("/seed.xml"), "language": "fr"},
                {"name": "broken", "url": http.url("/broken.xml")},
                {"name": "garbage", "url": http.url("/garbage.xml")},
                {"name": "hang", "url": http.url("/hang.xml")},
            ],
            "aliases": aliases,
            "watchlists": watchlists,
        }
        path = tmp_path / "config.yaml"
        with path.open("w", encoding="utf-8") as fh:
            YAML().dump(config, fh)
        yield Env(http, smtp, hook, path, db, seed_items)


def publish(env: Env, *items: Item, etag: str) -> None:
    env.seed_items[:0] = list(items)
    env.http.route("/seed.xml", Static(body=rss(env.seed_items), etag=etag))


def test_poll_once_alerts_each_story_once(env: Env) -> None:
    # 1. First poll: existing entries are recorded without alerting; broken feeds are logged.
    first = env.run("poll", "--once")
    assert first.returncode == 0, first.stderr
    log = first.stderr
    assert "feed=broken failed (http_500)" in log
    assert "feed=garbage failed (" in log
    assert "feed=hang failed (timeout)" in log or "feed=hang failed (deadline)" in log
    for good in ("reuters", "lemonde", "seed-desk"):
        assert f"feed={good} fetched status=200" in log
    assert "first poll: recorded without alerting" in log
    assert env.smtp.messages == [] and env.hook.hooks == []

    # 2. The seed article appears: one e-mail and one webhook post, naming all three watchlists.
    publish(env, seed_article(), etag='"s2"')
    second = env.run("poll", "--once")
    assert second.returncode == 0, second.stderr
    (mail,) = env.smtp.wait_for(1)
    assert SEED_TITLE in mail["Subject"]
    parts = {p.get_content_type(): p.get_content() for p in mail.walk() if not p.is_multipart()}
    text = parts["text/plain"]
    assert (
        "https://www.example.fr/international/article/coree-du-nord-russie-pacte?xtor=RSS-3208&utm_source=rss"
        in text
    )
    for wl in ("dprk-russia-pact", "kursk-troops", "dprk-russia-sanctions"):
        assert wl in text
    assert "seed-desk" in text
    assert "<mark>" in parts["text/html"]
    (post,) = env.hook.wait_for(1)
    assert post.path == "/alerts"
    assert SEED_TITLE in post.json["title"]
    assert "kursk-troops" in post.json["message"]
    assert env.outbox() == {"sent": 6}  # 3 watchlists x 2 targets, sent as 1 message per target

    # 3. Nothing new: nothing sent (the unchanged feeds answer 304 and are not even parsed).
    third = env.run("poll", "--once")
    assert third.returncode == 0, third.stderr
    assert "3 unchanged" in third.stderr
    time.sleep(0.5)
    assert len(env.smtp.messages) == 1 and len(env.hook.hooks) == 1


def test_smtp_outage_then_recovery_delivers_once(env: Env) -> None:
    assert env.run("poll", "--once").returncode == 0  # catch-up
    env.smtp.stop()
    troops = Item(
        "North Korean troops deployed to Russia's Kursk region, Seoul says",
        "https://news.example.org/world/nk-troops-kursk",
        "South Korea's intelligence agency said Pyongyang had sent thousands of soldiers to fight Ukraine.",
    )
    publish(env, troops, etag='"s2"')
    down = env.run("poll", "--once")
    assert down.returncode == 0, down.stderr
    assert "alert delivery failed target=mail" in down.stderr
    assert "1 to retry" in down.stderr
    (post,) = env.hook.wait_for(1)  # the webhook target is independent of the mail outage
    assert "North Korean troops deployed" in post.json["title"]
    assert env.outbox() == {"pending": 1, "sent": 1}

    env.smtp.start()
    time.sleep(2.1)  # the retry delay (retry_base 1s, jitter up to 2s max)
    up = env.run("poll", "--once")
    assert up.returncode == 0, up.stderr
    (mail,) = env.smtp.wait_for(1)
    assert "North Korean troops deployed" in mail["Subject"]
    assert env.outbox() == {"sent": 2}
    again = env.run("poll", "--once")
    assert again.returncode == 0
    time.sleep(0.5)
    assert len(env.smtp.messages) == 1 and len(env.hook.hooks) == 1


def test_feeds_status_reports_health(env: Env) -> None:
    env.run("poll", "--once")
    out = env.run("feeds", "--json")
    assert out.returncode == 0, out.stderr
    import json

    feeds = {f["name"]: f for f in json.loads(out.stdout)["feeds"]}
    assert feeds["reuters"]["state"] == "ok" and feeds["reuters"]["entries_seen"] == 10
    assert feeds["broken"]["state"] == "backoff"
    assert feeds["broken"]["last_error_reason"] == "http_500"
    assert feeds["broken"]["consecutive_failures"] == 1
    table = env.run("feeds")
    assert table.returncode == 0
    assert "backing off" in table.stdout and "http_500" in table.stdout
