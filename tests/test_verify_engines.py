"""The two engines against each other and against an unpruned reference.

* fast == exact on random small configurations whose classes have several
  interchangeable members (hypothesis);
* exact == a brute-force search over every (holder, sender, CLUSTER_LIST, AS_PATH)
  state without dominance pruning, which checks that pruning loses nothing;
* batched failure scenarios == one run per failed graph;
* the 5000-node hierarchy of domain.md section 4 (its speed: bench/test_bench_verify.py).
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calico_rr.core.bgp.sessions import SessionGraph
from calico_rr.core.bgp.verify import exact, fast
from calico_rr.core.bgp.verify.report import verify
from calico_rr.core.bgp.verify.rules import (
    ARRIVAL_OF,
    Arrival,
    Propagation,
    accepts,
    class_graph,
    encode,
    export_path,
)

AS, OTHER_AS = 64512, 64513


@st.composite
def configurations(draw: st.DrawFn) -> SessionGraph:
    """3-12 nodes in 1-5 classes of 1-4 members; cluster IDs among None, A, B, C; some eBGP."""
    sizes = draw(st.lists(st.integers(1, 4), min_size=1, max_size=5))
    while sum(sizes) > 12:
        sizes[sizes.index(max(sizes))] -= 1
    if sum(sizes) < 3:
        sizes[0] += 3 - sum(sizes)
    classes = []
    n = 0
    for c, size in enumerate(sizes):
        cid = draw(st.sampled_from([None, "A", "B", "C"]))
        asn = OTHER_AS if draw(st.integers(0, 4)) == 0 else AS
        classes.append(([f"n{n + i:02d}-{c}" for i in range(size)], cid, asn))
        n += size
    pairs = [(a, b) for a in range(len(sizes)) for b in range(a, len(sizes))]
    links = [p for p in pairs if draw(st.booleans())]
    return class_graph(classes, links)


def assert_same(g: SessionGraph, a: Propagation, b: Propagation) -> None:
    n = len(g.nodes)
    assert a.missing_pairs == b.missing_pairs
    assert a.held_pairs == b.held_pairs == n * (n - 1) - a.missing_pairs
    assert a.missing_examples(n * n) == b.missing_examples(n * n)
    assert a.missing_examples(3) == b.missing_examples(3)
    assert a.max_cluster_list == b.max_cluster_list
    assert (a.diversity_min, a.diversity_sum) == (b.diversity_min, b.diversity_sum)
    for x, o in itertools.product(range(n), repeat=2):
        assert a.min_cluster_list(x, o) == b.min_cluster_list(x, o), (x, o)
        assert a.diversity(x, o) == b.diversity(x, o), (x, o)
        assert a.updates(x, o) == b.updates(x, o), (x, o)
    assert a.session_updates() == b.session_updates()
    assert a.rr_updates() == b.rr_updates()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configurations())
def test_fast_equals_exact(g: SessionGraph) -> None:
    assert_same(g, exact.propagate(g), fast.propagate(g))


def test_random_configurations_are_not_trivial() -> None:
    """The generator reaches the interesting cases (else the property test proves little)."""
    seen = {"missing": False, "reachable": False, "multi-member": False, "ebgp": False}

    @settings(max_examples=150, deadline=None, database=None)
    @given(configurations())
    def probe(g: SessionGraph) -> None:
        r = fast.propagate(g, updates=False)
        seen["missing" if r.missing_pairs else "reachable"] = True
        if any(len(c.members) > 1 for c in g.classes):
            seen["multi-member"] = True
        if len({c.asn for c in g.classes}) > 1 and any(g.adj):
            seen["ebgp"] = True

    probe()
    assert all(seen.values()), seen


# -- brute force: the full state space, no pruning -------------------------------------


def brute_force(g: SessionGraph) -> dict[str, dict[tuple[int, int], int]]:
    """min CL, diversity, updates from every (holder, sender, cl, asp) state reachable."""
    enc = encode(g)
    n = len(g.nodes)
    cbit = [enc.cluster_bit[g.node_class[x]] for x in range(n)]
    abit = [enc.asn_bit[g.node_class[x]] for x in range(n)]
    kind = {(x, v): ARRIVAL_OF[k] for x in range(n) for v in g.peers(x) if (k := g.kind(x, v))}
    peers = {x: sorted(g.peers(x)) for x in range(n)}
    min_cl: dict[tuple[int, int], int] = {}
    diversity: dict[tuple[int, int], int] = {}
    updates = {(x, v): 0 for x in range(n) for v in peers[x]}
    for o in range(n):
        seen: set[tuple[int, int, int, int]] = set()
        todo = [(o, -1, 0, 0)]
        while todo:
            x, w, cl, asp = todo.pop()
            held = Arrival.ORIGIN if w < 0 else kind[(x, w)]
            for v in peers[x]:
                if v in (w, o):
                    continue
                sent = export_path(held, cl, asp, kind[(x, v)], cbit[x], abit[x])
                if sent is None or not accepts(*sent, kind[(v, x)], cbit[v], abit[v]):
                    continue
                state = (v, x, *sent)
                if state not in seen:
                    seen.add(state)
                    todo.append(state)
        for x in range(n):
            mine = [(w, cl) for (h, w, cl, _) in seen if h == x]
            if mine:
                min_cl[(x, o)] = min(cl.bit_count() for _, cl in mine)
                diversity[(x, o)] = len({w for w, _ in mine})
        for x, v in updates:
            if x == o or any(
                h == x
                and w != v
                and export_path(kind[(x, w)], cl, asp, kind[(x, v)], cbit[x], abit[x]) is not None
                for (h, w, cl, asp) in seen
            ):
                updates[(x, v)] += 1
    return {"min_cl": min_cl, "diversity": diversity, "updates": updates}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configurations())
def test_exact_equals_unpruned_search(g: SessionGraph) -> None:
    ref = brute_force(g)
    got = exact.propagate(g)
    n = len(g.nodes)
    for x, o in itertools.product(range(n), repeat=2):
        assert got.min_cluster_list(x, o) == ref["min_cl"].get((x, o))
        assert got.diversity(x, o) == ref["diversity"].get((x, o))
    for (x, v), count in ref["updates"].items():
        assert got.updates(x, v) == count


# -- scale: the 5000-node hierarchy (domain.md section 4) ------------------------------


def hierarchy(*, spine_class: bool = True, cut_rack: bool = False) -> SessionGraph:
    """10 racks (7 x 497 + 3 x 496 clients), 3 rack RRs per rack ID, 3 spines: 5000 nodes.

    Every rack RR is a singleton class; the spines are one class of 3 peering
    among themselves, or (``spine_class=False``) 3 singletons.  ``cut_rack`` drops
    rack 0's sessions to the spines.
    """
    classes: list[tuple[list[str], str | None, int]] = []
    links: list[tuple[int, int]] = []
    for r, size in enumerate([497] * 7 + [496] * 3):
        classes.append(([f"c{r}-{i:03d}" for i in range(size)], None, AS))
    if spine_class:
        spines = [len(classes)]
        classes.append(([f"spine{i}" for i in range(3)], "10.255.0.1", AS))
        links.append((spines[0], spines[0]))
    else:
        spines = list(range(len(classes), len(classes) + 3))
        classes += [([f"spine{i}"], "10.255.0.1", AS) for i in range(3)]
        links += [(a, b) for a in spines for b in spines if a < b]
    for r in range(10):
        for j in range(3):
            rr = len(classes)
            classes.append(([f"rr{r}-{j}"], f"10.0.{r}.1", AS))
            links.append((rr, r))
            if not (cut_rack and r == 0):
                links += [(rr, s) for s in spines]
    return class_graph(classes, links)


def test_hierarchy_5000_with_every_single_rr_failure() -> None:
    for spine_class in (True, False):
        g = hierarchy(spine_class=spine_class)
        assert len(g.nodes) == 5000
        rep = verify(g)
        assert rep.engine == "fast"
        assert rep.reachable and rep.missing_pairs == 0
        assert rep.single_rr_failure_tolerant and rep.worst_single_rr_failure is None
        assert rep.max_cluster_list == 3  # rack X -> spine S -> rack Y
        assert rep.path_diversity == (1, 3.0)
        # each client receives every other prefix once from each of its 3 rack RRs...
        assert rep.updates_per_session.max == 5000
        # ...and each spine gets ~5000 prefixes from each of 30 rack RRs and 2 spines
        assert rep.updates_per_rr.max == 32 * 5000


def test_hierarchy_5000_cut_rack_counts_without_materialising() -> None:
    g = hierarchy(cut_rack=True)
    r = fast.propagate(g, updates=False)
    # rack 0 (497 clients + 3 RRs) and the other 4500 nodes lose each other; and
    # rack 0's RRs share an ID and no session, so without the spines reflecting
    # their prefixes back, they lack each other's (3 x 2 pairs)
    assert r.missing_pairs == 2 * 500 * 4500 + 6
    idx = g.index()
    assert r.min_cluster_list(idx["rr0-1"], idx["rr0-0"]) is None
    assert r.min_cluster_list(idx["c0-005"], idx["rr0-0"]) == 0  # own prefix: not reflected
    assert r.min_cluster_list(idx["c0-005"], idx["c0-006"]) == 1
    examples = r.missing_examples(5)
    assert len(examples) == 5 and examples == sorted(examples)
    first = g.nodes[examples[0][0]].name
    assert first == "c0-000"  # the first node in name order, and it is in rack 0
    assert all(g.nodes[o].name.startswith(("c1", "c2", "rr1", "spine")) for _, o in examples)


def test_fast_equals_exact_on_a_mid_size_hierarchy() -> None:
    classes: list[tuple[list[str], str | None, int]] = []
    links: list[tuple[int, int]] = []
    for r in range(3):
        classes.append(([f"c{r}-{i:02d}" for i in range(25)], None, AS))
    classes.append(([f"spine{i}" for i in range(2)], "10.255.0.1", AS))
    links.append((3, 3))
    for r in range(3):
        for j in range(2):
            rr = len(classes)
            classes.append(([f"rr{r}-{j}"], f"10.0.{r}.1", AS))
            links += [(rr, r), (rr, 3)]
    g = class_graph(classes, links)
    assert len(g.nodes) == 83
    assert_same(g, exact.propagate(g), fast.propagate(g))


@st.composite
def failure_scenarios(draw: st.DrawFn) -> tuple[SessionGraph, list[list[int]]]:
    """A configuration and 1-6 sets of failed nodes (empty, one node, several, whole classes)."""
    g = draw(configurations())
    n = len(g.nodes)
    sets = draw(
        st.lists(st.lists(st.integers(0, n - 1), max_size=min(n, 5)), min_size=1, max_size=6)
    )
    if draw(st.booleans()):
        sets.append(list(g.classes[draw(st.integers(0, len(g.classes) - 1))].members))
    return g, sets


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(failure_scenarios())
def test_batched_failures_equal_one_run_per_failure(
    case: tuple[SessionGraph, list[list[int]]],
) -> None:
    """fast.missing_after (every scenario in one propagation) == a run per failed graph."""
    g, sets = case
    expected = [exact.propagate(g.without(s), updates=False).missing_pairs for s in sets]
    assert fast.missing_after(g, sets) == expected
    assert exact.missing_after(g, sets) == expected


def test_batched_failures_cross_batches() -> None:
    """More scenarios than one propagation takes: split into batches, order kept."""
    g = hierarchy(cut_rack=True)
    rrs = [x for x in range(len(g.nodes)) if g.is_rr(x)]
    sets = [[x] for x in rrs] * (fast.SCENARIO_BATCH // len(rrs) + 2)
    expected = [fast.propagate(g.without(s), updates=False).missing_pairs for s in sets[: len(rrs)]]
    got = fast.missing_after(g, sets)
    assert len(got) == len(sets) > fast.SCENARIO_BATCH
    assert got == expected * (len(sets) // len(rrs))
