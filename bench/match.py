"""Benchmark the matcher against feedparser on the same stories.

Run: ``.venv/bin/python bench/match.py`` (defaults: 200 and 2,000 watchlists, 100,000
stories). Prints figures only; it asserts nothing.

* Stories: every news feed file in ``tests/fixtures/`` (see ``NOT_NEWS`` for the few
  left out; ``--all-feeds`` keeps them) is parsed with feedparser; each entry's title
  and summary (HTML stripped to text) is a base story. Base stories are
  replicated with variation up to ``--stories``: words of the title are swapped with
  words of other stories and the summary is recombined from sentences of two stories,
  so no two stories are identical and caches cannot cheat.
* Watchlists: topical, about 20 terms each, from the stories' own vocabulary plus
  DPRK/Russia vocabulary in English, French, Russian and Korean (see
  :func:`make_watchlists`): OR-groups of spellings ANDed together, exclusions, phrases,
  ``*`` and ``?`` wildcards, NEAR, aliases, stemming. The match count is printed, so
  the selectivity of the generated set is visible.
* Parse time: feedparser's entries/s is measured by parsing the fixture files
  themselves (whole files, several rounds), then scaled to the number of stories:
  ``parse time = stories / (entries/s)``. The matcher's time is measured on all stories.
"""

from __future__ import annotations

import argparse
import html
import random
import re
import statistics
import sys
import time
from pathlib import Path

import feedparser

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from monitor.matcher import Matcher, WatchlistQuery, _Story  # noqa: E402
from monitor.textnorm import fold, words  # noqa: E402

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
# Not news: a podcast (730 near-identical entries that would swamp the corpus), a quotes
# site, a personal blog, and the parser projects' tiny synthetic samples.
NOT_NEWS = ("giantbomb-", "ibash-", "intertwingly-", "feedparser-", "node-feedparser-")
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")

# DPRK/Russia vocabulary, by concept: a watchlist ORs spellings of one concept.
DOMAIN_GROUPS = [
    [
        '"North Korea"',
        '"North Korean"',
        "DPRK",
        "Pyongyang",
        '"Kim Jong Un"',
        '"Corée du Nord"',
        "nord-coréen*",
        '"Северная Корея"',
        "КНДР",
        "북한",
    ],
    ["Russia", "Russian*", "Moscow", "Kremlin", "Putin", "Poutine", "Russie", "russe", "Россия", "러시아"],
    ["Ukraine", "Ukrainian*", "Kyiv", "Kiev", "Kursk", "Koursk", "Курск*", "Zelensky*", "Zelenskyy"],
    ["troops", "soldiers", "soldats", "troupes", "missile*", "munitions", "artillery", "deploy*", "déploy*"],
    [
        "treaty",
        "pact",
        "alliance",
        '"mutual defence"',
        '"mutual defense"',
        '"défense mutuelle"',
        "Lavrov",
        "traité",
        "pacte",
    ],
    ["sanction*", "embargo", "Treasury", '"export controls"', "blacklist*", "OFAC", '"asset freeze"'],
    ["NATO", "OTAN", "Seoul", "Beijing", "China", "Iran", "Tehran", "Séoul", "Pékin"],
]
STOP = set(
    "the a an and or not of to in on for with by at from as is are was were be been it its this that "
    "these those he she they we you i his her their our your has have had will would can could may "
    "might but if than then so no yes all any more most some such into over after before about up out "
    "le la les de des du un une et ou en au aux par pour sur dans est sont a il elle ils qui que ne pas "
    "plus se ce cette ces son sa ses leur leurs".split()
)


def to_text(value: str) -> str:
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", value))).strip()


def load_base(feeds: list[Path]) -> list[tuple[str, str]]:
    base: list[tuple[str, str]] = []
    for path in feeds:
        parsed = feedparser.parse(path.read_bytes())
        for entry in parsed.entries:
            title = to_text(entry.get("title", ""))
            summary = to_text(entry.get("summary", ""))
            if title or summary:
                base.append((title, summary))
    return base


def parse_rate(feeds: list[Path], rounds: int) -> tuple[float, int]:
    """feedparser entries per second over the fixture files (median of *rounds*)."""
    blobs = [p.read_bytes() for p in feeds]
    rates: list[float] = []
    count = 0
    for _ in range(rounds):
        t0 = time.process_time()
        count = sum(len(feedparser.parse(b).entries) for b in blobs)
        rates.append(count / (time.process_time() - t0))
    return statistics.median(rates), count


def make_stories(base: list[tuple[str, str]], n: int, rng: random.Random) -> list[tuple[str, str]]:
    vocab = [w for t, _ in base for w in t.split() if len(w) > 3]
    sentences = [s for _, summ in base for s in _SENTENCE.split(summ) if s]
    stories: list[tuple[str, str]] = []
    for i in range(n):
        title, summary = base[i % len(base)]
        if i >= len(base):
            tw = title.split()
            for _ in range(max(1, len(tw) // 5)):
                if tw:
                    tw[rng.randrange(len(tw))] = rng.choice(vocab)
            title = " ".join(tw)
            k = rng.randint(1, 3)
            summary = " ".join(rng.choice(sentences) for _ in range(k)) if sentences else summary
        stories.append((title, summary))
    return stories


def content_words(text: str) -> list[str]:
    return [w for w in re.findall(r"[^\W\d_]{4,}", text) if fold(w) not in STOP]


def story_terms(base: list[tuple[str, str]]) -> tuple[dict[str, int], list[str]]:
    """Document frequency of the entries' content words (folded), and their frequent
    two-word phrases. Sorted iteration keeps the output independent of hash seeds."""
    df: dict[str, int] = {}
    bigrams: dict[str, int] = {}
    for title, summary in base:
        ws = content_words(f"{title} {summary}")
        for f in sorted({fold(w) for w in ws}):
            df[f] = df.get(f, 0) + 1
        for a, b in zip(ws, ws[1:], strict=False):
            key = f"{a} {b}"
            bigrams[key] = bigrams.get(key, 0) + 1
    phrases = sorted(f'"{p}"' for p, c in bigrams.items() if c >= 2)
    return df, phrases


def make_watchlists(
    count: int,
    base: list[tuple[str, str]],
    df: dict[str, int],
    docs: int,
    phrases: list[str],
    rng: random.Random,
) -> list[WatchlistQuery]:
    """Topical watchlists, as analysts write them: each OR-group lists spellings of one
    concept, groups are ANDed, a few exclusions follow (about 20 terms in all).

    One in four watchlists is about the DPRK/Russia domain (three concept groups of the
    vocabulary above). The others follow the subject of a seed story: a topic group of its
    most distinctive words and one phrase (sometimes a domain spelling), and a context
    group of its other not-too-common words. Every fifth adds a NEAR, every third is stemmed (en, fr),
    some use the @dprk/@russia aliases, and words get ``*``/``?`` wildcards at random.
    """
    everyday = sorted(w for w, c in df.items() if 3 <= c <= max(4, docs // 25))

    def vary(w: str) -> str:
        r = rng.random()
        if r < 0.12 and len(w) > 6:
            return w[: len(w) - 2] + "*"
        if r < 0.15 and len(w) > 5 and w.isalpha():
            i = rng.randrange(1, len(w) - 1)
            return w[:i] + "?" + w[i + 1 :]
        return w

    def group(terms: list[str]) -> str:
        return "(" + rng.choice([" OR ", " | "]).join(dict.fromkeys(terms)) + ")"

    out: list[WatchlistQuery] = []
    for i in range(count):
        title, summary = base[rng.randrange(len(base))]
        own = sorted(set(content_words(f"{title} {summary}")), key=lambda w: (df.get(fold(w), 0), w))
        if len(own) < 8:
            own += rng.sample(everyday, 8 - len(own))
        if i % 4 == 0:
            concepts = rng.sample(DOMAIN_GROUPS, 3)
            groups = [rng.sample(c, min(len(c), rng.randint(5, 8))) for c in concepts]
            if i % 8 == 0:
                groups[0].append(rng.choice(["@dprk", "@russia"]))
        else:
            common = max(4, docs // 100)
            distinctive = own[:6]
            rest = [w for w in own[6:] if df.get(fold(w), 0) <= common] or own
            topic = [vary(w) for w in rng.sample(distinctive, min(len(distinctive), rng.randint(4, 6)))]
            if phrases:
                topic.append(rng.choice(phrases))
            if rng.random() < 0.3:
                topic += rng.sample(rng.choice(DOMAIN_GROUPS), 1)
            context = [vary(w) for w in rng.sample(rest, min(len(rest), rng.randint(5, 8)))]
            if i % 11 == 0:
                context.append("@russia")
            groups = [topic, context]
        query = " AND ".join(group(g) for g in groups)
        if i % 5 == 0:
            near = f"{rng.choice(own)} NEAR/{rng.randint(3, 10)} {rng.choice(rng.choice(DOMAIN_GROUPS))}"
            query = f"(({query}) OR ({near}))"
        exclude = dict.fromkeys(rng.choice(everyday) for _ in range(rng.randint(1, 3)))
        query += " " + " ".join("-" + t for t in exclude)
        stem = ("en", "fr") if i % 3 == 0 else ()
        out.append(WatchlistQuery(f"wl-{i:04d}", query, stem))
    return out


ALIASES = {
    "dprk": '"North Korea" | "North Korean" | DPRK | Pyongyang | "Corée du Nord" | nord-coréen* '
    '| "Северная Корея" | КНДР | 북한',
    "russia": "Russia | Russian | Moscow | Kremlin | Russie | russe | Moscou | Россия | 러시아",
}


def time_matcher(matcher: Matcher, stories: list[tuple[str, str]], runs: int) -> tuple[float, int]:
    times: list[float] = []
    matched = 0
    for _ in range(runs):
        t0 = time.process_time()
        matched = 0
        match = matcher.match
        for title, summary in stories:
            matched += len(match(title, summary))
        times.append(time.process_time() - t0)
    return statistics.median(times), matched


def time_without_explanations(matcher: Matcher, stories: list[tuple[str, str]], runs: int) -> float:
    """Diagnostic (private API): finding the matching watchlists, without building Hits.

    Explaining a match costs about as much as scanning a story, and ten times the
    watchlists give ten times the matches; this separates the two costs.
    """
    times: list[float] = []
    for _ in range(runs):
        t0 = time.process_time()
        for title, summary in stories:
            matcher._matching(_Story(matcher, title, summary))
        times.append(time.process_time() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stories", type=int, default=100_000)
    ap.add_argument("--watchlists", type=int, default=200)
    ap.add_argument("--scale", type=int, default=10, help="second run uses watchlists x scale (default 10)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per size; the median is reported")
    ap.add_argument("--parse-rounds", type=int, default=3)
    ap.add_argument("--feeds", type=Path, default=FIXTURES, help="directory of feed files")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--all-feeds", action="store_true", help="also use the non-news fixtures")
    args = ap.parse_args(argv)

    rng = random.Random(args.seed)
    feeds = sorted(
        p
        for p in args.feeds.iterdir()
        if p.suffix in (".xml", ".rdf", ".atom", ".rss") and (args.all_feeds or not p.name.startswith(NOT_NEWS))
    )
    base = load_base(feeds)
    # Watchlists are written about subjects, not about the very stories they are tested
    # on: even-numbered entries seed the watchlists, odd-numbered ones make the stories.
    seeds, corpus = base[0::2], base[1::2]
    stories = make_stories(corpus, args.stories, rng)
    avg_chars = statistics.fmean(len(t) + len(s) for t, s in stories)
    avg_words = statistics.fmean(len(words(fold(t))) + len(words(fold(s))) for t, s in stories[:5000])
    print(f"feeds: {len(feeds)} files in {args.feeds}, {len(base)} entries ({len(corpus)} for stories)")
    print(f"stories: {len(stories):,} (avg {avg_chars:.0f} chars, ~{avg_words:.0f} words, title+summary)")

    rate, per_round = parse_rate(feeds, args.parse_rounds)
    parse_s = len(stories) / rate
    print(
        f"feedparser: {rate:,.0f} entries/s (median of {args.parse_rounds} parses of the {per_round} entries "
        f"of those files); scaled to {len(stories):,} stories: {parse_s:.1f} s"
    )

    df, phrases = story_terms(base)
    results: dict[int, float] = {}
    bare_results: dict[int, float] = {}
    for count in (args.watchlists, args.watchlists * args.scale):
        wls = make_watchlists(count, seeds, df, len(base), phrases, random.Random(args.seed + count))
        t0 = time.process_time()
        matcher = Matcher(wls, ALIASES)
        build = time.process_time() - t0
        keys = len(matcher._key_len)
        seconds, matched = time_matcher(matcher, stories, args.runs)
        bare = time_without_explanations(matcher, stories, 1)
        results[count] = seconds
        bare_results[count] = bare
        print(
            f"{count:>5} watchlists ({keys:,} automaton keys, built in {build * 1000:.0f} ms): "
            f"{len(stories) / seconds:,.0f} stories/s, {seconds:.2f} s for all (median of {args.runs}), "
            f"{matched:,} matches ({matched / len(stories):.2f} a story), {100 * seconds / parse_s:.1f} % of parse time"
        )
        print(f"      of which explaining the matches (Hits): {seconds - bare:.2f} s; finding them: {bare:.2f} s")
    small, large = results[args.watchlists], results[args.watchlists * args.scale]
    print(f"ratio match/parse at {args.watchlists} watchlists: {small / parse_s:.3f} (goal <= 0.10)")
    print(
        f"ratio {args.watchlists * args.scale}/{args.watchlists} watchlists: {large / small:.2f}x "
        f"(goal <= 2x for {args.scale}x the watchlists); finding matches only: "
        f"{bare_results[args.watchlists * args.scale] / bare_results[args.watchlists]:.2f}x"
    )


if __name__ == "__main__":
    main()
