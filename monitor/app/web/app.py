"""The Starlette app, assembled from one module per area of the site.

Pages (:mod:`~monitor.app.web.pages`): ``/`` recent alerts (matched terms highlighted,
"also reported by" from the story's sightings, delivery state per target), ``/search``,
``/stories/ID``; ``/feeds``, feed health and the form to add one
(:mod:`~monitor.app.web.feeds`). The watchlists and their editor with its
live preview (:mod:`~monitor.app.web.editor`). Per-watchlist ``/watchlists/NAME.atom``
and ``.json`` (:mod:`~monitor.app.web.syndication`). ``/healthz`` and ``/metrics``
(:mod:`~monitor.app.web.health`). Who may use any of it, and ``/login``
(:mod:`~monitor.app.web.guard`). Every page is presentation over
:mod:`monitor.app.services`, the layer the CLI uses too. A database that does not
answer (:class:`~monitor.errors.StoreError`) is a 503 "database unavailable" page,
never a bare 500.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from monitor.app.metrics import Metrics
from monitor.app.services.backtests import RecentStories
from monitor.app.web.editor import Editor
from monitor.app.web.feeds import Feeds
from monitor.app.web.guard import Guard, Login, sign
from monitor.app.web.health import Health
from monitor.app.web.pages import Pages
from monitor.app.web.syndication import Syndication
from monitor.app.web.ui import HERE, Ui
from monitor.config.model import LoadedConfig, load_config
from monitor.errors import ConfigError, StoreError
from monitor.storage.store import Store

log = logging.getLogger("monitor.app.web")


@dataclass
class WebState:
    """What the pages need from the process that serves them (the daemon, or ``news-monitor web``)."""

    config_path: str
    loaded: Callable[[], LoadedConfig]
    store: Store
    scheduler_alive: Callable[[], bool] | None = None  # None: no scheduler in this process
    metrics: Metrics | None = None
    on_saved: Callable[[], object] | None = None  # ask the daemon to reload now
    cache_seconds: float = 20.0
    recent: RecentStories = field(init=False)  # the live preview's stories, cached briefly

    def __post_init__(self) -> None:
        self.recent = RecentStories(self.store, self.cache_seconds)


class CachedConfig:
    """The config file, re-read when it changes (``news-monitor web`` running without a daemon)."""

    def __init__(self, path: str | os.PathLike[str], first: LoadedConfig) -> None:
        self.path = Path(path)
        self._loaded = first
        self._stamp = self._stat()
        self._lock = threading.Lock()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def __call__(self) -> LoadedConfig:
        with self._lock:
            stamp = self._stat()
            if stamp is not None and stamp != self._stamp:
                self._stamp = stamp
                try:
                    self._loaded = load_config(self.path)
                except ConfigError as exc:
                    log.error("config file changed but is invalid, keeping the previous one: %s", exc)
            return self._loaded


def create_app(state: WebState, *, token: str | None = None, loopback: bool = True) -> Starlette:
    """The ASGI app. ``loopback``: bound to a loopback address (Host header checked)."""
    csrf = sign(secrets.token_bytes(32), "csrf")
    ui = Ui(state, csrf=csrf)
    routes: list[BaseRoute] = [
        *Pages(ui).routes(),
        *Editor(ui).routes(),
        *Feeds(ui).routes(),
        *Syndication(ui).routes(),
        *Health(ui).routes(),
        *Login(ui, token).routes(),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [Middleware(Guard, token=token, loopback=loopback, csrf=csrf)]

    def unavailable(request: Request, exc: Exception) -> Response:
        log.error("web: %s %s: %s", request.method, request.url.path, exc)
        return ui.error(request, 503, "Database unavailable", f"The database does not answer: {exc}")

    return Starlette(routes=routes, middleware=middleware, exception_handlers={StoreError: unavailable})


__all__ = ["CachedConfig", "WebState", "create_app"]
