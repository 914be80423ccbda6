"""Prometheus metrics (``/metrics``), with prometheus-client.

Two kinds, because they come from two places:

* **Counters of what this process did** (polls by outcome, errors by reason, new
  stories, alerts delivered, cycle duration): incremented by the daemon from the
  :class:`~monitor.app.poll.CycleReport` and :class:`~monitor.app.deliver.DeliveryReport` it
  already gets. They restart at zero with the process, as Prometheus counters should
  (``rate()`` handles resets).
* **Gauges of what the database holds** (stories, matches, alerts pending / sent /
  failed, feeds by state): read from the store at scrape time by a custom collector,
  so they are right with several daemons on one database, and for ``news-monitor
  web`` running alone.

What the daemon did also decides ``/healthz``: :class:`RunHealth` keeps, for poll
cycles and delivery rounds, how many failed in a row (a cycle whose results could not
be stored counts as failed: a read-only database or a full disk fails every write
while every read, and so a ping, still works). :data:`FAILING_AFTER` failures in a
row make the process unhealthy until one succeeds again; one failure does not (a
database restart, a lock held a moment). A cycle that polled no feed is no evidence
either way (the feeds whose results were not stored stay claimed until their lease
ends, so the cycles in between poll nothing).

Each :class:`Metrics` has its own registry (not the library's global one), so tests
and a daemon with a web server can build several without "duplicated timeseries".
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from monitor.app.deliver import DeliveryReport
    from monitor.app.poll import CycleReport
    from monitor.storage.store import Store

log = logging.getLogger("monitor.app.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_CYCLE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
FAILING_AFTER = 3  # failures in a row of one kind of job before /healthz says fail


class RunHealth:
    """Failures in a row of the daemon's jobs (``poll``, ``delivery``); thread-safe."""

    def __init__(self, failing_after: int = FAILING_AFTER) -> None:
        self.failing_after = failing_after
        self._lock = threading.Lock()
        self._failures: dict[str, tuple[int, str]] = {}  # job -> (failures in a row, last error)

    def record(self, job: str, error: str | None) -> None:
        """One run of ``job``: ``error`` None when it succeeded."""
        with self._lock:
            if error is None:
                self._failures.pop(job, None)
            else:
                self._failures[job] = (self._failures.get(job, (0, ""))[0] + 1, error)

    def problems(self) -> list[str]:
        """Short reasons the process is unhealthy; empty when it is not."""
        with self._lock:
            failing = sorted(self._failures.items())
        return [
            f"the last {n} {job} runs failed: {error[:200]}" for job, (n, error) in failing if n >= self.failing_after
        ]


class StoreCollector(Collector):
    """Gauges read from the database at each scrape; ``database_up`` says whether it answered."""

    def __init__(self, store: Callable[[], Store]) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("news_monitor_database_up", "1 if the database answered this scrape")
        try:
            store = self._store()
            counts = store.counts()
            alerts = store.alert_counts()
            feeds = store.feed_state_counts()
        except Exception as exc:  # a scrape must not fail because the database did
            log.warning("metrics: database unavailable: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        stories = GaugeMetricFamily("news_monitor_stories", "Stories stored")
        stories.add_metric([], counts.get("stories", 0))
        yield stories
        matches = GaugeMetricFamily("news_monitor_matches", "Story x watchlist matches stored")
        matches.add_metric([], counts.get("matches", 0))
        yield matches
        by_status = GaugeMetricFamily("news_monitor_alerts", "Alerts in the outbox by status", labels=["status"])
        for status in ("pending", "sending", "sent", "failed"):
            by_status.add_metric([status], alerts.get(status, 0))
        yield by_status
        by_state = GaugeMetricFamily("news_monitor_feeds", "Enabled feeds by health state", labels=["state"])
        for state in ("new", "ok", "backoff", "disabled"):
            by_state.add_metric([state], feeds.get(state, 0))
        yield by_state
        duplicates = GaugeMetricFamily(
            "news_monitor_possible_duplicates",
            "Alerts sent whose claim another worker had taken meanwhile (all workers, from the delivery log)",
        )
        duplicates.add_metric([], counts.get("duplicates", 0))
        yield duplicates
        workers = GaugeMetricFamily("news_monitor_workers", "Workers registered on the database", labels=["state"])
        for state in ("live", "dead"):
            workers.add_metric([state], counts.get(f"workers_{state}", 0))
        yield workers
        claims = CounterMetricFamily(
            "news_monitor_worker_claims",
            "What this process did with claims: feed_claims, alert_claims, renewals, takeovers (claims taken"
            " from a dead or stalled worker), leases_lost (work dropped), duplicates (sent after losing the claim)",
            labels=["event"],
        )
        for event, n in store.claim_stats().items():
            claims.add_metric([event], n)
        yield claims


class Metrics:
    """The metrics of one process; :meth:`render` is the body of ``/metrics``."""

    def __init__(self, store: Callable[[], Store] | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.polls = Counter(
            "news_monitor_polls", "Feed polls by outcome (new, unchanged, error)", ["outcome"], registry=r
        )
        self.poll_errors = Counter("news_monitor_poll_errors", "Failed feed polls by reason", ["reason"], registry=r)
        self.new_stories = Counter("news_monitor_new_stories", "New stories stored", registry=r)
        self.matched = Counter("news_monitor_matched_stories", "New stories that matched a watchlist", registry=r)
        self.alerts_queued = Counter("news_monitor_alerts_queued", "Alerts queued in the outbox", registry=r)
        self.cycles = Counter("news_monitor_cycles", "Poll cycles run", registry=r)
        self.cycle_failures = Counter(
            "news_monitor_cycle_failures",
            "Poll cycles that failed as a whole (database down) or could not store their results",
            registry=r,
        )
        self.delivery_failures = Counter(
            "news_monitor_delivery_failures", "Delivery rounds that failed as a whole (database down)", registry=r
        )
        self.health = RunHealth()
        self.cycle_duration = Histogram(
            "news_monitor_cycle_duration_seconds",
            "Duration of poll cycles that polled at least one feed",
            buckets=_CYCLE_BUCKETS,
            registry=r,
        )
        self.delivered = Counter(
            "news_monitor_alerts_delivered",
            "Alert outcomes of delivery rounds (sent, retrying, given_up)",
            ["result"],
            registry=r,
        )
        self.messages = Counter("news_monitor_messages_sent", "Notification messages sent", registry=r)
        self.last_cycle = Gauge(
            "news_monitor_last_cycle_timestamp_seconds", "Unix time of the last poll cycle", registry=r
        )
        self.reloads = Counter("news_monitor_config_reloads", "Config reloads by result", ["result"], registry=r)
        for outcome in ("new", "unchanged", "error"):
            self.polls.labels(outcome)
        for result in ("sent", "retrying", "given_up"):
            self.delivered.labels(result)
        for result in ("ok", "rejected"):
            self.reloads.labels(result)
        if store is not None:
            r.register(StoreCollector(store))

    def cycle_failed(self, error: str) -> None:
        """A poll cycle that raised (the database is down, or refused a write)."""
        self.cycle_failures.inc()
        self.health.record("poll", error)

    def delivery_failed(self, error: str) -> None:
        """A delivery round that raised."""
        self.delivery_failures.inc()
        self.health.record("delivery", error)

    def observe_cycle(self, report: CycleReport) -> None:
        stored = [o.error or "" for o in report.outcomes if o.reason == "store"]
        if stored:
            self.cycle_failed(f"results not stored: {stored[0]}")
        elif report.outcomes:  # a cycle that polled nothing wrote nothing: no news of the database
            self.health.record("poll", None)
        self.cycles.inc()
        self.last_cycle.set(report.started_at.timestamp())
        if report.outcomes:
            self.cycle_duration.observe(report.duration)
        for o in report.outcomes:
            self.polls.labels(o.status).inc()
            if o.status == "error":
                self.poll_errors.labels(o.reason or "unknown").inc()
        self.new_stories.inc(report.total("new"))
        self.matched.inc(report.total("matched"))
        self.alerts_queued.inc(report.total("alerts"))

    def observe_delivery(self, report: DeliveryReport) -> None:
        self.health.record("delivery", None)
        self.delivered.labels("sent").inc(report.sent)
        self.delivered.labels("retrying").inc(report.retrying)
        self.delivered.labels("given_up").inc(report.given_up)
        self.messages.inc(report.messages)

    def render(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "FAILING_AFTER", "Metrics", "RunHealth", "StoreCollector"]
