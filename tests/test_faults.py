"""Fault tests of the delivery guarantee, with the real daemon in a subprocess.

1. SIGKILL at random moments across 12 cycles, restarting each time, while new stories
   keep appearing: every expected alert arrives, and none arrives twice unless the
   kill fell in the documented window (after the SMTP server accepted the message,
   before the daemon committed it as sent): a duplicate's first copy must have been
   sent by a daemon killed before it logged that alert as sent, which it does right
   after the commit. (A bound in seconds on that window held on a quiet machine but
   not on a loaded one, where the commit waits for the CPU.)
2. The SMTP server is down for several cycles, then returns: every alert arrives once.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.support.daemon import DaemonProcess
from tests.support.feeds import Item, rss
from tests.support.httpserver import HTTPTestServer, Static
from tests.support.smtpserver import SMTPTestServer

KILL_CYCLES = 12


@dataclass
class Farm:
    http: HTTPTestServer
    smtp: SMTPTestServer
    config: Path
    db: Path
    feeds: dict[str, list[Item]] = field(default_factory=dict)
    expected: list[str] = field(default_factory=list)
    etag: int = 0

    def publish(self, feed: str, n: int) -> None:
        title = f"Kursk dispatch {n} from {feed}"
        self.feeds[feed].insert(0, Item(title, f"https://{feed}.example.org/kursk/{n}", "Troops near Kursk."))
        self.etag += 1
        self.http.route(f"/{feed}.xml", Static(body=rss(self.feeds[feed]), etag=f'"{self.etag}"'))
        self.expected.append(title)

    def make_due(self) -> None:
        """Time passes: every feed is due again (their interval is 10 s; the test cannot wait)."""
        if not self.db.exists():
            return
        with sqlite3.connect(self.db, timeout=30) as conn:
            has_feeds = conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='feeds'").fetchone()
            if has_feeds:  # a daemon killed while creating the schema leaves no table yet
                conn.execute("UPDATE feeds SET next_poll_at = '2000-01-01 00:00:00'")

    def outbox(self) -> dict[str, int]:
        with sqlite3.connect(self.db, timeout=30) as conn:
            return dict(conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())


@pytest.fixture
def farm(tmp_path: Path) -> Iterator[Farm]:
    with HTTPTestServer() as http, SMTPTestServer() as smtp:
        db = tmp_path / "monitor.db"
        names = ["alpha", "beta", "gamma"]
        config = {
            "database": f"sqlite:///{db}",
            # Every dispatch tells the same thing ("Troops near Kursk"): one alert per story is
            # what this counts, so the dispatches must not be grouped as one event.
            "cluster": {"enabled": False},
            "poll": {
                "interval": "10s",
                "jitter": "0s",
                "tick": "0.2s",
                "timeout": "2s",
                "deadline": "3s",
                "catchup_new_feeds": False,
            },
            "delivery": {"interval": "0.2s", "retry_base": "1s", "retry_max": "2s"},
            "workers": {"heartbeat": "0.5s", "lease": "5s"},
            "targets": {"mail": smtp.apprise_url()},
            "feeds": [{"name": n, "url": http.url(f"/{n}.xml")} for n in names],
            "watchlists": [{"name": "kursk", "query": "Kursk", "notify": ["mail"]}],
        }
        path = tmp_path / "config.yaml"
        with path.open("w", encoding="utf-8") as fh:
            YAML().dump(config, fh)
        f = Farm(http, smtp, path, db, {n: [] for n in names})
        for n in names:
            http.route(f"/{n}.xml", Static(body=rss([]), etag='"0"'))
        yield f


def drain(farm: Farm, timeout: float = 60) -> None:
    """Run the daemon until every expected alert was received and nothing is pending."""
    farm.make_due()
    daemon = DaemonProcess(farm.config)
    try:
        daemon.wait_for_log(r"news-monitor .* started")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            received = {m["Subject"] for m in farm.smtp.messages}
            done = all(any(t in s for s in received) for t in farm.expected)
            if done and set(farm.outbox()) <= {"sent"}:
                break
            time.sleep(0.2)
        assert daemon.stop() == 0, daemon.log
    finally:
        daemon.kill()


def received_counts(farm: Farm) -> tuple[collections.Counter[str], dict[str, float]]:
    counts: collections.Counter[str] = collections.Counter()
    first_at: dict[str, float] = {}
    for item in farm.smtp.received:
        subject = str(item.message["Subject"])
        (title,) = [t for t in farm.expected if t in subject]
        counts[title] += 1
        first_at.setdefault(title, item.at)
    return counts, first_at


def test_sigkill_at_random_moments_loses_nothing_and_duplicates_only_in_the_window(farm: Farm) -> None:
    seed = int(os.environ.get("FAULT_SEED", time.time_ns() % 10**9))
    print(f"FAULT_SEED={seed}")  # rerun a failure with the same kill moments
    rng = random.Random(seed)
    kills: list[float] = []
    lives: list[tuple[float, float, str]] = []  # start, kill, log of each killed daemon
    n = 0
    for cycle in range(KILL_CYCLES):
        for feed in rng.sample(sorted(farm.feeds), k=rng.randint(1, 2)):
            n += 1
            farm.publish(feed, n)
        farm.make_due()
        born = time.time()
        daemon = DaemonProcess(farm.config)
        if cycle % 2:
            # Half the kills land at a random moment of the daemon's life from its very
            # start (starting, migrating, claiming), whatever the machine's load ...
            time.sleep(rng.uniform(0.4, 3.5))
        else:
            # ... and half while it works: polling, storing, sending.
            daemon.wait_for_log(r"news-monitor .* started", timeout=60)
            time.sleep(rng.uniform(0.1, 2.5))
        kills.append(time.time())
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.kill()
        assert daemon.proc.returncode == -signal.SIGKILL, (
            f"cycle {cycle}: daemon died on its own:\n{daemon.log}"
        )
        lives.append((born, kills[-1], daemon.log))
    # The kills did hit working daemons: alerts went out between kills, not only after.
    delivered_under_fire = len(farm.smtp.received)
    assert delivered_under_fire >= 1, (delivered_under_fire, len(farm.expected))
    drain(farm)

    counts, first_at = received_counts(farm)
    missing = [t for t in farm.expected if counts[t] == 0]
    assert missing == [], f"alerts lost (FAULT_SEED={seed}): {missing}"
    for title, count in counts.items():
        if count > 1:
            sender = [log for born, killed, log in lives if born <= first_at[title] <= killed]
            excused = len(sender) == 1 and not any(
                " sent target=" in line and title in line for line in sender[0].splitlines()
            )
            assert excused and count == 2, (
                f"{title!r} arrived {count} times, not explained by a kill right after its first delivery "
                f"(FAULT_SEED={seed})"
            )
    assert set(farm.outbox()) == {"sent"}


def test_smtp_outage_over_several_cycles_then_every_alert_once(farm: Farm) -> None:
    farm.smtp.stop()
    daemon = DaemonProcess(farm.config)
    try:
        for n in range(1, 7):
            farm.publish(("alpha", "beta", "gamma")[n % 3], n)
            farm.make_due()
            mark = daemon.mark()
            daemon.wait_for_log(r"cycle: 3 feeds polled", start=mark, timeout=30)
        daemon.wait_for_log(r"alert delivery failed target=mail", timeout=30)
        assert farm.smtp.received == []
        assert farm.outbox().get("sent", 0) == 0
        farm.smtp.start()
        deadline = time.monotonic() + 30
        while len(farm.smtp.received) < len(farm.expected) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.5)  # longer than retry_max: a duplicate would have arrived by now
        assert daemon.stop() == 0
    finally:
        daemon.kill()
    counts, _ = received_counts(farm)
    assert sorted(counts) == sorted(farm.expected)
    assert set(counts.values()) == {1}
    assert farm.outbox() == {"sent": len(farm.expected)}
