"""Event clusters on the command line: ``stories clusters``, ``stories recluster`` and the
cluster part of ``stories show``, over a real SQLite store filled by ``poll --once``.

Local feeds (Reuters, AP, France 24 and the Kyiv Independent in English, Le Monde in
French) carry three events of the labelled set: the Putin-Kim pact signed on 19 June
2024 and the Duma's ratification of it in October, told by three outlets each, and
Putin's signature in November, told by one. Polling them clusters each event across
outlets and languages, and queues one alert per event for the watchlist. The populated
database is made once per module and copied for each test.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from ruamel.yaml import YAML

from monitor.app.cli import cli
from monitor.app.services.clusters import describe_terms, readable_terms, recluster
from monitor.config.model import Config, parse_config
from monitor.storage.feeds import FeedConfigRow
from monitor.storage.store import Store
from monitor.storage.stories import ClusterAssignment
from tests.support.feeds import Item, rss
from tests.support.httpserver import HTTPTestServer, Static
from tests.support.stories import NOW, entry, record

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "clusters.jsonl"
PACT = ("s0001", "s0002", "s0003")  # e001: Reuters, AP, Le Monde (fr)
DUMA = ("s0020", "s0021", "s0024")  # e005: Reuters, France 24, Le Monde (fr)
ALONE = "s0031"  # e007 as the Kyiv Independent told it: no other outlet here
FEEDS = {"reuters": "en", "ap": "en", "lemonde": "fr", "france24": "en", "kyivindependent": "en"}  # name -> language
OUTLETS = {
    "Reuters": "reuters",
    "AP": "ap",
    "Le Monde": "lemonde",
    "France 24": "france24",
    "Kyiv Independent": "kyivindependent",
}


def labelled() -> dict[str, dict[str, str]]:
    rows = (json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip())
    return {r["id"]: r for r in rows}


def moved_to_now(rows: dict[str, dict[str, str]]) -> dict[str, dt.datetime]:
    """Each story's publication time, its event moved close to now (the gaps inside an
    event kept, the events days apart): a poll's clusterer only files stories published
    within its window of now."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    published = {k: dt.datetime.fromisoformat(r["published"].replace("Z", "+00:00")) for k, r in rows.items()}
    out: dict[str, dt.datetime] = {}
    for group, back in ((PACT, 120), (DUMA, 30), ((ALONE,), 3)):
        start = min(published[k] for k in group)
        out.update((k, now - dt.timedelta(hours=back) + (published[k] - start)) for k in group)
    return out


def item(row: dict[str, str], published: dt.datetime) -> Item:
    return Item(row["title"], row["link"], row["summary"], guid=row["id"], published=published.timestamp())


def write_config(path: Path, db: Path, feeds: dict[str, str], cluster: dict[str, object] | None = None) -> Path:
    aliases = YAML(typ="safe").load((ROOT / "config.yaml").read_text(encoding="utf-8")).get("aliases") or {}
    config: dict[str, Any] = {
        "database": f"sqlite:///{db}",
        "poll": {"timeout": "2s", "deadline": "3s", "catchup_new_feeds": False},
        "targets": {"console": "console://"},
        "feeds": [{"name": name, "url": url, "language": FEEDS[name]} for name, url in feeds.items()],
        "aliases": aliases,
        "watchlists": [{"name": "korea", "query": "Korea OR Corée OR Kim", "notify": ["console"]}],
    }
    if cluster is not None:
        config["cluster"] = cluster
    with path.open("w", encoding="utf-8") as fh:
        YAML().dump(config, fh)
    return path


@dataclass
class Env:
    config: Path
    db: Path
    feeds: dict[str, str]
    ids: dict[str, int]  # labelled id (the GUID) -> story id

    def run(self, *args: str) -> Result:
        result = CliRunner().invoke(cli, ["--config", str(self.config), *args])
        assert result.exception is None or isinstance(result.exception, SystemExit), result.output
        return result

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.exit_code == 0, result.output
        return result.output

    def reconfigure(self, cluster: dict[str, object] | None) -> None:
        write_config(self.config, self.db, self.feeds, cluster)

    def sql(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db) as conn:
            return conn.execute(query, params).fetchall()

    def clusters(self) -> set[frozenset[str]]:
        """The stored clusters as sets of labelled ids."""
        back = {v: k for k, v in self.ids.items()}
        groups: dict[int, set[str]] = {}
        for sid, cid in self.sql("SELECT id, cluster_id FROM stories"):
            groups.setdefault(cid, set()).add(back[sid])
        return {frozenset(g) for g in groups.values()}

    def age(self, labels: tuple[str, ...], days: float) -> None:
        """Make these stories first seen *days* earlier (as if an earlier poll had found them)."""
        for label in labels:
            self.sql(
                "UPDATE stories SET first_seen_at = datetime(first_seen_at, ?) WHERE id = ?",
                f"-{days * 24} hours",
                self.ids[label],
            )


@pytest.fixture(scope="module")
def polled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str], dict[str, int]]]:
    """One ``poll --once`` per story, in published order (a poll takes its feeds as they
    finish: one story a poll makes the order, and so the clusters, repeatable)."""
    rows = labelled()
    base = tmp_path_factory.mktemp("polled")
    db = base / "monitor.db"
    carried: dict[str, list[Item]] = {name: [] for name in FEEDS}
    with HTTPTestServer() as http:
        feeds = {name: http.route(f"/{name}.xml", Static(body=rss([], title=name))) for name in FEEDS}
        config = write_config(base / "config.yaml", db, feeds)

        def poll() -> None:
            result = CliRunner().invoke(cli, ["--config", str(config), "poll", "--once", "--no-deliver"])
            assert result.exit_code == 0, result.output

        poll()
        published = moved_to_now(rows)
        for label in sorted(published, key=lambda x: published[x]):
            name = OUTLETS[rows[label]["outlet"]]
            carried[name].insert(0, item(rows[label], published[label]))
            http.route(f"/{name}.xml", Static(body=rss(carried[name], title=name)))
            poll()
    with sqlite3.connect(db) as conn:
        ids = {guid: sid for guid, sid in conn.execute("SELECT guid, id FROM stories")}
    assert sorted(ids) == sorted((*PACT, *DUMA, ALONE))
    yield db, feeds, ids


@pytest.fixture
def env(polled: tuple[Path, dict[str, str], dict[str, int]], tmp_path: Path) -> Env:
    template, feeds, ids = polled
    db = tmp_path / "monitor.db"
    shutil.copy(template, db)
    return Env(write_config(tmp_path / "config.yaml", db, feeds), db, feeds, ids)


EVENTS = {frozenset(PACT), frozenset(DUMA), frozenset([ALONE])}
SPLIT = {frozenset([label]) for label in (*PACT, *DUMA, ALONE)}


def test_the_poll_clusters_each_event_across_outlets_and_languages(env: Env) -> None:
    assert env.clusters() == EVENTS
    # One alert per event for the watchlist, however many outlets told it.
    assert env.sql("SELECT count(*) FROM outbox") == [(3,)]


def test_clusters_lists_each_cluster_with_its_members_and_why_they_joined(env: Env) -> None:
    out = env.ok("stories", "clusters")
    rows = labelled()
    blocks = out.split("cluster #")[1:]
    assert len(blocks) == 3
    pact = next(b for b in blocks if rows["s0001"]["title"] in b)
    for label in PACT:
        assert rows[label]["title"] in pact
        assert rows[label]["link"] in pact
    assert "lemonde (fr)" in pact and "reuters (en)" in pact and "ap (en)" in pact
    assert pact.count("joined: score ") == 2  # every member but the first says why it joined
    assert "names: " in pact and "acts: sign" in pact
    assert out.rstrip().endswith("3 clusters")


def test_clusters_min_size_and_limit(env: Env) -> None:
    alone = labelled()[ALONE]["title"]
    assert alone in env.ok("stories", "clusters")
    several = env.ok("stories", "clusters", "--min-size", "2")
    assert alone not in several and several.count("cluster #") == 2
    assert env.ok("stories", "clusters", "--limit", "1").count("cluster #") == 1
    assert "no cluster of 4 stories or more" in env.ok("stories", "clusters", "--min-size", "4")


def test_clusters_json_is_the_documented_shape(env: Env) -> None:
    data = json.loads(env.ok("stories", "clusters", "--json", "--min-size", "2"))
    assert (data["days"], data["min_size"], data["limit"]) == (1.0, 2, 50)
    back = {v: k for k, v in env.ids.items()}
    got = {frozenset(back[m["id"]] for m in c["members"]) for c in data["clusters"]}
    assert got == {frozenset(PACT), frozenset(DUMA)}
    for c in data["clusters"]:
        assert c["size"] == len(c["members"]) == 3
        first, *joined = c["members"]
        assert c["id"] == first["id"]
        assert set(first) == {
            "id",
            "outlet",
            "language",
            "title",
            "link",
            "published",
            "first_seen",
            "score",
            "shared",
            "features",
        }
        assert first["score"] is None and first["shared"] == {} and first["features"] == []
        assert {m["language"] for m in c["members"]} == {"en", "fr"}
        for m in joined:
            assert m["score"] > 0.07
            assert m["shared"]["names"] and m["features"]
            assert dt.datetime.fromisoformat(m["published"]) < dt.datetime.fromisoformat(m["first_seen"])


def test_clusters_newest_activity_first_within_days_of_first_seen_time(env: Env) -> None:
    def listed(*args: str) -> list[set[int]]:
        data = json.loads(env.ok("stories", "clusters", "--json", *args))
        return [{m["id"] for m in c["members"]} for c in data["clusters"]]

    ids = env.ids
    pact, duma, alone = ({ids[x] for x in group} for group in (PACT, DUMA, (ALONE,)))
    assert listed() == [alone, duma, pact]  # polled last, first listed
    env.age(DUMA, 3)  # as if an earlier poll had found them
    assert listed() == [alone, pact]
    assert listed("--days", "4d") == [alone, pact, duma]
    assert listed("--days", "2") == [alone, pact]


def test_recluster_applies_a_changed_threshold_and_back(env: Env) -> None:
    before_outbox = env.sql("SELECT * FROM outbox ORDER BY id")
    before_matches = env.sql("SELECT * FROM matches ORDER BY id")
    env.reconfigure({"threshold": 0.9})
    out = env.ok("stories", "recluster", "--days", "1")
    assert "7 stories first seen in the last day" in out
    assert "clusters: 3 before, 7 after" in out
    assert "4 stories moved" in out and "to a cluster of its own" in out
    assert "4 stories written; a running daemon uses the new clusters after a restart" in out
    assert env.clusters() == SPLIT
    assert env.sql("SELECT count(*) FROM stories WHERE cluster_score IS NOT NULL") == [(0,)]
    assert "no cluster of 2 stories or more" in env.ok("stories", "clusters", "--min-size", "2")

    env.reconfigure(None)
    out = env.ok("stories", "recluster", "--days", "1")
    assert "clusters: 7 before, 3 after" in out and "4 stories moved" in out
    assert env.clusters() == EVENTS
    # Nothing was sent or queued, no match changed.
    assert env.sql("SELECT * FROM outbox ORDER BY id") == before_outbox
    assert env.sql("SELECT * FROM matches ORDER BY id") == before_matches


def test_recluster_dry_run_says_what_would_change_and_writes_nothing(env: Env) -> None:
    stored = env.sql("SELECT id, cluster_id, cluster_score, cluster_terms FROM stories ORDER BY id")
    env.reconfigure({"threshold": 0.9})
    out = env.ok("stories", "recluster", "--days", "1", "--dry-run")
    assert "clusters: 3 before, 7 after" in out and "4 stories moved" in out
    assert "dry run: nothing written" in out
    assert env.sql("SELECT id, cluster_id, cluster_score, cluster_terms FROM stories ORDER BY id") == stored


def test_recluster_leaves_older_stories_alone_and_may_join_their_clusters(env: Env) -> None:
    env.age(("s0001", "s0002"), 2)  # an earlier poll found the English tellings of the pact
    older = env.sql(
        "SELECT id, cluster_id, cluster_score FROM stories WHERE id IN (?, ?)", env.ids["s0001"], env.ids["s0002"]
    )
    env.reconfigure({"threshold": 0.9})
    env.ok("stories", "recluster", "--days", "1")
    assert frozenset(["s0003"]) in env.clusters()  # Le Monde no longer joins them...
    assert frozenset(["s0001", "s0002"]) in env.clusters()  # ...whose cluster is not rewritten
    env.reconfigure(None)
    out = env.ok("stories", "recluster", "--days", "1")
    assert "(2 earlier stories taken as they are)" in out
    assert env.clusters() == EVENTS  # the clusterer puts Le Monde back in the older cluster
    assert (
        env.sql(
            "SELECT id, cluster_id, cluster_score FROM stories WHERE id IN (?, ?)", env.ids["s0001"], env.ids["s0002"]
        )
        == older
    )


def test_show_says_which_cluster_a_member_joined_why_and_who_else_told_it(env: Env) -> None:
    rows = labelled()
    data = json.loads(env.ok("stories", "clusters", "--json"))
    pact = next(
        c
        for c in data["clusters"]
        if len(c["members"]) == 3 and c["members"][0]["title"] in {rows[x]["title"] for x in PACT}
    )
    first, member = pact["members"][0], pact["members"][2]
    out = env.ok("stories", "show", str(member["id"]))
    assert f"joined #{first['id']} ({first['outlet']}: {first['title']})" in out
    assert f"score {member['score']:.3f}; names: " in out
    assert "also reported by:" in out
    for other in (pact["members"][0], pact["members"][1]):
        assert f"#{other['id']} {other['outlet']} ({other['language']}): {other['title']}  {other['link']}" in out
    assert member["title"] not in out.split("also reported by:")[1]

    lead = env.ok("stories", "show", str(first["id"]))
    assert "first story of its cluster" in lead and "also reported by:" in lead
    alone = env.ok("stories", "show", str(env.ids[ALONE]))
    assert "none (no other outlet told this event)" in alone and "also reported by" not in alone

    shown = json.loads(env.ok("stories", "show", str(member["id"]), "--json"))
    assert shown["joined"]["cluster"] == first["id"] and shown["joined"]["first"]["id"] == first["id"]
    assert shown["joined"]["shared"] == member["shared"]
    assert [m["id"] for m in shown["also_reported_by"]] == [first["id"], pact["members"][1]["id"]]
    assert json.loads(env.ok("stories", "show", str(first["id"]), "--json"))["joined"] is None


@pytest.mark.parametrize(
    ("terms", "grouped", "line"),
    [
        (
            ("t:lavrov", "n:lavrov", "n:choe", "a:meeting"),
            (("names", ("lavrov", "choe")), ("acts", ("meeting",))),
            "names: lavrov, choe; acts: meeting",
        ),
        (
            ("#:10000", "c:dprk", "i:us", "w:troops", "s:north korea"),
            (
                ("concepts", ("dprk",)),
                ("issuers", ("us",)),
                ("numbers", ("10000",)),
                ("words", ("troops",)),
                ("word pairs", ("north korea",)),
            ),
            "concepts: dprk; issuers: us; numbers: 10000; words: troops; word pairs: north korea",
        ),
        (("x:odd", "plain"), (("other", ("x:odd", "plain")),), "other: x:odd, plain"),
        ((), (), ""),
    ],
)
def test_shared_features_read_by_kind(
    terms: tuple[str, ...], grouped: tuple[tuple[str, tuple[str, ...]], ...], line: str
) -> None:
    assert readable_terms(terms) == grouped
    assert describe_terms(terms) == line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("stories", "recluster"), "Missing option '--days'"),
        (("stories", "recluster", "--days", "inf"), "Invalid value for '--days'"),
        (("stories", "clusters", "--min-size", "0"), "Invalid value for '--min-size'"),
        (("stories", "clusters", "--days", "soon"), "not a number of days nor a duration"),
    ],
)
def test_bad_input_is_a_usage_error(env: Env, args: tuple[str, ...], message: str) -> None:
    result = env.run(*args)
    assert result.exit_code == 2 and message in result.output


def test_storage_writes_the_clusters_it_is_given_and_lists_clusters_by_recent_activity(store: Store) -> None:
    store.sync_feeds(
        [FeedConfigRow(name="wire", url="http://127.0.0.1/wire.xml", interval_s=600, language="en")], now=NOW
    )
    (feed,) = store.feeds()
    earlier = NOW - dt.timedelta(hours=2)
    first, second, third = record(store, feed, [entry(1), entry(2), entry(3)], now=earlier).new_story_ids
    (fourth,) = record(store, feed, [entry(4)], now=NOW).new_story_ids

    filed = store.stories_first_seen(NOW - dt.timedelta(hours=3))
    assert [s.id for s in filed] == [first, second, third, fourth]
    assert [s.cluster_id for s in filed] == [s.id for s in filed] and filed[0].cluster_ident == filed[0].ident
    assert [s.id for s in store.stories_first_seen(earlier, NOW)] == [first, second, third]

    written = store.assign_clusters(
        [ClusterAssignment(second, first, 0.5, ("n:kim", "a:sign")), ClusterAssignment(third, first, 0.25)]
    )
    assert written == 2
    members = store.cluster_members([first])[first]
    assert [(m.story_id, m.score, m.terms) for m in members] == [
        (first, None, ()),
        (second, 0.5, ("n:kim", "a:sign")),
        (third, 0.25, ()),
    ]
    assert store.stories_first_seen(earlier)[1].cluster_ident == filed[0].ident

    assert store.recent_cluster_ids(NOW - dt.timedelta(hours=3)) == [fourth, first]
    assert store.recent_cluster_ids(NOW - dt.timedelta(hours=1)) == [fourth]
    assert store.recent_cluster_ids(NOW - dt.timedelta(hours=3), min_size=2) == [first]
    assert store.recent_cluster_ids(NOW - dt.timedelta(hours=3), min_size=4) == []
    assert store.recent_cluster_ids(NOW - dt.timedelta(hours=3), limit=1) == [fourth]

    store.assign_clusters([ClusterAssignment(second, second), ClusterAssignment(third, second, 0.3, ("#:10000",))])
    assert [(m.story_id, m.score) for m in store.cluster_members([first])[first]] == [(first, None)]
    assert [(m.story_id, m.score, m.terms) for m in store.cluster_members([second])[second]] == [
        (second, None, ()),
        (third, 0.3, ("#:10000",)),
    ]


def config_with(cluster: dict[str, object] | None = None) -> Config:
    aliases = YAML(typ="safe").load((ROOT / "config.yaml").read_text(encoding="utf-8")).get("aliases") or {}
    data: dict[str, Any] = {"database": "sqlite:///unused.db", "aliases": aliases}
    if cluster is not None:
        data["cluster"] = cluster
    buf = io.StringIO()
    YAML().dump(data, buf)
    return parse_config(buf.getvalue())[0]


def test_recluster_service_on_each_backend(store: Store) -> None:
    rows = labelled()
    published = moved_to_now(rows)
    names = sorted({OUTLETS[rows[x]["outlet"]] for x in PACT})
    store.sync_feeds([FeedConfigRow(n, f"http://127.0.0.1/{n}.xml", 600, FEEDS[n]) for n in names], now=NOW)
    feeds = {f.name: f for f in store.feeds()}
    seen = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    ids = {}
    for i, label in enumerate(sorted(PACT, key=lambda x: published[x])):
        row = rows[label]
        told = dataclasses.replace(
            entry(i),
            title=row["title"],
            summary=row["summary"],
            language=row["language"],
            published_at=published[label],
        )
        feed = feeds[OUTLETS[row["outlet"]]]
        (ids[label],) = record(store, feed, [told], now=seen + dt.timedelta(seconds=i)).new_story_ids
    # Recorded without a clusterer: each story alone.
    assert all(len(store.cluster_members([sid])[sid]) == 1 for sid in ids.values())

    dry = recluster(store, config_with(), 1, dry_run=True)
    assert (dry.stories, dry.clusters_before, dry.clusters_after, len(dry.moves), dry.written) == (3, 3, 1, 2, 0)
    assert all(len(store.cluster_members([sid])[sid]) == 1 for sid in ids.values())

    done = recluster(store, config_with(), 1)
    first = ids["s0001"]
    # two stories move; the first stays where it is but is now marked clustered (it was
    # recorded without a clusterer), so the daemon's start-up rebuild files it
    assert done.written == 3 and {(m.before, m.after) for m in done.moves} == {
        (ids["s0002"], first),
        (ids["s0003"], first),
    }
    members = store.cluster_members([first])[first]
    assert [m.story_id for m in members] == [ids[x] for x in PACT]
    assert members[0].score is None and all(m.score and m.terms for m in members[1:])

    assert recluster(store, config_with({"enabled": False}), 1).clusters_after == 3
    assert all(len(store.cluster_members([sid])[sid]) == 1 for sid in ids.values())
