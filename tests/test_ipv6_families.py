"""Address families in the core (issue 17): the projection, the per-family
verifier, the safety gate in every family, and the planner's preference for RRs
that carry every family the cluster uses."""

from __future__ import annotations

import dataclasses
from collections.abc import Set
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from calico_rr.core.bgp.families import families_present, project
from calico_rr.core.bgp.sessions import build_session_graph
from calico_rr.core.bgp.verify.families import family_graphs, verify_families
from calico_rr.core.operator.safety import check, check_families, gate_plan
from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.planner import plan
from calico_rr.core.planning.synthetic import synthetic_cluster, synthetic_ip, synthetic_ip6
from calico_rr.core.report.summary import plan_state
from calico_rr.errors import InputError
from calico_rr.model import ANN_CLUSTER_ID, ANN_IPV4, ANN_IPV6, BGPConfig, BGPPeer, CalicoNode
from calico_rr.model import CalicoState as State


def dual(n: int, without6: Set[int] = frozenset(), **labels: dict[str, str]) -> list[CalicoNode]:
    return [
        CalicoNode(
            f"n{i:02d}",
            synthetic_ip(i),
            labels.get(f"n{i:02d}", {}),
            ip6=None if i in without6 else synthetic_ip6(i),
        )
        for i in range(n)
    ]


def test_projection_moves_the_family_address_and_filters_peer_ips() -> None:
    nodes = (
        CalicoNode("a", "10.0.0.1", ip6="fd00::1"),
        CalicoNode("b", "10.0.0.2"),
        CalicoNode("c", None, ip6="fd00::3"),
    )
    peers = (
        BGPPeer("tor4", peer_ip="10.9.9.9", as_number=65000),
        BGPPeer("tor6", peer_ip="fd00::99", as_number=65000),
        BGPPeer("sel", node_selector="all()", peer_selector="all()"),
    )
    state = State(nodes, peers)
    assert families_present(state) == ("ipv4", "ipv6")
    v4, v6 = project(state, "ipv4"), project(state, "ipv6")
    assert [(n.ip, n.ip6) for n in v4.nodes] == [
        ("10.0.0.1", None),
        ("10.0.0.2", None),
        (None, None),
    ]
    assert [(n.ip, n.ip6) for n in v6.nodes] == [("fd00::1", None), (None, None), ("fd00::3", None)]
    assert [p.name for p in v4.peers] == ["tor4", "sel"]
    assert [p.name for p in v6.peers] == ["tor6", "sel"]
    assert build_session_graph(v6).no_ip == ("b",)
    assert [e.peer_ip for e in build_session_graph(v6).external] == ["fd00::99"]
    only4 = State((CalicoNode("a", "10.0.0.1"),), (peers[0],))
    assert project(only4, "ipv4") is only4  # IPv4-only input is untouched


def test_duplicate_ipv6_address_names_the_family() -> None:
    state = State((CalicoNode("a", None, ip6="fd00::1"), CalicoNode("b", None, ip6="fd00::1")))
    try:
        build_session_graph(project(state, "ipv6"))
    except InputError as exc:
        assert "IPv6 address fd00::1 is also used by node a" in str(exc)
    else:
        raise AssertionError("a shared IPv6 address must be refused")


def test_ipv4_only_report_is_unchanged() -> None:
    from calico_rr.core.bgp.verify.report import verify

    state = State(tuple(dataclasses.replace(n, ip6=None) for n in dual(8)))
    by_family = verify_families(state).to_dict()
    plain = verify(build_session_graph(state)).to_dict()
    assert by_family.pop("families") == {
        "ipv4": {**plain, "nodes_without_address": [], "pairs_without_address": 0}
    }
    assert by_family == plain


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(3, 14),
    without6=st.sets(st.integers(0, 13), max_size=5),
    mesh=st.booleans(),
)
def test_nodes_without_ipv6_are_the_exact_ipv6_gap(n: int, without6: set[int], mesh: bool) -> None:
    """A dual-stack cluster where some nodes have no IPv6 address: IPv4 holds,
    IPv6 misses exactly the pairs with those nodes, and names them."""
    without6 = {i for i in without6 if i < n - 1}  # at least one dual-stack node
    labels = {"n00": {"rr": "true"}}
    nodes = dual(n, without6, **labels)
    if mesh:
        state = State(tuple(nodes))
    else:  # one dual-stack RR, every other node its client
        nodes[0] = dataclasses.replace(nodes[0], ip6=synthetic_ip6(0), cluster_id="244.0.0.1")
        peer = BGPPeer("to-rr", node_selector="all()", peer_selector="rr == 'true'")
        state = State(tuple(nodes), (peer,), BGPConfig(mesh_enabled=False))
        without6.discard(0)
    report = verify_families(state)
    v4, v6 = report.families
    assert v4.reachable and v4.missing_pairs == 0
    names = tuple(sorted(f"n{i:02d}" for i in without6))
    assert v6.without_address == names
    m = n - len(names)
    assert v6.missing_pairs == n * (n - 1) - m * (m - 1)
    assert v6.reachable == (not names) == report.reachable
    data = report.to_dict()
    assert data["reachable"] == (not names)
    assert data["families"]["ipv6"]["nodes_without_address"] == list(names)
    assert data["missing_pairs"] == v6.missing_pairs
    for node, origin in data["families"]["ipv6"]["missing_examples"]:
        assert node in names or origin in names
    text = "\n".join(report.to_text())
    assert ("IPv6:" in text) and (not names or f"{len(names)} BGP nodes have no IPv6" in text)


def rr_without_ipv6_docs() -> list[dict[str, Any]]:
    """Mesh off, one RR (IPv4 only), every node its client: IPv4 whole, IPv6 cut."""
    docs: list[dict[str, Any]] = []
    for i in range(5):
        ann = {ANN_IPV4: f"{synthetic_ip(i)}/32"}
        labels = {}
        if i == 0:
            ann[ANN_CLUSTER_ID] = "244.0.0.1"
            labels["rr"] = "true"
        else:
            ann[ANN_IPV6] = f"{synthetic_ip6(i)}/128"
        meta = {"name": f"n{i}", "labels": labels, "annotations": ann}
        docs.append({"apiVersion": "v1", "kind": "Node", "metadata": meta})
    docs.append(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPPeer",
            "metadata": {"name": "to-rr"},
            "spec": {"nodeSelector": "all()", "peerSelector": "rr == 'true'"},
        }
    )
    docs.append(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {"nodeToNodeMeshEnabled": False},
        }
    )
    return docs


def test_safety_refuses_an_ipv6_cut_while_ipv4_is_fine() -> None:
    docs = rr_without_ipv6_docs()
    from calico_rr.core.bgp.resources import parse_resources

    state = parse_resources(docs).state
    ipv4_alone = family_graphs(project(state, "ipv4"))
    assert check_families(ipv4_alone).ok  # IPv4 alone: every node reached
    safety = check(docs)
    assert not safety.ok
    assert safety.failing_families == ("ipv6",)
    assert set(safety.cut_off) == {"n1", "n2", "n3", "n4"}
    assert "in IPv6" in safety.describe()


def test_gate_refuses_a_plan_forced_onto_ipv4_only_rrs() -> None:
    nodes = synthetic_cluster(12, ip_family="dual")
    v4only = {n.name for n in nodes[:3]}
    nodes = [
        dataclasses.replace(n, ip6=None, labels={"rr-ok": "yes"}) if n.name in v4only else n
        for n in nodes
    ]
    made = plan(nodes, PlanConfig(topology="single", rrs=3, dedicated_label="rr-ok=yes"))
    assert set(made.layout.holders.values()) == v4only
    assert any("has no IPv6 address" in w for w in made.warnings)
    verdict = gate_plan(made)
    assert not verdict.ok
    assert "IPv6" in verdict.causes[0]
    assert set(verdict.cut_off) == {n.name for n in nodes} - v4only


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(4, 60),
    ipv4_only=st.floats(0.0, 0.95),
    topology=st.sampled_from(["auto", "single", "multi", "quorum", "hierarchy"]),
    zones=st.integers(0, 3),
    unhealthy=st.floats(0.0, 0.3),
)
def test_planner_never_picks_an_ipv4_only_rr_while_a_dual_stack_one_is_free(
    n: int, ipv4_only: float, topology: str, zones: int, unhealthy: float
) -> None:
    nodes = synthetic_cluster(
        n, zones=zones, racks=4, unhealthy=unhealthy, ip_family="dual", ipv4_only=ipv4_only
    )
    made = plan(nodes, PlanConfig(topology=topology))  # type: ignore[arg-type]
    rrs = set(made.layout.holders.values())
    dual_eligible = {n.name for n in made.view.eligible if n.ip6 is not None}
    incomplete = [name for name in rrs if name not in dual_eligible]
    if incomplete:
        assert dual_eligible <= rrs, "an IPv4-only RR while a dual-stack candidate is free"
        assert any("has no IPv6 address" in w for w in made.warnings)
    else:
        assert not any("has no IPv6 address" in w for w in made.warnings)


def test_dual_stack_plan_verifies_in_both_families() -> None:
    made = plan(synthetic_cluster(40, zones=2, ip_family="dual"), PlanConfig())
    report = verify_families(plan_state(made))
    assert [f.family for f in report.families] == ["ipv4", "ipv6"]
    assert report.reachable
    assert all(f.report.nodes == 40 for f in report.families)
    assert gate_plan(made).ok
    six = plan(synthetic_cluster(40, ip_family="ipv6"), PlanConfig())
    assert gate_plan(six).ok
    six_report = verify_families(plan_state(six))
    assert [f.family for f in six_report.families] == ["ipv6"]
    assert six_report.reachable and six_report.combined().nodes == 40
