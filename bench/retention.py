"""Benchmark retention: bytes a pruned story's dedupe keys keep, and the prune's time.

Run: ``.venv/bin/python bench/retention.py`` (defaults: 20,000 stories, 3 runs). Prints
figures only; it asserts nothing. Options: ``--stories``, ``--runs``.

How it measures (SQLite, a migrated file in a temp dir, so the FTS5 index and its
triggers are there):

* Each run writes ``--stories`` stories into one feed, with feed-sized text (a title of
  about 80 characters, a summary of about 400), one sighting and one match each, first
  seen 100 days ago, through SQLAlchemy executemany in one transaction.
* Size: ``page_count * page_size`` after ``VACUUM``, for the empty schema, with the
  stories, and after the prune (which keeps each story's dedupe keys in
  ``pruned_stories``). Bytes per story = (full - empty) / stories; bytes per kept key =
  (after - empty) / stories, once the FTS5 index is merged (``optimize``): until its
  segments merge, FTS5 keeps a deletion marker per deleted row, which the run also
  prints (automerge folds them in as new stories are indexed). The ratio is the share
  of a story's bytes a key keeps.
* Time: the prune (chunks of 1,000 stories, one transaction each, keys written first)
  against the baseline of the same run, one ``DELETE`` of every old story in one
  transaction with no keys kept; the median of ``--runs`` each, and the longest chunk.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import delete, insert

from monitor.storage.feeds import FeedConfigRow
from monitor.storage.retention import RetentionPolicy, cutoffs
from monitor.storage.schema import Match, Story, StoryFeed
from monitor.storage.store import Store

NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
WORDS = "minister troops border talks sanctions treaty region forces governor election market rates".split()


def _key(text_: str) -> str:
    return hashlib.sha256(text_.encode()).hexdigest()[:32]


def _sentence(rng: random.Random, chars: int) -> str:
    out: list[str] = []
    while sum(len(w) + 1 for w in out) < chars:
        out.append(rng.choice(WORDS) if rng.random() < 0.5 else f"w{rng.randrange(100_000)}")
    return " ".join(out)


def _size(path: Path) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("VACUUM")
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        (size,) = conn.execute("PRAGMA page_size").fetchone()
    finally:
        conn.close()
    return int(pages) * int(size)


def _fill(store: Store, n: int, seed: int) -> None:
    rng = random.Random(seed)
    store.sync_feeds([FeedConfigRow(name="wire", url="http://127.0.0.1/wire.xml", interval_s=600, language="en")])
    (feed,) = store.feeds()
    seen = NOW - dt.timedelta(days=100)
    stories = []
    for i in range(n):
        link = f"https://news.example.org/{rng.randrange(10**9)}/story-{i}"
        stories.append(
            {
                "id": i + 1,
                "ident": f"l:{_key(link)}",
                "feed_id": feed.id,
                "cluster_id": i + 1,
                "guid": f"urn:uuid:{_key(str(i))}",
                "guid_key": _key(f"g{i}"),
                "link": link,
                "link_key": _key(link),
                "title_key": _key(f"t{i}"),
                "title": _sentence(rng, 80),
                "summary": _sentence(rng, 400),
                "language": "en",
                "published_at": seen,
                "date_from_feed": True,
                "first_seen_at": seen,
            }
        )
    with store.transaction() as conn:
        conn.execute(insert(Story), stories)
        conn.execute(
            insert(StoryFeed), [{"story_id": s["id"], "feed_id": feed.id, "first_seen_at": seen} for s in stories]
        )
        hits = [["Kursk", "title", 0, 5, "Kursk"]]
        rows = [
            {
                "story_id": s["id"],
                "watchlist": "wl",
                "terms": ["Kursk"],
                "hits": hits,
                "matched_at": seen,
                "alerted": True,
            }
            for s in stories
        ]
        conn.execute(insert(Match), rows)


def one_run(n: int, seed: int, folder: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for mode in ("baseline", "prune"):
        path = folder / f"{mode}-{seed}.db"
        store = Store(f"sqlite:///{path}")
        try:
            empty = _size(path)
            _fill(store, n, seed)
            full = _size(path)
            t0 = time.perf_counter()
            if mode == "baseline":
                with store.transaction() as conn:
                    conn.execute(delete(Story).where(Story.first_seen_at < NOW - dt.timedelta(days=90)))
            else:
                report = store.prune(cutoffs(RetentionPolicy(), NOW), now=NOW)
                assert report.stories == n, report
            out[f"{mode}_s"] = time.perf_counter() - t0
            after = _size(path)
            out["story_bytes"] = (full - empty) / n
            out[f"{mode}_left_bytes"] = (after - empty) / n
        finally:
            store.close()
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            t0 = time.perf_counter()
            conn.execute("INSERT INTO stories_fts(stories_fts) VALUES ('optimize')")
            out[f"{mode}_optimize_s"] = time.perf_counter() - t0
        finally:
            conn.close()
        out[f"{mode}_merged_bytes"] = (_size(path) - empty) / n
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.runs):
            runs.append(one_run(args.stories, seed, Path(tmp)))

    def med(key: str) -> float:
        return statistics.median(r[key] for r in runs)

    story, key = med("story_bytes"), med("prune_merged_bytes")
    print(f"stories: {args.stories}, runs: {args.runs} (medians)")
    print(f"bytes per stored story (story, sighting, match, indexes, FTS): {story:,.0f}")
    print(f"bytes per pruned story kept as dedupe keys: {key:,.0f}  ({key / story:.1%} of the story)")
    left, base_left = med("prune_left_bytes"), med("baseline_left_bytes")
    print(
        f"bytes per story left before the FTS5 segments merge: {left:,.0f} (baseline without keys: {base_left:,.0f});"
        f" 'optimize' of the index: {med('prune_optimize_s') * 1000:.0f} ms"
    )
    base, ours = med("baseline_s"), med("prune_s")
    print(f"baseline, one DELETE in one transaction: {base:.2f} s ({args.stories / base:,.0f} stories/s)")
    print(
        f"prune, chunks of 1,000 with keys kept: {ours:.2f} s ({args.stories / ours:,.0f} stories/s), "
        f"{ours / base:.2f}x the baseline"
    )
    print(f"one chunk of 1,000 stories: about {ours / (args.stories / 1000) * 1000:.0f} ms")


if __name__ == "__main__":
    main()
