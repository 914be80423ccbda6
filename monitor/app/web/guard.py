"""Who may use the web app: the host check, the token (and its login form), CSRF.

The page can rewrite the config, so:

* Bound to a loopback address by default, where only this machine can connect. The
  ``Host`` header must then name a loopback host, which defeats DNS rebinding (a web
  page on evil.example resolving its name to 127.0.0.1).
* Anywhere else a token is required (config ``web.token``): ``Authorization: Bearer``,
  or a cookie set by the ``/login`` form, or ``?token=`` (for feed readers). The cookie
  holds an HMAC of the token, never the token, and is ``HttpOnly; SameSite=Strict``.
* Every POST carries a CSRF token (an HMAC of a per-process secret) in a form field or
  the ``X-CSRF-Token`` header, so another site cannot post to it from a browser.
* ``/healthz`` stays open (it tells up or down, and a short reason when down).
* Tokens are compared as UTF-8 bytes in constant time: a non-ASCII token is a 401 or a
  403 like any wrong one, never a 500.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from monitor.app.web.ui import STALE_FORM, Ui, same_secret

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
COOKIE = "news_monitor_session"


def sign(secret: bytes, what: str) -> str:
    """The hex HMAC-SHA256 of ``what`` under ``secret``."""
    return hmac.new(secret, what.encode(), hashlib.sha256).hexdigest()


class Guard(BaseHTTPMiddleware):
    """Host check (loopback), token check (elsewhere), CSRF check (every POST)."""

    def __init__(self, app: Any, *, token: str | None, loopback: bool, csrf: str) -> None:
        super().__init__(app)
        self.token = token
        self.loopback = loopback
        self.csrf = csrf

    async def dispatch(self, request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        path = request.url.path
        if self.loopback:
            host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]").lower()
            if host and host not in LOOPBACK:
                return PlainTextResponse("unknown host (this page answers on localhost only)", status_code=421)
        public = path == "/healthz" or path.startswith("/static/") or path == "/login"
        if self.token and not public and not self._authorised(request):
            if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                return RedirectResponse(f"/login?next={quote(path)}", status_code=303)
            return PlainTextResponse("token required", status_code=401, headers={"WWW-Authenticate": "Bearer"})
        if request.method == "POST" and path != "/login":
            # The form token is checked by each form's handler (reading the body here
            # would consume it); a script's request carries it in a header instead.
            sent = request.headers.get("x-csrf-token")
            form_post = request.headers.get("content-type", "").startswith(
                ("application/x-www-form-urlencoded", "multipart/form-data")
            )
            if sent is None and not form_post or sent is not None and not same_secret(sent, self.csrf):
                return PlainTextResponse(STALE_FORM, 403)
        return await call_next(request)

    def _authorised(self, request: Request) -> bool:
        assert self.token is not None
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and same_secret(auth[7:].strip(), self.token):
            return True
        cookie = request.cookies.get(COOKIE)
        if cookie and same_secret(cookie, sign(self.token.encode(), "session")):
            return True
        given = request.query_params.get("token")
        return bool(given) and same_secret(str(given), self.token)


class Login:
    """``/login``: the token form (only useful when a token is set), then a session cookie."""

    def __init__(self, ui: Ui, token: str | None) -> None:
        self.ui = ui
        self.token = token

    def routes(self) -> list[Route]:
        return [Route("/login", self.login, methods=["GET", "POST"])]

    async def login(self, request: Request) -> Response:
        nxt = request.query_params.get("next", "/")
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/"
        if request.method == "GET":
            return self.ui.page(request, "login.html", nav="", next=nxt, error=None)
        form = await request.form()
        given = str(form.get("token") or "")
        if not self.token or not same_secret(given, self.token):
            return self.ui.page(request, "login.html", 401, nav="", next=nxt, error="wrong token")
        response = RedirectResponse(nxt, status_code=303)
        response.set_cookie(
            COOKIE,
            sign(self.token.encode(), "session"),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            max_age=30 * 86400,
        )
        return response
