"""Calico's label-selector language (domain.md section 2), parsed once and compiled.

Grammar, lowest precedence first (Calico's own: ``||`` binds looser than ``&&``,
``!`` applies to the term that follows it)::

    or_expr   := and_expr ( "||" and_expr )*
    and_expr  := unary ( "&&" unary )*
    unary     := "!" unary | primary
    primary   := "(" or_expr ")" | "all()" | "has(" key ")"
               | key ( "==" | "!=" | "starts with" | "ends with" | "contains" ) string
               | key ( "in" | "not in" ) "{" [ string ( "," string )* ] "}"

Strings are single- or double-quoted with no escapes (Calico has none either), so a
value cannot contain its own quote character.  The empty selector means ``all()``,
as in Calico.

Absent labels follow calico-node's evaluator: ``k != 'v'`` and ``k not in {...}`` are
*true* when ``k`` is absent; ``==``, ``in``, ``starts with``, ``ends with`` and
``contains`` are false.

A parsed :class:`Selector` is compiled into nested closures, so ``matches`` costs a
few dict lookups.  :func:`parse_selector` is memoised: the session graph parses the
same handful of selector strings over and over.

Parsing, compiling and matching recurse over the nesting, so a selector is bounded
(:mod:`calico_rr.core.limits`): at most MAX_SELECTOR_CHARS characters and
MAX_SELECTOR_NESTING levels of ``(`` and ``!``, and every :class:`Selector`, parsed
or built from an AST, at most MAX_SELECTOR_TREE_DEPTH levels deep.  Beyond them
:class:`SelectorError` says so instead of a RecursionError.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

from calico_rr.core import limits
from calico_rr.errors import InputError

Matcher: TypeAlias = Callable[[Mapping[str, str]], bool]
CompareOp = Literal["==", "!=", "starts with", "ends with", "contains"]


#: Characters of the selector quoted in an error message (a message is one line).
_QUOTED_CHARS = 80


def _shown(text: str) -> str:
    """``text`` quoted for a message, cut to _QUOTED_CHARS characters."""
    if len(text) <= _QUOTED_CHARS:
        return repr(text)
    return f"{text[:_QUOTED_CHARS]!r}... ({len(text)} characters)"


class SelectorError(InputError, ValueError):
    """A selector that does not parse: says where and what was expected.

    An :class:`~calico_rr.errors.InputError` (the CLI prints it and exits 2 even
    where no caller names the object) and, as before, a ValueError.  ``problem``
    replaces the "expected ..., found ..." wording for the limits.
    """

    def __init__(
        self, text: str, position: int, expected: str, *, problem: str | None = None
    ) -> None:
        self.text = text
        self.position = position
        self.expected = expected
        if problem is None:
            found = repr(text[position : position + 12]) if position < len(text) else "end of input"
            problem = f"expected {expected}, found {found}"
        super().__init__(f"invalid selector {_shown(text)}: at position {position} {problem}")


# ---------------------------------------------------------------------------
# AST
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class All:
    """``all()``: matches every label set."""


@dataclass(frozen=True, slots=True)
class Has:
    """``has(key)``."""

    key: str


@dataclass(frozen=True, slots=True)
class Compare:
    """``key <op> 'value'`` for the binary string operators."""

    key: str
    op: CompareOp
    value: str


@dataclass(frozen=True, slots=True)
class InSet:
    """``key in {...}`` or, when ``negated``, ``key not in {...}``."""

    key: str
    values: frozenset[str]
    negated: bool = False


@dataclass(frozen=True, slots=True)
class Not:
    expr: Expr


@dataclass(frozen=True, slots=True)
class And:
    parts: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    parts: tuple[Expr, ...]


Expr: TypeAlias = All | Has | Compare | InSet | Not | And | Or


def expr_keys(expr: Expr) -> frozenset[str]:
    """Every label key ``expr`` reads."""
    if isinstance(expr, Has | Compare | InSet):
        return frozenset((expr.key,))
    if isinstance(expr, Not):
        return expr_keys(expr.expr)
    if isinstance(expr, And | Or):
        return frozenset().union(*(expr_keys(part) for part in expr.parts))
    return frozenset()


def _quote(value: str) -> str:
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    # Calico's strings have no escape sequence, so such a value has no spelling.
    raise ValueError(f"value {value!r} holds both quote characters: not expressible")


def to_text(expr: Expr) -> str:
    """Canonical Calico spelling of ``expr``; ``parse_selector(to_text(e))`` gives ``e`` back."""
    if isinstance(expr, All):
        return "all()"
    if isinstance(expr, Has):
        return f"has({expr.key})"
    if isinstance(expr, Compare):
        return f"{expr.key} {expr.op} {_quote(expr.value)}"
    if isinstance(expr, InSet):
        op = "not in" if expr.negated else "in"
        return f"{expr.key} {op} {{{', '.join(_quote(v) for v in sorted(expr.values))}}}"
    if isinstance(expr, Not):
        inner = to_text(expr.expr)
        return f"!({inner})" if isinstance(expr.expr, And | Or) else f"!{inner}"
    sep = " && " if isinstance(expr, And) else " || "
    # Nested And/Or children are always bracketed so the tree shape survives a round trip.
    return sep.join(
        f"({to_text(p)})" if isinstance(p, And | Or) else to_text(p) for p in expr.parts
    )


# ---------------------------------------------------------------------------
# Compilation to closures
# ---------------------------------------------------------------------------


def _always(labels: Mapping[str, str]) -> bool:
    return True


def compile_expr(expr: Expr) -> Matcher:
    """A fast callable equivalent to ``expr``."""
    if isinstance(expr, All):
        return _always
    if isinstance(expr, Has):
        key = expr.key
        return lambda labels: key in labels
    if isinstance(expr, Compare):
        return _compile_compare(expr)
    if isinstance(expr, InSet):
        key, values = expr.key, expr.values
        if expr.negated:
            # Absent key: None is never in a set of strings, so "not in" holds (Calico).
            return lambda labels: labels.get(key) not in values
        return lambda labels: labels.get(key) in values
    if isinstance(expr, Not):
        inner = compile_expr(expr.expr)
        return lambda labels: not inner(labels)
    fns = tuple(compile_expr(p) for p in expr.parts)
    if isinstance(expr, And):
        if len(fns) == 2:
            a, b = fns
            return lambda labels: a(labels) and b(labels)
        return lambda labels: all(f(labels) for f in fns)
    if len(fns) == 2:
        a, b = fns
        return lambda labels: a(labels) or b(labels)
    return lambda labels: any(f(labels) for f in fns)


def _compile_compare(expr: Compare) -> Matcher:
    key, value = expr.key, expr.value
    if expr.op == "==":
        return lambda labels: labels.get(key) == value
    if expr.op == "!=":
        # calico-node: "k != 'v'" is true when k is absent (None != value).
        return lambda labels: labels.get(key) != value
    # The string operators are false when the key is absent (calico-node).
    if expr.op == "starts with":
        return lambda labels: key in labels and labels[key].startswith(value)
    if expr.op == "ends with":
        return lambda labels: key in labels and labels[key].endswith(value)
    return lambda labels: key in labels and value in labels[key]


# ---------------------------------------------------------------------------
# Public selector object
# ---------------------------------------------------------------------------


def expr_depth(expr: Expr) -> int:
    """Levels of ``expr``'s tree (a leaf is 1, ``!has(a)`` is 2); not recursive."""
    deepest = 0
    stack: list[tuple[Expr, int]] = [(expr, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(node, Not):
            stack.append((node.expr, depth + 1))
        elif isinstance(node, And | Or):
            stack.extend((part, depth + 1) for part in node.parts)
    return deepest


class Selector:
    """A parsed selector: ``text`` (source), ``expr`` (AST), ``keys`` and ``matches``.

    Raises :class:`SelectorError` when ``expr`` is deeper than
    ``limits.MAX_SELECTOR_TREE_DEPTH``: compiling and matching recurse over it.
    """

    __slots__ = ("_fn", "expr", "keys", "text")

    def __init__(self, text: str, expr: Expr) -> None:
        depth = expr_depth(expr)
        if depth > limits.MAX_SELECTOR_TREE_DEPTH:
            raise SelectorError(
                text,
                0,
                "a shallower selector",
                problem=f"nests {depth} levels deep (at most {limits.MAX_SELECTOR_TREE_DEPTH})",
            )
        self.text = text
        self.expr = expr
        #: Label keys the selector reads: its result depends on these labels only.
        self.keys: frozenset[str] = expr_keys(expr)
        self._fn = compile_expr(expr)

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self._fn(labels)

    @property
    def is_all(self) -> bool:
        return isinstance(self.expr, All)

    def __repr__(self) -> str:
        return f"Selector({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Selector) and other.expr == self.expr

    def __hash__(self) -> int:
        return hash(self.expr)


def parse_selector(text: str) -> Selector:
    """Parse Calico selector ``text``; raises :class:`SelectorError` on bad syntax,
    on a value that is not a string, and beyond the limits of
    :mod:`calico_rr.core.limits` (length, nesting)."""
    if not isinstance(text, str):
        raise SelectorError(
            repr(text), 0, "a string", problem=f"expected a string, got {type(text).__name__}"
        )
    if len(text) > limits.MAX_SELECTOR_CHARS:
        raise SelectorError(
            text,
            limits.MAX_SELECTOR_CHARS,
            "a shorter selector",
            problem=f"is longer than {limits.MAX_SELECTOR_CHARS} characters",
        )
    return _parse_cached(text)


@functools.lru_cache(maxsize=4096)
def _parse_cached(text: str) -> Selector:
    return Selector(text, _Parser(text).parse())


# ---------------------------------------------------------------------------
# Recursive-descent parser
# ---------------------------------------------------------------------------

# Characters of a label key: Kubernetes' "prefix/name" with DNS prefix (letters,
# digits, '.', '-') and name (letters, digits, '.', '-', '_').
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_./-")
_WORD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz")


class _Parser:
    __slots__ = ("depth", "n", "pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.n = len(text)
        self.depth = 0  # '(' and '!' open around the current position

    def _enter(self) -> None:
        """One more level of '(' or '!' (self.pos is just past it)."""
        self.depth += 1
        if self.depth > limits.MAX_SELECTOR_NESTING:
            raise SelectorError(
                self.text,
                self.pos - 1,
                "a shallower selector",
                problem=f"nests '(' and '!' more than {limits.MAX_SELECTOR_NESTING} levels deep",
            )

    # -- helpers ---------------------------------------------------------------

    def _fail(self, expected: str, pos: int | None = None) -> SelectorError:
        return SelectorError(self.text, self.pos if pos is None else pos, expected)

    def _skip_ws(self) -> None:
        text, n, pos = self.text, self.n, self.pos
        while pos < n and text[pos].isspace():
            pos += 1
        self.pos = pos

    def _accept(self, literal: str) -> bool:
        """Consume ``literal`` if it comes next (after whitespace)."""
        self._skip_ws()
        if not self.text.startswith(literal, self.pos):
            return False
        self.pos += len(literal)
        return True

    def _expect(self, literal: str) -> None:
        if not self._accept(literal):
            raise self._fail(repr(literal))

    def _run(self, chars: frozenset[str]) -> str:
        self._skip_ws()
        start = pos = self.pos
        text, n = self.text, self.n
        while pos < n and text[pos] in chars:
            pos += 1
        self.pos = pos
        return text[start:pos]

    def _key(self) -> str:
        key = self._run(_KEY_CHARS)
        if not key:
            raise self._fail("a label key")
        return key

    def _string(self) -> str:
        self._skip_ws()
        if self.pos >= self.n or self.text[self.pos] not in "'\"":
            raise self._fail("a quoted string")
        quote = self.text[self.pos]
        end = self.text.find(quote, self.pos + 1)
        if end < 0:
            raise self._fail(f"closing {quote}", self.n)
        value = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return value

    # -- grammar ---------------------------------------------------------------

    def parse(self) -> Expr:
        self._skip_ws()
        if self.pos == self.n:
            return All()  # Calico: the empty selector selects everything.
        expr = self._or()
        self._skip_ws()
        if self.pos != self.n:
            raise self._fail("'&&', '||' or end of input")
        return expr

    def _or(self) -> Expr:
        parts = [self._and()]
        while self._accept("||"):
            parts.append(self._and())
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def _and(self) -> Expr:
        parts = [self._unary()]
        while self._accept("&&"):
            parts.append(self._unary())
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def _unary(self) -> Expr:
        # "!=" never starts a term, so a '!' here is always negation.
        if self._accept("!"):
            self._enter()
            expr = Not(self._unary())
            self.depth -= 1
            return expr
        return self._primary()

    def _primary(self) -> Expr:
        if self._accept("("):
            self._enter()
            expr = self._or()
            self._expect(")")
            self.depth -= 1
            return expr
        start = self.pos
        if start >= self.n:
            raise self._fail("a selector term")
        key = self._run(_KEY_CHARS)
        if not key:
            raise self._fail("'(', '!', 'all()', 'has(' or a label key", start)
        if key in ("all", "has") and self._accept("("):
            if key == "all":
                self._expect(")")
                return All()
            inner = self._key()
            self._expect(")")
            return Has(inner)
        return self._comparison(key)

    def _comparison(self, key: str) -> Expr:
        if self._accept("=="):
            return Compare(key, "==", self._string())
        if self._accept("!="):
            return Compare(key, "!=", self._string())
        op_pos = self.pos
        word = self._run(_WORD_CHARS)
        if word == "in":
            return InSet(key, self._set())
        if word == "not":
            self._second_word("in", word)
            return InSet(key, self._set(), negated=True)
        if word in ("starts", "ends"):
            self._second_word("with", word)
            return Compare(key, "starts with" if word == "starts" else "ends with", self._string())
        if word == "contains":
            return Compare(key, "contains", self._string())
        raise self._fail(
            "an operator ('==', '!=', 'in', 'not in', 'starts with', 'ends with', 'contains')",
            op_pos,
        )

    def _second_word(self, want: str, first: str) -> None:
        self._skip_ws()
        at = self.pos
        if self._run(_WORD_CHARS) != want:
            raise self._fail(f"{want!r} after {first!r}", at)

    def _set(self) -> frozenset[str]:
        self._expect("{")
        if self._accept("}"):
            return frozenset()
        values = [self._string()]
        while self._accept(","):
            values.append(self._string())
        self._expect("}")
        return frozenset(values)
