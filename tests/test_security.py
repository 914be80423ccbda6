"""Hostile and careless input: a clear error or a result, never a traceback.

Each row is one way a user, a feed or an attacker was found to break something; the
test asserts what the user sees instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config.model import MAX_DURATION, MAX_SIZE, parse_config
from monitor.errors import ConfigError, QuerySyntaxError
from monitor.matching.query import MAX_DEPTH, parse_query


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (".inf", "longer than the longest duration accepted"),
        ("-.inf", "cannot be negative or NaN"),
        (".nan", "cannot be negative or NaN"),
        ("99999999999d", "longer than the longest duration accepted"),
        ("1e999", "longer than the longest duration accepted"),
        ("367d", "longer than the longest duration accepted"),
    ],
)
def test_durations_are_finite_and_bounded(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f"poll: {{backoff_max: {value}}}\nfeeds: []\n", file="config.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("config.yaml:1: poll.backoff_max: ")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"99999999999999999999GB"', "larger than the largest size accepted"),
        ("1e999", "expected a size"),
        ("2000000000", "larger than the largest size accepted"),
    ],
)
def test_sizes_are_bounded(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(f"poll: {{max_bytes: {value}}}\nfeeds: []\n", file="config.yaml")
    assert message in str(err.value)


def test_the_bounds_themselves_are_accepted() -> None:
    config = parse_config(f"poll: {{backoff_max: 366d, max_bytes: {MAX_SIZE}}}\nfeeds: []\n")[0]
    assert (config.poll.backoff_max, config.poll.max_bytes) == (MAX_DURATION, MAX_SIZE)


@pytest.mark.parametrize(
    ("query", "column"),
    [
        ("(" * 250 + "Kursk" + ")" * 250, MAX_DEPTH + 1),
        ("(" * 200 + "Kursk" + ")" * 200, MAX_DEPTH + 1),
        ("NOT " * 300 + "Kursk Moscow", 4 * MAX_DEPTH + 1),
        ("title:" + "(" * 100 + "Kursk" + ")" * 100, 6 + MAX_DEPTH + 1),
    ],
)
def test_deep_nesting_is_a_syntax_error_with_its_column(query: str, column: int) -> None:
    with pytest.raises(QuerySyntaxError) as err:
        parse_query(query)
    assert err.value.column == column
    assert f"nests deeper than {MAX_DEPTH} levels" in str(err.value)


def test_nesting_up_to_the_limit_parses() -> None:
    query = "(" * MAX_DEPTH + "Kursk OR Koursk" + ")" * MAX_DEPTH
    assert {t.raw for t in parse_query(query).terms()} == {"Kursk", "Koursk"}


def test_aliases_count_towards_the_depth() -> None:
    aliases = {f"a{i}": f"@a{i + 1} x{i}" for i in range(200)} | {"a200": "Kursk"}
    with pytest.raises(QuerySyntaxError) as err:
        parse_query("@a0", aliases)
    assert "nests deeper than" in str(err.value)
    assert err.value.watchlist is not None and err.value.watchlist.startswith("@a")


@pytest.mark.parametrize("value", [".inf", ".nan", "99999999999d"])
def test_check_config_prints_one_line_not_a_traceback(tmp_path: Path, value: str) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(f"poll:\n  interval: {value}\nfeeds: []\n", encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(config), "check-config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    assert f"{config}:2: poll.interval: " in done.stderr + done.stdout
