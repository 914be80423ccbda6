"""Hot reload: the daemon notices config edits (CLI, by hand), rejects bad ones, never re-alerts."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML

from monitor.app.cli import cli
from monitor.app.reload import ConfigWatcher
from tests.support.daemon import DaemonProcess
from tests.support.feeds import Item, rss
from tests.support.httpserver import HTTPTestServer, Static
from tests.support.smtpserver import SMTPTestServer


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def watched(tmp_path: Path) -> tuple[Path, Clock, list[str]]:
    path = tmp_path / "config.yaml"
    path.write_text("a: 1\n", encoding="utf-8")
    return path, Clock(), []


def make_watcher(watched: tuple[Path, Clock, list[str]]) -> ConfigWatcher:
    path, clock, seen = watched
    return ConfigWatcher(path, lambda: seen.append(path.read_text()), settle=0.5, clock=clock)


def bump_mtime(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_a_change_is_reported_once_after_it_settles(watched: tuple[Path, Clock, list[str]]) -> None:
    path, clock, seen = watched
    w = make_watcher(watched)
    assert not w.check()
    path.write_text("a: 2\n", encoding="utf-8")
    bump_mtime(path)
    assert not w.check()  # just changed: wait for the writer to finish
    clock.now += 0.3
    assert not w.check()
    clock.now += 0.3
    assert w.check() and seen == ["a: 2\n"]
    clock.now += 5
    assert not w.check() and seen == ["a: 2\n"]  # never twice for the same content


def test_a_file_still_being_written_is_not_reported(watched: tuple[Path, Clock, list[str]]) -> None:
    path, clock, seen = watched
    w = make_watcher(watched)
    for part in ("watchlists:\n", "watchlists:\n  - name: x\n", "watchlists:\n  - name: x\n    query: y\n"):
        path.write_text(part, encoding="utf-8")
        bump_mtime(path)
        w.check()
        clock.now += 0.4  # each write comes before the previous one settled
    assert seen == []
    clock.now += 0.2
    assert w.check() and seen == ["watchlists:\n  - name: x\n    query: y\n"]


@pytest.mark.parametrize("how", ["touch", "same content rewritten", "changed and changed back"])
def test_no_report_without_a_new_content(watched: tuple[Path, Clock, list[str]], how: str) -> None:
    path, clock, seen = watched
    w = make_watcher(watched)
    if how == "touch":
        bump_mtime(path)
    elif how == "same content rewritten":
        path.write_text("a: 1\n", encoding="utf-8")
        bump_mtime(path)
    else:
        path.write_text("a: 9\n", encoding="utf-8")
        bump_mtime(path)
        w.check()
        path.write_text("a: 1\n", encoding="utf-8")
        bump_mtime(path)
    for _ in range(3):
        w.check()
        clock.now += 1
    assert seen == []


def test_a_missing_file_keeps_the_running_config_and_its_return_is_seen(
    watched: tuple[Path, Clock, list[str]],
) -> None:
    path, clock, seen = watched
    w = make_watcher(watched)
    path.unlink()
    assert not w.check()
    clock.now += 2
    assert not w.check() and seen == []
    path.write_text("a: 3\n", encoding="utf-8")
    w.check()
    clock.now += 1
    assert w.check() and seen == ["a: 3\n"]


def test_acknowledged_content_is_not_reported(watched: tuple[Path, Clock, list[str]]) -> None:
    path, clock, seen = watched
    w = make_watcher(watched)
    path.write_text("a: 4\n", encoding="utf-8")
    bump_mtime(path)
    w.acknowledge()  # a SIGHUP reload read it already
    clock.now += 1
    assert not w.check() and seen == []


def test_the_thread_calls_back_and_stops(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("a: 1\n", encoding="utf-8")
    calls: list[float] = []
    w = ConfigWatcher(path, lambda: calls.append(time.monotonic()), interval=0.05, settle=0.1).start()
    try:
        path.write_text("a: 2\n", encoding="utf-8")
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        w.stop()
    assert len(calls) == 1


# --- the daemon, as users run it ---------------------------------------------------------------

TROOPS = Item(
    "North Korean troops fighting in Kursk, Seoul says",
    "https://news.example.org/troops",
    summary="Pyongyang has sent more soldiers to the Kursk region.",
)
OTHER = Item("Iran sanctions tightened", "https://news.example.org/iran", summary="Oil exports targeted.")
NEW = Item("More Kursk fighting reported", "https://news.example.org/new", summary="Shelling near Sudzha.")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[DaemonProcess, HTTPTestServer, SMTPTestServer, Path]]:
    with HTTPTestServer() as http, SMTPTestServer() as smtp:
        http.route("/feed.xml", Static(body=rss([TROOPS, OTHER]), etag='"1"'))
        config = {
            "database": "sqlite:///state/monitor.db",
            "poll": {"interval": "10s", "jitter": "0s", "tick": "0.5s", "timeout": "2s", "deadline": "3s"},
            "delivery": {"interval": "0.5s"},
            "targets": {"mail": smtp.apprise_url()},
            "feeds": [{"name": "desk", "url": http.url("/feed.xml"), "language": "en"}],
            "watchlists": [{"name": "sanctions", "query": "sanctions AND Venezuela", "notify": ["mail"]}],
        }
        path = tmp_path / "config.yaml"
        with path.open("w", encoding="utf-8") as fh:
            fh.write("# edited by tests\n")
            YAML().dump(config, fh)
        daemon = DaemonProcess(path)
        try:
            yield daemon, http, smtp, path
        finally:
            daemon.kill()


def cli_in(path: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(path), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_edits_reach_the_running_daemon_without_restart_or_realert(
    running: tuple[DaemonProcess, HTTPTestServer, SMTPTestServer, Path],
) -> None:
    daemon, http, smtp, path = running
    daemon.wait_for_log(r"feed=desk fetched status=200 .*first poll: recorded without alerting")
    polls = len(http.requests("/feed.xml"))

    # A new watchlist through the CLI: the daemon notices the file, reloads, polling goes on
    # where it was, and the stored story it would have matched is NOT alerted.
    mark = daemon.mark()
    assert "added watchlist 'kursk'" in cli_in(
        path, "watchlist", "add", "kursk", "--query", "Kursk", "--notify", "mail"
    )
    daemon.wait_for_log(r"config file .* changed: reloading", start=mark)
    daemon.wait_for_log(r"config reloaded: 1 feeds \(0 added, 0 changed, 0 removed\), 2 watchlists", start=mark)
    assert len(http.requests("/feed.xml")) == polls  # no poll from scratch
    assert "# edited by tests" in path.read_text(encoding="utf-8")

    # A broken hand edit (written in place, not atomically) is rejected with file:line:field.
    good = path.read_text(encoding="utf-8")
    with path.open("w", encoding="utf-8") as fh:
        fh.write(good.replace("- mail", "- nowhere", 1))
    mark = daemon.mark()
    line = daemon.wait_for_log(r"config reload rejected", start=mark)
    assert f"{path}:" in line and "unknown target 'nowhere'" in line
    assert daemon.proc.poll() is None
    with path.open("w", encoding="utf-8") as fh:
        fh.write(good)
    daemon.wait_for_log(r"config reloaded", start=mark)
    assert smtp.messages == []  # nothing old was alerted by any of this

    # Asked for, a backfill alerts the stored story once.
    mark = daemon.mark()
    out = cli_in(path, "watchlist", "add", "troops", "--query", "troops", "--notify", "mail", "--backfill", "2")
    assert "backfill: 2 stories of the last 2 days scanned, 1 new matches, 1 alerts queued" in out
    (mail,) = smtp.wait_for(1, timeout=30)
    assert "North Korean troops" in mail["Subject"]

    # The next scheduled poll brings a new story: matched by the new watchlist, one alert.
    http.route("/feed.xml", Static(body=rss([NEW, TROOPS, OTHER]), etag='"2"'))
    smtp.wait_for(2, timeout=30)
    daemon.wait_for_log(r"alert sent target=mail .*watchlists=kursk", start=mark)
    time.sleep(1.5)  # a few more delivery rounds: nothing is sent twice
    assert len(smtp.messages) == 2
    assert "More Kursk fighting" in smtp.messages[1]["Subject"]
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log
