"""Several ``news-monitor run`` daemons on one PostgreSQL database, as real processes.

The README promises that daemons sharing a PostgreSQL database never poll a feed twice
nor send an alert twice, and that a dead daemon's work is taken over within seconds.
These tests hold the fleet to it, counting at the feed servers and at the webhook (what
a publisher and a user see); the daemons' own words serve only to attribute polls (their
``cycle:`` log lines) and to find who holds a claim (``claimed_by``, ``workers.pid``).

- *the fleet* (class scope): three daemons started at the same instant on a fresh schema,
  600 filler feeds answering in 50-200 ms on 30 local ``host:port`` keys, plus a burst of
  four events, each told by three outlets on other keys. The fixture waits for the first
  round (its spread is measured) and past one interval (a poll too early would show).
  When libfaketime is installed one daemon's wall clock runs 5 minutes ahead and one's 5
  minutes behind, so the fleet's other properties are also measured under skew; the skew
  test checks the skew was real and the skewed daemons live, polled, and caused no early
  poll or second alert.
- *the pair* (class scope): two daemons and a webhook that can be made slow, for the
  failure cases run one after the other: a daemon killed (SIGKILL) mid-poll (the slow
  feed's first reading, at start-up, takes 6 s), a slow
  target, a daemon paused (SIGSTOP) past its lease, its database connections cut, and a
  daemon killed mid-send. Each case publishes its own events and has them polled at once
  by a runtime in this process (``run_cycle(force=True)``), so no case waits for a poll
  interval; the daemons deliver. A replacement daemon starts when one was killed.

Fast settings: heartbeat 0.5 s, lease 3 s, tick and delivery interval 0.5 s, feed interval
10 s (the least allowed). The whole file takes about 55 s on 2 busy cores
(``--durations=0``: the fleet's set-up about 25 s, the pair's cases 20-25 s).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from monitor.app.daemon import Runtime
from monitor.config.model import load_config
from tests.conftest import NO_POSTGRES, POSTGRES_URL, fresh_schema
from tests.support.feeds import Item
from tests.support.fleet import (
    FAKETIME_LIB,
    Fleet,
    FleetDaemon,
    Received,
    Sites,
    SlowHook,
    faketime_env,
    wait_until,
    watchlists_of,
)

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason=NO_POSTGRES)

HEARTBEAT, LEASE = 0.5, 3.0
INTERVAL = 10.0
SETTINGS: dict[str, Any] = {
    "poll": {
        "interval": INTERVAL,
        "jitter": 0,
        "tick": 0.5,
        "timeout": 5,
        "deadline": 8,
        "per_host": 2,
        "learn_cadence": False,
        "catchup_new_feeds": False,
        "parse_workers": 1,
    },
    "delivery": {"interval": 0.5, "retry_base": 1},
    "workers": {"heartbeat": HEARTBEAT, "lease": LEASE},
}
WATCHLISTS = [
    {
        "name": "places",
        "query": "Rotterdam OR Chile OR Iceland OR Marseille OR Oslo OR Lagos OR Quito OR Tallinn",
        "notify": ["hook"],
    },
    {
        "name": "things",
        "query": "port OR rates OR volcano OR dockworkers OR tramway OR refinery OR glacier OR ferry",
        "notify": ["hook"],
    },
]
# Distinct events (no shared wording, so none clusters with another); each matches both watchlists.
EVENTS = {
    "Rotterdam": "Flooding closes the port of Rotterdam for two days",
    "Chile": "Central bank of Chile raises rates by half a point",
    "Iceland": "Volcano erupts in Iceland, flights diverted from Keflavik",
    "Marseille": "Striking dockworkers in Marseille end a week-long walkout",
    "Oslo": "Oslo opens its new tramway line to the airport after delays",
    "Lagos": "Fire at a Lagos refinery burns through the night",
    "Quito": "Scientists near Quito measure a glacier's fastest retreat",
    "Tallinn": "Ferry strike in Tallinn strands thousands of passengers",
}
EVENTS_ORDER = list(EVENTS)
FILLER_PORTS, FILLER_FEEDS = 30, 600
OUTLETS = 3  # tellings of each burst event, each from its own outlet


def telling(event: str, outlet: int) -> Item:
    title = EVENTS[event]
    return Item(title, f"https://outlet{outlet}.example/{event.lower()}", title)


def slow(i: int) -> float:
    """How long feed ``i``'s server takes to answer: 50-200 ms, as real servers take (one daemon
    alone needs seconds for a round, more than the daemons' start-up lag)."""
    return 0.05 + 0.15 * ((i * 37) % 100) / 100


def filler(i: int) -> Item:
    return Item(f"Local notice number {i}", f"https://filler.example/{i}", "Nothing of note.")


def per_event(received: list[Received]) -> dict[tuple[str, str], int]:
    """Messages received per (event, watchlist): what 'alerted once' means to a user."""
    counts: dict[tuple[str, str], int] = {}
    for r in received:
        event = next((e for e in EVENTS if e in r.title), "?")
        for w in watchlists_of(r) or ["?"]:
            counts[event, w] = counts.get((event, w), 0) + 1
    return counts


def fetched_early(sites: Sites) -> dict[str, list[float]]:
    """Feeds requested twice within their interval: the gaps between their requests."""
    early = {}
    for name in sites.names():
        times = [r.time for r in sites.requests(name)]
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        if any(g < INTERVAL - 0.5 for g in gaps):
            early[name] = [round(g, 2) for g in gaps]
    return early


def clock_offset(daemon: FleetDaemon) -> float:
    """Seconds between the time on the daemon's last log line and this process's clock now."""
    stamp = dt.datetime.fromisoformat(daemon.lines[-1].split(" ", 1)[0])
    return (stamp - dt.datetime.now(dt.UTC)).total_seconds()


def duplicates_recorded(fleet: Fleet) -> int:
    return int(fleet.rows("SELECT coalesce(sum(duplicates), 0) FROM deliveries")[0][0])


def live_workers(fleet: Fleet) -> list[tuple[str, int]]:
    """(id, pid) of the workers whose heartbeat is younger than workers.lease, by the database's clock."""
    rows = fleet.rows("SELECT id, pid FROM workers WHERE heartbeat_at > now() - make_interval(secs => :s)", s=LEASE)
    return [(w, int(p)) for w, p in rows]


# ------------------------------------------------------------------------------ the fleet


class Fleet3:
    """The three-daemon fleet and what it was measured to do in its first round."""

    def __init__(self, fleet: Fleet, sites: Sites, hook: SlowHook, skewed: bool) -> None:
        self.fleet, self.sites, self.hook, self.skewed = fleet, sites, hook, skewed
        self.started_at = time.monotonic()
        self.polled_first_round: list[int] = []


@pytest.fixture(scope="class")
def fleet3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet3]:
    with fresh_schema() as (url, schema), Sites(FILLER_PORTS + 4 * OUTLETS) as sites, SlowHook() as hook:
        feeds = [
            {
                "name": f"filler-{i}",
                "url": sites.add(f"filler-{i}", [filler(i)], port=i % FILLER_PORTS, delay=slow(i)),
            }
            for i in range(FILLER_FEEDS)
        ]
        for k, event in enumerate(EVENTS_ORDER[:4]):
            for o in range(OUTLETS):
                name = f"{event.lower()}-{o}"
                url_ = sites.add(name, [telling(event, o)], port=FILLER_PORTS + k * OUTLETS + o)
                feeds.append({"name": name, "url": url_, "language": "en"})
        fleet = Fleet(tmp_path_factory.mktemp("fleet3"), url, schema, feeds, WATCHLISTS, hook.url, dict(SETTINGS))
        skewed = FAKETIME_LIB.exists()
        state = Fleet3(fleet, sites, hook, skewed)
        try:
            fleet.start(3, [{}, faketime_env("+5m"), faketime_env("-5m")] if skewed else [])
            # The first round: every feed read once (or the daemons stopped answering) ...
            names = {f["name"] for f in feeds}
            wait_until(lambda: set().union(*(d.fetched() for d in fleet.daemons)) >= names, 30)
            state.polled_first_round = [len(d.fetched()) for d in fleet.daemons]
            # ... and past one interval, so that a second poll too early would have shown.
            wait_until(lambda: time.monotonic() - state.started_at > INTERVAL + 3, 30)
            yield state
        finally:
            fleet.close()


class TestFleet:
    """Three daemons, 612 feeds on 42 host:port keys, a burst of four events."""

    def test_three_daemons_started_together_all_live(self, fleet3: Fleet3) -> None:
        fleet = fleet3.fleet
        for d in fleet.daemons:
            assert d.alive, f"daemon {d.pid} exited:\n{d.log}"
            assert "Traceback" not in d.log, d.log
        live = {pid for _, pid in live_workers(fleet)}
        assert live == {d.pid for d in fleet.daemons}  # each registered, and heartbeats

    def test_feeds_due_at_once_are_spread_over_the_daemons(self, fleet3: Fleet3) -> None:
        polled = fleet3.polled_first_round
        total = len(fleet3.sites.names())
        assert sum(polled) >= total, f"first round incomplete: {polled} of {total}"
        assert all(n >= 0.2 * total for n in polled), f"feeds polled per daemon in the first round: {polled}"
        # per_host holds for the fleet: no host:port ever answered more requests at once.
        assert fleet3.sites.most_in_flight() <= SETTINGS["poll"]["per_host"]

    def test_no_feed_fetched_twice_within_its_interval(self, fleet3: Fleet3) -> None:
        never = [name for name in fleet3.sites.names() if not fleet3.sites.requests(name)]
        assert not never, f"{len(never)} feeds never polled, e.g. {never[:5]}"
        early = fetched_early(fleet3.sites)
        assert not early, f"{len(early)} feeds fetched twice within {INTERVAL:g}s, e.g. {list(early.items())[:5]}"

    def test_a_burst_alerts_once_per_event_watchlist_and_target(self, fleet3: Fleet3) -> None:
        expected = {(e, w["name"]): 1 for e in EVENTS_ORDER[:4] for w in WATCHLISTS}
        fleet3.hook.wait(lambda r: len(per_event(r)) >= len(expected), 15)
        time.sleep(1.0)  # a duplicate sent late would arrive now
        received = fleet3.hook.received
        assert per_event(received) == expected, [(r.title, watchlists_of(r)) for r in received]
        assert duplicates_recorded(fleet3.fleet) == 0

    def test_clock_skew_of_five_minutes_changes_nothing(self, fleet3: Fleet3) -> None:
        """The other tests of the class ran with one daemon 5 minutes ahead and one 5 minutes
        behind; here: the skewed daemons are live by the database's clock, polled, and neither
        made a feed due early for the others nor an alert go twice."""
        if not fleet3.skewed:
            pytest.skip(f"libfaketime is not installed ({FAKETIME_LIB} missing; .ci/run installs package faketime)")
        fleet = fleet3.fleet
        ahead, behind = fleet.daemons[1], fleet.daemons[2]
        # Their clocks really were off: their log lines are stamped 5 minutes from ours.
        assert 240 < clock_offset(ahead) < 330 and -360 < clock_offset(behind) < -270
        assert {ahead.pid, behind.pid} <= {pid for _, pid in live_workers(fleet)}
        assert ahead.fetched() and behind.fetched(), [len(d.fetched()) for d in fleet.daemons]
        assert not fetched_early(fleet3.sites)
        assert all(n == 1 for n in per_event(fleet3.hook.received).values())


# ------------------------------------------------------------------------------- the pair


SLOW_FEED = 6.0  # seconds the slow feed's first answer takes


class Pair:
    """Two daemons, their feeds, a webhook that can be slowed and a runtime polling on demand."""

    def __init__(self, fleet: Fleet, sites: Sites, hook: SlowHook, poller: Runtime) -> None:
        self.fleet, self.sites, self.hook, self.poller = fleet, sites, hook, poller

    def publish(self, *events: str) -> None:
        """Each event on its own outlet's feed, polled at once from this process."""
        names = [f"news-{EVENTS_ORDER.index(e)}" for e in events]
        for name, event in zip(names, events, strict=True):
            self.sites.publish(name, [telling(event, 0)])
        self.poller.pipeline.run_cycle(force=True, names=names)

    def two_live(self) -> list[FleetDaemon]:
        """Two live daemons (a replacement is started for one killed earlier)."""
        live = [d for d in self.fleet.daemons if d.alive]
        if len(live) < 2:
            made = self.fleet.start(2 - len(live))
            self.fleet.wait_started(made)
            live += made
        return live

    def holder_of(self, claims: Callable[[], Sequence[str | None]], timeout: float = 5.0) -> FleetDaemon:
        """The daemon named by the first of ``claims()`` (asked again until one shows)."""
        found: list[FleetDaemon] = []

        def check() -> bool:
            found[:] = [d for w in claims() if (d := self.fleet.holder(w)) is not None]
            return bool(found)

        assert wait_until(check, timeout, 0.02), "no daemon holds the claim"
        return found[0]

    def sending(self, events: Sequence[str], delay: float) -> FleetDaemon:
        """Two live daemons, ``events`` published, their first message arrived, every
        answer of the target taking ``delay`` seconds: the daemon now in a send of them."""
        self.two_live()
        self.hook.delay = delay
        self.publish(*events)
        self.first_arrival(events)
        return self.holder_of(self.fleet.sending_holders)

    def first_arrival(self, events: Sequence[str], timeout: float = 10.0) -> None:
        got = self.hook.wait(lambda r: any(e in x.title for x in r for e in events), timeout)
        assert any(e in x.title for x in got for e in events), "nothing was sent"


def arrived(received: list[Received], events: Sequence[str]) -> bool:
    return all(any(e in r.title for r in received) for e in events)


@pytest.fixture(scope="class")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    with fresh_schema() as (url, schema), Sites(len(EVENTS) + 1) as sites, SlowHook() as hook:
        feeds = [
            {"name": f"news-{k}", "url": sites.add(f"news-{k}", [filler(k)], port=k), "language": "en"}
            for k in range(len(EVENTS))
        ]
        # The slow feed's answers take SLOW_FEED seconds (its first reading, at start-up, too).
        slow = sites.add("slow", [telling("Tallinn", 9)], port=len(EVENTS), delay=SLOW_FEED)
        feeds.append({"name": "slow", "url": slow, "language": "en"})
        settings = {**SETTINGS, "poll": {**SETTINGS["poll"], "timeout": SLOW_FEED + 4, "deadline": SLOW_FEED + 6}}
        fleet = Fleet(tmp_path_factory.mktemp("pair"), url, schema, feeds, WATCHLISTS, hook.url, settings)
        try:
            fleet.start(2)
            fleet.wait_started()
            poller = Runtime.build(load_config(fleet.write_config(99)), worker="test-poller")
            try:
                yield Pair(fleet, sites, hook, poller)
            finally:
                poller.close()
        finally:
            fleet.close()


class TestPair:
    """Two daemons and one target, through a slow target, a pause, a cut connection and two deaths."""

    def test_killed_mid_poll_its_feed_is_polled_within_seconds(self, pair: Pair) -> None:
        # The slow feed's first reading hangs SLOW_FEED seconds at the server: kill the daemon reading it.
        first = 0
        assert wait_until(lambda: len(pair.sites.requests("slow")) > first, INTERVAL + 5, 0.02), "slow feed not polled"
        victim = pair.holder_of(lambda: list(pair.fleet.feed_holders(["slow"]).values()), 2)
        victim.kill()
        killed_at = time.monotonic()
        pair.sites.publish("slow", [telling("Tallinn", 9)])  # answers at once from now on
        assert len(pair.sites.requests("slow")) == first + 1, "the slow feed was fetched twice at once"
        assert wait_until(lambda: len(pair.sites.requests("slow")) > first + 1, LEASE + 12, 0.05), (
            "the killed daemon's feed was not polled again within seconds"
        )
        assert pair.sites.requests("slow")[first + 1].time - killed_at < LEASE + 10
        pair.hook.wait(lambda r: arrived(r, ["Tallinn"]), 10)
        counts = {k: v for k, v in per_event(pair.hook.received).items() if k[0] == "Tallinn"}
        assert counts == {("Tallinn", w["name"]): 1 for w in WATCHLISTS}, "the story being read was lost or doubled"

    def test_slow_target_never_causes_a_duplicate(self, pair: Pair) -> None:
        pair.two_live()
        pair.hook.delay = 2.5
        events = ("Rotterdam", "Chile")
        pair.publish(*events)
        expected = {(e, w["name"]): 1 for e in events for w in WATCHLISTS}
        pair.hook.wait(lambda r: arrived(r, events), 20)
        time.sleep(1.0)  # the sends took longer than workers.lease: a claim believed dead was re-sent by now
        got = {k: v for k, v in per_event(pair.hook.received).items() if k[0] in events}
        assert got == expected
        assert duplicates_recorded(pair.fleet) == 0

    def test_daemon_paused_past_its_lease_sends_nothing_after_resuming(self, pair: Pair) -> None:
        events = ("Iceland", "Marseille")
        paused = pair.sending(events, delay=1.5)
        paused.pause()
        try:
            # The other daemon takes the paused one's claims once its heartbeat is workers.lease old.
            before = pair.hook.wait(lambda r: arrived(r, events), LEASE + 8)
        finally:
            resumed_at = time.monotonic()
            paused.resume()
        time.sleep(1.5)  # the resumed daemon's next delivery round (0.5 s) has come
        assert arrived(before, events), "the paused daemon's alerts were not taken over"
        again = [r.title for r in pair.hook.received if r.at > resumed_at and any(e in r.title for e in events)]
        assert not again, f"sent again after the resume: {again}"
        assert paused.alive

    def test_cut_database_connections_recover_without_a_duplicate(self, pair: Pair) -> None:
        events = ("Oslo",)
        sender = pair.sending(events, delay=1.0)
        mark = sender.mark()
        assert pair.fleet.cut_connections(pair.fleet.daemons.index(sender)) > 0
        pair.hook.delay = 0.0
        time.sleep(LEASE + 1)  # a re-send after the cut would arrive by now
        got = {k: v for k, v in per_event(pair.hook.received).items() if k[0] in events}
        assert got == {(e, w["name"]): 1 for e in events for w in WATCHLISTS}
        assert sender.alive, sender.log[mark:]
        # It recovered: it heartbeats again, with new connections.
        assert wait_until(lambda: sender.pid in {p for _, p in live_workers(pair.fleet)}, LEASE), sender.lines[mark:]

    def test_killed_mid_send_its_alerts_are_sent_within_seconds(self, pair: Pair) -> None:
        events = ("Lagos", "Quito")
        victim = pair.sending(events, delay=2.0)
        victim.kill()
        killed_at = time.monotonic()
        pair.hook.delay = 0.0
        received = pair.hook.wait(lambda r: arrived(r, events), LEASE + 12)
        assert arrived(received, events), "an alert held by the killed daemon was not sent within seconds"
        # At least once: only the message in flight at the kill may arrive twice.
        counts = per_event(received)
        assert sum(counts[e, "places"] > 1 for e in events) <= 1, counts
        assert max(r.at for r in received) - killed_at < LEASE + 12
