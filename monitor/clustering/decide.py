"""Join a story to the best open cluster, or open a new one (pure).

Method. Candidates come from :class:`~monitor.clustering.index.CandidateIndex`; a
cluster counts only if its first story was published within ``window`` (72 h) of the
story. The story is scored against every member: the cosine of their binary features,
each weighted by inverse document frequency times its kind's weight
(:data:`KIND_WEIGHTS`: the config's concepts, the actors every watched story shares,
weigh 0.5; acts and numbers 2.5, issuers 2; names 1.5, and again 1.5 in the title;
words and shingles 1). Words and shingles count only between two stories of one language
(elsewhere they are neither shared nor missing), so a French and an English telling meet
on names, concepts, acts, issuers and numbers. Each pair's score is halved for every
``half_life`` (36 h) between the two publications: rewrites of one event come within
hours, the next step of a story (Putin signs the ratification, Kim ratifies three days
later) comes days after. A cluster scores the mean over its members (average link, so
one loose member does not chain two events), times ``act_penalty`` (0.3) for each act
of the story's title that no member tells (Zelensky offers a swap of the prisoners whose
capture was the news the day before). It is considered only when its best member
shares at least ``min_evidence`` (2) features beyond concepts and issuers, or one and a
pair score of ``strong`` (0.15) or more. Vetoes: sanctions stories whose issuers differ
(US vs UK the same week), and a story whose figures of 100 and more are none of the
cluster's (10,000 troops vs 11,000). The story joins the best cluster scoring at least
``threshold`` (0.07), else it opens a new one.

Figures (tests/data/clusters.jsonl: 344 stories, 84 events, 6 languages, 46 near-miss
pairs; B-cubed precision / recall, near-miss pairs merged), on the labelled stories alone
and after 1,280 unrelated real stories (the feeds of tests/fixtures, 2018-2024) went
through the same index, as a daemon's would:

=====================================  =========  ======  ===========  =========  ======  ===========
                                       labelled set alone                 with 1,280 unrelated stories
setting                                precision  recall  near misses  precision  recall  near misses
=====================================  =========  ======  ===========  =========  ======  ===========
defaults                               1.000      0.920   0            0.983      0.899   1
threshold 0.05                         0.972      0.929   2            0.968      0.925   2
threshold 0.09                         1.000      0.858   0            1.000      0.874   0
strong 0.10                            0.992      0.927   1            0.988      0.914   1
strong 0.20                            1.000      0.899   0            0.983      0.887   1
min_evidence 1                         0.992      0.930   1            0.988      0.917   1
min_evidence 3                         1.000      0.903   0            0.995      0.886   0
no time decay                          0.935      0.925   5            0.928      0.907   5
half-life 24 h                         1.000      0.915   0            0.991      0.894   1
half-life 48 h                         0.995      0.920   0            0.978      0.899   1
no new-act penalty                     0.987      0.936   1            0.959      0.917   2
new-act penalty 0.5                    0.987      0.928   1            0.967      0.913   2
concepts weigh 1.5                     0.992      0.924   1            0.975      0.918   0
acts weigh 1                           1.000      0.869   0            0.985      0.872   1
no title names                         0.992      0.900   1            0.986      0.899   1
no magnitude veto                      1.000      0.923   0            0.983      0.902   1
=====================================  =========  ======  ===========  =========  ======  ===========

Precision first: merging two events loses an alert, splitting one only repeats it; the
defaults sit where every neighbour either merges a near miss or loses recall. The
magnitude veto changes nothing on this set and is kept for the case it exists for, a
new count of the same actors within hours (see ``tests/test_clustering.py``). The one
near miss merged with unrelated news about is Seoul weighing arms for Ukraine and Putin
warning Seoul against it the same day.

Cost is bounded whatever the window holds: the index hands over at most 16 candidate
clusters (those sharing the most probed features), a cluster of more than 8 stories is
scored on its first and 7 latest, and each weight and vector is computed once per
decision (neither bound moves the figures above). 600 unrelated stories of one day
then 50 labelled ones took 115 s before any bound and 6.5 s with 32 candidates and 12
members (a loaded 2-core machine). bench/cluster.py: 1.7 ms a story placed (0.46 ms of it the signature), 26 KB
a story held by the open clusters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType

from monitor.clustering.features import Signature
from monitor.clustering.index import CandidateIndex

__all__ = ["KIND_WEIGHTS", "Assignment", "Settings", "assign"]

#: Weight of each feature kind (by its prefix in :meth:`Signature.features`).
KIND_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"w": 1.0, "s": 1.0, "n": 1.5, "t": 1.5, "c": 0.5, "a": 2.5, "i": 2.0, "#": 2.5}
)
_LANGUAGE_KINDS = ("w:", "s:")
_ACTOR_KINDS = ("c:", "i:")
_MAGNITUDE = 100
_SCORED = 8  # members a story is compared with: the first and the latest


@dataclass(frozen=True, slots=True)
class Settings:
    """How :func:`assign` decides (see the module docstring for the measured choice)."""

    #: A cluster takes stories published at most this far from its first story.
    window: timedelta = timedelta(hours=72)
    #: Least mean score over the cluster's members to join it.
    threshold: float = 0.07
    #: Features beyond concepts and issuers the best member must share...
    min_evidence: int = 2
    #: ...unless it shares one and scores at least this much.
    strong: float = 0.15
    #: A pair's score halves for every half-life between the two publications.
    half_life: timedelta = timedelta(hours=36)
    #: Refuse a cluster none of whose figures of 100 and more the story gives.
    number_veto: bool = True
    #: Factor on the score per act of the story's title that no member tells.
    act_penalty: float = 0.3
    weights: Mapping[str, float] = field(default_factory=lambda: KIND_WEIGHTS)


@dataclass(frozen=True, slots=True)
class Assignment:
    """``cluster`` to join (None: open a new one), its ``score`` and the features shared
    with its best member, heaviest first (empty for a new cluster)."""

    cluster: str | None
    score: float
    shared: tuple[str, ...] = ()


def _magnitudes(sig: Signature) -> frozenset[str]:
    return frozenset(n for n in sig.numbers if float(n) >= _MAGNITUDE)


def _vetoed(story: Signature, members: tuple[Signature, ...], settings: Settings) -> bool:
    """Sanctions stories naming different issuers tell different sanctions (any member);
    a story whose magnitudes (figures of 100 and more) are none of the cluster's, when
    both give some, tells a different count."""
    if "sanction" in story.acts and story.issuers:
        for m in members:
            if "sanction" in m.acts and m.issuers and not (story.issuers & m.issuers):
                return True
    if settings.number_veto:
        mine = _magnitudes(story)
        theirs = frozenset().union(*(_magnitudes(m) for m in members))
        return bool(mine and theirs and not (mine & theirs))
    return False


class _Weights:
    """Weighted feature vectors for one decision: the frequencies do not change while a
    story is assigned, so each feature's weight and each signature's vector (with or
    without its wording, which counts only within one language) are computed once."""

    def __init__(self, index: CandidateIndex, settings: Settings) -> None:
        self.index, self.kinds = index, settings.weights
        self._weight: dict[str, float] = {}
        self._vectors: dict[tuple[int, bool], tuple[dict[str, float], float]] = {}

    def vector(self, sig: Signature, wording: bool) -> tuple[dict[str, float], float]:
        """The weighted features of *sig* and their squared norm."""
        key = (id(sig), wording)
        got = self._vectors.get(key)
        if got is None:
            weights = self._weight
            vec: dict[str, float] = {}
            for f in sig.features():
                if wording or not f.startswith(_LANGUAGE_KINDS):
                    w = weights.get(f)
                    if w is None:
                        w = weights[f] = self.kinds[f[0]] * self.index.weight(f)
                    vec[f] = w
            got = self._vectors[key] = (vec, sum(w * w for w in vec.values()))
        return got

    def similarity(self, a: Signature, b: Signature) -> tuple[float, tuple[str, ...]]:
        """Weighted cosine of *a* and *b* and their shared features, heaviest first."""
        same_language = a.language == b.language
        (wa, na), (wb, nb) = self.vector(a, same_language), self.vector(b, same_language)
        norm = math.sqrt(na * nb)
        if norm == 0:
            return 0.0, ()
        shared = sorted(wa.keys() & wb.keys(), key=lambda f: (-wa[f], f))
        return sum(wa[f] * wb[f] for f in shared) / norm, tuple(shared)


def _decayed(
    scored: tuple[float, tuple[str, ...]], a: Signature, b: Signature, settings: Settings
) -> tuple[float, tuple[str, ...]]:
    """Halve a pair's score for every ``half_life`` between their published times."""
    apart = abs(a.published - b.published) / settings.half_life
    return scored[0] * 0.5**apart, scored[1]


def assign(signature: Signature, index: CandidateIndex, settings: Settings = Settings()) -> Assignment:
    """The cluster *signature* joins, or ``Assignment(None, best score)`` for a new one.

    The caller files the story afterwards with ``index.add(cluster, signature, ident)``.
    """
    best = Assignment(None, 0.0)
    weights = _Weights(index, settings)
    for cluster_id in index.candidates(signature):
        if abs(signature.published - index.first(cluster_id)) > settings.window:
            continue
        members = index.members(cluster_id)
        if _vetoed(signature, members, settings):
            continue
        # A big cluster is scored on its first and latest members: its mean is steady by then.
        scored = members if len(members) <= _SCORED else (members[0], *members[1 - _SCORED :])
        pairs = [_decayed(weights.similarity(signature, m), signature, m, settings) for m in scored]
        top = max(pairs)
        # A name shared in both titles is one piece of evidence, not two.
        evidence = {"n:" + f[2:] if f.startswith("t:") else f for f in top[1] if not f.startswith(_ACTOR_KINDS)}
        if len(evidence) < settings.min_evidence and not (evidence and top[0] >= settings.strong):
            continue
        untold = signature.title_acts - frozenset().union(*(m.acts for m in members))
        score = sum(p[0] for p in pairs) / len(pairs) * settings.act_penalty ** len(untold)
        if score > best.score:
            best = Assignment(cluster_id, score, top[1][:8])
    if best.score < settings.threshold:
        return Assignment(None, best.score)
    return best
