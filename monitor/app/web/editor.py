"""The watchlists: their list, the editor with its live preview, saving and removing.

The editor lists the config's alias groups (what ``@dprk`` in a query stands for);
those the query being typed names are marked as it is typed (``editor.js``).

The live preview (``POST /watchlists/preview``, on every keystroke) is the same backtest
as ``news-monitor watchlist test``: :func:`monitor.app.services.backtests.backtest_watchlist` over
the stored stories of the last N days (cached briefly by
:class:`~monitor.app.services.backtests.RecentStories`), compared with the saved query when an
existing watchlist is being edited. Saving goes through
:func:`~monitor.app.services.watchlists.save_watchlist` exactly like the CLI (validated, atomic,
comments kept, an optional backfill), then asks the daemon to reload (``on_saved``); a
daemon elsewhere notices the file change by itself.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from monitor.app.services.backtests import backtest_watchlist
from monitor.app.services.common import Saved
from monitor.app.services.watchlists import editable_watchlist, remove_watchlist, save_watchlist, watchlist_overview
from monitor.app.web.ui import Ui, highlight, highlighted_snippet
from monitor.config.edit import WatchlistSpec
from monitor.errors import ConfigError, QuerySyntaxError
from monitor.matching.backtest import hit_spans

log = logging.getLogger("monitor.app.web")

PREVIEW_LIMIT = 30  # matching stories listed in the preview
MAX_PREVIEW_DAYS = 90
MAX_BACKFILL_DAYS = 365


def _spec_from(form: FormData) -> WatchlistSpec:
    return WatchlistSpec(
        name=str(form.get("name") or "").strip(),
        query=str(form.get("query") or "").strip(),
        notify=tuple(str(t) for t in form.getlist("notify")),
        stem=tuple(str(s) for s in form.getlist("stem")),
        enabled=form.get("enabled") is not None,
        description=str(form.get("description") or "").strip() or None,
    )


def _backfill_note(saved: Saved) -> str:
    if saved.backfill_error is not None:
        return f"saved, but the backfill failed: {saved.backfill_error}"
    b = saved.backfill
    if b is None:
        return ""
    return b.skipped or f"backfill: {b.scanned} stories scanned, {b.alerts} alerts queued"


class Editor:
    """The watchlist pages and their forms."""

    def __init__(self, ui: Ui) -> None:
        self.ui = ui
        self.state = ui.state

    def routes(self) -> list[Route]:
        return [
            Route("/watchlists", self.watchlists),
            Route("/watchlists/new", self.new),
            Route("/watchlists/preview", self.preview, methods=["POST"]),
            Route("/watchlists/save", self.save, methods=["POST"]),
            Route("/watchlists/{name}/edit", self.edit),
            Route("/watchlists/{name}/delete", self.delete, methods=["POST"]),
        ]

    def watchlists(self, request: Request) -> Response:
        overview = watchlist_overview(self.ui.config().config, self.state.store)
        return self.ui.page(
            request,
            "watchlists.html",
            watchlists=overview.watchlists,
            counts=overview.counts,
            saved=request.query_params.get("saved"),
            removed=request.query_params.get("removed"),
            note=request.query_params.get("note"),
        )

    def _editor(
        self,
        request: Request,
        *,
        original: str | None,
        spec: WatchlistSpec,
        error: str | None = None,
        status: int = 200,
        base: str = "",
        backfill_days: str = "",
    ) -> Response:
        config = self.ui.config().config
        return self.ui.page(
            request,
            "editor.html",
            status,
            nav="watchlists",
            original=original,
            spec=spec,
            targets=list(config.targets),
            aliases=sorted(config.aliases.items()),
            error=error,
            base=base,
            days=7,
            backfill_days=backfill_days,
        )

    def new(self, request: Request) -> Response:
        cfg = self.ui.config().config
        first = [next(iter(cfg.targets))] if cfg.targets else []
        return self._editor(request, original=None, spec=WatchlistSpec("", "", tuple(first)))

    def edit(self, request: Request) -> Response:
        name = request.path_params["name"]
        try:
            found = editable_watchlist(self.state.config_path, name)
        except ConfigError:
            return self.ui.page(request, "missing.html", 404, what=f"watchlist {name!r}")
        return self._editor(request, original=name, spec=found.spec, base=found.version)

    async def preview(self, request: Request) -> Response:
        form = await self.ui.checked_form(request)
        if form is None:
            return self.ui.stale()
        query = str(form.get("query") or "")
        stem = tuple(str(s) for s in form.getlist("stem"))
        original = str(form.get("original") or "") or None
        try:
            days = min(MAX_PREVIEW_DAYS, max(0.01, float(str(form.get("days") or 7))))
        except ValueError:
            days = 7.0
        return await run_in_threadpool(self._preview, request, query, stem, original, days)

    def _preview(
        self, request: Request, query: str, stem: tuple[str, ...], original: str | None, days: float
    ) -> Response:
        if not query.strip():
            return self.ui.page(request, "preview.html", empty=True)
        try:
            report = backtest_watchlist(
                self.ui.config().config, self.state.recent, days=days, query=query, stem=stem, compare_with=original
            )
        except QuerySyntaxError as exc:
            caret = " " * (exc.column - 1) + "^"
            return self.ui.page(request, "preview.html", error=exc.message, column=exc.column, caret=caret, query=query)
        except ConfigError as exc:
            return self.ui.page(request, "preview.html", error=str(exc), column=None, caret=None, query=query)
        result = report.result
        shown = [
            {
                "story": m.story,
                "terms": m.result.terms,
                "title": highlight(m.story.title, hit_spans(m.result, "title")),
                "summary": highlighted_snippet(m.story.summary, hit_spans(m.result, "summary"), 200),
            }
            for m in result.matched[:PREVIEW_LIMIT]
        ]
        compared = report.before is not None
        return self.ui.page(
            request,
            "preview.html",
            result=result,
            shown=shown,
            days=days,
            gained=len(report.gained) if compared else None,
            lost=len(report.lost) if compared else None,
            terms=result.term_counts.most_common(12),
            misses=result.unmatched[:5],
        )

    async def save(self, request: Request) -> Response:
        form = await self.ui.checked_form(request)
        if form is None:
            return self.ui.stale()
        original = str(form.get("original") or "") or None
        base = str(form.get("base") or "")
        backfill_days = str(form.get("backfill") or "").strip()
        return await run_in_threadpool(self._save, request, original, _spec_from(form), base, backfill_days)

    def _save(self, request: Request, original: str | None, spec: WatchlistSpec, base: str, backfill: str) -> Response:
        def again(message: str) -> Response:
            return self._editor(
                request, original=original, spec=spec, error=message, status=400, base=base, backfill_days=backfill
            )

        if not spec.name:
            return again("a watchlist needs a name")
        days: float | None = None
        if backfill:
            try:
                days = float(backfill)
                if not 0 < days <= MAX_BACKFILL_DAYS:
                    raise ValueError
            except ValueError:
                return again(f"backfill: a number of days between 0 and {MAX_BACKFILL_DAYS}")
        try:
            saved = save_watchlist(
                self.state.config_path,
                spec,
                original=original,
                version=base if original is not None else None,
                backfill_days=days,
                store=self.state.store,
            )
        except QuerySyntaxError as exc:
            return again(f"{exc}\n{exc.caret()}")
        except ConfigError as exc:
            return again(str(exc))
        log.info("web: %s (saved %s)", saved.summary, self.state.config_path)
        if self.state.on_saved is not None:
            self.state.on_saved()
        note = _backfill_note(saved)
        query = {"saved": spec.name} | ({"note": note} if note else {})
        return RedirectResponse("/watchlists?" + urlencode(query), status_code=303)

    async def delete(self, request: Request) -> Response:
        if await self.ui.checked_form(request) is None:
            return self.ui.stale()
        return await run_in_threadpool(self._delete, request.path_params["name"])

    def _delete(self, name: str) -> Response:
        try:
            remove_watchlist(self.state.config_path, name)
        except ConfigError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        log.info("web: removed watchlist %r (saved %s)", name, self.state.config_path)
        if self.state.on_saved is not None:
            self.state.on_saved()
        return RedirectResponse("/watchlists?" + urlencode({"removed": name}), status_code=303)
