"""Calico selector parsing and matching (domain.md section 2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calico_rr.core import limits
from calico_rr.core.bgp.selector import (
    All,
    And,
    Compare,
    Expr,
    Has,
    InSet,
    Not,
    Or,
    Selector,
    SelectorError,
    compile_expr,
    expr_depth,
    parse_selector,
    to_text,
)
from calico_rr.errors import InputError

LABELS = {
    "calico-rr.io/role": "rr",
    "topology.kubernetes.io/zone": "eu-west-1a",
    "rack": "r1",
    "empty": "",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("   ", True),
        ("all()", True),
        ("all( )", True),
        ("has(rack)", True),
        ("has( rack )", True),
        ("has(missing)", False),
        ("!has(missing)", True),
        ("!has(rack)", False),
        ("rack == 'r1'", True),
        ('rack == "r1"', True),
        ("rack=='r2'", False),
        ("rack != 'r2'", True),
        ("rack != 'r1'", False),
        ("missing != 'x'", True),  # Calico: != holds when the label is absent
        ("missing == 'x'", False),
        ("empty == ''", True),
        ("missing == ''", False),
        ("rack in {'r1', 'r2'}", True),
        ("rack in {'r2'}", False),
        ("rack in {}", False),
        ("missing in {'r1'}", False),
        ("rack not in {'r2'}", True),
        ("rack not   in {'r1'}", False),
        ("missing not in {'r1'}", True),  # absent: "not in" holds
        ("topology.kubernetes.io/zone starts with 'eu-'", True),
        ("topology.kubernetes.io/zone starts with 'us-'", False),
        ("topology.kubernetes.io/zone ends with '1a'", True),
        ("topology.kubernetes.io/zone contains 'west'", True),
        ("topology.kubernetes.io/zone contains 'east'", False),
        ("missing starts with ''", False),  # absent labels never match string ops
        ("calico-rr.io/role == 'rr' && rack == 'r1'", True),
        ("calico-rr.io/role == 'rr' && rack == 'r2'", False),
        ("calico-rr.io/role == 'x' || rack == 'r1'", True),
        ("calico-rr.io/role == 'x' || rack == 'r2'", False),
        # || binds looser than &&: true || (false && false)
        ("rack == 'r1' || rack == 'r2' && has(missing)", True),
        ("(rack == 'r1' || rack == 'r2') && has(missing)", False),
        ("!(rack == 'r1')", False),
        ("!rack == 'r1'", False),  # '!' applies to the following term
        ("!!has(rack)", True),
        ("\t( has(rack) )\n&&\n!has(missing)  ", True),
    ],
)
def test_matches(text: str, expected: bool) -> None:
    assert parse_selector(text).matches(LABELS) is expected


def test_keys_text_and_cache() -> None:
    sel = parse_selector("a == 'x' && (has(b/c.d) || !e in {'1'}) && all()")
    assert sel.keys == frozenset({"a", "b/c.d", "e"})
    assert sel.text == "a == 'x' && (has(b/c.d) || !e in {'1'}) && all()"
    assert parse_selector("all()").keys == frozenset()
    assert parse_selector(sel.text) is sel  # memoised
    assert parse_selector("").is_all


def test_label_names_may_be_keywords() -> None:
    assert parse_selector("has == 'x'").matches({"has": "x"})
    assert parse_selector("in in {'in'}").matches({"in": "in"})
    assert parse_selector("all == 'y' && not != 'z'").matches({"all": "y"})


@pytest.mark.parametrize(
    ("text", "position", "expected"),
    [
        ("rack", 4, "an operator"),
        ("rack ==", 7, "a quoted string"),
        ("rack == r1", 8, "a quoted string"),
        ("rack == 'r1", 11, "closing '"),
        ("has(", 4, "a label key"),
        ("has(rack", 8, "')'"),
        ("(has(rack)", 10, "')'"),
        ("has(rack) has(x)", 10, "'&&', '||' or end of input"),
        ("&& has(x)", 0, "a label key"),
        ("has(x) &&", 9, "a selector term"),
        ("rack not is {'a'}", 9, "'in' after 'not'"),
        ("rack starts 'a'", 12, "'with' after 'starts'"),
        ("rack in {'a',}", 13, "a quoted string"),
        ("rack in 'a'", 8, "'{'"),
        ("rack = 'a'", 5, "an operator"),
        ("has(x) & has(y)", 7, "'&&', '||' or end of input"),
    ],
)
def test_errors_give_position_and_expectation(text: str, position: int, expected: str) -> None:
    with pytest.raises(SelectorError) as err:
        parse_selector(text)
    assert err.value.position == position
    assert expected in err.value.expected
    assert f"position {position}" in str(err.value)
    assert isinstance(err.value, ValueError)


# ---------------------------------------------------------------------------
# Round trip: random AST -> text -> parse -> same AST and same matcher
# ---------------------------------------------------------------------------

KEYS = st.sampled_from(["a", "b", "x.io/role", "topology.kubernetes.io/zone", "k-1_2"])
VALUES = st.text(alphabet="ab-_ .'\"", max_size=4).filter(lambda v: not ("'" in v and '"' in v))
LEAVES: st.SearchStrategy[Expr] = st.one_of(
    st.just(All()),
    st.builds(Has, KEYS),
    st.builds(
        Compare,
        KEYS,
        st.sampled_from(["==", "!=", "starts with", "ends with", "contains"]),
        VALUES,
    ),
    st.builds(InSet, KEYS, st.frozensets(VALUES, max_size=3), st.booleans()),
)
EXPRS: st.SearchStrategy[Expr] = st.recursive(
    LEAVES,
    lambda sub: st.one_of(
        st.builds(Not, sub),
        st.builds(And, st.lists(sub, min_size=2, max_size=3).map(tuple)),
        st.builds(Or, st.lists(sub, min_size=2, max_size=3).map(tuple)),
    ),
    max_leaves=8,
)
LABEL_SETS = st.dictionaries(KEYS, st.sampled_from(["", "a", "ab", "b-", "'", "a b"]), max_size=4)


def _reference(expr: Expr, labels: dict[str, str]) -> bool:
    """Straightforward interpreter, independent of compile_expr."""
    if isinstance(expr, All):
        return True
    if isinstance(expr, Has):
        return expr.key in labels
    if isinstance(expr, InSet):
        present = expr.key in labels and labels[expr.key] in expr.values
        return not present if expr.negated else present
    if isinstance(expr, Compare):
        if expr.op == "!=":
            return labels.get(expr.key) != expr.value
        if expr.key not in labels:
            return False
        v = labels[expr.key]
        return {
            "==": v == expr.value,
            "starts with": v.startswith(expr.value),
            "ends with": v.endswith(expr.value),
            "contains": expr.value in v,
        }[expr.op]
    if isinstance(expr, Not):
        return not _reference(expr.expr, labels)
    results = [_reference(p, labels) for p in expr.parts]
    return all(results) if isinstance(expr, And) else any(results)


@settings(max_examples=400, deadline=None)
@given(EXPRS, st.lists(LABEL_SETS, min_size=1, max_size=6))
def test_printed_ast_parses_back_to_equivalent_matcher(
    expr: Expr, label_sets: list[dict[str, str]]
) -> None:
    text = to_text(expr)
    sel = parse_selector(text)
    assert sel.expr == expr
    fn = compile_expr(expr)
    for labels in label_sets:
        assert sel.matches(labels) == _reference(expr, labels) == fn(labels)


@given(EXPRS)
def test_keys_cover_what_the_matcher_reads(expr: Expr) -> None:
    sel = parse_selector(to_text(expr))
    # Labels outside sel.keys cannot change the result (the basis of memoising).
    base = {k: "a" for k in sel.keys}
    assert sel.matches(base) == sel.matches({**base, "unrelated/key": "a", "zz": "b"})


def test_unprintable_value_rejected() -> None:
    with pytest.raises(ValueError, match="both quote"):
        to_text(Compare("a", "==", "'\""))


# ---------------------------------------------------------------------------
# Limits (issue 14): no RecursionError, whatever the text
# ---------------------------------------------------------------------------

NESTING = limits.MAX_SELECTOR_NESTING


@pytest.mark.parametrize(
    ("opener", "closer"),
    [("(", ")"), ("!", ""), ("!(", ")"), ("(!", ")")],
)
def test_nesting_limit(opener: str, closer: str) -> None:
    per_level = len(opener)  # '(' and '!' each count one level
    levels = NESTING // per_level
    ok = opener * levels + "has(a)" + closer * levels
    sel = parse_selector(ok)
    negations = opener.count("!") * levels
    assert sel.matches({"a": "x"}) is (negations % 2 == 0)
    too_deep = opener * (levels + 1) + "has(a)" + closer * (levels + 1)
    with pytest.raises(SelectorError) as err:
        parse_selector(too_deep)
    assert err.value.position == NESTING
    assert f"nests '(' and '!' more than {NESTING} levels deep" in str(err.value)


@pytest.mark.parametrize("opener", ["(", "!", "!("])
def test_thousands_of_openers_do_not_recurse(opener: str) -> None:
    # Was: RecursionError from the recursive-descent parser.
    with pytest.raises(SelectorError, match="levels deep") as err:
        parse_selector(opener * 5000 + "has(a)" + ")" * 5000 * opener.count("("))
    assert len(str(err.value)) < 300  # the text is cut in the message


def test_selector_error_is_an_input_error() -> None:
    # The CLI turns CalicoRRError into exit 2 and one line, even where no caller
    # wraps the selector's error.
    with pytest.raises(InputError) as err:
        parse_selector("a ==")
    assert isinstance(err.value, SelectorError) and isinstance(err.value, ValueError)
    assert (
        str(err.value)
        == "invalid selector 'a ==': at position 4 expected a quoted string, found end of input"
    )


def test_length_limit() -> None:
    key = "k" * 60
    clause = f"{key} == 'v' || "
    count = (limits.MAX_SELECTOR_CHARS - len("all()")) // len(clause)
    ok = clause * count + "all()"
    assert len(ok) <= limits.MAX_SELECTOR_CHARS
    assert parse_selector(ok).matches({})
    too_long = clause * (count + 1) + "all()"
    assert len(too_long) > limits.MAX_SELECTOR_CHARS
    with pytest.raises(SelectorError) as err:
        parse_selector(too_long)
    message = str(err.value)
    assert f"is longer than {limits.MAX_SELECTOR_CHARS} characters" in message
    assert f"({len(too_long)} characters)" in message and len(message) < 300


def test_the_longest_selector_calico_rr_writes_parses() -> None:
    # A peerSelector naming 1,000 RR slots (MAX_ROUTE_REFLECTORS in core.planning.config).
    text = "calico-rr.io/rr-slot in {" + ", ".join(f"'r{i}'" for i in range(1000)) + "}"
    assert len(text) * 2 <= limits.MAX_SELECTOR_CHARS
    assert parse_selector(text).matches({"calico-rr.io/rr-slot": "r999"})


@pytest.mark.parametrize("value", [None, 5, 1.5, True, ["a"], {"a": "b"}])
def test_non_string_selector(value: object) -> None:
    with pytest.raises(SelectorError) as err:
        parse_selector(value)  # type: ignore[arg-type]
    assert f"expected a string, got {type(value).__name__}" in str(err.value)


def _worst_case_text() -> str:
    # Each '(' opens an Or holding an And: two tree levels per nesting level.
    return "a == '1' || b == '1' && (" * NESTING + "has(c)" + ")" * NESTING


def test_deepest_parsable_tree_is_within_the_tree_limit() -> None:
    sel = parse_selector(_worst_case_text())
    assert expr_depth(sel.expr) == 2 * NESTING + 1
    assert expr_depth(sel.expr) <= limits.MAX_SELECTOR_TREE_DEPTH
    assert sel.matches({"a": "1"}) and not sel.matches({"c": "x"})
    assert sel.matches({"b": "1", "a": "1"})


def test_evaluation_depth_is_bounded() -> None:
    # Matching the deepest selector needs well under a third of Python's default
    # recursion limit, whatever the stack already holds.
    import sys

    sel = parse_selector(_worst_case_text())
    labels = {"b": "1"}  # every And is evaluated down to the innermost has(c)

    def depth_here() -> int:
        frame, n = sys._getframe(), 0
        while frame is not None:
            frame, n = frame.f_back, n + 1  # type: ignore[assignment]
        return n

    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth_here() + 350)
    try:
        assert sel.matches(labels) is False
    finally:
        sys.setrecursionlimit(old)


def test_tree_depth_limit_on_built_selectors() -> None:
    deep: Expr = Has("a")
    for _ in range(limits.MAX_SELECTOR_TREE_DEPTH - 1):
        deep = Not(deep)
    assert expr_depth(deep) == limits.MAX_SELECTOR_TREE_DEPTH
    assert Selector("built", deep).matches({"a": "x"}) is (limits.MAX_SELECTOR_TREE_DEPTH % 2 == 1)
    with pytest.raises(SelectorError, match=f"at most {limits.MAX_SELECTOR_TREE_DEPTH}"):
        Selector("built", Not(deep))


def test_expr_depth() -> None:
    assert expr_depth(All()) == 1
    assert expr_depth(Not(Has("a"))) == 2
    assert expr_depth(And((Has("a"), Or((Has("b"), Not(Has("c"))))))) == 4
