"""``web``: serve the web page without the daemon."""

from __future__ import annotations

import click

from monitor.app.cli.common import Context, errors_as_click, open_store, pass_ctx


@click.command()
@click.option("--listen", default=None, metavar="HOST:PORT", help="Address (default: web.listen or 127.0.0.1:8080).")
@pass_ctx
def web(ctx: Context, listen: str | None) -> None:
    """Serve the web page (alerts, feeds, watchlist editor, search) without the daemon.

    Bound to 127.0.0.1 by default; any other address needs web.token in the config.
    Saving a watchlist writes the config file; a running daemon reloads it.

    Example:

    \b
        news-monitor web --listen 127.0.0.1:8080
    """
    from monitor.app.web import WebServer, WebState
    from monitor.app.web.app import CachedConfig
    from monitor.config.model import split_listen

    with errors_as_click():
        loaded = ctx.sending
        settings = loaded.config.web
        address = listen or settings.listen or "127.0.0.1:8080"
        try:
            host, port = split_listen(address)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--listen") from None
        if host not in ("127.0.0.1", "localhost", "::1") and not settings.token:
            raise click.ClickException(f"refusing to serve on {address} without a token: set web.token in the config")
        with open_store(loaded) as store:
            state = WebState(config_path=ctx.config_path, loaded=CachedConfig(ctx.config_path, loaded), store=store)
            WebServer(state, host, port, token=settings.token).serve_forever()
