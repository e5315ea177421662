"""core.bgp.twins: node pairs with two BIRD protocols to each other on both ends."""

from __future__ import annotations

from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.selector import parse_selector
from calico_rr.core.bgp.twins import twin_pairs
from calico_rr.model import (
    BGPConfig,
    BGPPeer,
    CalicoNode,
    CalicoState,
    ReversePeering,
)
from calico_rr.testing.random_configs import random_config


def nodes(n: int, rrs: int = 0) -> tuple[CalicoNode, ...]:
    return tuple(
        CalicoNode(
            f"n{i:02d}",
            f"10.0.0.{i + 1}",
            {"role": "a" if i % 2 else "b", **({"rr": "true"} if i < rrs else {})},
            cluster_id="9.9.9.9" if i < rrs else None,
        )
        for i in range(n)
    )


def state(*peers: BGPPeer, n: int = 4, rrs: int = 0, mesh: bool = True) -> CalicoState:
    return CalicoState(nodes(n, rrs), tuple(peers), BGPConfig(mesh_enabled=mesh))


def test_mesh_and_an_all_peer_twin_every_pair() -> None:
    everyone = BGPPeer("all", peer_selector="all()")
    twins = twin_pairs(state(everyone))
    assert twins.count == 6  # C(4, 2)
    assert twins.examples[0] == ("n00", "n01")
    assert twin_pairs(state(everyone, mesh=False)).count == 0
    assert twin_pairs(state()).count == 0


def test_peers_to_route_reflectors_make_no_twins() -> None:
    """RRs take no part in the mesh: the usual RR BGPPeer beside the mesh is fine."""
    to_rr = BGPPeer("to-rr", node_selector="!has(rr)", peer_selector="has(rr)")
    assert twin_pairs(state(to_rr, n=8, rrs=2)).count == 0
    # ... but a peering among the RRs' clients beside the mesh is not
    clients = BGPPeer("clients", node_selector="role == 'a'", peer_selector="role == 'b'")
    assert twin_pairs(state(to_rr, clients, n=8, rrs=2)).count == 3 * 3  # a: 1,3,5,7  b: 2,4,6


def test_one_sided_manual_peering_makes_no_locked_pair() -> None:
    """With Manual, only the nodeSelector side renders a second protocol: the
    other end runs its single Mesh_ and accepts the connection."""
    manual = BGPPeer(
        "m",
        node_selector="role == 'a'",
        peer_selector="role == 'b'",
        reverse_peering=ReversePeering.MANUAL,
    )
    assert twin_pairs(state(manual)).count == 0
    auto = BGPPeer("m", node_selector="role == 'a'", peer_selector="role == 'b'")
    assert twin_pairs(state(auto)).count == 4  # a: n01, n03; b: n00, n02


def _brute_force(st: CalicoState) -> int:
    """Per ordered pair: does a BGPPeer on A render a protocol to B?"""

    def local(peer: BGPPeer, node: CalicoNode) -> bool:
        if peer.node:
            return peer.node == node.name
        if peer.node_selector:
            return parse_selector(peer.node_selector).matches(node.labels)
        return True

    def remote(peer: BGPPeer, node: CalicoNode) -> bool:
        if peer.peer_selector:
            return parse_selector(peer.peer_selector).matches(node.labels)
        return peer.peer_ip == node.ip

    def renders(a: CalicoNode, b: CalicoNode) -> bool:
        for peer in st.peers:
            if local(peer, a) and remote(peer, b):
                return True
            auto = peer.peer_selector and peer.reverse_peering is not ReversePeering.MANUAL
            if auto and local(peer, b) and remote(peer, a):
                return True
        return False

    if not st.config.mesh_enabled:
        return 0
    members = [n for n in st.nodes if n.ip is not None and n.cluster_id is None]
    return sum(
        1
        for i, a in enumerate(members)
        for b in members[i + 1 :]
        if renders(a, b) and renders(b, a)
    )


def test_twin_pairs_equal_a_per_pair_count_on_random_configurations() -> None:
    pool = [(f"n{i:02d}", f"10.0.1.{i + 1}") for i in range(20)]
    with_twins = 0
    for seed in range(60):
        docs = random_config(seed, pool, min_nodes=12, max_nodes=20, extended=True)
        st = parse_resources(docs).state
        count = twin_pairs(st).count
        assert count == _brute_force(st), seed
        with_twins += count > 0
    assert with_twins >= 5  # the generator does make them (mesh on beside BGPPeers)
