"""Draining the outbox: claim, render, send, mark — at least once, almost exactly once.

Each outbox row is one (story cluster, watchlist, target). The deliverer claims due rows
with a lease, groups the rows of one story for one target into ONE message naming all
their watchlists, sends it through the notifier, and marks the rows sent. A failed send
puts the rows back to ``pending`` with exponential backoff and jitter; past
``delivery.give_up_after`` they are marked ``failed`` and logged loudly.

The guarantee (README, "Delivery"): no alert is lost — rows are written in the same
transaction as their story, and a row is only ``sent`` after the target accepted it.
A duplicate is possible only if the process dies between a target accepting a message
and the ``sent`` commit (a few milliseconds); then the lease expires and the row is sent
again. E-mail and webhooks have no idempotency key, so this is the honest best.
"""

from __future__ import annotations

import datetime as dt
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .backoff import backoff_delay
from .config import DeliverySettings
from .errors import NotifyError
from .notify import Notifier
from .render import AlertStory, Renderer
from .store import ClaimedAlert, Store, utcnow

log = logging.getLogger("monitor.deliver")

MAX_ROUNDS = 50  # claims per deliver() call, so one call cannot run for ever under a flood


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    sent: int = 0
    retrying: int = 0
    given_up: int = 0
    messages: int = 0

    def __add__(self, other: DeliveryReport) -> DeliveryReport:
        return DeliveryReport(
            self.sent + other.sent,
            self.retrying + other.retrying,
            self.given_up + other.given_up,
            self.messages + other.messages,
        )


def story_for(rows: Sequence[ClaimedAlert]) -> AlertStory:
    """One story for one target, possibly matched by several watchlists."""
    first = rows[0]
    watchlists: list[str] = []
    terms: list[str] = []
    highlights: list[tuple[str, int, int]] = []
    for row in rows:
        if row.watchlist not in watchlists:
            watchlists.append(row.watchlist)
        for term in row.terms:
            if term not in terms:
                terms.append(term)
        for _term, field, start, end, _text in row.hits:
            span = (field, start, end)
            if span not in highlights:
                highlights.append(span)
    return AlertStory(
        story_id=first.story_id,
        title=first.title,
        link=first.link,
        source=first.source,
        published_at=first.published_at,
        summary=first.summary,
        watchlists=tuple(watchlists),
        matched_terms=tuple(terms),
        highlights=tuple(sorted(highlights)),
        also_reported_by=first.also_reported_by,
    )


class Deliverer:
    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        renderer: Renderer,
        settings: DeliverySettings,
        *,
        worker: str,
        clock: Callable[[], dt.datetime] = utcnow,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.renderer = renderer
        self.settings = settings
        self.worker = worker
        self.clock = clock
        self.rand = rand

    def reconfigure(self, notifier: Notifier, renderer: Renderer, settings: DeliverySettings) -> None:
        self.notifier, self.renderer, self.settings = notifier, renderer, settings

    def deliver(self) -> DeliveryReport:
        """Send everything that is due now; returns what happened."""
        total = DeliveryReport()
        for _ in range(MAX_ROUNDS):
            claimed = self.store.claim_alerts(
                worker=self.worker, lease=self.settings.lease, limit=self.settings.batch, now=self.clock()
            )
            if not claimed:
                break
            total = total + self._send_claimed(claimed)
            if len(claimed) < self.settings.batch:
                break
        return total

    def _send_claimed(self, claimed: Sequence[ClaimedAlert]) -> DeliveryReport:
        groups: dict[tuple[str, int], list[ClaimedAlert]] = {}
        for row in claimed:
            groups.setdefault((row.target, row.cluster_id), []).append(row)
        report = DeliveryReport()
        for (target, _cluster), rows in groups.items():
            report = report + self._send_group(target, rows)
        return report

    def _send_group(self, target: str, rows: list[ClaimedAlert]) -> DeliveryReport:
        ids = [r.id for r in rows]
        story = story_for(rows)
        try:
            if target not in self.notifier.names:
                raise NotifyError(f"target {target!r} is no longer in the config", target=target)
            message = self.renderer.alert(story, self.notifier.kind(target))
            self.notifier.send(target, message)
        except NotifyError as exc:
            return self._failed(target, rows, str(exc), permanent=target not in self.notifier.names)
        self.store.mark_sent(ids, worker=self.worker, now=self.clock())
        log.info(
            "alert sent target=%s story=%d watchlists=%s feed=%s title=%r",
            target,
            story.story_id,
            ",".join(story.watchlists),
            story.source,
            story.title[:120],
        )
        return DeliveryReport(sent=len(rows), messages=1)

    def _failed(
        self, target: str, rows: list[ClaimedAlert], error: str, *, permanent: bool
    ) -> DeliveryReport:
        now = self.clock()
        ids = [r.id for r in rows]
        attempts = max(r.attempts for r in rows)
        oldest = min(r.created_at for r in rows)
        give_up = permanent or (now - oldest).total_seconds() >= self.settings.give_up_after
        delay = backoff_delay(
            attempts, base=self.settings.retry_base, cap=self.settings.retry_max, rand=self.rand
        )
        self.store.mark_failed(
            ids,
            worker=self.worker,
            error=error,
            next_attempt_at=now + dt.timedelta(seconds=delay),
            give_up=give_up,
        )
        if give_up:
            log.error(
                "GAVE UP on alert target=%s story=%d watchlists=%s after %d attempts since %s: %s",
                target,
                rows[0].story_id,
                ",".join(r.watchlist for r in rows),
                attempts,
                oldest.isoformat(timespec="seconds"),
                error,
            )
            return DeliveryReport(given_up=len(rows))
        log.warning(
            "alert delivery failed target=%s story=%d attempt=%d, retry in %ds: %s",
            target,
            rows[0].story_id,
            attempts,
            int(delay),
            error,
        )
        return DeliveryReport(retrying=len(rows))
