"""Editing config.yaml in place: comments, order and style kept, validated, atomic, never half-written."""

from __future__ import annotations

import difflib
import os
import stat
from pathlib import Path

import pytest

from monitor.config.edit import ConfigEditor, FeedSpec, WatchlistSpec, atomic_write
from monitor.config.model import load_config
from monitor.errors import ConfigError, QuerySyntaxError

ROOT = Path(__file__).resolve().parent.parent

BLOCK = """\
# top comment
targets:
  console: console://   # prints
  mail: 'mailto://u:${SMTP_PW}@127.0.0.1:2525?to=a@example.org&from=b@example.org&mode=insecure'

feeds:
  - name: a
    url: https://a.example/rss   # feed a
  - name: b
    url: https://b.example/rss

# --- watchlists ---
watchlists:
  - name: one
    query: 'x AND y'   # tuned on Monday
    notify: [console]
  # the second one
  - name: two
    query: "z"
    notify:
      - console

# trailing comment
"""

ZERO_OFFSET = """\
targets:
    console: console://
feeds:
- name: a
  url: https://a.example/rss
watchlists:
- name: one
  query: x
  notify:
  - console
# end
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def added_and_removed(before: str, after: str) -> tuple[list[str], list[str]]:
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    return [d[2:] for d in diff if d.startswith("+ ")], [d[2:] for d in diff if d.startswith("- ")]


@pytest.mark.parametrize("text", [BLOCK, ZERO_OFFSET, (ROOT / "config.yaml").read_text(encoding="utf-8")])
def test_an_untouched_file_renders_byte_for_byte(tmp_path: Path, text: str) -> None:
    editor = ConfigEditor(write(tmp_path, text), env={"SMTP_PW": "x"})
    assert editor.render() == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BLOCK, ["  - name: three", "    query: 'Kursk AND troops'", "    notify: [console]"]),
        (ZERO_OFFSET, ["- name: three", "  query: Kursk AND troops", "  notify:", "  - console"]),
    ],
    ids=["indent-2-offset-2", "indent-4-offset-0"],
)
def test_add_watchlist_appends_only_its_lines_in_the_files_style(
    tmp_path: Path, text: str, expected: list[str]
) -> None:
    path = write(tmp_path, text)
    editor = ConfigEditor(path, env={"SMTP_PW": "x"})
    editor.add_watchlist(WatchlistSpec("three", "Kursk AND troops", ("console",)))
    editor.save()
    after = path.read_text(encoding="utf-8")
    added, removed = added_and_removed(text, after)
    assert removed == []
    assert added == expected
    # Appended after the last item's content, before the comments that follow the section.
    assert after.index("three") < after.rindex("# ")
    assert load_config(path, env={"SMTP_PW": "x"}).config.watchlist("three").query == "Kursk AND troops"


def test_add_feed_to_flow_style_list_of_shipped_config(tmp_path: Path) -> None:
    text = (ROOT / "config.yaml").read_text(encoding="utf-8")
    path = write(tmp_path, text)
    editor = ConfigEditor(path)
    editor.add_feed(FeedSpec("yna-fr", "https://fr.yna.co.kr/RSS/news.xml", language="fr"))
    editor.save()
    added, removed = added_and_removed(text, path.read_text(encoding="utf-8"))
    assert removed == []
    assert added == ['  - {name: yna-fr, url: "https://fr.yna.co.kr/RSS/news.xml", language: fr}']


@pytest.mark.parametrize(
    ("section", "name", "gone"),
    [
        (
            "watchlists",
            "two",
            ["  # the second one", "  - name: two", '    query: "z"', "    notify:", "      - console"],
        ),
        ("feeds", "b", ["  - name: b", "    url: https://b.example/rss"]),
        ("feeds", "a", ["  - name: a", "    url: https://a.example/rss   # feed a"]),
    ],
)
def test_remove_keeps_the_comments_that_belong_to_others(
    tmp_path: Path, section: str, name: str, gone: list[str]
) -> None:
    path = write(tmp_path, BLOCK)
    editor = ConfigEditor(path, env={"SMTP_PW": "x"})
    (editor.remove_watchlist if section == "watchlists" else editor.remove_feed)(name)
    editor.save()
    after = path.read_text(encoding="utf-8")
    added, removed = added_and_removed(BLOCK, after)
    assert added == [] and removed == gone
    assert "# --- watchlists ---" in after and "# trailing comment" in after


def test_removing_the_last_watchlist_leaves_a_valid_empty_list(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "targets: {console: 'console://'}\nwatchlists:   # mine\n  - name: w\n    query: x\n    notify: [console]\n",
    )
    editor = ConfigEditor(path)
    editor.remove_watchlist("w")
    editor.save()
    assert path.read_text(encoding="utf-8") == "targets: {console: 'console://'}\nwatchlists: []   # mine\n"
    assert load_config(path).config.watchlists == []


def test_update_keeps_inline_comments_and_unknown_keys(tmp_path: Path) -> None:
    text = BLOCK.replace("    notify: [console]\n", "    notify: [console]\n    mode: digest\n", 1)
    path = write(tmp_path, text)
    editor = ConfigEditor(path, env={"SMTP_PW": "x"})
    old = editor.watchlist("one")
    editor.update_watchlist("one", WatchlistSpec("one", "x OR z", old.notify, old.stem, old.enabled))
    editor.save()
    added, removed = added_and_removed(text, path.read_text(encoding="utf-8"))
    assert removed == ["    query: 'x AND y'   # tuned on Monday"]
    assert added == ["    query: 'x OR z'    # tuned on Monday"]  # the comment keeps its column


def test_update_renames_disables_and_adds_keys_in_place(tmp_path: Path) -> None:
    path = write(tmp_path, BLOCK)
    editor = ConfigEditor(path, env={"SMTP_PW": "x"})
    editor.update_watchlist("two", WatchlistSpec("two-b", "z OR w", ("console", "mail"), ("en",), False))
    editor.save()
    after = path.read_text(encoding="utf-8")
    config = load_config(path, env={"SMTP_PW": "x"}).config
    wl = config.watchlist("two-b")
    assert (wl.query, wl.notify, wl.stem, wl.enabled) == ("z OR w", ["console", "mail"], ["en"], False)
    assert [w.name for w in config.watchlists] == ["one", "two-b"]  # same place
    assert "  # the second one\n  - name: two-b" in after  # its leading comment kept
    assert "${SMTP_PW}" in after  # secrets never expanded into the file


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda e: e.add_watchlist(WatchlistSpec("one", "x", ("console",))), "already exists"),
        (lambda e: e.add_watchlist(WatchlistSpec("n", "x", ("slack",))), "unknown target 'slack'"),
        (lambda e: e.add_watchlist(WatchlistSpec("bad name!", "x", ("console",))), "not a valid name"),
        (lambda e: e.remove_watchlist("nope"), "no watchlist named 'nope'"),
        (lambda e: e.update_watchlist("one", WatchlistSpec("two", "x", ("console",))), "already exists"),
        (lambda e: e.add_feed(FeedSpec("c", "https://A.example/rss/")), "already configured as 'a'"),
        (lambda e: e.add_feed(FeedSpec("c", "ftp://c.example/rss")), "not an http(s) URL"),
        (lambda e: e.add_feed(FeedSpec("a", "https://c.example/rss")), "a feed named 'a' already exists"),
    ],
)
def test_bad_edits_are_refused_and_the_file_is_untouched(tmp_path: Path, change: object, error: str) -> None:
    path = write(tmp_path, BLOCK)
    editor = ConfigEditor(path, env={"SMTP_PW": "x"})
    with pytest.raises(ConfigError, match=error.replace("(", r"\(").replace(")", r"\)")):
        change(editor)  # type: ignore[operator]
        editor.save()
    assert path.read_text(encoding="utf-8") == BLOCK


def test_a_bad_query_names_the_watchlist_field_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, BLOCK)
    editor = ConfigEditor(path, env={"SMTP_PW": "x"})
    with pytest.raises(QuerySyntaxError) as info:
        editor.add_watchlist(WatchlistSpec("kursk", "Kursk AND (troops", ("console",)))
    assert info.value.column == 18 and info.value.watchlist == "kursk"
    assert info.value.field == "watchlists[2].query"
    assert path.read_text(encoding="utf-8") == BLOCK


def test_missing_env_var_already_used_is_tolerated_and_input_never_adds_one(tmp_path: Path) -> None:
    path = write(tmp_path, BLOCK)
    editor = ConfigEditor(path, env={})  # an analyst's shell without the service's secrets
    editor.add_watchlist(WatchlistSpec("three", "x", ("mail",), description="costs ${SMTP_PW}"))
    editor.add_feed(FeedSpec("c", "https://c.example/rss?k=${SMTP_PW}"))
    editor.save()
    text = path.read_text(encoding="utf-8")
    assert "https://c.example/rss?k=$${SMTP_PW}" in text
    config = load_config(path, env={"SMTP_PW": "hunter2hunter2"}).config
    assert config.feed("c").url == "https://c.example/rss?k=${SMTP_PW}"
    assert next(w for w in config.watchlists if w.name == "three").description == "costs ${SMTP_PW}"
    assert "hunter2hunter2" in config.targets["mail"].url


def test_save_refuses_when_the_file_changed_meanwhile(tmp_path: Path) -> None:
    path = write(tmp_path, BLOCK)
    editor = ConfigEditor(path, env={"SMTP_PW": "x"})
    editor.add_watchlist(WatchlistSpec("three", "x", ("console",)))
    path.write_text(BLOCK + "# edited by hand meanwhile\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="changed on disk"):
        editor.save()
    assert path.read_text(encoding="utf-8").endswith("# edited by hand meanwhile\n")


def test_atomic_write_keeps_mode_and_symlink_and_leaves_no_temp_file(tmp_path: Path) -> None:
    real = tmp_path / "etc" / "config.yaml"
    real.parent.mkdir()
    real.write_text("old\n", encoding="utf-8")
    os.chmod(real, 0o640)
    link = tmp_path / "config.yaml"
    link.symlink_to(real)
    atomic_write(link, "new\n")
    assert link.is_symlink() and real.read_text(encoding="utf-8") == "new\n"
    assert stat.S_IMODE(real.stat().st_mode) == 0o640
    assert sorted(p.name for p in real.parent.iterdir()) == ["config.yaml"]


def test_a_crash_during_the_write_leaves_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, BLOCK)
    editor = ConfigEditor(path, env={"SMTP_PW": "x"})
    editor.add_watchlist(WatchlistSpec("three", "x", ("console",)))

    def power_cut(*_args: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(ConfigError, match="cannot write config file"):
        editor.save()
    assert path.read_text(encoding="utf-8") == BLOCK
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


def test_add_feeds_in_one_edit(tmp_path: Path) -> None:
    path = write(tmp_path, BLOCK)
    editor = ConfigEditor(path, env={"SMTP_PW": "x"})
    editor.add_feeds([FeedSpec(f"f{i}", f"https://f{i}.example/rss", language="en") for i in range(300)])
    editor.save()
    feeds = load_config(path, env={"SMTP_PW": "x"}).config.feeds
    assert len(feeds) == 302 and feeds[-1].name == "f299" and feeds[-1].language == "en"
    assert "# --- watchlists ---" in path.read_text(encoding="utf-8")
