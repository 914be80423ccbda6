"""``news-monitor demo``: real alerts within a minute, with no network and no account.

The demo runs the real daemon (:class:`~monitor.app.daemon.Daemon`: scheduler, poll
cycle, matcher, store, outbox, delivery, web page) on a temporary config and SQLite
database, against five sample outlets (three English, two French) that
:class:`~monitor.app.demo.server.FeedServer` serves on a random loopback port. The
outlets tell the seed article's three events (the North Korea–Russia defence pact
reaffirmed, North Korean troops in Kursk, new US sanctions) in their own words, so
the bundled watchlists fire on all three, and the same event from several outlets is
what story clustering groups ("also reported by").

What a user sees is what a real first run does: the first poll of a new feed records
the stories already there without alerting (``catchup_new_feeds``: a new feed never
floods anyone with its backlog); news breaks on the next poll, ten seconds later, and
alerts are printed on the console and listed on the web page; other outlets follow on
the poll after. Each step is said on the console as the feed server serves it.

Ctrl-C (SIGINT) or SIGTERM stops everything through the daemon's own signal handling;
``duration`` raises the same SIGINT after so many seconds. The temporary folder is
removed at the end.
"""

from __future__ import annotations

import signal
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from monitor.app.demo.server import DemoFeed, FeedServer
from monitor.app.services.setup import default_watchlists, yaml_string

#: Seconds between two polls of a feed: the smallest interval the config accepts.
POLL_INTERVAL = 10
Echo = Callable[[str], object]

_WAVES = {
    0: "first poll: the {stories} stories already in the {feeds} feeds are recorded without "
    "alerting (a new feed never floods you with its backlog); new stories will alert",
    1: "news breaks: {stories} new stories in {feeds} feeds; the alerts follow",
}
STOPPED = "demo stopped; its temporary config and database are removed"
_LATER = (
    "{stories} more stories in {feeds} feeds: other outlets report the same events in their own words;"
    ' they join the first reports (no second alert) and show under them on the web page as "also reported by"'
)


def demo_config_text(feeds: dict[str, str], languages: dict[str, str], database: Path) -> str:
    """The demo's config: the sample feeds (name -> URL), the console as the only target,
    the web page on a free loopback port, and the bundled aliases and watchlists. Pure
    but for reading the bundled config."""
    lines = [
        "# news-monitor demo: a temporary config, removed when the demo ends.",
        f"database: {yaml_string('sqlite:///' + str(database))}",
        "poll:",
        f"  interval: {POLL_INTERVAL}s",
        "  jitter: 0s",
        "  learn_cadence: false",
        "  tick: 1s",
        "  timeout: 5s",
        "  deadline: 10s",
        "  catchup_new_feeds: true",
        "delivery:",
        "  interval: 2s",
        "targets:",
        "  console: console://",
        "health:",
        "  notify: [console]",
        "web:",
        '  listen: "127.0.0.1:0"',
        "feeds:",
        *(f"  - {{name: {name}, url: {yaml_string(url)}, language: {languages[name]}}}" for name, url in feeds.items()),
        "",
    ]
    return "\n".join(lines) + default_watchlists(["console"])


def run_demo(*, duration: float | None = None, echo: Echo = print, feeds: tuple[DemoFeed, ...] | None = None) -> int:
    """Run the demo until Ctrl-C or ``duration`` seconds; the daemon's exit status."""
    from monitor.app.daemon import Daemon

    start = time.monotonic()

    def on_wave(wave: int, feed_count: int, stories: int) -> None:
        text = _WAVES.get(wave, _LATER).format(stories=stories, feeds=feed_count)
        echo(f"[demo +{time.monotonic() - start:4.0f}s] {text}")

    with tempfile.TemporaryDirectory(prefix="news-monitor-demo-") as tmp, FeedServer(feeds, on_wave=on_wave) as server:
        folder = Path(tmp)
        config = folder / "config.yaml"
        urls = {name: server.url(name) for name in server.feeds}
        languages = {name: feed.language for name, feed in server.feeds.items()}
        config.write_text(demo_config_text(urls, languages, folder / "demo.db"), encoding="utf-8")
        try:
            daemon = Daemon(str(config))
        except KeyboardInterrupt:  # Ctrl-C while the database is being set up
            echo(f"[demo +{time.monotonic() - start:4.0f}s] {STOPPED}")
            return 0
        cfg = daemon.runtime.loaded.config
        web = daemon.web.url + "/" if daemon.web is not None else "(none)"
        echo(
            f"news-monitor demo: {len(urls)} sample outlets ({_languages(languages)}) served on "
            f"http://127.0.0.1:{server.port}/, polled every {POLL_INTERVAL}s by the real daemon\n"
            f"  watchlists: {', '.join(w.name for w in cfg.watchlists)}\n"
            f"  web page:   {web}\n"
            f"  alerts are printed below as they are sent; Ctrl-C stops the demo"
            + (f" (it stops by itself after {duration:g}s)" if duration else "")
        )
        timer = _stop_after(duration)
        try:
            status = daemon.run()
        except KeyboardInterrupt:  # Ctrl-C before the daemon's own handler was in place
            daemon.runtime.close()
            status = 0
        finally:
            if timer is not None:
                timer.cancel()
        echo(f"[demo +{time.monotonic() - start:4.0f}s] {STOPPED}")
        return status


def _languages(languages: dict[str, str]) -> str:
    counts: dict[str, int] = {}
    for lang in languages.values():
        counts[lang] = counts.get(lang, 0) + 1
    return ", ".join(f"{n} in {lang}" for lang, n in sorted(counts.items()))


def _stop_after(duration: float | None) -> threading.Timer | None:
    """A SIGINT to this process after ``duration`` seconds: the path Ctrl-C takes."""
    if not duration:
        return None
    timer = threading.Timer(duration, signal.raise_signal, (signal.SIGINT,))
    timer.daemon = True
    timer.start()
    return timer


__all__ = ["POLL_INTERVAL", "demo_config_text", "run_demo"]
