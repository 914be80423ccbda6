"""Event clusters for people: the recent clusters with their members and why each joined,
a story's cluster ("also reported by"), and re-clustering stored stories.

- :func:`recent_clusters`: the clusters with a story first seen in the last days, the
  most recently active first, each with its members (first seen first: its first story
  leads) and, per member, the score and shared features that made it join.
  :func:`clusters_json` is its stable machine-readable form (``stories clusters --json``).
- :func:`readable_terms` turns stored features (``n:lavrov``, ``a:meeting``) into words
  a person reads: ``names: lavrov; acts: meeting``. The prefixes are the kinds of
  :meth:`monitor.clustering.features.Signature.features`; a name in the title (``t:``)
  is shown as a name, as the decision counts it.
- :func:`story_in_cluster`: a stored story with the other members of its cluster and
  why it joined (``stories show``).
- :func:`recluster`: replays the stories first seen in the last days, in the order they
  were first seen (published time, then row id, as tie-breaks), through a fresh
  :class:`~monitor.clustering.clusterer.Clusterer` built from the config's current
  ``cluster:`` settings and alias groups (:func:`replay`, pure), and writes each one's
  cluster, score and shared features in one transaction. The stories first seen in the
  span before (the clusterer's ``keep``: twice the window) are filed first under their
  stored clusters, as the daemon's rebuild files them, and are not rewritten; so a story
  of the span joins an older cluster only when the clusterer places it there. Nothing
  is sent: no outbox row, no match is written or changed; alerts already queued keep the
  cluster they were queued for. A running daemon keeps its clusters in memory and uses
  the new ones after a restart.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from monitor.app.services.common import build_clusterer, build_matcher, checked_days
from monitor.app.services.stories import story_detail, story_link
from monitor.clustering.clusterer import Clusterer
from monitor.clustering.features import Signature
from monitor.config.model import Config
from monitor.matching.backtest import days_ago
from monitor.storage.engine import INGEST_LOCK
from monitor.storage.store import Store
from monitor.storage.stories import ClusterAssignment, ClusterMember, FiledStory, StoryDetail

#: What each feature prefix means, in the order the kinds are shown.
KINDS: tuple[tuple[str, str], ...] = (
    ("n", "names"),
    ("t", "names"),
    ("c", "concepts"),
    ("a", "acts"),
    ("i", "issuers"),
    ("#", "numbers"),
    ("w", "words"),
    ("s", "word pairs"),
)
_KIND_NAME = dict(KINDS)
_KIND_ORDER = list(dict.fromkeys(name for _, name in KINDS))


def readable_terms(terms: Sequence[str]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """Shared features grouped by kind (``(("names", ("lavrov", "choe")), ("acts",
    ("meeting",)))``), kinds in :data:`KINDS` order, values in the order given (the
    heaviest first) and each once; a term without a known prefix goes under "other"."""
    groups: dict[str, list[str]] = {}
    for term in terms:
        kind, sep, value = term.partition(":")
        name = _KIND_NAME.get(kind) if sep else None
        if name is None:
            name, value = "other", term
        values = groups.setdefault(name, [])
        if value not in values:
            values.append(value)
    order = [*_KIND_ORDER, "other"]
    return tuple((name, tuple(groups[name])) for name in order if name in groups)


def describe_terms(terms: Sequence[str]) -> str:
    """:func:`readable_terms` on one line: ``names: lavrov, choe; acts: meeting``."""
    return "; ".join(f"{name}: {', '.join(values)}" for name, values in readable_terms(terms))


@dataclass(frozen=True, slots=True)
class Cluster:
    """An event cluster: the id of its first story, and its stories, first seen first."""

    id: int
    members: tuple[ClusterMember, ...]

    @property
    def last_seen(self) -> dt.datetime:
        return max(m.first_seen_at for m in self.members)


@dataclass(frozen=True, slots=True)
class RecentClusters:
    """The clusters active in the last ``days`` (at most ``limit``, of ``min_size`` or more)."""

    days: float
    min_size: int
    limit: int
    clusters: tuple[Cluster, ...]


def recent_clusters(
    store: Store, *, days: float = 1.0, min_size: int = 1, limit: int = 50, now: dt.datetime | None = None
) -> RecentClusters:
    """The clusters with a story first seen in the last *days*, most recently active first.

    ``ValueError`` for *days* out of :func:`~monitor.app.services.common.checked_days`,
    or *min_size* / *limit* below 1.
    """
    if min_size < 1 or limit < 1:
        raise ValueError("min_size and limit: at least 1")
    since = days_ago(checked_days(days), now)
    ids = store.recent_cluster_ids(since, min_size=min_size, limit=limit)
    members = store.cluster_members(ids)
    clusters = tuple(Cluster(cid, tuple(members[cid])) for cid in ids if members.get(cid))
    return RecentClusters(days, min_size, limit, clusters)


def member_json(m: ClusterMember) -> dict[str, object]:
    """One member as ``stories clusters --json`` gives it (see :func:`clusters_json`)."""
    return {
        "id": m.story_id,
        "outlet": m.feed,
        "language": m.language,
        "title": m.title,
        "link": story_link(m.link),
        "published": m.published_at.isoformat(),
        "first_seen": m.first_seen_at.isoformat(),
        "score": m.score,
        "shared": {name: list(values) for name, values in readable_terms(m.terms)},
        "features": list(m.terms),
    }


def clusters_json(found: RecentClusters) -> dict[str, object]:
    """The stable JSON of ``stories clusters``: ``{"days", "min_size", "limit",
    "clusters": [{"id", "size", "last_seen", "members": [{"id", "outlet", "language",
    "title", "link", "published", "first_seen", "score", "shared", "features"}]}]}``;
    times in ISO 8601 (UTC), ``score`` null and ``shared`` empty for a cluster's first
    story, ``shared`` maps a kind (names, concepts, acts, issuers, numbers, words, word
    pairs) to its values, ``features`` the raw prefixed features."""
    return {
        "days": found.days,
        "min_size": found.min_size,
        "limit": found.limit,
        "clusters": [
            {
                "id": c.id,
                "size": len(c.members),
                "last_seen": c.last_seen.isoformat(),
                "members": [member_json(m) for m in c.members],
            }
            for c in found.clusters
        ],
    }


@dataclass(frozen=True, slots=True)
class StoryInCluster:
    """A story in detail, with its cluster: ``first`` the cluster's first story (the
    story itself when it opened the cluster), ``member`` the story as a member (its
    score and shared features say why it joined), ``others`` the other members."""

    detail: StoryDetail
    first: ClusterMember | None
    member: ClusterMember | None
    others: tuple[ClusterMember, ...]

    @property
    def joined(self) -> bool:
        """Whether the story joined another story's cluster (rather than opening its own)."""
        return self.member is not None and self.first is not None and self.first.story_id != self.member.story_id


def story_in_cluster(store: Store, story_id: int) -> StoryInCluster | None:
    """:func:`~monitor.app.services.stories.story_detail` with the members of the story's
    cluster; None when there is no such story."""
    detail = story_detail(store, story_id)
    if detail is None:
        return None
    members = store.cluster_members([detail.cluster_id]).get(detail.cluster_id, [])
    me = next((m for m in members if m.story_id == story_id), None)
    first = next((m for m in members if m.story_id == detail.cluster_id), members[0] if members else None)
    others = tuple(m for m in members if m.story_id != story_id)
    return StoryInCluster(detail, first, me, others)


@dataclass(frozen=True, slots=True)
class Move:
    """A story whose cluster changed: from the cluster of story ``before`` to that of
    story ``after`` (its own id: it now opens a cluster), with why it joined."""

    story_id: int
    feed: str
    title: str
    before: int
    after: int
    score: float | None
    terms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Recluster:
    """What ``stories recluster`` did (or would do, ``dry_run``): ``stories`` replayed,
    ``context`` stories of the span before filed as they are, the clusters of the replayed
    stories before and after, the stories that moved, how many kept their cluster with a
    new score or new shared features, and how many stories were written."""

    days: float
    dry_run: bool
    enabled: bool
    stories: int
    context: int
    clusters_before: int
    clusters_after: int
    moves: tuple[Move, ...]
    rescored: int
    written: int


def _sign(clusterer: Clusterer, s: FiledStory) -> Signature:
    return clusterer.sign(s.title, s.summary, s.language, s.published_at, s.feed, seen=s.first_seen_at)


def replay(
    clusterer: Clusterer | None, context: Sequence[FiledStory], stories: Sequence[FiledStory]
) -> list[ClusterAssignment]:
    """The cluster of each of *stories*, placed in the order given by *clusterer* after
    *context* is filed under its stored clusters (pure). Without a clusterer (clustering
    off) every story is a cluster of its own, as ingest makes it; so is a story that no
    watchlist matched (ingest clusters only those)."""
    if clusterer is None:
        return [ClusterAssignment(s.id, s.id, clustered=False) for s in stories]
    context = [s for s in context if s.matched]
    ids = {s.cluster_ident: s.cluster_id for s in context}
    ids.update((s.ident, s.id) for s in (*context, *stories))
    for s in context:
        clusterer.file(s.ident, _sign(clusterer, s), s.cluster_ident)
    out: list[ClusterAssignment] = []
    for s in stories:
        if not s.matched:
            out.append(ClusterAssignment(s.id, s.id, clustered=False))
            continue
        placed = clusterer.place(s.ident, _sign(clusterer, s))
        if placed.joined(s.ident) and placed.cluster in ids:
            out.append(ClusterAssignment(s.id, ids[placed.cluster], round(placed.score, 4), placed.shared))
        else:
            out.append(ClusterAssignment(s.id, s.id))
    return out


def _assignment(story: FiledStory) -> ClusterAssignment:
    """The stored cluster of *story*, as an assignment (to tell what a replay changes)."""
    return ClusterAssignment(story.id, story.cluster_id, story.score, story.terms, story.matched)


def recluster(
    store: Store, config: Config, days: float, *, dry_run: bool = False, now: dt.datetime | None = None
) -> Recluster:
    """Re-cluster the stories first seen in the last *days* with *config*'s current
    settings (see the module docstring); with *dry_run* nothing is written.

    ``ValueError`` for *days* out of :func:`~monitor.app.services.common.checked_days`.
    """
    since = days_ago(checked_days(days), now)
    clusterer = build_clusterer(config)
    keep = clusterer.index.keep if clusterer is not None else dt.timedelta(0)
    matcher = build_matcher(config)  # which stories are on the watched themes, as ingest says
    with store.exclusive(INGEST_LOCK):  # no ingest decision of a daemon in between
        stored = store.stories_first_seen(since)
        stories = [dataclasses.replace(s, matched=bool(matcher.match(s.title, s.summary))) for s in stored]
        context = store.stories_first_seen(since - keep, since) if clusterer is not None else []
        after = replay(clusterer, context, stories)
        by_id = {s.id: s for s in stored}
        changed = [a for a in after if _assignment(by_id[a.story_id]) != a]
        written = 0 if dry_run else store.assign_clusters(changed)
    moves = tuple(
        Move(
            a.story_id,
            by_id[a.story_id].feed,
            by_id[a.story_id].title,
            by_id[a.story_id].cluster_id,
            a.cluster_id,
            a.score,
            a.terms,
        )
        for a in changed
        if a.cluster_id != by_id[a.story_id].cluster_id
    )
    return Recluster(
        days=days,
        dry_run=dry_run,
        enabled=clusterer is not None,
        stories=len(stories),
        context=len(context),
        clusters_before=len({s.cluster_id for s in stories}),
        clusters_after=len({a.cluster_id for a in after}),
        moves=moves,
        rescored=len(changed) - len(moves),
        written=written,
    )


__all__ = [
    "KINDS",
    "Cluster",
    "Move",
    "RecentClusters",
    "Recluster",
    "StoryInCluster",
    "clusters_json",
    "describe_terms",
    "member_json",
    "readable_terms",
    "recent_clusters",
    "recluster",
    "replay",
    "story_in_cluster",
]
