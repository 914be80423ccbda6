"""A local webhook receiver on 127.0.0.1, and a way to point Slack at it.

:class:`WebhookReceiver` is a threaded ``http.server`` that records every request (method,
path, query, headers, raw body and parsed JSON) and answers with a configurable status
and body, so a test can make a target fail (``receiver.status = 500``). Use it with
Apprise's ``json://127.0.0.1:PORT/path`` (:meth:`WebhookReceiver.apprise_json_url`).

Apprise's Slack plugin always posts to ``https://hooks.slack.com``. :func:`redirect_host`
re-routes those requests, and only those, to the receiver at the last possible moment:
it wraps ``requests.adapters.HTTPAdapter.send``, the transport under every ``requests``
call, so Apprise builds its real payload and ``requests`` prepares the real request
(headers, JSON encoding); only the destination changes. Slack's webhook answers
``200 ok`` on success, which is the receiver's default answer.

The pytest fixture ``webhook`` at the end can be imported into a ``conftest.py``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import pytest
import requests
import requests.adapters

__all__ = ["Hook", "WebhookReceiver", "redirect_host", "webhook"]

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Hook:
    """One request the receiver got. ``headers`` keys are lower-case."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any  # the parsed body, or None when it is not JSON
    at: float = 0.0  # time.monotonic() on arrival, before the answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    receiver: WebhookReceiver


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            parsed: Any = json.loads(body) if body else None
        except ValueError:
            parsed = None
        split = urlsplit(self.path)
        receiver = self.server.receiver
        receiver._record(
            Hook(
                method=self.command,
                path=split.path,
                query=dict(parse_qsl(split.query)),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                json=parsed,
                at=time.monotonic(),
            )
        )
        if receiver.delay > 0:  # a slow target; stop() ends the wait
            receiver._stopping.wait(receiver.delay)
        status, answer = receiver.status, receiver.response_body
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_POST = do_PUT = do_GET = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Quiet: the receiver's request log is the record."""


class WebhookReceiver:
    """A threaded HTTP receiver on an ephemeral port; usable as a context manager.

    ``status`` and ``response_body`` are what every request gets (change them at any
    time to simulate a failing endpoint); ``delay`` is how long each request is held
    after it is recorded and before it is answered (a slow target).
    """

    def __init__(self, *, status: int = 200, response_body: bytes = b"ok", delay: float = 0.0) -> None:
        self.status = status
        self.response_body = response_body
        self.delay = delay
        self._stopping = threading.Event()
        self._cond = threading.Condition()
        self._hooks: list[Hook] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._server is not None:
            return
        self._stopping.clear()
        server = _Server((HOST, 0), _Handler)
        server.receiver = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "receiver not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def apprise_json_url(self, path: str = "/hook") -> str:
        """An Apprise ``json://`` URL posting to ``path`` on this receiver."""
        return f"json://{HOST}:{self.port}/{path.lstrip('/')}"

    @property
    def hooks(self) -> list[Hook]:
        with self._cond:
            return list(self._hooks)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Hook]:
        """The first ``count`` requests, waiting up to ``timeout`` seconds for them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._hooks) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} request(s), got {len(self._hooks)}")
                self._cond.wait(left)
            return self._hooks[:count]

    def wait_until(self, ready: Callable[[list[Hook]], bool], timeout: float) -> list[Hook]:
        """Wait until ``ready(requests so far)``, up to ``timeout`` seconds; the requests
        either way (the caller asserts)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ready(self._hooks) and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(min(left, 0.1))
            return list(self._hooks)

    def clear(self) -> None:
        with self._cond:
            self._hooks.clear()

    def _record(self, hook: Hook) -> None:
        with self._cond:
            self._hooks.append(hook)
            self._cond.notify_all()


@contextmanager
def redirect_host(host: str, receiver: WebhookReceiver) -> Iterator[list[str]]:
    """Send every ``requests`` call to ``host`` to ``receiver`` instead, inside the block.

    Yields the list of original URLs that were redirected (so a test can check, for
    instance, that Apprise posted to ``https://hooks.slack.com/services/...``). Requests
    to any other host go through untouched.
    """
    original = requests.adapters.HTTPAdapter.send
    redirected: list[str] = []

    def send(
        self: requests.adapters.HTTPAdapter,
        request: requests.PreparedRequest,
        *args: Any,
        **kwargs: Any,
    ) -> requests.Response:
        url = request.url or ""
        split = urlsplit(url)
        if split.hostname == host:
            redirected.append(url)
            request.url = urlunsplit(("http", f"{HOST}:{receiver.port}", split.path, split.query, ""))
            # The original URL's proxies and TLS settings do not apply to the receiver.
            kwargs["proxies"] = {}
            kwargs["verify"] = False
        return original(self, request, *args, **kwargs)

    requests.adapters.HTTPAdapter.send = send  # type: ignore[method-assign]
    try:
        yield redirected
    finally:
        requests.adapters.HTTPAdapter.send = original  # type: ignore[method-assign]


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    """A running webhook receiver, stopped after the test."""
    receiver = WebhookReceiver()
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
