"""The clustering step of ingest: place each new story in an event cluster (pure).

:class:`Clusterer` holds what the decision needs between polls: the vocabulary read
from the config's alias groups, the :class:`~.decide.Settings` and the
:class:`~.index.CandidateIndex` of the open clusters. Clusters are named by the
identity of their first story (``stories.ident``), the name the database gives them
too, so the ingest decision can say "this story joins the cluster of that one" before
either has a row id.

- :meth:`Clusterer.place` picks a new story's cluster (:func:`~.decide.assign`) and files
  it, so the next story of the same batch can join it. A story republished word for word
  (a wire story in many outlets) is signed once (:meth:`Clusterer.sign` keeps the last
  4,096 texts) and joins its twin's cluster without a search, when that cluster is open
  and within the window.
- :meth:`Clusterer.file` adds a story that is already stored with its cluster (the
  index is rebuilt from the database at start-up, and stories other daemons stored are
  filed before each decision).
- :meth:`Clusterer.forget` takes stories back out (a write that failed, a story another
  daemon stored first under another cluster).
- :meth:`Clusterer.alerted` says which watchlists a cluster's stories alerted: a story
  alerts a watchlist only when no earlier story of its cluster did.
- :meth:`Clusterer.outlets` and :meth:`Clusterer.escalated` say how many outlets told a
  cluster within some time of its first story, and which watchlists were already sent
  the "now reported by N outlets" follow-up (once per cluster and watchlist).

No I/O; the caller keeps it in step with the database (``monitor.app.clusters``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from monitor.clustering.decide import Settings, assign
from monitor.clustering.features import Signature, Story, Vocabulary, signature
from monitor.clustering.index import CandidateIndex

__all__ = ["SAME_TEXT", "Clusterer", "Placement", "language_key"]

#: The shared "feature" of a story that joined a filed story with the same signature.
SAME_TEXT = "=:same text"
_SIGNED = 4096  # texts whose signatures are kept for republished copies


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a new story went: the ``cluster`` it joined (its own identity when it opens
    one), with the ``score`` and the ``shared`` features that decided it (a new cluster:
    the best score found, below the threshold, and nothing shared)."""

    cluster: str
    score: float
    shared: tuple[str, ...] = ()

    def joined(self, ident: str) -> bool:
        return self.cluster != ident


def language_key(language: str | None) -> str:
    """The primary language subtag (``en-GB`` -> ``en``); words only compare within one."""
    return (language or "").split("-")[0].split("_")[0].lower()


class Clusterer:
    """The open clusters and the rules that extend them (see the module docstring)."""

    def __init__(self, vocabulary: Vocabulary, settings: Settings | None = None) -> None:
        self.vocabulary = vocabulary
        self.settings = settings = settings or Settings()
        self.index = CandidateIndex(keep=2 * settings.window)
        self._signed: OrderedDict[tuple[str, str, str], Signature] = OrderedDict()
        self._twins: dict[frozenset[str], str] = {}  # a signature's features -> a story filed with them

    def sign(
        self,
        title: str,
        summary: str,
        language: str | None,
        published: datetime,
        outlet: str = "",
        *,
        seen: datetime | None = None,
    ) -> Signature:
        """The story's signature, dated *published* or *seen* (when it was first seen),
        whichever is earlier: a date in the future must not age the open clusters. The
        same text signed lately is not read again (a wire story republished word for
        word by many outlets)."""
        if seen is not None:
            published = min(published, seen)
        key = (title, summary, language_key(language))
        cached = self._signed.get(key)
        if cached is not None:
            self._signed.move_to_end(key)
            return replace(cached, published=published, outlet=outlet)
        sig = signature(Story(title, summary, key[2], published, outlet), self.vocabulary)
        self._signed[key] = sig
        if len(self._signed) > _SIGNED:
            self._signed.popitem(last=False)
        return sig

    def place(self, ident: str, sig: Signature) -> Placement:
        """Assign the new story *ident* to a cluster and file it there (a story already
        filed keeps its cluster). A story whose signature is a filed story's, published
        within the window of its cluster, joins that cluster without a search."""
        known = self.index.cluster_of(ident)
        if known is not None:
            return Placement(known, 0.0)
        placement = self._twin(sig)
        if placement is None:
            got = assign(sig, self.index, self.settings)
            placement = (
                Placement(ident, got.score) if got.cluster is None else Placement(got.cluster, got.score, got.shared)
            )
        self.index.add(placement.cluster, sig, ident)
        self._remember(sig, ident)
        return placement

    def _twin(self, sig: Signature) -> Placement | None:
        if not sig.features():
            return None
        twin = self._twins.get(sig.features())
        cluster = self.index.cluster_of(twin) if twin is not None else None
        if cluster is None or abs(sig.published - self.index.first(cluster)) > self.settings.window:
            return None
        return Placement(cluster, 1.0, (SAME_TEXT,))

    def _remember(self, sig: Signature, ident: str) -> None:
        self._twins[sig.features()] = ident
        if len(self._twins) > 2 * self.index.stories + 1000:  # drop those of evicted stories
            self._twins = {f: i for f, i in self._twins.items() if self.index.cluster_of(i) is not None}

    def note(self, ident: str, watchlists: Iterable[str]) -> None:
        """Record the watchlists story *ident* (filed by :meth:`place`) alerted."""
        self.index.note(ident, frozenset(watchlists))

    def note_escalated(self, ident: str, watchlists: Iterable[str]) -> None:
        """Record the watchlists whose follow-up story *ident* (filed) brought about."""
        self.index.note_escalated(ident, frozenset(watchlists))

    def file(
        self, ident: str, sig: Signature, cluster: str, watchlists: Iterable[str] = (), escalated: Iterable[str] = ()
    ) -> None:
        """File a stored story under its stored cluster (nothing if already filed), with
        the watchlists it alerted and the escalations recorded with it."""
        self.index.add(cluster, sig, ident, frozenset(watchlists), frozenset(escalated))
        self._remember(sig, ident)

    def forget(self, idents: Iterable[str]) -> None:
        for ident in idents:
            self.index.discard(ident)

    def alerted(self, cluster: str) -> frozenset[str]:
        return self.index.alerted(cluster)

    def alerted_by(self, cluster: str, watchlist: str) -> str | None:
        return self.index.alerted_by(cluster, watchlist)

    def escalated(self, cluster: str) -> frozenset[str]:
        return self.index.escalated(cluster)

    def outlets(self, cluster: str, within: timedelta) -> tuple[str, ...]:
        return self.index.outlets(cluster, within)

    def knows(self, ident: str) -> bool:
        return self.index.cluster_of(ident) is not None
