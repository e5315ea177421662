"""verify(): the report, its failure simulations and their symmetry shortcuts."""

from __future__ import annotations

import itertools
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calico_rr.core.bgp.metrics import Stats
from calico_rr.core.bgp.sessions import SessionGraph
from calico_rr.core.bgp.verify import exact, fast, report
from calico_rr.core.bgp.verify.report import verify
from calico_rr.core.bgp.verify.rules import class_graph

AS = 64512


@st.composite
def configurations(draw: st.DrawFn) -> SessionGraph:
    """Small iBGP configurations with RRs in 1-6 classes of 1-3 members, 3-12 nodes."""
    sizes = draw(st.lists(st.integers(1, 3), min_size=2, max_size=6))
    while sum(sizes) > 12:
        sizes[sizes.index(max(sizes))] -= 1
    if sum(sizes) < 3:
        sizes[0] += 3 - sum(sizes)
    classes = [
        ([f"n{c}-{i}" for i in range(size)], draw(st.sampled_from([None, "A", "B"])), AS)
        for c, size in enumerate(sizes)
    ]
    pairs = [(a, b) for a in range(len(sizes)) for b in range(a, len(sizes))]
    return class_graph(classes, [p for p in pairs if draw(st.booleans())])


def lost(g: SessionGraph, removed: tuple[int, ...]) -> int:
    return exact.propagate(g.without(removed), updates=False).missing_pairs


def rack_graph(racks: int = 2, clients: int = 4) -> SessionGraph:
    """Racks of clients with 2 RRs each (own ID), RRs of all racks in one mesh."""
    classes: list[tuple[list[str], str | None, int]] = []
    links: list[tuple[int, int]] = []
    rrs = []
    for r in range(racks):
        classes.append(([f"c{r}-{i}" for i in range(clients)], None, AS))
    for r in range(racks):
        for j in range(2):
            rrs.append(len(classes))
            classes.append(([f"rr{r}-{j}"], f"10.0.{r}.1", AS))
            links.append((rrs[-1], r))
    links += [(a, b) for a, b in itertools.combinations(rrs, 2)]
    return class_graph(classes, links)


def test_report_of_a_healthy_topology() -> None:
    g = rack_graph()
    rep = verify(g, fail_rrs=2, fail_zones={"rack0": [0, 1, 2, 3, 8, 9]})
    assert rep.reachable and rep.missing_pairs == 0 and rep.missing_examples == ()
    assert rep.engine == "exact"  # small graph: auto picks the reference engine
    assert not rep.loops
    assert rep.single_rr_failure_tolerant and rep.worst_single_rr_failure is None
    assert rep.k_rr_failure is not None
    # both RRs of one rack failing cuts its clients off
    assert not rep.k_rr_failure.tolerant
    assert rep.k_rr_failure.failed in (("rr0-0", "rr0-1"), ("rr1-0", "rr1-1"))
    # rack 0's 4 clients (no sessions among them) lack all 9 other prefixes,
    # the 6 other nodes lack those 4
    assert rep.k_rr_failure.missing_pairs == 4 * 9 + 6 * 4
    assert rep.zone_failure["rack0"].tolerant
    assert rep.zone_failure["rack0"].removed == 6
    assert rep.max_cluster_list == 2  # rack RR X -> rack RR Y -> client
    assert rep.path_diversity[0] == 2  # every node has two RRs (or two rack-mates) to hear from
    d = rep.to_dict()
    assert set(d) >= {
        "reachable",
        "missing_pairs",
        "missing_examples",
        "loops",
        "single_rr_failure_tolerant",
        "max_cluster_list",
        "updates_per_rr",
        "updates_per_session",
        "path_diversity",
        "k_rr_failure",
        "zone_failure",
        "engine",
    }
    assert set(d["updates_per_rr"]) == {"min", "mean", "max"}
    assert d["k_rr_failure"]["tolerant"] is False
    assert d["zone_failure"]["rack0"] == {"tolerant": True, "missing_pairs": 0, "removed": 6}
    assert json.loads(json.dumps(d)) == d
    text = "\n".join(rep.to_text())
    assert "reachability: OK" in text
    assert "2 RRs failing together: NOT tolerated" in text
    assert "zone rack0 down (6 nodes): tolerated" in text


def test_report_of_a_broken_topology() -> None:
    # lab A in a bigger form: two RRs sharing an ID, each with its own clients
    g = class_graph(
        [(["a1", "a2"], None, AS), (["b1", "b2"], None, AS), (["rr1"], "9.9.9.9", AS),
         (["rr2"], "9.9.9.9", AS)],
        [(0, 2), (1, 3), (2, 3)],
    )  # fmt: skip
    for engine in ("exact", "fast"):
        rep = verify(g, engine=engine, examples=3)
        assert rep.engine == engine
        assert not rep.reachable
        assert rep.missing_pairs == 8
        assert rep.missing_examples == (("a1", "b1"), ("a1", "b2"), ("a2", "b1"))
        assert not rep.single_rr_failure_tolerant
        # a1, a2 (not peering each other) lack all 4 others; b1, b2, rr2 lack a1, a2
        assert rep.worst_single_rr_failure == ("rr1", 2 * 4 + 3 * 2)
        text = rep.to_text()
        assert any("FAILED, 8" in line for line in text)
        assert "  a1 has no route to b1's prefix" in text
        assert any("worst: rr1" in line for line in text)
        assert rep.to_dict()["worst_single_rr_failure"] == {"node": "rr1", "missing_pairs": 14}


def test_update_figures_match_a_direct_count() -> None:
    g = rack_graph(racks=3, clients=3)
    r = exact.propagate(g)
    rep = verify(g)
    per_session = [r.updates(u, v) for u in range(len(g.nodes)) for v in g.peers(u)]
    assert rep.updates_per_session == Stats.of(x for x in per_session if x is not None)
    rr_totals = [
        sum(r.updates(u, x) or 0 for u in g.peers(x)) for x in range(len(g.nodes)) if g.is_rr(x)
    ]
    assert rep.updates_per_rr == Stats.of(rr_totals)
    # a client sends only its own prefix; an RR sends every prefix but the receiver's
    # own where that came straight from it
    idx = g.index()
    assert r.updates(idx["c0-0"], idx["rr0-0"]) == 1
    assert r.updates(idx["rr0-0"], idx["c0-0"]) == len(g.nodes) - 1


def test_engine_choice_and_arguments() -> None:
    small = rack_graph()
    big = rack_graph(racks=2, clients=40)
    assert verify(small).engine == "exact"
    assert verify(big).engine == "fast"
    assert verify(big, engine="exact").to_dict() == {
        **verify(big, engine="fast").to_dict(),
        "engine": "exact",
    }
    with pytest.raises(ValueError, match="engine"):
        verify(small, engine="quick")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fail_rrs"):
        verify(small, fail_rrs=0)


def test_more_failures_than_rrs_checks_losing_them_all() -> None:
    g = rack_graph()
    rep = verify(g, fail_rrs=9)
    assert rep.k_rr_failure is not None
    assert rep.k_rr_failure.k == 4
    assert rep.k_rr_failure.combinations == 1
    assert not rep.k_rr_failure.tolerant
    assert rep.k_rr_failure.missing_pairs == 8 * 7  # clients only peer with RRs


def test_no_rrs_and_empty_graph() -> None:
    mesh = class_graph([(["a", "b", "c"], None, AS)], [(0, 0)])
    rep = verify(mesh, fail_rrs=2)
    assert rep.reachable and rep.single_rr_failure_tolerant
    assert rep.updates_per_rr == Stats()
    assert rep.k_rr_failure is not None and rep.k_rr_failure.tolerant
    assert rep.updates_per_session == Stats(min=1, mean=1.0, max=1)
    empty = verify(class_graph([], []))
    assert empty.reachable and empty.missing_pairs == 0 and empty.path_diversity == (0, 0.0)


# -- symmetry shortcuts against brute force ----------------------------------------------


@given(configurations())
def test_single_rr_failures_match_a_full_scan(g: SessionGraph) -> None:
    rrs = [x for x in range(len(g.nodes)) if g.is_rr(x)]
    scan = [(lost(g, (r,)), -r) for r in rrs]
    worst = max(scan, default=(0, 0))
    rep = verify(g, engine="exact")
    if worst[0] == 0:
        assert rep.single_rr_failure_tolerant and rep.worst_single_rr_failure is None
    else:
        assert rep.worst_single_rr_failure == (g.nodes[-worst[1]].name, worst[0])


@given(configurations(), st.integers(2, 3))
def test_k_rr_failures_match_a_full_scan(g: SessionGraph, k: int) -> None:
    rrs = [x for x in range(len(g.nodes)) if g.is_rr(x)]
    k_eff = min(k, len(rrs))
    failing = [c for c in itertools.combinations(rrs, k_eff) if lost(g, c)]
    rep = verify(g, fail_rrs=k, engine="fast")
    kr = rep.k_rr_failure
    assert kr is not None
    assert kr.combinations == math.comb(len(rrs), k_eff)
    assert kr.tolerant == (not failing)
    if kr.tolerant:
        assert kr.covered == kr.combinations and not kr.sampled
    else:
        assert kr.failed is not None
        combo = tuple(sorted(g.index()[name] for name in kr.failed))
        assert combo in failing
        assert kr.missing_pairs == lost(g, combo)


def test_k_failures_across_swappable_classes() -> None:
    # Found by Hypothesis: two separate pairs of RRs sharing one cluster ID.  The
    # pairs are swappable as wholes, but losing one RR of each pair is not the same
    # as losing both RRs of one pair: k-failure orbits must be counted per class.
    g = class_graph(
        [(["a0", "a1"], "1.1.1.1", AS), (["b0", "b1"], "1.1.1.1", AS)],
        [(0, 0), (1, 1)],
    )
    rep = verify(g, fail_rrs=2, engine="fast")
    assert rep.k_rr_failure is not None and not rep.k_rr_failure.tolerant
    assert [len(grp) for grp in report._rr_groups(g)] == [2, 2]


def test_orbit_enumeration() -> None:
    sizes = [3, 1, 2, 2]
    for k in range(0, 9):
        vectors = list(report._orbits(sizes, k))
        assert len(vectors) == len(set(vectors)) == report._orbit_count(sizes, k)
        assert all(
            sum(v) == k and all(0 <= a <= s for a, s in zip(v, sizes, strict=True)) for v in vectors
        )
        covered = sum(
            math.prod(math.comb(s, a) for s, a in zip(sizes, v, strict=True)) for v in vectors
        )
        assert covered == math.comb(sum(sizes), k)


def test_k_failure_sample_is_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    # 6 racks x 2 RRs in one mesh: C(12, 3) = 220 combinations, 56 up to symmetry
    g = rack_graph(racks=6, clients=2)
    monkeypatch.setattr(report, "K_FAILURE_BUDGET", 10)
    first = verify(g, fail_rrs=2, engine="fast").k_rr_failure
    assert first is not None and not first.tolerant  # a rack's two RRs are tried first
    assert first.failed == ("rr0-0", "rr0-1")
    g2 = class_graph(
        [(["c"], None, AS)] + [([f"r{i:02d}"], f"10.0.0.{i}", AS) for i in range(1, 13)],
        [(0, i) for i in range(1, 13)] + list(itertools.combinations(range(1, 13), 2)),
    )
    a = verify(g2, fail_rrs=3, engine="fast").k_rr_failure
    b = verify(g2, fail_rrs=3, engine="fast").k_rr_failure
    assert a == b
    assert a is not None and a.tolerant and a.sampled
    assert a.combinations == math.comb(12, 3)
    assert a.checked == 10 and a.covered < a.combinations
    assert "a deterministic sample" in "\n".join(verify(g2, fail_rrs=3).to_text())


def test_fast_and_exact_reports_agree_on_random_configurations() -> None:
    @settings(max_examples=60, deadline=None, database=None)
    @given(configurations())
    def check(g: SessionGraph) -> None:
        zones = {"first": [0], "half": list(range(len(g.nodes) // 2))}
        a = verify(g, engine="exact", fail_rrs=2, fail_zones=zones).to_dict()
        b = verify(g, engine="fast", fail_rrs=2, fail_zones=zones).to_dict()
        assert a | {"engine": "-"} == b | {"engine": "-"}

    check()
    assert fast.propagate(rack_graph()).missing_pairs == 0


@given(configurations())
def test_rr_orbits_hold_rrs_that_fail_alike(g: SessionGraph) -> None:
    orbits = report._rr_orbits(g)
    assert sorted(x for o in orbits for x in o) == [x for x in range(len(g.nodes)) if g.is_rr(x)]
    for orbit in orbits:
        assert len({lost(g, (x,)) for x in orbit}) == 1


def multi_ring(sizes: list[int]) -> SessionGraph:
    """RRs with distinct IDs in a full mesh; client class i peers with RRs i, i+1 (mod n)."""
    n = len(sizes)
    classes: list[tuple[list[str], str | None, int]] = [
        ([f"rr{i}"], f"10.0.0.{i + 1}", AS) for i in range(n)
    ]
    links = list(itertools.combinations(range(n), 2))
    for i, size in enumerate(sizes):
        links += [(n + i, i), (n + i, (i + 1) % n)]
        classes.append(([f"c{i}-{j}" for j in range(size)], None, AS))
    return class_graph(classes, links)


def test_rr_orbits_find_rotations_and_respect_sizes() -> None:
    g = multi_ring([3] * 6)
    assert [len(o) for o in report._rr_orbits(g)] == [6]  # rotations: all alike
    uneven = multi_ring([3, 3, 3, 3, 3, 4])
    orbits = report._rr_orbits(uneven)
    # only the reflection through the big class's two RRs remains
    assert sorted(len(o) for o in orbits) == [2, 2, 2]
    # racks of equal size can be exchanged with their RRs: one orbit for 6 RRs
    assert [len(o) for o in report._rr_orbits(rack_graph(racks=3))] == [6]


def test_is_automorphism_checks_sessions_sizes_and_ids() -> None:
    g = multi_ring([3] * 4)  # classes: rr0..rr3, then c0..c3
    rotate = [1, 2, 3, 0, 5, 6, 7, 4]
    assert report._is_automorphism(g, rotate)
    assert report._is_automorphism(g, list(range(8)))
    swap_two_rrs = [1, 0, 2, 3, 4, 5, 6, 7]  # moves c0's and c1's RRs inconsistently
    assert not report._is_automorphism(g, swap_two_rrs)
    # two RRs sharing an ID cannot be mapped onto two with distinct IDs, even where
    # sessions and kinds would allow it (lab A vs lab C behaviour differs)
    ids = ["1.1.1.1", "1.1.1.1", "2.2.2.2", "3.3.3.3"]
    split = class_graph(
        [([f"rr{i}"], cid, AS) for i, cid in enumerate(ids)]
        + [([f"c{i}"], None, AS) for i in range(4)],
        [(i, 4 + i) for i in range(4)],
    )
    assert report._is_automorphism(split, [1, 0, 2, 3, 5, 4, 6, 7])
    assert report._is_automorphism(split, [0, 1, 3, 2, 4, 5, 7, 6])  # IDs relabelled 1:1
    assert not report._is_automorphism(split, [2, 3, 0, 1, 6, 7, 4, 5])


def test_engines_agree_on_a_mesh_of_distinct_cluster_ids() -> None:
    """The multi cluster shape (domain.md section 4), where reflection chains are longest."""
    g = multi_ring([4, 4, 5, 4, 4, 3, 4])
    a, b = exact.propagate(g), fast.propagate(g)
    assert a.missing_pairs == b.missing_pairs == 0
    assert a.max_cluster_list == b.max_cluster_list == 2
    assert a.session_updates() == b.session_updates()
    assert a.rr_updates() == b.rr_updates()
    assert (a.diversity_min, a.diversity_sum) == (b.diversity_min, b.diversity_sum)
    assert verify(g, engine="exact").to_dict() | {"engine": ""} == verify(
        g, engine="fast"
    ).to_dict() | {"engine": ""}
