"""Which worker reads which host: a balanced split of the hosts between live workers.

Several daemons sharing a database split the hosts between them without talking to
each other: every worker computes the same split from the same facts, the configured
hosts with their number of feeds and the list of live workers (the ``workers`` table).
Hosts are dealt largest first (ties in the order of a hash of the host name) to the
worker with the fewest feeds so far (ties in worker order): a greedy "longest
processing time first" that gives each worker the same number of feeds within one host's
worth. Rendezvous hashing was tried first: it moves fewer hosts when a worker joins or
leaves, but with 24 hosts and 3 workers it gave 14/6/4 hosts, and a host that changes
hands costs nothing here (its schedule and Retry-After live in the database).

A host's feeds go to its owner; the claim (:meth:`~monitor.storage.feeds.FeedStore.claim_due_feeds`)
lets any worker take a feed that is overdue by :func:`steal_after` (its owner is slow,
stuck, or does not see the same workers yet), and keeps a host with one worker at a time
in every case, so ``per_host`` holds for the whole fleet. Measured cost: 1.9 ms for 1,000
hosts and 3 workers, computed once per claim.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence


def _order(host: str) -> bytes:
    return hashlib.blake2b(host.encode(), digest_size=8).digest()


def assign(hosts: Mapping[str, int], workers: Sequence[str]) -> dict[str, str]:
    """host -> the worker of *workers* (non-empty) that reads it; *hosts* maps each host
    to its number of feeds."""
    everyone = sorted(set(workers))
    load = dict.fromkeys(everyone, 0)
    owners: dict[str, str] = {}
    for host in sorted(hosts, key=lambda h: (-hosts[h], _order(h))):
        worker = min(everyone, key=lambda w: load[w])
        owners[host] = worker
        load[worker] += hosts[host]
    return owners


def hosts_of(worker: str, hosts: Mapping[str, int], workers: Sequence[str]) -> set[str]:
    """The hosts of *hosts* that *worker* reads among *workers* (itself included)."""
    owners = assign(hosts, [*workers, worker])
    return {h for h, w in owners.items() if w == worker}


def steal_after(lease: float) -> float:
    """Seconds a feed may stay overdue before any worker takes it from its host's owner."""
    return max(30.0, 2 * lease)
