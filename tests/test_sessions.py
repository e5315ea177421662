"""build_session_graph / SessionGraph.without against domain.md section 2."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calico_rr.core.bgp.selector import parse_selector
from calico_rr.core.bgp.sessions import (
    HALF_OPEN_LIMIT,
    HalfOpen,
    SessionGraph,
    SessionKind,
    build_session_graph,
)
from calico_rr.errors import InputError
from calico_rr.model import (
    DEFAULT_ASN,
    BGPConfig,
    BGPPeer,
    CalicoNode,
    CalicoState,
    ReversePeering,
)

IBGP, RR_CLIENT, EBGP = SessionKind.IBGP, SessionKind.RR_CLIENT, SessionKind.EBGP


def node(
    i: int,
    labels: Mapping[str, str] | None = None,
    *,
    cid: str | None = None,
    asn: int | None = None,
    ip: str | bool | None = True,
) -> CalicoNode:
    addr = f"10.0.{i // 250}.{i % 250 + 1}" if ip is True else (ip or None)
    return CalicoNode(f"n{i:03d}", addr, dict(labels or {}), asn, cid)


def state(
    nodes: list[CalicoNode],
    peers: Sequence[BGPPeer] = (),
    *,
    mesh: bool = True,
    asn: int | None = None,
) -> CalicoState:
    return CalicoState(tuple(nodes), tuple(peers), BGPConfig(mesh_enabled=mesh, as_number=asn))


def pairs(g: SessionGraph) -> set[tuple[str, str]]:
    """Every session as a sorted pair of node names."""
    out = set()
    for i in range(len(g.nodes)):
        for j in g.peers(i):
            a, b = g.nodes[i].name, g.nodes[j].name
            out.add((min(a, b), max(a, b)))
    return out


def kind(g: SessionGraph, a: str, b: str) -> SessionKind | None:
    idx = g.index()
    return g.kind(idx[a], idx[b])


# ---------------------------------------------------------------------------
# Mesh
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 5, 40])
def test_mesh_on_gives_full_mesh(n: int) -> None:
    g = build_session_graph(state([node(i) for i in range(n)]))
    assert g.total_sessions() == n * (n - 1) // 2
    assert len(pairs(g)) == n * (n - 1) // 2
    assert all(g.degree(i) == n - 1 for i in range(n))
    assert len(g.classes) == (1 if n else 0)  # all interchangeable
    assert all(g.kind(i, j) == IBGP for i in range(n) for j in range(n) if i != j)


def test_mesh_off_gives_no_sessions() -> None:
    g = build_session_graph(state([node(i) for i in range(10)], mesh=False))
    assert g.total_sessions() == 0
    assert all(not row for row in g.adj)


def test_rr_takes_no_part_in_mesh() -> None:
    nodes = [node(0, cid="1.1.1.1"), node(1), node(2), node(3, cid="1.1.1.1")]
    g = build_session_graph(state(nodes))
    assert pairs(g) == {("n001", "n002")}


def test_nodes_without_ip_never_peer() -> None:
    nodes = [node(0), node(1, ip=None), node(2)]
    g = build_session_graph(state(nodes, [BGPPeer("all", peer_selector="all()")]))
    assert [n.name for n in g.nodes] == ["n000", "n002"]
    assert g.no_ip == ("n001",)
    assert pairs(g) == {("n000", "n002")}


def test_nodes_sorted_by_name_and_classes_deterministic() -> None:
    nodes = [node(3), node(1, {"r": "a"}), node(2), node(0, {"r": "a"})]
    peers = [BGPPeer("p", node_selector="r == 'a'", peer_selector="r == 'a'")]
    g = build_session_graph(state(nodes, peers, mesh=False))
    assert [n.name for n in g.nodes] == ["n000", "n001", "n002", "n003"]
    assert [c.members for c in g.classes] == [(0, 1), (2, 3)]
    assert g.node_class == (0, 0, 1, 1)
    assert g == build_session_graph(state(list(reversed(nodes)), peers, mesh=False))


# ---------------------------------------------------------------------------
# Session kinds (domain.md section 2)
# ---------------------------------------------------------------------------


def rr_state(cids: dict[int, str], n: int = 4) -> CalicoState:
    """RRs (by index -> cluster ID) peer with everybody, clients only with RRs."""
    nodes = [node(i, {"rr": "true"} if i in cids else {}, cid=cids.get(i)) for i in range(n)]
    peers = [BGPPeer("to-rr", node_selector="all()", peer_selector="has(rr)")]
    return state(nodes, peers, mesh=False)


def test_same_cluster_id_is_plain_ibgp_both_sides() -> None:
    g = build_session_graph(rr_state({0: "1.1.1.1", 1: "1.1.1.1"}))
    assert kind(g, "n000", "n001") == IBGP
    assert kind(g, "n001", "n000") == IBGP


def test_rr_to_plain_node_is_client_on_rr_side_only() -> None:
    g = build_session_graph(rr_state({0: "1.1.1.1"}))
    assert kind(g, "n000", "n002") == RR_CLIENT
    assert kind(g, "n002", "n000") == IBGP
    assert kind(g, "n002", "n003") is None  # clients do not peer with each other


def test_rrs_with_different_ids_treat_each_other_as_clients() -> None:
    g = build_session_graph(rr_state({0: "1.1.1.1", 1: "2.2.2.2"}))
    assert kind(g, "n000", "n001") == RR_CLIENT
    assert kind(g, "n001", "n000") == RR_CLIENT


def test_different_asn_is_ebgp_and_default_asn_applies() -> None:
    nodes = [node(0, asn=65001), node(1), node(2, asn=64999)]
    g = build_session_graph(state(nodes, asn=64999))
    assert kind(g, "n000", "n001") == EBGP
    assert kind(g, "n001", "n002") == IBGP  # n001 inherits BGPConfiguration's 64999
    g2 = build_session_graph(state(nodes))
    assert kind(g2, "n001", "n002") == EBGP  # n001 now has 64512
    assert g2.classes[g2.node_class[1]].asn == DEFAULT_ASN


# ---------------------------------------------------------------------------
# BGPPeer rules
# ---------------------------------------------------------------------------


def test_reverse_manual_is_half_open() -> None:
    nodes = [node(0, {"rr": "true"}, cid="1.1.1.1"), node(1), node(2)]
    peers = [
        BGPPeer(
            "to-rr",
            node_selector="!has(rr)",
            peer_selector="has(rr)",
            reverse_peering=ReversePeering.MANUAL,
        )
    ]
    g = build_session_graph(state(nodes, peers, mesh=False))
    assert g.total_sessions() == 0
    assert set(g.half_open) == {HalfOpen(1, 0, "to-rr"), HalfOpen(2, 0, "to-rr")}
    # A matching reverse BGPPeer completes the sessions.
    back = BGPPeer("from-rr", node_selector="has(rr)", peer_selector="!has(rr)")
    g2 = build_session_graph(state(nodes, [*peers, back], mesh=False))
    assert pairs(g2) == {("n000", "n001"), ("n000", "n002")}
    assert g2.half_open == ()


def test_reverse_auto_configures_both_sides() -> None:
    nodes = [node(0, {"rr": "true"}, cid="1.1.1.1"), node(1), node(2)]
    peers = [BGPPeer("to-rr", node_selector="!has(rr)", peer_selector="has(rr)")]
    g = build_session_graph(state(nodes, peers, mesh=False))
    assert pairs(g) == {("n000", "n001"), ("n000", "n002")}
    assert g.half_open == ()


def test_peer_ip_to_a_calico_node() -> None:
    nodes = [node(0), node(1), node(2)]
    to_1 = BGPPeer("to-1", node="n000", peer_ip=nodes[1].ip, as_number=64512)
    g = build_session_graph(state(nodes, [to_1], mesh=False))
    # peerIP gives no automatic reverse: half-open until n001 configures n000 too.
    assert g.total_sessions() == 0
    assert g.half_open == (HalfOpen(0, 1, "to-1"),)
    assert g.external == ()
    to_0 = BGPPeer("to-0", node="n001", peer_ip=nodes[0].ip, as_number=64512)
    g2 = build_session_graph(state(nodes, [to_1, to_0], mesh=False))
    assert pairs(g2) == {("n000", "n001")}
    assert g2.half_open == ()
    # A peerIP node gets a class of its own even though its labels are plain.
    assert len(g2.classes[g2.node_class[1]].members) == 1


def test_peer_ip_external() -> None:
    nodes = [node(i, {"tor": "a" if i < 3 else "b"}) for i in range(5)]
    peers = [
        BGPPeer("tor-a", node_selector="tor == 'a'", peer_ip="192.0.2.1", as_number=65000),
        BGPPeer("tor-all", peer_ip="192.0.2.2", as_number=65001),
    ]
    g = build_session_graph(state(nodes, peers))
    assert [(e.bgppeer, e.peer_ip, e.asn, e.local_nodes) for e in g.external] == [
        ("tor-a", "192.0.2.1", 65000, 3),
        ("tor-all", "192.0.2.2", 65001, 5),
    ]
    assert g.total_sessions() == 10  # the mesh is untouched


def test_peer_ip_own_address_never_peers_with_itself() -> None:
    nodes = [node(0), node(1)]
    peers = [BGPPeer("self", node="n000", peer_ip=nodes[0].ip)]
    g = build_session_graph(state(nodes, peers, mesh=False))
    assert g.total_sessions() == 0
    assert g.half_open == ()
    assert g.external == ()


def test_node_field_selects_one_local_node() -> None:
    nodes = [node(0, {"rr": "true"}, cid="1.1.1.1"), node(1), node(2), node(3)]
    peers = [BGPPeer("one", node="n002", peer_selector="has(rr)")]
    g = build_session_graph(state(nodes, peers, mesh=False))
    assert pairs(g) == {("n000", "n002")}
    assert len(g.classes[g.node_class[2]].members) == 1
    # A node name that does not exist configures nothing.
    g2 = build_session_graph(state(nodes, [BGPPeer("x", node="nope", peer_selector="all()")]))
    assert g2.total_sessions() == 3  # mesh among n001..n003 only


def test_neither_node_nor_node_selector_means_all_nodes() -> None:
    nodes = [node(0, {"rr": "true"}, cid="1.1.1.1"), node(1), node(2)]
    g = build_session_graph(state(nodes, [BGPPeer("p", peer_selector="has(rr)")], mesh=False))
    assert pairs(g) == {("n000", "n001"), ("n000", "n002")}


def test_duplicates_collapse() -> None:
    nodes = [node(i, {"g": "x"}) for i in range(4)]
    peers = [
        BGPPeer("a", node_selector="g == 'x'", peer_selector="all()"),
        BGPPeer("b", peer_selector="has(g)"),
        BGPPeer("c", node="n000", peer_ip=nodes[1].ip),
    ]
    g = build_session_graph(state(nodes, peers))  # mesh on as well
    assert g.total_sessions() == 6
    assert all(g.degree(i) == 3 for i in range(4))
    assert g.half_open == ()


def test_selector_on_missing_labels_follows_calico() -> None:
    nodes = [node(0, {"role": "rr"}, cid="1.1.1.1"), node(1, {"role": "x"}), node(2)]
    peers = [BGPPeer("p", node_selector="role != 'rr'", peer_selector="role == 'rr'")]
    g = build_session_graph(state(nodes, peers, mesh=False))
    # "role != 'rr'" holds for n002, which has no role label at all.
    assert pairs(g) == {("n000", "n001"), ("n000", "n002")}


def test_half_open_is_bounded() -> None:
    nodes = [node(0, {"rr": "t"}, cid="1.1.1.1")] + [node(i) for i in range(1, 1200)]
    peers = [
        BGPPeer("m", peer_selector="has(rr)", reverse_peering=ReversePeering.MANUAL),
        BGPPeer(
            "n",
            node_selector="!has(rr)",
            peer_selector="!has(rr)",
            reverse_peering=ReversePeering.MANUAL,
        ),
    ]
    g = build_session_graph(state(nodes, peers, mesh=False))
    assert len(g.half_open) == HALF_OPEN_LIMIT
    assert list(g.half_open) == sorted(g.half_open, key=lambda h: (h.local, h.peer))
    assert g.total_sessions() == 1199 * 1198 // 2  # clients: both directions by rule "n"
    assert {h.peer for h in g.half_open} == {0}  # ... but only one direction towards the RR
    assert {h.bgppeer for h in g.half_open} == {"m"}


# ---------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("peer", "field"),
    [
        (BGPPeer("bad", node_selector="a ==", peer_selector="all()"), "nodeSelector"),
        (BGPPeer("bad", peer_selector="has("), "peerSelector"),
        (BGPPeer("bad", node="n0", node_selector="all()", peer_selector="all()"), "nodeSelector"),
        (BGPPeer("bad", peer_ip="10.9.9.9", peer_selector="all()"), "peerSelector"),
        (BGPPeer("bad"), "peerIP"),
    ],
)
def test_invalid_peer_is_input_error(peer: BGPPeer, field: str) -> None:
    with pytest.raises(InputError) as err:
        build_session_graph(state([node(0)], [peer]))
    assert err.value.obj == "BGPPeer bad"
    assert err.value.field == field


def test_duplicate_node_name_or_ip_is_input_error() -> None:
    with pytest.raises(InputError, match="duplicate node name"):
        build_session_graph(state([node(0), node(0)]))
    with pytest.raises(InputError, match="also used by node n000") as err:
        build_session_graph(state([node(0), node(1, ip="10.0.0.1")]))
    assert err.value.field == "ip"


# ---------------------------------------------------------------------------
# Against a brute-force per-node computation
# ---------------------------------------------------------------------------


def _local(n: CalicoNode, p: BGPPeer) -> bool:
    if p.node:
        return n.name == p.node
    if p.node_selector:
        return parse_selector(p.node_selector).matches(n.labels)
    return True


def _remote(n: CalicoNode, p: BGPPeer) -> bool:
    if p.peer_selector:
        return parse_selector(p.peer_selector).matches(n.labels)
    return n.ip == p.peer_ip


def brute_force(
    s: CalicoState,
) -> tuple[dict[tuple[str, str], SessionKind], set[tuple[str, str]], list[tuple[str, str, int]]]:
    """(sessions by (local, peer) name, one-sided (local, peer) pairs, externals)."""
    bgp = sorted((n for n in s.nodes if n.ip), key=lambda n: n.name)

    def conf(a: CalicoNode, b: CalicoNode) -> bool:
        if a.name == b.name:
            return False
        if s.config.mesh_enabled and a.cluster_id is None and b.cluster_id is None:
            return True
        for p in s.peers:
            if _local(a, p) and _remote(b, p):
                return True
            if (
                p.peer_selector
                and p.reverse_peering is ReversePeering.AUTO
                and _local(b, p)
                and _remote(a, p)
            ):
                return True
        return False

    def asn(n: CalicoNode) -> int:
        return n.asn if n.asn is not None else s.default_asn()

    sessions: dict[tuple[str, str], SessionKind] = {}
    one_sided: set[tuple[str, str]] = set()
    for a in bgp:
        for b in bgp:
            if not conf(a, b):
                continue
            if not conf(b, a):
                one_sided.add((a.name, b.name))
                continue
            if asn(a) != asn(b):
                k = EBGP
            elif a.cluster_id is not None and a.cluster_id != b.cluster_id:
                k = RR_CLIENT
            else:
                k = IBGP
            sessions[(a.name, b.name)] = k
    ips = {n.ip for n in bgp}
    ext = [
        (p.name, str(p.peer_ip), sum(_local(n, p) for n in bgp))
        for p in s.peers
        if p.peer_ip and p.peer_ip not in ips
    ]
    return sessions, one_sided, ext


SELECTORS = [
    "all()",
    "has(a)",
    "!has(b)",
    "a == 'x'",
    "b != 'y'",
    "a in {'x', 'y'}",
    "c not in {'x'}",
    "a starts with 'x'",
    "!has(c) && b == 'x'",
    "a == 'x' || c == 'y'",
]
CIDS = [None, None, "1.1.1.1", "2.2.2.2"]


@st.composite
def states(draw: st.DrawFn, max_nodes: int = 9) -> CalicoState:
    n = draw(st.integers(0, max_nodes))
    label_sets = st.dictionaries(st.sampled_from("abc"), st.sampled_from(["x", "y"]), max_size=3)
    nodes = [
        node(
            i,
            draw(label_sets),
            cid=draw(st.sampled_from(CIDS)),
            asn=draw(st.sampled_from([None, None, 64512, 65000])),
            ip=draw(st.sampled_from([True, True, True, True, None])),
        )
        for i in range(n)
    ]
    names = [x.name for x in nodes] + ["ghost"]
    ips = [x.ip for x in nodes if x.ip] + ["192.0.2.7"]
    peers = []
    for j in range(draw(st.integers(0, 5))):
        local = draw(st.sampled_from(["none", "node", "sel"]))
        remote = draw(st.sampled_from(["ip", "sel", "sel"]))
        peers.append(
            BGPPeer(
                f"p{j}",
                node=draw(st.sampled_from(names)) if local == "node" else None,
                node_selector=draw(st.sampled_from(SELECTORS)) if local == "sel" else None,
                peer_ip=draw(st.sampled_from(ips)) if remote == "ip" else None,
                peer_selector=draw(st.sampled_from(SELECTORS)) if remote == "sel" else None,
                reverse_peering=draw(st.sampled_from(list(ReversePeering))),
            )
        )
    return state(
        nodes,
        peers,
        mesh=draw(st.booleans()),
        asn=draw(st.sampled_from([None, 64512, 65000])),
    )


def check_structure(g: SessionGraph) -> None:
    assert [n.name for n in g.nodes] == sorted(n.name for n in g.nodes)
    assert [c.members[0] for c in g.classes] == sorted(c.members[0] for c in g.classes)
    for c, cls in enumerate(g.classes):
        assert list(cls.members) == sorted(cls.members)
        assert all(g.node_class[m] == c for m in cls.members)
        for d in g.adj[c]:
            assert c in g.adj[d]  # sessions need both ends
        if len(cls.members) < 2:
            assert c not in g.adj[c]
    assert sum(len(c.members) for c in g.classes) == len(g.nodes)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(states())
def test_class_graph_matches_brute_force(s: CalicoState) -> None:
    g = build_session_graph(s)
    check_structure(g)
    sessions, one_sided, ext = brute_force(s)
    got: dict[tuple[str, str], SessionKind] = {}
    for i in range(len(g.nodes)):
        for j in g.peers(i):
            k = g.kind(i, j)
            assert k is not None
            got[(g.nodes[i].name, g.nodes[j].name)] = k
        assert g.degree(i) == len(list(g.peers(i)))
    assert got == sessions
    assert g.total_sessions() == len(sessions) // 2
    assert {(g.nodes[h.local].name, g.nodes[h.peer].name) for h in g.half_open} == one_sided
    assert [(e.bgppeer, e.peer_ip, e.local_nodes) for e in g.external] == ext


@settings(max_examples=200, deadline=None)
@given(states(), st.data())
def test_without_equals_rebuild(s: CalicoState, data: st.DataObject) -> None:
    g = build_session_graph(s)
    removed = data.draw(st.sets(st.integers(0, max(len(g.nodes) - 1, 0))))
    removed = {i for i in removed if i < len(g.nodes)}
    gone = {g.nodes[i].name for i in removed}
    rebuilt = build_session_graph(
        CalicoState(tuple(n for n in s.nodes if n.name not in gone), s.peers, s.config)
    )
    w = g.without(removed)
    check_structure(w)
    assert w.nodes == rebuilt.nodes
    assert w.node_class == rebuilt.node_class
    assert w.classes == rebuilt.classes
    assert w.adj == rebuilt.adj
    assert w.half_open == rebuilt.half_open
    assert w.no_ip == rebuilt.no_ip
    gone_ips = {g.nodes[i].ip for i in removed}
    if not any(p.peer_ip in gone_ips for p in s.peers):
        # Same external peerings; local_nodes still counts the failed nodes (documented).
        assert [(e.bgppeer, e.peer_ip, e.asn) for e in w.external] == [
            (e.bgppeer, e.peer_ip, e.asn) for e in rebuilt.external
        ]
    assert w.external == g.external


def test_without_nothing_and_bad_index() -> None:
    g = build_session_graph(state([node(i) for i in range(3)]))
    assert g.without([]) is g
    with pytest.raises(IndexError):
        g.without([3])


def test_without_keeps_external_for_failed_peer_ip_target() -> None:
    nodes = [node(0), node(1)]
    g = build_session_graph(state(nodes, [BGPPeer("p", node="n000", peer_ip=nodes[1].ip)]))
    w = g.without([1])
    assert [n.name for n in w.nodes] == ["n000"]
    assert w.external == ()  # n001 failed but still is a Calico node
    assert w.total_sessions() == 0


# ---------------------------------------------------------------------------
# Scale
# ---------------------------------------------------------------------------


def hierarchy_like(n: int, n_peers: int) -> CalicoState:
    """Racks with 3 RRs each, 3 spines, plus per-node peerings to a ToR (100 BGPPeers)."""
    nodes = []
    for i in range(n):
        labels = {"kubernetes.io/hostname": f"n{i:05d}", "rack": f"r{i % 10}", "zone": "z"}
        cid = None
        if i < 33:
            labels["role"] = "spine" if i < 3 else "rack-rr"
            cid = "1.0.0.1" if i < 3 else f"10.0.{i % 10}.1"
        ip = f"10.{i // 65536}.{(i // 256) % 256}.{i % 256}"
        nodes.append(CalicoNode(f"n{i:05d}", ip, labels, None, cid))
    peers = [BGPPeer("rr-mesh", node_selector="has(role)", peer_selector="has(role)")]
    for r in range(10):
        peers.append(
            BGPPeer(
                f"rack{r}",
                node_selector=f"rack == 'r{r}' && !has(role)",
                peer_selector=f"rack == 'r{r}' && role == 'rack-rr'",
            )
        )
    for k in range(len(peers), n_peers):
        peers.append(
            BGPPeer(
                f"tor{k}",
                node_selector=f"kubernetes.io/hostname == 'n{k:05d}'",
                peer_ip="192.0.2.1",
                as_number=65000,
            )
        )
    return state(nodes, peers, mesh=False)


def test_5000_nodes_100_bgppeers_is_fast() -> None:
    s = hierarchy_like(5000, 100)
    t0 = time.perf_counter()
    g = build_session_graph(s)
    elapsed = time.perf_counter() - t0
    # 4967 clients x 3 rack RRs (rack RR cluster IDs shared per rack) + 33-RR mesh.
    assert g.total_sessions() == 4967 * 3 + 33 * 32 // 2
    assert len(g.classes) < 200
    # Well under 0.2 s on a normal machine; generous here so a loaded CI does not flake.
    assert elapsed < 1.0


@pytest.mark.slow
def test_50000_nodes_build_and_fail_quickly() -> None:
    s = hierarchy_like(50_000, 100)
    t0 = time.perf_counter()
    g = build_session_graph(s)
    built = time.perf_counter() - t0
    assert g.total_sessions() == (50_000 - 33) * 3 + 33 * 32 // 2
    t0 = time.perf_counter()
    w = g.without(range(3))  # the three spines fail
    failed = time.perf_counter() - t0
    assert len(w.nodes) == 49_997
    assert w.total_sessions() == g.total_sessions() - (3 * 32 - 3)  # spine-spine once
    # About a second on a normal machine; generous so a loaded CI does not flake.
    assert built < 5.0 and failed < 1.0
