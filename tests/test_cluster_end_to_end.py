"""End to end: one event told by several outlets, in several languages, alerts once.

Real CLI runs in subprocesses (each ``poll --once`` a fresh process, so the open
clusters are rebuilt from the database every time), real local feed and webhook
servers. One feed per outlet of the labelled set (tests/data/clusters.jsonl) carries
the tellings of eight events, four pairs of near misses (distinct events of the same
actors within the clustering window: the pact's signing and Putin's next stop in Hanoi
the next day; Russia's ratification and North Korea's two days later; US sanctions and
the EU's package the same day; the EU's and the UK's sanctions on one anniversary).
The stories arrive over five polls in published order, so later tellings join clusters
stored by earlier runs.

What the user sees: the webhook gets exactly one message per event and watchlist (never
one per telling), each near miss gets its own, and the database groups the tellings of
each event on the watched themes, every outlet listed.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from tests.support.cli import run_monitor
from tests.support.feeds import Item, rss
from tests.support.httpserver import HTTPTestServer, Static
from tests.support.webhook import WebhookReceiver
from tests.test_end_to_end import shipped_watch

DATA = Path(__file__).parent / "data" / "clusters.jsonl"
ROUNDS = (("e001", "e002"), ("e001", "e002"), ("e007", "e008"), ("e031", "e032"), ("e036", "e037"))
NEAR_MISSES = (("e001", "e002"), ("e007", "e008"), ("e031", "e032"), ("e036", "e037"))


def _slug(story: dict[str, Any]) -> str:
    """One feed per outlet and language (as outlets publish them)."""
    name = "".join(c if c.isalnum() else "-" for c in story["outlet"].lower()).strip("-")
    return f"{name}-{story['language']}"


def _stories() -> list[dict[str, Any]]:
    wanted = {e for pair in ROUNDS for e in pair}
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return sorted((r for r in rows if r["event"] in wanted), key=lambda r: (r["published"], r["id"]))


def _rounds(stories: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Five batches: the first two share e001/e002 (first half, then the rest)."""
    first = [s for s in stories if s["event"] in ROUNDS[0]]
    half = len(first) // 2
    out = [first[:half], first[half:]]
    out += [[s for s in stories if s["event"] in pair] for pair in ROUNDS[2:]]
    return out


@dataclass
class Env:
    http: HTTPTestServer
    hook: WebhookReceiver
    config: Path
    db: Path
    items: dict[str, list[Item]]

    def publish(self, stories: list[dict[str, Any]]) -> None:
        for s in stories:
            when = datetime.fromisoformat(s["published"].replace("Z", "+00:00")).timestamp()
            self.items[_slug(s)].insert(0, Item(s["title"], s["link"], s["summary"], published=when))
        for slug, items in self.items.items():
            self.http.route(f"/{slug}.xml", Static(body=rss(items, title=slug), etag=f'"{len(items)}"'))

    def poll(self) -> subprocess.CompletedProcess[str]:
        done = run_monitor(self.config, "poll", "--once")
        assert done.returncode == 0, done.stderr
        return done


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    aliases, watchlists = shipped_watch()
    stories = _stories()
    feeds = {_slug(s): s["language"] for s in stories}
    with HTTPTestServer() as http, WebhookReceiver() as hook:
        items = {f: [Item(f"{f}: weather", f"https://{f}.example/weather", "Mild and dry.")] for f in feeds}
        for wl in watchlists:
            wl["notify"] = ["hook"]
        config = {
            "database": f"sqlite:///{tmp_path / 'monitor.db'}",
            "poll": {"timeout": "2s", "deadline": "4s"},
            "targets": {"hook": hook.apprise_json_url("/alerts")},
            "feeds": [{"name": f, "url": http.url(f"/{f}.xml"), "language": lang} for f, lang in feeds.items()],
            "aliases": aliases,
            "watchlists": watchlists,
        }
        path = tmp_path / "config.yaml"
        with path.open("w", encoding="utf-8") as fh:
            YAML().dump(config, fh)
        built = Env(http, hook, path, tmp_path / "monitor.db", items)
        built.publish([])
        yield built


def _event_of_message(title: str, message: str, stories: list[dict[str, Any]]) -> str:
    """The event whose telling the message announces (by its title)."""
    found = {s["event"] for s in stories if s["title"] in title or s["title"] in message}
    assert len(found) == 1, (title, found)
    return found.pop()


def test_each_event_alerts_once_across_outlets_and_languages(env: Env) -> None:
    stories = _stories()
    first = env.poll()  # the filler items: a first poll records without alerting
    assert "first poll: recorded without alerting" in first.stderr
    sent = 0
    for batch in _rounds(stories):
        env.publish(batch)
        env.poll()
        sent = len(env.hook.hooks)
    hooks = env.hook.wait_for(sent)

    per_event: dict[str, list[str]] = defaultdict(list)
    for post in hooks:
        per_event[_event_of_message(post.json["title"], post.json["message"], stories)].append(post.json["message"])
    events = {s["event"] for s in stories}
    assert set(per_event) == events  # every event alerted, the near misses each on their own
    watchlists = [w["name"] for w in shipped_watch()[1]]
    for event, messages in per_event.items():
        named = [w for m in messages for w in watchlists if w in m]
        assert len(named) == len(set(named)), f"{event}: a watchlist alerted twice: {named}"
    assert len(hooks) < len(stories) / 2  # 36 tellings, one message per event (and watchlist)

    with sqlite3.connect(env.db) as conn:
        rows = conn.execute(
            "SELECT s.link, s.cluster_id, f.name FROM stories s JOIN feeds f ON f.id = s.feed_id WHERE s.clustered"
        ).fetchall()
        alerts = conn.execute("SELECT cluster_id, watchlist, count(*) FROM outbox GROUP BY 1, 2").fetchall()
    # Stories on the watched themes (a watchlist or an alias group matched them) are
    # grouped; a telling the config's words do not reach (a German one, say) stays alone.
    cluster_of = {link: cid for link, cid, _ in rows}
    themed = [s for s in stories if s["link"] in cluster_of]
    assert len(themed) >= 0.8 * len(stories)
    clusters: dict[str, set[int]] = defaultdict(set)
    for s in themed:
        clusters[s["event"]].add(cluster_of[s["link"]])
    assert set(clusters) == {s["event"] for s in stories}
    assert all(len(c) == 1 for c in clusters.values()), clusters  # each event is one cluster ...
    for a, b in NEAR_MISSES:
        assert clusters[a] != clusters[b], (a, b)  # ... and near misses stay apart
    outlets = {link: feed for link, _, feed in rows}
    for event, (cid,) in clusters.items():  # every outlet's telling is listed under its event
        members = {outlets[link] for link, c in cluster_of.items() if c == cid}
        assert members == {_slug(s) for s in themed if s["event"] == event}
    assert all(n == 1 for _, _, n in alerts)  # the outbox holds one row per cluster and watchlist
