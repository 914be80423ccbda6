"""OPML import/export and `feeds add/remove`: what a user moving from a feed reader does."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from click.testing import CliRunner

from monitor.app.cli import cli
from monitor.config.model import load_config
from monitor.config.opml import ExportFeed, OpmlFeed, export_opml, parse_opml, plan_import
from monitor.errors import ConfigError
from tests.support.feeds import Item, rss
from tests.support.httpserver import HTTPTestServer, Static, Status

READER_EXPORT = """<?xml version="1.0" encoding="UTF-8"?>
<opml version="1.0">
  <head><title>My subscriptions</title></head>
  <body>
    <outline text="Monde" title="Monde">
      <outline type="rss" text="Le Monde - International" xmlUrl="https://www.lemonde.fr/international/rss_full.xml"/>
      <outline type="rss" TEXT="BBC News - World" XMLURL="https://feeds.bbci.co.uk/news/world/rss.xml" language="en"/>
      <outline text="Asie">
        <outline type="rss" title="Yonhap (EN)" text="ignored" xmlUrl="https://en.yna.co.kr/RSS/news.xml"/>
      </outline>
    </outline>
    <outline type="rss" text="Le Monde – International (again)" xmlUrl="https://WWW.LEMONDE.FR/international/rss_full.xml/"/>
    <outline type="rss" text="Gopher news" xmlUrl="gopher://example.org/news"/>
    <outline text="A note without a feed"/>
  </body>
</opml>
""".encode()


def test_parse_reads_nested_outlines_any_attribute_case_and_reports_skips() -> None:
    feeds, skipped = parse_opml(READER_EXPORT)
    assert [(f.title, f.url, f.category, f.language) for f in feeds] == [
        ("Le Monde - International", "https://www.lemonde.fr/international/rss_full.xml", "Monde", None),
        ("BBC News - World", "https://feeds.bbci.co.uk/news/world/rss.xml", "Monde", "en"),
        ("Yonhap (EN)", "https://en.yna.co.kr/RSS/news.xml", "Asie", None),
        ("Le Monde – International (again)", "https://WWW.LEMONDE.FR/international/rss_full.xml/", None, None),
    ]
    assert skipped == [("gopher://example.org/news", "not an http(s) URL")]


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"<rss><channel/></rss>", "not an OPML document"),
        (b"<opml version='2.0'><head/></opml>", "needs a <body>"),
        (b"<opml><body><outline", "not valid XML"),
        (
            b'<?xml version="1.0"?><!DOCTYPE opml [<!ENTITY a "aaaaaaaaaa">]><opml><body>&a;</body></opml>',
            "declares entities",
        ),
    ],
)
def test_hostile_or_wrong_files_are_refused(data: bytes, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_opml(data, file="subs.opml")


def test_plan_skips_configured_urls_and_makes_unique_names() -> None:
    feeds, _ = parse_opml(READER_EXPORT)
    plan = plan_import(
        [*feeds, OpmlFeed("BBC News - World", "https://feeds.bbci.co.uk/news/asia/rss.xml")],
        names=["bbc-news-world"],
        urls=["https://en.yna.co.kr/RSS/news.xml"],
        language="fr",
    )
    assert [(f.name, f.url, f.language) for f in plan.add] == [
        ("le-monde-international", "https://www.lemonde.fr/international/rss_full.xml", "fr"),
        ("bbc-news-world-2", "https://feeds.bbci.co.uk/news/world/rss.xml", "en"),
        ("bbc-news-world-3", "https://feeds.bbci.co.uk/news/asia/rss.xml", "fr"),
    ]
    assert plan.skipped == (
        ("https://en.yna.co.kr/RSS/news.xml", "already configured"),
        ("https://WWW.LEMONDE.FR/international/rss_full.xml/", "already configured"),
    )


def test_export_then_import_round_trips() -> None:
    feeds = [
        ExportFeed("lemonde", "https://www.lemonde.fr/rss?a=1&b=2", "fr"),
        ExportFeed("off", "https://x.example/rss", None, enabled=False),
    ]
    doc = export_opml(feeds, now=dt.datetime(2026, 11, 26, tzinfo=dt.UTC))
    assert "&amp;b=2" in doc and 'isDisabled="true"' in doc
    back, skipped = parse_opml(doc.encode())
    assert [(f.title, f.url, f.language) for f in back] == [
        ("lemonde", "https://www.lemonde.fr/rss?a=1&b=2", "fr"),
        ("off", "https://x.example/rss", None),
    ]
    assert skipped == []


BASE = """\
# my feeds
targets: {console: 'console://'}
feeds:
  - {name: bbc-world, url: "https://feeds.bbci.co.uk/news/world/rss.xml", language: en}

watchlists: []
"""


def cli_run(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    return result.exit_code, result.output


def test_cli_import_dry_run_then_import_then_export(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(BASE, encoding="utf-8")
    opml = tmp_path / "subs.opml"
    opml.write_bytes(READER_EXPORT)

    code, out = cli_run(config, "feeds", "import-opml", str(opml), "--dry-run")
    assert code == 0, out
    assert "2 feeds would be added, 3 skipped (dry run: nothing written)" in out
    assert "skipped https://feeds.bbci.co.uk/news/world/rss.xml: already configured" in out
    assert "would add le-monde-international: https://www.lemonde.fr/international/rss_full.xml" in out
    assert config.read_text(encoding="utf-8") == BASE

    code, out = cli_run(config, "feeds", "import-opml", str(opml))
    assert code == 0, out
    assert "imported 2 feeds (3 skipped)" in out  # bbc-world was already there
    names = [f.name for f in load_config(config).config.feeds]
    assert names == ["bbc-world", "le-monde-international", "yonhap-en"]
    assert config.read_text(encoding="utf-8").startswith("# my feeds\n")

    code, out = cli_run(config, "feeds", "import-opml", str(opml))
    assert code == 0 and "nothing to add (5 skipped)" in out

    code, out = cli_run(config, "feeds", "export-opml")
    assert code == 0
    exported, _ = parse_opml(out.encode())
    assert [f.title for f in exported] == names


def test_cli_import_with_check_keeps_only_working_feeds(tmp_path: Path) -> None:
    with HTTPTestServer() as http:
        http.route("/good.xml", Static(body=rss([Item("A story", "https://x.example/1")], title="Good desk")))
        http.route("/gone.xml", Status(404))
        http.route("/page.html", Static(body=b"<html><body>not a feed</body></html>", content_type="text/html"))
        config = tmp_path / "config.yaml"
        config.write_text(BASE, encoding="utf-8")
        opml = tmp_path / "subs.opml"
        outlines = "".join(
            f'<outline text="{name}" xmlUrl="{http.url(path)}"/>'
            for name, path in (("Good", "/good.xml"), ("Gone", "/gone.xml"), ("Page", "/page.html"))
        )
        opml.write_text(f"<opml version='2.0'><body>{outlines}</body></opml>", encoding="utf-8")
        code, out = cli_run(config, "feeds", "import-opml", str(opml), "--check")
    assert code == 0, out
    assert "imported 1 feeds (2 skipped)" in out
    assert "http_404" in out and "not a feed" in out
    assert [f.name for f in load_config(config).config.feeds] == ["bbc-world", "good"]


def test_cli_feeds_add_checks_names_from_title_and_remove(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(BASE, encoding="utf-8")
    with HTTPTestServer() as http:
        feed = rss([Item("Une histoire", "https://x.example/1")], title="Le Monde – Asie-Pacifique")
        url = http.route("/asie.xml", Static(body=feed))
        http.route(
            "/html",
            Static(body=b"<!doctype html><html><head><title>Hi</title></head></html>", content_type="text/html"),
        )
        code, out = cli_run(config, "feeds", "add", url)
        assert code == 0, out
        assert "Le Monde – Asie-Pacifique (1 entries)" in out and "added feed 'le-monde-asie-pacifique'" in out
        code, out = cli_run(config, "feeds", "add", http.url("/html"))
        assert code == 1 and "was not added: not a feed" in out
        code, out = cli_run(config, "feeds", "add", url, "--name", "again")
        assert code == 1 and "already configured as 'le-monde-asie-pacifique'" in out
    code, out = cli_run(
        config, "feeds", "add", "https://offline.example/rss", "--no-check", "--name", "later", "--interval", "30m"
    )
    assert code == 0, out
    feeds = {f.name: f for f in load_config(config).config.feeds}
    assert feeds["later"].interval == 1800 and feeds["le-monde-asie-pacifique"].url == url
    code, out = cli_run(config, "feeds", "remove", "bbc-world")
    assert code == 0 and "removed feed 'bbc-world'" in out
    assert [f.name for f in load_config(config).config.feeds] == ["le-monde-asie-pacifique", "later"]
    code, out = cli_run(config, "feeds", "remove", "nope")
    assert code == 1 and "no feed named 'nope'" in out


def test_cli_feeds_add_finds_the_feed_a_web_page_announces(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(BASE, encoding="utf-8")
    with HTTPTestServer() as http:
        feed = rss([Item("Une histoire", "https://x.example/1")], title="Le Monde – Asie-Pacifique")
        http.route("/feeds/asie.xml", Static(body=feed))
        http.route("/feeds/broken.xml", Static(body=b"<html>nope</html>", content_type="text/html"))
        page = (
            b"<!doctype html><html><head><title>Asie</title>"
            b'<link rel="stylesheet" href="/s.css">'
            b'<link rel="alternate" type="application/rss+xml" href="/feeds/broken.xml">'
            b'<link rel="alternate" type="application/rss+xml" title="Asie" href="feeds/asie.xml">'
            b"</head><body>news</body></html>"
        )
        home = http.route("/", Static(body=page, content_type="text/html; charset=utf-8"))
        http.route("/empty", Static(body=b"<!doctype html><html><head></head></html>", content_type="text/html"))
        code, out = cli_run(config, "feeds", "add", home)
        assert code == 0, out
        assert f"{home} is a web page; it announces the feed {http.url('/feeds/asie.xml')}" in out
        assert "Le Monde – Asie-Pacifique (1 entries)" in out
        assert load_config(config).config.feed("le-monde-asie-pacifique").url == http.url("/feeds/asie.xml")
        code, out = cli_run(config, "feeds", "add", http.url("/empty"))
        assert code == 1 and "no feed is announced on that page either" in out and "/feed, /rss" in out
        requests_before = len(http.requests())
        code, out = cli_run(config, "feeds", "add", http.url("/feeds/asie.xml"), "--name", "again")
        assert code == 1 and "already configured as 'le-monde-asie-pacifique'" in out
        assert len(http.requests()) == requests_before  # refused before fetching anything
