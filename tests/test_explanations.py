"""Explanations stay exactly what users were shown: the hits of every match, on every
entry of the fixture feeds, equal those recorded from the matcher before its
explanation path was rewritten for speed (``tests/fixtures/matcher-explanations.json.gz``).

The record holds its own watchlists and aliases (the default config's, and the first
1,000 of ``bench/match.py``'s generated set), so later edits to ``config.yaml`` or to the
benchmark do not move it. Stemming is left out of the record (``stem: []``) because
the stemmer evolves on its own; stemmed explanations are checked by
``tests/test_matcher.py``, and below by agreement between the matcher's two ways of
explaining (the direct one for AND/OR/NOT queries, the tree walk for the rest).

Regenerate only for an intended change of explanations:
``.venv/bin/python -m tests.test_explanations --write``.
"""

from __future__ import annotations

import functools
import gzip
import html
import json
import random
import re
import sys
from pathlib import Path
from typing import Any

import feedparser
import pytest

from monitor.matching.matcher import Matcher, WatchlistQuery, _Story

FIXTURES = Path(__file__).parent / "fixtures"
RECORD = FIXTURES / "matcher-explanations.json.gz"
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


@functools.cache
def _stories() -> tuple[tuple[str, str, str], ...]:
    """(where, title, summary) of every entry of every fixture feed, raw as feedparser
    gives them (HTML included) and as text (tags stripped, entities decoded), as the
    daemon and the benchmark see them."""
    out: list[tuple[str, str, str]] = []
    for path in sorted(FIXTURES.iterdir()):
        if path.suffix not in (".xml", ".rdf", ".atom", ".rss") or path.name.startswith("giantbomb-"):
            continue
        for i, entry in enumerate(feedparser.parse(path.read_bytes()).entries):
            title, summary = str(entry.get("title", "")), str(entry.get("summary", ""))
            out.append((f"{path.name}#{i}", title, summary))
            text = [_SPACE.sub(" ", html.unescape(_TAG.sub(" ", v))).strip() for v in (title, summary)]
            out.append((f"{path.name}#{i}/text", text[0], text[1]))
    return tuple(out)


def _explain(matcher: Matcher) -> list[list[Any]]:
    return [
        [where, r.watchlist, [[h.term, h.field, h.start, h.end, h.text] for h in r.hits]]
        for where, title, summary in _stories()
        for r in matcher.match(title, summary)
    ]


@functools.cache
def _record() -> dict[str, Any]:
    got: dict[str, Any] = json.loads(gzip.decompress(RECORD.read_bytes()).decode("utf-8"))
    return got


def _recorded_matcher() -> Matcher:
    record = _record()
    return Matcher([WatchlistQuery(name, query) for name, query in record["watchlists"]], record["aliases"])


def test_explanations_equal_the_recorded_ones_on_every_fixture_entry() -> None:
    record = _record()
    got = _explain(_recorded_matcher())
    assert len(got) == len(record["matches"]) >= 1000
    for mine, theirs in zip(got, record["matches"], strict=True):
        assert mine == theirs


def test_memos_stay_under_their_cap_and_explanations_do_not_change() -> None:
    """Memos far too small for the fixture vocabulary are cleared over and over (midway
    through stories too); the explanations stay the recorded ones and no memo grows
    past its cap."""
    matcher = _recorded_matcher()
    cap = 40
    matcher._word_keys.limit = cap  # private: force the clearing paths
    matcher._token_words.limit = cap
    matcher._token_offsets.limit = cap
    assert _explain(matcher) == _record()["matches"]
    assert matcher._word_keys.clears > 100
    for memo in (matcher._word_keys, matcher._word_hits, matcher._word_ends, matcher._token_words):
        assert 0 < len(memo) <= cap
    assert len(matcher._token_offsets) <= cap


def test_the_record_covers_every_kind_of_explanation() -> None:
    """Phrases, wildcards, '?' patterns, NEAR and field scopes all explain some match."""
    terms = {hit[0] for _, _, hits in _record()["matches"] for hit in hits}
    assert any(t.startswith('"') for t in terms)
    assert any(t.endswith("*") for t in terms)
    assert any("?" in t for t in terms)
    queries = " ".join(q for _, q in _record()["watchlists"])
    assert "NEAR/" in queries


@pytest.mark.parametrize("stem", [(), ("en", "fr")])
def test_direct_explanations_equal_the_tree_walk(stem: tuple[str, ...]) -> None:
    """The direct explanation of AND/OR/NOT queries (a lookup of the present keys' atoms)
    equals the general one (walking the query tree to the atoms that made it true), with
    and without stemming, on every fixture entry."""
    record = _record()
    matcher = Matcher([WatchlistQuery(n, q, stem) for n, q in record["watchlists"]], record["aliases"])
    flat = [w for w in matcher._watchlists if w.flat is not None]
    assert len(flat) >= 100
    compared = 0
    for _, title, summary in _stories():
        story = _Story(matcher, title, summary)
        for w in matcher._matching(story):
            wl = matcher._watchlists[w]
            if wl.flat is not None:
                direct = story.result(wl)
                walked = _Story(matcher, title, summary).result(wl, walk=True)
                assert direct == walked
                compared += 1
    assert compared >= 200


def _write() -> None:  # pragma: no cover - run by hand, see the module docstring
    import yaml

    sys.path.insert(0, str(Path(__file__).parents[1] / "bench"))
    import match as bench

    config = yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text(encoding="utf-8"))
    feeds = sorted(p for p in bench.FIXTURES.iterdir() if p.suffix in (".xml", ".rdf", ".atom", ".rss"))
    base = bench.load_base([p for p in feeds if not p.name.startswith(bench.NOT_NEWS)])
    df, phrases = bench.story_terms(base)
    generated = bench.make_watchlists(2000, base[0::2], df, len(base), phrases, random.Random(1))[:1000]
    aliases = {**config["aliases"], **{f"bench-{k}": v for k, v in bench.ALIASES.items()}}
    watchlists = [[w["name"], w["query"]] for w in config["watchlists"]]
    watchlists += [
        [w.name, w.query.replace("@dprk", "@bench-dprk").replace("@russia", "@bench-russia")] for w in generated
    ]
    record: dict[str, Any] = {"aliases": aliases, "watchlists": watchlists, "matches": []}
    matcher = Matcher([WatchlistQuery(name, query) for name, query in watchlists], aliases)
    record["matches"] = _explain(matcher)
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
    RECORD.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))
    print(f"{len(record['matches'])} matches written to {RECORD}")


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:] == ["--write"]:
        _write()
