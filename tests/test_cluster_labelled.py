"""The clusterer measured on the hand-labelled stories of ``tests/data/clusters.jsonl``.

Stories go through :func:`monitor.clustering.decide.assign` one by one in published
order, as a daemon would see them, with the vocabulary built from config.yaml's
``aliases:``. The clustering must keep B-cubed precision >= 0.97 and recall >= 0.90
against the gold events, and no near-miss pair of ``tests/data/cluster_near_misses.json``
(distinct events sharing their actors) may end in one cluster.

Measured with the defaults on 344 stories of 84 events: precision 1.000, recall 0.915,
no near miss merged, 0.55 ms a story (signature and decision); what moves these figures
is tabled in :mod:`monitor.clustering.decide`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import feedparser
import pytest
from ruamel.yaml import YAML

from monitor.clustering.decide import Settings, assign
from monitor.clustering.features import Story, signature, vocabulary
from monitor.clustering.index import CandidateIndex
from monitor.clustering.score import b_cubed

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
STORIES = DATA / "clusters.jsonl"
NEAR_MISSES = DATA / "cluster_near_misses.json"
MIN_PRECISION = 0.97
MIN_RECALL = 0.90


def _stories() -> list[dict[str, Any]]:
    lines = STORIES.read_text(encoding="utf-8").splitlines()  # a missing file fails here, loudly
    rows = [json.loads(line) for line in lines if line.strip()]
    return sorted(rows, key=lambda r: (r["published"], r["id"]))


def cluster(
    rows: list[dict[str, Any]], settings: Settings | None = None, background: list[Story] | None = None
) -> dict[str, str]:
    """Story id -> predicted cluster, assigning in the given order (after *background*)."""
    config = YAML(typ="safe").load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    vocab = vocabulary({str(k): str(v) for k, v in config["aliases"].items()})
    settings = settings or Settings()
    index = CandidateIndex(keep=2 * settings.window)
    for i, story in enumerate(background or ()):
        sig = signature(story, vocab)
        index.add(assign(sig, index, settings).cluster or f"bg{i}", sig, f"bg{i}")
    predicted: dict[str, str] = {}
    for row in rows:
        published = datetime.fromisoformat(row["published"].replace("Z", "+00:00"))
        sig = signature(Story(row["title"], row["summary"], row["language"], published, row["outlet"]), vocab)
        chosen = assign(sig, index, settings).cluster
        cluster_id = str(len(predicted)) if chosen is None else chosen  # a new cluster takes a fresh id
        index.add(cluster_id, sig)
        predicted[row["id"]] = cluster_id
    return predicted


@pytest.fixture(scope="module")
def clustered() -> tuple[list[dict[str, Any]], dict[str, str]]:
    rows = _stories()
    return rows, cluster(rows)


def test_b_cubed_precision_and_recall(clustered: tuple[list[dict[str, Any]], dict[str, str]]) -> None:
    rows, predicted = clustered
    score = b_cubed(predicted, {r["id"]: r["event"] for r in rows})
    assert score.precision >= MIN_PRECISION and score.recall >= MIN_RECALL, score


def test_near_misses_stay_apart(clustered: tuple[list[dict[str, Any]], dict[str, str]]) -> None:
    rows, predicted = clustered
    pairs = json.loads(NEAR_MISSES.read_text(encoding="utf-8"))
    clusters_of: dict[str, set[int]] = {}
    for row in rows:
        clusters_of.setdefault(row["event"], set()).add(predicted[row["id"]])
    merged = [p for p in pairs if clusters_of[p["a"]] & clusters_of[p["b"]]]
    assert len(pairs) >= 1 and merged == []


def _unrelated_news() -> list[Story]:
    """The real feeds of tests/fixtures (news of every kind, 2018-2024), as stories a
    daemon would have clustered before the labelled ones arrive."""
    stories = []
    for path in sorted((ROOT / "tests" / "fixtures").glob("*.xml")):
        language = "fr" if "-fr" in path.name else "en"
        for e in feedparser.parse(path.read_bytes()).entries:
            stories.append(
                Story(e.get("title", ""), e.get("summary", "")[:600], language, datetime(2024, 1, 1, tzinfo=UTC))
            )
    return stories


def test_unrelated_news_does_not_make_events_merge() -> None:
    """Off-theme stories must not make the shared actors look rare (frequencies count only
    stories naming a watched concept): with 1,280 of them first, precision holds."""
    rows = _stories()
    background = _unrelated_news()
    assert len(background) > 1000
    score = b_cubed(cluster(rows, background=background), {r["id"]: r["event"] for r in rows})
    assert score.precision >= MIN_PRECISION and score.recall >= 0.88, score  # 0.983 and 0.899 measured
