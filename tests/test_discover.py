"""Feed discovery from a web page's ``<link rel="alternate">`` (plain values)."""

from __future__ import annotations

import pytest

from monitor.ingest.discover import feed_links, looks_like_html

BASE = "https://site.example/section/page.html"


@pytest.mark.parametrize(
    ("head", "links"),
    [
        ('<link rel="alternate" type="application/rss+xml" href="/rss">', ["https://site.example/rss"]),
        (
            '<link rel="alternate" type="application/atom+xml" href="atom.xml">',
            ["https://site.example/section/atom.xml"],
        ),
        (
            '<link rel="Alternate" type="application/feed+json; charset=utf-8" href="//cdn.example/f.json">',
            ["https://cdn.example/f.json"],
        ),
        (
            '<link rel="alternate nofollow" type="application/rss+xml" href="a"><link rel="alternate" '
            'type="application/rss+xml" href="a">',
            ["https://site.example/section/a"],
        ),  # once
        (
            '<base href="https://other.example/x/"><link rel="alternate" type="application/rss+xml" href="f">',
            ["https://other.example/x/f"],
        ),
        ('<link rel="alternate" type="text/html" href="/fr/">', []),  # a translation, not a feed
        ('<link rel="stylesheet" type="application/rss+xml" href="/rss">', []),
        ('<link rel="alternate" type="application/rss+xml" href="javascript:alert(1)">', []),
        ('<link rel="alternate" type="application/rss+xml" href="">', []),
        (
            '<link rel="alternate" type="application/rss+xml" href="/a"><link rel="alternate" '
            'type="application/atom+xml" href="/b">',
            ["https://site.example/a", "https://site.example/b"],
        ),
    ],
)
def test_feed_links_in_a_page_head(head: str, links: list[str]) -> None:
    page = f"<!doctype html><html><head><title>t</title>{head}</head><body></body></html>".encode()
    assert feed_links(page, BASE) == links


def test_links_after_the_head_do_not_count() -> None:
    page = b'<html><head></head><body><link rel="alternate" type="application/rss+xml" href="/rss"></body></html>'
    assert feed_links(page, BASE) == []


def test_broken_markup_keeps_what_came_before() -> None:
    page = b'<html><head><link rel="alternate" type="application/rss+xml" href="/rss"><![bogus <<<'
    assert feed_links(page, BASE) == ["https://site.example/rss"]


@pytest.mark.parametrize(
    ("body", "html"),
    [
        (b"<!DOCTYPE html><html>", True),
        (b"  \n<html lang='fr'>", True),
        (b"<?xml version='1.0'?><rss version='2.0'>", False),
        (b'{"version": "https://jsonfeed.org/version/1.1"}', False),
        (b"", False),
    ],
)
def test_looks_like_html(body: bytes, html: bool) -> None:
    assert looks_like_html(body) is html
