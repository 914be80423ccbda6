"""Secrets of target URLs are shown only masked: display, failed sends, logs, check-config.

For each Apprise scheme a user may configure (those the README names and the common
webhook and chat services), the secret parts of the URL must never appear where
news-monitor shows a target: its ``display_url`` (``check-config``, log lines, error
messages), the message of a failed send (which becomes the outbox's last error, shown
on story pages and by ``news-monitor stories show``), and the log records of Apprise
and urllib3 at debug level. The masked form must appear instead, so the tests also
check what *is* shown. Failed sends go to real local servers: a webhook receiver
answering 500 or 401, Slack, Discord, Telegram and Pushover re-routed to it, a closed
port for SMTP.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.app.cli import cli
from monitor.delivery.channels import failure_message
from monitor.delivery.masking import mask_text, mask_url, url_secrets
from monitor.delivery.notify import load_channels
from monitor.delivery.render import AlertStory, Renderer
from monitor.errors import ConfigError
from tests.support.webhook import WebhookReceiver, redirect_host

SLACK = ("T04ABCDEFGH", "B07ZYXWVUTS", "pQ9rS8tU7vW6xY5zA4bC3dE2")
DISCORD = ("112233445566778899", "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcdefghijklmnopqrstuvwxyzABCDEFGH")
TELEGRAM = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
PUSHOVER = ("uQiRzpo4DXghDmr9QzzfQu27cmVRsG", "azGDORePK8gMaC0QOYAMyEEuzJnyUi")
PASSWORD = "Corr3ct-Horse-Battery"
BEARER = "eyJhbGciOiJIUzI1NiJ9payload"
PATH_TOKEN = "a1b2c3d4e5f6g7h8i9"
LETTERS_TOKEN = "qwertyuiopasdf"  # no digit: a rule on what tokens look like would miss it

STORY = AlertStory(
    story_id=1,
    title="Kursk offensive stalls",
    link="https://example.org/kursk",
    source="wire",
    published_at=datetime(2024, 8, 20, 9, 30, tzinfo=UTC),
    summary="Troops dig in near Sudzha.",
    watchlists=("kursk",),
    matched_terms=("Kursk",),
)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


def debug_logging(caplog: pytest.LogCaptureFixture) -> None:
    """Capture every record of Apprise, urllib3 and news-monitor, whatever levels are set."""
    for name in (None, "apprise", "urllib3", "monitor"):
        caplog.set_level(logging.DEBUG, logger=name)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def assert_hidden(text: str, secrets: tuple[str, ...]) -> None:
    for secret in secrets:
        assert secret not in text, f"{secret!r} shown in {text!r}"


# -- what is shown of each URL -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown", "secrets"),
    [
        (
            f"mailto://alerts:{PASSWORD}@127.0.0.1:2525?from=a@example.org&to=b@example.org",
            "mailto://alerts:****@127.0.0.1:2525?from=a@example.org&to=b@example.org",
            (PASSWORD,),
        ),
        (
            f"mailtos://alerts:{PASSWORD}@smtp.example.org?to=desk@example.org",
            "mailtos://alerts:****@smtp.example.org?to=desk@example.org",
            (PASSWORD,),
        ),
        (
            f"mailtos://smtp.example.org?user=alerts&pass={PASSWORD}&to=desk@example.org",
            "mailtos://smtp.example.org?user=alerts&pass=****&to=desk@example.org",
            (PASSWORD,),
        ),
        ("slack://{}/{}/{}/#dprk-russia".format(*SLACK), "slack://****/****/****/#dprk-russia", SLACK),
        (
            "https://hooks.slack.com/services/{}/{}/{}".format(*SLACK),
            "https://hooks.slack.com/****/****/****/****",
            SLACK,
        ),
        (
            f"json://127.0.0.1:9/hooks/{PATH_TOKEN}?+Authorization=Bearer%20{BEARER}",
            "json://127.0.0.1:9/****/****?+Authorization=****",
            (PATH_TOKEN, BEARER),
        ),
        (
            f"jsons://user:{PASSWORD}@hooks.example.org/{LETTERS_TOKEN}?token={PATH_TOKEN}&:apikey=k3yk3yk3y",
            "jsons://user:****@hooks.example.org/****?token=****&:apikey=****",
            (PASSWORD, LETTERS_TOKEN, PATH_TOKEN, "k3yk3yk3y"),
        ),
        (
            f"form://127.0.0.1:9/hook/{LETTERS_TOKEN}?+X-Api-Key={BEARER}",
            "form://127.0.0.1:9/****/****?+X-Api-Key=****",
            (LETTERS_TOKEN, BEARER),
        ),
        (
            f"xml://127.0.0.1:9/{PATH_TOKEN}?-X-Token={BEARER}&method=PUT",
            "xml://127.0.0.1:9/****?-X-Token=****&method=PUT",
            (PATH_TOKEN, BEARER),
        ),
        ("discord://{}/{}".format(*DISCORD), "discord://****/****", DISCORD),
        (f"tgram://{TELEGRAM}/-1001234567890", "tgram://****/****", (TELEGRAM, TELEGRAM.split(":")[1])),
        (
            f"matrix://botuser:{PASSWORD}@matrix.example.org/!roomid:example.org",
            "matrix://botuser:****@matrix.example.org/!roomid:example.org",
            (PASSWORD,),
        ),
        (
            "matrixs://syt_TOKENabcdef123456@matrix.example.org/#room:example.org",
            "matrixs://****@matrix.example.org/#room:example.org",
            ("syt_TOKENabcdef123456",),
        ),
        (
            f"ntfy://ntfyuser:{PASSWORD}@ntfy.example.org/alerts-topic",
            "ntfy://ntfyuser:****@ntfy.example.org/****",
            (PASSWORD, "alerts-topic"),
        ),
        (
            "ntfys://ntfy.example.org/alerts-topic?token=tk_NTFYSECRET123",
            "ntfys://ntfy.example.org/****?token=****",
            ("tk_NTFYSECRET123", "alerts-topic"),
        ),
        ("gotify://gotify.example.org/AGotifyTok3nXYZ", "gotify://gotify.example.org/****", ("AGotifyTok3nXYZ",)),
        ("pover://{}@{}".format(*PUSHOVER), "pover://****@****", PUSHOVER),
        ("console://", "console://", ()),
    ],
)
def test_display_url_shows_secrets_only_masked(
    caplog: pytest.LogCaptureFixture, url: str, shown: str, secrets: tuple[str, ...]
) -> None:
    debug_logging(caplog)
    target = load_channels({"t": url})["t"]
    assert target.display_url == shown == mask_url(url)
    assert_hidden(target.display_url, secrets)
    assert_hidden(caplog.text, secrets)  # Apprise logs each URL it loads


@pytest.mark.parametrize(
    ("url", "shown", "secrets"),
    [
        # Apprise 2.x no longer knows Microsoft Teams: the refusal must not show its tokens.
        (
            "msteams://team/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee@ffffffff-1111-2222-3333-444444444444"
            "/IncomingWebhook/abcdef0123456789abcdef0123456789/V2secretSIGabcdefghijklmnop0123",
            "msteams://****/****/****/****/****",
            ("abcdef0123456789abcdef0123456789", "V2secretSIGabcdefghijklmnop0123", "eeeeeeeeeeee@ffffffff"),
        ),
        (
            "slack://{}/{}".format(*SLACK[:2]),
            "slack://****/****",
            SLACK[:2],
        ),
        (
            "bogus://user:VerySecret1@host/tokenabcdefgh",
            "bogus://user:****@****/****",
            ("VerySecret1", "tokenabcdefgh"),
        ),
        # Too short to be scrubbed from every log line, but Apprise's complaint quotes them.
        ("slack://ab_c/B2y/C3z/#desk", "slack://****/****/****/#desk", ("ab_c",)),
    ],
)
def test_refused_url_is_shown_masked(
    caplog: pytest.LogCaptureFixture, url: str, shown: str, secrets: tuple[str, ...]
) -> None:
    debug_logging(caplog)
    with pytest.raises(ConfigError) as info:
        load_channels({"t": url})
    assert f"Apprise cannot use the URL {shown}" in str(info.value)
    assert_hidden(str(info.value), secrets)
    assert_hidden(caplog.text, secrets)


# -- failed sends: the failure message (the outbox's last error) and the logs -------------


def _json(port: int) -> str:
    return f"json://127.0.0.1:{port}/hooks/{PATH_TOKEN}?+Authorization=Bearer%20{BEARER}"


@pytest.mark.parametrize(
    ("name", "url", "status", "redirect", "secrets"),
    [
        ("json", _json, 500, None, (PATH_TOKEN, BEARER)),
        ("json", _json, 401, None, (PATH_TOKEN, BEARER)),
        (
            "form",
            lambda port: f"form://127.0.0.1:{port}/hook/{LETTERS_TOKEN}?+X-Api-Key={BEARER}",
            401,
            None,
            (LETTERS_TOKEN, BEARER),
        ),
        ("xml", lambda port: f"xml://127.0.0.1:{port}/{PATH_TOKEN}?+X-Token={BEARER}", 500, None, (PATH_TOKEN, BEARER)),
        (
            "ntfy",
            lambda port: f"ntfy://ntfyuser:{PASSWORD}@127.0.0.1:{port}/{LETTERS_TOKEN}",
            500,
            None,
            (PASSWORD, LETTERS_TOKEN),
        ),
        ("gotify", lambda port: f"gotify://127.0.0.1:{port}/AGotifyTok3nXYZ", 401, None, ("AGotifyTok3nXYZ",)),
        (
            "matrix",
            lambda port: f"matrix://botuser:{PASSWORD}@127.0.0.1:{port}/!room:example.org",
            500,
            None,
            (PASSWORD,),
        ),
        ("slack", lambda _: "slack://{}/{}/{}/#desk".format(*SLACK), 500, "hooks.slack.com", SLACK),
        ("discord", lambda _: "discord://{}/{}".format(*DISCORD), 401, "discord.com", DISCORD),
        ("tgram", lambda _: f"tgram://{TELEGRAM}/-1001234567890", 401, "api.telegram.org", (TELEGRAM,)),
        ("pover", lambda _: "pover://{}@{}".format(*PUSHOVER), 500, "api.pushover.net", PUSHOVER),
    ],
)
def test_failed_send_shows_secrets_only_masked(
    hook: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
    name: str,
    url: object,
    status: int,
    redirect: str | None,
    secrets: tuple[str, ...],
) -> None:
    debug_logging(caplog)
    hook.status = status
    assert callable(url)
    target = load_channels({name: url(hook.port)}, timeout=5)[name]
    with ExitStack() as stack:
        if redirect is not None:
            stack.enter_context(redirect_host(redirect, hook))
        result = target.send(Renderer().alert(STORY, target.flavour))
    assert not result.delivered
    assert hook.hooks, "the target was really tried"
    message = failure_message(target, result)
    assert_hidden(message, secrets)
    assert_hidden(caplog.text, secrets)
    assert message.startswith(f"target {name!r} ({target.display_url}): delivery failed")
    assert "****" in target.display_url
    assert "****" in caplog.text  # Apprise or urllib3 logged the URL or request line: masked


def test_webhook_secrets_are_really_sent(hook: WebhookReceiver) -> None:
    target = load_channels({"ops": _json(hook.port)})["ops"]
    assert target.send(Renderer().alert(STORY, "text")).delivered
    [request] = hook.wait_for(1)
    assert request.path == f"/hooks/{PATH_TOKEN}"
    assert request.headers["authorization"] == f"Bearer {BEARER}"


def test_smtp_password_is_masked_when_the_server_is_down(caplog: pytest.LogCaptureFixture) -> None:
    debug_logging(caplog)
    url = f"mailto://alerts:{PASSWORD}@127.0.0.1:{closed_port()}?from=a@example.org&to=b@example.org"
    target = load_channels({"mail": url}, timeout=5)["mail"]
    result = target.send(Renderer().alert(STORY, "email"))
    message = failure_message(target, result)
    assert "alerts:****@127.0.0.1" in message and "Connection error" in message
    assert_hidden(message, (PASSWORD,))
    assert_hidden(caplog.text, (PASSWORD,))


# -- check-config ---------------------------------------------------------------------------


def test_check_config_shows_webhook_secrets_masked(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        "targets:\n"
        "  ops: 'json://127.0.0.1:9/hooks/${HOOK_TOKEN}?+Authorization=Bearer%20${BEARER}'\n"
        "  slack: 'slack://${A}/${B}/${C}/#desk'\n",
        encoding="utf-8",
    )
    env = {"HOOK_TOKEN": PATH_TOKEN, "BEARER": BEARER, "A": SLACK[0], "B": SLACK[1], "C": SLACK[2]}
    result = CliRunner().invoke(cli, ["--config", str(config), "check-config"], env=env)
    assert result.exit_code == 0, result.output
    assert "  target ops: json://127.0.0.1:9/****/****?+Authorization=****\n" in result.output
    assert "  target slack: slack://****/****/****/#desk\n" in result.output
    assert_hidden(result.output, (PATH_TOKEN, BEARER, *SLACK))


# -- the masking rule on text that quotes a URL ----------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            f"JSON POST URL: http://127.0.0.1:9/hooks/{PATH_TOKEN} (cert_verify=True)",
            "JSON POST URL: http://127.0.0.1:9/****/**** (cert_verify=True)",
        ),
        (
            f'http://127.0.0.1:9 "POST /hooks/{PATH_TOKEN}?token=x HTTP/1.1" 500 2',
            'http://127.0.0.1:9 "POST /****/****?token=**** HTTP/1.1" 500 2',
        ),
        (
            f"Max retries exceeded with url: /hook/{LETTERS_TOKEN} (Caused by ConnectTimeout)",
            "Max retries exceeded with url: /****/**** (Caused by ConnectTimeout)",
        ),
        (
            f"target 'ops' (json://127.0.0.1:9/hooks/{PATH_TOKEN}?+Authorization=Bearer%20{BEARER}): failed.",
            "target 'ops' (json://127.0.0.1:9/****/****?+Authorization=****): failed.",
        ),
        (f"see slack://{SLACK[0]}/{SLACK[1]}/{SLACK[2]}.", "see slack://****/****/****."),
        (
            'Connection error while submitting email to "127.0.0.1"',
            'Connection error while submitting email to "127.0.0.1"',
        ),
    ],
)
def test_urls_quoted_in_text_are_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked


def test_url_secrets_lists_each_form_a_log_may_show() -> None:
    found = url_secrets(f"json://127.0.0.1:9/hook/{PATH_TOKEN}?+Authorization=Bearer%20{BEARER}")
    assert {PATH_TOKEN, BEARER, f"Bearer {BEARER}", f"Bearer%20{BEARER}", f"Bearer+{BEARER}"} <= found
    assert "hook" not in found  # a common word is masked inside URLs, not scrubbed from every line
