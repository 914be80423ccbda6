"""The poll cycle as the daemon runs it: batched writes, Retry-After per host, learned
cadence, stopping mid-cycle; and the store's batch operations it relies on.

Cycles run through ``Runtime.build`` on a real config, against a real HTTP server on
127.0.0.1, with real parse worker processes; settings are short (1 s timeouts).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML
from sqlalchemy import func, select

from monitor.app.cli import cli
from monitor.app.daemon import Runtime
from monitor.app.poll import CycleReport
from monitor.config.model import load_config
from monitor.ingest.decide import Decider, FeedIntent, FeedPoll
from monitor.ingest.entries import Entry
from monitor.ingest.schedule import FeedUpdate, PollPolicy
from monitor.matching.matcher import MatchResult
from monitor.storage.feeds import FeedConfigRow
from monitor.storage.schema import Alert, Feed, Story, StoryFeed
from monitor.storage.store import Store
from tests.support.feeds import Item, rss, seed_article
from tests.support.httpserver import Behaviour, HTTPTestServer, Static, Status
from tests.support.stories import NOW, entry, record, result

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------ harness


@dataclass
class Harness:
    """A config being built (feeds on a real local server) and the runtime made from it."""

    http: HTTPTestServer
    tmp: Path
    database: str
    poll: dict[str, Any] = field(default_factory=dict)
    feeds: list[dict[str, Any]] = field(default_factory=list)
    refused: str = ""  # a URL where connections are refused, for tests that need one
    host: str = "127.0.0.1"  # the host name feeds are configured with, unless given
    cluster: dict[str, Any] = field(default_factory=dict)  # the config's cluster: section

    def feed(self, name: str, behaviour: Behaviour, *, host: str | None = None, **extra: Any) -> str:
        """Serve ``behaviour`` at ``/<name>.xml`` and configure a feed polling it."""
        url = self.http.route(f"/{name}.xml", behaviour, host=host or self.host)
        self.feeds.append({"name": name, "url": url, **extra})
        return url

    def write_config(self) -> Path:
        shipped = YAML(typ="safe").load((ROOT / "config.yaml").read_text(encoding="utf-8"))
        for wl in shipped["watchlists"]:
            wl["notify"] = ["hook"]
        poll = {
            "timeout": "1s",
            "deadline": "2s",
            "max_bytes": "1MB",
            "parse_timeout": "1s",
            "jitter": "0s",
            "catchup_new_feeds": False,  # a first poll alerts too: one cycle shows everything
            **self.poll,
        }
        config = {
            "database": self.database,
            "poll": poll,
            "targets": {"hook": "json://127.0.0.1:9/alerts"},  # queued, never sent here
            "feeds": self.feeds,
            "aliases": shipped.get("aliases") or {},
            "watchlists": shipped["watchlists"],
            "cluster": self.cluster,
        }
        path = self.tmp / "config.yaml"
        with path.open("w", encoding="utf-8") as fh:
            YAML().dump(config, fh)
        return path

    def runtime(self) -> Runtime:
        """The runtime the CLI and the daemon build, with the config's full poll policy."""
        loaded = load_config(self.write_config())
        return Runtime.build(loaded)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    with HTTPTestServer() as http:
        yield Harness(http, tmp_path, f"sqlite:///{tmp_path / 'monitor.db'}")


@pytest.fixture
def runtimes() -> Iterator[list[Runtime]]:
    made: list[Runtime] = []
    yield made
    for rt in made:
        rt.close()


def health(rt: Runtime) -> dict[str, Any]:
    return {f.name: f for f in rt.store.feeds()}


def story_count(rt: Runtime) -> int:
    return rt.store.counts()["stories"]


def good_feed(n: int = 3, *, tag: str = "good") -> bytes:
    return rss([Item(f"{tag} story {i}", f"https://{tag}.example/story/{i}") for i in range(n)])


# --------------------------------------------------------------------------- the cycle


def test_a_first_cycle_stores_everything_in_batched_transactions(
    harness: Harness, runtimes: list[Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(40):
        harness.feed(f"f{i}", Static(good_feed(5, tag=f"site{i}"), etag=f'"{i}"'))
    rt = harness.runtime()
    runtimes.append(rt)
    calls: list[int] = []
    apply_poll = rt.store.apply_poll

    def counting(intents: list[FeedIntent], **fence: Any) -> Any:
        calls.append(len(intents))
        return apply_poll(intents, **fence)

    monkeypatch.setattr(rt.store, "apply_poll", counting)
    report = rt.pipeline.run_cycle(force=True)

    assert report.total("new") == 200 and story_count(rt) == 200
    assert sum(calls) == 40 and len(calls) <= 10  # feeds written together, not one by one
    assert all(f.state == "ok" and f.entries_seen == 5 for f in health(rt).values())

    # Steady state: every feed answers 304; nothing is parsed, states written in bulk.
    calls.clear()
    report = rt.pipeline.run_cycle(force=True)
    assert {o.status for o in report.outcomes} == {"unchanged"} and len(report.outcomes) == 40
    assert sum(calls) == 40 and len(calls) <= 3
    assert story_count(rt) == 200


def test_a_story_in_two_feeds_of_one_cycle_is_stored_and_alerted_once(
    harness: Harness, runtimes: list[Runtime]
) -> None:
    seed = seed_article()
    harness.feed("a", Static(rss([seed, Item("Other a", "https://a.example/1")])))
    harness.feed("b", Static(rss([seed, Item("Other b", "https://b.example/1")])))
    rt = harness.runtime()
    runtimes.append(rt)
    report = rt.pipeline.run_cycle(force=True)

    assert report.total("new") == 3
    with rt.store.engine.connect() as conn:
        carriers = conn.execute(select(func.count()).select_from(StoryFeed)).scalar_one()
        alerts = conn.execute(select(Alert.watchlist)).scalars().all()
    assert carriers == 4  # the seed story is carried by both feeds ("also reported by")
    assert sorted(alerts) == ["dprk-russia-pact", "dprk-russia-sanctions", "kursk-troops"]


def test_retry_after_holds_for_the_whole_host_across_cycles_and_restarts(
    harness: Harness, runtimes: list[Runtime]
) -> None:
    harness.feed("limited", Status(429, {"Retry-After": "120"}))
    harness.feed("sibling", Static(good_feed(tag="sibling")))
    harness.feed("elsewhere", Static(good_feed(tag="elsewhere")), host="localhost")  # another host
    rt = harness.runtime()
    runtimes.append(rt)

    rt.pipeline.run_cycle(force=True, names=["limited", "elsewhere"])
    feeds = health(rt)
    assert (feeds["limited"].state, feeds["limited"].last_error_reason) == ("backoff", "rate_limited")
    assert feeds["limited"].next_poll_at >= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=110)
    # the sibling was not in that cycle: its next poll waits for the host too (in the database)
    assert feeds["sibling"].next_poll_at >= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=110)
    assert feeds["elsewhere"].state == "ok"

    # Forced again in the same daemon: the host is not contacted at all, nothing counts as failed.
    harness.http.clear_log()
    report = rt.pipeline.run_cycle(force=True)
    by_feed = {o.feed: o for o in report.outcomes}
    assert by_feed["sibling"].status == "deferred" and by_feed["limited"].status == "deferred"
    assert by_feed["elsewhere"].status == "unchanged"
    assert [r.path for r in harness.http.requests()] == ["/elsewhere.xml"]
    feeds = health(rt)
    assert feeds["sibling"].consecutive_failures == 0 and feeds["sibling"].state == "new"
    assert feeds["limited"].consecutive_failures == 1

    # A restarted daemon (new fetcher, no memory) does not poll that host before its time.
    rt.close()
    runtimes.remove(rt)
    rt2 = harness.runtime()
    runtimes.append(rt2)
    harness.http.clear_log()
    rt2.pipeline.run_cycle()
    assert harness.http.requests() == []


def test_quiet_feeds_learn_a_longer_interval_busy_feeds_keep_theirs(harness: Harness, runtimes: list[Runtime]) -> None:
    now = time.time()
    twice_a_day = [Item(f"q{i}", f"https://quiet.example/{i}", published=now - i * 43200) for i in range(20)]
    every_minute = [Item(f"b{i}", f"https://busy.example/{i}", published=now - i * 60) for i in range(20)]
    harness.poll["max_interval"] = "2h"
    harness.feed("quiet", Static(rss(twice_a_day)))
    harness.feed("busy", Static(rss(every_minute)))
    harness.feed("pinned", Static(rss(twice_a_day)), learn_cadence=False)
    rt = harness.runtime()
    runtimes.append(rt)
    rt.pipeline.run_cycle(force=True)

    feeds = health(rt)
    soon = dt.datetime.now(dt.UTC)
    assert feeds["quiet"].learned_interval_s == 7200
    assert dt.timedelta(minutes=115) < feeds["quiet"].next_poll_at - soon <= dt.timedelta(hours=2)
    assert feeds["busy"].learned_interval_s == 600  # the configured interval is the floor
    assert feeds["pinned"].learned_interval_s is None
    assert feeds["pinned"].next_poll_at - soon <= dt.timedelta(minutes=10)


def test_stopping_mid_cycle_finishes_what_is_in_hand_and_releases_the_rest(
    harness: Harness, runtimes: list[Runtime]
) -> None:
    harness.poll.update(concurrency=2, per_host=2)
    for i in range(20):
        harness.feed(f"f{i}", Static(good_feed(tag=f"s{i}"), delay=0.3))
    rt = harness.runtime()
    runtimes.append(rt)
    reports: list[CycleReport] = []
    cycle = threading.Thread(target=lambda: reports.append(rt.pipeline.run_cycle(force=True)))
    cycle.start()
    time.sleep(0.5)
    stopped_at = time.monotonic()
    rt.pipeline.stopping.set()
    cycle.join(10)

    assert not cycle.is_alive() and time.monotonic() - stopped_at < 3
    done = {o.feed for o in reports[0].outcomes}
    assert 0 < len(done) < 20 and all(o.status == "new" for o in reports[0].outcomes)
    feeds = health(rt)
    for name, f in feeds.items():  # the rest is free for the next cycle, with no failure recorded
        if name not in done:
            assert f.state == "new" and f.consecutive_failures == 0
    with rt.store.engine.connect() as conn:
        assert conn.execute(select(func.count()).where(Feed.claimed_by.is_not(None))).scalar_one() == 0


# -------------------------------------------------------------------- the store in batches


def feeds_of(store: Store, *names: str) -> dict[str, Any]:
    store.sync_feeds([FeedConfigRow(n, f"http://127.0.0.1/{n}.xml", 600, "en") for n in names], now=NOW)
    snaps = store.claim_due_feeds(worker="w", lease=60, now=NOW)
    return {s.name: s for s in snaps}


def decider(found: dict[Entry, list[MatchResult]], targets: dict[str, list[str]]) -> Decider:
    return Decider(match=lambda e: found.get(e, []), targets=targets, policy=PollPolicy(), catchup_new_feeds=False)


def test_a_batch_stores_a_story_two_feeds_carry_once(store: Store) -> None:
    feeds = feeds_of(store, "a", "b")
    shared, two, three = entry(1), entry(2), entry(3)
    polls = [FeedPoll(feeds["a"], [shared, two], 200), FeedPoll(feeds["b"], [shared, three], 200)]
    known = store.known_stories([(p.feed.id, p.entries) for p in polls])
    wanted = decider({shared: [result("w1")], three: [result("w2")]}, {"w1": ["t"], "w2": ["t"]})
    intents = wanted.decide(polls, known, NOW)
    reports = store.apply_poll(intents)

    assert [(r.new_stories, r.matches, r.alerts) for r in reports] == [(2, 1, 1), (1, 1, 1)]
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Story)).scalar_one() == 3
        sightings = conn.execute(select(StoryFeed.story_id, StoryFeed.feed_id)).all()
        assert len(sightings) == 4  # entry 1 in both feeds
        assert conn.execute(select(func.count()).select_from(Alert)).scalar_one() == 2
    by_name = {f.name: f for f in store.feeds()}
    assert by_name["b"].entries_seen == 2 and by_name["a"].state == "ok"

    # Again (a retry after a crash, or another daemon): nothing new, nothing doubled.
    again = store.apply_poll(intents)
    assert [r.new_stories for r in again] == [0, 0]
    assert {k: v for k, v in store.counts().items() if k in ("stories", "matches", "alerts")} == {
        "stories": 3,
        "matches": 2,
        "alerts": 2,
    }


def test_a_batch_finds_the_same_new_stories_as_feed_by_feed(store: Store) -> None:
    feeds = feeds_of(store, "a", "b")
    record(store, feeds["a"], [entry(1), entry(2, link=None)], alert=False)
    polls = [
        FeedPoll(feeds["a"], [entry(1), entry(2, link=None), entry(3)], 200),
        FeedPoll(feeds["b"], [entry(1), entry(2, link=None), entry(4)], 200),  # a GUID is per feed
    ]
    wanted = decider({}, {})

    def new_titles(batch: list[FeedPoll]) -> list[list[str]]:
        known = store.known_stories([(p.feed.id, p.entries) for p in batch])
        return [[s.entry.title for s in intent.stories] for intent in wanted.decide(batch, known, NOW)]

    assert new_titles(polls) == [["Story 3"], ["Story 2", "Story 4"]]
    assert new_titles(polls) == [new_titles([p])[0] for p in polls]


def test_feed_updates_apply_each_feeds_own_changes_and_end_the_claim(store: Store) -> None:
    feeds = feeds_of(store, "a", "b", "c")
    later = NOW + dt.timedelta(hours=3)
    store.apply_poll(
        [
            FeedIntent(feeds["a"].id, FeedUpdate(next_poll_at=later, etag='"x"')),
            FeedIntent(feeds["b"].id, FeedUpdate(next_poll_at=later + dt.timedelta(minutes=1), etag=None)),
            FeedIntent(feeds["c"].id, FeedUpdate(next_poll_at=later, state="backoff", consecutive_failures=3)),
        ]
    )
    by_name = {f.name: f for f in store.feeds()}
    assert (by_name["a"].next_poll_at, by_name["a"].etag) == (later, '"x"')
    assert by_name["b"].next_poll_at == later + dt.timedelta(minutes=1)
    assert (by_name["c"].state, by_name["c"].consecutive_failures) == ("backoff", 3)
    assert by_name["c"].etag is None and by_name["a"].state == "new"  # what an update leaves alone
    assert by_name["a"].next_poll_at.tzinfo is not None
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).where(Feed.claimed_by.is_not(None))).scalar_one() == 0


def test_defer_host_only_ever_postpones_and_only_that_host(store: Store) -> None:
    store.sync_feeds(
        [
            FeedConfigRow("a", "http://127.0.0.1/a.xml", 600, "en"),
            FeedConfigRow("b", "http://127.0.0.1/b.xml", 600, "en"),
            FeedConfigRow("c", "http://127.0.0.1/c.xml", 600, "en"),
            FeedConfigRow("other", "http://127.0.0.2/o.xml", 600, "en"),
        ],
        now=NOW,
    )
    feeds = {s.name: s for s in store.claim_due_feeds(worker="w", lease=60, now=NOW)}
    store.apply_poll([FeedIntent(feeds["b"].id, FeedUpdate(next_poll_at=NOW + dt.timedelta(hours=5)))])
    later = NOW + dt.timedelta(hours=1)
    # "c" is in the cycle that met the Retry-After: the fetcher defers it there.
    assert store.defer_host("127.0.0.1:80", later, exclude=[feeds["c"].id]) == 1
    by_name = {f.name: f.next_poll_at for f in store.feeds()}
    assert by_name["a"] == later
    assert by_name["b"] == NOW + dt.timedelta(hours=5)
    assert by_name["c"] < later and by_name["other"] < later


# ------------------------------------------------------------------ news-monitor feeds


def test_feeds_command_shows_state_reason_and_learned_interval(harness: Harness, runtimes: list[Runtime]) -> None:
    now = time.time()
    harness.feed(
        "quiet", Static(rss([Item(f"q{i}", f"https://q.example/{i}", published=now - i * 86400) for i in range(10)]))
    )
    harness.feed("broken", Status(500))
    harness.feed("gone", Status(410))
    rt = harness.runtime()
    runtimes.append(rt)
    rt.pipeline.run_cycle(force=True)
    config = str(harness.tmp / "config.yaml")

    out = CliRunner().invoke(cli, ["--config", config, "feeds", "--json"])
    assert out.exit_code == 0, out.output
    feeds = {f["name"]: f for f in json.loads(out.output)["feeds"]}
    assert (feeds["quiet"]["status"], feeds["quiet"]["learned_interval"]) == ("ok", 3600)
    assert feeds["quiet"]["effective_interval"] == 3600 and feeds["quiet"]["entries_seen"] == 10
    assert (feeds["broken"]["status"], feeds["broken"]["last_error_reason"]) == ("backing off", "http_500")
    assert feeds["broken"]["consecutive_failures"] == 1 and feeds["broken"]["failing_since"]
    assert (feeds["gone"]["status"], feeds["gone"]["last_error_reason"]) == ("disabled", "gone")

    table = CliRunner().invoke(cli, ["--config", config, "feeds"])
    assert table.exit_code == 0, table.output
    rows = {line.split("│")[1].strip(): line for line in table.output.splitlines() if line.count("│") > 5}
    assert "1h (learned)" in rows["quiet"] and " ok " in rows["quiet"]
    assert "backing off" in rows["broken"] and "http_500" in rows["broken"]
    assert "disabled" in rows["gone"] and "gone" in rows["gone"]
