"""The labelled clustering set (tests/data/clusters.jsonl and cluster_near_misses.json) keeps its agreed format.

A clusterer is tuned and measured on these files, so a malformed line, a reused id or a near-miss
pair naming an event that does not exist would silently skew its scores. This test checks the
format only: every field present with the right type, unique ids and links, ``published`` an ISO
8601 UTC time, events told within two days, the minimum sizes, and near-miss pairs that name two
existing events sharing at least one named actor (a capitalised word that is not a title,
weekday or month), which is what makes them near misses rather than unrelated events.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"
STORIES_FILE = DATA / "clusters.jsonl"
NEAR_MISSES_FILE = DATA / "cluster_near_misses.json"
FIELDS = ("id", "event", "outlet", "language", "published", "title", "summary", "link")
LANGUAGES = {"en", "fr", "ru", "uk", "ko", "de"}
FIRST_DAY = datetime(2024, 6, 1, tzinfo=UTC)
LAST_DAY = datetime(2025, 7, 1, tzinfo=UTC)
MAX_SPREAD = timedelta(days=2)
# Capitalised words that name no actor: roles, agency tags, sentence openers, days and months.
NOT_ACTORS = frozenset(
    """the a an in on at as after before for of with about from to by and or but new first
    lead urgent update president prime minister ministers secretary chancellor general state foreign
    defence defense security council ministry government court parliament official officials
    monday tuesday wednesday thursday friday saturday sunday january february march april may june
    july august september october november december le la les un une des du de et en au aux à
    der die das ein eine und im nach reuters afp kcna yonhap tass""".split()
)


def _stories() -> list[dict[str, Any]]:
    lines = STORIES_FILE.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == "", "the file ends with a newline"
    return [json.loads(line) for line in lines[:-1]]


def _near_misses() -> list[dict[str, Any]]:
    pairs = json.loads(NEAR_MISSES_FILE.read_text(encoding="utf-8"))
    assert isinstance(pairs, list)
    return pairs


STORIES = _stories()
NEAR_MISSES = _near_misses()


def _by_event() -> dict[str, list[dict[str, Any]]]:
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for story in STORIES:
        events[story["event"]].append(story)
    return events


def _published(story: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(story["published"])


def _actors(stories: list[dict[str, Any]]) -> set[str]:
    words: set[str] = set()
    for story in stories:
        for word in re.findall(r"\w+", f"{story['title']} {story['summary']}"):
            if word[0].isupper() and len(word) > 2 and word.lower() not in NOT_ACTORS:
                words.add(word.lower())
    return words


@pytest.mark.parametrize("story", STORIES, ids=[str(s.get("id")) for s in STORIES])
def test_every_story_has_every_field_with_the_right_shape(story: dict[str, Any]) -> None:
    assert tuple(story) == FIELDS
    assert all(isinstance(story[name], str) and story[name].strip() == story[name] != "" for name in FIELDS)
    assert re.fullmatch(r"s\d{4}", story["id"])
    assert re.fullmatch(r"e\d{3}", story["event"])
    assert story["language"] in LANGUAGES
    assert story["link"].startswith(("https://", "http://")) and " " not in story["link"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", story["published"])
    published = _published(story)
    assert published.utcoffset() == timedelta(0)
    assert FIRST_DAY <= published < LAST_DAY


@pytest.mark.parametrize("name", ["id", "link"])
def test_ids_and_links_are_unique(name: str) -> None:
    values = [story[name] for story in STORIES]
    assert sorted({v for v in values if values.count(v) > 1}) == []


def test_ids_are_numbered_in_order() -> None:
    assert [story["id"] for story in STORIES] == [f"s{n:04d}" for n in range(1, len(STORIES) + 1)]


@pytest.mark.parametrize("event", sorted(_by_event()))
def test_an_event_is_told_within_two_days(event: str) -> None:
    times = [_published(story) for story in _by_event()[event]]
    assert max(times) - min(times) <= MAX_SPREAD


@pytest.mark.parametrize(
    ("what", "minimum"),
    [("stories", 280), ("events", 70), ("events in two languages or more", 40), ("near-miss pairs", 22)],
)
def test_the_set_is_big_enough(what: str, minimum: int) -> None:
    events = _by_event()
    counts = {
        "stories": len(STORIES),
        "events": len(events),
        "events in two languages or more": sum(len({s["language"] for s in ss}) >= 2 for ss in events.values()),
        "near-miss pairs": len(NEAR_MISSES),
    }
    assert counts[what] >= minimum


def test_near_miss_pairs_are_distinct_and_well_formed() -> None:
    seen: set[frozenset[str]] = set()
    for pair in NEAR_MISSES:
        assert set(pair) == {"a", "b", "why"} and all(isinstance(v, str) and v for v in pair.values())
        key = frozenset((pair["a"], pair["b"]))
        assert len(key) == 2 and key not in seen, pair
        seen.add(key)


@pytest.mark.parametrize("pair", NEAR_MISSES, ids=[f"{p.get('a')}-{p.get('b')}" for p in NEAR_MISSES])
def test_a_near_miss_pairs_two_existing_events_with_a_shared_actor(pair: dict[str, str]) -> None:
    events = _by_event()
    assert pair["a"] in events and pair["b"] in events
    assert _actors(events[pair["a"]]) & _actors(events[pair["b"]]), pair["why"]
