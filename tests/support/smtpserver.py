"""A real SMTP server on 127.0.0.1 for the test suite (aiosmtpd).

Alerts are tested end to end: Apprise's mailto plugin talks SMTP over a real socket to
this server, which parses every message it accepts into an
:class:`email.message.EmailMessage` (``email.policy.default``), so a test can look at
the subject, the ``multipart/alternative`` parts and the decoded bodies exactly as a
mail client would::

    with SMTPTestServer() as smtp:
        target = load_channels({"mail": smtp.apprise_url()})["mail"]
        target.send(message)
        [mail] = smtp.wait_for(1)
        assert mail["Subject"] == "..."

``SMTPTestServer(logins={"user": "password"})`` requires an SMTP AUTH login (PLAIN or
LOGIN, over the plain connection) before it accepts a message, so a message that
arrives proves the client logged in with that password.

``stop()`` closes the listening socket, so connections are refused (an SMTP outage);
``start()`` listens again on the *same* port, so the target URL stays valid.

The pytest fixture ``smtp_server`` at the end can be imported into a ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from types import TracebackType
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

__all__ = ["Received", "SMTPTestServer", "port_is_open", "smtp_server"]

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class Received:
    """One accepted message: the SMTP envelope and the parsed message."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    message: EmailMessage
    at: float = 0.0  # time.time() when the message was accepted (fault tests compare it with kill times)


class _Handler:
    """aiosmtpd handler: parse and hand every DATA to the server object."""

    def __init__(self, sink: SMTPTestServer) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self._sink._accept(
            Received(
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(str(r) for r in envelope.rcpt_tos),
                message=parsed,
                at=time.time(),
            )
        )
        return "250 Message accepted for delivery"


class _Controller(Controller):
    """aiosmtpd's threaded controller, on a port chosen by the OS when ``port=0``.

    The stock controller connects to ``self.port`` to check that the server is up, which
    fails for port 0; the real port is read from the listening socket first.
    """

    def _trigger_server(self) -> None:
        if self.port == 0 and isinstance(self.server, asyncio.Server):
            self.port = int(self.server.sockets[0].getsockname()[1])
        super()._trigger_server()  # type: ignore[no-untyped-call]  # aiosmtpd has no hints here


class SMTPTestServer:
    """An SMTP server collecting messages; usable as a context manager."""

    def __init__(self, port: int = 0, *, logins: dict[str, str] | None = None) -> None:
        self.port = port
        self.logins = logins
        self._cond = threading.Condition()
        self._received: list[Received] = []
        self._controller: _Controller | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Listen (again): on an ephemeral port the first time, then on the same port."""
        if self._controller is not None:
            return
        auth: dict[str, Any] = {}
        if self.logins is not None:
            auth = {"authenticator": self._authenticate, "auth_required": True, "auth_require_tls": False}
        controller = _Controller(_Handler(self), hostname=HOST, port=self.port, ready_timeout=5.0, **auth)
        controller.start()
        self.port = controller.port
        self._controller = controller

    def stop(self) -> None:
        """Stop listening: new connections are refused until :meth:`start`."""
        if self._controller is None:
            return
        self._controller.stop()
        self._controller = None

    @property
    def running(self) -> bool:
        return self._controller is not None

    def __enter__(self) -> SMTPTestServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (self.logins or {}).get(data.login.decode()) == data.password.decode()
        return AuthResult(success=ok, handled=False)

    # -- what tests use -----------------------------------------------------------------

    def apprise_url(self, *, to: str = "desk@example.org", sender: str = "alerts@example.org") -> str:
        """A plain-SMTP Apprise URL for this server (no TLS, no login)."""
        return f"mailto://{HOST}:{self.port}?from={sender}&to={to}&mode=insecure"

    @property
    def received(self) -> list[Received]:
        with self._cond:
            return list(self._received)

    @property
    def messages(self) -> list[EmailMessage]:
        return [r.message for r in self.received]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[EmailMessage]:
        """The first ``count`` messages, waiting up to ``timeout`` seconds for them.

        Raises :class:`AssertionError` naming how many arrived if they did not all come.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self._received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} message(s), got {len(self._received)}")
                self._cond.wait(left)
            return [r.message for r in self._received[:count]]

    def clear(self) -> None:
        with self._cond:
            self._received.clear()

    def _accept(self, item: Received) -> None:
        with self._cond:
            self._received.append(item)
            self._cond.notify_all()


def port_is_open(port: int, host: str = HOST) -> bool:
    """Whether something accepts TCP connections on ``host:port`` (for outage tests)."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture
def smtp_server() -> Iterator[SMTPTestServer]:
    """A running SMTP test server, stopped after the test."""
    server = SMTPTestServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()
