"""The read-only pages: recent alerts (``/``), ``/search``, ``/stories/ID``.

Each handler parses its query string, calls one function of :mod:`monitor.app.services`
and renders a template; highlighting is done here, from the offsets the service returns.
Input the services refuse (a query that does not parse, ``days=inf``, ``page=0``) is a
400 page saying why; a story id no database key can hold is no story (404).

The alerts page takes ``?watchlist=NAME`` (only that watchlist's alerts) and ``?page=N``
(:data:`ALERTS_PER_PAGE` stories a page, with links to the previous and next pages).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from monitor.app.services.stories import alerts_page, search, story_detail
from monitor.app.web.ui import Ui, highlight, highlighted_snippet
from monitor.errors import QuerySyntaxError

SEARCH_LIMIT = 50
ALERTS_PER_PAGE = 30


class Pages:
    """The read-only pages."""

    def __init__(self, ui: Ui) -> None:
        self.ui = ui

    def routes(self) -> list[Route]:
        return [
            Route("/", self.alerts),
            Route("/search", self.search),
            Route("/stories/{id:int}", self.story),
        ]

    def alerts(self, request: Request) -> Response:
        watchlist = request.query_params.get("watchlist", "").strip() or None
        number = request.query_params.get("page", "1").strip() or "1"
        names = [w.name for w in self.ui.config().config.watchlists]
        try:
            page = int(number)
        except ValueError:
            page = 0  # refused below, with what was typed
        try:
            found = alerts_page(self.ui.state.store, watchlist=watchlist, page=page, per_page=ALERTS_PER_PAGE)
        except ValueError as exc:
            message = str(exc) if page else f"page: a whole number from 1, not {number!r}"
            return self.ui.page(request, "alerts.html", 400, error=message, watchlist=watchlist, watchlists=names)
        return self.ui.page(
            request, "alerts.html", stories=found.stories, paging=found, watchlist=watchlist, watchlists=names
        )

    def search(self, request: Request) -> Response:
        q = request.query_params.get("q", "").strip()
        since_days = request.query_params.get("days", "").strip()
        wl = request.query_params.get("watchlist", "").strip() or None
        found = None
        error = caret = None
        if q:
            try:
                since = float(since_days) if since_days else None
                aliases = self.ui.config().config.aliases
                found = search(
                    self.ui.state.store, q, aliases=aliases, since_days=since, watchlist=wl, limit=SEARCH_LIMIT
                )
            except QuerySyntaxError as exc:
                error, caret = exc.message, exc.caret()
            except ValueError as exc:
                error = str(exc)
        hits = [
            {
                "hit": h,
                "title": highlight(h.story.title, h.title_spans),
                "summary": highlighted_snippet(h.story.summary, h.summary_spans),
            }
            for h in (found.hits if found is not None else ())
        ]
        return self.ui.page(
            request,
            "search.html",
            200 if error is None else 400,
            q=q,
            days=since_days,
            watchlist=wl,
            hits=hits,
            error=error,
            caret=caret,
            engine=found.engine if found else None,
            watchlists=[w.name for w in self.ui.config().config.watchlists],
        )

    def story(self, request: Request) -> Response:
        detail = story_detail(self.ui.state.store, int(request.path_params["id"]))
        if detail is None:
            return self.ui.page(request, "missing.html", 404, what="story")
        return self.ui.page(request, "story.html", nav="alerts", d=detail)
