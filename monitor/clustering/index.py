"""In-memory candidate index of the open clusters, bounded by the time window (pure).

``add(cluster_id, signature)`` files a story's features under its cluster;
``candidates(signature)`` returns the open clusters that share at least one of the
story's names, acts, issuers or numbers, or one of its ``probe`` rarest words or
shingles (the caller checks the time window with ``first``).
Nothing scans all stories: postings lists hold only the clusters whose first story is at
most ``keep`` older than the newest story seen (older ones are evicted as time moves on,
in first-story order through a heap; ``keep`` is twice the decision window, so a story
that arrives late still finds its cluster), so a look-up costs O(probe x open clusters
per feature), and ``add`` O(features of the story).

Document frequencies, which weigh features (inverse document frequency), are kept over
every story ever added, not just the window: a window holds too few stories for a
steady estimate. They grow with the vocabulary, not with the number of stories.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor.clustering.features import Signature

__all__ = ["CandidateIndex"]

# Features that say little about which event a story tells (the config's actors): never
# used to look candidates up, only to score them.
_NOT_PROBED = ("c:",)
_WORDING = ("w:", "s:")


@dataclass(slots=True)
class _Cluster:
    first: datetime
    members: list[Signature] = field(default_factory=list)


class CandidateIndex:
    """Open clusters of the last windows, their postings and the feature frequencies."""

    def __init__(self, keep: timedelta = timedelta(hours=144), probe: int = 24) -> None:
        self.keep = keep
        self.probe = probe
        self._clusters: dict[int, _Cluster] = {}
        self._postings: dict[str, set[int]] = {}
        self._by_first: list[tuple[datetime, int]] = []
        self._df: Counter[str] = Counter()
        self._stories = 0
        self._newest: datetime | None = None

    def weight(self, feature: str) -> float:
        """Smoothed inverse document frequency of *feature* among the stories added."""
        return math.log((1 + self._stories) / (1 + self._df[feature])) + 1.0

    def add(self, cluster_id: int, signature: Signature) -> None:
        """File *signature* under *cluster_id* (a new id opens a cluster)."""
        cluster = self._clusters.get(cluster_id)
        if cluster is None:
            cluster = self._clusters[cluster_id] = _Cluster(signature.published)
            heapq.heappush(self._by_first, (signature.published, cluster_id))
        cluster.members.append(signature)
        features = signature.features()
        self._df.update(features)
        self._stories += 1
        for feature in features:
            if not feature.startswith(_NOT_PROBED):
                self._postings.setdefault(feature, set()).add(cluster_id)
        if self._newest is None or signature.published > self._newest:
            self._newest = signature.published
            self._evict(self._newest - self.keep)

    def _evict(self, before: datetime) -> None:
        while self._by_first and self._by_first[0][0] < before:
            _, cluster_id = heapq.heappop(self._by_first)
            for member in self._clusters.pop(cluster_id).members:
                for feature in member.features():
                    ids = self._postings.get(feature)
                    if ids is not None:
                        ids.discard(cluster_id)
                        if not ids:
                            del self._postings[feature]

    def candidates(self, signature: Signature) -> tuple[int, ...]:
        """Open clusters sharing one of the story's rarest features, by id."""
        features = signature.features()
        # Every language-independent feature is probed (a French telling of an English
        # cluster shares nothing else), plus the rarest words and shingles.
        wording = sorted((f for f in features if f.startswith(_WORDING)), key=lambda f: (self._df[f], f))
        found: set[int] = set()
        for feature in (*(f for f in features if not f.startswith(_WORDING + _NOT_PROBED)), *wording[: self.probe]):
            found.update(self._postings.get(feature, ()))
        return tuple(sorted(found))

    def first(self, cluster_id: int) -> datetime:
        """Published time of an open cluster's first story."""
        return self._clusters[cluster_id].first

    def members(self, cluster_id: int) -> tuple[Signature, ...]:
        """The stories filed under an open cluster, in the order they were added."""
        return tuple(self._clusters[cluster_id].members)

    def __len__(self) -> int:
        """Open clusters (evicted ones excluded)."""
        return len(self._clusters)
