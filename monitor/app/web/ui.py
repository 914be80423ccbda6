"""What every page module of the web app shares: templates, the page renderer, form checks.

A :class:`Ui` is made once per app by :func:`~monitor.app.web.app.create_app` and
handed to each page module; it holds the process's :class:`~monitor.app.web.app.WebState`,
the Jinja2 environment (with the ``highlight``, ``snippet``, ``ago`` and ``duration``
filters, and ``redact`` and ``link`` for URLs: a feed URL without its credentials, a
story link without user-info), the CSRF token every form carries, and whether web
editing is enabled (:meth:`Ui.editable`).
"""

from __future__ import annotations

import datetime as dt
import hmac
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from markupsafe import Markup, escape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.templating import Jinja2Templates

from monitor.app.services.feeds import duration_text
from monitor.app.services.stories import story_link
from monitor.config.model import LoadedConfig
from monitor.ingest.fetch import redact_url
from monitor.matching.backtest import stored_hit_spans
from monitor.storage.search import snippet

if TYPE_CHECKING:
    from monitor.app.web.app import WebState

HERE = Path(__file__).resolve().parent
STALE_FORM = "missing or stale form token: reload the page"


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison of a token a client sent with the expected one.

    On UTF-8 bytes: ``hmac.compare_digest`` refuses ``str`` with non-ASCII characters
    (a ``TypeError``, so a 500) and the client chooses what it sends.
    """
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


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
    """A window of ``text`` around its first span, highlighted."""
    cut, shifted = snippet(text, list(spans), width)
    return highlight(cut, shifted)


def ago(when: dt.datetime | None) -> str:
    """``5m ago``, ``in 2h``, ``never``."""
    if when is None:
        return "never"
    s = int((dt.datetime.now(dt.UTC) - when).total_seconds())
    future, s = s < 0, abs(s)
    text = f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h" if s < 172800 else f"{s // 86400}d"
    return f"in {text}" if future else f"{text} ago"


class Ui:
    """The templates and the state, for the page modules."""

    def __init__(self, state: WebState, *, csrf: str) -> None:
        self.state = state
        self.csrf = csrf
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.filters["highlight"] = highlight
        env.filters["snippet"] = highlighted_snippet
        env.filters["ago"] = ago
        env.filters["redact"] = redact_url
        env.filters["link"] = story_link
        env.filters["duration"] = duration_text
        env.globals["csrf"] = csrf
        env.globals["stored_spans"] = stored_hit_spans

    def config(self) -> LoadedConfig:
        return self.state.loaded()

    def editable(self) -> bool:
        """Web editing is enabled: the config file and its directory (the edit is written
        to a new file, then renamed) can be written by this process."""
        path = Path(self.state.config_path)
        return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        """Template ``name`` rendered; ``nav`` (the highlighted menu entry) defaults to its stem."""
        context.setdefault("nav", name.split(".")[0])
        return self.templates.TemplateResponse(request, name, context, status_code=status)

    async def checked_form(self, request: Request) -> FormData | None:
        """The posted form, or None when its CSRF token is missing or wrong."""
        form = await request.form()
        sent = request.headers.get("x-csrf-token") or str(form.get("csrf") or "")
        return form if sent and same_secret(sent, self.csrf) else None

    def error(self, request: Request, status: int, title: str, message: str) -> Response:
        """A page saying what went wrong, in words a person can act on."""
        return self.page(request, "error.html", status, nav="", title=title, message=message)

    @staticmethod
    def stale() -> Response:
        return PlainTextResponse(STALE_FORM, 403)
