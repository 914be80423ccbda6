"""``test-notify``: a sample alert through the real template, to one target."""

from __future__ import annotations

import click

from monitor.app.cli.common import Context, errors_as_click, pass_ctx


@click.command("test-notify")
@click.argument("target")
@click.option("--digest", is_flag=True, help="Send a sample digest instead of a single alert.")
@pass_ctx
def test_notify(ctx: Context, target: str, digest: bool) -> None:
    """Send a sample alert (or, with --digest, a sample digest) to TARGET through the
    real templates, marked [TEST] in its subject and body.

    Example:

    \b
        news-monitor test-notify email --digest
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
        sample = renderer.sample(test=True)
        if digest:
            title = f"[TEST] news-monitor digest: 1 story ({', '.join(sample.watchlists)})"
            message = renderer.digest([sample], channel.flavour, title=title)
        else:
            message = renderer.alert(sample, channel.flavour)
        send_or_raise(channel, message)
    click.echo(f"sample {'digest' if digest else 'alert'} sent to {target} ({channel.display_url})")
