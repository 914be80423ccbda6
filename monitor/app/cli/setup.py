"""The first hour: ``init`` writes a config (asking, or from flags) and ``demo`` shows alerts.

``init`` asks its questions only when it is given no option at all; with any option
(``--yes`` alone takes every default) it asks nothing, which is what scripts need. The
questions and the options fill the same :class:`~monitor.app.services.setup.InitPlan`,
and one call of :func:`~monitor.app.services.setup.init_config` does the rest. A
password is asked with hidden input, used for the test send only, and never printed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import cast

import click

from monitor.app.cli.common import Context, errors_as_click, pass_ctx, setup_logging
from monitor.app.services.setup import (
    SECURITY_HELP,
    SECURITY_MODES,
    EmailSetup,
    InitPlan,
    InitResult,
    Security,
    SlackSetup,
)

_SECURITIES = list(SECURITY_MODES)


@click.command()
@click.option("--yes", "-y", is_flag=True, help="Ask nothing: the defaults for every option not given.")
@click.option("--force", is_flag=True, help="Replace an existing config file without asking.")
@click.option(
    "--theme",
    "themes",
    multiple=True,
    metavar="QUERY",
    help="A watchlist query (repeatable); replaces the three default watchlists.",
)
@click.option(
    "--feed", "feeds", multiple=True, metavar="URL", help="A feed URL (repeatable); replaces the bundled news feeds."
)
@click.option("--email-to", metavar="ADDRESS", help="Send alerts by e-mail to this address.")
@click.option("--smtp-host", default="localhost", show_default=True, help="SMTP server.")
@click.option("--smtp-port", type=int, default=None, help="SMTP port (default: 587, 465 or 25 by --smtp-security).")
@click.option(
    "--smtp-security",
    type=click.Choice(_SECURITIES),
    default="starttls",
    show_default=True,
    help="starttls, ssl (SMTPS), plain (login without TLS) or relay (no login, no TLS).",
)
@click.option("--smtp-user", metavar="USER", help="SMTP login (its password is read from --smtp-password-env).")
@click.option(
    "--smtp-password-env",
    default="SMTP_PASSWORD",
    show_default=True,
    metavar="VAR",
    help="Environment variable holding the SMTP password.",
)
@click.option(
    "--email-from", metavar="ADDRESS", help="Sender address (default: the login if it is an address, else --email-to)."
)
@click.option("--slack", is_flag=True, help="Send alerts to a Slack incoming webhook (its URL in --slack-webhook-env).")
@click.option(
    "--slack-webhook-env",
    default="SLACK_WEBHOOK_URL",
    show_default=True,
    metavar="VAR",
    help="Environment variable holding the Slack webhook URL.",
)
@click.option("--no-test", is_flag=True, help="Do not send a test alert to the targets set up.")
@pass_ctx
def init(ctx: Context, /, **options: object) -> None:
    """Write a commented config file (the root --config path), set up e-mail or Slack,
    send a test alert, and print the command to start the daemon.

    Without options it asks; with any option it asks nothing (secrets come from the
    environment variables named, and are written as ${VAR} references).

    Example:

    \b
        news-monitor init --email-to desk@example.org --smtp-host smtp.example.org --smtp-user alerts@example.org
    """
    from monitor.app.services.setup import init_config

    path = ctx.config_path
    click_ctx = click.get_current_context()
    given = any(click_ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT for name in options)
    secrets: dict[str, str] = {}
    force = bool(options["force"])
    with errors_as_click():
        if given:
            plan = _plan_from_options(options)
        else:
            if Path(path).exists():
                force = click.confirm(f"{path} already exists. Replace it?", default=False)
                if not force:
                    raise click.ClickException(f"{path} already exists; nothing was written")
            plan, secrets = _ask()
        result = init_config(path, plan, force=force, secrets=secrets, test_send=not options["no_test"])
    _report(result)
    if any(send.error for send in result.sends):
        sys.exit(1)


def _plan_from_options(o: dict[str, object]) -> InitPlan:
    email = None
    if o["email_to"]:
        email = EmailSetup(
            to=str(o["email_to"]),
            host=str(o["smtp_host"]),
            security=cast(Security, o["smtp_security"]),
            port=cast("int | None", o["smtp_port"]),
            user=cast("str | None", o["smtp_user"]),
            sender=cast("str | None", o["email_from"]),
            password_env=str(o["smtp_password_env"]),
        )
    slack = SlackSetup(webhook_env=str(o["slack_webhook_env"])) if o["slack"] else None
    return InitPlan(
        themes=tuple(cast("tuple[str, ...]", o["themes"])),
        feeds=tuple(cast("tuple[str, ...]", o["feeds"])),
        email=email,
        slack=slack,
    )


def _ask() -> tuple[InitPlan, dict[str, str]]:
    """The questions of an interactive ``init``: themes, feeds, e-mail, Slack."""
    click.echo("news-monitor init: a few questions, then a config file and a test alert.\n")
    themes: tuple[str, ...] = ()
    if not click.confirm(
        "Start from the three default watchlists (North Korea-Russia pact, North Korean troops in Kursk, sanctions)?",
        default=True,
    ):
        answer = click.prompt("Your themes, as watchlist queries separated by ';'", type=str)
        themes = tuple(t.strip() for t in answer.split(";") if t.strip())
    feeds: tuple[str, ...] = ()
    if not click.confirm("Keep the bundled English and French news feeds?", default=True):
        answer = click.prompt("Feed URLs, separated by spaces", type=str)
        feeds = tuple(answer.split())
    secrets: dict[str, str] = {}
    email = _ask_email(secrets) if click.confirm("Send alerts by e-mail?", default=True) else None
    slack = None
    if click.confirm("Send alerts to Slack (an incoming webhook)?", default=False):
        slack = SlackSetup()
        webhook = click.prompt(
            f"Webhook URL (hidden; empty to set {slack.webhook_env} later)",
            default="",
            hide_input=True,
            show_default=False,
        )
        if webhook:
            secrets[slack.webhook_env] = webhook
    return InitPlan(themes=themes, feeds=feeds, email=email, slack=slack), secrets


def _ask_email(secrets: dict[str, str]) -> EmailSetup:
    to = click.prompt("Send alerts to (e-mail address)", type=str)
    for name, text in SECURITY_HELP.items():
        click.echo(f"  {name:9} {text}")
    security: Security = click.prompt(
        "How to reach the SMTP server", type=click.Choice(_SECURITIES), default="starttls"
    )
    host = click.prompt("SMTP server", default="localhost" if security == "relay" else None, type=str)
    port = click.prompt("SMTP port", default=SECURITY_MODES[security][2], type=int)
    user = None
    if security != "relay":
        user = click.prompt("SMTP login", default=to, type=str)
    email = EmailSetup(to=to, host=host, security=security, port=port, user=user)
    if user:
        password = click.prompt(
            f"SMTP password (hidden; used for the test only, the file reads ${{{email.password_env}}}; "
            f"empty to use ${email.password_env} from the environment)",
            default="",
            hide_input=True,
            show_default=False,
        )
        if password:
            secrets[email.password_env] = password
    return email


def _report(result: InitResult) -> None:
    click.echo(f"\nWrote {result.path}:")
    click.echo(f"  watchlists: {', '.join(result.watchlists)}")
    click.echo(f"  feeds:      {result.feeds}")
    click.echo(f"  alerts to:  {', '.join(result.targets)}")
    for send in result.sends:
        if send.ok:
            click.echo(f"  test alert sent to {send.target} ({send.display_url}): check that it arrived")
        elif send.skipped:
            click.echo(f"  test alert to {send.target} not sent: {send.skipped}")
        else:
            click.echo(f"  test alert to {send.target} FAILED: {send.error}", err=True)
    for warning in result.warnings:
        click.echo(f"  warning: {warning}")
    if result.env_needed:
        names = ", ".join(result.env_needed)
        click.echo(
            f"\nThe daemon reads {names} from its environment: set {'them' if ',' in names else 'it'} first, e.g."
        )
        for name in result.env_needed:
            click.echo(f"  read -rs {name} && export {name}")
    click.echo("\nThen run:")
    for command in result.commands:
        click.echo(f"  {command}")


@click.command()
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=None,
    metavar="SECONDS",
    help="Stop by itself after so many seconds (default: at Ctrl-C).",
)
@pass_ctx
def demo(ctx: Context, duration: float | None) -> None:
    """Show real alerts within a minute, with no network: sample outlets served on
    127.0.0.1, the real daemon on a temporary config and database, and its web page.

    Example:

    \b
        news-monitor demo
    """
    from monitor.app.demo import run_demo

    setup_logging(ctx.log_level or "WARNING")
    with errors_as_click():
        status = run_demo(duration=duration, echo=lambda text: click.echo(text))
    sys.exit(status)


__all__ = ["demo", "init"]
