"""The alerts, feeds and editor pages in a real browser (Playwright + Debian's Chromium).

The web app runs in this process over a seeded database (no daemon: the page must make
sense without one). Checks what a user sees and does: the alias groups beside the
query, adding a feed with the form, the banners of the feeds page, filtering and paging
the alerts, a pending alert's last error, and every page at a phone's width (375 px)
without horizontal scrolling.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.config.model import load_config
from monitor.storage.feeds import FeedConfigRow
from tests.support.feeds import Item, rss
from tests.support.httpserver import HTTPTestServer, Static
from tests.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, chromium_or_skip
from tests.test_web_first_hour import DNS, Site, make_site


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    chromium_or_skip()
    s, server = make_site(tmp_path, f"sqlite:///{tmp_path / 'monitor.db'}")
    try:
        yield s
    finally:
        s.http.close()
        server.stop()
        s.store.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser: Any, width: int = 1280) -> Any:
    page = browser.new_page(viewport={"width": width, "height": 800})
    page.set_default_timeout(15_000)
    return page


def test_the_editor_shows_what_aliases_stand_for(site: Site, browser: Any) -> None:
    from playwright.sync_api import expect

    page = open_page(browser)
    page.goto(site.server.url + "/watchlists/new")
    aliases = page.locator("#aliases")
    expect(aliases).to_be_visible()
    expect(page.locator("#alias-dprk")).to_have_text("@dprk")
    expect(page.locator("#alias-dprk + dd")).to_have_text('"North Korea" OR "North Korean" OR Pyongyang')
    page.locator("#query").press_sequentially("@front AND report", delay=10)
    # The alias the query names, and the one that alias names in turn, are marked.
    expect(page.locator("#alias-front")).to_have_class(re.compile(r"\bused\b"))
    expect(page.locator("#alias-kursk")).to_have_class(re.compile(r"\bused\b"))
    expect(page.locator("#alias-dprk")).not_to_have_class(re.compile(r"\bused\b"))
    expect(page.locator("#preview-counts")).to_contain_text("35 of 36 stories")


def test_adding_a_feed_and_the_banners_of_the_feeds_page(site: Site, browser: Any) -> None:
    from playwright.sync_api import expect

    site.fail_unpolled(failures=4)
    page = open_page(browser)
    with HTTPTestServer() as http:
        url = http.route("/asia.xml", Static(body=rss([Item("A story", "https://x.example/1")], title="Asia desk")))
        page.goto(site.server.url + "/feeds")
        expect(page.locator("#failing-banner")).to_contain_text("2 of 2 feeds are failing with DNS errors")
        expect(page.locator("#idle-banner")).to_contain_text("No daemon has polled since")
        expect(page.locator("#feed-desk .next")).to_contain_text("due now")
        page.fill("#feed-url", url)
        page.click("#add-feed-submit")
        expect(page.locator(".notice").first).to_contain_text("Added feed asia-desk")
        page.fill("#feed-url", url)
        page.click("#add-feed-submit")
        expect(page.locator("#add-error")).to_contain_text("already configured as 'asia-desk'")
    assert load_config(site.path).config.feed("asia-desk").url == url


def test_alerts_filtered_paged_and_a_pending_error(site: Site, browser: Any) -> None:
    from playwright.sync_api import expect

    (claimed,) = [a for a in site.store.claim_alerts(worker="w", lease=60) if a.watchlist == "dprk"]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    site.store.mark_failed(
        [claimed], worker="w", error="HTTP 502 from the relay", next_attempt_at=later, give_up=False
    )
    page = open_page(browser)
    page.goto(site.server.url + "/")
    stories = page.locator("article.story")
    expect(stories).to_have_count(30)
    expect(stories.first.locator(".delivery-error")).to_have_text("last error: HTTP 502 from the relay")
    page.click("a[rel=next]")
    expect(stories).to_have_count(6)
    assert "page=2" in page.url
    page.click("a[rel=prev]")
    expect(stories).to_have_count(30)
    page.select_option("#watchlist", "dprk")
    page.click("#alerts-filter button")
    expect(stories).to_have_count(1)
    expect(stories.first).to_contain_text("Pyongyang fires a missile")
    expect(page.locator("a[rel=next]")).to_have_count(0)
    assert "watchlist=dprk" in page.url


def test_every_page_fits_a_phone_screen(site: Site, browser: Any) -> None:
    # The widest content there is: a long feed URL and error, a long query.
    rows = [FeedConfigRow(f.name, f.url, f.interval_s, f.language) for f in site.store.feeds()]
    long_url = (
        "https://feeds.example.org/" + "very-long-section-name/" * 6 + "rss.xml?token=abcdef&edition=international"
    )
    site.store.sync_feeds([*rows, FeedConfigRow("long-feed-name-for-a-regional-edition", long_url, 600, "en")])
    site.set_feed("desk", state="backoff", consecutive_failures=2, last_error_reason="tls", last_error=DNS * 2)
    story = site.store.matched_stories(watchlist="dprk")[0].story_id
    page = open_page(browser, width=375)
    ARTIFACTS.mkdir(exist_ok=True)
    for path in (
        "/",
        "/feeds",
        "/watchlists",
        "/watchlists/new",
        "/watchlists/kursk/edit",
        "/search?q=Kursk",
        f"/stories/{story}",
    ):
        page.goto(site.server.url + path)
        page.wait_for_load_state("networkidle")
        widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        if widths[0] > widths[1]:
            page.screenshot(path=str(ARTIFACTS / "phone-overflow.png"), full_page=True)
        assert widths[0] <= widths[1], f"{path} is {widths[0]}px wide on a {widths[1]}px screen"
