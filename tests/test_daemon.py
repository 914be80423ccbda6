"""The daemon as users run it: scheduled polls, alerts, SIGHUP reload, clean SIGTERM."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.support.daemon import DaemonProcess
from tests.support.feeds import SEED_TITLE, Item, rss, seed_article
from tests.support.httpserver import HTTPTestServer, Static
from tests.support.smtpserver import SMTPTestServer

ROOT = Path(__file__).resolve().parent.parent


def _edited(text: str, section: str, key: str, value: object) -> str:
    data = YAML().load(text)
    target = data[section][0] if section == "watchlists" else data[section]
    target[key] = value
    out = io.StringIO()
    YAML().dump(data, out)
    return out.getvalue()


# Mistakes in config.yaml that a reload must reject with file:line:field, keeping the daemon.
BROKEN_RELOADS: list[tuple[Callable[[str], str], str]] = [
    (lambda t: _edited(t, "poll", "backoff_max", float("inf")), "poll.backoff_max: inf is longer"),
    (lambda t: _edited(t, "poll", "max_interval", float("nan")), "poll.max_interval: a duration cannot be"),
    (lambda t: _edited(t, "poll", "backoff_max", "99999999999d"), "'99999999999d' is longer than"),
    (lambda t: _edited(t, "watchlists", "query", "(" * 250 + "Kursk" + ")" * 250), "nests deeper than 64"),
]


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[HTTPTestServer, SMTPTestServer, Path]]:
    shipped = YAML(typ="safe").load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    with HTTPTestServer() as http, SMTPTestServer() as smtp:
        http.route("/seed.xml", Static(body=rss([Item("Old news", "https://x.example/old")]), etag='"1"'))
        for wl in shipped["watchlists"]:
            wl["notify"] = ["mail"]
        config = {
            "database": "sqlite:///state/monitor.db",  # relative to the config file
            "poll": {"interval": "10s", "jitter": "0s", "tick": "0.5s", "timeout": "2s", "deadline": "3s"},
            "delivery": {"interval": "0.5s"},
            "targets": {"mail": smtp.apprise_url()},
            "feeds": [{"name": "seed-desk", "url": http.url("/seed.xml"), "language": "fr"}],
            "aliases": shipped.get("aliases") or {},
            "watchlists": shipped["watchlists"],
        }
        path = tmp_path / "config.yaml"
        with path.open("w", encoding="utf-8") as fh:
            YAML().dump(config, fh)
        yield http, smtp, path


def test_daemon_polls_alerts_reloads_and_stops_cleanly(
    setup: tuple[HTTPTestServer, SMTPTestServer, Path],
) -> None:
    http, smtp, config = setup
    daemon = DaemonProcess(config)
    try:
        daemon.wait_for_log(r"feed=seed-desk fetched status=200 .*first poll: recorded without alerting")
        assert (config.parent / "state" / "monitor.db").exists()

        # A new story on the next scheduled poll: one e-mail, without any restart.
        http.route(
            "/seed.xml",
            Static(body=rss([seed_article(), Item("Old news", "https://x.example/old")]), etag='"2"'),
        )
        (mail,) = smtp.wait_for(1, timeout=30)
        assert SEED_TITLE in mail["Subject"]
        daemon.wait_for_log(
            r"alert sent target=mail .*watchlists=dprk-russia-pact,kursk-troops,dprk-russia-sanctions"
        )

        # An invalid config is rejected on SIGHUP with file, line and field; the daemon keeps running.
        good = config.read_text(encoding="utf-8")
        config.write_text(good.replace("notify:\n  - mail", "notify:\n  - nowhere", 1), encoding="utf-8")
        mark = daemon.mark()
        daemon.signal(signal.SIGHUP)
        line = daemon.wait_for_log(r"config reload rejected", start=mark)
        assert f"{config}:" in line and "unknown target 'nowhere'" in line

        # Mistakes that used to kill the daemon on reload are rejected the same way.
        for broken, said in BROKEN_RELOADS:
            config.write_text(broken(good), encoding="utf-8")
            mark = daemon.mark()
            daemon.signal(signal.SIGHUP)
            line = daemon.wait_for_log(r"config reload rejected", start=mark)
            assert f"{config}:" in line and said in line, line
            assert daemon.proc.poll() is None

        # A valid change is taken on SIGHUP: a new feed is added and polled at once.
        http.route("/second.xml", Static(body=rss([Item("Other", "https://x.example/other")]), etag='"a"'))
        data = YAML().load(good)
        data["feeds"].append({"name": "second", "url": http.url("/second.xml")})
        with config.open("w", encoding="utf-8") as fh:
            YAML().dump(data, fh)
        mark = daemon.mark()
        daemon.signal(signal.SIGHUP)
        daemon.wait_for_log(r"config reloaded: 2 feeds \(1 added", start=mark)
        daemon.wait_for_log(r"feed=second fetched status=200", start=mark)
        assert daemon.proc.poll() is None

        # SIGTERM: finish and exit 0.
        assert daemon.stop() == 0
        assert "stopped cleanly" in daemon.log
        assert "Traceback" not in daemon.log
        assert len(smtp.messages) == 1
    finally:
        daemon.kill()


def test_daemon_refuses_to_start_on_bad_config(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text("poll:\n  interval: 1s\n", encoding="utf-8")
    daemon = DaemonProcess(cfg)
    code = daemon.proc.wait(30)
    daemon.kill()
    assert code == 1
    assert f"{cfg}:2: poll.interval: must be at least 10s" in daemon.log
    assert "Traceback" not in daemon.log


_SIGNAL_IN_ANOTHER_THREAD = """
import signal, sys, threading, time
from monitor.app.daemon import Daemon

daemon = Daemon(sys.argv[1])

def poke() -> None:
    time.sleep(2)
    # The signal lands in this thread, not the main one, as the kernel may choose.
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

threading.Thread(target=poke, daemon=True).start()
sys.exit(daemon.run())
"""


def test_sigterm_stops_the_daemon_whichever_thread_receives_it(
    setup: tuple[HTTPTestServer, SMTPTestServer, Path],
) -> None:
    """The kernel hands a process-directed signal to any thread; a main thread blocked in
    a plain Event.wait() never ran the handler then, and the daemon ignored SIGTERM."""
    _, _, config = setup
    done = subprocess.run(
        [sys.executable, "-c", _SIGNAL_IN_ANOTHER_THREAD, str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=config.parent,
    )
    assert done.returncode == 0, done.stderr
