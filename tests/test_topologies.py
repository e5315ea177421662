"""The four topologies, measured on their rendered resources.

Every figure here comes from the session graph that calico-node would build
from the rendered BGPPeers and node labels (summary.plan_graph), not from the
planner's layout.  Acceptance numbers of issue 2 first, then properties over
random clusters.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from calico_rr.core.bgp.metrics import sessions_by_label
from calico_rr.core.bgp.sessions import SessionGraph
from calico_rr.core.planning.candidates import healthy
from calico_rr.core.planning.config import ROLE_LABEL, PlanConfig
from calico_rr.core.planning.planner import Plan, plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.core.report.summary import plan_graph, summarize
from calico_rr.model import Node

TOPOLOGIES = ["single", "multi", "quorum", "hierarchy", "auto"]


def run(nodes: int, topology: str, *, zones: int = 0, racks: int = 0, **cfg: Any) -> Plan:
    cluster = synthetic_cluster(nodes, zones=zones, racks=racks)
    return plan(cluster, PlanConfig(topology=topology, **cfg))


def peer_names(graph: SessionGraph) -> dict[str, set[str]]:
    names = [n.name for n in graph.nodes]
    return {names[i]: {names[j] for j in graph.peers(i)} for i in range(len(names))}


def rr_peer_counts(graph: SessionGraph) -> dict[str, int]:
    return {
        graph.nodes[i].name: sum(1 for j in graph.peers(i) if graph.is_rr(j))
        for i in range(len(graph.nodes))
        if not graph.is_rr(i)
    }


# -- acceptance (issue 2) -------------------------------------------------------


def test_single_500_is_the_talks_table() -> None:
    s = summarize(run(500, "single"))
    assert s["route_reflectors"] == 3
    assert s["clients_per_rr"] == {"min": 497, "mean": 497.0, "max": 497}
    assert s["rr_peers_per_rr"] == {"min": 2, "mean": 2.0, "max": 2}
    assert s["sessions_per_rr"] == {"min": 499, "mean": 499.0, "max": 499}
    assert s["cluster_ids"] == 1


def test_multi_2000_with_11_rrs() -> None:
    s = summarize(run(2000, "multi", rrs=11))
    assert s["route_reflectors"] == 11
    assert s["cluster_ids"] == 11
    assert s["rr_peers_per_rr"]["min"] == s["rr_peers_per_rr"]["max"] == 10
    assert 545 <= s["sessions_per_rr"]["min"] <= s["sessions_per_rr"]["max"] <= 560
    assert s["sessions_per_client"]["min"] >= 3


def test_multi_with_zones_rounds_rrs_to_whole_zones() -> None:
    s = summarize(run(2000, "multi", zones=3, rrs=11))
    assert s["route_reflectors"] == 12
    assert s["sessions_per_rr"]["max"] - s["sessions_per_rr"]["min"] <= 3
    assert s["sessions_per_client"]["min"] >= 3


@pytest.mark.parametrize("zones", [0, 3])
def test_hierarchy_5000_10_racks(zones: int) -> None:
    p = run(5000, "hierarchy", zones=zones, racks=10)
    s = summarize(p)
    assert s["route_reflectors"] == 33
    assert s["sessions_per_rr"]["max"] <= 510
    graph = plan_graph(p)
    roles = sessions_by_label(graph, ROLE_LABEL)
    assert set(roles) == {"rack-rr", "spine"}
    assert roles["spine"].max == 32  # 30 rack RRs + 2 other spines


def test_hierarchy_caps_a_small_racks_rrs_at_a_third_of_it() -> None:
    """16 nodes in 3 zones: a generated rack per zone (6, 5 and 5 nodes) gets 2
    rack RRs, not ``redundancy`` 3 (which made 12 RRs of 16); every client
    still peers with 2 RRs."""
    p = run(16, "hierarchy", zones=3)
    racks = [s for s in p.layout.slots if s.role == "rack-rr"]
    per_rack = Counter(s.rack for s in racks)
    assert sorted(per_rack.values()) == [2, 2, 2]
    assert len(p.layout.holders) == 6 + 3  # rack RRs + spines
    s = summarize(p)
    assert s["sessions_per_client"]["min"] == 2
    assert s["clients_without_rr"] == 0
    # at 9 nodes a rack is no longer capped at the default redundancy
    assert Counter(s.role for s in run(9, "hierarchy").layout.slots)["rack-rr"] == 3


def test_quorum_2000_shape() -> None:
    """Documented in docs/TOPOLOGIES.md next to the proposal's 13-RR table."""
    p = run(2000, "quorum", zones=3)
    s = summarize(p)
    assert s["route_reflectors"] == 12
    assert s["cluster_ids"] == 4
    assert s["rr_peers_per_rr"] == {"min": 11, "mean": 11.0, "max": 11}
    assert s["sessions_per_rr"]["max"] <= 510
    assert s["sessions_per_client"] == {"min": 3, "mean": 3.0, "max": 3}
    assert p.layout.shape["rrs_per_group"] == 3


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize("zones", [0, 3])
def test_at_most_100_bgppeers_at_5000(topology: str, zones: int) -> None:
    s = summarize(run(5000, topology, zones=zones))
    assert s["bgppeer_objects"] <= 100
    assert s["clients_without_rr"] == 0


# 1500 nodes was multi (12 RRs) until the add-path fan-out was counted: 12 RRs
# under distinct cluster IDs put ~10^8 paths per prefix on a client
# (tests/test_fanout.py has the sizes where auto still picks multi)
@pytest.mark.parametrize(
    ("nodes", "expected"),
    [(50, "single"), (500, "single"), (1500, "hierarchy"), (5000, "hierarchy")],
)
def test_auto_picks_by_size_and_budget(nodes: int, expected: str) -> None:
    p = run(nodes, "auto", zones=3)
    assert p.topology == expected
    assert p.auto_reason
    s = summarize(p)
    assert s["sessions_per_rr"]["max"] <= 510


def test_clients_rrs_span_two_zones_one_in_own_zone() -> None:
    for topology in ("multi", "quorum"):
        p = run(600, topology, zones=3, rrs=6)
        graph = plan_graph(p)
        zone = {n.name: n.labels.get("topology.kubernetes.io/zone") for n in p.nodes}
        for i, n in enumerate(graph.nodes):
            if graph.is_rr(i):
                continue
            rr_zones = {zone[graph.nodes[j].name] for j in graph.peers(i) if graph.is_rr(j)}
            assert len(rr_zones) >= 2, (topology, n.name)
            assert zone[n.name] in rr_zones, (topology, n.name)


def test_unhealthy_nodes_are_never_rrs_but_are_served() -> None:
    cluster = synthetic_cluster(300, zones=3, unhealthy=0.2)
    p = plan(cluster, PlanConfig(topology="multi", rrs=6))
    by_name = {n.name: n for n in cluster}
    assert all(healthy(by_name[name]) for name in p.layout.holders.values())
    counts = rr_peer_counts(plan_graph(p))
    assert min(counts.values()) >= 3


# -- properties over random clusters ---------------------------------------------


@dataclasses.dataclass(frozen=True)
class Case:
    """A random cluster, kept as its parameters so failures print readably."""

    nodes: int
    zones: int
    racks: int
    unhealthy: float
    config: PlanConfig

    def cluster(self) -> list[Node]:
        return synthetic_cluster(
            self.nodes, zones=self.zones, racks=self.racks, unhealthy=self.unhealthy
        )

    def __iter__(self) -> Any:
        return iter((self.cluster(), self.config))


@st.composite
def clusters(draw: st.DrawFn, min_nodes: int = 5, max_nodes: int = 400) -> Case:
    n = draw(st.integers(min_nodes, max_nodes))
    zones = draw(st.sampled_from([0, 0, 2, 3, 4]))
    topology = draw(st.sampled_from(["single", "multi", "quorum", "hierarchy"]))
    racks = draw(st.integers(1, max(1, n // 50))) if topology == "hierarchy" else 0
    unhealthy = draw(st.sampled_from([0.0, 0.0, 0.05, 0.2]))
    redundancy = draw(st.sampled_from([2, 3, 3, 4]))
    rrs = draw(st.one_of(st.none(), st.integers(3, 12)))
    config = PlanConfig(topology=topology, redundancy=redundancy, rrs=rrs)  # type: ignore[arg-type]
    return Case(n, zones, racks, unhealthy, config)


PROPS = settings()  # examples per profile, see conftest.py


@PROPS
@given(clusters())
def test_every_healthy_client_gets_enough_rrs(case: Case) -> None:
    nodes, config = case
    p = plan(nodes, config)
    graph = plan_graph(p)
    rrs = len(p.layout.holders)
    want = min(config.redundancy, rrs)
    if p.topology == "hierarchy":  # a small rack's RRs are capped (rack_rr_cap), never below 2
        want = min(want, 2)
    counts = rr_peer_counts(graph)
    by_name = {n.name: n for n in nodes}
    for name, count in counts.items():
        if healthy(by_name[name]):
            assert count >= want, (name, count, want, p.topology)


@PROPS
@given(clusters(min_nodes=100, max_nodes=600))
def test_rrs_in_one_role_carry_similar_load(case: Case) -> None:
    nodes, config = case
    p = plan(nodes, config)
    graph = plan_graph(p)
    for role, stats in sessions_by_label(graph, ROLE_LABEL).items():
        if stats.mean == 0:
            continue
        assert stats.max <= stats.mean * 1.10, (role, stats, p.topology)
        assert stats.min >= stats.mean * 0.90, (role, stats, p.topology)


@PROPS
@given(clusters(max_nodes=200))
def test_same_input_same_output(case: Case) -> None:
    nodes, config = case
    first = plan(nodes, config).resources()
    again = plan(list(reversed(nodes)), config).resources()
    assert first == again


def _joined(nodes: list[Node]) -> Node:
    """A fresh, healthy node that joins the cluster (youngest, new name and IP)."""
    template = nodes[0]
    labels = {k: v for k, v in template.labels.items() if not k.startswith("calico-rr.io/")}
    if "calico-rr.io/rack" in template.labels:
        labels["calico-rr.io/rack"] = template.labels["calico-rr.io/rack"]
    return dataclasses.replace(
        template,
        name="zz-joined",
        ip="10.250.250.250",
        labels=labels,
        annotations={},
        created=max(n.created for n in nodes) + 60,
        raw=None,
    )


@PROPS
@given(clusters(max_nodes=250))
def test_join_changes_no_other_nodes_sessions(case: Case) -> None:
    nodes, config = case
    config = dataclasses.replace(config, rrs=config.rrs or 4)  # fixed sizing: a join
    first = plan(nodes, config)  # must not also be a resize
    # A join into a cluster with fewer eligible nodes than wanted RRs rightly makes
    # the newcomer an RR; the churn bound is about steady state.
    assume(len(first.layout.holders) == len(first.layout.slots))
    assume(len(first.view.eligible) >= 2 * len(first.layout.slots) + 4)
    applied = first.applied_nodes()
    before = peer_names(plan_graph(first))
    second = plan([*applied, _joined(applied)], config)
    after = peer_names(plan_graph(second))
    assert second.layout.holders == first.layout.holders
    for name, peers in before.items():
        assert after[name] - {"zz-joined"} == peers, name


@PROPS
@given(clusters(min_nodes=20, max_nodes=250), st.integers(0, 1000))
def test_rr_loss_moves_only_its_own_clients(case: Case, pick: int) -> None:
    nodes, config = case
    config = dataclasses.replace(config, rrs=config.rrs or 4)
    first = plan(nodes, config)
    # As for joins: the bound is about a cluster with spare eligible nodes, where
    # losing one does not also shrink the RR count.
    assume(len(first.layout.holders) == len(first.layout.slots))
    assume(len(first.view.eligible) >= 2 * len(first.layout.slots) + 4)
    applied = first.applied_nodes()
    before = peer_names(plan_graph(first))
    rr_names = sorted(first.layout.holders.values())
    lost = rr_names[pick % len(rr_names)]
    second = plan([n for n in applied if n.name != lost], config)
    after = peer_names(plan_graph(second))
    successors = set(second.layout.holders.values()) - set(first.layout.holders.values())
    assert len(successors) <= 1
    # every other RR kept its slot
    kept = {s: n for s, n in first.layout.holders.items() if n != lost}
    assert all(second.layout.holders.get(s) == n for s, n in kept.items())
    moved = {
        name
        for name, peers in after.items()
        if name not in successors and peers - successors != before[name] - {lost} - successors
    }
    own_clients = {c for c in before[lost] if c not in first.layout.holders.values()}
    assert moved <= own_clients, (moved - own_clients, first.topology)


def test_property_generator_covers_every_topology() -> None:
    seen = {
        plan(*case).topology
        for case in [
            (synthetic_cluster(50), PlanConfig(topology=t))  # type: ignore[arg-type]
            for t in ("single", "multi", "quorum", "hierarchy")
        ]
    }
    assert seen == {"single", "multi", "quorum", "hierarchy"}


def test_a_slot_no_node_can_hold_degrades_the_layout_whatever_its_words() -> None:
    """RRs short is Degraded: 18 nodes of which zone-a's 6 may be RRs leave a
    hierarchy one spine short.  Text matching once missed this warning ("no
    eligible node left" does not contain "no node"); the kind now travels with it."""
    p = run(18, "hierarchy", zones=3, dedicated_label="topology.kubernetes.io/zone=zone-a")
    assert p.degrading == ("no eligible node left for RR slot spine.2",)
    plain = dataclasses.replace(p, warnings=tuple(str(w) for w in p.warnings))
    assert plain.warnings == p.warnings and plain.degrading == ()


@pytest.mark.parametrize("topology", TOPOLOGIES)
@pytest.mark.parametrize(
    ("zones", "dedicated"),
    [(0, "nothing=here"), (3, "nothing=here"), (3, "topology.kubernetes.io/zone=zone-a")],
)
@pytest.mark.parametrize("nodes", [1, 5, 50])
def test_no_or_few_eligible_nodes_plan_and_the_gate_refuses(
    topology: str, zones: int, dedicated: str, nodes: int
) -> None:
    """A cluster where no node (or only one zone's) may be an RR is planned like any
    other - quorum raised ValueError here once - and where no RR could be placed the
    planner says so and the safety gate refuses the result."""
    from calico_rr.core.operator.safety import gate_plan

    p = run(nodes, topology, zones=zones, dedicated_label=dedicated)
    if not p.layout.holders:
        assert "no node is eligible to be a route reflector" in p.warnings
        assert "no node is eligible to be a route reflector" in p.degrading
        assert not gate_plan(p).ok
