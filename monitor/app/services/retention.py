"""Retention: the prune of old stories and log rows, as the daemon and ``prune`` run it.

:func:`retention_policy` reads the config's ``retention`` section, the clusterer's
memory (twice ``cluster.window``) and the longest rate-limit period of the targets;
:func:`prune` applies it through :meth:`~monitor.storage.store.Store.prune`.
"""

from __future__ import annotations

import datetime as dt

from monitor.config.model import Config, parse_rate
from monitor.storage.engine import utcnow
from monitor.storage.retention import PruneReport, RetentionPolicy, cutoffs
from monitor.storage.store import Store


def _kept_for(seconds: float) -> dt.timedelta | None:
    return dt.timedelta(seconds=seconds) if seconds > 0 else None


def retention_policy(config: Config) -> RetentionPolicy:
    """The retention settings of *config*, with what clustering and rate limits still need."""
    r = config.retention
    periods = [parse_rate(t.rate_limit)[1] for t in config.targets.values() if t.rate_limit]
    return RetentionPolicy(
        stories=_kept_for(r.stories),
        deliveries=_kept_for(r.deliveries),
        outbox=_kept_for(r.outbox),
        keys=_kept_for(r.keys),
        cluster_memory=2 * dt.timedelta(seconds=config.cluster.window),
        rate_window=dt.timedelta(seconds=max(periods, default=0.0)),
    )


def prune(
    store: Store, config: Config, *, dry_run: bool = False, now: dt.datetime | None = None, wait: bool = True
) -> PruneReport:
    """Delete what *config*'s retention says is old (``dry_run``: count only; ``wait=False``:
    skip if another daemon is pruning)."""
    now = now or utcnow()
    return store.prune(cutoffs(retention_policy(config), now), dry_run=dry_run, now=now, wait=wait)


def describe(report: PruneReport) -> str:
    """One line for the log and the command line."""
    if report.skipped:
        return "skipped: another daemon is pruning this database now"
    verb = "would delete" if report.dry_run else "deleted"
    return (
        f"{verb} {report.stories} stories ({report.clusters} clusters), {report.deliveries} delivery log rows, "
        f"{report.outbox} feed-health alerts, {report.keys_expired} expired dedupe keys"
    )
