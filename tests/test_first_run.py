"""A first run that fails everywhere says why once, instead of one error per feed only."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from monitor.app.cli import cli
from monitor.app.cli.common import DAYS
from monitor.app.poll import CycleReport, FeedOutcome
from monitor.config.model import parse_config
from monitor.errors import ConfigError
from tests.support.daemon import DaemonProcess
from tests.support.feeds import Item, rss
from tests.support.httpserver import HTTPTestServer, Static, closed_port

DNS = "http://wire.example/rss: connection failed: [Errno -3] Temporary failure in name resolution"
REFUSED = "http://127.0.0.1:9/rss: connection failed: All connection attempts failed"


def _report(*outcomes: tuple[str, str | None, str | None]) -> CycleReport:
    return CycleReport(
        dt.datetime(2026, 12, 2, tzinfo=dt.UTC),
        outcomes=[
            FeedOutcome(f"f{i}", status, reason=reason, error=error)
            for i, (status, reason, error) in enumerate(outcomes)
        ],
    )


@pytest.mark.parametrize(
    ("outcomes", "sentence"),
    [
        ([("error", "connection", DNS)] * 20, "all 20 feeds failed with DNS errors: is this machine online?"),
        ([("error", "connection", REFUSED)] * 3, "all 3 feeds failed the same way (connection): is this machine"),
        ([("error", "tls", "x")] * 2, "all 2 feeds failed the same way (tls): is this machine's clock right"),
        ([("error", "http_500", "x")] * 2, "all 2 feeds failed the same way (http_500): check the first errors"),
        ([("error", "connection", DNS)], None),  # one feed says nothing about this machine
        ([("error", "connection", DNS), ("new", None, None)], None),  # one works: the network does
        ([("error", "connection", DNS), ("error", "timeout", "x")], None),  # different causes
        ([("unchanged", None, None)] * 4, None),
        ([], None),
    ],
)
def test_a_common_failure_is_named_once(
    outcomes: list[tuple[str, str | None, str | None]], sentence: str | None
) -> None:
    found = _report(*outcomes).common_failure()
    if sentence is None:
        assert found is None
    else:
        assert found is not None and found.startswith(sentence)


def test_poll_once_says_when_every_feed_fails_the_same_way(tmp_path: Path) -> None:
    with closed_port() as port:
        feeds = "".join(f"  - {{name: f{i}, url: 'http://127.0.0.1:{port}/f{i}.xml'}}\n" for i in range(3))
        config = tmp_path / "config.yaml"
        config.write_text(
            "database: sqlite:///monitor.db\npoll: {timeout: 2s, deadline: 3s}\nfeeds:\n" + feeds, encoding="utf-8"
        )
        done = subprocess.run(
            [sys.executable, "-m", "monitor", "--config", str(config), "poll", "--once"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-2].startswith("all 3 feeds failed the same way (connection): is this machine online")
    assert "Traceback" not in done.stderr


def test_the_daemon_says_it_once_and_keeps_running(tmp_path: Path) -> None:
    with closed_port() as port:
        feeds = "".join(f"  - {{name: f{i}, url: 'http://127.0.0.1:{port}/f{i}.xml'}}\n" for i in range(2))
        config = tmp_path / "config.yaml"
        config.write_text(
            "database: sqlite:///monitor.db\npoll: {timeout: 2s, deadline: 3s, tick: 0.2s, jitter: 0s}\n"
            "feeds:\n" + feeds,
            encoding="utf-8",
        )
        daemon = DaemonProcess(config)
        try:
            line = daemon.wait_for_log(r"all 2 feeds failed the same way \(connection\)")
            assert "WARNING" in line
            assert daemon.proc.poll() is None
            assert daemon.stop() == 0
            assert daemon.log.count("feeds failed the same way") == 1
        finally:
            daemon.kill()


def run_shipped(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``news-monitor ARGS`` on the shipped config, with its database in ``folder``."""
    config = folder / "config.yaml"
    shipped = (Path(__file__).resolve().parents[1] / "config.yaml").read_text(encoding="utf-8")
    config.write_text(shipped.replace("database:", "database: sqlite:///monitor.db\n#", 1), encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), *args],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=folder,
    )


@pytest.mark.parametrize(
    "args",
    [
        ["match", "-w", "nope"],
        ["match", "-w", "kursk-troops", "-w", "nope"],
        ["stories", "search", "Kursk", "--watchlist", "nope"],
    ],
)
def test_an_unknown_watchlist_name_is_an_error_naming_the_known_ones(tmp_path: Path, args: list[str]) -> None:
    done = run_shipped(tmp_path, *args)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: no watchlist 'nope' (known: ")
    assert "kursk-troops" in last


@pytest.mark.parametrize(
    ("value", "days"),
    [("7", 7.0), ("0.5", 0.5), ("36h", 1.5), ("2w", 14.0), ("30m", 30 / 1440), ("1d", 1.0), ("90s", 90 / 86400)],
)
def test_day_options_take_durations_like_the_config(value: str, days: float) -> None:
    assert DAYS.convert(value, None, None) == pytest.approx(days)


@pytest.mark.parametrize("value", ["soon", "inf", "nan", "-1", "0", "99999999d", "1e999"])
def test_day_options_refuse_what_is_not_a_span(value: str) -> None:
    with pytest.raises(click.BadParameter):
        DAYS.convert(value, None, None)


@pytest.mark.parametrize(
    "args",
    [
        ["watchlist", "test", "kursk-troops", "--days", "36h"],
        ["stories", "search", "Kursk", "--since", "2w"],
        ["watchlist", "test", "kursk-troops", "--days", "2"],
    ],
)
def test_cli_day_options_accept_durations(tmp_path: Path, args: list[str]) -> None:
    done = run_shipped(tmp_path, *args)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("database: mysql://u@h/db\n", "config.yaml:1: database: ", "unsupported database 'mysql'"),
        ("database: 'oracle+cx://h'\n", "config.yaml:1: database: ", "unsupported database 'oracle+cx'"),
        ("targets:\n  m: 'json://u:${SMTP@127.0.0.1/'\n", "config.yaml:2: targets.m: ", "malformed ${...}"),
        ("targets:\n  m: 'json://u:${1X}@127.0.0.1/'\n", "config.yaml:2: targets.m: ", "malformed ${...}"),
        (
            "feeds:\n  - {name: a, url: 'https://a.example/rss', language: klingon}\n",
            "config.yaml:2: feeds[0].language: ",
            "'klingon' is not a language tag",
        ),
    ],
)
def test_check_config_refuses_what_cannot_work(text: str, where: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, file="config.yaml", env={})
    assert str(err.value).startswith(where) and message in str(err.value)


@pytest.mark.parametrize(
    ("text", "warnings"),
    [
        ("feeds: []\n", ["no enabled feed", "no enabled watchlist", "no target"]),
        (
            "targets: {c: 'console://'}\nfeeds: [{name: a, url: 'https://a.example/rss', enabled: false}]\n"
            "watchlists: [{name: w, query: Kursk, notify: [c]}]\n",
            ["no enabled feed"],
        ),
        (
            "database: postgres://u@h/db\ntargets: {c: 'console://'}\n"
            "feeds: [{name: a, url: 'https://a.example/rss', language: en-GB}]\n"
            "watchlists: [{name: w, query: Kursk, notify: [c]}]\n",
            [],
        ),
    ],
)
def test_a_config_that_would_do_nothing_says_so(text: str, warnings: list[str]) -> None:
    config = parse_config(text, file="config.yaml", env={})[0]
    assert [w.split(":")[0] for w in config.warnings()] == warnings


def test_check_config_prints_the_warnings(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("feeds: []\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), "check-config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert "  warning: no enabled feed: nothing will be polled" in done.stdout
    assert "  warning: no target: nothing will be sent" in done.stdout


def test_a_no_op_edit_says_nothing_changed_and_writes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    shipped = (Path(__file__).resolve().parents[1] / "config.yaml").read_text(encoding="utf-8")
    config.write_text(shipped, encoding="utf-8")
    before = config.stat().st_mtime_ns

    def edit(*args: str) -> str:
        result = CliRunner().invoke(cli, ["--config", str(config), "watchlist", "edit", "kursk-troops", *args])
        assert result.exit_code == 0, result.output
        return result.output

    assert edit().startswith("nothing changed: watchlist 'kursk-troops' already reads so")
    assert edit("--notify", "console").startswith("nothing changed")
    assert config.read_text(encoding="utf-8") == shipped and config.stat().st_mtime_ns == before
    assert edit("--disable").startswith("changed watchlist 'kursk-troops'")
    assert edit("--disable").startswith("nothing changed")


def test_a_first_reading_says_what_it_recorded_and_how_to_see_it(tmp_path: Path) -> None:
    items = [
        Item("North Korean troops deployed to Russia's Kursk region", "https://wire.example/kursk", "Seoul says."),
        Item("Weather: a mild autumn", "https://wire.example/weather", "Nothing to report."),
    ]
    with HTTPTestServer() as http:
        http.route("/wire.xml", Static(body=rss(items)))
        config = tmp_path / "config.yaml"
        config.write_text(
            "database: sqlite:///monitor.db\n"
            f"feeds:\n  - {{name: wire, url: '{http.url('/wire.xml')}'}}\n"
            "targets: {hook: 'json://127.0.0.1:9/alerts'}\n"
            "watchlists:\n  - {name: kursk, query: 'Kursk AND troops', notify: [hook]}\n",
            encoding="utf-8",
        )
        poll = [sys.executable, "-m", "monitor", "--config", str(config), "poll", "--once"]
        first = subprocess.run(poll, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        again = subprocess.run(poll, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (
        "first reading of 1 feed(s): 2 stories recorded without alerting (a new feed's backlog is not news;"
        " the stories that arrive from now on alert); 1 of them match your watchlists:"
        " `news-monitor watchlist test NAME` lists them" in first.stderr
    )
    assert "first reading" not in again.stderr  # said once, for the feed's first reading only


def test_check_config_points_at_a_target_apprise_cannot_use(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "database: sqlite:///monitor.db\ntargets:\n  console: 'console://'\n  x: 'notaurl://s3cr3t@host'\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), "check-config"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"Error: {config}:4: targets.x: target 'x': Apprise cannot use the URL notaurl://")
    assert "s3cr3t" not in done.stderr


def test_an_unknown_feed_name_is_an_error_naming_the_known_ones(tmp_path: Path) -> None:
    done = run_shipped(tmp_path, "poll", "--feed", "nope")
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert "unknown feed(s): nope (known: bbc-world, " in last
