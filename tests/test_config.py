"""Config loading: valid configs load, and every bad one names the file, the line and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from monitor.config.model import load_config, parse_config, parse_duration, parse_size, resolve_database_url
from monitor.errors import ConfigError, QuerySyntaxError

ROOT = Path(__file__).resolve().parent.parent

BASE = """\
database: sqlite:///data/monitor.db
targets:
  console: console://
  mail: mailto://user:${SMTP_PASSWORD}@127.0.0.1:2525?to=a@example.org&from=b@example.org&mode=insecure
feeds:
  - name: one
    url: http://127.0.0.1:8000/one.xml
  - name: two
    url: http://127.0.0.1:8000/two.xml
    interval: 30m
watchlists:
  - name: kursk
    query: 'Kursk OR Koursk'
    notify: [console]
"""

ENV = {"SMTP_PASSWORD": "s3cret"}


def test_shipped_config_is_valid() -> None:
    loaded = load_config(ROOT / "config.yaml", env={})
    names = [w.name for w in loaded.config.watchlists]
    assert names == ["dprk-russia-pact", "kursk-troops", "dprk-russia-sanctions"]
    assert len(loaded.config.feeds) >= 15
    langs = {f.language for f in loaded.config.feeds}
    assert {"en", "fr"} <= langs
    assert "console" in loaded.config.targets
    assert loaded.database_url == f"sqlite:///{ROOT / 'data' / 'monitor.db'}"


def test_valid_config_with_env_and_durations() -> None:
    config, _ = parse_config(BASE, env=ENV)
    assert config.targets["mail"].url.startswith("mailto://user:s3cret@")
    assert config.feeds[1].interval == 1800
    assert config.feeds[0].interval is None
    assert config.poll.interval == 600


@pytest.mark.parametrize(
    ("mutate", "line", "field", "message"),
    [
        # unknown target in a watchlist
        (
            lambda t: t.replace("notify: [console]", "notify: [slak]"),
            14,
            "watchlists[0].notify[0]",
            "unknown target 'slak'",
        ),
        # bad URL
        (
            lambda t: t.replace("url: http://127.0.0.1:8000/two.xml", "url: ftp//nope"),
            9,
            "feeds[1].url",
            "is not an http(s) URL",
        ),
        # duplicate feed name
        (lambda t: t.replace("name: two", "name: one"), 8, "feeds[1].name", "duplicate feed name 'one'"),
        # duplicate feed URL
        (lambda t: t.replace("two.xml", "one.xml"), 9, "feeds[1].url", "duplicate feed url"),
        # invalid query syntax: names the watchlist and the column
        (
            lambda t: t.replace("'Kursk OR Koursk'", "'Kursk OR (Koursk'"),
            13,
            "watchlists[0].query",
            "watchlist 'kursk'",
        ),
        # unknown setting (typo)
        (
            lambda t: t.replace("    interval: 30m", "    intervall: 30m"),
            10,
            "feeds[1].intervall",
            "unknown setting 'intervall'",
        ),
        # bad duration
        (
            lambda t: t.replace("interval: 30m", "interval: soon"),
            10,
            "feeds[1].interval",
            "is not a duration",
        ),
        # missing environment variable
        (
            lambda t: t.replace("${SMTP_PASSWORD}", "${NO_SUCH_VARIABLE_X}"),
            4,
            "targets.mail",
            "NO_SUCH_VARIABLE_X is not set",
        ),
        # missing required field
        (lambda t: t.replace("    query: 'Kursk OR Koursk'\n", ""), 12, "watchlists[0].query", "required"),
        # YAML syntax error
        (lambda t: t.replace("feeds:", "feeds: [oops"), None, None, "invalid YAML"),
        # bad watchlist name
        (
            lambda t: t.replace("name: kursk", "name: 'has space'"),
            12,
            "watchlists[0].name",
            "not a valid name",
        ),
        # unknown time zone
        (lambda t: "timezone: Mars/Olympus\n" + t, 1, "timezone", "unknown time zone"),
    ],
)
def test_bad_config_names_file_line_and_field(mutate, line, field, message) -> None:  # type: ignore[no-untyped-def]
    text = mutate(BASE)
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="cfg.yaml", env=ENV)
    err = info.value
    assert message in str(err)
    assert str(err).startswith("cfg.yaml")
    if line is not None:
        assert err.line == line, str(err)
        assert f"cfg.yaml:{line}:" in str(err)
    if field is not None:
        assert err.field == field, str(err)
    assert "Traceback" not in str(err)


def test_query_error_has_column() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_config(BASE.replace("'Kursk OR Koursk'", "'Kursk OR (Koursk'"), file="cfg.yaml", env=ENV)
    assert info.value.watchlist == "kursk"
    assert info.value.column >= 1


def test_secret_not_in_error_for_other_field() -> None:
    text = BASE.replace("notify: [console]", "notify: [nope]")
    with pytest.raises(ConfigError) as info:
        parse_config(text, file="cfg.yaml", env=ENV)
    assert "s3cret" not in str(info.value)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found") as info:
        load_config(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in str(info.value)


def test_literal_dollar_brace_escape() -> None:
    config, _ = parse_config(BASE.replace("console: console://", "console: 'console://?x=$${HOME}'"), env=ENV)
    assert config.targets["console"].url == "console://?x=${HOME}"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), (45, 45), ("1.5h", 5400), ("250ms", 0.25)],
)
def test_durations(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "-5s", True, None, "10 parsecs"])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize(("value", "size"), [("10MB", 10_000_000), ("512KiB", 524288), (1000, 1000)])
def test_sizes(value: object, size: int) -> None:
    assert parse_size(value) == size


def test_relative_sqlite_path_resolves_against_config_dir(tmp_path: Path) -> None:
    assert resolve_database_url("sqlite:///data/x.db", tmp_path) == f"sqlite:///{tmp_path}/data/x.db"
    assert resolve_database_url("sqlite:////abs/x.db", tmp_path) == "sqlite:////abs/x.db"
    pg = "postgresql+psycopg://u:p@h/db"
    assert resolve_database_url(pg, tmp_path) == pg


@pytest.mark.parametrize(
    ("database", "state_directory", "expected"),
    [
        (None, None, "{config}/data/monitor.db"),  # the default, by hand: beside the config
        (None, "{state}", "{state}/data/monitor.db"),  # the default, under systemd
        (None, "{state}:/var/lib/other", "{state}/data/monitor.db"),  # several: the first
        ("sqlite:///x.db", "{state}", "{state}/x.db"),
        ("sqlite:///{abs}/x.db", "{state}", "{abs}/x.db"),  # absolute: left alone
    ],
    ids=["default", "state-directory", "several-state-directories", "relative", "absolute"],
)
def test_relative_sqlite_path_resolves_against_state_directory_when_set(
    tmp_path: Path, database: str | None, state_directory: str | None, expected: str
) -> None:
    folders = {"config": str(tmp_path / "etc"), "state": str(tmp_path / "state"), "abs": str(tmp_path / "abs")}
    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "config.yaml"
    config.write_text("" if database is None else f"database: {database.format(**folders)}\n", encoding="utf-8")
    env = {} if state_directory is None else {"STATE_DIRECTORY": state_directory.format(**folders)}
    loaded = load_config(config, env=env)
    assert loaded.database_url == "sqlite:///" + expected.format(**folders)


def test_load_from_file_reports_path(tmp_path: Path) -> None:
    p = tmp_path / "conf.yaml"
    p.write_text(textwrap.dedent(BASE).replace("notify: [console]", "notify: [zzz]"))
    with pytest.raises(ConfigError) as info:
        load_config(p, env=ENV)
    assert str(info.value).startswith(f"{p}:14: watchlists[0].notify[0]")


# -- the fast reading (libyaml) and the round-trip one agree ----------------------------

ANCHORS = BASE.replace(
    "    url: http://127.0.0.1:8000/one.xml\n",
    "    url: http://127.0.0.1:8000/one.xml\n    <<: &slow {interval: 2h, language: fr}\n",
).replace("    interval: 30m\n", "    interval: 30m\n    <<: *slow\n")


@pytest.mark.parametrize(
    "text",
    [
        BASE,
        (ROOT / "config.yaml").read_text(encoding="utf-8"),
        # YAML 1.2 scalars both readings must resolve alike: "on" and "09:30" stay text.
        BASE.replace("query: 'Kursk OR Koursk'", "query: on")
        + "    description: 09:30\n",
        BASE.replace(
            "console: console://", "console: {url: 'console://', quiet_hours: 22:00-07:00, rate_limit: 10/10m}"
        ),
        BASE.replace("interval: 30m", "interval: 1_800"),
        BASE.replace("'Kursk OR Koursk'", '"Kursk OR \\u041a\\u0443\\u0440\\u0441\\u043a"'),
        ANCHORS,
        "",
        BASE.replace("    interval: 30m", "    interval: 30m\n    interval: 1h"),  # an error either way
    ],
    ids=[
        "base", "shipped", "yaml-1.2-scalars", "flow-mapping", "underscored-int", "escaped-unicode", "anchors", "empty",
        "duplicate-key",
    ],
)
def test_the_fast_reading_gives_the_same_config_as_the_round_trip_one(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import monitor.config.model as model

    assert model._HAS_LIBYAML, "ruamel.yaml.clib is a dependency on CPython"
    try:
        fast, _ = parse_config(text, env=ENV)
    except ConfigError as exc:
        fast_error: ConfigError | None = exc
    else:
        fast_error = None
    monkeypatch.setattr(model, "_HAS_LIBYAML", False)
    if fast_error is not None:
        with pytest.raises(ConfigError) as info:
            parse_config(text, env=ENV)
        assert str(info.value) == str(fast_error)
        return
    slow, _ = parse_config(text, env=ENV)
    assert fast == slow


def test_a_valid_file_is_read_once_with_libyaml_and_an_invalid_one_again_with_lines(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import monitor.config.model as model

    reads: list[str] = []
    original = model._load_yaml_tree

    def counted(text: str) -> object:
        reads.append(text)
        return original(text)

    monkeypatch.setattr(model, "_load_yaml_tree", counted)
    parse_config((ROOT / "config.yaml").read_text(encoding="utf-8"), env={}, for_sending=False)
    assert reads == []
    with pytest.raises(ConfigError) as info:
        parse_config(BASE.replace("notify: [console]", "notify: [slak]"), file="cfg.yaml", env=ENV)
    assert len(reads) == 1
    assert info.value.line == 14
    # Merge keys and anchors read alike too (the anchor scan runs first either way).
    config, _ = parse_config(ANCHORS, env=ENV)
    assert [(f.interval, f.language) for f in config.feeds] == [(7200, "fr"), (1800, "fr")]
