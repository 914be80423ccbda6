"""Delivery against real servers and a real store, with an injected clock (no sleeps).

Digests, quiet hours, rate limits, per-target retries, giving up, one message per story
for several watchlists, and feed-health alerts.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from sqlalchemy import select

from monitor.app.deliver import Deliverer, Policies
from monitor.config.model import parse_config
from monitor.delivery.channels import Message, SendResult
from monitor.delivery.notify import load_channels
from monitor.delivery.render import Renderer
from monitor.storage.feeds import FeedConfigRow
from monitor.storage.schema import Alert
from monitor.storage.store import Store
from tests.support.smtpserver import SMTPTestServer
from tests.support.stories import entry, poll_failed, poll_ok, record, result
from tests.support.webhook import WebhookReceiver

START = dt.datetime(2026, 11, 26, 6, 0, tzinfo=dt.UTC)  # 07:00 in Paris


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now

    def at(self, iso: str) -> None:
        self.now = dt.datetime.fromisoformat(iso).astimezone(dt.UTC)


@dataclass
class World:
    store: Store
    smtp: SMTPTestServer
    hook: WebhookReceiver
    clock: Clock
    deliverer: Deliverer
    feed_id: int

    def publish(self, n: int, *watchlists: str, targets: dict[str, list[str]] | None = None) -> None:
        (feed,) = self.store.claim_due_feeds(worker="t", lease=1, now=self.clock.now, force=True)
        tmap = targets or {w: ["hook"] for w in watchlists}
        record(self.store, feed, [entry(n)], {0: [result(w) for w in watchlists]}, targets=tmap, now=self.clock.now)

    def titles(self) -> list[str]:
        return [h.json["title"] for h in self.hook.hooks]


def make_world(store: Store, smtp: SMTPTestServer, hook: WebhookReceiver, extra: str = "") -> World:
    text = f"""
timezone: Europe/Paris
delivery: {{retry_base: 60s, retry_max: 10m, give_up_after: 1h}}
targets:
  hook: {{url: "{hook.apprise_json_url("/h")}"}}
  mail: "{smtp.apprise_url()}"
{extra}
"""
    config, _ = parse_config(text)
    renderer = Renderer(timezone=config.timezone)
    clock = Clock(START)
    deliverer = Deliverer(
        store,
        load_channels(config.target_urls, timeout=5),
        renderer,
        config.delivery,
        worker="host:1:x",
        policies=Policies.from_config(config),
        clock=clock,
        rand=lambda: 1.0,
    )
    store.sync_feeds([FeedConfigRow("wire", "http://127.0.0.1/wire.xml", 600, "en")], now=START)
    return World(store, smtp, hook, clock, deliverer, store.feeds()[0].id)


@pytest.fixture
def servers() -> Iterator[tuple[SMTPTestServer, WebhookReceiver]]:
    with SMTPTestServer() as smtp, WebhookReceiver() as hook:
        yield smtp, hook


def test_one_story_several_watchlists_one_message_per_target(
    store: Store, servers: tuple[SMTPTestServer, WebhookReceiver]
) -> None:
    w = make_world(store, *servers)
    w.publish(1, "pact", "troops", targets={"pact": ["hook", "mail"], "troops": ["hook"]})
    rep = w.deliverer.deliver()
    assert (rep.messages, rep.sent) == (2, 3)
    (post,) = w.hook.hooks
    assert "pact" in post.json["message"] and "troops" in post.json["message"]
    (mail,) = w.smtp.wait_for(1)
    assert "Story 1" in mail["Subject"]
    assert w.deliverer.deliver().messages == 0  # never twice


def test_digest_watchlist_sends_one_digest_at_schedule(
    store: Store, servers: tuple[SMTPTestServer, WebhookReceiver]
) -> None:
    extra = """
watchlists:
  - {name: morning, query: x, notify: [hook], mode: digest, schedule: "0 8 * * *"}
  - {name: live, query: x, notify: [hook]}
"""
    w = make_world(store, *servers, extra)
    w.publish(1, "morning")
    w.publish(2, "morning")
    w.publish(3, "live")
    rep = w.deliverer.deliver()
    assert (rep.messages, rep.held) == (1, 2)
    assert w.titles() == [w.hook.hooks[0].json["title"]] and "Story 3" in w.titles()[0]
    w.clock.at("2026-11-26T07:59:00+01:00")
    assert w.deliverer.deliver().messages == 0  # not yet
    w.clock.at("2026-11-26T08:00:00+01:00")
    rep = w.deliverer.deliver()
    assert (rep.messages, rep.sent) == (1, 2)
    digest = w.hook.hooks[1].json
    assert digest["title"].startswith("news-monitor digest: 2 stories (morning)")
    assert "Story 1" in digest["message"] and "Story 2" in digest["message"]
    assert w.deliverer.deliver().messages == 0


def test_quiet_hours_hold_then_one_digest_urgent_bypasses(
    store: Store, servers: tuple[SMTPTestServer, WebhookReceiver]
) -> None:
    extra = """
watchlists:
  - {name: calm, query: x, notify: [hook]}
  - {name: alarm, query: x, notify: [hook], urgent: true}
"""
    smtp, hook = servers
    w = make_world(store, smtp, hook)
    target = f'hook: {{url: "{hook.apprise_json_url("/h")}", quiet_hours: "22:00-07:00"}}'
    w.deliverer.policies = Policies.from_config(
        parse_config(f"timezone: Europe/Paris\ntargets:\n  {target}\n{extra}")[0]
    )
    w.clock.at("2026-11-26T23:30:00+01:00")
    w.publish(1, "calm")
    w.publish(2, "calm")
    w.publish(3, "alarm")
    rep = w.deliverer.deliver()
    assert (rep.messages, rep.held) == (1, 2)
    assert "Story 3" in w.titles()[0]
    w.clock.at("2026-11-27T06:59:00+01:00")
    assert w.deliverer.deliver().messages == 0
    w.clock.at("2026-11-27T07:00:00+01:00")
    rep = w.deliverer.deliver()
    assert (rep.messages, rep.sent) == (1, 2)
    assert w.titles()[1].startswith("news-monitor digest: 2 stories")


def test_rate_limit_folds_overflow_into_digest(store: Store, servers: tuple[SMTPTestServer, WebhookReceiver]) -> None:
    smtp, hook = servers
    w = make_world(store, smtp, hook)
    w.deliverer.policies = Policies.from_config(
        parse_config(f'targets:\n  hook: {{url: "{hook.apprise_json_url("/h")}", rate_limit: "2/10m"}}\n')[0]
    )
    for n in range(1, 6):
        w.publish(n, "w")
    rep = w.deliverer.deliver()
    assert (rep.messages, rep.sent) == (2, 5)  # one alert, then a digest of the four others
    assert "Story 1" in w.titles()[0] and w.titles()[1].startswith("news-monitor digest: 4 stories")
    w.publish(6, "w")
    w.clock.now += dt.timedelta(minutes=1)
    rep = w.deliverer.deliver()
    assert (rep.messages, rep.held) == (0, 1)  # window full: held, not dropped
    w.clock.now += dt.timedelta(minutes=9, seconds=1)
    rep = w.deliverer.deliver()
    assert (rep.messages, rep.sent) == (1, 1)
    assert w.titles()[2].startswith("news-monitor digest: 1 story")


def test_partial_failure_retries_only_the_failed_target(
    store: Store, servers: tuple[SMTPTestServer, WebhookReceiver]
) -> None:
    w = make_world(store, *servers)
    w.smtp.stop()
    w.publish(1, "w", targets={"w": ["hook", "mail"]})
    rep = w.deliverer.deliver()
    assert (rep.sent, rep.retrying) == (1, 1)
    assert len(w.hook.hooks) == 1
    w.smtp.start()
    assert w.deliverer.deliver().messages == 0  # backoff: not due yet
    w.clock.now += dt.timedelta(seconds=60)
    rep = w.deliverer.deliver()
    assert (rep.sent, rep.messages) == (1, 1)
    assert len(w.smtp.wait_for(1)) == 1 and len(w.hook.hooks) == 1
    assert store.alert_counts() == {"sent": 2}


def test_gives_up_loudly_after_give_up_age(
    store: Store, servers: tuple[SMTPTestServer, WebhookReceiver], caplog: pytest.LogCaptureFixture
) -> None:
    w = make_world(store, *servers)
    w.smtp.stop()
    w.publish(1, "w", targets={"w": ["mail"]})
    for _ in range(6):  # an hour of retries, every 10 minutes: still pending, never sent
        w.deliverer.deliver()
        assert store.alert_counts() == {"pending": 1}
        w.clock.now += dt.timedelta(minutes=10)
    with caplog.at_level(logging.ERROR, logger="monitor.deliver"):
        w.deliverer.deliver()
    assert store.alert_counts() == {"failed": 1}
    assert any("GAVE UP" in r.getMessage() and "target=mail" in r.getMessage() for r in caplog.records)
    assert w.smtp.messages == []


def test_feed_health_alert_once_down_once_up(store: Store, servers: tuple[SMTPTestServer, WebhookReceiver]) -> None:
    w = make_world(store, *servers)
    since = START - dt.timedelta(hours=7)
    poll_failed(store, w.feed_id, since=since, reason="http_500", message="boom")
    assert store.queue_health_alerts(targets=["hook"], after=6 * 3600, now=START) == [("wire", "down")]
    assert store.queue_health_alerts(targets=["hook"], after=6 * 3600, now=START) == []  # no repeats
    w.deliverer.deliver()
    (down,) = w.hook.hooks
    assert "wire" in down.json["title"] and "failing since" in down.json["title"]
    assert "http_500" in down.json["message"]
    poll_ok(store, w.feed_id, now=START)
    assert store.queue_health_alerts(targets=["hook"], after=6 * 3600, now=START) == [("wire", "up")]
    assert store.queue_health_alerts(targets=["hook"], after=6 * 3600, now=START) == []
    w.deliverer.deliver()
    assert "recovered" in w.hook.hooks[1].json["title"]
    assert len(w.hook.hooks) == 2


@dataclass
class Inbox:
    """A channel that is not Apprise: the drain loop needs only the Channel protocol."""

    name: str
    flavour: str
    refusal: SendResult | None = None
    display_url: str = "inbox://desk"
    received: list[Message] = field(default_factory=list)

    def send(self, message: Message) -> SendResult:
        if self.refusal is not None:
            return self.refusal
        self.received.append(message)
        return SendResult.sent()


@pytest.mark.parametrize(
    ("flavour", "refusal", "counts", "log_line"),
    [
        ("slack", None, {"sent": 1}, None),
        (
            "text",
            SendResult.failed("mailbox full"),
            {"pending": 1},
            "retry in 60s: target 'hook' (inbox://desk): mailbox full",
        ),
        (
            "email",
            SendResult.failed("address rejected", permanent=True),
            {"failed": 1},
            "after 1 attempts since 2026-11-26T06:00:00+00:00: target 'hook' (inbox://desk): address rejected",
        ),
    ],
)
def test_any_channel_renders_in_its_flavour_and_a_permanent_failure_gives_up_at_once(
    store: Store,
    servers: tuple[SMTPTestServer, WebhookReceiver],
    caplog: pytest.LogCaptureFixture,
    flavour: str,
    refusal: SendResult | None,
    counts: dict[str, int],
    log_line: str | None,
) -> None:
    w = make_world(store, *servers)
    inbox = Inbox("hook", flavour, refusal)
    d = w.deliverer
    d.reconfigure({"hook": inbox}, d.renderer, d.settings, d.policies)
    w.publish(1, "w")
    with caplog.at_level(logging.WARNING, logger="monitor.deliver"):
        d.deliver()
    assert store.alert_counts() == counts
    if log_line is None:
        (message,) = inbox.received
        assert message.body_format == {"slack": "markdown", "email": "html", "text": "text"}[flavour]
        assert message.title == "Watchlist: w"  # the Slack flavour's title
    else:
        assert inbox.received == []
        assert any(log_line in r.getMessage() for r in caplog.records), caplog.text
    assert w.hook.hooks == []  # the Apprise target of the same name was replaced


def test_feed_failing_less_than_threshold_is_not_alerted(store: Store) -> None:
    store.sync_feeds([FeedConfigRow("wire", "http://127.0.0.1/wire.xml", 600, "en")], now=START)
    fid = store.feeds()[0].id
    poll_failed(store, fid, since=START - dt.timedelta(hours=5), reason="http_500", message="boom")
    assert store.queue_health_alerts(targets=["hook"], after=6 * 3600, now=START) == []


@pytest.mark.parametrize(
    ("path", "secrets"),
    [
        ("/hooks/a1b2c3d4e5f6g7h8i9?+Authorization=Bearer%20eyJhbGciOiJIUzI1NiJ9x", ("a1b2c3d4e5f6g7h8i9", "eyJhbGci")),
        ("/hook/qwertyuiopasdf?+X-Api-Key=k3y-0123456789", ("qwertyuiopasdf", "k3y-0123456789")),
    ],
)
def test_outbox_error_and_logs_show_webhook_secrets_masked(
    store: Store,
    servers: tuple[SMTPTestServer, WebhookReceiver],
    caplog: pytest.LogCaptureFixture,
    path: str,
    secrets: tuple[str, ...],
) -> None:
    for name in (None, "apprise", "urllib3", "monitor"):
        caplog.set_level(logging.DEBUG, logger=name)
    w = make_world(store, *servers)
    w.hook.status = 500
    url = f"json://127.0.0.1:{w.hook.port}{path}"
    channels = load_channels({"hook": url}, timeout=5)
    d = w.deliverer
    d.reconfigure(channels, d.renderer, d.settings, d.policies)
    w.publish(1, "w")
    assert d.deliver().retrying == 1
    w.clock.now += dt.timedelta(hours=2)  # past give_up_after: the row fails for good
    assert d.deliver().given_up == 1
    assert len(w.hook.hooks) == 2  # both rounds really reached the receiver
    with store.transaction() as conn:
        [(target, error)] = conn.execute(select(Alert.target, Alert.last_error).where(Alert.status == "failed")).all()
    assert target == "hook" and error is not None
    for secret in secrets:
        assert secret not in error
        assert secret not in caplog.text
    assert error.startswith(f"target 'hook' ({channels['hook'].display_url}): delivery failed (failure): ")
    assert channels["hook"].display_url.startswith(f"json://127.0.0.1:{w.hook.port}/****/****?+")
    assert "GAVE UP" in caplog.text and "/****/****" in caplog.text


def _refuse_delivery_log(store: Store, refuse: bool) -> None:
    """Make the database refuse (or accept again) the write that records a send, as a
    database that went away between the send and its record would."""
    from sqlalchemy import text

    with store.transaction() as conn:
        if store.dialect == "sqlite":
            conn.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON deliveries "
                    "BEGIN SELECT RAISE(ABORT, 'connection lost'); END"
                )
                if refuse
                else text("DROP TRIGGER refuse")
            )
        elif refuse:
            conn.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'connection lost'; END $$"
                    " LANGUAGE plpgsql"
                )
            )
            conn.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON deliveries EXECUTE FUNCTION refuse()"))
        else:
            conn.execute(text("DROP TRIGGER refuse ON deliveries"))
            conn.execute(text("DROP FUNCTION refuse()"))


def test_a_send_the_database_did_not_record_is_recorded_later_never_sent_again(
    store: Store, servers: tuple[SMTPTestServer, WebhookReceiver]
) -> None:
    from monitor.errors import StoreError

    w = make_world(store, *servers)
    w.publish(1, "pact")
    _refuse_delivery_log(store, True)
    with pytest.raises(StoreError, match="connection lost"):
        w.deliverer.deliver()
    assert len(w.hook.hooks) == 1  # the target has it
    _refuse_delivery_log(store, False)
    w.clock.now += dt.timedelta(minutes=5)  # past any retry time
    assert w.deliverer.deliver().messages == 0
    w.clock.now += dt.timedelta(minutes=5)
    assert w.deliverer.deliver().messages == 0
    assert len(w.hook.hooks) == 1  # recorded, not sent again
    with store.transaction() as conn:
        assert conn.execute(select(Alert.status)).scalars().all() == ["sent"]


def test_every_try_of_an_alert_carries_the_same_idempotency_key(
    store: Store, servers: tuple[SMTPTestServer, WebhookReceiver]
) -> None:
    w = make_world(store, *servers)
    w.publish(1, "pact")
    w.hook.status = 500
    assert w.deliverer.deliver().retrying == 1
    w.hook.status = 200
    w.clock.now += dt.timedelta(minutes=5)
    assert w.deliverer.deliver().sent == 1
    w.publish(2, "pact")
    assert w.deliverer.deliver().sent == 1
    first, retry, other = (h.headers.get("idempotency-key") for h in w.hook.hooks)
    assert first and first.startswith("news-monitor-")
    assert retry == first  # a receiver that honours the key drops a repeat
    assert other and other != first
