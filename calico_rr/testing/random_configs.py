"""Random small Calico BGP configurations (for checking the verifier against BIRD).

Deterministic for a seed.  Each configuration is a list of Calico resource
documents (Kubernetes Nodes with the Calico annotations, BGPPeers, maybe a
BGPConfiguration) over a random subset of the given nodes: random RR cluster IDs
from a small pool (so some clients share all their reflectors' ID, the lab A
trap), the mesh on or off, and a few BGPPeers with random label selectors.  Many
are broken (some node pairs never learn each other's block); that is the point.

``extended=True`` (issue 13 item 4) adds the shapes Calico clusters have and the
first generator lacked: a second AS (the nodes of rack r2, so racks talk eBGP)
or one node with an AS of its own, an explicit AS in the BGPConfiguration,
global BGPPeers (no node, no nodeSelector), negated and set selectors, a
``zone`` label only some nodes carry, ``reversePeering: Manual``, and the mesh
left on beside route reflectors; 0-4 route reflectors.

``ip6`` (issue 17) makes either generator's configuration dual stack: every
node also gets its IPv6 address annotation, except a random ``ipv4_only`` share
of the nodes, which stay IPv4-only (they take part in IPv4 BGP only).  It is
drawn from a generator of its own, so the IPv4 configuration of a seed is the
same with or without it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from calico_rr.core.bgp.calico_version import CalicoVersion
from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.sessions import build_session_graph
from calico_rr.core.bgp.twins import twin_pairs
from calico_rr.core.lab.prediction import predicted_routes
from calico_rr.model import ANN_ASN, ANN_CLUSTER_ID, ANN_IPV4, ANN_IPV6

_IDS = ("9.9.9.1", "9.9.9.2", "9.9.9.3")
_SELECTORS = (
    "all()",
    "has(rr)",
    "!has(rr)",
    "role == 'a'",
    "role != 'a'",
    "role in {'a', 'b'}",
    "rack == 'r1'",
    "has(rr) && rack == 'r1'",
    "has(rr) || role == 'c'",
)


#: selectors only the extended generator uses (negations, sets, a sometimes-absent label)
_MORE_SELECTORS = (
    "role not in {'a', 'c'}",
    "!(role == 'b')",
    "has(zone)",
    "!has(zone)",
    "has(zone) && zone != 'z1'",
    "!has(rr) && rack != 'r2'",
)
#: the second AS (rack r2's nodes) and a node's own AS
_RACK_ASN, _OWN_ASN = 64513, 65001


def random_config(
    seed: int,
    nodes: Sequence[tuple[str, str]],
    *,
    min_nodes: int = 4,
    max_nodes: int = 9,
    extended: bool = False,
    ip6: Mapping[str, str] | None = None,
    ipv4_only: float = 0.0,
) -> list[dict[str, Any]]:
    """Resources for a random subset of ``nodes`` ((name, ip) pairs); with ``ip6``
    (name -> IPv6 address) dual stack, ``ipv4_only`` of the nodes without IPv6."""
    if not 0.0 <= ipv4_only <= 1.0:
        raise ValueError(f"ipv4_only is a share, 0..1: {ipv4_only}")
    docs = _config(seed, nodes, min_nodes, max_nodes, extended)
    if ip6 is not None:
        rng = random.Random(f"{seed}-ipv6")
        for doc in docs:
            if doc["kind"] == "Node" and rng.random() >= ipv4_only:
                name = doc["metadata"]["name"]
                doc["metadata"]["annotations"][ANN_IPV6] = f"{ip6[name]}/64"
    return docs


def _config(
    seed: int, nodes: Sequence[tuple[str, str]], min_nodes: int, max_nodes: int, extended: bool
) -> list[dict[str, Any]]:
    if extended:
        return _extended_config(random.Random(seed), nodes, min_nodes, max_nodes)
    rng = random.Random(seed)
    k = rng.randint(min(min_nodes, len(nodes)), min(max_nodes, len(nodes)))
    chosen = sorted(rng.sample(list(nodes), k))
    docs: list[dict[str, Any]] = []
    for name, ip in chosen:
        labels = {
            "kubernetes.io/hostname": name,
            "role": rng.choice("abc"),
            "rack": rng.choice(("r1", "r2")),
        }
        annotations = {ANN_IPV4: f"{ip}/16"}
        if rng.random() < 0.4:
            annotations[ANN_CLUSTER_ID] = rng.choice(_IDS)
            labels["rr"] = "true"
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": labels, "annotations": annotations},
            }
        )
    mesh = rng.random() < 0.3
    docs.append(_doc("BGPConfiguration", "default", {"nodeToNodeMeshEnabled": mesh}))
    for i in range(rng.randint(0 if mesh else 1, 4)):
        spec: dict[str, Any] = {"peerSelector": rng.choice(_SELECTORS)}
        if rng.random() < 0.2:
            spec["node"] = rng.choice(chosen)[0]
        else:
            spec["nodeSelector"] = rng.choice(_SELECTORS)
        docs.append(_doc("BGPPeer", f"random-{i}", spec))
    return docs


def _doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "projectcalico.org/v3",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }


def _extended_nodes(rng: random.Random, chosen: list[tuple[str, str]]) -> list[dict[str, Any]]:
    rrs = set(rng.sample([name for name, _ in chosen], rng.randint(0, min(4, len(chosen)))))
    as_shape = rng.choice(("one", "one", "racks", "own"))
    own = rng.choice(chosen)[0]
    docs = []
    for name, ip in chosen:
        rack = rng.choice(("r1", "r2"))
        labels = {"kubernetes.io/hostname": name, "role": rng.choice("abc"), "rack": rack}
        if rng.random() < 0.5:
            labels["zone"] = rng.choice(("z1", "z2"))
        annotations = {ANN_IPV4: f"{ip}/16"}
        if name in rrs:
            annotations[ANN_CLUSTER_ID] = rng.choice(_IDS)
            labels["rr"] = "true"
        if (as_shape == "racks" and rack == "r2") or (as_shape == "own" and name == own):
            annotations[ANN_ASN] = str(_RACK_ASN if as_shape == "racks" else _OWN_ASN)
        meta = {"name": name, "labels": labels, "annotations": annotations}
        docs.append({"apiVersion": "v1", "kind": "Node", "metadata": meta})
    return docs


def _extended_config(
    rng: random.Random, nodes: Sequence[tuple[str, str]], min_nodes: int, max_nodes: int
) -> list[dict[str, Any]]:
    k = rng.randint(min(min_nodes, len(nodes)), min(max_nodes, len(nodes)))
    chosen = sorted(rng.sample(list(nodes), k))
    docs = _extended_nodes(rng, chosen)
    mesh = rng.random() < 0.35
    config: dict[str, Any] = {"nodeToNodeMeshEnabled": mesh}
    if rng.random() < 0.3:
        config["asNumber"] = 64512
    docs.append(_doc("BGPConfiguration", "default", config))
    selectors = _SELECTORS + _MORE_SELECTORS
    for i in range(rng.randint(0 if mesh else 1, 5)):
        spec: dict[str, Any] = {"peerSelector": rng.choice(selectors)}
        where = rng.random()
        if where < 0.15:
            spec["node"] = rng.choice(chosen)[0]
        elif where < 0.75:
            spec["nodeSelector"] = rng.choice(selectors)
        # else: a global BGPPeer, for every node
        if rng.random() < 0.25:
            spec["reversePeering"] = "Manual"
        docs.append(_doc("BGPPeer", f"random-{i}", spec))
    return docs


def config_shapes(
    docs: list[dict[str, Any]], calico: CalicoVersion | None = None
) -> dict[str, int]:
    """What one configuration exercises, for tests that the generator's shapes
    occur: 1 or 0 per shape (``broken``: some node misses some block, as the
    verifier reading as ``calico`` predicts; ``twins``: some pair has twin BIRD
    protocols on both ends, ``core.bgp.twins``), and its ``nodes`` and ``rrs``."""
    state = parse_resources(docs, calico=calico).state
    graph = build_session_graph(state)
    held = predicted_routes(graph)
    nodes = [d["metadata"] for d in docs if d["kind"] == "Node"]
    peers = [d["spec"] for d in docs if d["kind"] == "BGPPeer"]
    mesh: dict[str, Any] = next((d["spec"] for d in docs if d["kind"] == "BGPConfiguration"), {})
    rrs = sum(ANN_CLUSTER_ID in m.get("annotations", {}) for m in nodes)
    return {
        "nodes": len(graph.nodes),
        "rrs": rrs,
        "broken": int(any(len(held[n]) < len(held) - 1 for n in held)),
        "ebgp": int(any(ANN_ASN in m.get("annotations", {}) for m in nodes)),
        "global": int(any("node" not in p and "nodeSelector" not in p for p in peers)),
        "manual": int(any(p.get("reversePeering") == "Manual" for p in peers)),
        "mesh+rr": int(bool(mesh.get("nodeToNodeMeshEnabled") and rrs)),
        "not": int(any(" not in " in str(p) or "!(" in str(p) for p in peers)),
        "twins": int(twin_pairs(state).count > 0),
        # dual stack with some IPv4-only nodes
        "ipv4_only": int(
            any(ANN_IPV6 in m.get("annotations", {}) for m in nodes)
            and any(ANN_IPV6 not in m.get("annotations", {}) for m in nodes)
        ),
    }
