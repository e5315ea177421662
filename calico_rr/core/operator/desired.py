"""What the plan wants of the cluster, what the cluster has of ours, and the
node writes between them: shared by the reconcile's passes (core.operator.decide)
and its rollout (core.operator.rollout).  Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from calico_rr.core.operator.peerings import (
    bridge_hub_nodes,
    bridge_hubs,
    bridge_peer,
    is_bridge,
    is_companion,
    planner_labels,
    spec_of,
)
from calico_rr.core.operator.settings import OperatorSettings
from calico_rr.core.operator.state import (
    NodeApply,
    NodeState,
    Observed,
    current_cluster_id,
)
from calico_rr.core.planning import planner, render
from calico_rr.model import ANN_CLUSTER_ID


@dataclass(frozen=True, slots=True)
class Desired:
    plan: planner.Plan
    labels: dict[str, dict[str, str]]  # node -> planner labels (+ extra RR label)
    cids: dict[str, str]
    peers: dict[str, dict[str, Any]]
    rr_nodes: frozenset[str]
    bridge: dict[str, Any] | None  # while the mesh is on
    hub_nodes: frozenset[str]  # the bridge's RRs when they are not every RR (else empty)


def desired(obs: Observed, settings: OperatorSettings) -> Desired:
    nodes = [ns.node for ns in obs.nodes.values()]
    the_plan = planner.plan(nodes, settings.plan)
    layout = the_plan.layout
    cids = layout.cluster_ids()
    labels: dict[str, dict[str, str]] = {}
    for name in obs.nodes:
        want = dict(layout.node_labels.get(name, {}))
        if name in cids and settings.rr_label is not None:
            want[settings.rr_label[0]] = settings.rr_label[1]
        labels[name] = want
    peers = {str(p["metadata"]["name"]): p for p in render.bgppeers(layout, settings.plan)}
    bridge, hubs = None, frozenset[str]()
    if obs.mesh_enabled:
        bridge, hubs = wanted_bridge(obs, settings.plan.api_group, cids, labels)
    return Desired(the_plan, labels, cids, peers, frozenset(cids), bridge, hubs)


def wanted_bridge(
    obs: Observed, group: str, cids: Mapping[str, str], labels: Mapping[str, Mapping[str, str]]
) -> tuple[dict[str, Any], frozenset[str]]:
    """The bridge and its hub nodes (none for a bridge to every RR): to the hubs
    (peerings.bridge_hubs) when no other node holds an ID of ours yet, or when it
    is already there; else to every RR.  An existing bridge is never narrowed:
    that would remove sessions an RR may depend on."""
    every_rr = bridge_peer(group), frozenset[str]()
    slots = bridge_hubs(cids, labels)
    if slots is None:
        return every_rr
    to_hubs = bridge_peer(group, slots)
    hubs = bridge_hub_nodes(to_hubs, labels)
    existing = [p for p in obs.peers.values() if is_bridge(p)]
    if existing:
        return (to_hubs, hubs) if all(same_peer(p, to_hubs) for p in existing) else every_rr
    holders = {n for n, ns in obs.nodes.items() if current_cluster_id(ns) is not None}
    return (to_hubs, hubs) if holders <= hubs else every_rr


def hubs_first(obs: Observed, want: Desired, applies: list[NodeApply]) -> list[NodeApply]:
    """``applies`` less those of the other RRs until every hub has its cluster ID.

    A node with a cluster ID leaves the mesh; while the bridge reaches the hubs
    only, another RR is heard by (and hears) the nodes of other groups through a
    hub that reflects, so the hubs go first.  Within each of the two passes any
    subset of the writes is safe (the executor applies a batch's nodes at once)."""
    if not want.hub_nodes:
        return applies
    if all(current_cluster_id(obs.nodes[n]) == want.cids.get(n) for n in want.hub_nodes):
        return applies
    return [a for a in applies if a.name not in want.cids or a.name in want.hub_nodes]


@dataclass(frozen=True, slots=True)
class OurPeers:
    """The BGPPeers the cluster has, by role."""

    companions: dict[str, Mapping[str, Any]]  # a rollout's ``<name>-prev`` copies
    bridge: set[str]  # the bridge's name, while it exists
    layout: dict[str, Mapping[str, Any]]  # every other one: the layout's, as it is now

    @classmethod
    def of(cls, obs: Observed) -> OurPeers:
        companions = {n: p for n, p in obs.peers.items() if is_companion(p)}
        bridge = {n for n, p in obs.peers.items() if is_bridge(p)}
        layout = {n: p for n, p in obs.peers.items() if not is_companion(p) and n not in bridge}
        return cls(companions, bridge, layout)


def extra_key(settings: OperatorSettings) -> str | None:
    return settings.rr_label[0] if settings.rr_label is not None else None


def current_labels(ns: NodeState, extra: str | None) -> dict[str, str]:
    """Labels that describe the node's current role: the planner's keys, plus the
    extra RR label when we own it."""
    out = planner_labels(ns.node.labels)
    if extra is not None and extra in ns.owned_labels and extra in ns.node.labels:
        out[extra] = ns.node.labels[extra]
    return out


def breaks(
    current: Mapping[str, str],
    want: Mapping[str, str],
    cid: str | None,
    want_cid: str | None,
) -> bool:
    """Would going from ``current`` to ``want`` remove a peering the node has?
    Adding keys never does; changing or dropping a key, or the cluster ID, may."""
    if any(want.get(k) != v for k, v in current.items()):
        return True
    return cid is not None and cid != want_cid


def apply_if_changed(ns: NodeState, labels: Mapping[str, str], cid: str | None) -> NodeApply | None:
    """The apply giving ``ns`` these labels and cluster ID, or None if it has them."""
    annotations = {ANN_CLUSTER_ID: cid} if cid is not None else {}
    if ns.owned_label_values() == dict(labels) and ns.owned_annotation_values() == annotations:
        return None
    return NodeApply(ns.node.name, dict(labels), annotations, ns.uid)


def wanted_node_applies(obs: Observed, want: Desired, names: Iterable[str]) -> list[NodeApply]:
    """Applies giving the nodes ``names`` (in this order) their wanted labels and IDs."""
    applies = (apply_if_changed(obs.nodes[n], want.labels[n], want.cids.get(n)) for n in names)
    return [a for a in applies if a is not None]


def bridge_in_place(obs: Observed, bridge: Mapping[str, Any], have: OurPeers) -> bool:
    return bool(have.bridge) and all(same_peer(obs.peers[n], bridge) for n in have.bridge)


def same_peer(have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    hl = (have.get("metadata") or {}).get("labels") or {}
    wl = want["metadata"]["labels"]
    return dict(spec_of(have)) == dict(want["spec"]) and all(hl.get(k) == v for k, v in wl.items())
