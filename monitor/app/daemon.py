"""The long-running service: APScheduler drives poll cycles and outbox deliveries.

Per the field notes, the scheduler holds no per-feed jobs: one *tick* job asks the
store for the feeds whose ``next_poll_at`` is due (the same query several daemons can
share on PostgreSQL, each claiming with ``FOR UPDATE SKIP LOCKED``), and one *deliver*
job drains the outbox; a *prune* job applies retention once a day, the first time
five minutes after start. The jobs use ``coalesce=True, max_instances=1`` and a generous
``misfire_grace_time``, so a slow cycle delays the next one instead of silently dropping
or overlapping it.

Signals (handled in the main thread): SIGTERM and SIGINT finish the work in hand (every
fetch has a deadline, so this is bounded) and exit 0; a second one exits at once.
SIGHUP reloads the config: a valid new config is swapped in without restarting
polling; an invalid one is logged with file, line and field, and the running one stays.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING

from monitor import __version__
from monitor.app.deliver import Deliverer, DeliveryReport, Policies
from monitor.app.poll import Pipeline, Watch
from monitor.app.reload import ConfigWatcher
from monitor.app.services.common import build_clusterer, build_matcher
from monitor.app.services.retention import describe as describe_prune
from monitor.app.services.retention import prune
from monitor.app.workers import Heartbeat
from monitor.config.model import Config, LoadedConfig, load_config
from monitor.delivery.notify import AppriseChannel, load_channels
from monitor.delivery.render import Renderer
from monitor.errors import ConfigError, MonitorError
from monitor.ingest.fetch import Fetcher, FetchSettings
from monitor.storage.feeds import FeedConfigRow
from monitor.storage.store import Store

if TYPE_CHECKING:
    from monitor.app.web import WebServer

log = logging.getLogger("monitor.app.daemon")

#: The first retention prune runs this long after start (once the first poll cycle is done).
PRUNE_DELAY = dt.timedelta(minutes=5)


def worker_id() -> str:
    """Unique per process: claims and leases name who holds them."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def build_watch(config: Config) -> Watch:
    """What the poll cycle needs of *config*: the matcher (with the alias groups that mark
    the watched themes, :func:`build_matcher`), the targets and the escalations."""
    enabled = [w for w in config.watchlists if w.enabled]
    matcher = build_matcher(config)
    return Watch(
        matcher=matcher,
        targets={w.name: tuple(w.notify) for w in enabled},
        catchup_new_feeds=config.poll.catchup_new_feeds,
        escalate={w.name: w.escalate.rule() for w in enabled if w.escalate is not None},
    )


def feed_rows(config: Config) -> list[FeedConfigRow]:
    return [
        FeedConfigRow(
            name=f.name,
            url=f.url,
            interval_s=f.interval or config.poll.interval,
            language=f.language,
            enabled=f.enabled,
            learn_cadence=config.poll.learn_cadence if f.learn_cadence is None else f.learn_cadence,
        )
        for f in config.feeds
    ]


def fetch_settings(config: Config) -> FetchSettings:
    p = config.poll
    return FetchSettings(
        timeout=p.timeout,
        deadline=p.deadline,
        max_bytes=p.max_bytes,
        concurrency=p.concurrency,
        per_host=p.per_host,
        user_agent=f"news-monitor/{__version__} (+https://github.com/news-monitor/news-monitor)",
    )


@dataclass
class Runtime:
    """Everything built from one config: the pieces the CLI commands and the daemon share."""

    loaded: LoadedConfig
    store: Store
    fetcher: Fetcher
    pipeline: Pipeline
    channels: dict[str, AppriseChannel]
    renderer: Renderer
    deliverer: Deliverer
    worker: str
    heartbeat: Heartbeat

    @classmethod
    def build(cls, loaded: LoadedConfig, *, worker: str | None = None, role: str = "command") -> Runtime:
        config = loaded.config
        worker = worker or worker_id()
        renderer = Renderer(timezone=config.timezone, overrides=config.templates)
        channels = load_channels(config.target_urls, timeout=config.delivery.timeout)
        store = Store(loaded.database_url)
        # role: "daemon" polls on its own and gets a share of the hosts; a "command"
        # (poll, notify) claims what it is asked for.
        heartbeat = Heartbeat(store, worker, config.workers, role=role)
        try:
            heartbeat.start()
            store.sync_feeds(feed_rows(config))
            fetcher = Fetcher(fetch_settings(config))
        except BaseException:
            heartbeat.stop()
            store.close()
            raise
        pipeline = Pipeline(
            store,
            fetcher,
            build_watch(config),
            policy=config.poll_policy(),
            lease=config.workers.lease,
            worker=worker,
            parse_workers=config.poll.parse_workers,
            clusterer=build_clusterer(config),
            claim=config.poll.claim_size(),
            per_host=config.poll.per_host,
        )
        deliverer = Deliverer(
            store,
            channels,
            renderer,
            config.delivery,
            worker=worker,
            lease=config.workers.lease,
            policies=Policies.from_config(config),
        )
        return cls(loaded, store, fetcher, pipeline, channels, renderer, deliverer, worker, heartbeat)

    def reload(self, loaded: LoadedConfig) -> None:
        """Swap in a new, already validated config without restarting anything."""
        config = loaded.config
        if loaded.database_url != self.loaded.database_url:
            log.warning("database changed in the config: restart the daemon to use it (keeping the current one)")
        renderer = Renderer(timezone=config.timezone, overrides=config.templates)
        channels = load_channels(config.target_urls, timeout=config.delivery.timeout)
        watch = build_watch(config)
        report = self.store.sync_feeds(feed_rows(config))
        self.pipeline.reconfigure(
            watch, policy=config.poll_policy(), claim=config.poll.claim_size(), per_host=config.poll.per_host
        )
        self.pipeline.lease = config.workers.lease
        self.heartbeat.reconfigure(config.workers)
        old = self.loaded.config
        if (old.cluster, old.aliases) != (config.cluster, config.aliases):
            self.pipeline.recluster(build_clusterer(config))
            log.info("story clustering settings changed: open clusters are rebuilt at the next poll")
        self.deliverer.reconfigure(channels, renderer, config.delivery, Policies.from_config(config))
        self.deliverer.lease = config.workers.lease
        self.channels, self.renderer, self.loaded = channels, renderer, loaded
        log.info(
            "config reloaded: %d feeds (%d added, %d changed, %d removed), %d watchlists, %d targets",
            len(config.feeds),
            len(report.added),
            len(report.updated),
            len(report.removed),
            len(watch.targets),
            len(config.targets),
        )

    def deliver(self) -> DeliveryReport:
        """Queue feed-health alerts that are due, then drain the outbox."""
        health = self.loaded.config.health
        if health.notify:
            for feed, change in self.store.queue_health_alerts(targets=health.notify, after=health.after):
                if change == "down":
                    log.error("feed=%s has been failing for over %s: health alert queued", feed, _span(health.after))
                else:
                    log.info("feed=%s recovered: health alert queued", feed)
        return self.deliverer.deliver()

    def close(self) -> None:
        self.pipeline.close()
        self.fetcher.close()
        self.heartbeat.stop()
        self.store.close()


class Daemon:
    def __init__(self, config_path: str) -> None:
        # Here, not at the top: `poll --once` and the CLI import this module too, and need
        # neither the scheduler nor the metrics (prometheus_client: about 5 MB).
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        from monitor.app.metrics import Metrics

        self.config_path = config_path
        self.runtime = Runtime.build(load_config(config_path), role="daemon")
        self.stop_event = threading.Event()
        self.reload_event = threading.Event()
        self.scheduler = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(max_workers=3)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
            timezone="UTC",
        )
        self._signals = 0
        self._all_failing = False  # every feed failed the same way in the last cycle
        # Metrics, the config file watcher and the optional web page.
        self.metrics = Metrics(store=lambda: self.runtime.store)
        self.watcher = ConfigWatcher(config_path, self.request_reload)
        self.web_settings = self.runtime.loaded.config.web
        self.web: WebServer | None = self._make_web()  # binds now: a taken port fails the start

    def request_reload(self) -> None:
        """Ask the main loop to reload the config (file watcher, web page; thread-safe)."""
        self.reload_event.set()
        self.stop_event.set()

    def scheduler_alive(self) -> bool:
        """For /healthz: the scheduler runs and its thread is alive."""
        thread = getattr(self.scheduler, "_thread", None)
        return bool(self.scheduler.running) and (thread is None or thread.is_alive())

    def _make_web(self) -> WebServer | None:
        web = self.web_settings
        if not web.listen:
            return None
        from monitor.app.web import WebServer, WebState
        from monitor.app.web.app import CachedConfig
        from monitor.config.model import split_listen

        host, port = split_listen(web.listen)
        state = WebState(
            config_path=self.config_path,
            # What the file says (the page shows a save at once, before the reload is done).
            loaded=CachedConfig(self.config_path, self.runtime.loaded),
            store=self.runtime.store,
            scheduler_alive=self.scheduler_alive,
            metrics=self.metrics,
            on_saved=self.request_reload,
        )
        return WebServer(state, host, port, token=web.token)

    # --- jobs ------------------------------------------------------------------------------

    def _tick(self) -> None:
        try:
            report = self.runtime.pipeline.run_cycle()
        except MonitorError as exc:  # e.g. the database is unreachable: log, retry next tick
            self.metrics.cycle_failed(str(exc))
            log.error("poll cycle failed: %s", exc)
            return
        except Exception as exc:
            self.metrics.cycle_failed(f"crashed: {type(exc).__name__}")
            log.exception("poll cycle crashed; the next tick retries")
            return
        self.metrics.observe_cycle(report)
        if report.outcomes:
            log.info("cycle: %s", report.summary())
            self._warn_common_failure(report.common_failure())
            if (first := report.first_readings()) is not None:
                log.info("%s", first)
        if report.total("alerts"):
            self._deliver_soon()

    def _prune(self) -> None:
        """The daily retention prune (monitor/storage/retention.py); a failure waits a day."""
        try:
            report = prune(self.runtime.store, self.runtime.loaded.config, wait=False)
            log.info("retention: %s", describe_prune(report))
        except MonitorError as exc:
            log.error("retention prune failed: %s", exc)

    def _warn_common_failure(self, sentence: str | None) -> None:
        """Say once (not every tick) when every feed fails the same way, and when it ends."""
        if sentence and not self._all_failing:
            log.warning("%s", sentence)
        elif not sentence and self._all_failing:
            log.info("feeds answer again")
        self._all_failing = sentence is not None

    def _deliver(self) -> None:
        try:
            result = self.runtime.deliver()
        except MonitorError as exc:
            self.metrics.delivery_failed(str(exc))
            log.error("delivery round failed: %s", exc)
            return
        except Exception as exc:
            self.metrics.delivery_failed(f"crashed: {type(exc).__name__}")
            log.exception("delivery round crashed; the next round retries")
            return
        self.metrics.observe_delivery(result)
        if result.messages or result.given_up or result.retrying:
            log.info(
                "delivery: %d alerts sent in %d messages, %d to retry, %d given up",
                result.sent,
                result.messages,
                result.retrying,
                result.given_up,
            )

    def _deliver_soon(self) -> None:
        """A cycle queued alerts: deliver them now, in this job's thread. Not through the
        scheduler (``get_job``/``modify``): its shutdown holds the job-store lock while it
        waits for the running jobs, so a job asking it anything then never returns."""
        if not self.stop_event.is_set():
            self._deliver()

    # --- signals and the main loop -------------------------------------------------------

    def _on_stop(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(1)
        log.info("%s received: finishing the work in hand, then exiting", signal.Signals(signum).name)
        self.runtime.pipeline.stopping.set()
        self.stop_event.set()

    def _on_hup(self, _signum: int, _frame: FrameType | None) -> None:
        self.reload_event.set()
        self.stop_event.set()  # wake the main loop

    def reload(self) -> bool:
        """Re-read the config file; keep the running config if the new one is invalid."""
        self.watcher.acknowledge()  # what is read now needs no second reload from the watcher
        try:
            loaded = load_config(self.config_path)
            self.runtime.reload(loaded)
        except ConfigError as exc:
            self.metrics.reloads.labels("rejected").inc()
            log.error("config reload rejected, keeping the running config: %s", exc)
            return False
        except MonitorError as exc:
            self.metrics.reloads.labels("rejected").inc()
            log.error("config reload failed, keeping the running config: %s", exc)
            return False
        except Exception as exc:  # a reload must never stop the daemon, whatever the new config does
            self.metrics.reloads.labels("rejected").inc()
            log.error(
                "config reload of %s failed, keeping the running config: %s: %s",
                self.config_path,
                type(exc).__name__,
                exc,
            )
            log.debug("reload failure", exc_info=True)
            return False
        self.metrics.reloads.labels("ok").inc()
        if loaded.config.web != self.web_settings:
            log.warning("web settings changed in the config: restart the daemon to apply them")
        self.scheduler.reschedule_job("tick", trigger="interval", seconds=loaded.config.poll.tick)
        self.scheduler.reschedule_job("deliver", trigger="interval", seconds=loaded.config.delivery.interval)
        return True

    def run(self) -> int:
        config = self.runtime.loaded.config
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        now = _utcnow()
        self.scheduler.add_job(self._tick, "interval", seconds=config.poll.tick, id="tick", next_run_time=now)
        self.scheduler.add_job(
            self._deliver, "interval", seconds=config.delivery.interval, id="deliver", next_run_time=now
        )
        self.scheduler.add_job(self._prune, "interval", days=1, id="prune", next_run_time=now + PRUNE_DELAY)
        log.info(
            "news-monitor %s started (worker %s): %d feeds, %d watchlists, %d targets, database %s",
            __version__,
            self.runtime.worker,
            len(config.feeds),
            len(config.watchlists),
            len(config.targets),
            self.runtime.store.engine.url.render_as_string(hide_password=True),
        )
        for warning in config.warnings():
            log.warning("%s", warning)
        self.scheduler.start()
        self.watcher.start()
        try:
            if self.web is not None:
                self.web.start()
            while True:
                # A timed wait, not wait(): a signal that the kernel hands to another thread
                # does not wake a lock wait of the main thread, whose Python handler would then
                # run only when the event is set for another reason (a SIGTERM was ignored).
                while not self.stop_event.wait(0.5):
                    pass
                if self.reload_event.is_set() and not self.runtime.pipeline.stopping.is_set():
                    self.reload_event.clear()
                    self.stop_event.clear()
                    self.reload()
                    continue
                break
        finally:
            t0 = time.monotonic()
            self.watcher.stop()
            if self.web is not None:
                self.web.stop()
            self.scheduler.shutdown(wait=True)
            self.runtime.close()
            log.info("stopped cleanly in %.1fs", time.monotonic() - t0)
        return 0


def _span(seconds: float) -> str:
    return f"{seconds / 3600:g}h" if seconds >= 3600 else f"{seconds / 60:g}m"


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
