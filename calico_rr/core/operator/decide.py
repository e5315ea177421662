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
   apply), so every prefix of the batch is itself safe.
2. *Confirm.*  The new sessions must be Established: CalicoNodeStatus reports
   from the route reflectors of the new layout, or - when Calico reports
   nothing - a configured wait.  The time the make state was complete is
   recorded in the status so a restart does not restart the clock.
3. *Break.*  Nodes drop the ``prev`` labels, companions and BGPPeers the new
   layout does not have are deleted, the record is cleared.

The mesh (migration and uninstall)
----------------------------------

While the node-to-node mesh is on, a node that gets a cluster ID leaves the
mesh, and until *every* RR has its ID the RR layout alone does not carry every
route (an RR's prefix would reach only its own group).  So while the mesh is on
a **bridge** BGPPeer ``calico-rr-bridge`` peers every node with the *hubs*: the
RRs of one cluster ID (a hierarchy's spines; every RR when the layout has one ID,
or no ID with two RRs - peerings.bridge_hubs).  The hubs get their IDs first
(:func:`_hubs_first`): from then on any RR with an ID hears and reaches everyone
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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from calico_rr.core.bgp.families import address_annotations
from calico_rr.core.bgp.selector import (
    parse_selector,
)
from calico_rr.core.operator.confirm import confirm_sessions, node_status_changes
from calico_rr.core.operator.peerings import (
    bridge_hub_nodes,
    bridge_hubs,
    bridge_peer,
    companion_peer,
    is_bridge,
    is_companion,
    planner_labels,
    prev_key,
    prev_labels,
    spec_of,
)
from calico_rr.core.operator.settings import OperatorSettings
from calico_rr.core.operator.state import (
    MARKER,
    PREV,
    PREV_SUFFIX,
    Decision,
    NodeApply,
    NodeState,
    Observed,
    Phase,
    current_cluster_id,
)
from calico_rr.core.planning import planner, render
from calico_rr.model import (
    ANN_CLUSTER_ID,
)


@dataclass(frozen=True, slots=True)
class _Desired:
    plan: planner.Plan
    labels: dict[str, dict[str, str]]  # node -> planner labels (+ extra RR label)
    cids: dict[str, str]
    peers: dict[str, dict[str, Any]]
    rr_nodes: frozenset[str]
    bridge: dict[str, Any] | None  # while the mesh is on
    hub_nodes: frozenset[str]  # the bridge's RRs when they are not every RR (else empty)


def _desired(obs: Observed, settings: OperatorSettings) -> _Desired:
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
        bridge, hubs = _wanted_bridge(obs, settings.plan.api_group, cids, labels)
    return _Desired(the_plan, labels, cids, peers, frozenset(cids), bridge, hubs)


def _wanted_bridge(
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
        return (to_hubs, hubs) if all(_same_peer(p, to_hubs) for p in existing) else every_rr
    holders = {n for n, ns in obs.nodes.items() if current_cluster_id(ns) is not None}
    return (to_hubs, hubs) if holders <= hubs else every_rr


def _hubs_first(obs: Observed, want: _Desired, applies: list[NodeApply]) -> list[NodeApply]:
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
class _OurPeers:
    """The BGPPeers the cluster has, by role."""

    companions: dict[str, Mapping[str, Any]]  # a rollout's ``<name>-prev`` copies
    bridge: set[str]  # the bridge's name, while it exists
    layout: dict[str, Mapping[str, Any]]  # every other one: the layout's, as it is now

    @classmethod
    def of(cls, obs: Observed) -> _OurPeers:
        companions = {n: p for n, p in obs.peers.items() if is_companion(p)}
        bridge = {n for n, p in obs.peers.items() if is_bridge(p)}
        layout = {n: p for n, p in obs.peers.items() if not is_companion(p) and n not in bridge}
        return cls(companions, bridge, layout)


def _extra_key(settings: OperatorSettings) -> str | None:
    return settings.rr_label[0] if settings.rr_label is not None else None


def _current_labels(ns: NodeState, extra: str | None) -> dict[str, str]:
    """Labels that describe the node's current role: the planner's keys, plus the
    extra RR label when we own it."""
    out = planner_labels(ns.node.labels)
    if extra is not None and extra in ns.owned_labels and extra in ns.node.labels:
        out[extra] = ns.node.labels[extra]
    return out


def _breaks(
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


def _apply_if_changed(
    ns: NodeState, labels: Mapping[str, str], cid: str | None
) -> NodeApply | None:
    """The apply giving ``ns`` these labels and cluster ID, or None if it has them."""
    annotations = {ANN_CLUSTER_ID: cid} if cid is not None else {}
    if ns.owned_label_values() == dict(labels) and ns.owned_annotation_values() == annotations:
        return None
    return NodeApply(ns.node.name, dict(labels), annotations, ns.uid)


def _wanted_node_applies(obs: Observed, want: _Desired, names: Iterable[str]) -> list[NodeApply]:
    """Applies giving the nodes ``names`` (in this order) their wanted labels and IDs."""
    out: list[NodeApply] = []
    for name in names:
        change = _apply_if_changed(obs.nodes[name], want.labels[name], want.cids.get(name))
        if change is not None:
            out.append(change)
    return out


def _bridge_in_place(obs: Observed, bridge: Mapping[str, Any], have: _OurPeers) -> bool:
    return bool(have.bridge) and all(_same_peer(obs.peers[n], bridge) for n in have.bridge)


def _same_peer(have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    hl = (have.get("metadata") or {}).get("labels") or {}
    wl = want["metadata"]["labels"]
    return dict(spec_of(have)) == dict(want["spec"]) and all(hl.get(k) == v for k, v in wl.items())


# ---------------------------------------------------------------------------
# reconcile
# ---------------------------------------------------------------------------


def reconcile(obs: Observed, settings: OperatorSettings) -> Decision:
    """The next batch of writes towards the planned layout (see module docstring)."""
    if settings.paused:
        return Decision(Phase.PAUSED, "paused by spec.paused")
    want = _desired(obs, settings)
    extra = _extra_key(settings)
    record = dict(obs.transition or {})
    have = _OurPeers.of(obs)
    prev_of = {
        n: prev_labels(ns.node.labels)
        for n, ns in obs.nodes.items()
        if MARKER in ns.node.labels and MARKER in ns.owned_labels
    }
    current = {n: _current_labels(ns, extra) for n, ns in obs.nodes.items()}
    breaking = {
        n
        for n, ns in obs.nodes.items()
        if n not in prev_of
        and _breaks(current[n], want.labels[n], current_cluster_id(ns), want.cids.get(n))
    }
    changed_peers = {
        n for n, p in have.layout.items() if n not in want.peers or not _same_peer(p, want.peers[n])
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
        return _rollout(obs, settings, want, record, have, prev_of, changing)

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
    want: _Desired,
    have: _OurPeers,
) -> Decision:
    """The writes of a change that removes no peering: node labels and IDs, new
    BGPPeers, the bridge while the mesh is on (and its removal once it is off)."""
    decision = Decision(Phase.APPLYING, plan=want.plan)
    decision.node_applies = _hubs_first(
        obs, want, _wanted_node_applies(obs, want, sorted(obs.nodes))
    )
    if want.bridge is not None and not _bridge_in_place(obs, want.bridge, have):
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
    obs: Observed, settings: OperatorSettings, want: _Desired, record: dict[str, Any]
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


def _after_break_blocker(obs: Observed, settings: OperatorSettings, want: _Desired) -> str | None:
    """Why a rollout's break must wait with the mesh off, or None.  Checks the
    cluster exactly as the break leaves it: every node's labels with ours replaced
    by the wanted ones, our cluster IDs replaced by the wanted ones, our wanted
    BGPPeers (a user's own BGPPeers are not seen here, so this errs on the safe
    side), the mesh off."""
    from calico_rr.core.operator.safety import check

    if not want.plan.layout.holders:
        return "no route reflector could be placed (no eligible node)"
    docs: list[dict[str, Any]] = []
    for name, ns in sorted(obs.nodes.items()):
        node = ns.node
        labels = {k: v for k, v in node.labels.items() if k not in ns.owned_labels}
        labels.update(want.labels[name])
        annotations = {k: v for k, v in node.annotations.items() if k not in ns.owned_annotations}
        cid = want.cids.get(name)
        if cid is not None:
            annotations[ANN_CLUSTER_ID] = cid
        annotations = address_annotations(node, annotations)
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": labels, "annotations": annotations},
            }
        )
    docs += [p for _, p in sorted(want.peers.items())]
    docs.append(render.bgp_configuration(settings.plan, mesh=False))
    down = [ns.node.name for ns in obs.nodes.values() if not ns.node.ready]
    report = check(docs, down)
    return None if report.ok else f"afterwards {report.describe()}"


def _rollout(
    obs: Observed,
    settings: OperatorSettings,
    want: _Desired,
    record: dict[str, Any],
    have: _OurPeers,
    prev_of: dict[str, dict[str, str]],
    breaking: set[str],
) -> Decision:
    """Make, confirm, break (see the module docstring): the next step of a rollout."""
    make_labels = _make_labels(obs, prev_of, breaking)
    make = _make(obs, settings, want, record, have, make_labels)
    if make.writes:
        return make
    in_transition = len(make_labels)
    wait, why = confirm_sessions(
        obs,
        settings,
        want.plan,
        record,
        start={"kind": "Rollout", "startedAt": record.get("startedAt", obs.now)},
        message="rollout: new peerings written; confirming their sessions",
        in_transition=in_transition,
    )
    if wait is not None:
        return wait
    if not obs.mesh_enabled:
        # Nothing else carries routes once the old peerings go: the new layout
        # alone must reach every running node (e.g. a config that leaves no node
        # eligible as an RR must not remove the RRs that exist).  The make state
        # (old and new peerings together) stays until the plan is fixed.
        blocked = _after_break_blocker(obs, settings, want)
        if blocked is not None:
            return Decision(
                Phase.BLOCKED,
                f"rollout held before removing old peerings: {blocked}",
                plan=want.plan,
                in_transition=in_transition,
                requeue_after=5.0,
            )
    brk = Decision(Phase.BREAKING, f"rollout: {why}; removing old peerings", plan=want.plan)
    brk.in_transition = in_transition
    brk.node_applies = _wanted_node_applies(obs, want, sorted(make_labels))
    # The replaced BGPPeers go before their companions: a companion found without
    # its original would be re-created by the next pass (a crash between the two
    # deletes, repeated, would otherwise never finish the break).
    brk.peer_deletes.extend(sorted(n for n in have.layout if n not in want.peers))
    brk.peer_deletes.extend(sorted(have.companions))
    if not obs.mesh_enabled:
        brk.peer_deletes.extend(sorted(have.bridge))
    node_status_changes(obs, settings, want.rr_nodes, brk)
    brk.set_transition(None)
    return brk


def _make_labels(
    obs: Observed, prev_of: dict[str, dict[str, str]], breaking: set[str]
) -> dict[str, dict[str, str]]:
    """Node -> its ``prev.`` labels (marker included) in the make state: kept from
    an earlier pass, or a copy of the current planner labels of a breaking node."""
    make_labels: dict[str, dict[str, str]] = {}
    for name in sorted(obs.nodes):
        if name in prev_of:
            make_labels[name] = prev_of[name]
        elif name in breaking:
            ns = obs.nodes[name]
            prev = {prev_key(k): v for k, v in planner_labels(ns.node.labels).items()}
            prev[MARKER] = "true"
            make_labels[name] = prev
    return make_labels


def _make(
    obs: Observed,
    settings: OperatorSettings,
    want: _Desired,
    record: dict[str, Any],
    have: _OurPeers,
    make_labels: dict[str, dict[str, str]],
) -> Decision:
    """The writes still missing from the make state (none once it is complete)."""
    group = settings.plan.api_group
    make = Decision(Phase.MAKING, plan=want.plan, in_transition=len(make_labels))
    if want.bridge is not None and not _bridge_in_place(obs, want.bridge, have):
        make.peer_applies.append(want.bridge)
    for name in _need_companion(want, have, make_labels):
        make.peer_applies.append(companion_peer(have.layout[name], group))
    for name, peer in sorted(want.peers.items()):
        if name not in have.layout or not _same_peer(have.layout[name], peer):
            make.peer_applies.append(peer)
    make.node_applies = _hubs_first(obs, want, _make_node_applies(obs, settings, want, make_labels))
    # A BGPPeer the new layout drops goes once its companion is there: the companion
    # keeps its peerings by the labels nodes had, while the original would match
    # their new labels too (peerings.companion_selector says why that costs).
    make.peer_deletes.extend(
        sorted(n for n in have.layout if n not in want.peers and n + PREV_SUFFIX in have.companions)
    )
    touched_existing = bool(make.peer_applies or make.peer_deletes) or any(
        change.name in make_labels for change in make.node_applies
    )
    node_status_changes(obs, settings, want.rr_nodes, make)
    make.node_status_deletes.clear()  # old RRs keep reporting until the break
    if make.writes:
        make.message = (
            f"rollout: keeping old peerings of {len(make_labels)} node(s) while adding new ones"
        )
        rolling = record.get("kind") == "Rollout"
        new_record: dict[str, Any] = {
            "kind": "Rollout",
            "startedAt": record.get("startedAt", obs.now) if rolling else obs.now,
        }
        # A make state confirmed before keeps its time unless these writes change it.
        if "madeAt" in record and rolling and not touched_existing:
            new_record["madeAt"] = record["madeAt"]
        if new_record != record:
            make.set_transition(new_record)
    return make


def _need_companion(
    want: _Desired, have: _OurPeers, make_labels: dict[str, dict[str, str]]
) -> list[str]:
    """Old BGPPeers that need a companion and have none yet, sorted: those that
    change, and those a make-state node matched with its old labels."""
    make_label_sets = [
        {k[len(PREV) :]: v for k, v in prev.items() if k != MARKER} for prev in make_labels.values()
    ]
    need: list[str] = []
    for name, peer in sorted(have.layout.items()):
        if name + PREV_SUFFIX in have.companions:
            continue
        spec = spec_of(peer)
        changes = name not in want.peers or not _same_peer(peer, want.peers[name])
        matched = False
        if not changes:
            sels = [parse_selector(str(spec.get("nodeSelector") or "all()"))]
            if spec.get("peerSelector") is not None:
                sels.append(parse_selector(str(spec["peerSelector"])))
            matched = any(s.matches(ls) for s in sels for ls in make_label_sets)
        if changes or matched:
            need.append(name)
    return need


def _make_node_applies(
    obs: Observed,
    settings: OperatorSettings,
    want: _Desired,
    make_labels: dict[str, dict[str, str]],
) -> list[NodeApply]:
    """Every node gets its wanted labels and ID; a node in transition also keeps its
    ``prev.`` copy, its current cluster ID if the plan takes it away, and our
    extra RR label if it has it."""
    extra = _extra_key(settings)
    out: list[NodeApply] = []
    for name, ns in sorted(obs.nodes.items()):
        labels = dict(want.labels[name])
        cid = want.cids.get(name)
        if name in make_labels:
            labels.update(make_labels[name])
            if cid is None:
                cid = current_cluster_id(ns)
            if extra is not None and extra in _current_labels(ns, extra):
                labels.setdefault(extra, ns.node.labels[extra])
        change = _apply_if_changed(ns, labels, cid)
        if change is not None:
            out.append(change)
    return out


# ---------------------------------------------------------------------------
# status figures
# ---------------------------------------------------------------------------


def summary_counts(decision: Decision, obs: Observed) -> dict[str, int]:
    """Figures for status and metrics."""
    the_plan = decision.plan
    rrs = len(the_plan.layout.holders) if the_plan is not None else 0
    peers = sum(1 for p in obs.peers.values() if not is_companion(p))
    return {"routeReflectors": rrs, "bgpPeers": peers, "inTransition": decision.in_transition}


__all__: Sequence[str] = ("reconcile", "summary_counts")
