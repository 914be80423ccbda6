"""`watchlist test`: a watchlist or a query over the stories already stored, and --backfill."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from monitor.app.cli import cli
from monitor.app.services.backtests import watchlist_matcher
from monitor.app.services.common import Backfill
from monitor.app.services.watchlists import backfill
from monitor.config.model import load_config
from monitor.ingest.entries import Entry
from monitor.matching.backtest import backtest, days_ago
from monitor.matching.matcher import Matcher
from monitor.storage.feeds import FeedConfigRow
from monitor.storage.schema import Alert, Match
from monitor.storage.store import Store
from tests.support.stories import record

# (title, summary, hours ago)
STORIES: list[tuple[str, str, float]] = [
    ("North Korean troops fighting in Kursk, Seoul says", "Pyongyang has sent more soldiers to the Kursk region.", 2),
    ("Kursk submarine disaster remembered 25 years on", "Families gathered in Murmansk.", 5),
    ("La Corée du Nord et la Russie réaffirment leur pacte", "Moscou et Pyongyang : des soldats à Koursk.", 30),
    ("Iran sanctions tightened", "Washington targets oil exports.", 50),
    ("Kursk nuclear plant safety worries", "The IAEA visited the site.", 70),
    ("Old story: Pyongyang troops in Kursk", "From three weeks ago.", 24 * 21),
]


def _key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def seed(
    store: Store,
    stories: Sequence[tuple[str, str, float]] = STORIES,
    *,
    feed: str = "desk",
    matcher: Matcher | None = None,
    targets: dict[str, tuple[str, ...]] | None = None,
    alert: bool = True,
    same_as: str | None = None,
) -> list[int]:
    """Store stories as a feed's poll would (with matches and alerts when a matcher is given).

    ``same_as``: the stories are those already stored from that feed (same links), now
    seen in this one too ("also reported by"); nothing new is stored.
    """
    now = dt.datetime.now(dt.UTC)
    known = [FeedConfigRow(f.name, f.url, f.interval_s, f.language) for f in store.feeds(include_removed=True)]
    store.sync_feeds(
        [*(f for f in known if f.name != feed), FeedConfigRow(feed, f"https://{feed}.example/rss", 600, "en")]
    )
    (snap,) = [f for f in store.claim_due_feeds(worker="seed", lease=60, force=True) if f.name == feed]
    entries = []
    for title, summary, hours in stories:
        link = f"https://{same_as or feed}.example/{_key(title)[:8]}"
        entries.append(
            Entry(
                guid=None,
                link=link,
                canonical_url=link,
                title=title,
                summary=summary,
                published_at=now - dt.timedelta(hours=hours),
                date_from_feed=True,
                language="en",
                author=None,
                story_key=_key(link),
                link_key=_key(link),
                guid_key=None,
                title_key=_key(title),
            )
        )
    matches = {i: matcher.match(e.title, e.summary) for i, e in enumerate(entries)} if matcher else {}
    report = record(store, snap, entries, matches, targets=targets or {}, alert=alert, now=now)
    if same_as is not None:
        assert report.new_stories == 0
    return list(report.new_story_ids)


CONFIG = """\
database: {db}
targets: {{mail: 'json://127.0.0.1:9/'}}
aliases:
  dprk: '"North Korea" OR "North Korean" OR Pyongyang OR "Corée du Nord"'
watchlists:
  - name: kursk-troops
    query: '@dprk AND (troops OR soldats OR soldiers) AND (Kursk OR Koursk)'
    notify: [mail]
  - name: off
    query: 'Kursk'
    notify: [mail]
    enabled: false
"""


@pytest.fixture
def setup(db_backend: tuple[str, str | None], tmp_path: Path) -> tuple[Path, Store]:
    url, schema = db_backend
    if schema:  # the CLI opens the database itself: point it at the test's schema
        url = f"{url}?options=-csearch_path%3D{schema}"
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG.format(db=url), encoding="utf-8")
    store = Store(load_config(path).database_url, schema=schema)
    seed(store)
    return path, store


def run(path: Path, *args: str) -> str:
    result = CliRunner().invoke(cli, ["--config", str(path), "watchlist", "test", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_backtest_of_a_watchlist_counts_matches_terms_and_misses(setup: tuple[Path, Store]) -> None:
    path, store = setup
    out = run(path, "kursk-troops", "--days", "7")
    assert "watchlist 'kursk-troops' over 5 stories published in the last 7 days:" in out
    assert "2 would match (40.0 %), 3 would not" in out
    fired = out.split("terms that fired: ")[1].splitlines()[0].split(", ")
    assert fired[0] == "Pyongyang ×2"  # the most frequent first
    assert sorted(fired[1:]) == sorted(
        ['"North Korean" ×1', "troops ×1", "Kursk ×1", "soldiers ×1", '"Corée du Nord" ×1', "soldats ×1", "Koursk ×1"]
    )
    matched = out.split("WOULD MATCH")[1].split("WOULD NOT MATCH")[0]
    assert "North Korean troops fighting in Kursk" in matched and "Corée du Nord" in matched
    missed = out.split("WOULD NOT MATCH")[1]
    for title in ("Kursk submarine", "Iran sanctions", "Kursk nuclear plant"):
        assert title in missed
    assert "Old story" not in out  # three weeks old: outside --days 7
    store.close()


def test_a_query_compared_with_the_saved_one_shows_gains_and_losses(setup: tuple[Path, Store]) -> None:
    path, store = setup
    out = run(path, "kursk-troops", "--query", "Kursk OR Koursk", "--days", "30", "--json")
    data = json.loads(out)
    assert data["stories"] == 6 and data["matched_count"] == 5 and data["unmatched_count"] == 1
    assert sorted(s["title"][:20] for s in data["gained"]) == [
        "Kursk nuclear plant ",
        "Kursk submarine disa",
    ]
    assert data["lost"] == []
    assert data["terms"] == {"Kursk": 4, "Koursk": 1}
    store.close()


def test_a_disabled_watchlist_and_a_bare_query_can_be_tested(setup: tuple[Path, Store]) -> None:
    path, store = setup
    assert "3 would match" in run(path, "off")
    data = json.loads(run(path, "--query", "sanctions", "--json"))
    assert [s["title"] for s in data["matched"]] == ["Iran sanctions tightened"]
    assert data["matched"][0]["terms"] == ["sanctions"]
    store.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope"], "no watchlist 'nope' (known: kursk-troops, off)"),
        ([], "give a watchlist NAME, or --query, or both"),
        (["--query", "Kursk AND (troops"], "column 18"),
    ],
)
def test_bad_requests_are_one_clear_error(setup: tuple[Path, Store], args: list[str], message: str) -> None:
    path, store = setup
    result = CliRunner().invoke(cli, ["--config", str(path), "watchlist", "test", *args])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    store.close()


def test_backtest_is_pure_and_counts(store: Store) -> None:
    seed(store)
    stories = store.stories_published_since(days_ago(7))
    matcher = Matcher([], None)
    with pytest.raises(KeyError):
        backtest(matcher, "missing", stories)
    config = load_config_text(
        "targets: {m: 'json://127.0.0.1:9/'}\nwatchlists: [{name: w, query: 'Kursk -submarine', notify: [m]}]\n"
    )
    ticks: list[int] = []
    result = backtest(watchlist_matcher(config, "w"), "w", stories, progress=ticks.append)
    assert result.total == 5 and sum(ticks) == 5
    assert [m.story.title[:10] for m in result.matched] == ["North Kore", "Kursk nucl"]
    assert result.feed_counts == {"desk": 2}


def load_config_text(text: str) -> object:
    from monitor.config.model import parse_config

    return parse_config(text)[0]


def test_backfill_queues_each_alert_once(store: Store) -> None:
    ids = seed(store)
    config = load_config_text(
        "targets: {m: 'json://127.0.0.1:9/', n: 'json://127.0.0.1:8/'}\n"
        "watchlists: [{name: w, query: 'Kursk OR Koursk', notify: [m, n]}]\n"
    )
    matcher = watchlist_matcher(config, "w")  # type: ignore[arg-type]
    assert backfill(store, matcher, "w", ("m", "n"), days=2) == Backfill("w", 2, 3, 3, 6)  # 3 stories x 2 targets
    assert backfill(store, matcher, "w", ("m", "n"), days=2) == Backfill("w", 2, 3, 0, 0)  # idempotent
    assert backfill(store, matcher, "w", ("m", "n"), days=4) == Backfill("w", 4, 5, 1, 2)  # only the new one
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Alert)).scalar_one() == 8
        flags = conn.execute(select(Match.story_id, Match.alerted).where(Match.watchlist == "w")).all()
    assert {sid for sid, _ in flags} == {ids[0], ids[1], ids[2], ids[4]} and all(a for _, a in flags)


def test_backfill_alerts_a_story_recorded_during_catch_up(store: Store) -> None:
    """A story matched during a feed's first poll (no alert) is alerted by an explicit backfill."""
    config = load_config_text(
        "targets: {m: 'json://127.0.0.1:9/'}\nwatchlists: [{name: w, query: Kursk, notify: [m]}]\n"
    )
    matcher = watchlist_matcher(config, "w")  # type: ignore[arg-type]
    seed(store, STORIES[:1], matcher=matcher, targets={"w": ("m",)}, alert=False)
    assert backfill(store, matcher, "w", ("m",), days=1) == Backfill("w", 1, 1, 0, 1)
    with store.engine.connect() as conn:
        assert conn.execute(select(Match.alerted)).scalar_one() is True
