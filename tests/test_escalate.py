"""A watchlist's ``escalate``: one "now reported by N outlets" follow-up per event.

The pure decision with a real clusterer and plain values (below the threshold nothing,
at it one surge, never a second; outlets outside ``within`` and repeated outlets do not
count), the config's validation, the store's fence and a restart that rebuilds the
clusters from the database, and the message a target gets.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import text

from monitor.app.clusters import ClusterKeeper
from monitor.app.deliver import digest_stories, story_for
from monitor.clustering.clusterer import Clusterer
from monitor.clustering.features import vocabulary
from monitor.config.model import load_config
from monitor.delivery.render import OtherReport, Renderer
from monitor.delivery.routing import ClaimedAlert, TargetPolicy, WatchlistPolicy, plan
from monitor.errors import ConfigError
from monitor.ingest.decide import Decider, FeedIntent, FeedPoll, KnownStories, story_ident
from monitor.ingest.entries import Entry
from monitor.ingest.schedule import FeedSnapshot, FeedUpdate, PollPolicy
from monitor.storage.feeds import FeedConfigRow
from monitor.storage.store import Store
from tests.support.stories import NOW, result
from tests.test_decide import CLUSTER_ALIASES, RATIFY, RATIFY_2, RATIFY_FR, told
from tests.test_feedstate import feed

OUTLETS = [feed(id=i, name=f"outlet-{i}") for i in range(1, 7)]
TEXTS = (RATIFY, RATIFY_2, RATIFY)
RULE = (3, dt.timedelta(hours=2))


@dataclasses.dataclass(frozen=True)
class Arrival:
    """One telling of the event: which outlet, how many hours after 00:00 (the first
    story is at hour 1), whether it matches the watchlist, in a catch-up poll or not."""

    outlet: int
    hours: float
    matches: bool = False
    catchup: bool = False


def _decider(clusters: Clusterer, matching: set[Entry], escalate: dict[str, tuple[int, dt.timedelta]]) -> Decider:
    return Decider(
        # A telling that the watchlist does not match matches one without targets: only
        # stories some watchlist wants are clustered.
        match=lambda e: [result("pact")] if e in matching else [result("background")],
        targets={"pact": ["mail", "chat"], "visit": ["mail"]},
        policy=PollPolicy(jitter=0),
        clusters=clusters,
        escalate=escalate,
    )


def run(
    arrivals: list[Arrival], escalate: dict[str, tuple[int, dt.timedelta]] | None = None
) -> list[list[tuple[str, str, tuple[str, ...]]]]:
    """Each arrival in a poll of its own; for each, the surge rows it queued as
    (watchlist, target, outlets counted)."""
    clusters = Clusterer(vocabulary(CLUSTER_ALIASES))
    out = []
    for n, a in enumerate(arrivals):
        e = told(n + 1, TEXTS[n % len(TEXTS)], hours=a.hours)
        decider = _decider(clusters, {e} if a.matches else set(), {"pact": RULE} if escalate is None else escalate)
        decider = dataclasses.replace(decider, catchup=a.catchup)
        (intent,) = decider.decide([FeedPoll(OUTLETS[a.outlet - 1], [e], http_status=200)], KnownStories(), NOW)
        assert n == 0 or intent.stories[0].cluster != intent.stories[0].ident, "the tellings must cluster"
        out.append([(s.row.watchlist, s.row.target, s.outlets) for s in intent.surges])
    return out


def _surged(rows: list[list[tuple[str, str, tuple[str, ...]]]]) -> list[int]:
    return [i for i, r in enumerate(rows) if r]


THREE = ("outlet-1", "outlet-2", "outlet-3")


@pytest.mark.parametrize(
    ("arrivals", "escalate", "surged_at"),
    [
        ([Arrival(1, 1, True), Arrival(2, 1.5)], None, []),
        ([Arrival(1, 1, True), Arrival(2, 1.5), Arrival(3, 2)], None, [2]),
        ([Arrival(1, 1, True), Arrival(2, 1.5), Arrival(3, 2), Arrival(4, 2.5), Arrival(5, 2.8)], None, [2]),
        # outlet-3 published 3.5 h after the first story: outside 2 h, it does not count
        ([Arrival(1, 1, True), Arrival(2, 1.5), Arrival(3, 4.5)], None, []),
        ([Arrival(1, 1, True), Arrival(2, 1.5), Arrival(3, 4.5), Arrival(4, 2.5)], None, [3]),
        # a second story of outlet-2 is still two outlets
        ([Arrival(1, 1, True), Arrival(2, 1.5), Arrival(2, 2)], None, []),
        ([Arrival(1, 1, True), Arrival(2, 1.5), Arrival(3, 2)], {"visit": RULE}, []),
        ([Arrival(1, 1, True), Arrival(2, 1.5), Arrival(3, 2)], {}, []),
        # the cluster never alerted the watchlist: nothing to follow up
        ([Arrival(1, 1), Arrival(2, 1.5), Arrival(3, 2)], None, []),
        # the story that alerts comes with the coverage: the alert lists it; the next
        # telling brings the follow-up
        ([Arrival(1, 1), Arrival(2, 1.5), Arrival(3, 2, True), Arrival(4, 2.5)], None, [3]),
        # a catch-up poll queues nothing; the next telling does, the count still holding
        ([Arrival(1, 1, True), Arrival(2, 1.5), Arrival(3, 2, catchup=True), Arrival(4, 2.5)], None, [3]),
    ],
    ids=[
        "below-n",
        "at-n",
        "later-members-no-second",
        "outside-within",
        "outside-then-inside",
        "same-outlet-twice",
        "other-watchlist-escalates",
        "no-escalate",
        "never-alerted",
        "alerting-story-not-a-surge",
        "catch-up-defers",
    ],
)
def test_when_a_cluster_surges(
    arrivals: list[Arrival], escalate: dict[str, tuple[int, dt.timedelta]] | None, surged_at: list[int]
) -> None:
    assert _surged(run(arrivals, escalate)) == surged_at


def test_a_surge_is_one_row_per_target_naming_the_outlets_in_order() -> None:
    rows = run([Arrival(1, 1, True), Arrival(2, 1.5), Arrival(3, 2)])
    assert rows[2] == [("pact", "mail", THREE), ("pact", "chat", THREE)]


def test_a_surge_names_the_alerted_story_and_the_cluster() -> None:
    clusters = Clusterer(vocabulary(CLUSTER_ALIASES))
    first, second = told(1, RATIFY, hours=1), told(2, RATIFY_2, hours=1.5)
    third = told(3, RATIFY_FR, hours=2, language="fr")  # a French telling counts as its outlet
    decider = _decider(clusters, {second}, {"pact": (2, dt.timedelta(hours=2))})
    intents = [
        decider.decide([FeedPoll(OUTLETS[i], [e], http_status=200)], KnownStories(), NOW)[0]
        for i, e in enumerate((first, second, third))
    ]
    assert [len(i.alerts) for i in intents] == [0, 2, 0]  # the second telling alerted
    (surge, _) = intents[2].surges
    assert surge.story == story_ident(3, third)
    assert surge.alerted == story_ident(2, second)
    assert surge.cluster == story_ident(1, first)
    assert surge.outlets == ("outlet-1", "outlet-2", "outlet-3")


# -- config -------------------------------------------------------------------------


def _config(tmp_path: Path, escalate: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(
        "targets:\n  console: console://\n"
        "watchlists:\n  - name: pact\n    query: treaty\n    notify: [console]\n"
        f"    escalate: {escalate}\n",
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize(
    ("escalate", "message"),
    [
        ("{outlets: 1, within: 2h}", "outlets"),
        ("{outlets: 3, within: 5m}", "at least 10m"),
        ("{outlets: 3}", "within"),
        ("{within: 2h}", "outlets"),
        ("{outlets: 3, within: soon}", "within"),
        ("{outlets: 3, within: 2h, after: 1h}", "after"),
    ],
    ids=["one-outlet", "too-short", "no-within", "no-outlets", "bad-duration", "unknown-key"],
)
def test_escalate_config_errors_name_the_line(tmp_path: Path, escalate: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(_config(tmp_path, escalate))
    text = str(err.value)
    assert "config.yaml:7" in text and message in text and "Traceback" not in text


def test_escalate_is_off_by_default_and_reads_durations(tmp_path: Path) -> None:
    (wl,) = load_config(_config(tmp_path, "{outlets: 4, within: 90m}")).config.watchlists
    assert wl.escalate is not None and wl.escalate.rule() == (4, dt.timedelta(minutes=90))
    path = tmp_path / "plain.yaml"
    path.write_text(
        "targets:\n  console: console://\nwatchlists:\n  - name: pact\n    query: treaty\n    notify: [console]\n",
        encoding="utf-8",
    )
    assert load_config(path).config.watchlists[0].escalate is None


# -- store and restart --------------------------------------------------------------


def _stored_feeds(store: Store) -> list[FeedSnapshot]:
    store.sync_feeds([FeedConfigRow(f.name, f"http://127.0.0.1/{f.name}", 600, "en") for f in OUTLETS], now=NOW)
    by_name = {f.name: f for f in store.feeds()}
    return [dataclasses.replace(by_name[f.name], initialized=True, state="ok") for f in OUTLETS]


def _poll(store: Store, keeper: ClusterKeeper, snap: FeedSnapshot, e: Entry, matching: bool) -> FeedIntent:
    """One poll as the cycle runs it: under the keeper, look up, decide, write, settle."""
    with keeper.deciding(NOW) as clusters:
        decider = _decider(clusters, {e} if matching else set(), {"pact": RULE})
        known = store.known_stories([(snap.id, [e])])
        (intent,) = decider.decide([FeedPoll(snap, [e], http_status=200)], known, NOW)
        intent = dataclasses.replace(intent, update=FeedUpdate(next_poll_at=snap.next_poll_at))
        reports = store.apply_poll([intent])
        keeper.settle([intent], reports)
    return intent


def _surge_rows(store: Store) -> list[tuple[str, str, int]]:
    with store.engine.connect() as conn:
        rows = conn.execute(text("SELECT watchlist, target, cluster_id FROM outbox WHERE kind = 'surge'")).all()
    return sorted((w, t, c) for w, t, c in rows)


def test_a_restart_does_not_escalate_twice_and_the_outbox_fences_daemons(store: Store) -> None:
    snaps = _stored_feeds(store)
    tellings = [told(n + 1, TEXTS[n % 3], hours=1 + n / 4) for n in range(5)]
    keeper = ClusterKeeper(store, Clusterer(vocabulary(CLUSTER_ALIASES)))
    other = ClusterKeeper(store, Clusterer(vocabulary(CLUSTER_ALIASES)))  # a second daemon
    assert _poll(store, keeper, snaps[0], tellings[0], True).alerts  # the event alerts
    assert _poll(store, keeper, snaps[1], tellings[1], False).surges == ()
    with other.deciding(NOW):
        pass  # the second daemon has built its clusters before the surge
    assert len(_poll(store, keeper, snaps[2], tellings[2], False).surges) == 2
    rows = _surge_rows(store)
    assert [(w, t) for w, t, _ in rows] == [("pact", "chat"), ("pact", "mail")]
    # The second daemon catches up with the third telling but not with the surge the
    # first one queued: it decides the surge again, and the outbox's key keeps one.
    assert len(_poll(store, other, snaps[3], tellings[3], False).surges) == 2
    assert _surge_rows(store) == rows
    # A restart: a new keeper rebuilds the open clusters from the database, and the
    # surge rows come back with the story they name: nothing is decided again.
    restarted = ClusterKeeper(store, Clusterer(vocabulary(CLUSTER_ALIASES)))
    assert _poll(store, restarted, snaps[4], tellings[4], False).surges == ()
    assert _surge_rows(store) == rows


# -- the message ------------------------------------------------------------------


def _claimed(kind: str, outlets: tuple[str, ...] = ()) -> ClaimedAlert:
    return ClaimedAlert(
        id=7,
        kind=kind,  # type: ignore[arg-type]
        story_id=11,
        cluster_id=10,
        watchlist="pact",
        target="mail",
        attempts=1,
        fold=False,
        created_at=NOW,
        title="Kim Jong Un ratifies mutual defence pact with Russia",
        link="https://outlet-2.example/pact",
        summary="North Korean leader Kim Jong Un has ratified the treaty.",
        published_at=NOW,
        source="outlet-2",
        terms=("treaty",),
        outlets=outlets,
        within=7200.0,
    )


MEMBERS = {
    10: [
        OtherReport("outlet-1", "en", "North Korea ratifies defence treaty with Russia", "https://o1.example/a", 10),
        OtherReport(
            "outlet-2",
            "en",
            "Kim Jong Un ratifies mutual defence pact with Russia",
            "https://outlet-2.example/pact",
            11,
        ),
        OtherReport("outlet-1", "en", "Treaty: what it says", "https://o1.example/b", 12),
        OtherReport("outlet-3", "fr", "Kim Jong-un ratifie le traité <b>", "https://o3.example/fr", 13),
        OtherReport("outlet-4", "en", "Too late to count", "https://o4.example/late", 14),
    ]
}


@pytest.mark.parametrize(
    ("flavour", "title", "fragments"),
    [
        (
            "text",
            "[pact] now reported by 3 outlets: Kim Jong Un ratifies mutual defence pact with Russia",
            [
                "3 outlets reported this event within 2h of its first report.",
                "Reported by:\n- outlet-1 (en): North Korea ratifies defence treaty with Russia\n  https://o1.example/a",
                "- outlet-3 (fr): Kim Jong-un ratifie le traité <b>\n  https://o3.example/fr",
            ],
        ),
        (
            "email",
            "[pact] now reported by 3 outlets: Kim Jong Un ratifies mutual defence pact with Russia",
            ["Reported by:", "outlet-3 (fr): Kim Jong-un ratifie le traité &lt;b&gt;", 'href="https://o3.example/fr"'],
        ),
        (
            "slack",
            "Watchlist: pact",
            [
                "now reported by 3 outlets",
                "Reported by:\n• outlet-1 (en): [North Korea ratifies defence treaty with Russia]",
            ],
        ),
    ],
    ids=["text", "html", "slack"],
)
def test_the_follow_up_lists_the_outlets_counted(flavour: str, title: str, fragments: list[str]) -> None:
    message = Renderer().alert(story_for([_claimed("surge", ("outlet-1", "outlet-2", "outlet-3"))], MEMBERS), flavour)
    assert message.title == title
    for fragment in fragments:
        assert fragment in message.body, (fragment, message.body)
    assert "Also reported by" not in message.body
    assert "Too late to count" not in message.body and "Treaty: what it says" not in message.body


def test_the_story_alert_itself_is_unchanged() -> None:
    story = story_for([_claimed("story")], MEMBERS)
    assert story.title == "Kim Jong Un ratifies mutual defence pact with Russia" and not story.surge
    assert "Also reported by:" in Renderer().alert(story, "text").body


def test_a_digest_watchlist_gets_the_follow_up_in_its_digest() -> None:
    surge = _claimed("surge", ("outlet-1", "outlet-2", "outlet-3"))
    planned = plan(TargetPolicy("mail"), [surge], now=NOW, watchlists={"pact": WatchlistPolicy(mode="digest")})
    assert planned.messages == [] and [d.reason for d in planned.deferrals] == ["digest"]
    folded = dataclasses.replace(surge, fold=True)
    alert = dataclasses.replace(_claimed("story"), id=6, fold=True)
    stories = digest_stories([alert, folded], MEMBERS)  # the alert and its follow-up: two entries
    body = Renderer().digest(stories, "text", title="digest").body
    assert body.count("Kim Jong Un ratifies mutual defence pact with Russia") >= 2
    assert "now reported by 3 outlets: Kim Jong Un" in body and "  Reported by:" in body
