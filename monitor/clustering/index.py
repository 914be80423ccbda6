"""In-memory candidate index of the open clusters, bounded by the time window (pure).

``add(cluster, signature, ident)`` files a story's features under its cluster (a
cluster is named by the identity of its first story, as the database names it);
``candidates(signature)`` returns the open clusters that share at least one of the
story's names, acts, issuers or numbers, or one of its ``probe`` rarest words or
shingles (the caller checks the time window with ``first``). ``discard(ident)`` takes
a story back out (a write that failed, a story another daemon stored first), and
``alerted(cluster)`` says which watchlists the cluster's stories alerted, which is what
makes a cluster alert once per watchlist; ``outlets(cluster, within)`` and
``escalated(cluster)`` say how widely it is reported and which watchlists were already
told so (a watchlist's ``escalate`` follow-up, once per cluster).
Nothing scans all stories: postings lists hold only the clusters whose first story is at
most ``keep`` older than the newest story seen (older ones are evicted as time moves on,
in first-story order through a heap; ``keep`` is twice the decision window, so a story
that arrives late still finds its cluster), so a look-up costs O(probe x open clusters
per feature), and ``add`` O(features of the story).

Document frequencies, which weigh features (inverse document frequency), are kept over
every story ever added, not just the window: a window holds too few stories for a
steady estimate. They grow with the vocabulary, not with the number of stories. They
count only the stories that name one of the config's concepts (once :data:`THEME_MIN`
have): unrelated news (sport, weather) would make the watched actors look rare and weigh
them up, which merged distinct events of the same actors (precision 0.972 with 100
unrelated stories before this rule, 1.000 after; see :mod:`.decide`).
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor.clustering.features import Signature

__all__ = ["THEME_MIN", "CandidateIndex"]

#: Stories naming a watched concept needed before frequencies are counted among them only.
THEME_MIN = 3

# Features that say little about which event a story tells (the config's actors): never
# used to look candidates up, only to score them.
_NOT_PROBED = ("c:",)
_WORDING = ("w:", "s:")


@dataclass(slots=True)
class _Cluster:
    first: datetime
    members: dict[str, Signature] = field(default_factory=dict)  # story identity -> signature
    watchlists: dict[str, frozenset[str]] = field(default_factory=dict)  # identity -> alerted
    escalated: dict[str, frozenset[str]] = field(default_factory=dict)  # identity -> escalated


class CandidateIndex:
    """Open clusters of the last windows, their postings and the feature frequencies."""

    def __init__(self, keep: timedelta = timedelta(hours=144), probe: int = 24, limit: int = 16) -> None:
        self.keep = keep
        self.probe = probe
        self.limit = limit
        self._clusters: dict[str, _Cluster] = {}
        self._where: dict[str, str] = {}  # story identity -> its cluster
        self._postings: dict[str, set[str]] = {}
        self._by_first: list[tuple[datetime, str]] = []
        self._df: Counter[str] = Counter()
        self._stories = 0
        self._df_all: Counter[str] = Counter()
        self._all = 0
        self._unnamed = 0
        self._newest: datetime | None = None

    def weight(self, feature: str) -> float:
        """Smoothed inverse document frequency of *feature* among the stories added."""
        if self._stories < THEME_MIN:
            return math.log((1 + self._all) / (1 + self._df_all[feature])) + 1.0
        return math.log((1 + self._stories) / (1 + self._df[feature])) + 1.0

    def add(
        self,
        cluster: str,
        signature: Signature,
        ident: str | None = None,
        watchlists: frozenset[str] = frozenset(),
        escalated: frozenset[str] = frozenset(),
    ) -> None:
        """File *signature* (story *ident*, which alerted *watchlists* and recorded the
        escalations of *escalated*) under *cluster*; a new name opens a cluster. A story
        already filed is left where it is."""
        if ident is None:
            self._unnamed += 1
            ident = f"{cluster}#{self._unnamed}"
        if ident in self._where:
            return
        entry = self._clusters.get(cluster)
        if entry is None:
            entry = self._clusters[cluster] = _Cluster(signature.published)
            heapq.heappush(self._by_first, (signature.published, cluster))
        entry.members[ident] = signature
        if watchlists:
            entry.watchlists[ident] = watchlists
        if escalated:
            entry.escalated[ident] = escalated
        self._where[ident] = cluster
        features = signature.features()
        self._df_all.update(features)
        self._all += 1
        if signature.concepts:
            self._df.update(features)
            self._stories += 1
        for feature in features:
            if not feature.startswith(_NOT_PROBED):
                self._postings.setdefault(feature, set()).add(cluster)
        if self._newest is None or signature.published > self._newest:
            self._newest = signature.published
            self._evict(self._newest - self.keep)

    def discard(self, ident: str) -> None:
        """Take story *ident* back out of its cluster (nothing if it is not filed)."""
        cluster = self._where.pop(ident, None)
        if cluster is None:
            return
        entry = self._clusters[cluster]
        signature = entry.members.pop(ident)
        entry.watchlists.pop(ident, None)
        entry.escalated.pop(ident, None)
        features = signature.features()
        self._df_all.subtract(features)
        self._all -= 1
        if signature.concepts:
            self._df.subtract(features)
            self._stories -= 1
        kept = frozenset().union(*(m.features() for m in entry.members.values()))
        self._unpost(cluster, features - kept)
        if not entry.members:
            del self._clusters[cluster]  # its heap entry is skipped when it comes up

    def _unpost(self, cluster: str, features: frozenset[str]) -> None:
        for feature in features:
            ids = self._postings.get(feature)
            if ids is not None:
                ids.discard(cluster)
                if not ids:
                    del self._postings[feature]

    def _evict(self, before: datetime) -> None:
        while self._by_first and self._by_first[0][0] < before:
            _, cluster = heapq.heappop(self._by_first)
            entry = self._clusters.pop(cluster, None)
            if entry is None:
                continue
            for ident, member in entry.members.items():
                del self._where[ident]
                self._unpost(cluster, member.features())

    def candidates(self, signature: Signature) -> tuple[str, ...]:
        """Open clusters sharing one of the story's rarest features: the ``limit`` sharing
        the most of them, most first (ties by name)."""
        features = signature.features()
        # Every language-independent feature is probed (a French telling of an English
        # cluster shares nothing else), plus the rarest words and shingles.
        wording = sorted((f for f in features if f.startswith(_WORDING)), key=lambda f: (self._df[f], f))
        hits: Counter[str] = Counter()
        for feature in (*(f for f in features if not f.startswith(_WORDING + _NOT_PROBED)), *wording[: self.probe]):
            hits.update(self._postings.get(feature, ()))
        ranked = sorted(hits.items(), key=lambda kv: (-kv[1], kv[0]))
        return tuple(cluster for cluster, _ in ranked[: self.limit])

    def first(self, cluster: str) -> datetime:
        """Published time of an open cluster's first story."""
        return self._clusters[cluster].first

    def members(self, cluster: str) -> tuple[Signature, ...]:
        """The stories filed under an open cluster, in the order they were added."""
        return tuple(self._clusters[cluster].members.values())

    def alerted(self, cluster: str) -> frozenset[str]:
        """The watchlists any story of *cluster* alerted (empty for an unknown cluster)."""
        entry = self._clusters.get(cluster)
        if entry is None:
            return frozenset()
        return frozenset().union(*entry.watchlists.values())

    def note(self, ident: str, watchlists: frozenset[str]) -> None:
        """Record the watchlists the filed story *ident* alerted."""
        cluster = self._where.get(ident)
        if cluster is not None and watchlists:
            self._clusters[cluster].watchlists[ident] = watchlists

    def alerted_by(self, cluster: str, watchlist: str) -> str | None:
        """The first story of *cluster* (in filing order) that alerted *watchlist*, if any."""
        entry = self._clusters.get(cluster)
        if entry is None:
            return None
        return next((ident for ident, wls in entry.watchlists.items() if watchlist in wls), None)

    def escalated(self, cluster: str) -> frozenset[str]:
        """The watchlists whose surge follow-up *cluster* has sent (empty for an unknown one)."""
        entry = self._clusters.get(cluster)
        if entry is None:
            return frozenset()
        return frozenset().union(*entry.escalated.values())

    def note_escalated(self, ident: str, watchlists: frozenset[str]) -> None:
        """Record the escalations the filed story *ident* brought about (taken back out
        with the story, like the watchlists it alerted)."""
        cluster = self._where.get(ident)
        if cluster is not None and watchlists:
            entry = self._clusters[cluster]
            entry.escalated[ident] = entry.escalated.get(ident, frozenset()) | watchlists

    def outlets(self, cluster: str, within: timedelta) -> tuple[str, ...]:
        """The distinct outlets of *cluster* whose stories were published at most *within*
        after its first story, in filing order (empty for an unknown cluster; stories
        without an outlet are not counted)."""
        entry = self._clusters.get(cluster)
        if entry is None:
            return ()
        until = entry.first + within
        seen: dict[str, None] = {}
        for sig in entry.members.values():
            if sig.outlet and sig.published <= until:
                seen.setdefault(sig.outlet, None)
        return tuple(seen)

    def cluster_of(self, ident: str) -> str | None:
        """The open cluster story *ident* is filed under, if any."""
        return self._where.get(ident)

    def __len__(self) -> int:
        """Open clusters (evicted ones excluded)."""
        return len(self._clusters)

    @property
    def stories(self) -> int:
        """Stories filed in the open clusters."""
        return len(self._where)
