"""End to end: a watchlist with ``escalate`` gets its event's alert, then exactly one
"now reported by N outlets" message when the Nth outlet tells it.

Real CLI runs in subprocesses (each ``poll --once`` a fresh process, so the open
clusters, and what they already escalated, are rebuilt from the database every time),
real local feed and webhook servers on 127.0.0.1. Four outlets tell one event, one
poll after the other; a watchlist without ``escalate`` watches the same event.
"""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.support.cli import run_monitor
from tests.support.feeds import Item, rss
from tests.support.httpserver import HTTPTestServer, Static
from tests.support.webhook import WebhookReceiver
from tests.test_decide import CLUSTER_ALIASES, RATIFY, RATIFY_2, RATIFY_FR

OUTLETS = {"kcna-watch": "en", "wire-one": "en", "journal-fr": "fr", "late-wire": "en"}
TELLINGS = {
    "kcna-watch": RATIFY,
    "wire-one": RATIFY_2,
    "journal-fr": RATIFY_FR,
    "late-wire": ("North Korea's Kim ratifies treaty with Russia", RATIFY[1]),
}


@dataclass
class Env:
    http: HTTPTestServer
    hook: WebhookReceiver
    config: Path
    db: Path
    items: dict[str, list[Item]]

    def publish(self, outlet: str, minutes: float) -> None:
        title, summary = TELLINGS[outlet]
        when = time.time() - 3 * 3600 + minutes * 60
        self.items[outlet].insert(0, Item(title, f"https://{outlet}.example/ratify", summary, published=when))
        self.http.route(
            f"/{outlet}.xml", Static(body=rss(self.items[outlet], title=outlet), etag=f'"{len(self.items[outlet])}"')
        )

    def poll(self) -> subprocess.CompletedProcess[str]:
        done = run_monitor(self.config, "poll", "--once")
        assert done.returncode == 0, done.stderr
        return done


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with HTTPTestServer() as http, WebhookReceiver() as hook:
        items = {o: [Item(f"{o}: weather", f"https://{o}.example/weather", "Mild and dry.")] for o in OUTLETS}
        query = "@dprk @russia @pact"
        config = {
            "database": f"sqlite:///{tmp_path / 'monitor.db'}",
            "poll": {"timeout": "2s", "deadline": "4s"},
            "targets": {"hook": hook.apprise_json_url("/alerts")},
            "feeds": [{"name": o, "url": http.url(f"/{o}.xml"), "language": lang} for o, lang in OUTLETS.items()],
            "aliases": CLUSTER_ALIASES,
            "watchlists": [
                {"name": "pact", "query": query, "notify": ["hook"], "escalate": {"outlets": 3, "within": "2h"}},
                {"name": "pact-quiet", "query": query, "notify": ["hook"]},
            ],
        }
        path = tmp_path / "config.yaml"
        with path.open("w", encoding="utf-8") as fh:
            YAML().dump(config, fh)
        built = Env(http, hook, path, tmp_path / "monitor.db", items)
        for outlet in OUTLETS:
            http.route(f"/{outlet}.xml", Static(body=rss(items[outlet], title=outlet), etag='"1"'))
        yield built


def test_one_follow_up_when_the_third_outlet_tells_the_event(env: Env) -> None:
    assert "first poll: recorded without alerting" in env.poll().stderr  # the filler items
    sent: list[int] = []  # messages received after each outlet's poll
    for outlet, minutes in (("kcna-watch", 0), ("wire-one", 20), ("journal-fr", 40), ("late-wire", 60)):
        env.publish(outlet, minutes)
        env.poll()
        sent.append(len(env.hook.hooks))
    # the first telling alerts; the second is "also reported by"; the third brings the
    # follow-up; the fourth nothing more
    assert sent == [1, 1, 2, 2], [h.json["title"] for h in env.hook.hooks]
    alert, surge = (h.json for h in env.hook.hooks)
    assert alert["title"] == f"[pact, pact-quiet] {RATIFY[0]}"
    assert surge["title"] == f"[pact] now reported by 3 outlets: {RATIFY[0]}"  # the escalating watchlist only
    message = surge["message"]
    assert "3 outlets reported this event within 2h of its first report." in message
    reported = message.split("Reported by:\n", 1)[1]
    assert reported.index("- kcna-watch (en)") < reported.index("- wire-one (en)") < reported.index("- journal-fr")
    assert f"- journal-fr (fr): {RATIFY_FR[0]}" in reported
    assert "https://journal-fr.example/ratify" in reported
    assert "late-wire" not in message and "pact-quiet" not in message

    with sqlite3.connect(env.db) as conn:
        rows = conn.execute("SELECT kind, watchlist, status FROM outbox ORDER BY id").fetchall()
    assert rows == [("story", "pact", "sent"), ("story", "pact-quiet", "sent"), ("surge", "pact", "sent")]
