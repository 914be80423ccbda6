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
    from monitor.delivery.channels import send_or_raise
    from monitor.delivery.notify import load_channels
    from monitor.delivery.render import Renderer

    with errors_as_click():
        cfg = ctx.sending.config
        renderer = Renderer(timezone=cfg.timezone, overrides=cfg.templates)
        channels = load_channels(cfg.target_urls, timeout=cfg.delivery.timeout)
        if target not in channels:
            raise click.BadParameter(
                f"unknown target {target!r} (known: {', '.join(channels) or 'none'})",
                param_hint="TARGET",
            )
        channel = channels[target]
        send_or_raise(channel, renderer.alert(renderer.sample(), channel.flavour))
    click.echo(f"sample alert sent to {target} ({channel.display_url})")
