"""The operator's brain: observed cluster state -> the next writes.  Pure.

``reconcile(observed, settings)`` is level-triggered: it looks only at what is in
the cluster now (nodes with the labels our field manager owns, our BGPPeers,
BGPConfiguration's mesh flag, CalicoNodeStatus reports and the transition record
kept in the RouteReflectorConfig status) and returns the next batch of writes.
The runtime applies a batch in the order given by :class:`Decision` and calls
``reconcile`` again; nothing is remembered in memory, so an operator that dies
at any write resumes from what the cluster shows.

Never cutting a node off (make-before-break, domain.md 6)
---------------------------------------------------------

Changes that only *add* peerings - a node joining, a failed RR's slot handed to
a successor when the failed node is gone - are written directly: one
server-side apply per node.

Any change that would *remove* a peering a node has now - an RR losing its
slot while its node still exists, a client moving to another group, a topology
switch, a BGPPeer changing - goes through a **rollout**:

1. *Make.*  Every node whose planner labels must change keeps its current labels
   under a ``prev.calico-rr.io/`` copy (plus a marker label) next to its new
   ones, and every current BGPPeer that such a node matches gets a companion
   ``<name>-prev`` whose selectors are ``(old) || (marker && old-on-prev-keys)``.
   Old peerings therefore stay configured while the new ones appear.  Writes go
   companions first, then new BGPPeers, then nodes (each node in one atomic
   apply), so every prefix of the batch is itself safe.  With the mesh off, old
   RRs that share a cluster ID and get new ones keep the shared ID until the
   break (rollout._held_ids): under distinct IDs they would reflect to each
   other and every node would hold every chain of them (docs/OPERATIONS.md).
2. *Confirm.*  The new sessions must be Established: CalicoNodeStatus reports
   from the route reflectors of the new layout, or - when Calico reports
   nothing - a configured wait.  The time the make state was complete is
   recorded in the status so a restart does not restart the clock.
3. *Break.*  Companions and BGPPeers the new layout does not have are deleted
   first (``oldPeeringsGone`` in the record keys the layout it was done for: a
   plan changed meanwhile is made again first); then the nodes drop the ``prev``
   labels, inert by then, and the record is cleared.  In one batch the nodes
   that dropped their copies first were matched by the companions by their new
   labels under the old rules (rollout._break).  IDs still held change in the
   second pass when the state between is safe with them (rollout._may_split),
   else in the first, written before its deletes (the old peerings still there).

The mesh (migration and uninstall)
----------------------------------

While the node-to-node mesh is on, a node that gets a cluster ID leaves the
mesh, and until *every* RR has its ID the RR layout alone does not carry every
route (an RR's prefix would reach only its own group).  So while the mesh is on
a **bridge** BGPPeer ``calico-rr-bridge`` peers every node with the *hubs*: the
RRs of one cluster ID (a hierarchy's spines; every RR when the layout has one ID,
or no ID with two RRs - peerings.bridge_hubs).  The hubs get their IDs first
(``desired.hubs_first``): from then on any RR with an ID hears and reaches everyone
through a hub, which reflects, whatever the order of the other writes.  A bridge
to every RR would do without the order, but it peers the RRs with each other,
and under several cluster IDs a route then travels every chain of RRs: a 12-RR
hierarchy held 2,713 paths per prefix on every node (docs/PERFORMANCE.md); to the
hubs alone, 66, against 45 in the final layout (bench/bridge_fanout.py).  The
mesh is switched off only once the layout is applied and confirmed
(``MeshOff``), and the bridge is deleted after that.  :func:`uninstall` runs the
same steps backwards: bridge and mesh on first, confirm, then the RRs give up
their IDs, the hubs last, then our BGPPeers go.
"""

from __future__ import annotations

from typing import Any

from calico_rr.core.operator.confirm import confirm_sessions, node_status_changes
from calico_rr.core.operator.desired import (
    Desired,
    OurPeers,
    breaks,
    bridge_in_place,
    current_labels,
    desired,
    extra_key,
    hubs_first,
    same_peer,
    wanted_node_applies,
)
from calico_rr.core.operator.peerings import is_companion, prev_labels
from calico_rr.core.operator.rollout import rollout
from calico_rr.core.operator.settings import OperatorSettings
from calico_rr.core.operator.state import (
    MARKER,
    Decision,
    Observed,
    Phase,
    current_cluster_id,
)
from calico_rr.core.planning import planner

# ---------------------------------------------------------------------------
# reconcile
# ---------------------------------------------------------------------------


def reconcile(obs: Observed, settings: OperatorSettings) -> Decision:
    """The next batch of writes towards the planned layout (see module docstring)."""
    if settings.paused:
        return Decision(Phase.PAUSED, "paused by spec.paused")
    want = desired(obs, settings)
    extra = extra_key(settings)
    record = dict(obs.transition or {})
    have = OurPeers.of(obs)
    prev_of = {
        n: prev_labels(ns.node.labels)
        for n, ns in obs.nodes.items()
        if MARKER in ns.node.labels and MARKER in ns.owned_labels
    }
    current = {n: current_labels(ns, extra) for n, ns in obs.nodes.items()}
    breaking = {
        n
        for n, ns in obs.nodes.items()
        if n not in prev_of
        and breaks(current[n], want.labels[n], current_cluster_id(ns), want.cids.get(n))
    }
    changed_peers = {
        n for n, p in have.layout.items() if n not in want.peers or not same_peer(p, want.peers[n])
    }
    if prev_of or have.companions or record.get("kind") == "Rollout" or breaking or changed_peers:
        # In a rollout every node whose role changes keeps a copy of its labels,
        # also one that only gains labels: the old BGPPeers' companions then match
        # it as it was, not as it becomes (peerings.companion_selector).
        changing = {  # breaking ones included
            n
            for n, ns in obs.nodes.items()
            if n not in prev_of
            and (current[n] != want.labels[n] or current_cluster_id(ns) != want.cids.get(n))
        }
        return rollout(obs, settings, want, record, have, prev_of, changing)

    decision = _direct_writes(obs, settings, want, have)
    if decision.writes:
        nodes, peers = len(decision.node_applies), len(decision.peer_applies)
        decision.message = f"applying {nodes} node(s), {peers} BGPPeer(s)"
        if record.get("kind") == "MeshOff" and "madeAt" in record:
            # New sessions appeared while waiting to switch the mesh off: re-confirm.
            decision.set_transition({"kind": "MeshOff"})
        return decision
    if not obs.mesh_enabled:
        decision.phase = Phase.STEADY
        decision.message = f"{len(want.rr_nodes)} route reflectors, layout applied"
        if obs.transition is not None:
            decision.set_transition(None)
        return decision
    return _switch_mesh_off(obs, settings, want, record)


def _direct_writes(
    obs: Observed,
    settings: OperatorSettings,
    want: Desired,
    have: OurPeers,
) -> Decision:
    """The writes of a change that removes no peering: node labels and IDs, new
    BGPPeers, the bridge while the mesh is on (and its removal once it is off)."""
    decision = Decision(Phase.APPLYING, plan=want.plan)
    decision.node_applies = hubs_first(obs, want, wanted_node_applies(obs, want, sorted(obs.nodes)))
    if want.bridge is not None and not bridge_in_place(obs, want.bridge, have):
        decision.peer_applies.append(want.bridge)
    for name, peer in sorted(want.peers.items()):
        if name not in have.layout:
            decision.peer_applies.append(peer)
    if want.bridge is None:
        # Mesh off and the layout confirmed before it went off: the bridge can go.
        decision.peer_deletes.extend(sorted(have.bridge))
    node_status_changes(obs, settings, want.rr_nodes, decision)
    return decision


def _switch_mesh_off(
    obs: Observed, settings: OperatorSettings, want: Desired, record: dict[str, Any]
) -> Decision:
    """Everything is in place with the mesh still on: confirm, then switch it off."""
    wait, why = confirm_sessions(
        obs,
        settings,
        want.plan,
        record,
        start={"kind": "MeshOff"},
        message="layout applied; confirming sessions before switching the mesh off",
    )
    if wait is not None:
        return wait
    blocked = _mesh_off_blocker(want.plan)
    if blocked is not None:
        message = f"the node-to-node mesh stays on: {blocked}"
        return Decision(Phase.BLOCKED, message, plan=want.plan, requeue_after=5.0)
    message = f"{why}; switching the node-to-node mesh off"
    decision = Decision(Phase.MESH_OFF, message, plan=want.plan, mesh=False)
    decision.set_transition(None)
    return decision


def _mesh_off_blocker(the_plan: planner.Plan) -> str | None:
    """Why the mesh must stay on, or None: with the mesh off, every running node
    must still reach every other through the route reflectors alone."""
    from calico_rr.core.operator.safety import gate_plan

    verdict = gate_plan(the_plan, down=[n.name for n in the_plan.nodes if not n.ready])
    return None if verdict.ok else "; ".join(verdict.causes)


# ---------------------------------------------------------------------------
# status figures
# ---------------------------------------------------------------------------


def summary_counts(decision: Decision, obs: Observed) -> dict[str, int]:
    """Figures for status and metrics."""
    the_plan = decision.plan
    rrs = len(the_plan.layout.holders) if the_plan is not None else 0
    peers = sum(1 for p in obs.peers.values() if not is_companion(p))
    return {"routeReflectors": rrs, "bgpPeers": peers, "inTransition": decision.in_transition}
