"""Putting a cluster back on the node-to-node mesh (pure): the uninstall's steps
are the migration's backwards (core.operator.decide's module doc)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from calico_rr.core.operator.peerings import (
    bridge_hub_nodes,
    bridge_hubs,
    bridge_peer,
    is_bridge,
)
from calico_rr.core.operator.settings import OperatorSettings
from calico_rr.core.operator.state import (
    Decision,
    NodeApply,
    Observed,
    Phase,
    after_writes,
    current_cluster_id,
    requeue_delay,
)


def uninstall(obs: Observed, settings: OperatorSettings, *, mesh_before: bool | None) -> Decision:
    """Next step of putting the cluster back on the mesh (see module doc): bridge and
    mesh on first, confirm, then RR nodes give up their roles before clients lose
    their labels, then our BGPPeers and CalicoNodeStatus objects go, the bridge last.

    The mesh comes back even when it was off before calico-rr (``mesh_before`` is
    False): the end state must pass the safety gate, and the only configuration
    the operator can prove reaches every node once its own peerings are gone is
    the mesh - it does not see a user's own peerings (top-of-rack routers, their
    own RRs).  The final message tells the user to switch it off again once their
    own configuration passes ``calico-rr verify``."""
    record = dict(obs.transition or {})
    bridge = {n for n, p in obs.peers.items() if is_bridge(p)}
    owned_nodes = {n for n, ns in obs.nodes.items() if ns.owned_labels or ns.owned_annotations}
    others = set(obs.peers) - bridge
    if not owned_nodes and not others and not obs.node_status_objects:
        d = Decision(Phase.UNINSTALLED, "nothing of ours is left")
        d.peer_deletes.extend(sorted(bridge))
        if obs.transition is not None:
            d.set_transition(None)
        if not d.peer_deletes and not d.transition_set:
            d.message = "uninstalled"
            if mesh_before is False:
                d.message += (
                    "; the node-to-node mesh is on although it was off before calico-rr "
                    "(calico-rr cannot see your own peerings): switch it off again once "
                    "`calico-rr verify` passes on your configuration"
                )
        return d
    if not obs.mesh_enabled or not bridge:
        d = Decision(Phase.UNINSTALLING, "bridge every node to the RRs and switch the mesh on")
        if not bridge:
            d.peer_applies.append(_bridge(obs, settings))
        if not obs.mesh_enabled:
            d.mesh = True
        d.set_transition({"kind": "Uninstall", "madeAt": obs.now})
        d.requeue_after = requeue_delay(settings, 0.0)
        return d
    made_at = record.get("madeAt") if record.get("kind") == "Uninstall" else None
    if not isinstance(made_at, int | float):
        d = Decision(Phase.UNINSTALLING, "mesh on; waiting for its sessions")
        d.set_transition({"kind": "Uninstall", "madeAt": obs.now})
        d.requeue_after = requeue_delay(settings, 0.0)
        return d
    waited = obs.now - float(made_at)
    if waited < settings.wait_timeout:
        d = Decision(
            Phase.UNINSTALLING,
            f"mesh on; waiting {settings.wait_timeout - waited:.1f}s before removing peerings",
        )
        d.requeue_after = requeue_delay(settings, waited)
        return d
    rrs = sorted(n for n in owned_nodes if current_cluster_id(obs.nodes[n]) is not None)
    first = _hubs_last(obs, settings, bridge, rrs)
    if first is not None:
        return first
    d = Decision(Phase.UNINSTALLING, "removing our labels, annotations and BGPPeers")
    for name in rrs + sorted(owned_nodes - set(rrs)):
        d.node_applies.append(NodeApply(name, {}, {}, obs.nodes[name].uid))
    d.peer_deletes.extend(sorted(others))
    d.node_status_deletes.extend(sorted(obs.node_status_objects))
    return d


def _hubs_last(
    obs: Observed, settings: OperatorSettings, bridge: set[str], rrs: list[str]
) -> Decision | None:
    """With a bridge to hubs (peerings.bridge_hubs), the other RRs give up their
    roles first, while a hub holding its ID reflects every route; None when no
    such pass is due.  Should no hub hold its ID, the bridge widens to every RR."""
    labels = {n: ns.node.labels for n, ns in obs.nodes.items()}
    per_bridge = [bridge_hub_nodes(obs.peers[n], labels) for n in sorted(bridge)]
    if not per_bridge or not all(per_bridge):
        return None  # a bridge to every RR: any order is safe
    hubs = frozenset().union(*per_bridge)
    others = [n for n in rrs if n not in hubs]
    if not others:
        return None
    if not any(n in hubs for n in rrs):
        d = Decision(Phase.UNINSTALLING, "no hub holds its ID: bridging every RR")
        d.peer_applies.append(bridge_peer(settings.plan.api_group))
        return d
    d = Decision(Phase.UNINSTALLING, "removing the other route reflectors' roles (hubs last)")
    d.node_applies = [NodeApply(n, {}, {}, obs.nodes[n].uid) for n in others]
    return d


def _bridge(obs: Observed, settings: OperatorSettings) -> dict[str, Any]:
    """The bridge to the RRs of one cluster ID (peerings.bridge_hubs), or to all."""
    cids = {n: cid for n, ns in obs.nodes.items() if (cid := current_cluster_id(ns)) is not None}
    labels = {n: ns.node.labels for n, ns in obs.nodes.items()}
    return bridge_peer(settings.plan.api_group, bridge_hubs(cids, labels))


def uninstall_preview(
    obs: Observed, settings: OperatorSettings, *, mesh_before: bool | None, limit: int = 8
) -> list[dict[str, Any]]:
    """What uninstalling from ``obs`` would write, step by step (``uninstall --dry-run``):
    :func:`uninstall` decided again and again on ``obs`` as if every batch of writes
    had landed and every wait had run out, each step as plain data (its phase and
    message, the BGPPeers created or deleted, the keys removed from each node, the
    CalicoNodeStatus objects deleted, the mesh switched, the wait that follows)."""
    steps: list[dict[str, Any]] = []
    for _ in range(limit):
        d = uninstall(obs, settings, mesh_before=mesh_before)
        done = d.phase == Phase.UNINSTALLED and not d.writes
        if d.writes or done or not steps:  # waits in between are said by the step before
            steps.append(_describe(obs, d, settings))
        if done:
            break
        obs = _landed(obs, d, settings)
    return steps


def _describe(obs: Observed, d: Decision, settings: OperatorSettings) -> dict[str, Any]:
    step: dict[str, Any] = {"phase": d.phase.value, "message": d.message}
    if d.peer_applies:
        step["create_bgppeers"] = [str(p["metadata"]["name"]) for p in d.peer_applies]
    if d.mesh is not None:
        step["node_to_node_mesh"] = d.mesh
    if d.node_applies:
        step["remove_from_nodes"] = [
            {
                "name": a.name,
                "labels": sorted(obs.nodes[a.name].owned_labels - set(a.labels)),
                "annotations": sorted(obs.nodes[a.name].owned_annotations - set(a.annotations)),
            }
            for a in d.node_applies
        ]
    if d.peer_deletes:
        step["delete_bgppeers"] = list(d.peer_deletes)
    if d.node_status_deletes:
        step["delete_caliconodestatuses"] = list(d.node_status_deletes)
    if d.transition_set and (d.transition or {}).get("kind") == "Uninstall":
        # the next step waits for the mesh's sessions (make-before-break backwards)
        step["then_wait_seconds"] = settings.wait_timeout
    return step


def _landed(obs: Observed, d: Decision, settings: OperatorSettings) -> Observed:
    """``obs`` once ``d``'s writes landed and its wait ran out (the preview's clock)."""
    return replace(
        after_writes(obs, d), now=obs.now + max(settings.wait_timeout, d.requeue_after or 0.0)
    )
