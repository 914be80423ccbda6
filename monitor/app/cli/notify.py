"""``test-notify``: a sample alert through the real template, to one target."""

from __future__ import annotations

import click

from monitor.app.cli.common import Context, errors_as_click, pass_ctx


@click.command("test-notify")
@click.argument("target")
@pass_ctx
def test_notify(ctx: Context, target: str) -> None:
    """Send a sample alert to TARGET through the real template.

    Example:

        news-monitor test-notify email
    """
    from monitor.delivery.notify import Notifier
    from monitor.delivery.render import Renderer

    with errors_as_click():
        cfg = ctx.loaded.config
        renderer = Renderer(timezone=cfg.timezone, overrides=cfg.templates)
        notifier = Notifier(cfg.target_urls, renderer=renderer, timeout=cfg.delivery.timeout)
        if target not in notifier.names:
            raise click.BadParameter(
                f"unknown target {target!r} (known: {', '.join(notifier.names) or 'none'})",
                param_hint="TARGET",
            )
        notifier.send(target, renderer.alert(renderer.sample(), notifier.kind(target)))
    click.echo(f"sample alert sent to {target} ({notifier.describe(target)})")
