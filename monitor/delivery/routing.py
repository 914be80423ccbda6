"""Delivery planning: which claimed alerts go out now, how, and which wait (pure).

(APScheduler's cron trigger is used here only as a calendar, to compute digest times.)

The deliverer claims due outbox rows and asks :func:`plan` what to do with the rows of
one target. The answer is a list of messages to send and a list of deferrals, decided
from the watchlists' modes, the target's quiet hours and rate limit, and a clock value
handed in (so digests, quiet hours and rate limits are tested with plain datetimes).

Rules, in order:

1. A row of a ``mode: digest`` watchlist that is not yet folded waits for the
   watchlist's next digest time, folded.
2. During the target's quiet hours, every row of a non-``urgent`` watchlist waits for
   the end of the quiet hours, folded: held, never dropped.
3. Folded rows that are due go out as ONE digest message per target, grouped by
   watchlist; unfolded rows go out as one message per story, naming every watchlist of
   that story for this target.
4. Rate limit (at most N messages per window, counted in the database's delivery log):
   when the planned messages exceed what is left, the overflow is folded into one
   digest message instead of being dropped; when nothing is left, everything waits,
   folded, until the window has room again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

from monitor.delivery.render import OtherReport
from monitor.matching.matcher import Hit

AlertKind = Literal["story", "surge", "feed_down", "feed_up"]
#: The kinds that announce a story (and follow their watchlist's mode); the others are feed health.
STORY_KINDS: tuple[AlertKind, ...] = ("story", "surge")
HEALTH_WATCHLIST = "@feed-health"


@dataclass(frozen=True, slots=True)
class ClaimedAlert:
    """One claimed outbox row, with what is needed to plan and render it."""

    id: int
    kind: AlertKind
    story_id: int | None
    cluster_id: int | None
    watchlist: str
    target: str
    attempts: int
    fold: bool
    created_at: dt.datetime
    title: str
    link: str | None
    summary: str
    published_at: dt.datetime
    source: str
    terms: tuple[str, ...] = ()
    hits: tuple[Hit, ...] = ()
    also_reported_by: tuple[OtherReport, ...] = ()  # the same story in other feeds
    outlets: tuple[str, ...] = ()  # surge: the outlets counted, in the order they told it
    within: float = 0.0  # surge: seconds after the cluster's first story they were counted in
    claim: int = 0  # the claim's fencing token (with the worker's id): every mark checks it

    @property
    def group_key(self) -> tuple[str, int]:
        """Rows with the same key are one story (cluster) for one target: one message."""
        return (self.kind, self.cluster_id if self.cluster_id is not None else -self.id)


@dataclass(frozen=True, slots=True)
class QuietHours:
    """A daily window, e.g. 22:00-07:00 in Europe/Paris (it may cross midnight)."""

    start: dt.time
    end: dt.time
    timezone: str = "UTC"

    def contains(self, now: dt.datetime) -> bool:
        local = now.astimezone(ZoneInfo(self.timezone)).time().replace(tzinfo=None)
        if self.start <= self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def ends_after(self, now: dt.datetime) -> dt.datetime:
        """The first end of the window strictly after ``now`` (DST-safe wall-clock time)."""
        tz = ZoneInfo(self.timezone)
        local = now.astimezone(tz)
        for days in range(0, 3):
            day = (local + dt.timedelta(days=days)).date()
            candidate = dt.datetime.combine(day, self.end, tzinfo=tz)
            if candidate > now:
                return candidate.astimezone(dt.UTC)
        raise AssertionError("unreachable: an end time exists within two days")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` messages per ``per`` seconds to one target."""

    count: int
    per: float


@dataclass(frozen=True, slots=True)
class TargetPolicy:
    name: str
    quiet_hours: QuietHours | None = None
    rate_limit: RateLimit | None = None


@dataclass(frozen=True, slots=True)
class WatchlistPolicy:
    mode: Literal["instant", "digest"] = "instant"
    schedule: str = "0 8 * * *"  # crontab, in ``timezone``
    timezone: str = "UTC"
    urgent: bool = False


@dataclass(frozen=True, slots=True)
class PlannedMessage:
    target: str
    digest: bool
    rows: tuple[ClaimedAlert, ...]


@dataclass(frozen=True, slots=True)
class Deferral:
    rows: tuple[ClaimedAlert, ...]
    until: dt.datetime
    fold: bool
    reason: str


@dataclass(slots=True)
class Plan:
    messages: list[PlannedMessage] = field(default_factory=list)
    deferrals: list[Deferral] = field(default_factory=list)


_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _crontab_days(field: str) -> str:
    """A crontab day-of-week field (0 or 7 = Sunday) as APScheduler day names.

    APScheduler 3's ``CronTrigger.from_crontab`` counts 0 = Monday, so ``1-5`` would
    mean Tuesday to Saturday there; users write crontab, where it is Monday to Friday.
    """
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.split(","):
        base, _, step_s = part.partition("/")
        step = int(step_s) if step_s else 1
        if base == "*":
            lo, hi = 0, 6
        elif "-" in base:
            a, b = base.split("-", 1)
            lo, hi = _day_number(a), _day_number(b)
            if hi == 0 and lo > 0:  # "5-7": Friday to Sunday
                hi = 7
        else:
            lo = hi = _day_number(base)
        if lo > hi or step < 1:
            raise ValueError(f"bad day-of-week range {part!r}")
        days.update(d % 7 for d in range(lo, hi + 1, step))
    return ",".join(_DAY_NAMES[d] for d in sorted(days))


def _day_number(token: str) -> int:
    token = token.strip().lower()
    if token.isdigit():
        n = int(token)
        if not 0 <= n <= 7:
            raise ValueError(f"day of week {token!r} is not 0-7")
        return 0 if n == 7 else n
    if token[:3] in _DAY_NAMES:
        return _DAY_NAMES.index(token[:3])
    raise ValueError(f"unknown day of week {token!r}")


def crontab_trigger(schedule: str, timezone: str = "UTC") -> CronTrigger:
    """An APScheduler trigger for a standard 5-field crontab line (used as a calendar only)."""
    fields = schedule.split()
    if len(fields) != 5:
        raise ValueError(f"wrong number of fields; got {len(fields)}, expected 5")
    minute, hour, day, month, dow = fields
    return CronTrigger(
        minute=minute,
        hour=hour,
        day=day,
        month=month,
        day_of_week=_crontab_days(dow),
        timezone=ZoneInfo(timezone),
    )


def next_digest(schedule: str, timezone: str, now: dt.datetime) -> dt.datetime:
    """Next time a crontab schedule fires strictly after ``now`` (UTC)."""
    trigger = crontab_trigger(schedule, timezone)
    fire: dt.datetime | None = trigger.get_next_fire_time(None, now + dt.timedelta(seconds=1))
    if fire is None:  # pragma: no cover - a crontab always fires again
        raise ValueError(f"schedule {schedule!r} never fires")
    return fire.astimezone(dt.UTC)


def validate_schedule(schedule: str) -> None:
    """Raise ValueError with a readable message for a bad crontab."""
    try:
        crontab_trigger(schedule)
    except ValueError as exc:
        raise ValueError(f"{schedule!r} is not a crontab schedule (e.g. '0 8 * * *'): {exc}") from None


def window_room(
    policy: RateLimit | None, sent_at: Sequence[dt.datetime], now: dt.datetime
) -> tuple[int, dt.datetime]:
    """Messages still allowed now, and when the oldest message leaves the window."""
    if policy is None:
        return 1 << 30, now
    window_start = now - dt.timedelta(seconds=policy.per)
    recent = sorted(t for t in sent_at if t > window_start)
    room = max(0, policy.count - len(recent))
    frees_at = recent[0] + dt.timedelta(seconds=policy.per) if recent else now
    return room, frees_at


def plan(
    target: TargetPolicy,
    rows: Sequence[ClaimedAlert],
    *,
    now: dt.datetime,
    watchlists: Mapping[str, WatchlistPolicy],
    sent_at: Sequence[dt.datetime] = (),
) -> Plan:
    """What to do now with the claimed rows of one target (see the module docstring)."""
    result = Plan()
    ready: list[ClaimedAlert] = []
    to_digest: dict[dt.datetime, list[ClaimedAlert]] = {}
    for row in rows:
        wl = watchlists.get(row.watchlist, WatchlistPolicy())
        if row.kind in STORY_KINDS and wl.mode == "digest" and not row.fold:
            to_digest.setdefault(next_digest(wl.schedule, wl.timezone, now), []).append(row)
        else:
            ready.append(row)
    for until, held in to_digest.items():
        result.deferrals.append(Deferral(tuple(held), until, fold=True, reason="digest"))

    quiet = target.quiet_hours
    if quiet is not None and quiet.contains(now):
        urgent = [r for r in ready if watchlists.get(r.watchlist, WatchlistPolicy()).urgent]
        held = [r for r in ready if r not in urgent]
        if held:
            result.deferrals.append(
                Deferral(tuple(held), quiet.ends_after(now), fold=True, reason="quiet hours")
            )
        ready = urgent

    singles: dict[tuple[str, int], list[ClaimedAlert]] = {}
    folded: list[ClaimedAlert] = []
    for row in ready:
        if row.fold:
            folded.append(row)
        else:
            singles.setdefault(row.group_key, []).append(row)
    messages = [PlannedMessage(target.name, False, tuple(g)) for g in singles.values()]
    if folded:
        messages.append(PlannedMessage(target.name, True, tuple(folded)))
    if not messages:
        return result

    room, frees_at = window_room(target.rate_limit, sent_at, now)
    if len(messages) <= room:
        result.messages.extend(messages)
    elif room == 0:
        every = tuple(r for m in messages for r in m.rows)
        result.deferrals.append(Deferral(every, frees_at, fold=True, reason="rate limit"))
    else:
        keep = messages[: room - 1]
        overflow = tuple(r for m in messages[room - 1 :] for r in m.rows)
        result.messages.extend(keep)
        result.messages.append(PlannedMessage(target.name, True, overflow))
    return result
