"""The watchlist editor in a real browser (Playwright + Debian's Chromium) against the real daemon.

Types a query, watches the live preview update, saves, and checks the watchlist landed
in config.yaml and in the daemon's next match. Screenshots go to tests/artifacts/
(git-ignored); with NEWS_MONITOR_UPDATE_DOCS=1 the editor's is also saved as
docs/watchlist-editor.png for the README.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from tests.support.daemon import DaemonProcess
from tests.support.feeds import Item, rss
from tests.support.httpserver import HTTPTestServer, Static
from tests.support.smtpserver import SMTPTestServer

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]

STORIES = [
    Item(
        "North Korean troops fighting in Russia's Kursk region, Seoul says",
        "https://news.example.org/world/nk-troops-kursk",
        "South Korea's spy agency says Pyongyang has sent thousands more soldiers to the Kursk front.",
    ),
    Item(
        "Des soldats nord-coréens déployés dans la région de Koursk",
        "https://www.example.fr/international/soldats-nord-coreens-koursk",
        "Selon Séoul, Pyongyang a envoyé de nouvelles troupes en Russie.",
    ),
    Item(
        "Kursk submarine disaster remembered 25 years on",
        "https://news.example.org/europe/kursk-submarine",
        "Families of the 118 sailors gathered in Murmansk.",
    ),
    Item(
        "Ukraine says its forces still hold positions in Kursk",
        "https://news.example.org/europe/ukraine-kursk-positions",
        "Kyiv's incursion into the Russian region began last year.",
    ),
    Item(
        "US widens sanctions on firms helping Pyongyang's arms trade with Moscow",
        "https://news.example.org/us/sanctions-dprk-russia",
        "The Treasury targets shipping companies and banks.",
    ),
    Item(
        "Iran oil exports hit by new sanctions",
        "https://news.example.org/mideast/iran-sanctions",
        "Washington targets tankers.",
    ),
]
NEW = Item(
    "Pyongyang sends more troops to Kursk as fighting intensifies",
    "https://news.example.org/world/more-nk-troops-kursk",
    "Officials in Seoul say a new contingent arrived this week.",
)


def chromium_or_skip() -> None:
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: .ci/run installs it with `apt-get install -y chromium`")
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium); CI installs it and runs this test")


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[tuple[DaemonProcess, HTTPTestServer, SMTPTestServer, Path, str]]:
    chromium_or_skip()
    with HTTPTestServer() as http, SMTPTestServer() as smtp:
        http.route("/world.xml", Static(body=rss(STORIES), etag='"1"'))
        config = {
            "database": "sqlite:///state/monitor.db",
            "poll": {"interval": "10s", "jitter": "0s", "tick": "0.5s", "timeout": "2s", "deadline": "3s"},
            "delivery": {"interval": "0.5s"},
            "web": {"listen": "127.0.0.1:0"},
            "targets": {"desk-mail": smtp.apprise_url()},
            "feeds": [{"name": "world-desk", "url": http.url("/world.xml"), "language": "en"}],
            "aliases": {
                "dprk": '"North Korea" OR "North Korean" OR Pyongyang OR "Corée du Nord" OR nord-coréen*',
            },
            "watchlists": [{"name": "dprk-sanctions", "query": "@dprk AND sanctions", "notify": ["desk-mail"]}],
        }
        path = tmp_path / "config.yaml"
        with path.open("w", encoding="utf-8") as fh:
            fh.write("# the desk's config: edited by hand and from the web page\n")
            YAML().dump(config, fh)
        daemon = DaemonProcess(path)
        try:
            line = daemon.wait_for_log(r"web interface on http://127\.0\.0\.1:\d+")
            url = re.search(r"http://127\.0\.0\.1:\d+", line)
            assert url
            daemon.wait_for_log(r"feed=world-desk fetched status=200 .*first poll: recorded without alerting")
            yield daemon, http, smtp, path, url.group(0)
        finally:
            daemon.kill()


def test_editor_in_a_real_browser(desk: tuple[DaemonProcess, HTTPTestServer, SMTPTestServer, Path, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    daemon, http, smtp, path, base = desk
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            page.set_default_timeout(15_000)
            page.goto(base + "/watchlists/new")
            expect(page).to_have_title(re.compile("New watchlist"))
            page.fill("#name", "kursk-troops")
            counts = page.locator("#preview-counts")

            # Typing updates the preview: first the bare term, then the full query.
            page.locator("#query").press_sequentially("Kursk", delay=20)
            expect(counts).to_contain_text("3 of 6 stories")
            page.locator("#query").press_sequentially(" AND (", delay=20)
            expect(page.locator("#preview-error")).to_contain_text("column")
            page.locator("#query").press_sequentially("troops OR soldats OR soldiers) AND (@dprk OR Koursk)", delay=5)
            page.locator("#query").fill("(Kursk OR Koursk) AND (troops OR soldats OR soldiers) AND @dprk")
            expect(counts).to_contain_text("2 of 6 stories")
            previewed = page.locator(".preview-list .ptitle").all_inner_texts()
            assert sorted(previewed) == sorted([STORIES[0].title, STORIES[1].title])
            expect(page.locator(".preview-list mark").first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "watchlist-editor.png"), full_page=True)
            if os.environ.get("NEWS_MONITOR_UPDATE_DOCS"):
                shutil.copy(ARTIFACTS / "watchlist-editor.png", ROOT / "docs" / "watchlist-editor.png")

            # Save: the file has it, the daemon reloads it.
            mark = daemon.mark()
            page.click("#save")
            expect(page.locator(".notice")).to_contain_text("Saved watchlist kursk-troops")
            expect(page.locator("#wl-kursk-troops")).to_contain_text("desk-mail")
            daemon.wait_for_log(r"config reloaded: .*2 watchlists", start=mark)
            text = path.read_text(encoding="utf-8")
            assert text.startswith("# the desk's config")
            saved = YAML(typ="safe").load(text)["watchlists"][-1]
            assert saved == {
                "name": "kursk-troops",
                "query": "(Kursk OR Koursk) AND (troops OR soldats OR soldiers) AND @dprk",
                "notify": ["desk-mail"],
            }
            assert smtp.messages == []  # the stories it previewed are old: no alert

            # The daemon's next poll matches a new story with the new watchlist.
            http.route("/world.xml", Static(body=rss([NEW, *STORIES]), etag='"2"'))
            try:
                (mail,) = smtp.wait_for(1, timeout=30)
            except AssertionError:
                raise AssertionError("no alert e-mail; daemon log:\n" + daemon.log) from None
            assert NEW.title in mail["Subject"]
            daemon.wait_for_log(r"alert sent target=desk-mail .*watchlists=kursk-troops", start=mark)

            # The alerts page shows it, with the matched terms highlighted.
            page.goto(base + "/")
            expect(page.locator("article.story").first).to_contain_text(NEW.title)
            expect(page.locator("article.story mark").first).to_have_text("Pyongyang")
            page.screenshot(path=str(ARTIFACTS / "alerts.png"), full_page=True)
            assert (ARTIFACTS / "alerts.png").stat().st_size > 10_000  # a rendered page, not a blank
        finally:
            browser.close()
    assert daemon.stop() == 0
    assert "Traceback" not in daemon.log
