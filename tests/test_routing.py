"""The pure delivery planner: digests, quiet hours, urgent watchlists, rate limits, grouping."""

from __future__ import annotations

import datetime as dt

import pytest

from monitor.delivery.routing import (
    ClaimedAlert,
    QuietHours,
    RateLimit,
    TargetPolicy,
    WatchlistPolicy,
    next_digest,
    plan,
    validate_schedule,
    window_room,
)

UTC = dt.UTC


def at(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s).astimezone(UTC)


def row(i: int, watchlist: str = "w", *, story: int | None = None, fold: bool = False) -> ClaimedAlert:
    sid = story if story is not None else i
    return ClaimedAlert(
        id=i,
        kind="story",
        story_id=sid,
        cluster_id=sid,
        watchlist=watchlist,
        target="mail",
        attempts=1,
        fold=fold,
        created_at=at("2026-11-26T06:00:00+00:00"),
        title=f"Story {sid}",
        link=None,
        summary="",
        published_at=at("2026-11-26T06:00:00+00:00"),
        source="feed",
    )


@pytest.mark.parametrize(
    ("schedule", "tz", "now", "expected"),
    [
        ("0 8 * * *", "Europe/Paris", "2026-11-26T06:30:00+00:00", "2026-11-26T07:00:00+00:00"),  # 08:00 CET
        (
            "0 8 * * *",
            "Europe/Paris",
            "2026-11-26T07:00:00+00:00",
            "2026-11-27T07:00:00+00:00",
        ),  # strictly after
        ("0 8 * * *", "Europe/Paris", "2026-07-01T05:00:00+00:00", "2026-07-01T06:00:00+00:00"),  # CEST
        ("30 18 * * 1-5", "UTC", "2026-11-28T12:00:00+00:00", "2026-11-30T18:30:00+00:00"),  # Sat -> Mon
        ("0 9 * * 0", "UTC", "2026-11-26T12:00:00+00:00", "2026-11-29T09:00:00+00:00"),  # 0 = Sunday
        ("0 9 * * 7", "UTC", "2026-11-26T12:00:00+00:00", "2026-11-29T09:00:00+00:00"),  # 7 = Sunday
        ("0 9 * * 5-7", "UTC", "2026-11-26T12:00:00+00:00", "2026-11-27T09:00:00+00:00"),  # Fri-Sun
        ("0 9 * * sat", "UTC", "2026-11-26T12:00:00+00:00", "2026-11-28T09:00:00+00:00"),
    ],
)
def test_next_digest(schedule: str, tz: str, now: str, expected: str) -> None:
    assert next_digest(schedule, tz, at(now)) == at(expected)


@pytest.mark.parametrize("bad", ["every morning", "61 8 * * *", "0 8 * *", "0 8 * * 8", "0 8 * * 5-2"])
def test_bad_schedule(bad: str) -> None:
    with pytest.raises(ValueError, match="is not a crontab schedule"):
        validate_schedule(bad)


QUIET = QuietHours(dt.time(22, 0), dt.time(7, 0), "Europe/Paris")


@pytest.mark.parametrize(
    ("now", "inside", "ends"),
    [
        ("2026-11-26T21:30:00+00:00", True, "2026-11-27T06:00:00+00:00"),  # 22:30 Paris
        ("2026-11-26T05:59:00+00:00", True, "2026-11-26T06:00:00+00:00"),  # 06:59 Paris
        ("2026-11-26T06:00:00+00:00", False, None),  # 07:00 Paris: over
        ("2026-11-26T20:59:00+00:00", False, None),  # 21:59 Paris
        ("2026-03-28T22:30:00+00:00", True, "2026-03-29T05:00:00+00:00"),  # DST night: 07:00 CEST
    ],
)
def test_quiet_hours_cross_midnight_and_dst(now: str, inside: bool, ends: str | None) -> None:
    assert QUIET.contains(at(now)) is inside
    if ends:
        assert QUIET.ends_after(at(now)) == at(ends)


def test_one_story_several_watchlists_is_one_message() -> None:
    rows = [row(1, "pact", story=10), row(2, "troops", story=10), row(3, "pact", story=11)]
    p = plan(TargetPolicy("mail"), rows, now=at("2026-11-26T12:00:00+00:00"), watchlists={})
    assert [[r.id for r in m.rows] for m in p.messages] == [[1, 2], [3]]
    assert not any(m.digest for m in p.messages) and p.deferrals == []


def test_digest_watchlist_rows_wait_for_the_schedule_then_go_out_as_one_digest() -> None:
    policies = {"daily": WatchlistPolicy(mode="digest", schedule="0 8 * * *", timezone="Europe/Paris")}
    now = at("2026-11-26T06:30:00+00:00")
    p = plan(
        TargetPolicy("mail"), [row(1, "daily"), row(2, "daily"), row(3, "live")], now=now, watchlists=policies
    )
    assert [[r.id for r in m.rows] for m in p.messages] == [[3]]
    (d,) = p.deferrals
    assert [r.id for r in d.rows] == [1, 2] and d.fold and d.until == at("2026-11-26T07:00:00+00:00")
    # At 08:00 Paris they come back folded: one digest.
    later = plan(
        TargetPolicy("mail"),
        [row(1, "daily", fold=True), row(2, "daily", fold=True)],
        now=d.until,
        watchlists=policies,
    )
    (msg,) = later.messages
    assert msg.digest and [r.id for r in msg.rows] == [1, 2] and later.deferrals == []


def test_quiet_hours_hold_all_but_urgent() -> None:
    policies = {"urgent": WatchlistPolicy(urgent=True)}
    target = TargetPolicy("mail", quiet_hours=QUIET)
    now = at("2026-11-26T23:00:00+00:00")
    p = plan(target, [row(1, "normal"), row(2, "urgent")], now=now, watchlists=policies)
    assert [[r.id for r in m.rows] for m in p.messages] == [[2]]
    (d,) = p.deferrals
    assert [r.id for r in d.rows] == [1] and d.fold and d.reason == "quiet hours"
    assert d.until == at("2026-11-27T06:00:00+00:00")
    # When the quiet hours end, what was held goes out as one digest.
    after = plan(
        target, [row(1, "normal", fold=True), row(4, "normal", fold=True)], now=d.until, watchlists={}
    )
    (msg,) = after.messages
    assert msg.digest and len(msg.rows) == 2


@pytest.mark.parametrize(
    ("already_sent", "n_stories", "singles", "digest_size", "deferred"),
    [
        (0, 3, 3, 0, 0),  # room for all
        (0, 5, 2, 3, 0),  # room 3: two singles + one digest with the overflow
        (2, 4, 0, 4, 0),  # room 1: everything in one digest
        (3, 2, 0, 0, 2),  # no room: held, folded, until the window frees
    ],
)
def test_rate_limit_folds_overflow_never_drops(
    already_sent: int, n_stories: int, singles: int, digest_size: int, deferred: int
) -> None:
    now = at("2026-11-26T12:00:00+00:00")
    target = TargetPolicy("mail", rate_limit=RateLimit(3, 600))
    sent = [now - dt.timedelta(minutes=9 - i) for i in range(already_sent)]
    rows = [row(i) for i in range(1, n_stories + 1)]
    p = plan(target, rows, now=now, watchlists={}, sent_at=sent)
    assert sum(not m.digest for m in p.messages) == singles
    assert sum(len(m.rows) for m in p.messages if m.digest) == digest_size
    assert sum(len(d.rows) for d in p.deferrals) == deferred
    handled = {r.id for m in p.messages for r in m.rows} | {r.id for d in p.deferrals for r in d.rows}
    assert handled == {r.id for r in rows}  # nothing dropped
    if deferred:
        assert p.deferrals[0].until == sent[0] + dt.timedelta(seconds=600)
        assert p.deferrals[0].fold


def test_window_room_ignores_old_sends() -> None:
    now = at("2026-11-26T12:00:00+00:00")
    sent = [now - dt.timedelta(minutes=m) for m in (1, 5, 11, 30)]
    room, frees = window_room(RateLimit(3, 600), sent, now)
    assert room == 1 and frees == sent[1] + dt.timedelta(seconds=600)
