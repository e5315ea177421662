"""session_metrics / sessions_by_label, checked against per-node counting."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from calico_rr.core.bgp.metrics import SessionMetrics, Stats, session_metrics, sessions_by_label
from calico_rr.core.bgp.sessions import SessionGraph, build_session_graph
from calico_rr.model import BGPConfig, BGPPeer, CalicoNode, CalicoState, ReversePeering


def node(i: int, labels: dict[str, str] | None = None, cid: str | None = None) -> CalicoNode:
    return CalicoNode(f"n{i:03d}", f"10.0.0.{i + 1}", labels or {}, None, cid)


def graph(nodes: list[CalicoNode], peers: list[BGPPeer], mesh: bool = False) -> SessionGraph:
    return build_session_graph(
        CalicoState(tuple(nodes), tuple(peers), BGPConfig(mesh_enabled=mesh))
    )


def test_stats_of() -> None:
    assert Stats.of([]) == Stats(0, 0.0, 0)
    assert Stats.of([4, 1, 2]) == Stats(1, 2.33, 4)
    assert Stats.of(iter([5])) == Stats(5, 5.0, 5)
    assert Stats.of([0, 0, 3]).to_dict() == {"min": 0, "mean": 1.0, "max": 3}


def single_cluster(n: int, n_rr: int) -> SessionGraph:
    nodes = [
        node(i, {"rr": "true", "role": "rr"} if i < n_rr else {}, "1.1.1.1" if i < n_rr else None)
        for i in range(n)
    ]
    return graph(nodes, [BGPPeer("to-rr", peer_selector="has(rr)")])


def test_single_cluster_figures() -> None:
    m = session_metrics(single_cluster(10, 3), bgppeer_objects=1)
    assert (m.nodes, m.route_reflectors, m.cluster_ids) == (10, 3, 1)
    assert m.total_sessions == 7 * 3 + 3
    assert m.sessions_per_rr == Stats(9, 9.0, 9)
    assert m.clients_per_rr == Stats(7, 7.0, 7)
    assert m.rr_peers_per_rr == Stats(2, 2.0, 2)
    assert m.sessions_per_client == Stats(3, 3.0, 3)
    assert m.clients_without_rr == 0
    assert m.max_sessions_node == "n000"
    assert m.bgppeer_objects == 1


def test_domain_example_500_nodes_3_rrs() -> None:
    # domain.md section 4: 497 clients per RR, 2 RR peers, 499 sessions per RR.
    m = session_metrics(single_cluster(500, 3), bgppeer_objects=1)
    assert m.clients_per_rr == Stats(497, 497.0, 497)
    assert m.rr_peers_per_rr == Stats(2, 2.0, 2)
    assert m.sessions_per_rr == Stats(499, 499.0, 499)


def test_mesh_has_no_rrs_and_no_orphans() -> None:
    m = session_metrics(graph([node(i) for i in range(6)], [], mesh=True), bgppeer_objects=0)
    assert m.route_reflectors == 0 and m.cluster_ids == 0
    assert m.sessions_per_rr == Stats()
    assert m.sessions_per_client == Stats(5, 5.0, 5)
    assert m.clients_without_rr == 0
    assert m.total_sessions == 15


def test_clients_without_rr_and_busiest_node() -> None:
    nodes = [node(0, {"rr": "t"}, "1.1.1.1"), node(1, {"g": "a"}), node(2, {"g": "a"}), node(3)]
    peers = [BGPPeer("a", node_selector="g == 'a'", peer_selector="has(rr)")]
    m = session_metrics(graph(nodes, peers), bgppeer_objects=1)
    assert m.clients_without_rr == 1  # n003
    assert m.sessions_per_client == Stats(0, 0.67, 1)
    assert m.max_sessions_node == "n000"


def test_empty_graph() -> None:
    m = session_metrics(graph([], []), bgppeer_objects=0)
    assert m.nodes == 0 and m.max_sessions_node is None
    assert json.loads(json.dumps(m.to_dict()))["sessions_per_rr"] == {"min": 0, "mean": 0, "max": 0}


def test_to_dict_is_json_ready() -> None:
    d = session_metrics(single_cluster(5, 2), bgppeer_objects=1).to_dict()
    assert json.loads(json.dumps(d)) == d
    assert set(d) == {f for f in SessionMetrics.__dataclass_fields__}
    assert d["sessions_per_rr"] == {"min": 4, "mean": 4.0, "max": 4}


def test_sessions_by_label() -> None:
    nodes = [node(i, {"rr": "t", "role": "spine"}, "1.1.1.1") for i in range(2)]
    nodes += [node(2, {"rr": "t", "role": "rack"}, "2.2.2.2"), node(3, {"rr": "t"}, "3.3.3.3")]
    nodes += [node(i, {"rack": "x"}) for i in range(4, 8)]
    peers = [
        BGPPeer("rr-mesh", node_selector="has(rr)", peer_selector="has(rr)"),
        BGPPeer("rack", node_selector="rack == 'x'", peer_selector="role == 'rack'"),
    ]
    by_role = sessions_by_label(graph(nodes, peers), "role")
    assert by_role == {
        "": Stats(3, 3.0, 3),
        "rack": Stats(7, 7.0, 7),
        "spine": Stats(3, 3.0, 3),
    }
    assert list(by_role) == ["", "rack", "spine"]


# ---------------------------------------------------------------------------
# Against per-node counting on random graphs
# ---------------------------------------------------------------------------

SELECTORS = ["all()", "has(rr)", "!has(rr)", "g == 'a'", "g != 'a'", "has(rr) || g == 'b'"]


@st.composite
def states(draw: st.DrawFn) -> CalicoState:
    n = draw(st.integers(0, 10))
    nodes = []
    for i in range(n):
        cid = draw(st.sampled_from([None, None, "1.1.1.1", "2.2.2.2"]))
        labels = {"g": draw(st.sampled_from("abc"))}
        if cid:
            labels["rr"] = "true"
        nodes.append(node(i, labels, cid))
    peers = [
        BGPPeer(
            f"p{j}",
            node_selector=draw(st.sampled_from(SELECTORS)),
            peer_selector=draw(st.sampled_from(SELECTORS)),
            reverse_peering=draw(st.sampled_from(list(ReversePeering))),
        )
        for j in range(draw(st.integers(0, 3)))
    ]
    return CalicoState(tuple(nodes), tuple(peers), BGPConfig(mesh_enabled=draw(st.booleans())))


@settings(max_examples=200, deadline=None)
@given(states())
def test_metrics_match_per_node_counts(s: CalicoState) -> None:
    g = build_session_graph(s)
    m = session_metrics(g, bgppeer_objects=len(s.peers))
    n = len(g.nodes)
    rr = [i for i in range(n) if g.is_rr(i)]
    plain = [i for i in range(n) if not g.is_rr(i)]
    peers = {i: list(g.peers(i)) for i in range(n)}
    assert m.nodes == n
    assert m.route_reflectors == len(rr)
    assert m.cluster_ids == len({g.nodes[i].cluster_id for i in rr})
    assert m.total_sessions == sum(len(p) for p in peers.values()) // 2
    assert m.sessions_per_rr == Stats.of(len(peers[i]) for i in rr)
    assert m.clients_per_rr == Stats.of(sum(not g.is_rr(j) for j in peers[i]) for i in rr)
    assert m.rr_peers_per_rr == Stats.of(sum(g.is_rr(j) for j in peers[i]) for i in rr)
    assert m.sessions_per_client == Stats.of(len(peers[i]) for i in plain)
    expected_orphans = sum(not any(g.is_rr(j) for j in peers[i]) for i in plain) if rr else 0
    assert m.clients_without_rr == expected_orphans
    if n:
        best = max(range(n), key=lambda i: (len(peers[i]), -i))
        assert m.max_sessions_node == g.nodes[best].name
    else:
        assert m.max_sessions_node is None
    by_g = sessions_by_label(g, "g")
    for value, stats in by_g.items():
        assert stats == Stats.of(len(peers[i]) for i in rr if g.nodes[i].labels.get("g") == value)
    assert set(by_g) == {g.nodes[i].labels.get("g", "") for i in rr}
