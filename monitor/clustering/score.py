"""B-cubed precision and recall of a clustering against gold labels (pure).

For each item, precision is the share of its predicted cluster that shares its gold
label, recall the share of its gold cluster that shares its predicted cluster; the
figures are the averages over all items (Bagga and Baldwin, 1998). B-cubed is used rather
than pairwise counts because it weighs every story equally: one wrong merge of two big
events costs in proportion to the stories it misleads, and singletons count. Cost:
O(n) with two dictionaries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass

__all__ = ["BCubed", "b_cubed"]


@dataclass(frozen=True, slots=True)
class BCubed:
    """Averaged B-cubed precision and recall (both 1.0 for an empty clustering)."""

    precision: float
    recall: float

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 0.0 if total == 0 else 2 * self.precision * self.recall / total


def b_cubed(predicted: Mapping[str, Hashable], gold: Mapping[str, Hashable]) -> BCubed:
    """Score *predicted* (item -> cluster) against *gold* (item -> label); same items.

    Raises ``ValueError`` when the two mappings do not cover the same items.
    """
    if predicted.keys() != gold.keys():
        raise ValueError("predicted and gold clusterings must cover the same items")
    if not predicted:
        return BCubed(1.0, 1.0)
    both = Counter((predicted[i], gold[i]) for i in predicted)
    per_predicted = Counter(predicted.values())
    per_gold = Counter(gold.values())
    precision = sum(both[predicted[i], gold[i]] / per_predicted[predicted[i]] for i in predicted)
    recall = sum(both[predicted[i], gold[i]] / per_gold[gold[i]] for i in predicted)
    return BCubed(precision / len(predicted), recall / len(predicted))
