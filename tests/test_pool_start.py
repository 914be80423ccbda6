"""A parse worker that cannot be started: every parse fails with ``worker_start`` at
once, one ERROR line names the executable and the OS error, and the next parse tries
again. Real worker processes; the poll cycle runs through the CLI against a real HTTP
server on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import logging
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from monitor.errors import ParseError
from monitor.ingest.pool import ParseJob, ParsePool
from monitor.storage.store import Store
from tests.support.feeds import Item, rss
from tests.support.httpserver import HTTPTestServer, Static

FEED = rss([Item("A story", "https://news.example/story/1")])


def not_executable(tmp: Path) -> tuple[str, str]:
    path = tmp / "python"
    path.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)  # no execute bit: even root may not run it
    return str(path), "Permission denied"


def missing(tmp: Path) -> tuple[str, str]:
    return str(tmp / "no-such-python"), "No such file or directory"


def a_directory(tmp: Path) -> tuple[str, str]:
    return str(tmp), "Permission denied"


UNSTARTABLE: list[Callable[[Path], tuple[str, str]]] = [not_executable, missing, a_directory]


def job() -> ParseJob:
    return ParseJob(FEED, "http://127.0.0.1/feed.xml", "application/rss+xml", dt.datetime.now(dt.UTC))


def start_errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "monitor.parse" and r.levelno == logging.ERROR and "worker_start" in r.getMessage()
    ]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("make", UNSTARTABLE, ids=lambda f: f.__name__)
def test_pool_fails_every_job_with_worker_start_and_recovers(
    make: Callable[[Path], tuple[str, str]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    executable, os_error = make(tmp_path)
    caplog.set_level(logging.INFO, logger="monitor.parse")
    pool = ParsePool(2, timeout=10.0, executable=executable)
    try:
        pool.warm()  # the slot threads' own start fails first: they must live on
        futures = [pool.submit(job()) for _ in range(6)]
        reasons = []
        for future in futures:
            with pytest.raises(ParseError) as caught:
                future.result(timeout=20)
            reasons.append(caught.value.reason)
        assert reasons == ["worker_start"] * 6
        assert executable in str(caught.value) and os_error in str(caught.value)
        logged = start_errors(caplog)
        assert len(logged) == 1 and executable in logged[0] and os_error in logged[0]
        pool.executable = sys.executable  # the interpreter can run again: the next job starts one
        assert pool.submit(job()).result(timeout=30).entries[0].title == "A story"
    finally:
        pool.close()


def poll_once(config: Path, executable: str) -> subprocess.CompletedProcess[str]:
    """``news-monitor poll --once`` in a process whose interpreter path (``sys.executable``,
    what the pool starts its workers with) is ``executable``."""
    code = (
        f"import sys; sys.executable = {executable!r}; "
        "from monitor.app.cli import main; sys.argv = ['news-monitor', *sys.argv[1:]]; main()"
    )
    args = ["--config", str(config), "poll", "--once", "--no-deliver"]
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=90)


@pytest.mark.timeout(120)
def test_poll_once_ends_with_every_feed_failed_worker_start(tmp_path: Path) -> None:
    executable, os_error = not_executable(tmp_path)
    database = f"sqlite:///{tmp_path / 'monitor.db'}"
    with HTTPTestServer() as http:
        feeds = [{"name": f"f{i}", "url": http.route(f"/f{i}.xml", Static(FEED))} for i in range(5)]
        config = tmp_path / "config.yaml"
        with config.open("w", encoding="utf-8") as fh:
            YAML().dump({"database": database, "poll": {"timeout": "2s", "parse_timeout": "2s"}, "feeds": feeds}, fh)
        first = poll_once(config, executable)
        assert first.returncode == 0, first.stderr
        errors = [line for line in first.stderr.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and executable in errors[0] and os_error in errors[0], first.stderr
        assert "Traceback" not in first.stderr
        store = Store(database)
        try:
            assert {f.name: f.last_error_reason for f in store.feeds()} == {f["name"]: "worker_start" for f in feeds}
            again = poll_once(config, sys.executable)
            assert again.returncode == 0, again.stderr
            assert {f.name: f.state for f in store.feeds()} == {f["name"]: "ok" for f in feeds}
        finally:
            store.close()
