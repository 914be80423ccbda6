"""The pure polling policy: backoff, Retry-After, 410, redirect adoption, scheduling, cadence."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from monitor.backoff import backoff_delay
from monitor.config.model import parse_config
from monitor.ingest.schedule import (
    KEEP,
    FeedSnapshot,
    FeedUpdate,
    PollPolicy,
    after_deferred,
    after_failure,
    after_success,
    after_unchanged,
    learned_interval,
)

NOW = dt.datetime(2026, 11, 26, 12, 0, tzinfo=dt.UTC)
POLICY = PollPolicy(jitter=30.0, backoff_max=86400.0)


def feed(**kw: object) -> FeedSnapshot:
    base = FeedSnapshot(
        id=1,
        name="f",
        url="http://a/feed",
        fetch_url="http://a/feed",
        language=None,
        interval_s=600.0,
        enabled=True,
        state="ok",
        title=None,
        etag=None,
        last_modified=None,
        body_hash=None,
        redirect_to=None,
        redirect_seen=0,
        initialized=True,
        consecutive_failures=0,
        failing_since=None,
        last_poll_at=None,
        last_success_at=None,
        last_error_at=None,
        last_status=None,
        last_error=None,
        last_error_reason=None,
        total_polls=0,
        total_failures=0,
        entries_seen=0,
        learned_interval_s=None,
        next_poll_at=NOW,
        health_alerted_at=None,
    )
    return dataclasses.replace(base, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (0, 0.5, 0.0),
        (1, 0.0, 30.0),  # half of base
        (1, 1.0, 60.0),  # full base
        (2, 1.0, 120.0),
        (3, 0.0, 120.0),
        (30, 1.0, 3600.0),  # capped
        (10_000, 1.0, 3600.0),  # no overflow
    ],
)
def test_backoff_delay(attempt: int, rand: float, expected: float) -> None:
    assert backoff_delay(attempt, base=60, cap=3600, rand=lambda: rand) == pytest.approx(expected)


def test_success_schedules_interval_plus_jitter_and_resets_failures() -> None:
    f = feed(consecutive_failures=4, failing_since=NOW - dt.timedelta(hours=3), state="backoff")
    ch = after_success(
        f,
        now=NOW,
        http_status=200,
        etag='"x"',
        last_modified=None,
        body_hash="h",
        permanent_redirect=None,
        title="T",
        new_entries=3,
        policy=POLICY,
        rand=lambda: 0.5,
    )
    assert ch.state == "ok"
    assert ch.consecutive_failures == 0
    assert ch.failing_since is None
    assert ch.next_poll_at == NOW + dt.timedelta(seconds=615)
    assert ch.entries_seen == 3
    assert ch.initialized is True
    assert ch.title == "T" and ch.etag == '"x"' and ch.body_hash == "h"


@pytest.mark.parametrize(
    ("failures", "rand", "retry_after", "expected_delay"),
    [
        (0, 1.0, None, 600),  # first failure: one interval
        (1, 1.0, None, 1200),
        (5, 1.0, None, 19200),
        (20, 1.0, None, 86400),  # capped at 24 h: never stops polling for good
        (0, 1.0, 3600, 3600),  # Retry-After longer than the backoff wins
        (3, 1.0, 10, 4800),  # shorter Retry-After does not shorten the backoff
        (0, 1.0, 10**9, 86400),  # absurd Retry-After is capped too
    ],
)
def test_failure_backs_off(
    failures: int, rand: float, retry_after: float | None, expected_delay: float
) -> None:
    f = feed(consecutive_failures=failures)
    ch = after_failure(
        f,
        now=NOW,
        reason="http_500",
        message="boom",
        http_status=500,
        retry_after=retry_after,
        policy=POLICY,
        rand=lambda: rand,
    )
    assert ch.state == "backoff"
    assert ch.consecutive_failures == failures + 1
    assert ch.next_poll_at == NOW + dt.timedelta(seconds=expected_delay)
    assert ch.failing_since == NOW


def test_failing_since_is_kept_across_failures() -> None:
    since = NOW - dt.timedelta(hours=5)
    ch = after_failure(
        feed(consecutive_failures=3, failing_since=since),
        now=NOW,
        reason="timeout",
        message="t",
        http_status=None,
        retry_after=None,
        policy=POLICY,
    )
    assert ch.failing_since == since


def test_gone_disables() -> None:
    ch = after_failure(
        feed(), now=NOW, reason="gone", message="410", http_status=410, retry_after=None, policy=POLICY
    )
    assert ch.state == "disabled"


@pytest.mark.parametrize(
    ("redirect_to", "seen", "new", "expected"),
    [
        (None, 0, "http://b/feed", {"redirect_to": "http://b/feed", "redirect_seen": 1}),
        (
            "http://b/feed",
            1,
            "http://b/feed",
            {"fetch_url": "http://b/feed", "redirect_to": None, "redirect_seen": 0},
        ),
        ("http://c/feed", 1, "http://b/feed", {"redirect_to": "http://b/feed", "redirect_seen": 1}),
        ("http://b/feed", 1, None, {"redirect_to": None, "redirect_seen": 0}),  # not twice IN A ROW
    ],
)
def test_permanent_redirect_adopted_after_two_polls_in_a_row(
    redirect_to: str | None, seen: int, new: str | None, expected: dict[str, object]
) -> None:
    ch = after_unchanged(
        feed(redirect_to=redirect_to, redirect_seen=seen),
        now=NOW,
        http_status=304,
        etag=None,
        last_modified=None,
        permanent_redirect=new,
        policy=POLICY,
    )
    for key, value in expected.items():
        assert getattr(ch, key) == value
    if "fetch_url" not in expected:
        assert ch.fetch_url is KEEP  # the URL polled stays as it is


def test_unchanged_keeps_validators_when_304_has_none() -> None:
    ch = after_unchanged(
        feed(etag='"e1"', last_modified="Wed, 01 Jan 2025 00:00:00 GMT", body_hash="h"),
        now=NOW,
        http_status=304,
        etag=None,
        last_modified=None,
        permanent_redirect=None,
        policy=POLICY,
    )
    assert ch.etag == '"e1"'
    assert ch.last_modified == "Wed, 01 Jan 2025 00:00:00 GMT"


# ------------------------------------------------------------------- learned cadence

HOUR = 3600.0


def story_times(count: int, every: float, *, newest_age: float = 0.0) -> list[dt.datetime]:
    """``count`` publication times ``every`` seconds apart, the newest ``newest_age`` ago."""
    return [NOW - dt.timedelta(seconds=newest_age + i * every) for i in range(count)]


@pytest.mark.parametrize(
    ("published", "expected"),
    [
        (story_times(25, 5 * 60), 600.0),  # busy: a story every 5 min -> the configured 10 min
        (story_times(24, 2 * HOUR, newest_age=2 * HOUR), 1800.0),  # every 2 h -> polled 4 times per gap
        (story_times(20, 12 * HOUR), HOUR),  # twice a day -> capped at max_interval
        (story_times(25, 60, newest_age=30 * 86400), HOUR),  # stopped publishing a month ago
        (story_times(2, 12 * HOUR), None),  # too few dated stories to learn from
        ([NOW - dt.timedelta(hours=5)] * 25, None),  # one date on every item (a build date): no cadence
        ([NOW + dt.timedelta(days=i) for i in range(1, 30)], None),  # only future dates: ignored
    ],
    ids=["busy", "two-hourly", "twice-a-day", "gone-quiet", "too-few", "one-date", "future"],
)
def test_learned_interval(published: list[dt.datetime], expected: float | None) -> None:
    assert learned_interval(published, now=NOW, interval=600.0, max_interval=HOUR) == expected


def test_learned_interval_never_undercuts_a_long_configured_interval() -> None:
    # configured every 2 h, max_interval 1 h: the configured interval wins both ways
    assert learned_interval(story_times(25, 60), now=NOW, interval=2 * HOUR, max_interval=HOUR) == 2 * HOUR
    assert learned_interval(story_times(25, 86400), now=NOW, interval=2 * HOUR, max_interval=HOUR) == 2 * HOUR


def success(f: FeedSnapshot, policy: PollPolicy, published: list[dt.datetime]) -> FeedUpdate:
    return after_success(
        f,
        now=NOW,
        http_status=200,
        etag=None,
        last_modified=None,
        body_hash="h",
        permanent_redirect=None,
        title=None,
        new_entries=0,
        policy=policy,
        rand=lambda: 0.0,
        published=published,
    )


def test_a_quiet_feed_is_polled_less_often_and_a_busy_one_at_its_interval() -> None:
    quiet = success(feed(), POLICY, story_times(20, 12 * HOUR))
    assert quiet.learned_interval_s == HOUR
    assert quiet.next_poll_at == NOW + dt.timedelta(hours=1)
    busy = success(feed(learned_interval_s=HOUR), POLICY, story_times(25, 60))
    assert busy.learned_interval_s == 600.0
    assert busy.next_poll_at == NOW + dt.timedelta(seconds=600)


def test_the_learned_interval_also_schedules_unchanged_polls() -> None:
    ch = after_unchanged(
        feed(learned_interval_s=HOUR),
        now=NOW,
        http_status=304,
        etag=None,
        last_modified=None,
        permanent_redirect=None,
        policy=POLICY,
        rand=lambda: 0.0,
    )
    assert ch.next_poll_at == NOW + dt.timedelta(hours=1)


@pytest.mark.parametrize(
    "policy",
    [PollPolicy(learn_cadence=False), PollPolicy(fixed_feeds=frozenset({"f"}))],
    ids=["off-globally", "off-for-this-feed"],
)
def test_learning_can_be_turned_off(policy: PollPolicy) -> None:
    f = feed(learned_interval_s=HOUR)  # learned before learning was turned off
    ch = success(f, policy, story_times(20, 12 * HOUR))
    assert ch.learned_interval_s is None
    assert ch.next_poll_at == NOW + dt.timedelta(seconds=600)


def test_a_raised_configured_interval_beats_an_older_learned_one() -> None:
    assert feed(interval_s=7200.0, learned_interval_s=HOUR).effective_interval == 7200.0


def test_policy_from_config() -> None:
    config = parse_config(
        "poll: {max_interval: 2h, learn_cadence: true, parse_timeout: 5s, jitter: 0s}\n"
        "feeds:\n"
        "  - {name: a, url: 'https://a.example/feed'}\n"
        "  - {name: b, url: 'https://b.example/feed', learn_cadence: false}\n"
    )[0]
    policy = config.poll_policy()
    assert (policy.max_interval, policy.parse_timeout, policy.jitter) == (7200.0, 5.0, 0.0)
    assert policy.learns(feed(name="a")) and not policy.learns(feed(name="b"))
    off = parse_config(
            "poll: {learn_cadence: false}\nfeeds:\n"
            "  - {name: a, url: 'https://a.example/feed'}\n"
            "  - {name: b, url: 'https://b.example/feed', learn_cadence: true}\n"
        )[0].poll_policy()
    assert not off.learns(feed(name="a")) and off.learns(feed(name="b"))


def test_deferred_feed_waits_for_the_host_without_counting_a_failure() -> None:
    f = feed(consecutive_failures=2, state="backoff", total_polls=7)
    ch = after_deferred(f, now=NOW, wait=120.0, policy=POLICY, rand=lambda: 0.5)
    assert ch == FeedUpdate(next_poll_at=NOW + dt.timedelta(seconds=135))  # nothing else changes


@pytest.mark.parametrize(
    ("body_hash", "initialized"),
    [("h", True), (None, KEEP)],
    ids=["parsed-before", "never-parsed"],
)
def test_only_a_feed_parsed_before_is_initialized_by_a_304(body_hash: str | None, initialized: object) -> None:
    ch = after_unchanged(
        feed(body_hash=body_hash, initialized=False),
        now=NOW,
        http_status=304,
        etag=None,
        last_modified=None,
        permanent_redirect=None,
        policy=POLICY,
    )
    assert ch.initialized is initialized
