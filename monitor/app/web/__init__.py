"""The web page: recent alerts, feed health, the watchlist editor with live preview, search.

A small server-rendered Starlette app (Jinja2 templates, a few lines of plain
JavaScript for the live preview, no front-end build), served by uvicorn either inside
the daemon (``web: {listen: 127.0.0.1:8080}``) or alone (``news-monitor web``).
See :mod:`monitor.app.web.app` for the pages and :mod:`monitor.app.web.guard` for the security model.
"""

from __future__ import annotations

from monitor.app.web.app import WebState, create_app
from monitor.app.web.server import WebServer

__all__ = ["WebServer", "WebState", "create_app"]
