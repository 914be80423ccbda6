"""Serving the app with uvicorn: in a thread of the daemon, or in the foreground.

The listening socket is bound here, before uvicorn starts, so a taken port or a bad
address is a clear error at start-up (not a log line from a background thread), and
port 0 works (tests ask for a free port and read the real one from :attr:`url`).
uvicorn's own logging configuration is switched off (``log_config=None``): its
records go through the daemon's one-line format, and access logs stay off.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading

import uvicorn

from monitor.app.web.app import WebState, create_app
from monitor.app.web.guard import LOOPBACK
from monitor.errors import ConfigError

log = logging.getLogger("monitor.app.web")


class WebServer:
    """The web app on ``host:port``; :meth:`start` runs it in a thread, :meth:`stop` ends it."""

    def __init__(self, state: WebState, host: str, port: int, *, token: str | None = None) -> None:
        loopback = host in LOOPBACK
        if not loopback and not token:
            raise ConfigError("the web page needs a token when it listens beyond this machine", field="web.token")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self.sock = socket.create_server((host, port), family=family)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", field="web.listen") from None
        self.host, self.port = host, int(self.sock.getsockname()[1])
        self.state = state
        self.app = create_app(state, token=token, loopback=loopback)
        if not log.isEnabledFor(logging.DEBUG):  # "Started server process" and the like: noise
            logging.getLogger("uvicorn").setLevel(logging.WARNING)
        self.server = uvicorn.Server(
            uvicorn.Config(
                self.app,
                log_config=None,
                access_log=False,
                lifespan="off",
                server_header=False,
                proxy_headers=False,
                timeout_graceful_shutdown=5,
            )
        )
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> WebServer:
        self._thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, name="web", daemon=True
        )
        self._thread.start()
        log.info("web interface on %s", self.url)
        return self

    def serve_forever(self) -> None:
        """In the foreground (``news-monitor web``) until SIGTERM or Ctrl-C, then exit cleanly.

        The server runs in its thread as inside the daemon; the main thread only waits
        for a signal (uvicorn's own handlers would re-raise it and end the process with
        the signal's status instead of 0).
        """
        done = threading.Event()

        def on_signal(signum: int, _frame: object) -> None:
            log.info("%s received: stopping the web interface", signal.Signals(signum).name)
            done.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        self.start()
        try:
            while not done.wait(0.5):
                if self._thread is not None and not self._thread.is_alive():
                    break  # the server died on its own: its error is in the log
        finally:
            self.stop()

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.sock.close()


__all__ = ["WebServer"]
