"""The query language: what parses to what, and every error with its column."""

from __future__ import annotations

import pytest

from monitor.errors import ConfigError, QuerySyntaxError
from monitor.matching.query import (
    AliasRef,
    And,
    Field,
    Near,
    Not,
    Or,
    Term,
    parse_query,
    validate_aliases,
)

ALIASES = {
    "dprk": '"North Korea" | DPRK | Pyongyang | "Corée du Nord" | nord-coréen* | "Северная Корея" | 북한',
    "russia": "Russia OR Russie OR Moscou OR Россия",
    "both": "@dprk @russia",  # aliases may use aliases
    "dprk-troops": "@dprk (troops | soldats)",
}


@pytest.mark.parametrize(
    ("query", "rendered"),
    [
        ("Kursk", "Kursk"),
        ("Kursk Koursk", "Kursk AND Koursk"),  # implicit AND
        ("Kursk OR Koursk", "Kursk OR Koursk"),
        ("Kursk | Koursk", "Kursk OR Koursk"),
        ("Kursk|Koursk", "Kursk OR Koursk"),
        ("troops & Kursk", "troops AND Kursk"),
        ("a b OR c", "a AND b OR c"),  # AND binds tighter than OR
        ("a OR b c", "a OR b AND c"),
        ("(a OR b) c", "(a OR b) AND c"),
        ("NOT a b", "NOT a AND b"),  # NOT binds tighter than AND
        ("a -b", "a AND NOT b"),
        ('a -"nuclear plant"', 'a AND NOT "nuclear plant"'),
        ("a -(b OR c)", "a AND NOT (b OR c)"),
        ("a NOT b", "a AND NOT b"),
        ("a AND NOT (b OR c NEAR/2 d)", "a AND NOT (b OR c NEAR/2 d)"),
        ('"North Korea" NEAR/5 troops', '"North Korea" NEAR/5 troops'),
        ("(a OR b) NEAR/3 c", "(a OR b) NEAR/3 c"),
        ("NOT a NEAR/3 b c", "NOT a NEAR/3 b AND c"),
        ("sanction* organi?ation", "sanction* AND organi?ation"),
        ("title:Kursk", "title:Kursk"),
        ('summary:"mutual defence"', 'summary:"mutual defence"'),
        ("TITLE:(a OR b) c", "title:(a OR b) AND c"),
        ("@dprk AND @russia", "@dprk AND @russia"),
        ("title:@dprk", "title:@dprk"),
        ("«Corée du Nord» l'OTAN", '"Corée du Nord" AND l\'OTAN'),
        ("“North Korea” Kursk", '"North Korea" AND Kursk'),
        ('"or" Kursk', '"or" AND Kursk'),  # a quoted lower-case operator is a word
        ("nord-coréen AT&T", "nord-coréen AND AT&T"),
        ("NEARBY Kursk", "NEARBY AND Kursk"),  # only NEAR and NEAR/n are operators
        ("((a))", "a"),
    ],
)
def test_parse_and_render(query: str, rendered: str) -> None:
    parsed = parse_query(query, ALIASES)
    assert str(parsed) == rendered
    # The rendering is itself a query, which renders the same.
    assert str(parse_query(str(parsed), ALIASES)) == rendered


@pytest.mark.parametrize(
    ("query", "root"),
    [
        ("a b OR c", Or((And((Term("a", ("a",)), Term("b", ("b",)))), Term("c", ("c",))))),
        ("NOT a b", And((Not(Term("a", ("a",))), Term("b", ("b",))))),
        ("nord-coréen", Term("nord-coréen", ("nord", "coreen"))),
        ("l'OTAN", Term("l'OTAN", ("otan",))),
        ('"Corée du Nord"', Term('"Corée du Nord"', ("coree", "du", "nord"), phrase=True)),
        ("Kursk*", Term("Kursk*", ("kursk*",))),
        ("a NEAR/7 b", Near(Term("a", ("a",)), Term("b", ("b",)), 7)),
        ("title:a", Field("title", Term("a", ("a",)))),
    ],
)
def test_tree(query: str, root: object) -> None:
    assert parse_query(query).root == root


def test_aliases_expand_and_nest() -> None:
    parsed = parse_query("@both", ALIASES)
    assert isinstance(parsed.root, AliasRef)
    raws = [t.raw for t in parsed.terms()]
    assert raws[:2] == ['"North Korea"', "DPRK"]
    assert "Россия" in raws and "북한" in raws
    assert parse_query("@dprk", {"@dprk": "DPRK"}).terms()[0].raw == "DPRK"  # '@' in the key is fine


def test_hangul_words_and_wildcards_are_kept_as_written() -> None:
    """Hangul words match as prefixes in the matcher (see test_matcher's Korean rows)."""
    terms = {t.raw: t.words for t in parse_query("북한 Kursk Kursk* 북한*").terms()}
    assert terms == {"북한": ("북한",), "Kursk": ("kursk",), "Kursk*": ("kursk*",), "북한*": ("북한*",)}


OPERAND = "a term, a phrase, an alias or '('"


@pytest.mark.parametrize(
    ("query", "message", "column", "expected"),
    [
        ("", "empty query", 1, OPERAND),
        ("   ", "empty query", 1, OPERAND),
        ("a AND", "unexpected end of query", 6, OPERAND),
        ("a OR", "unexpected end of query", 5, OPERAND),
        ("OR a", "unexpected 'OR'", 1, OPERAND),
        ("a OR OR b", "unexpected 'OR'", 6, OPERAND),
        ("a AND | b", "unexpected '|'", 7, OPERAND),
        ("|a", "unexpected '|'", 1, OPERAND),
        ("NOT", "unexpected end of query", 4, OPERAND),
        ("(a OR b", "unclosed '('", 8, "')' to close the '(' of column 1"),
        ("((a) OR b", "unclosed '('", 10, "')' to close the '(' of column 1"),
        ("a)", "unbalanced ')'", 2, "an operator, a term or the end of the query"),
        ("(a) b)", "unbalanced ')'", 6, "an operator, a term or the end of the query"),
        ("()", "empty parentheses", 2, OPERAND),
        (
            "a NEAR b",
            "NEAR needs a distance",
            7,
            "'/' and a whole number of words from 1 to 100, as in NEAR/5",
        ),
        ("a NEAR/ b", "bad NEAR distance ''", 8, "a whole number of words from 1 to 100, as in NEAR/5"),
        ("a NEAR/x b", "bad NEAR distance 'x'", 8, "a whole number of words from 1 to 100, as in NEAR/5"),
        ("a NEAR/0 b", "bad NEAR distance '0'", 8, "a whole number of words from 1 to 100, as in NEAR/5"),
        ("a NEAR/101 b", "bad NEAR distance '101'", 8, "a whole number of words from 1 to 100, as in NEAR/5"),
        ("NEAR/5 b", "unexpected 'NEAR/5'", 1, OPERAND),
        ("a NEAR/5", "unexpected end of query", 9, OPERAND),
        (
            "(a b) NEAR/2 c",
            "NEAR needs a term, a phrase or an OR-group of them on each side",
            1,
            "a term, a phrase, a wildcard, an alias or (a OR b)",
        ),
        ("a NEAR/2 -b", "unexpected '-'", 10, OPERAND),
        (
            "a NEAR/2 @dprk-troops",
            "NEAR needs a term, a phrase or an OR-group of them on each side",
            10,
            "a term, a phrase, a wildcard, an alias or (a OR b)",
        ),
        (
            "a NEAR/2 b NEAR/3 c",
            "NEAR cannot be chained",
            12,
            "AND between two NEARs, as in (a NEAR/3 b) AND (b NEAR/3 c)",
        ),
        ('"North Korea', "unterminated phrase", 1, "a closing '\"'"),
        ('a "b" "c', "unterminated phrase", 7, "a closing '\"'"),
        ("«Corée du Nord", "unterminated phrase", 1, "a closing '»'"),
        ('""', "empty phrase", 1, "words between the quotes"),
        ('" , "', "empty phrase", 1, "words between the quotes"),
        ("*", "a bare '*' would match every word", 1, "letters before '*', as in sanction*"),
        ("a **", "a bare '*' would match every word", 3, "letters before '*', as in sanction*"),
        (
            "sanc*ion",
            "'*' is only allowed at the end of a word",
            5,
            "a wildcard at the end of a word, as in sanction*",
        ),
        ("a*", "wildcard prefix 'a*' is too short", 1, "at least 2 letters or digits before '*'"),
        ("???", "'???' has no letters or digits", 1, "a word"),
        ("!!!", "'!!!' has no letters or digits", 1, "a word"),
        ("@nope", "unknown alias '@nope'", 1, "one of @both, @dprk, @dprk-troops, @russia"),
        ("a @", "'@' without an alias name", 3, "an alias name, as in @dprk"),
        ("body:Kursk", "unknown field 'body'", 1, "title: or summary:"),
        ("a http://x", "unknown field 'http'", 3, "title: or summary:"),
        ("title: Kursk", "nothing after 'title:'", 7, "a term, a phrase or '(' right after 'title:'"),
        ("title:", "nothing after 'title:'", 7, "a term, a phrase or '(' right after 'title:'"),
        ("title:-a", "nothing to scope after 'title:'", 7, "a term, a phrase, an alias or '('"),
        ("title:(summary:a)", "field scopes cannot be nested", 1, "a single title: or summary: scope"),
        ("-", "'-' alone", 1, "a term, a phrase or '(' right after '-'"),
        ("a - b", "'-' alone", 3, "a term, a phrase or '(' right after '-'"),
        ("a -)", "'-' alone", 3, "a term, a phrase or '(' right after '-'"),
        ("a --b", "'-' must be followed by what to exclude", 4, OPERAND),
        (
            "Kursk or Koursk",
            "ambiguous lower-case 'or'",
            7,
            'OR for the operator, or "or" in quotes for the word',
        ),
        (
            "Kursk and troops",
            "ambiguous lower-case 'and'",
            7,
            'AND for the operator, or "and" in quotes for the word',
        ),
        (
            "Kursk not sub",
            "ambiguous lower-case 'not'",
            7,
            'NOT for the operator, or "not" in quotes for the word',
        ),
        (
            "Kursk Or Koursk",
            "ambiguous lower-case 'Or'",
            7,
            'OR for the operator, or "Or" in quotes for the word',
        ),
        (
            "NOT submarine",
            "the query would match stories that contain none of its terms",
            1,
            "at least one term that must be present (NOT alone only excludes)",
        ),
        (
            "Kursk OR -submarine",
            "the query would match stories that contain none of its terms",
            1,
            "at least one term that must be present (NOT alone only excludes)",
        ),
    ],
)
def test_syntax_errors(query: str, message: str, column: int, expected: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_query(query, ALIASES)
    err = info.value
    assert err.query == query
    assert (err.column, err.expected) == (column, expected)
    assert str(err) == f"{message} at column {column}, expected {expected}"
    assert err.caret().splitlines()[-1] == " " * (column - 1) + "^"
    assert isinstance(err, ConfigError)


def test_the_caller_names_the_watchlist() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_query("Kursk AND")
    named = info.value.with_context(watchlist="kursk-troops", field="watchlists[1].query")
    assert str(named) == (
        "watchlists[1].query: watchlist 'kursk-troops': unexpected end of query at column 10, "
        "expected a term, a phrase, an alias or '('"
    )
    assert (named.column, named.watchlist) == (10, "kursk-troops")


@pytest.mark.parametrize(
    ("aliases", "watchlist", "query", "column", "message"),
    [
        ({"a": "x OR @b", "b": "y @a"}, "@b", "y @a", 3, "alias cycle @a -> @b -> @a"),
        ({"a": "x OR @a"}, "@a", "x OR @a", 6, "alias cycle @a -> @a"),
        ({"a": "x OR @zzz"}, "@a", "x OR @zzz", 6, "unknown alias '@zzz'"),
        ({"a": "x OR"}, "@a", "x OR", 5, "unexpected end of query"),
        ({"a": '"x'}, "@a", '"x', 1, "unterminated phrase"),
        ({"bad name": "x"}, "@bad name", "bad name", 1, "invalid alias name 'bad name'"),
    ],
)
def test_alias_errors_name_the_alias(
    aliases: dict[str, str], watchlist: str, query: str, column: int, message: str
) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        validate_aliases(aliases)
    err = info.value
    assert (err.watchlist, err.query, err.column) == (watchlist, query, column)
    assert str(err).startswith(f"watchlist {watchlist!r}: {message} at column {column}")


def test_alias_errors_surface_when_a_query_uses_the_alias() -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_query("Kursk @a", {"a": "x OR @b", "b": "@a"})
    assert (info.value.watchlist, info.value.query, info.value.column) == ("@b", "@a", 1)


def test_an_alias_may_be_negative_but_a_query_may_not() -> None:
    validate_aliases({"noise": "-sport -football"})
    assert str(parse_query("Kursk @noise", {"noise": "-sport"})) == "Kursk AND @noise"
    with pytest.raises(QuerySyntaxError):
        parse_query("@noise", {"noise": "-sport"})


def test_valid_aliases_pass() -> None:
    validate_aliases(ALIASES)
    validate_aliases({})
