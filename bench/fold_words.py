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

``--matcher N`` also times the whole matcher (N watchlists, ``bench/match.py``'s
generator) on the same stories with its ``fold_words`` switched between old and new in
alternate rounds, each side with its own warm matcher: the end-to-end effect.
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

from monitor.matching import matcher as matcher_module  # noqa: E402
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


def time_matchers(count: int, base: list[tuple[str, str]], stories: list[tuple[str, str]], runs: int) -> None:
    """Print the matcher's CPU time a story with the old and the new fold_words."""
    df, phrases = bench_match.story_terms(base)
    watchlists = bench_match.make_watchlists(count, base[0::2], df, len(base), phrases, random.Random(1))
    sides = {"old": _old_fold_words, "new": fold_words}
    matchers = {side: bench_match.Matcher(watchlists, bench_match.ALIASES) for side in sides}
    times: dict[str, list[float]] = {side: [] for side in sides}
    for r in range(runs + 1):
        for side, fn in sides.items():
            matcher_module.fold_words = fn  # type: ignore[assignment]
            cpu_s = bench_match.time_matcher(matchers[side], stories)[0]
            if r:  # round 0 warms both
                times[side].append(cpu_s)
    matcher_module.fold_words = fold_words
    med = statistics.median
    ratio = med([n / o for n, o in zip(times["new"], times["old"], strict=True)])
    old_us, new_us = (med(times[side]) / len(stories) * 1e6 for side in sides)
    print(f"matcher, {count} watchlists: old {old_us:.1f} us, new {new_us:.1f} us a story, new/old {ratio:.3f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stories", type=int, default=20_000)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--matcher", type=int, default=0, help="also time the matcher with this many watchlists")
    args = ap.parse_args(argv)
    feeds = sorted(
        p
        for p in bench_match.FIXTURES.iterdir()
        if p.suffix in (".xml", ".rdf", ".atom", ".rss") and not p.name.startswith(bench_match.NOT_NEWS)
    )
    base = bench_match.load_base(feeds)
    corpus = base[1::2]
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
    if args.matcher:
        time_matchers(args.matcher, base, stories, args.runs)


if __name__ == "__main__":
    main()
