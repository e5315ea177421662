"""Calico selector parsing and matching (domain.md section 2)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calico_rr.core.selector import (
    All,
    And,
    Compare,
    Expr,
    Has,
    InSet,
    Not,
    Or,
    SelectorError,
    compile_expr,
    parse_selector,
    to_text,
)

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
