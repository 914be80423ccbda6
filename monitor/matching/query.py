"""The watchlist query language: lexer, parser and AST (pure).

Syntax, by example::

    Kursk Koursk                     implicit AND between terms
    Kursk OR Koursk   Kursk | Koursk OR
    troops AND Kursk  troops & Kursk AND (explicit)
    NOT submarine     -submarine     NOT; also -"nuclear plant" and -(a OR b)
    (a OR b) c                       parentheses
    "Corée du Nord"   «Corée du Nord» a phrase: these words, in this order, adjacent
    sanction*                        prefix wildcard (at least 2 letters before the *)
    organi?ation                     '?' is exactly one letter or digit
    "North Korea" NEAR/5 troops      both within 5 words of each other, either order
    title:Kursk  summary:"mutual defence"  title:(a OR b)
    @dprk                            an alias group defined under ``aliases:``

Precedence, tightest first: ``NEAR/n``, ``NOT``/``-``, ``AND`` (explicit or implicit),
``OR``. So ``a b OR c`` is ``(a AND b) OR c`` and ``NOT a b`` is ``(NOT a) AND b``.

Operators are the upper-case words ``AND OR NOT NEAR/n`` (plus ``|``, ``&``, ``-``).
Analysts paste French and English text, where ``or``, ``and`` and ``not`` are ordinary
words; but someone who types ``Kursk or Koursk`` almost certainly means the operator,
and silently searching for the word "or" would make the watchlist miss every story.
So a bare lower- or mixed-case ``and``/``or``/``not`` is a syntax error that says which
of the two to write: ``OR`` for the operator, ``"or"`` (quoted) for the word.

Terms are folded and split into words exactly like story text (see
:mod:`monitor.matching.textnorm`): ``nord-coréen`` is the two-word phrase ``nord coreen`` (so it
matches "nord-coréen", "nord coréen" and "nord–coréen"), ``l'OTAN`` is ``otan``, and
``Corée`` equals ``coree``. A word ending in Hangul matches as a prefix (Korean glues
particles to nouns: ``북한`` finds ``북한은``, ``북한이``).

A field scope (``title:``/``summary:``) applies to a term, a phrase, an alias or a
parenthesised group; scopes do not nest. ``NEAR/n`` takes on each side a term, phrase,
wildcard, alias or parenthesised OR of those (no AND/NOT inside: "near" is about the
position of one thing, and an AND has no single position); n is 1 to 100.

A query must need at least one term to be present: ``NOT sport`` alone (or
``a OR NOT b``) would alert on almost every story and is rejected.

Aliases (``aliases:`` in the config) map a name to a query; ``@name`` inserts it as a
parenthesised group. Aliases may use other aliases; a cycle or an unknown name is an
error. Errors inside an alias are reported against the alias's own text, with
``watchlist='@name'``.

Every error is a :class:`~monitor.errors.QuerySyntaxError` with a 1-based ``column``
and what was ``expected`` there.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from monitor.errors import QuerySyntaxError
from monitor.matching.textnorm import fold, pattern_words

__all__ = [
    "FIELDS",
    "MAX_DEPTH",
    "MAX_NEAR",
    "AliasRef",
    "And",
    "Field",
    "Near",
    "Node",
    "Not",
    "Or",
    "Query",
    "Term",
    "parse_query",
    "validate_aliases",
]

#: Field names a scope may use.
FIELDS: tuple[str, ...] = ("title", "summary")
#: Largest distance NEAR/n accepts.
MAX_NEAR = 100
#: Shortest literal prefix before a '*' wildcard.
MIN_PREFIX = 2
#: Deepest nesting of parentheses, NOT/'-' and aliases in one query (the parser, the
#: matcher and the renderers recurse over the tree, and Python's stack is ~1,000 frames).
MAX_DEPTH = 64

_EXPECT_OPERAND = "a term, a phrase, an alias or '('"
_QUOTES = {'"': '"', "\u201c": '\u201d"', "\u201e": '\u201c\u201d"', "\u00ab": "\u00bb"}
_ALIAS_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_FIELD_RE = re.compile(r"([A-Za-z]+):")
_ErrorFactory = Callable[[str, int, "str | None"], QuerySyntaxError]
_STOP = set('()|"\u201c\u201e\u00ab') | {" ", "\t", "\n", "\r"}


# --------------------------------------------------------------------------- AST


@dataclass(frozen=True, slots=True)
class Term:
    """A word, a hyphenated word or a quoted phrase.

    ``raw`` is the text as the user wrote it (quotes included), used in explanations;
    ``words`` are its folded words, where a word may end in ``*`` (prefix) and contain
    ``?`` (any one character). ``phrase`` is True for quoted phrases, which are never
    stemmed.
    """

    raw: str
    words: tuple[str, ...]
    phrase: bool = False
    column: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


@dataclass(frozen=True, slots=True)
class Near:
    """Both sides occur in the same field with at most ``distance`` words between them."""

    left: Node
    right: Node
    distance: int


@dataclass(frozen=True, slots=True)
class Field:
    """Restrict ``child`` to the story's ``name`` field (``title`` or ``summary``)."""

    name: str
    child: Node


@dataclass(frozen=True, slots=True)
class AliasRef:
    """``@name``: the parsed alias query, kept under its name for rendering."""

    name: str
    child: Node


Node = Term | And | Or | Not | Near | Field | AliasRef

_PREC = {Or: 1, And: 2, Not: 3, Near: 4}


def _render(node: Node, parent: int = 0) -> str:
    if isinstance(node, Term):
        if node.phrase:
            inner = node.raw[1:-1] if len(node.raw) >= 2 else node.raw
            return '"' + inner.replace('"', "") + '"'
        return node.raw
    if isinstance(node, AliasRef):
        return "@" + node.name
    if isinstance(node, Field):
        child = node.child
        body = _render(child, 5) if isinstance(child, Term | AliasRef) else "(" + _render(child) + ")"
        return f"{node.name}:{body}"
    if isinstance(node, Not):
        return "NOT " + _render(node.child, 3)
    if isinstance(node, Near):
        text = f"{_render(node.left, 5)} NEAR/{node.distance} {_render(node.right, 5)}"
        return f"({text})" if parent > 4 else text
    prec = _PREC[type(node)]
    joiner = " OR " if isinstance(node, Or) else " AND "
    text = joiner.join(_render(c, prec) for c in node.children)
    return f"({text})" if parent > prec else text


def _iter_terms(node: Node) -> Iterator[Term]:
    if isinstance(node, Term):
        yield node
    elif isinstance(node, And | Or):
        for child in node.children:
            yield from _iter_terms(child)
    elif isinstance(node, Not | Field | AliasRef):
        yield from _iter_terms(node.child)
    else:
        yield from _iter_terms(node.left)
        yield from _iter_terms(node.right)


def evaluate_empty(node: Node) -> bool:
    """The value of *node* on a story that contains none of its terms."""
    if isinstance(node, Term | Near):
        return False
    if isinstance(node, And):
        return all(evaluate_empty(c) for c in node.children)
    if isinstance(node, Or):
        return any(evaluate_empty(c) for c in node.children)
    if isinstance(node, Not):
        return not evaluate_empty(node.child)
    return evaluate_empty(node.child)


@dataclass(frozen=True, slots=True)
class Query:
    """A parsed query: ``text`` as given, ``root`` the AST.

    ``str(query)`` is a normalised rendering (explicit ``AND``/``OR``/``NOT``,
    parentheses only where needed, aliases as ``@name``) that parses back to the same
    query.
    """

    text: str
    root: Node

    def __str__(self) -> str:
        return _render(self.root)

    def terms(self) -> tuple[Term, ...]:
        """Every term of the query, aliases expanded, in reading order."""
        return tuple(_iter_terms(self.root))


# --------------------------------------------------------------------------- lexer


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str  # TERM PHRASE ALIAS LPAREN RPAREN AND OR NOT MINUS NEAR FIELD EOF
    text: str
    column: int
    value: int = 0  # NEAR distance


class _Lexer:
    def __init__(self, text: str, where: str | None) -> None:
        self.text = text
        self.where = where

    def error(self, message: str, column: int, expected: str | None) -> QuerySyntaxError:
        return QuerySyntaxError(message, query=self.text, column=column, expected=expected, watchlist=self.where)

    def tokens(self) -> list[_Tok]:
        text = self.text
        n = len(text)
        out: list[_Tok] = []
        i = 0
        while True:
            while i < n and text[i].isspace():
                i += 1
            if i >= n:
                out.append(_Tok("EOF", "", n + 1))
                return out
            c = text[i]
            col = i + 1
            if c == "(":
                out.append(_Tok("LPAREN", c, col))
                i += 1
            elif c == ")":
                out.append(_Tok("RPAREN", c, col))
                i += 1
            elif c == "|":
                out.append(_Tok("OR", c, col))
                i += 1
            elif c in _QUOTES:
                i = self._phrase(i, out)
            elif c == "-" and (i + 1 >= n or text[i + 1].isspace() or text[i + 1] in ")|"):
                raise self.error("'-' alone", col, "a term, a phrase or '(' right after '-'")
            elif c == "-":
                out.append(_Tok("MINUS", c, col))
                i += 1
            elif c == "@":
                m = _ALIAS_NAME_RE.match(text, i + 1)
                if m is None:
                    raise self.error("'@' without an alias name", col, "an alias name, as in @dprk")
                out.append(_Tok("ALIAS", m.group(), col))
                i = m.end()
            else:
                i = self._word(i, out)

    def _phrase(self, i: int, out: list[_Tok]) -> int:
        text = self.text
        closers = _QUOTES[text[i]]
        j = i + 1
        while j < len(text) and text[j] not in closers:
            j += 1
        if j >= len(text):
            expected = "a closing " + " or ".join(repr(c) for c in closers)
            raise self.error("unterminated phrase", i + 1, expected)
        out.append(_Tok("PHRASE", text[i : j + 1], i + 1))
        return j + 1

    def _word(self, i: int, out: list[_Tok]) -> int:
        text = self.text
        j = i
        while j < len(text) and text[j] not in _STOP and not text[j].isspace():
            j += 1
        word = text[i:j]
        col = i + 1
        if word in ("AND", "&"):
            out.append(_Tok("AND", word, col))
        elif word == "OR":
            out.append(_Tok("OR", word, col))
        elif word == "NOT":
            out.append(_Tok("NOT", word, col))
        elif word == "NEAR" or word.startswith("NEAR/"):
            out.append(self._near(word, col))
        elif word.lower() in ("and", "or", "not"):
            raise self.error(
                f"ambiguous lower-case {word!r}",
                col,
                f'{word.upper()} for the operator, or "{word}" in quotes for the word',
            )
        elif (m := _FIELD_RE.match(word)) is not None:
            name = m.group(1)
            if name.lower() not in FIELDS:
                raise self.error(f"unknown field {name!r}", col, " or ".join(f"{f}:" for f in FIELDS))
            rest = word[m.end() :]
            if not rest and (j >= len(text) or text[j].isspace() or text[j] in ")|"):
                raise self.error(
                    f"nothing after '{name}:'",
                    col + m.end(),
                    f"a term, a phrase or '(' right after '{name}:'",
                )
            out.append(_Tok("FIELD", name.lower(), col))
            return i + m.end()
        else:
            out.append(_Tok("TERM", word, col))
        return j

    def _near(self, word: str, col: int) -> _Tok:
        expected = f"a whole number of words from 1 to {MAX_NEAR}, as in NEAR/5"
        if word == "NEAR":
            raise self.error("NEAR needs a distance", col + 4, "'/' and " + expected)
        digits = word[5:]
        if not digits.isdigit() or not digits.isascii() or not 1 <= int(digits) <= MAX_NEAR:
            raise self.error(f"bad NEAR distance {digits!r}", col + 5, expected)
        return _Tok("NEAR", word, col, int(digits))


# --------------------------------------------------------------------------- parser


class _Parser:
    """Recursive descent over the token list; one instance per query or alias text."""

    def __init__(self, text: str, resolver: _AliasResolver, where: str | None, depth: int = 0) -> None:
        self.lexer = _Lexer(text, where)
        self.text = text
        self.toks = self.lexer.tokens()
        self.pos = 0
        self.resolver = resolver
        self.where = where
        self.depth = depth  # an alias is parsed at the depth of the reference that needs it

    def nest(self, column: int) -> None:
        """Enter one level of nesting; deeper than :data:`MAX_DEPTH` is an error."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(
                f"the query nests deeper than {MAX_DEPTH} levels", column, "fewer nested parentheses or NOTs"
            )

    def error(self, message: str, column: int, expected: str | None) -> QuerySyntaxError:
        return self.lexer.error(message, column, expected)

    @property
    def tok(self) -> _Tok:
        return self.toks[self.pos]

    def advance(self) -> _Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def parse(self) -> Node:
        if self.tok.kind == "EOF":
            raise self.error("empty query", 1, _EXPECT_OPERAND)
        node = self.or_expr()
        tok = self.tok
        if tok.kind == "RPAREN":
            raise self.error("unbalanced ')'", tok.column, "an operator, a term or the end of the query")
        if tok.kind != "EOF":  # pragma: no cover - every other token starts an operand
            raise self.error(f"unexpected {tok.text!r}", tok.column, "an operator or the end of the query")
        return node

    def or_expr(self) -> Node:
        children = [self.and_expr()]
        while self.tok.kind == "OR":
            self.advance()
            children.append(self.and_expr())
        return children[0] if len(children) == 1 else Or(tuple(children))

    _STARTS = frozenset({"TERM", "PHRASE", "ALIAS", "LPAREN", "NOT", "MINUS", "FIELD"})

    def and_expr(self) -> Node:
        children = [self.unary()]
        while True:
            if self.tok.kind == "AND":
                self.advance()
            elif self.tok.kind not in self._STARTS:
                break
            children.append(self.unary())
        return children[0] if len(children) == 1 else And(tuple(children))

    def unary(self) -> Node:
        tok = self.tok
        if tok.kind == "NOT":
            self.advance()
            self.nest(tok.column)
            node: Node = Not(self.unary())
            self.depth -= 1
            return node
        if tok.kind == "MINUS":
            self.advance()
            if self.tok.kind in ("MINUS", "NOT"):
                raise self.error("'-' must be followed by what to exclude", self.tok.column, _EXPECT_OPERAND)
            return Not(self.near())
        return self.near()

    def near(self) -> Node:
        start = self.tok.column
        left = self.primary()
        if self.tok.kind != "NEAR":
            return left
        op = self.advance()
        self._check_near_operand(left, start)
        right_col = self.tok.column
        right = self.primary()
        self._check_near_operand(right, right_col)
        if self.tok.kind == "NEAR":
            raise self.error(
                "NEAR cannot be chained",
                self.tok.column,
                "AND between two NEARs, as in (a NEAR/3 b) AND (b NEAR/3 c)",
            )
        return Near(left, right, op.value)

    def _check_near_operand(self, node: Node, column: int) -> None:
        if not _near_operand_ok(node):
            raise self.error(
                "NEAR needs a term, a phrase or an OR-group of them on each side",
                column,
                "a term, a phrase, a wildcard, an alias or (a OR b)",
            )

    def primary(self) -> Node:
        tok = self.tok
        kind = tok.kind
        if kind == "TERM":
            self.advance()
            return self._term(tok.text, tok.column, phrase=False)
        if kind == "PHRASE":
            self.advance()
            return self._term(tok.text, tok.column, phrase=True)
        if kind == "ALIAS":
            self.advance()
            self.nest(tok.column)
            ref = AliasRef(tok.text, self.resolver.resolve(tok.text, self.error, tok.column, self.depth))
            self.depth -= 1
            return ref
        if kind == "LPAREN":
            self.advance()
            if self.tok.kind == "RPAREN":
                raise self.error("empty parentheses", self.tok.column, _EXPECT_OPERAND)
            self.nest(tok.column)
            node = self.or_expr()
            if self.tok.kind != "RPAREN":
                raise self.error("unclosed '('", self.tok.column, f"')' to close the '(' of column {tok.column}")
            self.advance()
            self.depth -= 1
            return node
        if kind == "FIELD":
            self.advance()
            if self.tok.kind not in ("TERM", "PHRASE", "ALIAS", "LPAREN"):
                raise self.error(
                    f"nothing to scope after '{tok.text}:'",
                    self.tok.column,
                    "a term, a phrase, an alias or '('",
                )
            child = self.primary()
            if _contains_field(child):
                raise self.error("field scopes cannot be nested", tok.column, "a single title: or summary: scope")
            return Field(tok.text, child)
        if kind == "EOF":
            raise self.error("unexpected end of query", tok.column, _EXPECT_OPERAND)
        if kind == "RPAREN":
            raise self.error("unexpected ')'", tok.column, _EXPECT_OPERAND)
        raise self.error(f"unexpected {tok.text!r}", tok.column, _EXPECT_OPERAND)

    def _term(self, raw: str, column: int, *, phrase: bool) -> Term:
        body = raw[1:-1] if phrase else raw
        star = body.find("*")
        if not phrase and body.strip("*") == "":
            raise self.error("a bare '*' would match every word", column, "letters before '*', as in sanction*")
        words = pattern_words(fold(body))
        for word in words:
            inner = word.find("*")
            if inner != -1 and inner != len(word) - 1:
                at = column + (1 if phrase else 0) + max(star, 0)
                raise self.error(
                    "'*' is only allowed at the end of a word",
                    at,
                    "a wildcard at the end of a word, as in sanction*",
                )
            literal = word.replace("*", "").replace("?", "")
            if word.endswith("*") and len(word.rstrip("*").replace("?", "")) < MIN_PREFIX:
                raise self.error(
                    f"wildcard prefix {word!r} is too short",
                    column,
                    f"at least {MIN_PREFIX} letters or digits before '*'",
                )
            if not literal:
                raise self.error(f"{word!r} has no letters or digits", column, "a word")
        if not words:
            if phrase:
                raise self.error("empty phrase", column, "words between the quotes")
            raise self.error(f"{raw!r} has no letters or digits", column, "a word")
        return Term(raw, tuple(words), phrase, column)


def _near_operand_ok(node: Node) -> bool:
    if isinstance(node, Term):
        return True
    if isinstance(node, Or):
        return all(_near_operand_ok(c) for c in node.children)
    if isinstance(node, AliasRef | Field):
        return _near_operand_ok(node.child)
    return False


def _contains_field(node: Node) -> bool:
    if isinstance(node, Field):
        return True
    if isinstance(node, Term):
        return False
    if isinstance(node, And | Or):
        return any(_contains_field(c) for c in node.children)
    if isinstance(node, Near):
        return _contains_field(node.left) or _contains_field(node.right)
    return _contains_field(node.child)


class _AliasResolver:
    """Parses alias values on demand, once each, detecting unknown names and cycles."""

    def __init__(self, aliases: Mapping[str, str] | None) -> None:
        self.aliases = {_strip_at(k): v for k, v in (aliases or {}).items()}
        self.done: dict[str, Node] = {}
        self.stack: list[str] = []

    def resolve_defined(self, name: str) -> Node:
        """Parse the alias *name*, known to be defined (so only its text can be at fault)."""
        return self.resolve(name, self._no_error, 1)

    @staticmethod
    def _no_error(message: str, column: int, expected: str | None) -> QuerySyntaxError:
        raise AssertionError(f"unreachable for a defined alias: {message}")  # pragma: no cover

    def resolve(self, name: str, error: _ErrorFactory, column: int, depth: int = 0) -> Node:
        got = self.done.get(name)
        if got is not None:
            return got
        if name in self.stack:
            chain = " -> ".join("@" + n for n in [*self.stack[self.stack.index(name) :], name])
            raise error(f"alias cycle {chain}", column, "an alias that does not refer back to itself")

        if name not in self.aliases:
            known = sorted(self.aliases)
            expected = (
                "one of " + ", ".join("@" + k for k in known[:12]) + (", ..." if len(known) > 12 else "")
                if known
                else "an alias defined under 'aliases:'"
            )
            raise error(f"unknown alias '@{name}'", column, expected)
        self.stack.append(name)
        try:
            node = _Parser(self.aliases[name], self, f"@{name}", depth).parse()
        finally:
            self.stack.pop()
        self.done[name] = node
        return node


def _strip_at(name: str) -> str:
    return name[1:] if name.startswith("@") else name


def _depth(root: Node) -> int:
    """Depth of the tree, counted without recursion (it may be too deep to recurse over)."""
    deepest, todo = 0, [(root, 1)]
    while todo:
        node, level = todo.pop()
        deepest = max(deepest, level)
        if isinstance(node, And | Or):
            todo.extend((child, level + 1) for child in node.children)
        elif isinstance(node, Not | Field | AliasRef):
            todo.append((node.child, level + 1))
        elif isinstance(node, Near):
            todo.extend(((node.left, level + 1), (node.right, level + 1)))
    return deepest


def _parse(text: str, resolver: _AliasResolver) -> Query:
    root = _Parser(text, resolver, None).parse()
    if _depth(root) > 2 * MAX_DEPTH:
        raise QuerySyntaxError(
            f"the query and its aliases nest deeper than {2 * MAX_DEPTH} levels",
            query=text,
            column=1,
            expected="fewer nested parentheses, NOTs or aliases inside aliases",
        )
    if evaluate_empty(root):
        raise QuerySyntaxError(
            "the query would match stories that contain none of its terms",
            query=text,
            column=1,
            expected="at least one term that must be present (NOT alone only excludes)",
        )
    return Query(text, root)


def parse_query(text: str, aliases: Mapping[str, str] | None = None) -> Query:
    """Parse a watchlist query; raises :class:`QuerySyntaxError` (see the module docstring).

    The caller adds where the query came from with ``err.with_context(watchlist=...)``.
    """
    return _parse(text, _AliasResolver(aliases))


def validate_aliases(aliases: Mapping[str, str]) -> None:
    """Check every alias: its name, its syntax, the aliases it uses, and cycles.

    Errors carry ``watchlist='@name'`` for the alias whose text is at fault (for a
    cycle, the alias whose reference closes it).
    """
    resolver = _AliasResolver(aliases)
    for key in aliases:
        name = _strip_at(key)
        m = _ALIAS_NAME_RE.fullmatch(name)
        if m is None:
            raise QuerySyntaxError(
                f"invalid alias name {key!r}",
                query=key,
                column=1,
                expected="letters, digits, '_', '.' or '-'",
                watchlist=f"@{name}",
            )
        resolver.resolve_defined(name)


def alias_resolver(aliases: Mapping[str, str] | None) -> _AliasResolver:
    """A resolver to share between many :func:`parse_with` calls (parses each alias once)."""
    return _AliasResolver(aliases)


def parse_with(text: str, resolver: _AliasResolver) -> Query:
    """:func:`parse_query` with a shared alias resolver (used by the matcher)."""
    return _parse(text, resolver)
