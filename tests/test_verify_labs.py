"""The measured BIRD labs (domain.md section 3), as session graphs and as Calico resources.

Each lab is checked with both engines, built by hand and built the calico-node way
from Kubernetes Nodes + BGPPeers + BGPConfiguration (parse_resources ->
build_session_graph), so the verifier is tested on what it will really read.
"""

from __future__ import annotations

from typing import Any

import pytest

from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.sessions import SessionGraph, build_session_graph
from calico_rr.core.bgp.verify import exact, fast
from calico_rr.core.bgp.verify.report import verify
from calico_rr.core.bgp.verify.rules import Propagation, class_graph
from calico_rr.model import ANN_CLUSTER_ID, ANN_IPV4

AS = 64512
ENGINES = [exact.propagate, fast.propagate]
HOST = "kubernetes.io/hostname"


# -- Calico resources --------------------------------------------------------


def k8s_node(name: str, ip: str, cluster_id: str | None = None, **labels: str) -> dict[str, Any]:
    annotations = {ANN_IPV4: f"{ip}/24"}
    if cluster_id is not None:
        annotations[ANN_CLUSTER_ID] = cluster_id
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {HOST: name, **{k.replace("_", "-"): v for k, v in labels.items()}},
            "annotations": annotations,
        },
    }


def bgp_peer(name: str, node_selector: str, peer_selector: str) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "BGPPeer",
        "metadata": {"name": name},
        "spec": {"nodeSelector": node_selector, "peerSelector": peer_selector},
    }


NO_MESH = {
    "apiVersion": "projectcalico.org/v3",
    "kind": "BGPConfiguration",
    "metadata": {"name": "default"},
    "spec": {"nodeToNodeMeshEnabled": False},
}


def host(name: str) -> str:
    return f"{HOST} == '{name}'"


def from_resources(docs: list[dict[str, Any]]) -> SessionGraph:
    return build_session_graph(parse_resources([*docs, NO_MESH]).state)


def names(graph: SessionGraph, pairs: list[tuple[int, int]]) -> list[tuple[str, str]]:
    return [(graph.nodes[a].name, graph.nodes[b].name) for a, b in pairs]


def all_missing(graph: SessionGraph, result: Propagation) -> list[tuple[str, str]]:
    return names(graph, result.missing_examples(10**6))


# -- lab A: two RRs sharing a cluster ID, clients on different RRs -----------------


def lab_a_graph() -> SessionGraph:
    return class_graph(
        [(["RR1"], "9.9.9.9", AS), (["RR2"], "9.9.9.9", AS), (["C3"], None, AS),
         (["C4"], None, AS)],
        [(0, 1), (0, 2), (1, 3)],
    )  # fmt: skip


def lab_a_resources() -> SessionGraph:
    return from_resources(
        [
            k8s_node("rr1", "10.0.0.1", "9.9.9.9", role="rr"),
            k8s_node("rr2", "10.0.0.2", "9.9.9.9", role="rr"),
            k8s_node("c3", "10.0.0.3"),
            k8s_node("c4", "10.0.0.4"),
            bgp_peer("rr-mesh", "role == 'rr'", "role == 'rr'"),
            bgp_peer("c3-rr1", host("c3"), host("rr1")),
            bgp_peer("c4-rr2", host("c4"), host("rr2")),
        ]
    )


@pytest.mark.parametrize("propagate", ENGINES)
@pytest.mark.parametrize("build", [lab_a_graph, lab_a_resources])
def test_lab_a(propagate: Any, build: Any) -> None:
    g = build()
    r = propagate(g)
    missing = {(a.lower(), b.lower()) for a, b in all_missing(g, r)}
    # Measured: RR1 and RR2 learn every prefix, C3 and C4 not each other's.
    assert missing == {("c3", "c4"), ("c4", "c3")}
    assert r.missing_pairs == 2
    idx = {n.name.lower(): i for i, n in enumerate(g.nodes)}
    # RR2 holds C3's prefix (accepted over plain iBGP with its own ID in the list) ...
    assert r.min_cluster_list(idx["rr2"], idx["c3"]) == 1
    assert r.min_cluster_list(idx["rr1"], idx["c3"]) == 0
    # ... but never passes it on: RR2 sends C4 only RR1's prefix and its own
    assert r.updates(idx["rr2"], idx["c4"]) == 2
    # RR1 sends RR2 its own prefix and C3's; C4's came from RR2 and is not sent back
    assert r.updates(idx["rr1"], idx["rr2"]) == 2
    assert r.updates(idx["c3"], idx["rr1"]) == 1  # a client sends only its own prefix


# -- lab B: spines sharing an ID, rack RRs with their own IDs ------------------------


def lab_b_graph() -> SessionGraph:
    return class_graph(
        [(["S1"], "10.9.9.9", AS), (["S2"], "10.9.9.9", AS), (["R1"], "10.0.1.1", AS),
         (["R2"], "10.0.2.1", AS), (["C5"], None, AS), (["C6"], None, AS)],
        [(0, 1), (2, 0), (2, 1), (3, 0), (3, 1), (2, 4), (3, 5)],
    )  # fmt: skip


def lab_b_resources() -> SessionGraph:
    return from_resources(
        [
            k8s_node("s1", "10.0.0.1", "10.9.9.9", role="spine"),
            k8s_node("s2", "10.0.0.2", "10.9.9.9", role="spine"),
            k8s_node("r1", "10.0.1.1", "10.0.1.1", role="rack-rr", rack="r1"),
            k8s_node("r2", "10.0.2.1", "10.0.2.1", role="rack-rr", rack="r2"),
            k8s_node("c5", "10.0.1.5", rack="r1"),
            k8s_node("c6", "10.0.2.6", rack="r2"),
            bgp_peer("spines", "role == 'spine'", "role == 'spine'"),
            bgp_peer("racks-to-spines", "role == 'rack-rr'", "role == 'spine'"),
            bgp_peer("r1-clients", "rack == 'r1' && !has(role)", "rack == 'r1' && has(role)"),
            bgp_peer("r2-clients", "rack == 'r2' && !has(role)", "rack == 'r2' && has(role)"),
        ]
    )


@pytest.mark.parametrize("propagate", ENGINES)
@pytest.mark.parametrize("build", [lab_b_graph, lab_b_resources])
def test_lab_b(propagate: Any, build: Any) -> None:
    g = build()
    r = propagate(g)
    assert r.missing_pairs == 0
    assert r.held_pairs == 6 * 5
    idx = {n.name.lower(): i for i, n in enumerate(g.nodes)}
    # C6 holds C5's prefix with CLUSTER_LIST {S, X, Y}
    assert r.min_cluster_list(idx["c6"], idx["c5"]) == 3
    assert r.max_cluster_list == 3
    # R2 holds it from both spines; C6 from its only neighbour R2
    assert r.diversity(idx["r2"], idx["c5"]) == 2
    assert r.diversity(idx["c6"], idx["c5"]) == 1
    assert r.diversity_min == 1


@pytest.mark.parametrize("build", [lab_b_graph, lab_b_resources])
def test_lab_b_two_paths_through_both_spines(build: Any) -> None:
    g = build()
    idx = {n.name.lower(): i for i, n in enumerate(g.nodes)}
    got = exact.paths(g, idx["c5"], idx["c6"])
    hops = sorted(tuple(g.nodes[h].name.lower() for h in p.hops) for p in got)
    assert hops == [("c5", "r1", "s1", "r2", "c6"), ("c5", "r1", "s2", "r2", "c6")]
    assert {p.cluster_list for p in got} == {("10.0.2.1", "10.9.9.9", "10.0.1.1")}
    assert all(p.as_path == () for p in got)


# -- lab C: a chain of RRs, two of them sharing an ID ----------------------------------


def lab_c_graph(rr4_id: str) -> SessionGraph:
    return class_graph(
        [(["RR1"], "1.1.1.1", AS), (["RR2"], "2.2.2.2", AS), (["RR4"], rr4_id, AS),
         (["C3"], None, AS)],
        [(0, 1), (1, 2), (0, 3)],
    )  # fmt: skip


def lab_c_resources(rr4_id: str) -> SessionGraph:
    return from_resources(
        [
            k8s_node("rr1", "10.0.0.1", "1.1.1.1"),
            k8s_node("rr2", "10.0.0.2", "2.2.2.2"),
            k8s_node("rr4", "10.0.0.4", rr4_id),
            k8s_node("c3", "10.0.0.3"),
            bgp_peer("rr1-rr2", host("rr1"), host("rr2")),
            bgp_peer("rr2-rr4", host("rr2"), host("rr4")),
            bgp_peer("c3-rr1", host("c3"), host("rr1")),
        ]
    )


@pytest.mark.parametrize("propagate", ENGINES)
@pytest.mark.parametrize("build", [lab_c_graph, lab_c_resources])
def test_lab_c(propagate: Any, build: Any) -> None:
    same = build("1.1.1.1")  # RR4 under RR1's ID X
    r = propagate(same)
    assert {(a.lower(), b.lower()) for a, b in all_missing(same, r)} == {("rr4", "c3")}
    other = build("3.3.3.3")  # RR4 under a third ID Z
    r2 = propagate(other)
    assert r2.missing_pairs == 0
    idx = {n.name.lower(): i for i, n in enumerate(other.nodes)}
    assert r2.min_cluster_list(idx["rr4"], idx["c3"]) == 2
    assert r2.min_cluster_list(idx["c3"], idx["rr4"]) == 2


# -- the report on the labs ------------------------------------------------------------


def test_verify_lab_a_report() -> None:
    rep = verify(lab_a_resources(), examples=1)
    assert not rep.reachable
    assert rep.missing_pairs == 2
    assert rep.missing_examples == (("c3", "c4"),)
    assert not rep.single_rr_failure_tolerant
    # losing RR1 cuts C3 off entirely: C3 lacks 2 prefixes, the other 2 nodes lack C3's
    assert rep.worst_single_rr_failure == ("rr1", 4)


def test_verify_lab_b_report() -> None:
    rep = verify(lab_b_resources(), fail_rrs=2)
    assert rep.reachable
    assert rep.max_cluster_list == 3
    # a rack RR is a single point of failure for its one client
    assert not rep.single_rr_failure_tolerant
    assert rep.worst_single_rr_failure is not None
    assert rep.worst_single_rr_failure[0] in ("r1", "r2")
    # losing both spines separates the racks
    assert rep.k_rr_failure is not None
    assert not rep.k_rr_failure.tolerant
    assert rep.k_rr_failure.failed is not None
    zone = verify(lab_b_resources(), fail_zones={"spines": [4, 5]}).zone_failure["spines"]
    names_ = [n.name for n in lab_b_resources().nodes]
    assert [names_[i] for i in (4, 5)] == ["s1", "s2"]
    assert not zone.tolerant
    # remaining: c5, r1 | c6, r2 -> each of the 4 lacks the 2 prefixes of the other rack
    assert zone.missing_pairs == 8


def test_paths_refuses_to_list_too_many() -> None:
    g = lab_b_graph()
    idx = g.index()
    with pytest.raises(ValueError, match="more than 1 paths"):
        exact.paths(g, idx["C5"], idx["C6"], limit=1)
    assert exact.paths(g, idx["C5"], idx["C5"]) == []  # the origin drops its own prefix
