"""Draining the outbox: claim, plan, render, send, mark — at least once, almost exactly once.

Each outbox row is one (story cluster, watchlist, target), or one feed-health event for
one target. The deliverer claims due rows with a lease, asks :func:`routing.plan` what
to do with each target's rows (send one message per story naming all its watchlists,
fold into a digest, or hold for a digest time, quiet hours or a full rate window),
renders each message in the flavour of the target's channel, sends it through the
channel (the :class:`~monitor.delivery.channels.Channel` protocol: no transport type is
known here), and marks the rows sent together with a line in the delivery log. A failed
send puts the rows back to ``pending`` with exponential backoff and jitter; past
``delivery.give_up_after``, or at once when the channel says the failure is permanent,
they are marked ``failed`` and logged loudly.

The guarantee (README, "Delivery"): no alert is lost — rows are written in the same
transaction as their story, and a row is only ``sent`` after the target accepted it.
A duplicate is possible only if the process dies between a target accepting a message
and the ``sent`` commit (milliseconds); then the claim is released and the row is sent
again. E-mail and webhooks have no idempotency key, so this is the honest best.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import random
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from monitor.backoff import backoff_delay
from monitor.config.model import Config, DeliverySettings, parse_quiet_hours, parse_rate
from monitor.delivery.channels import Channel, Message, failure_message
from monitor.delivery.render import AlertStory, OtherReport, Renderer
from monitor.delivery.routing import (
    STORY_KINDS,
    ClaimedAlert,
    PlannedMessage,
    QuietHours,
    RateLimit,
    TargetPolicy,
    WatchlistPolicy,
    plan,
)
from monitor.errors import StoreError
from monitor.storage.engine import utcnow
from monitor.storage.store import Store

log = logging.getLogger("monitor.deliver")

MAX_ROUNDS = 50  # claims per deliver() call, so one call cannot run for ever under a flood
ROUND_RETRY = 30.0  # seconds before alerts of a round that failed are tried again
HEALTH_LABEL = "feed health"


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    given_up: int = 0
    messages: int = 0
    held: int = 0

    def __add__(self, other: DeliveryReport) -> DeliveryReport:
        return DeliveryReport(
            self.sent + other.sent,
            self.retrying + other.retrying,
            self.given_up + other.given_up,
            self.messages + other.messages,
            self.held + other.held,
        )


@dataclass(frozen=True, slots=True)
class Policies:
    """Routing settings taken from the config: per target and per watchlist."""

    targets: Mapping[str, TargetPolicy] = field(default_factory=dict)
    watchlists: Mapping[str, WatchlistPolicy] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config) -> Policies:
        targets: dict[str, TargetPolicy] = {}
        for name, t in config.targets.items():
            quiet = None
            if t.quiet_hours:
                start, end = parse_quiet_hours(t.quiet_hours)
                quiet = QuietHours(start, end, t.timezone or config.timezone)
            rate = None
            if t.rate_limit:
                count, per = parse_rate(t.rate_limit)
                rate = RateLimit(count, per)
            targets[name] = TargetPolicy(name, quiet, rate)
        watchlists = {
            w.name: WatchlistPolicy(w.mode, w.schedule, w.timezone or config.timezone, w.urgent)
            for w in config.watchlists
        }
        return cls(targets, watchlists)


#: The other stories of each claimed alert's event cluster, by cluster id ("also reported by").
Members = Mapping[int, Sequence[OtherReport]]


def idempotency_key(rows: Sequence[ClaimedAlert]) -> str:
    """The same key for every try of the same alerts: their outbox ids and when they were
    queued (so two databases' alerts of the same ids differ)."""
    ids = ",".join(str(i) for i in sorted(r.id for r in rows))
    first = min(r.created_at for r in rows).isoformat()
    return "news-monitor-" + hashlib.sha256(f"{ids}@{first}".encode()).hexdigest()[:32]


def story_for(rows: Sequence[ClaimedAlert], members: Members | None = None) -> AlertStory:
    """One story for one target, possibly matched by several watchlists; "also reported
    by" lists the other feeds that carried it, then the other stories of its cluster.
    A surge follow-up is its own story: "now reported by N outlets: <title>", listing
    the outlets counted."""
    first = rows[0]
    if first.kind == "surge":
        return _surge_story(rows, members or {})
    watchlists: list[str] = []
    terms: list[str] = []
    highlights: list[tuple[str, int, int]] = []
    for row in rows:
        label = HEALTH_LABEL if row.kind not in STORY_KINDS else row.watchlist
        if label not in watchlists:
            watchlists.append(label)
        for term in row.terms:
            if term not in terms:
                terms.append(term)
        for hit in row.hits:
            span = (hit.field, hit.start, hit.end)
            if span not in highlights:
                highlights.append(span)
    return AlertStory(
        story_id=first.story_id or 0,
        title=first.title,
        link=first.link,
        source=first.source,
        published_at=first.published_at,
        summary=first.summary,
        watchlists=tuple(watchlists),
        matched_terms=tuple(terms),
        highlights=tuple(sorted(highlights)),
        also_reported_by=(*first.also_reported_by, *_cluster_others(first, members or {})),
    )


def _surge_story(rows: Sequence[ClaimedAlert], members: Members) -> AlertStory:
    """The follow-up of a cluster whose coverage surged: the alerted story's title and
    link, and one report per outlet counted (its first story of the cluster), in the
    order they told it."""
    first = rows[0]
    watchlists = tuple(dict.fromkeys(r.watchlist for r in rows))
    terms = tuple(dict.fromkeys(t for r in rows for t in r.terms))
    by_outlet: dict[str, OtherReport] = {}
    for m in members.get(first.cluster_id, ()) if first.cluster_id is not None else ():
        by_outlet.setdefault(m.outlet, m)
    reports = tuple(by_outlet.get(o, OtherReport(o)) for o in first.outlets)
    count = len(first.outlets)
    return AlertStory(
        story_id=first.story_id or 0,
        title=f"now reported by {count} outlets: {first.title}",
        link=first.link,
        source=first.source,
        published_at=first.published_at,
        summary=f"{count} outlets reported this event within {_span(first.within)} of its first report.",
        watchlists=watchlists,
        matched_terms=terms,
        also_reported_by=reports,
        surge=True,
    )


def _span(seconds: float) -> str:
    """``45m``, ``2h``, ``1d``, ``1h30m``: a duration as the config writes it."""
    minutes = round(seconds / 60)
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    hours, rest = divmod(minutes, 60)
    return f"{hours}h{rest:02d}m" if hours and rest else f"{hours}h" if hours else f"{rest}m"


def _cluster_others(alert: ClaimedAlert, members: Members) -> list[OtherReport]:
    if alert.kind != "story" or alert.cluster_id is None:
        return []
    return [m for m in members.get(alert.cluster_id, ()) if m.story_id != alert.story_id]


def digest_stories(rows: Sequence[ClaimedAlert], members: Members | None = None) -> list[AlertStory]:
    """The stories of a digest, one per story cluster (or health event), in row order."""
    groups: dict[tuple[str, int], list[ClaimedAlert]] = {}
    for row in rows:
        groups.setdefault(row.group_key, []).append(row)
    return [story_for(g, members) for g in groups.values()]


class Deliverer:
    """Drains the outbox to ``channels`` (target name -> channel), rendering with ``renderer``."""

    def __init__(
        self,
        store: Store,
        channels: Mapping[str, Channel],
        renderer: Renderer,
        settings: DeliverySettings,
        *,
        worker: str,
        lease: float = 15.0,
        policies: Policies | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.channels = channels
        self.renderer = renderer
        self.settings = settings
        self.policies = policies or Policies()
        self.worker = worker
        self.lease = lease
        self.clock = clock
        # One round at a time: a round starts by giving back what this worker holds.
        self._round = threading.Lock()
        # (rows, delivery) sent but not recorded: the database failed right after the send.
        self._unmarked: list[tuple[list[ClaimedAlert], tuple[str, str, str]]] = []
        self._held_back = False  # a failed round's claims could not be given back
        self.rand = rand

    def reconfigure(
        self, channels: Mapping[str, Channel], renderer: Renderer, settings: DeliverySettings, policies: Policies
    ) -> None:
        self.channels, self.renderer, self.settings, self.policies = channels, renderer, settings, policies

    def deliver(self) -> DeliveryReport:
        """Send everything that is due now; returns what happened (one round at a time:
        a second caller waits for the first round to end)."""
        with self._round:
            return self._deliver_round()

    def _deliver_round(self) -> DeliveryReport:
        # Sends the targets accepted but the database did not record (its connection
        # dropped): recorded first, so they are not sent again.
        self._record_unmarked()
        if self._held_back:
            # An earlier round failed and could not give its claims back (the heartbeat
            # would renew them for ever): one round runs at a time, so none is in use.
            self._give_back()
            self._held_back = False
        try:
            return self._rounds()
        except BaseException:
            try:  # give the claims back at once, for another worker or the next round
                self._give_back()
            except Exception as exc:
                self._held_back = True
                log.error("could not give back the alerts of a failed round (the next round does): %s", exc)
            raise

    def _give_back(self) -> None:
        """Give back what this worker holds, except sends waiting to be recorded."""
        keep = {r.id for rows, _ in self._unmarked for r in rows}
        retry_at = self.clock() + dt.timedelta(seconds=ROUND_RETRY)
        self.store.release_alerts(worker=self.worker, retry_at=retry_at, keep=keep)

    def _record_unmarked(self) -> None:
        while self._unmarked:
            rows, delivery = self._unmarked[0]
            marked = self.store.mark_sent(rows, worker=self.worker, delivery=delivery)
            self._unmarked.pop(0)
            log.info("recorded %d alert(s) sent to %s before the database went away", marked, delivery[0])

    def _rounds(self) -> DeliveryReport:
        total = DeliveryReport()
        for _ in range(MAX_ROUNDS):
            claimed = self.store.claim_alerts(
                worker=self.worker, lease=self.lease, limit=self.settings.batch, now=self._claim_time()
            )
            if not claimed:
                break
            members = self._members(claimed)
            by_target: dict[str, list[ClaimedAlert]] = {}
            for row in claimed:
                by_target.setdefault(row.target, []).append(row)
            for target, rows in by_target.items():
                total = total + self._deliver_target(target, rows, members)
            if len(claimed) < self.settings.batch:
                break
        return total

    def _claim_time(self) -> dt.datetime | None:
        """None: the database's clock (the default clock); a test's own clock otherwise."""
        return None if self.clock is utcnow else self.clock()

    def _members(self, claimed: Sequence[ClaimedAlert]) -> Members:
        """The stories of the claimed alerts' clusters as they are now: one read per batch."""
        ids = {r.cluster_id for r in claimed if r.kind in STORY_KINDS and r.cluster_id is not None}
        if not ids:
            return {}
        return {cid: [m.report() for m in ms] for cid, ms in self.store.cluster_members(ids).items()}

    def _deliver_target(self, target: str, rows: list[ClaimedAlert], members: Members) -> DeliveryReport:
        now = self.clock()
        channel = self.channels.get(target)
        if channel is None:
            return self._failed(target, rows, f"target {target!r} is no longer in the config", permanent=True)
        policy = self.policies.targets.get(target, TargetPolicy(target))
        sent_at: list[dt.datetime] = []
        if policy.rate_limit is not None:
            sent_at = self.store.sent_times(target, now - dt.timedelta(seconds=policy.rate_limit.per))
        result = plan(policy, rows, now=now, watchlists=self.policies.watchlists, sent_at=sent_at)
        report = DeliveryReport()
        for d in result.deferrals:
            self.store.defer(d.rows, worker=self.worker, until=d.until, fold=d.fold)
            log.info(
                "alerts held target=%s count=%d reason=%s until=%s",
                target,
                len(d.rows),
                d.reason,
                d.until.isoformat(timespec="minutes"),
            )
            report = report + DeliveryReport(held=len(d.rows))
        for message in result.messages:
            report = report + self._send(channel, message, members)
        return report

    def _render(self, planned: PlannedMessage, flavour: str, members: Members) -> tuple[Message, str]:
        if planned.digest:
            stories = digest_stories(planned.rows, members)
            names = sorted({s for st in stories for s in st.watchlists})
            noun = "story" if len(stories) == 1 else "stories"
            title = f"news-monitor digest: {len(stories)} {noun} ({', '.join(names)})"
            return self.renderer.digest(stories, flavour, title=title), "digest"
        delivery_kind = "health" if planned.rows[0].kind not in STORY_KINDS else "alert"
        return self.renderer.alert(story_for(planned.rows, members), flavour), delivery_kind

    def _send(self, channel: Channel, planned: PlannedMessage, members: Members) -> DeliveryReport:
        rows = list(planned.rows)
        target = planned.target
        message, delivery_kind = self._render(planned, channel.flavour, members)
        message = replace(message, idempotency_key=idempotency_key(rows))
        held = self.store.confirm(rows, worker=self.worker, lease=self.lease)
        if len(held) < len(rows):
            # Taken over while this worker was away (paused, cut off): the new holder sends it.
            log.warning(
                "alert not sent target=%s story=%s: %d of its %d claim(s) were taken over by another worker",
                target,
                rows[0].story_id,
                len(rows) - len(held),
                len(rows),
            )
            self.store.release_alerts(worker=self.worker, alerts=[r for r in rows if r.id in held])
            return DeliveryReport()
        sent = channel.send(message)
        if not sent.delivered:
            return self._failed(target, rows, failure_message(channel, sent), permanent=sent.permanent)
        delivery = (target, delivery_kind, message.title)
        try:
            marked = self.store.mark_sent(rows, worker=self.worker, now=self._claim_time(), delivery=delivery)
        except StoreError:
            # Sent, not recorded: kept claimed (the heartbeat renews the claims once the
            # database answers) and recorded before anything else, never sent again.
            self._unmarked.append((rows, delivery))
            log.error(
                "alert sent target=%s story=%s but not recorded: recorded when the database answers",
                target,
                rows[0].story_id,
            )
            raise

        if marked < len(rows):
            log.error(
                "POSSIBLE DUPLICATE target=%s story=%s: %d alert(s) were taken over by another worker during the"
                " send (counted in the delivery log and /metrics)",
                target,
                rows[0].story_id,
                len(rows) - marked,
            )
        first = rows[0]
        log.info(
            "%s sent target=%s story=%s watchlists=%s feed=%s title=%r",
            "digest" if planned.digest else "alert",
            target,
            first.story_id,
            ",".join(dict.fromkeys(r.watchlist for r in rows)),
            first.source,
            message.title[:120],
        )
        return DeliveryReport(sent=len(rows), messages=1)

    def _failed(self, target: str, rows: list[ClaimedAlert], error: str, *, permanent: bool) -> DeliveryReport:
        now = self.clock()
        attempts = max(r.attempts for r in rows)
        oldest = min(r.created_at for r in rows)
        give_up = permanent or (now - oldest).total_seconds() >= self.settings.give_up_after
        delay = backoff_delay(attempts, base=self.settings.retry_base, cap=self.settings.retry_max, rand=self.rand)
        self.store.mark_failed(
            rows,
            worker=self.worker,
            error=error,
            next_attempt_at=now + dt.timedelta(seconds=delay),
            give_up=give_up,
        )
        if give_up:
            log.error(
                "GAVE UP on %d alert(s) target=%s story=%s watchlists=%s after %d attempts since %s: %s",
                len(rows),
                target,
                rows[0].story_id,
                ",".join(dict.fromkeys(r.watchlist for r in rows)),
                attempts,
                oldest.isoformat(timespec="seconds"),
                error,
            )
            return DeliveryReport(given_up=len(rows))
        log.warning(
            "alert delivery failed target=%s story=%s attempt=%d, retry in %ds: %s",
            target,
            rows[0].story_id,
            attempts,
            int(delay),
            error,
        )
        return DeliveryReport(retrying=len(rows))
