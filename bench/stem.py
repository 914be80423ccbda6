"""What Russian and Ukrainian stemming costs: per word, and for the shipped watchlists.

Run: ``.venv/bin/python bench/stem.py`` (about 10 s). Prints figures only; it asserts nothing.

1. Per word: :func:`~monitor.matching.stemming.stem_ru` and ``stem_uk`` on the distinct
   Cyrillic words of ``tests/data/labelled_headlines.jsonl``, the English stemmer on its
   distinct Latin words (the baseline), and Snowball's Russian stemmer when
   ``snowballstemmer`` happens to be installed (it is not a dependency: see the
   stemming module's docstring). Medians of 7 rounds, unmemoised calls.
2. Matching: the shipped ``config.yaml`` watchlists with their ``stem:`` settings, against
   the same watchlists with ``stem: [en, fr]`` on the pact list only (the settings before
   ru and uk existed), on the labelled headlines plus every story of the feeds in
   ``tests/fixtures/``. A fresh matcher per round (cold memos), rounds interleaved;
   medians of CPU time and the median of the per-round ratios.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import feedparser
from ruamel.yaml import YAML

from monitor.matching.matcher import Matcher, WatchlistQuery
from monitor.matching.stemming import stem_en, stem_ru, stem_uk
from monitor.matching.textnorm import fold, words

ROOT = Path(__file__).resolve().parents[1]
ROUNDS = 7


def _labelled() -> list[tuple[str, str]]:
    lines = (ROOT / "tests" / "data" / "labelled_headlines.jsonl").read_text(encoding="utf-8").splitlines()
    return [(row["title"], row["summary"]) for row in map(json.loads, filter(str.strip, lines))]


def _per_word(fn: Callable[[str], str], vocabulary: list[str]) -> float:
    """Median nanoseconds per call over :data:`ROUNDS` rounds of 20 passes."""
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(20):
            for word in vocabulary:
                fn(word)
        times.append((time.perf_counter() - start) / (20 * len(vocabulary)))
    return statistics.median(times) * 1e9


def per_word(stories: list[tuple[str, str]]) -> None:
    vocab = {w for title, summary in stories for w in words(fold(f"{title} {summary}"))}
    cyrillic = sorted(w for w in vocab if w.isalpha() and not w.isascii() and all("а" <= c <= "ї" for c in w))
    latin = sorted(w for w in vocab if w.isascii() and w.isalpha())
    print(f"per word ({len(cyrillic)} Cyrillic words, {len(latin)} Latin words; median of {ROUNDS}):")
    base = _per_word(stem_en, latin)
    print(f"  stem_en on Latin words (baseline): {base:7.0f} ns")
    for name, fn in (("stem_ru", stem_ru), ("stem_uk", stem_uk)):
        t = _per_word(fn, cyrillic)
        print(f"  {name} on Cyrillic words:         {t:7.0f} ns  ({t / base:.1f}x the baseline)")
    try:
        import snowballstemmer
    except ImportError:
        print("  snowballstemmer not installed: Snowball's Russian not measured")
        return
    t = _per_word(snowballstemmer.stemmer("russian").stemWord, cyrillic)
    print(f"  Snowball russian on Cyrillic words: {t:7.0f} ns  ({t / base:.1f}x the baseline)")


def _watchlists(config: dict[str, Any], stems: bool) -> list[WatchlistQuery]:
    out = []
    for w in config["watchlists"]:
        before = ("en", "fr") if w["name"] == "dprk-russia-pact" else ()
        out.append(WatchlistQuery(str(w["name"]), str(w["query"]), tuple(w.get("stem") or ()) if stems else before))
    return out


def matching(stories: list[tuple[str, str]]) -> None:
    config = YAML(typ="safe").load((ROOT / "config.yaml").read_text(encoding="utf-8"))
    aliases = {str(k): str(v) for k, v in config["aliases"].items()}
    for path in sorted((ROOT / "tests" / "fixtures").glob("*.xml")):
        for e in feedparser.parse(path.read_bytes()).entries:
            stories.append((e.get("title", ""), e.get("summary", "")[:600]))
    times: dict[bool, list[float]] = {False: [], True: []}
    found: dict[bool, int] = {}
    for _ in range(ROUNDS):
        for stems in (False, True):
            matcher = Matcher(_watchlists(config, stems), aliases)
            start = time.process_time()
            found[stems] = sum(len(matcher.match(t, s)) for t, s in stories)
            times[stems].append(time.process_time() - start)
    ratios = [new / old for old, new in zip(times[False], times[True], strict=True)]
    print(f"matching {len(stories)} stories with the shipped watchlists (CPU, median of {ROUNDS}, cold memos):")
    print(f"  stem as before ru/uk: {statistics.median(times[False]) * 1e3:6.1f} ms, {found[False]} matches")
    print(f"  stem as shipped now:  {statistics.median(times[True]) * 1e3:6.1f} ms, {found[True]} matches")
    print(f"  ratio now / before:   {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    labelled = _labelled()
    per_word(labelled)
    matching(list(labelled))
