"""The feeds page (``/feeds``) and its form to add a feed (``POST /feeds/add``).

The page is :func:`~monitor.app.services.feeds.feeds_overview`: every feed with its URL
(credentials and secret-looking query values masked by
:func:`~monitor.ingest.fetch.redact_url`), its configured and learned intervals, failing
feeds first, a banner when most feeds fail, and "due now" instead of a time in the past
when no daemon polls. Adding a feed is :func:`~monitor.app.services.feeds.add_feed`, the
call behind ``news-monitor feeds add``: the feed is fetched once, a web page is searched
for the feed it announces, a URL already configured is refused; then the daemon is asked
to reload. The form is offered, and accepted, only when web editing is enabled (the
config file can be written: see ``systemd/web-editing.conf``); it carries the CSRF token
checked here and by :class:`~monitor.app.web.guard.Guard`.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from monitor.app.services.feeds import FeedCheckError, add_feed, feeds_overview, is_failing, is_polled
from monitor.app.web.ui import Ui
from monitor.errors import ConfigError
from monitor.ingest.fetch import redact_url

log = logging.getLogger("monitor.app.web")


class Feeds:
    """The feeds page and its add form."""

    def __init__(self, ui: Ui) -> None:
        self.ui = ui
        self.state = ui.state

    def routes(self) -> list[Route]:
        return [Route("/feeds", self.feeds), Route("/feeds/add", self.add, methods=["POST"])]

    def feeds(self, request: Request) -> Response:
        return self._page(
            request,
            added=request.query_params.get("added"),
            notes=request.query_params.getlist("note"),
        )

    def _page(
        self,
        request: Request,
        status: int = 200,
        *,
        added: str | None = None,
        notes: list[str] | None = None,
        error: str | None = None,
        form: dict[str, str] | None = None,
    ) -> Response:
        return self.ui.page(
            request,
            "feeds.html",
            status,
            overview=feeds_overview(self.state.store),
            failing=is_failing,
            polled=is_polled,
            editable=self.ui.editable(),
            added=added,
            notes=notes or [],
            error=error,
            form=form or {},
        )

    async def add(self, request: Request) -> Response:
        form = await self.ui.checked_form(request)
        if form is None:
            return self.ui.stale()
        fields = {k: str(form.get(k) or "").strip() for k in ("url", "name", "language", "interval")}
        return await run_in_threadpool(self._add, request, fields)

    def _add(self, request: Request, fields: dict[str, str]) -> Response:
        def again(message: str, status: int = 400) -> Response:
            return self._page(request, status, error=message, form=fields)

        if not self.ui.editable():
            return again(f"web editing is not enabled: {self.state.config_path} cannot be written", 403)
        url = fields["url"]
        if not url:
            return again("a feed needs a URL")
        try:
            added = add_feed(
                self.ui.config(),
                url,
                name=fields["name"] or None,
                language=fields["language"] or None,
                interval=fields["interval"] or None,
            )
        except FeedCheckError as exc:
            return again(f"{redact_url(exc.url)} was not added: {exc.reason}")
        except ConfigError as exc:
            return again(str(exc))
        log.info("web: added feed %r (%s) to %s", added.saved.name, redact_url(added.url), self.state.config_path)
        if self.state.on_saved is not None:
            self.state.on_saved()
        notes = []
        if added.url != url:
            notes.append(f"{redact_url(url)} is a web page; it announces the feed {redact_url(added.url)}")
        if added.entries is not None:
            notes.append(f"{added.title or 'untitled'}: {added.entries} entries")
        notes += added.warnings
        query = urlencode({"added": added.saved.name, "note": notes}, doseq=True)
        return RedirectResponse(f"/feeds?{query}", status_code=303)
