"""Benchmark the matcher against feedparser on the same stories.

Run: ``.venv/bin/python bench/match.py`` (defaults: 200 and 2,000 watchlists, 100,000
stories, 5 rounds). Prints figures only; it asserts nothing.

* Stories: every news feed file in ``tests/fixtures/`` (see ``NOT_NEWS`` for the few
  left out; ``--all-feeds`` keeps them) is parsed with feedparser; each entry's title
  and summary (HTML stripped to text) is a base story. Base stories are
  replicated with variation up to ``--stories``: words of the title are swapped with
  words of other stories, the summary is recombined from sentences of two stories, and
  ``--fresh`` never-seen tokens (names, figures) are added, so no two stories are
  identical and no memo sees only known words (real news brings new names and numbers
  every day; the fixtures' vocabulary alone is a few thousand words).
* Watchlists: topical, about 20 terms each, from the stories' own vocabulary plus
  DPRK/Russia vocabulary in English, French, Russian and Korean (see
  :func:`make_watchlists`): OR-groups of spellings ANDed together, exclusions, phrases,
  ``*`` and ``?`` wildcards, NEAR, aliases, stemming. The match count is printed, so
  the selectivity of the generated set is visible. The larger set is generated from
  the same seed, so its first watchlists ARE the smaller set (same distribution).
* Parse time: the very stories matched are written out as RSS 2.0 documents
  (``--per-feed`` items each: title, link, guid, date, category, an HTML description)
  and feedparser parses those documents, in every round, in the same process. Real
  feeds carry more per item (the fixture files parse at roughly half that rate: also
  printed), so the ratio against the generated documents is the conservative one.
* Rounds interleave: each round parses the documents once and matches all stories once
  per watchlist set, so drift on a shared machine hits all sides alike. Times are CPU
  seconds of this process (``time.process_time``; wall-clock medians are printed
  too); figures are medians over the rounds, and ratios are medians of the per-round
  ratios.
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

from monitor.matching.matcher import Matcher, WatchlistQuery, _Story  # noqa: E402
from monitor.matching.textnorm import fold, words  # noqa: E402

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


def fresh_token(n: int, rng: random.Random) -> str:
    """The *n*-th never-seen token: a made-up name (capitalised syllables) or a figure."""
    if rng.random() < 0.4:
        return rng.choice(["{:,}", "{}%", "${}m", "{}bn", "{}"]).format(n + 1000)
    syllables = "ka ro vi len dor mi sha tu bel nor zi gan pe lu ver"
    parts = syllables.split()
    name = ""
    while True:
        name += parts[n % len(parts)]
        n //= len(parts)
        if not n:
            break
    return (name + rng.choice(["ov", "ski", "ek", "ia", "", "berg"])).capitalize()


def make_stories(
    base: list[tuple[str, str]], n: int, rng: random.Random, fresh: int, made: int = 0, keep_base: bool = True
) -> list[tuple[str, str]]:
    """*n* stories varied from *base* (the first ones are *base* itself if *keep_base*);
    fresh tokens are numbered from *made* on, so separate calls can use disjoint ones."""
    vocab = [w for t, _ in base for w in t.split() if len(w) > 3]
    sentences = [s for _, summ in base for s in _SENTENCE.split(summ) if s]
    stories: list[tuple[str, str]] = []
    for i in range(n):
        title, summary = base[i % len(base)]
        if i >= len(base) or not keep_base:
            tw = title.split()
            for _ in range(max(1, len(tw) // 5)):
                if tw:
                    tw[rng.randrange(len(tw))] = rng.choice(vocab)
            k = rng.randint(1, 3)
            summary = " ".join(rng.choice(sentences) for _ in range(k)) if sentences else summary
            sw = summary.split()
            for j in range(fresh):
                token = fresh_token(made, rng)
                made += 1
                if j == 0 and rng.random() < 0.3 and tw:
                    tw.insert(rng.randrange(len(tw) + 1), token)
                else:
                    sw.insert(rng.randrange(len(sw) + 1), token)
            title, summary = " ".join(tw), " ".join(sw)
        stories.append((title, summary))
    return stories


_CATEGORIES = ("World", "Politics", "Europe", "Asia", "Business", "Technology", "Science", "Sport")


def render_feeds(stories: list[tuple[str, str]], per_feed: int) -> list[bytes]:
    """The stories as RSS 2.0 documents of *per_feed* items, as a news site would serve them."""
    docs: list[bytes] = []
    esc = html.escape
    for d in range(0, len(stories), per_feed):
        parts = [
            '<?xml version="1.0" encoding="utf-8"?>\n<rss version="2.0"><channel>'
            f"<title>Bench feed {d // per_feed}</title><link>https://news.example/{d}</link>"
            "<description>Generated from the fixture feeds</description>"
        ]
        for i, (title, summary) in enumerate(stories[d : d + per_feed], start=d):
            day, minute = divmod(i, 1440)
            parts.append(
                f"<item><title>{esc(title)}</title><link>https://news.example/a/{i}</link>"
                f'<guid isPermaLink="false">story-{i}</guid>'
                f"<pubDate>Mon, {1 + day % 28:02d} Jan 2024 {minute // 60:02d}:{minute % 60:02d}:00 +0000</pubDate>"
                f"<category>{_CATEGORIES[i % len(_CATEGORIES)]}</category>"
                f"<description>{esc('<p>' + esc(summary) + '</p>')}</description></item>"
            )
        parts.append("</channel></rss>")
        docs.append("".join(parts).encode())
    return docs


def parse_docs(docs: list[bytes]) -> tuple[float, float, int]:
    """(CPU s, wall s, entries) of feedparser parsing *docs*."""
    t0, w0 = time.process_time(), time.perf_counter()
    count = sum(len(feedparser.parse(d).entries) for d in docs)
    return time.process_time() - t0, time.perf_counter() - w0, count


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


def time_matcher(matcher: Matcher, stories: list[tuple[str, str]]) -> tuple[float, float, int, int]:
    """(CPU s, wall s, matches, hits) of matching every story, explanations included."""
    matched = hits = 0
    match = matcher.match
    t0, w0 = time.process_time(), time.perf_counter()
    for title, summary in stories:
        for result in match(title, summary):
            matched += 1
            hits += len(result.hits)
    return time.process_time() - t0, time.perf_counter() - w0, matched, hits


def time_without_explanations(matcher: Matcher, stories: list[tuple[str, str]]) -> float:
    """Diagnostic (private API): CPU s of finding the matching watchlists, without Hits."""
    t0 = time.process_time()
    for title, summary in stories:
        matcher._matching(_Story(matcher, title, summary))
    return time.process_time() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stories", type=int, default=100_000)
    ap.add_argument("--watchlists", type=int, default=200)
    ap.add_argument("--scale", type=int, default=10, help="second set has watchlists x scale (default 10)")
    ap.add_argument("--runs", type=int, default=5, help="rounds (parse + both sets); medians are reported")
    ap.add_argument("--fresh", type=int, default=2, help="never-seen tokens added to each story (default 2)")
    ap.add_argument("--per-feed", type=int, default=50, help="items per generated RSS document")
    ap.add_argument("--feeds", type=Path, default=FIXTURES, help="directory of feed files")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--all-feeds", action="store_true", help="also use the non-news fixtures")
    args = ap.parse_args(argv)

    feeds = sorted(
        p
        for p in args.feeds.iterdir()
        if p.suffix in (".xml", ".rdf", ".atom", ".rss") and (args.all_feeds or not p.name.startswith(NOT_NEWS))
    )
    base = load_base(feeds)
    # Watchlists are written about subjects, not about the very stories they are tested
    # on: even-numbered entries seed the watchlists, odd-numbered ones make the stories.
    seeds, corpus = base[0::2], base[1::2]
    n = args.stories

    def round_stories(r: int) -> list[tuple[str, str]]:
        """Round *r*'s stories: the same distribution every round, but new stories with
        new fresh tokens, as a daemon sees them (each story is matched once); round 0
        is the warm-up, and starts with the base stories themselves."""
        return make_stories(corpus, n, random.Random(f"{args.seed}:{r}"), args.fresh, r * n * args.fresh, r == 0)

    stories = round_stories(1)
    docs = render_feeds(stories, args.per_feed)
    avg_chars = statistics.fmean(len(t) + len(s) for t, s in stories)
    avg_words = statistics.fmean(len(words(fold(t))) + len(words(fold(s))) for t, s in stories[:5000])
    print(f"feeds: {len(feeds)} files in {args.feeds}, {len(base)} entries ({len(corpus)} for stories)")
    print(
        f"stories: {n:,} a round, new each round (avg {avg_chars:.0f} chars, ~{avg_words:.0f} words, "
        f"title+summary, {args.fresh} fresh tokens each), as {len(docs):,} RSS documents of {args.per_feed} "
        f"items (avg {sum(map(len, docs)) / n:.0f} bytes an item)"
    )
    fixture_rate, fixture_entries = parse_rate(feeds, 3)
    print(f"for reference, feedparser on the fixture files themselves: {fixture_rate:,.0f} entries/s")

    df, phrases = story_terms(base)
    sizes = (args.watchlists, args.watchlists * args.scale)
    # One generation, one seed: the small set is the first watchlists of the large one.
    all_wls = make_watchlists(sizes[1], seeds, df, len(base), phrases, random.Random(args.seed))
    matchers: dict[int, Matcher] = {}
    for count in sizes:
        t0 = time.process_time()
        matchers[count] = Matcher(all_wls[:count], ALIASES)
        build = time.process_time() - t0
        print(f"{count:>5} watchlists: {len(matchers[count]._key_len):,} keys, built in {build * 1000:.0f} ms CPU")
    warm = round_stories(0)[: max(2000, n // 10)]
    for count in sizes:  # warm-up: first-use tables, memos of the common words
        for title, summary in warm:
            matchers[count].match(title, summary)

    parse_cpu: list[float] = []
    parse_wall: list[float] = []
    cpu: dict[int, list[float]] = {c: [] for c in sizes}
    wall: dict[int, list[float]] = {c: [] for c in sizes}
    counts: dict[int, tuple[int, int]] = {}
    for r in range(args.runs):
        if r:
            stories = round_stories(r + 1)
            docs = render_feeds(stories, args.per_feed)
        pc, pw, entries = parse_docs(docs)
        assert entries == n, f"feedparser found {entries} entries, expected {n}"
        parse_cpu.append(pc)
        parse_wall.append(pw)
        for count in sizes:
            c, w, matched, hits = time_matcher(matchers[count], stories)
            cpu[count].append(c)
            wall[count].append(w)
            counts[count] = (matched, hits)
        print(
            f"round {r + 1}: parse {pc:.1f} s, "
            + ", ".join(f"{count} watchlists {cpu[count][-1]:.2f} s" for count in sizes)
            + " (CPU)",
            flush=True,
        )

    # Diagnostic: the same, without building the explanations, on stories no memo has seen.
    fresh_stories = round_stories(args.runs + 1)
    bare = {count: time_without_explanations(matchers[count], fresh_stories) for count in sizes}
    med = statistics.median
    parse_s = med(parse_cpu)
    print(
        f"feedparser on the same stories: {n / parse_s:,.0f} entries/s, {parse_s:.1f} s CPU "
        f"({med(parse_wall):.1f} s wall), median of {args.runs}"
    )
    for count in sizes:
        seconds = med(cpu[count])
        matched, hits = counts[count]
        print(
            f"{count:>5} watchlists: {n / seconds:,.0f} stories/s, {seconds:.2f} s CPU "
            f"({med(wall[count]):.2f} s wall), "
            f"{matched:,} matches ({matched / n:.2f} a story, {hits / max(1, matched):.1f} hits each), "
            f"{100 * seconds / parse_s:.1f} % of parse time"
        )
        print(f"      diagnostic: finding the matches without explaining them: {bare[count]:.2f} s CPU (one pass)")
    small, large = sizes
    ratio_parse = med([m / p for m, p in zip(cpu[small], parse_cpu, strict=True)])
    ratio_scale = med([b / a for a, b in zip(cpu[small], cpu[large], strict=True)])
    ratio_parse_wall = med([m / p for m, p in zip(wall[small], parse_wall, strict=True)])
    ratio_scale_wall = med([b / a for a, b in zip(wall[small], wall[large], strict=True)])
    ratio_parse_large = med([m / p for m, p in zip(cpu[large], parse_cpu, strict=True)])
    goal_parse, goal_scale = 0.08, 2.0
    met_parse = "met" if ratio_parse <= goal_parse else "NOT met"
    met_scale = "met" if ratio_scale <= goal_scale else "NOT met"
    print(
        f"ratio match/parse at {small} watchlists: {ratio_parse:.3f} CPU, {ratio_parse_wall:.3f} wall "
        f"(goal <= {goal_parse:.2f}: {met_parse}; "
        f"against the fixture files' parse rate: {ratio_parse * parse_s * fixture_rate / n:.3f})"
    )
    print(
        f"ratio {large}/{small} watchlists: {ratio_scale:.2f}x CPU, {ratio_scale_wall:.2f}x wall "
        f"(goal <= {goal_scale:.0f}x for {args.scale}x the watchlists: {met_scale}); "
        f"finding the matches only: {bare[large] / bare[small]:.2f}x"
    )
    print(f"ratio match/parse at {large} watchlists: {ratio_parse_large:.3f} CPU")


if __name__ == "__main__":
    main()
