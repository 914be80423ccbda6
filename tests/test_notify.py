"""Sending alerts through Apprise to real local servers: SMTP, a JSON webhook, Slack.

Slack's host is fixed (hooks.slack.com), so its request is re-routed at the transport
(tests/support/webhook.py: redirect_host) after Apprise and requests have built it.
"""

from __future__ import annotations

import importlib
import json
import logging
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

import monitor.delivery.notify
from monitor.delivery import plugins
from monitor.delivery.channels import FLAVOURS, SendResult, send_or_raise
from monitor.delivery.notify import AppriseChannel, load_channels
from monitor.delivery.render import AlertStory, OtherReport, Renderer
from monitor.errors import ConfigError, NotifyError
from tests.support.smtpserver import SMTPTestServer
from tests.support.webhook import WebhookReceiver, redirect_host

SLACK_TOKENS = ("T04ABCDEFGH", "B07ZYXWVUTS", "pQ9rS8tU7vW6xY5zA4bC3dE2")
SLACK_URL = "slack://{}/{}/{}/#dprk-russia".format(*SLACK_TOKENS)
SLACK_HOOK = "https://hooks.slack.com/services/{}/{}/{}".format(*SLACK_TOKENS)
SMTP_PASSWORD = "Corr3ct-Horse-Battery"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local servers only: a developer's HTTP(S)_PROXY must not capture 127.0.0.1."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


@pytest.fixture
def smtp() -> Iterator[SMTPTestServer]:
    with SMTPTestServer() as server:
        yield server


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
def renderer() -> Renderer:
    return Renderer(timezone="Europe/Paris")


def channel(name: str, url: str, *, timeout: float = 30.0) -> AppriseChannel:
    return load_channels({name: url}, timeout=timeout)[name]


def debug_logging(caplog: pytest.LogCaptureFixture) -> None:
    """Capture debug records of Apprise and urllib3, whatever levels other code has set."""
    for name in (None, "apprise", "urllib3"):
        caplog.set_level(logging.DEBUG, logger=name)


def closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def story(**changes: object) -> AlertStory:
    title = "Putin and Kim sign mutual defence pact in Pyongyang"
    summary = "Russia and North Korea agreed to help each other if attacked, the Kremlin said."
    base = AlertStory(
        story_id=7,
        title=title,
        link="https://www.bbc.co.uk/news/articles/c1ww4gll8ppo?at_medium=RSS&at_campaign=rss",
        source="bbc-world",
        published_at=datetime(2024, 6, 19, 5, 5, tzinfo=UTC),
        summary=summary,
        watchlists=("dprk-russia-pact",),
        matched_terms=('"North Korea"', "pact"),
        highlights=(("title", 34, 38), ("summary", 11, 22)),
        also_reported_by=(OtherReport("guardian-world", "en"),),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# -- e-mail ---------------------------------------------------------------------------


def test_email_arrives_as_multipart_text_and_html(smtp: SMTPTestServer, renderer: Renderer) -> None:
    desk = channel("desk", smtp.apprise_url(to="desk@example.org"))
    assert desk.flavour == "email"
    message = renderer.alert(story(), "email")

    assert desk.send(message) == SendResult.sent()

    [mail] = smtp.wait_for(1)
    assert mail["Subject"] == "[dprk-russia-pact] Putin and Kim sign mutual defence pact in Pyongyang"
    assert mail["To"] == "desk@example.org" and mail["From"] == "alerts@example.org"
    assert mail.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in mail.iter_parts()] == ["text/plain", "text/html"]
    plain = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert plain is not None and html is not None
    text, markup = plain.get_content(), html.get_content()
    link = "https://www.bbc.co.uk/news/articles/c1ww4gll8ppo?at_medium=RSS&at_campaign=rss"
    # The plain-text part (derived by Apprise from the HTML) still has the link.
    for fragment in ("Putin and Kim sign mutual defence pact", "bbc-world · 2024-06-19 07:05 CEST", link):
        assert fragment in text, fragment
    assert f'href="{link.replace("&", "&amp;")}"' in markup
    assert "mutual defence <mark>pact</mark>" in markup
    assert "Russia and <mark>North Korea</mark> agreed" in markup
    assert '<mark>"North Korea"</mark>, <mark>pact</mark>' in markup


def test_email_digest_arrives_in_one_message(smtp: SMTPTestServer, renderer: Renderer) -> None:
    desk = channel("desk", smtp.apprise_url())
    stories = [
        story(story_id=1),
        story(story_id=2, title="Troops seen in Kursk", watchlists=("kursk-troops",)),
    ]
    assert desk.send(renderer.digest(stories, "email", title="news-monitor digest: 2 stories")).delivered
    [mail] = smtp.wait_for(1)
    assert mail["Subject"] == "news-monitor digest: 2 stories"
    html = mail.get_body(("html",))
    assert html is not None
    markup = html.get_content()
    assert markup.index(">dprk-russia-pact</h2>") < markup.index(">kursk-troops</h2>")
    assert "Troops seen in Kursk" in markup


# -- Slack ----------------------------------------------------------------------------


def send_to_slack(
    hook: WebhookReceiver, renderer: Renderer, url: str, s: AlertStory
) -> tuple[dict[str, Any], list[str]]:
    slack = channel("slack", url)
    assert slack.flavour == "slack"
    with redirect_host("hooks.slack.com", hook) as redirected:
        assert slack.send(renderer.alert(s, slack.flavour)).delivered
    [request] = hook.wait_for(1)
    assert request.method == "POST" and request.headers["content-type"].startswith("application/json")
    assert isinstance(request.json, dict)
    return request.json, redirected


def test_slack_payload_is_exactly_mrkdwn(hook: WebhookReceiver, renderer: Renderer) -> None:
    payload, redirected = send_to_slack(hook, renderer, SLACK_URL + "?image=no&footer=no", story())
    assert redirected == [SLACK_HOOK]
    assert payload == {
        "mrkdwn": True,
        "channel": "#dprk-russia",
        "attachments": [
            {
                "title": "Watchlist: dprk-russia-pact",
                "color": "#3AA3E3",
                "text": (
                    "*<https://www.bbc.co.uk/news/articles/c1ww4gll8ppo?at_medium=RSS&amp;at_campaign=rss"
                    "|Putin and Kim sign mutual defence pact in Pyongyang>*\n"
                    "bbc-world · 2024-06-19 07:05 CEST\n"
                    'Matched: *"North Korea"*, *pact*\n'
                    "\n"
                    "Russia and *North Korea* agreed to help each other if attacked, the Kremlin said.\n"
                    "\n"
                    "Watchlist: dprk-russia-pact\n"
                    "Also reported by:\n"
                    "• guardian-world (en)"
                ),
            }
        ],
    }


def test_slack_default_url_adds_footer_and_timestamp(hook: WebhookReceiver, renderer: Renderer) -> None:
    before = time.time()
    payload, _ = send_to_slack(hook, renderer, SLACK_URL, story())
    [attachment] = payload["attachments"]
    assert attachment["footer"] == "news-monitor"
    assert before - 1 <= attachment["ts"] <= time.time() + 1
    assert attachment["text"].startswith("*<https://www.bbc.co.uk/news/articles/")


def test_hostile_feed_title_is_inert_in_slack(hook: WebhookReceiver, renderer: Renderer) -> None:
    hostile = story(
        title="<!channel> & <http://evil|x>",
        summary="Ping <!here> and <@U123ABC>, see <https://evil.example|here>",
        highlights=(),
        link="https://example.org/a",
    )
    payload, _ = send_to_slack(hook, renderer, SLACK_URL + "?image=no&footer=no", hostile)
    text = payload["attachments"][0]["text"]
    assert text.startswith("*<https://example.org/a|&lt;!channel&gt; &amp; &lt;http://evil|x&gt;>*\n")
    assert "Ping &lt;!here&gt; and &lt;@U123ABC&gt;, see &lt;https://evil.example|here&gt;" in text
    # The only angle brackets Slack will parse are our own story link.
    assert re.findall(r"<[^<>]*>", text) == [
        "<https://example.org/a|&lt;!channel&gt; &amp; &lt;http://evil|x&gt;>"
    ]


@pytest.mark.parametrize(
    ("title", "shown"),
    [
        # Slack's mrkdwn has no backslash escapes: "\*urgent\*" would show the backslashes.
        ("*urgent* _now_", "\u2217urgent\u2217 \u02cdnow\u02cd"),
        ("~struck~ and `code`", "\u223cstruck\u223c and \u02cbcode\u02cb"),
        ("snake_case 2*3*4", "snake\u02cdcase 2\u22173\u22174"),
        ("Tom & Jerry <b>", "Tom &amp; Jerry &lt;b&gt;"),
        ("[x](https://evil.example) #1 !", "[x](https://evil.example) #1 !"),
        ("](<https://evil.example>)", "](&lt;https://evil.example&gt;)"),
        ("C:\\path\\<x>", "C:\\\u2060path\\\u2060&lt;x&gt;"),
    ],
)
def test_feed_text_reaches_slack_in_slack_escaping_only(
    hook: WebhookReceiver, renderer: Renderer, title: str, shown: str
) -> None:
    s = story(title=title, summary=title, highlights=(), link="https://example.org/a")
    payload, _ = send_to_slack(hook, renderer, SLACK_URL + "?image=no&footer=no", s)
    text = payload["attachments"][0]["text"]
    # The title keeps the layout's bold link whole; the summary is plain text.
    assert text.startswith(f"*<https://example.org/a|{shown}>*\n")
    assert f"\n\n{shown}\n\n" in text
    assert text.count("\\") == 2 * title.count("\\")  # no backslash but the feed's own


def test_slack_digest_payload_is_exactly_mrkdwn(hook: WebhookReceiver, renderer: Renderer) -> None:
    slack = channel("slack", SLACK_URL + "?image=no&footer=no")
    stories = [
        story(story_id=1, title="*Breaking*: pact <signed>", highlights=(("summary", 11, 22),)),
        story(
            story_id=2,
            title="Troops seen in Kursk",
            link=None,
            summary="",
            watchlists=("kursk-troops", "dprk-russia-pact"),
            matched_terms=("Kursk",),
            highlights=(),
            also_reported_by=(),
        ),
    ]
    with redirect_host("hooks.slack.com", hook):
        assert slack.send(renderer.digest(stories, "slack", title="news-monitor digest: 2 stories")).delivered
    [request] = hook.wait_for(1)
    assert request.json == {
        "mrkdwn": True,
        "channel": "#dprk-russia",
        "attachments": [
            {
                "title": "news-monitor digest: 2 stories",
                "color": "#3AA3E3",
                "text": (
                    "2 stories\n"
                    "\n"
                    "*dprk-russia-pact*\n"
                    "• <https://www.bbc.co.uk/news/articles/c1ww4gll8ppo?at_medium=RSS&amp;at_campaign=rss"
                    "|\u2217Breaking\u2217: pact &lt;signed&gt;> (bbc-world, 2024-06-19 07:05 CEST)\n"
                    "Russia and *North Korea* agreed to help each other if attacked, the Kremlin said.\n"
                    'Matched: *"North Korea"*, *pact*\n'
                    "   ◦ also reported by guardian-world (en)\n"
                    "\n"
                    "*kursk-troops*\n"
                    "• Troops seen in Kursk (bbc-world, 2024-06-19 07:05 CEST)\n"
                    "Matched: *Kursk* · also in: dprk-russia-pact"
                ),
            }
        ],
    }


# -- JSON webhook and console ----------------------------------------------------------


def test_json_webhook_payload(hook: WebhookReceiver, renderer: Renderer) -> None:
    ops = channel("ops", hook.apprise_json_url("/alerts"))
    assert ops.flavour == "text"
    message = renderer.alert(story(), "text")
    assert ops.send(message).delivered
    [request] = hook.wait_for(1)
    assert (request.method, request.path) == ("POST", "/alerts")
    assert request.json == {
        "version": "1.0",
        "title": message.title,
        "message": message.body.rstrip("\n"),
        "attachments": [],
        "type": "info",
    }
    assert 'Matched: "North Korea", pact' in request.json["message"]


def test_console_target_prints_one_block_per_alert(
    capsys: pytest.CaptureFixture[str], renderer: Renderer
) -> None:
    console = channel("console", "console://")
    assert console.flavour == "text"
    first = renderer.alert(story(), "text")
    second = renderer.alert(story(title="Second story"), "text")
    assert console.send(first).delivered and console.send(second).delivered
    out = capsys.readouterr().out

    def block(title: str, body: str) -> str:
        return f"{title}\n{'-' * min(len(title), 78)}\n{body.rstrip()}\n\n"

    assert out == block(first.title, first.body) + block(second.title, second.body)


def test_console_registration_is_idempotent(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture, renderer: Renderer
) -> None:
    caplog.set_level(logging.WARNING, logger="apprise")
    reloaded = importlib.reload(monitor.delivery.notify)
    channels = [reloaded.load_channels({"c": "console://"})["c"] for _ in range(2)]
    channels.append(channel("c", "console://"))
    for c in channels:
        assert c.send(renderer.alert(story(), "text")).delivered
    assert capsys.readouterr().out.count("[dprk-russia-pact] Putin and Kim") == 3
    assert "already defined" not in caplog.text
    scrubbers = [
        f for f in logging.getLogger("apprise").filters if getattr(f, "news_monitor_scrubber", False)
    ]
    assert len(scrubbers) == 1


# -- failures -------------------------------------------------------------------------


def test_smtp_outage_is_a_failed_send_then_recovers(smtp: SMTPTestServer, renderer: Renderer) -> None:
    desk = channel("desk", smtp.apprise_url())
    message = renderer.alert(story(), "email")
    smtp.stop()
    result = desk.send(message)
    assert not result.delivered and not result.permanent
    assert result.reason.startswith("delivery failed (failure): ")
    assert 'Connection error while submitting email to "127.0.0.1"' in result.reason
    with pytest.raises(NotifyError) as info:
        send_or_raise(desk, message)
    assert info.value.target == "desk"
    assert str(info.value).startswith(f"target 'desk' ({desk.display_url}): delivery failed (failure): ")
    assert 'Connection error while submitting email to "127.0.0.1"' in str(info.value)
    smtp.start()  # same port: the target URL is still right
    fresh = channel("desk", smtp.apprise_url())  # no 5.5 s Apprise throttle
    assert fresh.send(message).delivered
    assert smtp.wait_for(1)[0]["Subject"] == message.title


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (500, "Failed to send JSON POST notification: Internal server error., error=500."),
        (404, "Failed to send JSON POST notification: Page not found., error=404."),
    ],
)
def test_webhook_error_status_is_a_failed_send(
    hook: WebhookReceiver, renderer: Renderer, status: int, reason: str
) -> None:
    hook.status = status
    ops = channel("ops", hook.apprise_json_url("/alerts"))
    result = ops.send(renderer.alert(story(), "text"))
    assert not result.delivered and not result.permanent
    assert result.reason.endswith(reason)
    assert len(hook.hooks) == 1  # one attempt: Apprise does not retry behind the outbox


def test_hung_smtp_server_times_out(renderer: Renderer) -> None:
    # Accepts TCP connections (the kernel does) but never sends the SMTP greeting.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]
        url = f"mailto://127.0.0.1:{port}?from=a@example.org&to=b@example.org&mode=insecure"
        desk = channel("desk", url, timeout=1.0)
        started = time.monotonic()
        result = desk.send(renderer.alert(story(), "email"))
        assert not result.delivered
        assert result.reason.startswith("delivery failed (timeout): no answer within 1s")
        assert time.monotonic() - started < 5


# -- secrets ----------------------------------------------------------------------------


def test_smtp_password_is_in_no_error_and_no_log(
    caplog: pytest.LogCaptureFixture, renderer: Renderer
) -> None:
    debug_logging(caplog)
    url = f"mailto://alerts:{SMTP_PASSWORD}@127.0.0.1:{closed_port()}?from=a@example.org&to=b@example.org"
    mail = channel("mail", url)
    with pytest.raises(NotifyError) as info:
        send_or_raise(mail, renderer.alert(story(), "email"))
    assert "Connection error" in str(info.value)
    assert "alerts:****@127.0.0.1" in str(info.value)
    assert SMTP_PASSWORD not in str(info.value)
    assert "Socket Exception" in caplog.text  # Apprise's debug output was captured...
    assert SMTP_PASSWORD not in caplog.text  # ...and holds no password


def test_slack_tokens_are_scrubbed_from_apprise_debug_log(
    hook: WebhookReceiver, caplog: pytest.LogCaptureFixture, renderer: Renderer
) -> None:
    # Apprise's Slack plugin logs its POST URL, tokens included, at debug level; the
    # filter news-monitor puts on the apprise logger must mask them.
    debug_logging(caplog)
    hook.status = 500
    slack = channel("slack", SLACK_URL)
    with redirect_host("hooks.slack.com", hook), pytest.raises(NotifyError) as info:
        send_or_raise(slack, renderer.alert(story(), "slack"))
    assert "Failed to send to Slack: Internal server error., error=500." in str(info.value)
    assert "Slack POST URL: https://hooks.slack.com/****/****/****/****" in caplog.text
    for token in SLACK_TOKENS:
        assert token not in str(info.value)
        assert token not in caplog.text


@pytest.mark.parametrize(
    ("url", "shown", "secret"),
    [
        (
            f"mailtos://alerts:{SMTP_PASSWORD}@smtp.example.org?to=desk@example.org",
            "mailtos://alerts:****@smtp.example.org",
            SMTP_PASSWORD,
        ),
        (SLACK_URL, "slack://****/****/****/#dprk-russia", SLACK_TOKENS[2]),
        ("json://user:hunter22@127.0.0.1:9/hook", "json://user:****@127.0.0.1:9/****", "hunter22"),
    ],
)
def test_display_url_masks_secrets(url: str, shown: str, secret: str) -> None:
    described = channel("t", url).display_url
    assert described.startswith(shown)
    assert secret not in described


# -- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "flavour"),
    [
        ("mailto://127.0.0.1:2525?from=a@example.org&to=b@example.org", "email"),
        ("mailtos://user:pw@smtp.example.org?to=desk@example.org", "email"),
        (SLACK_URL, "slack"),
        (SLACK_HOOK, "slack"),  # Apprise also takes the native webhook URL
        # Apprise's Delta Chat plugin is its e-mail plugin underneath: e-mail's flavour.
        ("deltachat://user:pw@example.org?to=b@example.org", "email"),
        ("json://127.0.0.1:8080/hook", "text"),
        ("console://", "text"),
    ],
)
def test_flavour_follows_the_apprise_plugin(renderer: Renderer, url: str, flavour: str) -> None:
    target = channel("t", url)
    assert target.flavour == flavour
    assert renderer.alert(story(), target.flavour).body_format == FLAVOURS[flavour].body_format


@pytest.mark.parametrize(
    ("url", "message", "secret"),
    [
        (
            "bogus://user:VerySecret1@host/tokenabcdefgh",
            "Apprise cannot use the URL bogus://user:****@****/****: Unparseable URL",
            "VerySecret1",
        ),
        (
            "slack://T04ABCDEFGH/B07ZYXWVUTS",
            "Apprise cannot use the URL slack://****/****: An invalid Slack (third) Token",
            "T04ABCDEFGH",
        ),
        (
            f"mailtos://alerts:{SMTP_PASSWORD}@?to=desk@example.org",
            "Apprise cannot use the URL mailtos://alerts:****@?to=desk@example.org",
            SMTP_PASSWORD,
        ),
        ("not a url", "Apprise cannot use the URL (not a URL): Unsupported URL", None),
        ("json://127.0.0.1:8080/hook?retry=3", "remove 'retry=' from the URL", None),
        ("   ", "target 'bad' has no URL", None),
    ],
)
def test_unusable_url_is_a_config_error(
    caplog: pytest.LogCaptureFixture, url: str, message: str, secret: str | None
) -> None:
    debug_logging(caplog)
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        load_channels({"good": "console://", "bad": url})
    assert info.value.field == "targets.bad"
    assert "target 'bad'" in str(info.value)
    if secret is not None:
        assert secret not in str(info.value)
        assert secret not in caplog.text


def test_one_channel_per_target_in_config_order() -> None:
    channels = load_channels({"b": "console://", "a": "json://127.0.0.1:9/x"})
    assert [(name, c.name) for name, c in channels.items()] == [("b", "b"), ("a", "a")]


def test_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="timeout must be positive"):
        load_channels({"c": "console://"}, timeout=0)


# -- which Apprise plugins are imported ------------------------------------------------

_PLUGINS_PROBE = """
import json, sys
from monitor.delivery.notify import load_channels
from monitor.delivery import plugins
first = dict(item.split("=", 1) for item in sys.argv[1].split(";"))
later = dict(item.split("=", 1) for item in sys.argv[2].split(";") if item)
result = {"flavours": {k: c.flavour for k, c in load_channels(first).items()}}
result["loaded"] = sorted(m for m in sys.modules if m.startswith("apprise.plugins."))
result["flavours"].update({k: c.flavour for k, c in load_channels(later).items()})
result["later"] = sorted(m for m in sys.modules if m.startswith("apprise.plugins."))
print(json.dumps(result))
"""


def _fresh_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter (Apprise's plugin registry is per process)."""
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60, check=True)


def _probe_plugins(first: dict[str, str], later: dict[str, str] | None = None) -> dict[str, Any]:
    """Load ``first`` then ``later`` in a fresh interpreter; the plugin modules imported after each."""
    arg = ";".join(f"{k}={v}" for k, v in first.items())
    arg2 = ";".join(f"{k}={v}" for k, v in (later or {}).items())
    result: dict[str, Any] = json.loads(_fresh_python(_PLUGINS_PROBE, arg, arg2).stdout)
    return result


def _top(modules: list[str]) -> set[str]:
    """Plugin modules by their entry in ``apprise/plugins``; ``base`` is imported by Apprise itself."""
    return {m.split(".")[2] for m in modules} - {"base"}


def test_only_the_plugins_of_the_targets_are_imported() -> None:
    probe = _probe_plugins(
        {"desk": "mailto://127.0.0.1:2525?from=a@example.org&to=b@example.org", "out": "console://", "s": SLACK_URL},
        {"hook": "json://127.0.0.1:9/x", "chat": "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js"},
    )
    assert probe["flavours"] == {"desk": "email", "out": "text", "s": "slack", "hook": "text", "chat": "text"}
    # Apprise's e-mail plugin is a package whose modules import each other.
    assert _top(probe["loaded"]) == {"email", "slack"}
    # A reload that adds targets imports their plugins, and only theirs.
    assert _top(probe["later"]) == {"email", "slack", "custom_json", "discord"}


@pytest.mark.parametrize(
    ("url", "flavour"),
    [
        (SLACK_HOOK, "slack"),  # a native URL: only asking every plugin recognises it
        ("bogusscheme://host/x", None),  # no plugin declares it: Apprise's full scan decides
    ],
)
def test_a_url_no_plugin_declares_loads_every_plugin(url: str, flavour: str | None) -> None:
    if flavour is None:
        with pytest.raises(subprocess.CalledProcessError) as info:
            _probe_plugins({"t": url})
        assert "Apprise cannot use the URL" in info.value.stderr
        return
    probe = _probe_plugins({"t": url})
    assert probe["flavours"] == {"t": flavour}
    assert len(_top(probe["loaded"])) > 100


def test_scheme_index_matches_what_apprise_maps_when_it_loads_everything() -> None:
    mapped = _fresh_python(
        "import json, apprise\n"
        "from apprise.manager_plugins import NotificationManager as M\n"
        "m = M(); m.load_modules()\n"
        "print(json.dumps({s: m[s].__module__ for s in m.schemas()}))"
    )
    apprise_map = {scheme: module.split(".")[2] for scheme, module in json.loads(mapped.stdout).items()}
    index = plugins.scheme_index()
    assert len(apprise_map) > 100
    assert set(index) <= set(apprise_map)
    for scheme, module in index.items():
        assert apprise_map[scheme] in module, scheme
    # A module with computed schemes (D-Bus) is left out whole: a URL using one loads everything.
    left_out = {apprise_map[scheme] for scheme in set(apprise_map) - set(index)}
    assert left_out.isdisjoint(set().union(*index.values()))
    assert len(left_out) <= 3


def test_without_a_writable_temporary_directory_apprise_loads_everything_and_works() -> None:
    code = (
        "import json, sys, tempfile\n"
        "def refuse(*a, **k):\n"
        "    raise PermissionError(13, 'read-only')\n"
        "tempfile.TemporaryDirectory = refuse\n"
        "from monitor.delivery.notify import load_channels\n"
        "channels = load_channels({'desk': sys.argv[1]})\n"
        "loaded = [m for m in sys.modules if m.startswith('apprise.plugins.')]\n"
        "print(json.dumps([channels['desk'].flavour, len(loaded)]))"
    )
    done = _fresh_python(code, "mailto://127.0.0.1:2525?from=a@example.org&to=b@example.org")
    flavour, plugins_loaded = json.loads(done.stdout)
    assert flavour == "email"
    assert plugins_loaded > 100
    assert "already loaded" not in done.stderr
