"""The default watchlists of config.yaml, measured on the hand-labelled headlines.

config.yaml's ``aliases:`` and ``watchlists:`` are read with ruamel.yaml directly (not
through monitor.config.model) so that this test judges the queries alone. Every labelled
item (title and summary, as a feed gives them) goes through the real Matcher; each
watchlist must keep precision and recall >= 0.95, and the seed article of the product
must match all three themes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from monitor.matching.matcher import Matcher, WatchlistQuery

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config.yaml"
LABELLED = Path(__file__).parent / "data" / "labelled_headlines.jsonl"
SEED = Path(__file__).parent / "fixtures" / "seed-article-fr.txt"
THEMES = ("dprk-russia-pact", "kursk-troops", "dprk-russia-sanctions")
MIN_SCORE = 0.95


@dataclass
class Score:
    true_pos: int = 0
    false_pos: list[str] = field(default_factory=list)
    false_neg: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        found = self.true_pos + len(self.false_pos)
        return self.true_pos / found if found else 0.0

    @property
    def recall(self) -> float:
        relevant = self.true_pos + len(self.false_neg)
        return self.true_pos / relevant if relevant else 0.0


def _matcher() -> Matcher:
    config = YAML(typ="safe").load(CONFIG.read_text(encoding="utf-8"))
    watchlists = [
        WatchlistQuery(str(w["name"]), str(w["query"]), tuple(w.get("stem") or ())) for w in config["watchlists"]
    ]
    aliases = {str(k): str(v) for k, v in (config.get("aliases") or {}).items()}
    return Matcher(watchlists, aliases)


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return _matcher()


@pytest.fixture(scope="module")
def scores(matcher: Matcher) -> dict[str, Score]:
    items = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(items) >= 200
    result = {name: Score() for name in THEMES}
    for item in items:
        found = {r.watchlist for r in matcher.match(item["title"], item["summary"])}
        for name, score in result.items():
            wanted = name in item["labels"]
            line = f"{item['id']}: {item['title']}"
            if name in found and wanted:
                score.true_pos += 1
            elif name in found:
                score.false_pos.append(line)
            elif wanted:
                score.false_neg.append(line)
    return result


def test_the_config_has_the_three_watchlists(matcher: Matcher) -> None:
    assert set(THEMES) <= set(matcher.names)


@pytest.mark.parametrize("name", THEMES)
def test_precision_and_recall(name: str, scores: dict[str, Score]) -> None:
    score = scores[name]
    report = (
        f"{name}: precision {score.precision:.3f}, recall {score.recall:.3f} "
        f"(true positives {score.true_pos})\n"
        + "".join(f"  false positive {line}\n" for line in score.false_pos)
        + "".join(f"  missed         {line}\n" for line in score.false_neg)
    )
    print(report)
    assert score.precision >= MIN_SCORE and score.recall >= MIN_SCORE, report


def test_the_seed_article_matches_all_three(matcher: Matcher) -> None:
    title, summary = SEED.read_text(encoding="utf-8").split("\n", 1)
    results = {r.watchlist: r for r in matcher.match(title, summary)}
    assert set(THEMES) <= set(results), sorted(results)
    for result in results.values():
        for hit in result.hits:
            source = title if hit.field == "title" else summary
            assert source[hit.start : hit.end] == hit.text
    assert "Koursk" in results["kursk-troops"].terms
