"""``match``: try the watchlists offline, JSON lines in and out."""

from __future__ import annotations

import json
import sys

import click

from monitor.app.cli.common import Context, errors_as_click, pass_ctx


@click.command()
@click.option("--watchlist", "-w", "names", multiple=True, help="Only these watchlists (repeatable).")
@pass_ctx
def match(ctx: Context, names: tuple[str, ...]) -> None:
    """Try watchlists offline: JSON lines in, JSON lines out.

    Reads one JSON object per line on stdin, {"id", "title", "summary"}, and prints
    one per input: {"id", "watchlists": [...], "terms": {watchlist: [terms]}}.

    Example:

        echo '{"id": 1, "title": "Pyongyang troops in Kursk", "summary": ""}' | news-monitor match
    """
    from monitor.app.daemon import build_watch

    with errors_as_click():
        watch = build_watch(ctx.loaded.config)
    for lineno, line in enumerate(sys.stdin, 1):
        line = line.strip()
        if not line:
            continue
        try:
            item = json.loads(line)
            if not isinstance(item, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:
            raise click.ClickException(f"stdin line {lineno}: invalid JSON object: {exc}") from None
        results = watch.matcher.match(str(item.get("title") or ""), str(item.get("summary") or ""))
        if names:
            results = [r for r in results if r.watchlist in names]
        out = {
            "id": item.get("id"),
            "watchlists": [r.watchlist for r in results],
            "terms": {r.watchlist: list(r.terms) for r in results},
        }
        click.echo(json.dumps(out, ensure_ascii=False))
