"""Join a story to the best open cluster, or open a new one (pure).

Method: the story is compared with every member of each candidate cluster (from
:class:`~monitor.clustering.index.CandidateIndex`, so only clusters whose first story is
within ``window`` of it). A pair scores the cosine of their binary features weighted by
inverse document frequency times a per-kind weight (:data:`KIND_WEIGHTS`): the config's
concepts (the shared actors) weigh little; acts, issuers and numbers weigh much. Words
and shingles only count between two stories of one language (elsewhere they are neither
shared nor missing), so a French and an English telling meet on names, concepts, acts,
issuers and numbers. A cluster's score is its best member's; a cluster is refused
outright (veto) when any member disagrees on issuers of a sanctions story. The story
joins the best cluster scoring at least ``threshold``, else opens a new one.

Precision first: merging two events loses an alert, splitting one only repeats it.
Figures behind the defaults are in ``tests/test_cluster_labelled.py``'s docstring.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from types import MappingProxyType

from monitor.clustering.features import Signature
from monitor.clustering.index import CandidateIndex

__all__ = ["KIND_WEIGHTS", "Assignment", "Settings", "assign", "similarity"]

#: Weight of each feature kind (by its prefix in :meth:`Signature.features`).
KIND_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {"w": 1.0, "s": 1.0, "n": 1.5, "t": 1.5, "c": 0.5, "a": 2.5, "i": 2.0, "#": 2.5}
)
_LANGUAGE_KINDS = ("w:", "s:")
_ACTOR_KINDS = ("c:", "i:")
_MAGNITUDE = 100


@dataclass(frozen=True, slots=True)
class Settings:
    """How :func:`assign` decides."""

    window: timedelta = timedelta(hours=72)
    threshold: float = 0.07
    min_evidence: int = 2
    strong: float = 0.15
    link: str = "mean"
    half_life: timedelta = timedelta(hours=36)
    number_veto: bool = True
    weights: Mapping[str, float] = field(default_factory=lambda: KIND_WEIGHTS)


@dataclass(frozen=True, slots=True)
class Assignment:
    """``cluster`` to join (None: open a new one), its ``score`` and the features shared
    with its best member, heaviest first (empty for a new cluster)."""

    cluster: int | None
    score: float
    shared: tuple[str, ...] = ()


def _magnitudes(sig: Signature) -> frozenset[str]:
    return frozenset(n for n in sig.numbers if float(n) >= _MAGNITUDE)


def _vetoed(story: Signature, members: tuple[Signature, ...], settings: Settings) -> bool:
    """Sanctions stories naming different issuers tell different sanctions (any member);
    a story whose magnitudes (figures of 100 and more) are none of the cluster's, when
    both give some, tells a different count."""
    for m in members:
        a, b = story, m
        if "sanction" in a.acts and "sanction" in b.acts and a.issuers and b.issuers and not (a.issuers & b.issuers):
            return True
    if settings.number_veto:
        mine = _magnitudes(story)
        theirs = frozenset().union(*(_magnitudes(m) for m in members))
        return bool(mine and theirs and not (mine & theirs))
    return False


def similarity(a: Signature, b: Signature, index: CandidateIndex, settings: Settings) -> tuple[float, tuple[str, ...]]:
    """Weighted cosine of *a* and *b* and their shared features, heaviest first."""
    same_language = a.language == b.language

    def weighted(sig: Signature) -> dict[str, float]:
        return {
            f: settings.weights[f[0]] * index.weight(f)
            for f in sig.features()
            if same_language or not f.startswith(_LANGUAGE_KINDS)
        }

    wa, wb = weighted(a), weighted(b)
    norm = math.sqrt(sum(w * w for w in wa.values()) * sum(w * w for w in wb.values()))
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

    The caller files the story afterwards with ``index.add(cluster_id, signature)``.
    """
    best = Assignment(None, 0.0)
    for cluster_id in index.candidates(signature):
        if abs(signature.published - index.first(cluster_id)) > settings.window:
            continue
        members = index.members(cluster_id)
        if _vetoed(signature, members, settings):
            continue
        pairs = [_decayed(similarity(signature, m, index, settings), signature, m, settings) for m in members]
        top = max(pairs)
        # A name shared in both titles is one piece of evidence, not two.
        evidence = {"n:" + f[2:] if f.startswith("t:") else f for f in top[1] if not f.startswith(_ACTOR_KINDS)}
        if len(evidence) < settings.min_evidence and not (evidence and top[0] >= settings.strong):
            continue
        score = sum(p[0] for p in pairs) / len(pairs) if settings.link == "mean" else top[0]
        if score > best.score:
            best = Assignment(cluster_id, score, top[1][:8])
    if best.score < settings.threshold:
        return Assignment(None, best.score)
    return best
