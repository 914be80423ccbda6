"""Two daemons on one PostgreSQL database take two tellings of one event at the same
moment: the event alerts once, and both tellings end in one cluster.

Each daemon is a real ``Runtime`` (its own store, fetcher, parse workers and open
clusters) polling its own local feed; the two cycles start together from a barrier,
and the database look-up inside the decision is slowed down so that, unless the
decisions are serialised, both daemons decide before either has written. The ingest
lock (``monitor.app.clusters``) makes the second decision wait for the first write and
see it. A control run with the lock switched off shows the race the test is about.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML
from sqlalchemy import select

from monitor.app.daemon import Runtime
from monitor.config.model import load_config
from monitor.storage.engine import Database
from monitor.storage.schema import Alert, Story
from tests.support.feeds import Item, rss
from tests.support.httpserver import HTTPTestServer, Static
from tests.test_end_to_end import shipped_watch

TELLINGS = (
    Item(
        "North Korea ratifies defence treaty with Russia",
        "https://wire-a.example/nk-ratifies",
        "Kim Jong Un ratified the mutual defence treaty with Russia by decree, KCNA said on Tuesday.",
    ),
    Item(
        "Kim Jong Un ratifies mutual defence pact with Russia, KCNA says",
        "https://wire-b.example/kim-ratifies",
        "North Korean leader Kim Jong Un has ratified the treaty on mutual defence with Russia, KCNA said.",
    ),
)


def _config(tmp: Path, database: str, http: HTTPTestServer) -> Path:
    aliases, watchlists = shipped_watch()
    for wl in watchlists:
        wl["notify"] = ["hook"]
    config = {
        "database": database,
        "poll": {"timeout": "2s", "deadline": "4s", "jitter": "0s", "catchup_new_feeds": False},
        "targets": {"hook": "json://127.0.0.1:9/alerts"},  # queued, never sent here
        "feeds": [
            {"name": f"wire-{i}", "url": http.url(f"/wire-{i}.xml"), "language": "en"} for i in range(len(TELLINGS))
        ],
        "aliases": aliases,
        "watchlists": watchlists,
    }
    path = tmp / "config.yaml"
    with path.open("w", encoding="utf-8") as fh:
        YAML().dump(config, fh)
    return path


@pytest.fixture
def daemons(tmp_path: Path, pg_schema: tuple[str, str]) -> Iterator[list[Runtime]]:
    url, schema = pg_schema
    database = f"{url}?options=-csearch_path%3D{schema}"
    with HTTPTestServer() as http:
        for i, item in enumerate(TELLINGS):
            http.route(f"/wire-{i}.xml", Static(body=rss([item]), etag=f'"{i}"'))
        loaded = load_config(_config(tmp_path, database, http))
        made = [Runtime.build(loaded, worker=f"daemon-{i}") for i in range(2)]
        try:
            yield made
        finally:
            for rt in made:
                rt.close()


def _race(daemons: list[Runtime], monkeypatch: pytest.MonkeyPatch) -> None:
    """Both daemons poll their own feed at once; each decision's look-up takes 0.5 s."""
    for rt in daemons:
        known = rt.store.known_stories

        def slow(batches: Any, known: Any = known) -> Any:
            time.sleep(0.5)
            return known(batches)

        monkeypatch.setattr(rt.store, "known_stories", slow)
    barrier = threading.Barrier(len(daemons))
    errors: list[BaseException] = []

    def run(rt: Runtime, name: str) -> None:
        try:
            barrier.wait()
            rt.pipeline.run_cycle(force=True, names=[name])
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(rt, f"wire-{i}")) for i, rt in enumerate(daemons)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors


def _clusters_and_alerts(rt: Runtime) -> tuple[set[int | None], list[tuple[int | None, str]]]:
    with rt.store.transaction() as conn:
        clusters = {c for (c,) in conn.execute(select(Story.cluster_id))}
        alerts = [(c, w) for c, w in conn.execute(select(Alert.cluster_id, Alert.watchlist))]
    return clusters, alerts


def test_two_daemons_taking_one_event_at_once_alert_once(
    daemons: list[Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    _race(daemons, monkeypatch)
    clusters, alerts = _clusters_and_alerts(daemons[0])
    assert len(clusters) == 1  # the second telling joined the first daemon's cluster
    assert alerts and len(alerts) == len({w for _, w in alerts})  # one alert per watchlist


def test_without_the_ingest_lock_both_daemons_would_alert(
    daemons: list[Runtime], monkeypatch: pytest.MonkeyPatch
) -> None:
    @contextmanager
    def no_lock(self: Database, key: int, *, wait: float = 300.0) -> Iterator[None]:
        yield

    monkeypatch.setattr(Database, "exclusive", no_lock)
    _race(daemons, monkeypatch)
    clusters, alerts = _clusters_and_alerts(daemons[0])
    assert len(clusters) == 2  # neither decision saw the other's story ...
    assert len(alerts) == 2 * len({w for _, w in alerts})  # ... and the event alerted twice
