"""``match``: try the watchlists offline, JSON lines in and out.

Stdin is anybody's bytes, so each line is bounded before it is looked at: at most
:data:`MAX_LINE` bytes (a longer one is skipped as it is read, never held whole),
decoded as UTF-8 with replacement characters, JSON nested at most :data:`MAX_DEPTH`
levels, numbers finite (``1e999`` would print as ``Infinity``, which is not JSON).
A bad line gets one error line on stderr naming it, and the next line is read; the
exit status is 1 when any line was bad.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from typing import IO, Any

import click

from monitor.app.cli.common import Context, errors_as_click, pass_ctx
from monitor.ingest.formats.jsonfeed import nests_deeper

MAX_LINE = 1 << 20  # bytes of one input line
MAX_DEPTH = 32  # nesting of one JSON line ({"id", "title", "summary"} needs 1)


def _lines(stream: IO[bytes]) -> Iterator[bytes | None]:
    """The lines of ``stream`` without their newline; None for one longer than MAX_LINE."""
    while True:
        line = stream.readline(MAX_LINE + 1)
        if not line:
            return
        if len(line) > MAX_LINE and not line.endswith(b"\n"):
            while line and not line.endswith(b"\n"):  # skip the rest, MAX_LINE at a time
                line = stream.readline(MAX_LINE)
            yield None
            continue
        yield line.rstrip(b"\r\n")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _parse(raw: bytes | None) -> dict[str, Any]:
    """One line as a JSON object, or ``ValueError`` saying why not."""
    if raw is None:
        raise ValueError(f"line longer than {MAX_LINE} bytes")
    text = raw.decode("utf-8", errors="replace")
    if nests_deeper(text, MAX_DEPTH):
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    item = json.loads(text, parse_float=_finite, parse_constant=_refuse_constant)
    if not isinstance(item, dict):
        raise ValueError("not a JSON object")
    return item


@click.command()
@click.option("--watchlist", "-w", "names", multiple=True, help="Only these watchlists (repeatable).")
@pass_ctx
def match(ctx: Context, names: tuple[str, ...]) -> None:
    """Try watchlists offline: JSON lines in, JSON lines out.

    Reads one JSON object per line on stdin, {"id", "title", "summary"}, and prints
    one per input: {"id", "watchlists": [...], "terms": {watchlist: [terms]}}. A line
    that is not such an object (or is over 1 MB) gets an error line on stderr, and
    the exit status is 1; the other lines are answered.

    Example:

    \b
        echo '{"id": 1, "title": "Pyongyang troops in Kursk", "summary": ""}' | news-monitor match
    """
    from monitor.app.daemon import build_watch
    from monitor.app.services.common import require_watchlist
    from monitor.ingest.decide import THEME

    with errors_as_click():
        for name in names:
            require_watchlist(ctx.loaded.config, name)
        watch = build_watch(ctx.loaded.config)
    bad = 0
    for lineno, raw in enumerate(_lines(sys.stdin.buffer), 1):
        if raw is not None and not raw.strip():
            continue
        try:
            item = _parse(raw)
        except ValueError as exc:
            bad += 1
            click.echo(f"stdin line {lineno}: invalid JSON object: {exc}", err=True)
            continue
        results = watch.matcher.match(str(item.get("title") or ""), str(item.get("summary") or ""))
        results = [r for r in results if not r.watchlist.startswith(THEME)]  # alias groups: not watchlists
        if names:
            results = [r for r in results if r.watchlist in names]
        out = {
            "id": item.get("id"),
            "watchlists": [r.watchlist for r in results],
            "terms": {r.watchlist: list(r.terms) for r in results},
        }
        click.echo(json.dumps(out, ensure_ascii=False))
    if bad:
        raise click.ClickException(f"{bad} input line(s) could not be read (see above)")
