"""What the operator's reconcile reads and returns (pure data): the observed
cluster (:class:`Observed`: nodes with the keys our field manager owns, our
BGPPeers, the mesh flag, CalicoNodeStatus reports, the transition record) and the
next batch of writes (:class:`Decision`), with the names of the objects and labels
that only the operator writes."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from calico_rr.core.bgp.families import address_annotations
from calico_rr.core.operator.settings import OperatorSettings
from calico_rr.core.planning import planner
from calico_rr.model import (
    ANN_CLUSTER_ID,
    PREFIX,
    Node,
)

PREV = "prev."
#: Marks a node in the make state (it carries ``prev.`` copies of its old labels).
MARKER = f"{PREV}{PREFIX}/transition"
PREV_SUFFIX = "-prev"
#: Label on our BGPPeer companions, so they are recognised without parsing names.
COMPANION_LABEL = f"{PREFIX}/companion-of"
CNS_PREFIX = "calico-rr-"
BRIDGE_NAME = "calico-rr-bridge"
BRIDGE_LABEL = f"{PREFIX}/bridge"


class Phase(StrEnum):
    STEADY = "Steady"  # nothing to write
    APPLYING = "Applying"  # additive writes (joins, replacements of lost RRs)
    MAKING = "Making"  # rollout: writing the make state
    CONFIRMING = "Confirming"  # rollout or mesh-off: waiting for sessions
    BREAKING = "Breaking"  # rollout: removing old peerings
    MESH_OFF = "MeshOff"  # switching the node-to-node mesh off
    BLOCKED = "Blocked"  # the layout cannot carry every route: the mesh stays on
    UNINSTALLING = "Uninstalling"
    UNINSTALLED = "Uninstalled"
    PAUSED = "Paused"


# ---------------------------------------------------------------------------
# What the runtime observes
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeState:
    """A node plus which of its labels/annotations our field manager owns."""

    node: Node
    owned_labels: frozenset[str] = frozenset()
    owned_annotations: frozenset[str] = frozenset()
    #: metadata.uid: applies carry it, so they never create a node that was deleted
    #: meanwhile (nor touch a new node that reused the name)
    uid: str | None = None

    def owned_label_values(self) -> dict[str, str]:
        return {k: self.node.labels[k] for k in self.owned_labels if k in self.node.labels}

    def owned_annotation_values(self) -> dict[str, str]:
        ann = self.node.annotations
        return {k: ann[k] for k in self.owned_annotations if k in ann}


@dataclass(frozen=True, slots=True)
class NodeBGPStatus:
    """A CalicoNodeStatus report: has calico-node written it, and which peers are up."""

    reported: bool
    established: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Observed:
    nodes: Mapping[str, NodeState]
    #: our BGPPeers (managed-by label), name -> object (apiVersion, metadata, spec)
    peers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: BGPConfiguration ``default`` nodeToNodeMeshEnabled as calico-node reads it
    mesh_enabled: bool = True
    #: ``status.transition`` of the RouteReflectorConfig (None: none)
    transition: Mapping[str, Any] | None = None
    #: CalicoNodeStatus reports by node name (only objects we created)
    node_status: Mapping[str, NodeBGPStatus] = field(default_factory=dict)
    #: names of the CalicoNodeStatus objects we own
    node_status_objects: frozenset[str] = frozenset()
    #: CalicoNodeStatus is served (else session checks fall back to waiting)
    node_status_supported: bool = False
    now: float = 0.0


# ---------------------------------------------------------------------------
# What it returns
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeApply:
    """A server-side apply of one node: the *complete* set of our fields on it.

    Fields we applied before and leave out here are removed by the API server."""

    name: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    uid: str | None = None

    def body(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "labels": dict(self.labels)}
        if self.uid is not None:
            meta["uid"] = self.uid
        if self.annotations:
            meta["annotations"] = dict(self.annotations)
        return {"apiVersion": "v1", "kind": "Node", "metadata": meta}


@dataclass(slots=True)
class Decision:
    """The next batch of writes, to be applied in this order:

    ``transition`` (when set to a record) -> ``peer_applies`` -> ``node_applies``
    -> ``peer_deletes`` -> ``node_status_applies``/``node_status_deletes`` ->
    ``mesh`` -> ``transition`` (when cleared)."""

    phase: Phase
    message: str = ""
    peer_applies: list[dict[str, Any]] = field(default_factory=list)
    node_applies: list[NodeApply] = field(default_factory=list)
    peer_deletes: list[str] = field(default_factory=list)
    node_status_applies: list[dict[str, Any]] = field(default_factory=list)
    node_status_deletes: list[str] = field(default_factory=list)
    mesh: bool | None = None
    #: the transition record to store; ``transition_set`` False: leave as it is
    transition: dict[str, Any] | None = None
    transition_set: bool = False
    #: call again after this many seconds even if nothing changes (waits)
    requeue_after: float | None = None
    plan: planner.Plan | None = None
    #: nodes currently in the make state (carrying ``prev.`` labels)
    in_transition: int = 0

    @property
    def writes(self) -> int:
        return (
            len(self.peer_applies)
            + len(self.node_applies)
            + len(self.peer_deletes)
            + len(self.node_status_applies)
            + len(self.node_status_deletes)
            + (self.mesh is not None)
        )

    def set_transition(self, record: dict[str, Any] | None) -> None:
        self.transition = record
        self.transition_set = True


# ---------------------------------------------------------------------------
# Label and selector helpers
# ---------------------------------------------------------------------------


def current_cluster_id(ns: NodeState) -> str | None:
    """The RR cluster ID the node has from us (one we wrote), else None."""
    if ANN_CLUSTER_ID in ns.owned_annotations:
        return ns.node.annotations.get(ANN_CLUSTER_ID)
    return None


def requeue_delay(settings: OperatorSettings, waited: float) -> float:
    """When to look again while waiting out ``settings.wait_timeout``."""
    left = settings.wait_timeout - waited
    return max(0.05, min(1.0, left if left > 0 else 1.0))


def server_side_apply(nodes: dict[str, NodeState], a: NodeApply) -> None:
    """Server-side apply of our fields to ``nodes[a.name]`` (a node that left is
    skipped, as the API server would answer 404): what we applied before and omit
    now goes; other owners' labels and annotations stay."""
    ns = nodes.get(a.name)
    if ns is None:
        return
    labels = {k: v for k, v in ns.node.labels.items() if k not in ns.owned_labels}
    labels.update(a.labels)
    ann = {k: v for k, v in ns.node.annotations.items() if k not in ns.owned_annotations}
    ann.update(a.annotations)
    node = replace(ns.node, labels=labels, annotations=ann)
    nodes[a.name] = NodeState(node, frozenset(a.labels), frozenset(a.annotations), ns.uid)


def calico_documents(
    nodes: Mapping[str, NodeState], peers: Mapping[str, Mapping[str, Any]], mesh_enabled: bool
) -> list[dict[str, Any]]:
    """Nodes, BGPPeers and the mesh flag as the Calico documents the verifier reads
    (``core.bgp.resources.parse_resources``)."""
    mesh = {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "BGPConfiguration",
        "metadata": {"name": "default"},
        "spec": {"nodeToNodeMeshEnabled": mesh_enabled},
    }
    return [*node_and_peer_documents(nodes, peers), mesh]


def node_and_peer_documents(
    nodes: Mapping[str, NodeState], peers: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The Nodes and BGPPeers of :func:`calico_documents`, for a caller that adds
    its own BGPConfiguration."""
    docs: list[dict[str, Any]] = []
    for ns in nodes.values():
        n = ns.node
        meta = {
            "name": n.name,
            "labels": dict(n.labels),
            "annotations": address_annotations(n, n.annotations),
        }
        docs.append({"apiVersion": "v1", "kind": "Node", "metadata": meta})
    docs.extend(copy.deepcopy([dict(p) for p in peers.values()]))
    return docs


def after_writes(obs: Observed, d: Decision) -> Observed:
    """``obs`` after ``d``'s writes, as the datastore would hold it (the previews'
    executor: paused status, ``diff`` and ``uninstall --dry-run``)."""
    nodes = dict(obs.nodes)
    peers = dict(obs.peers)
    cns = set(obs.node_status_objects)
    for p in d.peer_applies:
        peers[str(p["metadata"]["name"])] = p
    for a in d.node_applies:
        server_side_apply(nodes, a)
    for name in d.peer_deletes:
        peers.pop(name, None)
    cns.update(str(o["metadata"]["name"]) for o in d.node_status_applies)
    cns.difference_update(d.node_status_deletes)
    return replace(
        obs,
        nodes=nodes,
        peers=peers,
        node_status_objects=frozenset(cns),
        mesh_enabled=obs.mesh_enabled if d.mesh is None else d.mesh,
        transition=d.transition if d.transition_set else obs.transition,
    )
