"""Parse workers stay lean: a worker imports the parser (feedparser and what it needs),
our parsing modules and the standard library, nothing else.

A worker is a whole interpreter per core; every library it imports is resident memory
paid once per worker for the life of the daemon (SQLAlchemy alone is about 30 MB, Apprise
about 25 MB). These tests run a real :class:`~monitor.ingest.pool.ParsePool`, have its
workers parse real feeds (XML and JSON Feed, an undeclared encoding that goes through
chardet), then ask each worker for its ``sys.modules`` and compare the top-level
packages with an allow-list.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.ingest.pool import ParseJob, ParsePool
from tests.support.feeds import Item, rss

#: Third-party packages a worker may import: the parser and its own dependencies
#: (sgmllib3k is feedparser's loose parser; chardet decodes undeclared encodings).
PARSER_PACKAGES = frozenset({"feedparser", "feedparser_sgmllib", "sgmllib", "chardet"})
#: Our modules a worker may import: the pool, the formats and what they build entries
#: with (entries and dedupe are pure: no database, network or delivery code).
OUR_MODULES = frozenset(
    {
        "monitor",
        "monitor.errors",
        "monitor.ingest",
        "monitor.ingest.pool",
        "monitor.ingest.entries",
        "monitor.ingest.dedupe",
    }
)
OUR_PREFIXES = ("monitor.ingest.formats",)
#: The ``python -c`` script, and the alias multiprocessing gives it.
MAIN = frozenset({"__main__", "__mp_main__"})

NOW = dt.datetime(2026, 12, 3, 12, 0, tzinfo=dt.UTC)
JSON_FEED = json.dumps(
    {
        "version": "https://jsonfeed.org/version/1.1",
        "title": "J",
        "items": [{"id": "1", "url": "https://news.example/j/1", "title": "A JSON story"}],
    }
).encode()
# No encoding declared anywhere, and not UTF-8: feedparser asks chardet.
KOI8 = (
    '<rss version="2.0"><channel><title>Новости</title><item><title>Курская область</title>'
    "<link>https://news.example/k/1</link></item></channel></rss>"
).encode("koi8-r")
JOBS = [
    ParseJob(
        rss([Item("A story", "https://news.example/story/1")]), "http://127.0.0.1/a.xml", "application/rss+xml", NOW
    ),
    ParseJob(JSON_FEED, "http://127.0.0.1/j.json", "application/feed+json", NOW),
    ParseJob(KOI8, "http://127.0.0.1/k.xml", None, NOW),
]


def bare_interpreter_modules() -> set[str]:
    """What this interpreter loads before running any code of ours (site hooks included)."""
    code = "import sys, json; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(out.stdout))


def not_allowed(modules: list[str], baseline: set[str]) -> list[str]:
    """The modules of ``modules`` outside the standard library and the allow-lists."""
    extra = []
    for name in modules:
        top = name.split(".")[0]
        if name in baseline or top in sys.stdlib_module_names or top in PARSER_PACKAGES or top in MAIN:
            continue
        if top == "monitor" and (name in OUR_MODULES or name.startswith(OUR_PREFIXES)):
            continue
        extra.append(name)
    return extra


def modules_after_parsing(pool: ParsePool) -> list[list[str]]:
    """Each worker's modules after the jobs: the jobs are run twice per worker, then one
    probe per worker (a probe waits behind the parses queued before it)."""
    futures = [pool.submit(job) for _ in range(pool.workers) for job in JOBS]
    titles = {f.result(timeout=60).entries[0].title for f in futures}
    assert titles == {"A story", "A JSON story", "Курская область"}
    return [pool.probe_modules().result(timeout=60) for _ in range(pool.workers)]


@pytest.fixture
def pool() -> Iterator[ParsePool]:
    parse_pool = ParsePool(2, timeout=30.0)
    try:
        yield parse_pool
    finally:
        parse_pool.close()


@pytest.mark.timeout(120)
def test_parse_workers_import_only_the_parser_and_the_standard_library(pool: ParsePool) -> None:
    baseline = bare_interpreter_modules()
    for modules in modules_after_parsing(pool):
        assert "feedparser" in modules and "monitor.ingest.formats.xml" in modules
        assert not_allowed(modules, baseline) == []


@pytest.mark.timeout(120)
def test_a_worker_that_imports_more_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same check, on workers made to import a library at start-up (through a
    ``sitecustomize`` on their path): the check names it."""
    baseline = bare_interpreter_modules()
    (tmp_path / "sitecustomize.py").write_text("import sqlalchemy, httpx\n", encoding="utf-8")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    heavy = ParsePool(1, timeout=30.0)
    try:
        (modules,) = modules_after_parsing(heavy)
    finally:
        heavy.close()
    extra = not_allowed(modules, baseline)
    assert "sqlalchemy" in extra and "httpx" in extra and "sitecustomize" in extra
