"""The Starlette app: pages, per-watchlist feeds, /healthz, /metrics.

Pages: ``/`` recent alerts (matched terms highlighted, "also reported by" from the
story's sightings, delivery state per target); ``/feeds`` feed health; ``/watchlists``
and its editor, whose live preview runs the real matcher over the stored stories of
the last N days as you type (errors show their column); ``/search``; ``/stories/ID``.
Per-watchlist ``/watchlists/NAME.atom`` and ``.json`` (JSON Feed 1.1) let any feed
reader follow a watchlist.

Saving a watchlist goes through :class:`~monitor.config.edit.ConfigEditor` exactly like
the CLI (validated, atomic, comments kept), then asks the daemon to reload
(``on_saved``); a daemon elsewhere notices the file change by itself.

Security, since this page can rewrite the config:

* Bound to a loopback address by default, where only this machine can connect. The
  ``Host`` header must then name a loopback host, which defeats DNS rebinding (a web
  page on evil.example resolving its name to 127.0.0.1).
* Anywhere else a token is required (config ``web.token``): ``Authorization: Bearer``,
  or a cookie set by the ``/login`` form, or ``?token=`` (for feed readers). The cookie
  holds an HMAC of the token, never the token, and is ``HttpOnly; SameSite=Strict``.
* Every POST carries a CSRF token (an HMAC of a per-process secret) in a form field or
  the ``X-CSRF-Token`` header, so another site cannot post to it from a browser.
* ``/healthz`` stays open (it tells nothing but up or down).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode
from xml.etree import ElementTree as ET

from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from monitor.app.metrics import CONTENT_TYPE, Metrics
from monitor.config.edit import ConfigEditor, WatchlistSpec
from monitor.config.model import LoadedConfig, load_config
from monitor.errors import ConfigError, MonitorError, QuerySyntaxError
from monitor.matching.matcher import Matcher, WatchlistQuery
from monitor.storage.search import (
    SearchSyntaxError,
    backfill,
    backtest,
    days_ago,
    hit_spans,
    search_stories,
    snippet,
    stored_hit_spans,
    term_spans,
    watchlist_matcher,
)
from monitor.storage.store import Store
from monitor.storage.stories import StoredStory

log = logging.getLogger("monitor.app.web")

HERE = Path(__file__).resolve().parent
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
COOKIE = "news_monitor_session"
PREVIEW_LIMIT = 30  # matching stories listed in the preview
MAX_PREVIEW_DAYS = 90


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
    _cache: dict[float, tuple[float, list[StoredStory]]] = field(default_factory=dict)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock)

    def stories(self, days: float) -> list[StoredStory]:
        """Stored stories of the last ``days``, cached briefly: the preview runs on every keystroke."""
        now = time.monotonic()
        with self._cache_lock:
            hit = self._cache.get(days)
            if hit and now - hit[0] < self.cache_seconds:
                return hit[1]
        stories = self.store.stories_published_since(days_ago(days))
        with self._cache_lock:
            self._cache = {days: (now, stories)}
        return stories


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


# --------------------------------------------------------------------------- helpers for templates


def highlight(text: str, spans: Sequence[tuple[int, int]]) -> Markup:
    """Escaped text with ``<mark>`` around the spans (offsets into the original text)."""
    out: list[str] = []
    pos = 0
    for s, e in spans:
        if s < pos or e > len(text):
            continue
        out += [str(escape(text[pos:s])), "<mark>", str(escape(text[s:e])), "</mark>"]
        pos = e
    out.append(str(escape(text[pos:])))
    return Markup("".join(out))


def highlighted_snippet(text: str, spans: Sequence[tuple[int, int]], width: int = 260) -> Markup:
    cut, shifted = snippet(text, list(spans), width)
    return highlight(cut, shifted)


def ago(when: dt.datetime | None) -> str:
    if when is None:
        return "never"
    s = int((dt.datetime.now(dt.UTC) - when).total_seconds())
    future, s = s < 0, abs(s)
    text = f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h" if s < 172800 else f"{s // 86400}d"
    return f"in {text}" if future else f"{text} ago"


def _sign(secret: bytes, what: str) -> str:
    return hmac.new(secret, what.encode(), hashlib.sha256).hexdigest()


def _spec_hash(spec: WatchlistSpec | None) -> str:
    if spec is None:
        return ""
    return hashlib.sha256(json.dumps([spec.query, spec.notify, spec.stem, spec.enabled]).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------- security


class _Guard(BaseHTTPMiddleware):
    """Host check (loopback), token check (elsewhere), CSRF check (every POST)."""

    def __init__(self, app: Any, *, token: str | None, loopback: bool, secret: bytes) -> None:
        super().__init__(app)
        self.token = token
        self.loopback = loopback
        self.secret = secret

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
            if sent is None and not form_post or sent is not None and not self._csrf_ok(sent):
                return PlainTextResponse("missing or stale form token: reload the page", 403)
        return await call_next(request)

    def _csrf_ok(self, sent: str) -> bool:
        return hmac.compare_digest(sent, _sign(self.secret, "csrf"))

    def _authorised(self, request: Request) -> bool:
        assert self.token is not None
        auth = request.headers.get("authorization", "")
        if auth.lower().startswith("bearer ") and hmac.compare_digest(auth[7:].strip(), self.token):
            return True
        cookie = request.cookies.get(COOKIE)
        if cookie and hmac.compare_digest(cookie, _sign(self.token.encode(), "session")):
            return True
        given = request.query_params.get("token")
        return bool(given) and hmac.compare_digest(str(given), self.token)


# --------------------------------------------------------------------------- the app


def create_app(state: WebState, *, token: str | None = None, loopback: bool = True) -> Starlette:
    """The ASGI app. ``loopback``: bound to a loopback address (Host header checked)."""
    secret = secrets.token_bytes(32)
    csrf = _sign(secret, "csrf")
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    env = templates.env
    env.filters["highlight"] = highlight
    env.filters["snippet"] = highlighted_snippet
    env.filters["ago"] = ago
    env.globals["csrf"] = csrf
    env.globals["stored_spans"] = stored_hit_spans
    metrics = state.metrics or Metrics(store=lambda: state.store)

    async def checked_form(request: Request) -> Any:
        """The posted form, or None when its CSRF token is missing or wrong."""
        form = await request.form()
        sent = request.headers.get("x-csrf-token") or str(form.get("csrf") or "")
        return form if sent and hmac.compare_digest(sent, csrf) else None

    def stale() -> Response:
        return PlainTextResponse("missing or stale form token: reload the page", 403)

    def page(request: Request, name: str, status: int = 200, **context: Any) -> Response:
        context.setdefault("nav", name.split(".")[0])
        return templates.TemplateResponse(request, name, context, status_code=status)

    def config() -> LoadedConfig:
        return state.loaded()

    # --- pages ------------------------------------------------------------------------------

    def alerts(request: Request) -> Response:
        rows = state.store.matched_stories(alerted_only=True, limit=150)
        stories: dict[int, dict[str, Any]] = {}
        for m in rows:
            entry = stories.setdefault(m.story_id, {"story": m, "matches": [], "hits": []})
            entry["matches"].append(m)
            entry["hits"].extend(m.hits)
        return page(request, "alerts.html", stories=list(stories.values())[:60])

    def feeds(request: Request) -> Response:
        configured = {f.name: f for f in config().config.feeds}
        rows = state.store.feeds()
        return page(request, "feeds.html", feeds=rows, configured=configured)

    def watchlists(request: Request) -> Response:
        cfg = config().config
        counts = state.store.match_counts(days_ago(7))
        return page(
            request,
            "watchlists.html",
            watchlists=cfg.watchlists,
            counts=counts,
            saved=request.query_params.get("saved"),
            removed=request.query_params.get("removed"),
            note=request.query_params.get("note"),
        )

    def editor_page(
        request: Request,
        *,
        original: str | None,
        spec: WatchlistSpec,
        error: str | None = None,
        status: int = 200,
        base: str = "",
        backfill_days: str = "",
    ) -> Response:
        cfg = config().config
        return page(
            request,
            "editor.html",
            status,
            nav="watchlists",
            original=original,
            spec=spec,
            targets=list(cfg.targets),
            error=error,
            base=base,
            days=7,
            backfill_days=backfill_days,
        )

    def new_watchlist(request: Request) -> Response:
        cfg = config().config
        first = [next(iter(cfg.targets))] if cfg.targets else []
        return editor_page(request, original=None, spec=WatchlistSpec("", "", tuple(first)))

    def edit_watchlist(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            spec = ConfigEditor(state.config_path).watchlist(name)
        except ConfigError:
            return page(request, "missing.html", 404, what=f"watchlist {name!r}")
        return editor_page(request, original=name, spec=spec, base=_spec_hash(spec))

    async def preview(request: Request) -> Response:
        form = await checked_form(request)
        if form is None:
            return stale()
        query = str(form.get("query") or "")
        stem = tuple(str(s) for s in form.getlist("stem"))
        original = str(form.get("original") or "") or None
        try:
            days = min(MAX_PREVIEW_DAYS, max(0.01, float(str(form.get("days") or 7))))
        except ValueError:
            days = 7.0
        return await run_in_threadpool(_preview, request, query, stem, original, days)

    def _preview(request: Request, query: str, stem: tuple[str, ...], original: str | None, days: float) -> Response:
        if not query.strip():
            return page(request, "preview.html", empty=True)
        cfg = config().config
        try:
            matcher = Matcher([WatchlistQuery("preview", query, stem)], cfg.aliases)
        except QuerySyntaxError as exc:
            message = exc.message.removeprefix("watchlist 'preview': ")
            caret = " " * (exc.column - 1) + "^"
            return page(request, "preview.html", error=message, column=exc.column, caret=caret, query=query)
        except ConfigError as exc:
            return page(request, "preview.html", error=str(exc), column=None, caret=None, query=query)
        stories = state.stories(days)
        result = backtest(matcher, "preview", stories)
        gained = lost = None
        if original is not None:
            try:
                before = backtest(watchlist_matcher(cfg, original), original, stories)
            except (KeyError, ConfigError):
                before = None
            if before is not None:
                gained = len(result.ids - before.ids)
                lost = len(before.ids - result.ids)
        shown = [
            {
                "story": m.story,
                "terms": m.result.terms,
                "title": highlight(m.story.title, hit_spans(m.result, "title")),
                "summary": highlighted_snippet(m.story.summary, hit_spans(m.result, "summary"), 200),
            }
            for m in result.matched[:PREVIEW_LIMIT]
        ]
        return page(
            request,
            "preview.html",
            result=result,
            shown=shown,
            days=days,
            gained=gained,
            lost=lost,
            terms=result.term_counts.most_common(12),
            misses=result.unmatched[:5],
        )

    async def save(request: Request) -> Response:
        form = await checked_form(request)
        if form is None:
            return stale()
        original = str(form.get("original") or "") or None
        spec = WatchlistSpec(
            name=str(form.get("name") or "").strip(),
            query=str(form.get("query") or "").strip(),
            notify=tuple(str(t) for t in form.getlist("notify")),
            stem=tuple(str(s) for s in form.getlist("stem")),
            enabled=form.get("enabled") is not None,
            description=str(form.get("description") or "").strip() or None,
        )
        base = str(form.get("base") or "")
        backfill_days = str(form.get("backfill") or "").strip()
        return await run_in_threadpool(_save, request, original, spec, base, backfill_days)

    def _save(request: Request, original: str | None, spec: WatchlistSpec, base: str, backfill_days: str) -> Response:
        def again(message: str) -> Response:
            return editor_page(
                request,
                original=original,
                spec=spec,
                error=message,
                status=400,
                base=base,
                backfill_days=backfill_days,
            )

        if not spec.name:
            return again("a watchlist needs a name")
        days: float | None = None
        if backfill_days:
            try:
                days = float(backfill_days)
                if not 0 < days <= 365:
                    raise ValueError
            except ValueError:
                return again("backfill: a number of days between 0 and 365")
        try:
            editor = ConfigEditor(state.config_path)
            if original is None:
                editor.add_watchlist(spec)
            else:
                if _spec_hash(editor.watchlist(original)) != base:
                    return again(
                        f"watchlist {original!r} was changed in the file since this page was opened; "
                        "reload the page to edit the current version"
                    )
                editor.update_watchlist(original, spec)
            editor.save()
        except QuerySyntaxError as exc:
            return again(f"{exc}\n{exc.caret()}")
        except ConfigError as exc:
            return again(str(exc))
        log.info("web: %s (saved %s)", "; ".join(editor.changes), state.config_path)
        if state.on_saved is not None:
            state.on_saved()
        note = ""
        if days:
            try:
                fresh = load_config(state.config_path)
                scanned, _, queued = backfill(
                    state.store, watchlist_matcher(fresh.config, spec.name), spec.name, spec.notify, days=days
                )
                note = f"backfill: {scanned} stories scanned, {queued} alerts queued"
            except MonitorError as exc:
                note = f"saved, but the backfill failed: {exc}"
        query = {"saved": spec.name} | ({"note": note} if note else {})
        return RedirectResponse("/watchlists?" + urlencode(query), status_code=303)

    async def delete(request: Request) -> Response:
        if await checked_form(request) is None:
            return stale()
        return await run_in_threadpool(_delete, request, request.path_params["name"])

    def _delete(request: Request, name: str) -> Response:
        try:
            editor = ConfigEditor(state.config_path)
            editor.remove_watchlist(name)
            editor.save()
        except ConfigError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        log.info("web: removed watchlist %r (saved %s)", name, state.config_path)
        if state.on_saved is not None:
            state.on_saved()
        return RedirectResponse("/watchlists?" + urlencode({"removed": name}), status_code=303)

    def search(request: Request) -> Response:
        q = request.query_params.get("q", "").strip()
        since_days = request.query_params.get("days", "").strip()
        wl = request.query_params.get("watchlist", "").strip() or None
        found = None
        error = None
        if q:
            try:
                since = days_ago(float(since_days)) if since_days else None
                found = search_stories(state.store, q, since=since, watchlist=wl, limit=50)
            except (SearchSyntaxError, ValueError) as exc:
                error = str(exc)
        hits = []
        if found is not None:
            for h in found.hits:
                hits.append(
                    {
                        "hit": h,
                        "title": highlight(h.story.title, term_spans(h.story.title, found.query.terms)),
                        "summary": highlighted_snippet(h.story.summary, term_spans(h.story.summary, found.query.terms)),
                    }
                )
        return page(
            request,
            "search.html",
            q=q,
            days=since_days,
            watchlist=wl,
            hits=hits,
            error=error,
            engine=found.engine if found else None,
            watchlists=[w.name for w in config().config.watchlists],
        )

    def story(request: Request) -> Response:
        detail = state.store.story_detail(int(request.path_params["id"]))
        if detail is None:
            return page(request, "missing.html", 404, what="story")
        return page(request, "story.html", nav="alerts", d=detail)

    # --- feeds of a watchlist ----------------------------------------------------------------

    def _feed_items(name: str) -> tuple[Any, list[Any]] | None:
        try:
            wl = config().config.watchlist(name)
        except KeyError:
            return None
        return wl, state.store.matched_stories(watchlist=name, limit=100)

    def atom(request: Request) -> Response:
        got = _feed_items(request.path_params["name"])
        if got is None:
            return PlainTextResponse("no such watchlist", status_code=404)
        wl, items = got
        base = str(request.base_url).rstrip("/")
        return Response(
            atom_feed(wl.name, wl.query, items, base=base),
            media_type="application/atom+xml; charset=utf-8",
        )

    def json_feed(request: Request) -> Response:
        got = _feed_items(request.path_params["name"])
        if got is None:
            return JSONResponse({"error": "no such watchlist"}, status_code=404)
        wl, items = got
        base = str(request.base_url).rstrip("/")
        return JSONResponse(
            json_feed_doc(wl.name, wl.query, items, base=base),
            media_type="application/feed+json",
        )

    # --- health and metrics ------------------------------------------------------------------

    def healthz(_request: Request) -> Response:
        db = state.store.ping()
        if state.scheduler_alive is None:
            scheduler = "not run by this process"
            ok = db
        else:
            alive = state.scheduler_alive()
            scheduler = "running" if alive else "stopped"
            ok = db and alive
        body = {
            "status": "ok" if ok else "fail",
            "database": "ok" if db else "unreachable",
            "scheduler": scheduler,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    def metrics_page(_request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    # --- login (only when a token is set) ----------------------------------------------------

    async def login(request: Request) -> Response:
        nxt = request.query_params.get("next", "/")
        if not nxt.startswith("/") or nxt.startswith("//"):
            nxt = "/"
        if request.method == "GET":
            return page(request, "login.html", nav="", next=nxt, error=None)
        form = await request.form()
        given = str(form.get("token") or "")
        if not token or not hmac.compare_digest(given, token):
            return page(request, "login.html", 401, nav="", next=nxt, error="wrong token")
        response = RedirectResponse(nxt, status_code=303)
        response.set_cookie(
            COOKIE,
            _sign(token.encode(), "session"),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            max_age=30 * 86400,
        )
        return response

    routes = [
        Route("/", alerts),
        Route("/feeds", feeds),
        Route("/watchlists", watchlists),
        Route("/watchlists/new", new_watchlist),
        Route("/watchlists/preview", preview, methods=["POST"]),
        Route("/watchlists/save", save, methods=["POST"]),
        Route("/watchlists/{name}.atom", atom),
        Route("/watchlists/{name}.json", json_feed),
        Route("/watchlists/{name}/edit", edit_watchlist),
        Route("/watchlists/{name}/delete", delete, methods=["POST"]),
        Route("/search", search),
        Route("/stories/{id:int}", story),
        Route("/healthz", healthz),
        Route("/metrics", metrics_page),
        Route("/login", login, methods=["GET", "POST"]),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [Middleware(_Guard, token=token, loopback=loopback, secret=secret)]
    return Starlette(routes=routes, middleware=middleware)


# --------------------------------------------------------------------------- Atom and JSON Feed


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _item_text(m: Any) -> str:
    parts = [m.summary] if m.summary else []
    parts.append(f"Matched: {', '.join(m.terms)}. Source: {m.source}.")
    if m.also_reported_by:
        parts.append(f"Also reported by: {', '.join(m.also_reported_by)}.")
    return "\n\n".join(parts)


def atom_feed(name: str, query: str, items: Sequence[Any], *, base: str) -> bytes:
    """An Atom 1.0 document of a watchlist's matches, newest first."""
    ns = "http://www.w3.org/2005/Atom"
    ET.register_namespace("", ns)
    feed = ET.Element(f"{{{ns}}}feed")

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ns}}}{tag}", attrs)
        if text is not None:
            el.text = text
        return el

    sub(feed, "id", f"{base}/watchlists/{quote(name)}.atom")
    sub(feed, "title", f"news-monitor: {name}")
    sub(feed, "subtitle", query)
    sub(feed, "updated", _iso(items[0].matched_at if items else dt.datetime.now(dt.UTC)))
    sub(feed, "link", rel="self", href=f"{base}/watchlists/{quote(name)}.atom")
    sub(feed, "link", rel="alternate", href=f"{base}/watchlists")
    sub(feed, "generator", "news-monitor")
    for m in items:
        entry = sub(feed, "entry")
        sub(entry, "id", f"{base}/stories/{m.story_id}#{quote(name)}")
        sub(entry, "title", m.title)
        if m.link:
            sub(entry, "link", rel="alternate", href=m.link)
        sub(entry, "updated", _iso(m.matched_at))
        sub(entry, "published", _iso(m.published_at))
        author = sub(entry, "author")
        sub(author, "name", m.source)
        for term in m.terms:
            sub(entry, "category", term=term)
        sub(entry, "summary", _item_text(m), type="text")
    body: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + body


def json_feed_doc(name: str, query: str, items: Sequence[Any], *, base: str) -> dict[str, Any]:
    """A JSON Feed 1.1 document of a watchlist's matches, newest first."""
    return {
        "version": "https://jsonfeed.org/version/1.1",
        "title": f"news-monitor: {name}",
        "description": query,
        "home_page_url": f"{base}/watchlists",
        "feed_url": f"{base}/watchlists/{quote(name)}.json",
        "items": [
            {
                "id": f"{base}/stories/{m.story_id}#{quote(name)}",
                "url": m.link,
                "title": m.title,
                "content_text": _item_text(m),
                "date_published": _iso(m.published_at),
                "date_modified": _iso(m.matched_at),
                "authors": [{"name": m.source}],
                "tags": list(m.terms),
                "_news_monitor": {
                    "story": m.story_id,
                    "terms": list(m.terms),
                    "source": m.source,
                    "also_reported_by": list(m.also_reported_by),
                    "alerted": m.alerted,
                },
            }
            for m in items
        ],
    }


__all__ = ["CachedConfig", "WebState", "atom_feed", "create_app", "highlight", "json_feed_doc"]
