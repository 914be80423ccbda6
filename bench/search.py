"""Benchmark ``stories search`` on a large SQLite store.

Run: ``.venv/bin/python bench/search.py`` (defaults: 100,000 stories, 5 rounds). Prints
figures only; it asserts nothing.

The stories are those of ``bench/match.py`` (the news fixtures of ``tests/fixtures/``
varied, with never-seen names and figures), written straight into a fresh database
(the FTS5 index is filled by its triggers), published one minute apart. Each query is
run ``--rounds`` times; the median wall time is printed with the number of candidate
stories the matcher decided (``examined``) and the stories found. The queries cover a
rare word, common words, an alias group, NOT, NEAR, and a query the index cannot
narrow (``?`` wildcards only), which scans: until ``--limit`` stories are found, or
through the whole store when none match.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import insert  # noqa: E402

from bench.match import ALIASES, FIXTURES, NOT_NEWS, load_base, make_stories  # noqa: E402
from monitor.storage.feeds import FeedConfigRow  # noqa: E402
from monitor.storage.schema import Feed, Story  # noqa: E402
from monitor.storage.search import search_stories  # noqa: E402
from monitor.storage.store import Store  # noqa: E402

QUERIES = [
    "hurricane*",
    '"North Korea" OR Pyongyang',
    "@dprk AND (troops OR soldiers)",
    "government",
    "government NOT election",
    "minister NEAR/3 foreign",
    "k?rsk OR m?scow",
    "q?xz",
]


def fill(store: Store, count: int, seed: int) -> None:
    """``count`` generated stories, one minute apart, newest now, in one feed."""
    feeds = sorted(p for p in FIXTURES.iterdir() if p.suffix == ".xml" and not p.name.startswith(NOT_NEWS))
    stories = make_stories(load_base(feeds), count, random.Random(seed), fresh=2)
    store.sync_feeds([FeedConfigRow("desk", "https://desk.example/rss", 600, "en")])
    now = dt.datetime.now(dt.UTC)
    with store.transaction() as conn:
        feed_id = conn.execute(Feed.__table__.select().with_only_columns(Feed.id)).scalar_one()
        rows = [
            {
                "ident": f"l:{i}",
                "feed_id": feed_id,
                "title_key": str(i),
                "title": title,
                "summary": summary,
                "link": f"https://desk.example/{i}",
                "published_at": now - dt.timedelta(minutes=i),
                "first_seen_at": now - dt.timedelta(minutes=i),
                "date_from_feed": True,
            }
            for i, (title, summary) in enumerate(stories)
        ]
        for start in range(0, len(rows), 5_000):
            conn.execute(insert(Story), rows[start : start + 5_000])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stories", type=int, default=100_000, help="Stories in the store.")
    ap.add_argument("--rounds", type=int, default=5, help="Runs of each query (the median is shown).")
    ap.add_argument("--limit", type=int, default=20, help="Most stories a search returns.")
    ap.add_argument("--seed", type=int, default=1, help="Random seed of the generated stories.")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            t0 = time.perf_counter()
            fill(store, args.stories, args.seed)
            print(f"{args.stories:,} stories stored in {time.perf_counter() - t0:.1f} s")
            print(f"{'query':40} {'median':>10} {'examined':>9} {'found':>6}  engine")
            for query in QUERIES:
                times = []
                for _ in range(args.rounds):
                    t0 = time.perf_counter()
                    found = search_stories(store, query, aliases=ALIASES, limit=args.limit)
                    times.append(time.perf_counter() - t0)
                ms = statistics.median(times) * 1000
                print(f"{query:40} {ms:8.1f} ms {found.examined:9,} {len(found.hits):6}  {found.engine}")
        finally:
            store.close()


if __name__ == "__main__":
    main()
