"""BIRD 1.6 config rendering (calico_rr.core.lab.bird): structure only, no BIRD binary."""

from __future__ import annotations

import re
from typing import Any

import pytest

from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.sessions import build_session_graph
from calico_rr.core.lab.bird import (
    BgpTimers,
    BirdNode,
    BirdPeer,
    bird_nodes,
    protocol_names,
    render_bird_config,
)
from calico_rr.model import ANN_CLUSTER_ID, ANN_IPV4, CalicoState

IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
BGP_BLOCK = re.compile(r"protocol bgp (\S+) \{\n(.*?)\n\}", re.S)


def k8s_node(name: str, ip: str, labels: dict[str, str] | None = None, cid: str = "") -> Any:
    ann = {ANN_IPV4: f"{ip}/24"}
    if cid:
        ann[ANN_CLUSTER_ID] = cid
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels or {}, "annotations": ann},
    }


def bgp_config(mesh: bool) -> Any:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": "BGPConfiguration",
        "metadata": {"name": "default"},
        "spec": {"nodeToNodeMeshEnabled": mesh},
    }


def single_rr_state() -> CalicoState:
    docs = [
        k8s_node("rr1", "10.0.0.1", {"rr": "true"}, cid="1.1.1.1"),
        *(k8s_node(f"c{i}", f"10.0.0.{10 + i}") for i in range(1, 4)),
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPPeer",
            "metadata": {"name": "to-rr"},
            "spec": {"nodeSelector": "!has(rr)", "peerSelector": "has(rr)"},
        },
        bgp_config(False),
    ]
    return parse_resources(docs).state


def mesh_state(n: int) -> CalicoState:
    docs = [k8s_node(f"n{i}", f"10.0.1.{i + 1}") for i in range(n)]
    return parse_resources([*docs, bgp_config(True)]).state


def blocks(state: CalicoState) -> dict[str, str]:
    return {
        n.name: f"10.244.{i}.0/26" for i, n in enumerate(sorted(state.nodes, key=lambda n: n.name))
    }


def configs(state: CalicoState) -> dict[str, str]:
    nodes = bird_nodes(build_session_graph(state), state, blocks(state))
    return {n.name: render_bird_config(n) for n in nodes}


def bgp_blocks(text: str) -> list[tuple[str, str]]:
    return BGP_BLOCK.findall(text)


def test_single_rr_bird_nodes() -> None:
    state = single_rr_state()
    nodes = {n.name: n for n in bird_nodes(build_session_graph(state), state, blocks(state))}
    assert sorted(nodes) == ["c1", "c2", "c3", "rr1"]
    rr = nodes["rr1"]
    assert rr.router_id == "10.0.0.1"
    assert rr.asn == 64512
    assert rr.cluster_id == "1.1.1.1"
    assert [p.name for p in rr.peers] == ["c1", "c2", "c3"]
    assert all(p.rr_client for p in rr.peers)
    for c in ("c1", "c2", "c3"):
        assert nodes[c].peers == (BirdPeer("rr1", "10.0.0.1", 64512, False),)


def test_single_rr_configs() -> None:
    cfg = configs(single_rr_state())
    rr_blocks = bgp_blocks(cfg["rr1"])
    assert len(rr_blocks) == 3
    for _, body in rr_blocks:
        assert "  rr client;" in body
        assert "  rr cluster id 1.1.1.1;" in body
        assert "next hop self" not in body
    neighbors = {m for _, b in rr_blocks for m in re.findall(r"neighbor (\S+) as", b)}
    assert neighbors == {"10.0.0.11", "10.0.0.12", "10.0.0.13"}
    for c in ("c1", "c2", "c3"):
        (only,) = bgp_blocks(cfg[c])
        assert "rr client" not in only[1]
        assert "rr cluster id" not in only[1]
        assert "  neighbor 10.0.0.1 as 64512;" in only[1]


def test_full_mesh_gives_n_minus_1_plain_peers() -> None:
    n = 5
    cfg = configs(mesh_state(n))
    assert len(cfg) == n
    for text in cfg.values():
        found = bgp_blocks(text)
        assert len(found) == n - 1
        assert all("rr client" not in body for _, body in found)


def test_session_options_and_globals() -> None:
    state = single_rr_state()
    node = next(n for n in bird_nodes(build_session_graph(state), state, blocks(state)))
    text = render_bird_config(node, graceful_restart=90, socket_hint="/run/bird/c1.ctl")
    assert text.startswith("# BIRD 1.6")
    assert "# control socket: /run/bird/c1.ctl" in text
    assert f"router id {node.router_id};" in text
    assert f"route {node.pod_block} blackhole;" in text
    kernel = re.search(r"protocol kernel \{\n(.*?)\n\}", text, re.S)
    assert kernel is not None
    for opt in ("persist off;", "scan time 2;", "import none;", "export all;", "graceful restart;"):
        assert opt in kernel.group(1)
    assert re.search(r"protocol device \{\s*scan time 2;\s*\}", text)
    for _, body in bgp_blocks(text):
        for opt in (
            f"local {node.router_id} as {node.asn};",
            "multihop;",
            "gateway recursive;",
            "add paths on;",
            "graceful restart;",
            "graceful restart time 90;",
            "import all;",
            "export filter calico_rr_export;",
        ):
            assert f"  {opt}" in body, opt
    # The export filter lets the own block and BGP-learned routes through (reflection).
    filt = re.search(r"filter calico_rr_export \{\n(.*?)\n\}", text, re.S)
    assert filt is not None
    assert "RTS_BGP then accept" in filt.group(1)
    assert node.pod_block in filt.group(1)
    assert filt.group(1).rstrip().endswith("reject;")


def test_graceful_restart_time_omitted_when_none() -> None:
    node = BirdNode(
        "a", "10.0.0.1", 64512, None, "10.244.0.0/26", (BirdPeer("b", "10.0.0.2", 64512, False),)
    )
    text = render_bird_config(node, graceful_restart=None)
    assert "graceful restart time" not in text
    assert "  graceful restart;" in text
    with pytest.raises(ValueError, match="graceful restart"):
        render_bird_config(node, graceful_restart=0)


def test_deterministic() -> None:
    first = configs(single_rr_state())
    second = configs(single_rr_state())
    assert first == second
    mesh_a, mesh_b = configs(mesh_state(4)), configs(mesh_state(4))
    assert mesh_a == mesh_b
    # Peer order in the output follows peer names.
    names = [name for name, _ in bgp_blocks(first["rr1"])]
    assert names == sorted(names) == ["Peer_c1", "Peer_c2", "Peer_c3"]


def test_protocol_names_unique_and_valid() -> None:
    long = "x" * 200
    peers = tuple(
        BirdPeer(name, f"10.0.0.{i + 2}", 64512, False)
        for i, name in enumerate(["a-b", "a.b", "a_b", "A-B", "1node", long, long + "y"])
    )
    node = BirdNode("me", "10.0.0.1", 64512, None, "10.244.0.0/26", peers)
    names = protocol_names(node)
    assert len(names) == len(peers)
    assert len({n.lower() for n in names}) == len(names)
    for n in names:
        assert IDENT.fullmatch(n), n
        assert len(n) <= 64
    text = render_bird_config(node)
    assert [name for name, _ in bgp_blocks(text)] == names


@pytest.mark.parametrize("which", ["rr", "mesh"])
def test_balanced_braces(which: str) -> None:
    cfg = configs(single_rr_state() if which == "rr" else mesh_state(3))
    for text in cfg.values():
        depth = 0
        for ch in text:
            depth += {"{": 1, "}": -1}.get(ch, 0)
            assert depth >= 0
        assert depth == 0
        assert text.count("{") > 0


def test_rr_client_without_cluster_id_is_rejected() -> None:
    node = BirdNode(
        "rr", "10.0.0.1", 64512, None, "10.244.0.0/26", (BirdPeer("c", "10.0.0.2", 64512, True),)
    )
    with pytest.raises(ValueError, match="cluster id"):
        render_bird_config(node)


def test_bad_addresses_are_rejected() -> None:
    good = BirdNode("a", "10.0.0.1", 64512, None, "10.244.0.0/26", ())
    assert "router id 10.0.0.1;" in render_bird_config(good)
    for bad in (
        BirdNode("a", "fe80::1", 64512, None, "10.244.0.0/26", ()),
        BirdNode("a", "10.0.0.1", 64512, None, "10.244.0.1/26", ()),
        BirdNode("a", "10.0.0.1", 64512, None, "10.244.0.0/26", (BirdPeer("b", "x", 1, False),)),
    ):
        with pytest.raises(ValueError):
            render_bird_config(bad)
    with pytest.raises(ValueError, match="single line"):
        render_bird_config(good, socket_hint="a\nprotocol")


def test_missing_pod_block_is_rejected() -> None:
    state = single_rr_state()
    partial = blocks(state)
    del partial["c2"]
    with pytest.raises(ValueError, match="c2"):
        bird_nodes(build_session_graph(state), state, partial)


def test_asn_falls_back_to_default_and_ebgp_is_not_rr_client() -> None:
    docs = [
        k8s_node("rr1", "10.0.0.1", {"rr": "true"}, cid="1.1.1.1"),
        k8s_node("c1", "10.0.0.11"),
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": "e1",
                "annotations": {ANN_IPV4: "10.0.0.21/24", "projectcalico.org/ASNumber": "65001"},
            },
        },
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPPeer",
            "metadata": {"name": "all-to-rr"},
            "spec": {"nodeSelector": "!has(rr)", "peerSelector": "has(rr)"},
        },
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {"nodeToNodeMeshEnabled": False, "asNumber": 64600},
        },
    ]
    state = parse_resources(docs).state
    nodes = {n.name: n for n in bird_nodes(build_session_graph(state), state, blocks(state))}
    rr = nodes["rr1"]
    assert rr.asn == 64600
    assert {p.name: (p.asn, p.rr_client) for p in rr.peers} == {
        "c1": (64600, True),
        "e1": (65001, False),
    }
    assert nodes["e1"].asn == 65001
    text = render_bird_config(rr)
    assert "neighbor 10.0.0.21 as 65001;" in text


def test_higher_address_listens_only() -> None:
    low = BirdNode(
        "a", "10.0.0.1", 64512, None, "10.244.0.0/26", (BirdPeer("b", "10.0.0.2", 64512, False),)
    )
    high = BirdNode(
        "b", "10.0.0.2", 64512, None, "10.244.0.64/26", (BirdPeer("a", "10.0.0.1", 64512, False),)
    )
    assert "passive on;" not in render_bird_config(low)
    assert "passive on;" in render_bird_config(high)


def test_timers_rendered_and_checked() -> None:
    node = BirdNode(
        "a", "10.0.0.1", 64512, None, "10.244.0.0/26", (BirdPeer("b", "10.0.0.2", 64512, False),)
    )
    text = render_bird_config(node, timers=BgpTimers(2, 5, 5, 30))
    assert "connect delay time 2;" in text and "connect retry time 5;" in text
    assert "error wait time 5,30;" in text
    assert "connect delay" not in render_bird_config(node)
    with pytest.raises(ValueError, match="bad BGP timers"):
        render_bird_config(node, timers=BgpTimers(1, 1, 5, 2))


def test_a_node_without_workloads_announces_nothing_of_its_own() -> None:
    state = single_rr_state()
    given = {**blocks(state), "rr1": None}
    nodes = {n.name: n for n in bird_nodes(build_session_graph(state), state, given)}
    assert nodes["rr1"].pod_block is None and nodes["c1"].pod_block == given["c1"]
    text = render_bird_config(nodes["rr1"])
    assert "protocol static" not in text and "RTS_STATIC" not in text
    assert "if source = RTS_BGP then accept;" in text  # it still reflects
    assert "rr client;" in text
    with_block = render_bird_config(nodes["c1"])
    assert "protocol static" in with_block and f"route {given['c1']} blackhole;" in with_block
    # a node left out of the mapping is still an error (None must be said)
    del given["c2"]
    with pytest.raises(ValueError, match="c2: no pod block"):
        bird_nodes(build_session_graph(state), state, given)
