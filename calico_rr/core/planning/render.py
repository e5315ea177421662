"""Layout -> Calico resources (plain dicts, ready for YAML and server-side apply).

What comes out (domain.md 2, 8):

* a Node *apply configuration* per node whose planner-owned labels or RR
  cluster ID annotation must be set or cleared - only our keys, so
  ``kubectl apply --server-side`` with our field manager never touches a
  user's labels (and drops keys we applied before and no longer list);
* one BGPPeer per group rule, in the requested API group, with selectors;
* BGPConfiguration ``default`` with ``nodeToNodeMeshEnabled: false``.

Every object carries ``app.kubernetes.io/managed-by: calico-rr``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from calico_rr.core.bgp.families import address_annotations
from calico_rr.core.planning.config import OWNED_NODE_LABELS, RR_LABEL, PlanConfig
from calico_rr.core.planning.topologies.base import Layout
from calico_rr.model import ANN_CLUSTER_ID, MANAGED_BY_LABEL, MANAGED_BY_VALUE, PREFIX, Node

TOPOLOGY_LABEL = f"{PREFIX}/topology"


@dataclass(frozen=True, slots=True)
class NodeChange:
    """A node whose planner-owned labels or cluster ID must change, as they must become."""

    name: str
    labels: Mapping[str, str]  # desired owned labels (complete set)
    cluster_id: str | None  # desired RR cluster ID annotation (None: none)


def owned_cluster_id(node: Node) -> bool:
    """We own a node's RR cluster ID annotation when the node carries our RR label:
    a cluster ID a user set by hand on another node is never touched."""
    return RR_LABEL in node.labels


def node_changes(nodes: Sequence[Node], layout: Layout) -> list[NodeChange]:
    """Nodes whose owned labels or cluster ID must change, in name order."""
    cids = layout.cluster_ids()
    out: list[NodeChange] = []
    for node in nodes:
        want = layout.node_labels.get(node.name, {})
        cid = cids.get(node.name)
        have = {k: node.labels[k] for k in OWNED_NODE_LABELS if k in node.labels}
        have_cid = node.annotations.get(ANN_CLUSTER_ID)
        remove_cid = have_cid is not None and cid is None and owned_cluster_id(node)
        if have == dict(want) and (cid == have_cid or (cid is None and not remove_cid)):
            continue
        out.append(NodeChange(name=node.name, labels=dict(want), cluster_id=cid))
    return out


def node_apply(name: str, labels: Mapping[str, str], cluster_id: str | None) -> dict[str, Any]:
    """A server-side-apply configuration for one node: only our fields."""
    meta: dict[str, Any] = {"name": name, "labels": dict(labels)}
    if cluster_id is not None:
        meta["annotations"] = {ANN_CLUSTER_ID: cluster_id}
    return {"apiVersion": "v1", "kind": "Node", "metadata": meta}


def bgppeers(layout: Layout, config: PlanConfig) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for rule in layout.rules:
        spec: dict[str, Any] = {
            "nodeSelector": rule.node_selector,
            "peerSelector": rule.peer_selector,
        }
        if config.max_restart_time is not None:
            spec["maxRestartTime"] = config.max_restart_time
        if config.password_secret is not None:
            secret, key = config.password_secret
            spec["password"] = {"secretKeyRef": {"name": secret, "key": key}}
        out.append(
            {
                "apiVersion": config.api_group,
                "kind": "BGPPeer",
                "metadata": {"name": rule.name, "labels": managed_labels(layout.topology)},
                "spec": spec,
            }
        )
    return out


def bgp_configuration(config: PlanConfig, *, mesh: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"nodeToNodeMeshEnabled": mesh}
    if config.as_number is not None:
        spec["asNumber"] = config.as_number
    return {
        "apiVersion": config.api_group,
        "kind": "BGPConfiguration",
        "metadata": {"name": "default", "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE}},
        "spec": spec,
    }


def managed_labels(topology: str) -> dict[str, str]:
    return {MANAGED_BY_LABEL: MANAGED_BY_VALUE, TOPOLOGY_LABEL: topology}


def desired_view(
    node: Node, layout: Layout, cids: Mapping[str, str]
) -> tuple[dict[str, str], dict[str, str]]:
    """The node's labels and annotations once the plan is applied."""
    labels = {k: v for k, v in node.labels.items() if k not in OWNED_NODE_LABELS}
    labels.update(layout.node_labels.get(node.name, {}))
    annotations = dict(node.annotations)
    cid = cids.get(node.name)
    if cid is not None:
        annotations[ANN_CLUSTER_ID] = cid
    elif ANN_CLUSTER_ID in annotations and owned_cluster_id(node):
        del annotations[ANN_CLUSTER_ID]
    return labels, annotations


def calico_view(nodes: Sequence[Node], layout: Layout) -> list[dict[str, Any]]:
    """Every node as calico-node would read it after the plan (KDD: labels plus
    the address (IPv4, IPv6) and cluster-ID annotations, domain.md 2).  Feeds the session graph, so
    the figures come from the rendered result, not the planner's intent."""
    cids = layout.cluster_ids()
    out: list[dict[str, Any]] = []
    for node in nodes:
        labels, annotations = desired_view(node, layout, cids)
        annotations = address_annotations(node, annotations)
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": node.name, "labels": labels, "annotations": annotations},
            }
        )
    return out
