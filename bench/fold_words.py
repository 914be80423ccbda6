"""Micro-benchmark of :func:`monitor.matching.textnorm.fold_words` against the previous one.

Run: ``.venv/bin/python bench/fold_words.py`` (defaults: 20,000 stories, 9 rounds). Prints
figures only; it asserts nothing (``tests/test_textnorm.py`` proves the outputs equal).

The texts are the titles and summaries of ``bench/match.py``'s stories (built the same
way from the fixture feeds, with never-seen tokens). Each side has its own warm token
memo (the matcher's steady state); rounds interleave old and new so drift on a shared
machine hits both alike. Times are CPU seconds (``time.process_time``); figures are
medians over rounds, per text, for all texts and for each path the new code takes
(pure ASCII, Latin through the charmap, other scripts through the memo), and the
ratio new/old is the median of the per-round ratios.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import match as bench_match  # noqa: E402

from monitor.matching import textnorm  # noqa: E402
from monitor.matching.textnorm import TokenWords, fold_words  # noqa: E402
from tests.test_textnorm import _latin, _old_fold_words  # noqa: E402


def path_of(text: str) -> str:
    if text.isascii():
        return "ascii"
    return "latin" if _latin(text) else "memo"


def cpu(fn: Callable[[str, TokenWords], list[str]], texts: list[str], memo: TokenWords) -> float:
    t0 = time.process_time()
    for text in texts:
        fn(text, memo)
    return time.process_time() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stories", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args(argv)
    feeds = sorted(
        p
        for p in bench_match.FIXTURES.iterdir()
        if p.suffix in (".xml", ".rdf", ".atom", ".rss") and not p.name.startswith(bench_match.NOT_NEWS)
    )
    corpus = bench_match.load_base(feeds)[1::2]
    stories = bench_match.make_stories(corpus, args.stories, random.Random("1:1"), 2, 0, False)
    texts = [t for story in stories for t in story]
    groups: dict[str, list[str]] = {"all": texts}
    for text in texts:
        groups.setdefault(path_of(text), []).append(text)
    memos = {"old": TokenWords(), "new": TokenWords()}
    sides = {"old": _old_fold_words, "new": fold_words}
    for side, fn in sides.items():
        cpu(fn, texts, memos[side])  # warm-up
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.runs):
        for group, members in groups.items():
            for side, fn in sides.items():
                times.setdefault((group, side), []).append(cpu(fn, members, memos[side]))
    med = statistics.median
    print(f"{len(texts):,} texts ({args.stories:,} stories), {len(textnorm._LATIN_ACCEPTED)} Latin characters")
    for group, members in groups.items():
        old, new = times[(group, "old")], times[(group, "new")]
        ratio = med([n / o for n, o in zip(new, old, strict=True)])
        chars = statistics.fmean(map(len, members))
        old_us, new_us = (med(t) / len(members) * 1e6 for t in (old, new))
        print(
            f"{group:>6}: {len(members):>6,} texts ({chars:.0f} chars avg), "
            f"old {old_us:.2f} us, new {new_us:.2f} us a text, new/old {ratio:.2f}"
        )


if __name__ == "__main__":
    main()
