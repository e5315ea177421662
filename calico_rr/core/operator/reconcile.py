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
a **bridge** BGPPeer ``calico-rr-bridge`` peers every node with every node
carrying our RR label - the shape of Calico's own single-RR recipe, and no
heavier than the mesh it replaces.  Every RR with an ID then hears and reaches
everyone directly, whatever the order of the writes.  The mesh is switched off
only once the layout is applied and confirmed (``MeshOff``), and the bridge is
deleted after that.  :func:`uninstall` runs the same steps backwards: bridge and
mesh on first, confirm, then RRs give up their IDs (one by one is safe: every
RR is still peered with every node through the bridge), then our BGPPeers go.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from calico_rr.core.bgp.selector import (
    parse_selector,
)
from calico_rr.core.operator.peerings import (
    bridge_peer,
    cns_name,
    cns_object,
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
    BRIDGE_NAME,
    MARKER,
    PREV,
    PREV_SUFFIX,
    Decision,
    NodeApply,
    NodeState,
    Observed,
    Phase,
    current_cluster_id,
    requeue_delay,
)
from calico_rr.core.planning import planner, render
from calico_rr.core.planning.candidates import healthy
from calico_rr.model import (
    ANN_CLUSTER_ID,
    ANN_IPV4,
)


@dataclass(frozen=True, slots=True)
class _Desired:
    plan: planner.Plan
    labels: dict[str, dict[str, str]]  # node -> planner labels (+ extra RR label)
    cids: dict[str, str]
    peers: dict[str, dict[str, Any]]
    rr_nodes: frozenset[str]


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
    if obs.mesh_enabled:
        peers[BRIDGE_NAME] = bridge_peer(settings.plan.api_group)
    return _Desired(the_plan, labels, cids, peers, frozenset(cids))


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
    ns: NodeState, labels: Mapping[str, str], annotations: Mapping[str, str]
) -> NodeApply | None:
    if ns.owned_label_values() == dict(labels) and ns.owned_annotation_values() == dict(
        annotations
    ):
        return None
    return NodeApply(ns.node.name, dict(labels), dict(annotations), ns.uid)


def _same_peer(have: Mapping[str, Any], want: Mapping[str, Any]) -> bool:
    hl = (have.get("metadata") or {}).get("labels") or {}
    wl = want["metadata"]["labels"]
    return dict(spec_of(have)) == dict(want["spec"]) and all(hl.get(k) == v for k, v in wl.items())


def _cns_changes(
    obs: Observed, settings: OperatorSettings, rr_nodes: frozenset[str], decision: Decision
) -> None:
    use = obs.node_status_supported and settings.session_check != "Wait"
    want = {cns_name(n): n for n in rr_nodes} if use else {}
    for name, node in sorted(want.items()):
        if name not in obs.node_status_objects:
            decision.node_status_applies.append(cns_object(node, settings.plan.api_group))
    decision.node_status_deletes.extend(sorted(obs.node_status_objects - set(want)))


# ---------------------------------------------------------------------------
# Session confirmation
# ---------------------------------------------------------------------------


def rr_peer_addresses(the_plan: planner.Plan) -> dict[str, frozenset[str]]:
    """RR node -> IPs of the healthy nodes it must have Established sessions with
    once ``the_plan`` is in place (read from the rendered resources)."""
    from calico_rr.core.bgp.resources import parse_resources
    from calico_rr.core.bgp.sessions import build_session_graph

    graph = build_session_graph(parse_resources(the_plan.calico_documents()).state)
    index = graph.index()
    by_name = {n.name: n for n in the_plan.nodes}
    rr_names = set(the_plan.layout.holders.values())
    out: dict[str, frozenset[str]] = {}
    for name in sorted(rr_names):
        i = index.get(name)
        if i is None:
            continue
        ips = set()
        for j in graph.peers(i):
            peer = by_name.get(graph.nodes[j].name)
            if peer is not None and peer.ip is not None and healthy(peer):
                ips.add(peer.ip)
        out[name] = frozenset(ips)
    return out


def sessions_confirmed(
    obs: Observed, settings: OperatorSettings, the_plan: planner.Plan, made_at: float
) -> tuple[bool, str]:
    """May old peerings go?  (confirmed, why)."""
    waited = obs.now - made_at
    wait_left = settings.wait_timeout - waited
    use_status = obs.node_status_supported and settings.session_check != "Wait"
    if not use_status:
        if wait_left <= 0:
            return True, f"waited {settings.wait_timeout:g}s (no session reports in use)"
        return False, f"waiting {wait_left:.1f}s more before removing old peerings"
    rr_names = set(the_plan.layout.holders.values())
    reports = {n: obs.node_status.get(n) for n in rr_names}
    if not any(r is not None and r.reported for r in reports.values()):
        if settings.session_check == "Auto" and wait_left <= 0:
            return True, f"no CalicoNodeStatus reports; waited {settings.wait_timeout:g}s"
        return False, "waiting for CalicoNodeStatus reports from the route reflectors"
    expected = rr_peer_addresses(the_plan)  # the session graph: only once reports exist
    missing = 0
    first: str | None = None
    for node, ips in expected.items():
        report = reports.get(node)
        up = report.established if report is not None else frozenset()
        gap = ips - up
        if gap:
            missing += len(gap)
            first = first or f"{node} -> {sorted(gap)[0]}"
    if missing:
        return False, f"{missing} BGP sessions not Established yet (e.g. {first})"
    return True, "every new BGP session is Established"


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
    kind = record.get("kind")
    companions = {n: p for n, p in obs.peers.items() if is_companion(p)}
    bridge = {n for n, p in obs.peers.items() if is_bridge(p)}
    old_peers = {n: p for n, p in obs.peers.items() if not is_companion(p) and n not in bridge}
    want_bridge = want.peers.pop(BRIDGE_NAME, None)
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
        n for n, p in old_peers.items() if n not in want.peers or not _same_peer(p, want.peers[n])
    }
    if prev_of or companions or kind == "Rollout" or breaking or changed_peers:
        return _rollout(
            obs, settings, want, record, prev_of, breaking, companions, old_peers, bridge
        )

    decision = Decision(Phase.APPLYING, plan=want.plan)
    for name, ns in sorted(obs.nodes.items()):
        cid = want.cids.get(name)
        ann = {ANN_CLUSTER_ID: cid} if cid is not None else {}
        change = _apply_if_changed(ns, want.labels[name], ann)
        if change is not None:
            decision.node_applies.append(change)
    if want_bridge is not None and not bridge:
        decision.peer_applies.append(want_bridge)
    for name, peer in sorted(want.peers.items()):
        if name not in old_peers:
            decision.peer_applies.append(peer)
    if want_bridge is None:
        # Mesh off and the layout confirmed before it went off: the bridge can go.
        decision.peer_deletes.extend(sorted(bridge))
    _cns_changes(obs, settings, want.rr_nodes, decision)
    if decision.writes:
        nodes, peers = len(decision.node_applies), len(decision.peer_applies)
        decision.message = f"applying {nodes} node(s), {peers} BGPPeer(s)"
        if kind == "MeshOff" and "madeAt" in record:
            # New sessions appeared while waiting to switch the mesh off: re-confirm.
            decision.set_transition({"kind": "MeshOff"})
        return decision
    if not obs.mesh_enabled:
        decision.phase = Phase.STEADY
        decision.message = f"{len(want.rr_nodes)} route reflectors, layout applied"
        if obs.transition is not None:
            decision.set_transition(None)
        return decision
    # Everything is in place with the mesh still on: confirm, then switch it off.
    made_at = record.get("madeAt") if kind == "MeshOff" else None
    if not isinstance(made_at, int | float):
        decision.phase = Phase.CONFIRMING
        decision.message = "layout applied; confirming sessions before switching the mesh off"
        decision.set_transition({"kind": "MeshOff", "madeAt": obs.now})
        decision.requeue_after = requeue_delay(settings, 0.0)
        return decision
    ok, why = sessions_confirmed(obs, settings, want.plan, float(made_at))
    if not ok:
        decision.phase = Phase.CONFIRMING
        decision.message = why
        decision.requeue_after = requeue_delay(settings, obs.now - float(made_at))
        return decision
    blocked = _mesh_off_blocker(want.plan)
    if blocked is not None:
        decision.phase = Phase.BLOCKED
        decision.message = f"the node-to-node mesh stays on: {blocked}"
        decision.requeue_after = 5.0
        return decision
    decision.phase = Phase.MESH_OFF
    decision.message = f"{why}; switching the node-to-node mesh off"
    decision.mesh = False
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
        if node.ip is not None and ANN_IPV4 not in annotations:
            annotations[ANN_IPV4] = f"{node.ip}/32"
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": name, "labels": labels, "annotations": annotations},
            }
        )
    docs += [p for n, p in sorted(want.peers.items()) if n != BRIDGE_NAME]
    docs.append(render.bgp_configuration(settings.plan, mesh=False))
    down = [ns.node.name for ns in obs.nodes.values() if not ns.node.ready]
    report = check(docs, down)
    return None if report.ok else f"afterwards {report.describe()}"


def _rollout(
    obs: Observed,
    settings: OperatorSettings,
    want: _Desired,
    record: dict[str, Any],
    prev_of: dict[str, dict[str, str]],
    breaking: set[str],
    companions: Mapping[str, Mapping[str, Any]],
    old_peers: Mapping[str, Mapping[str, Any]],
    bridge: set[str],
) -> Decision:
    extra = _extra_key(settings)
    group = settings.plan.api_group
    # -- the make state --------------------------------------------------------
    make_labels: dict[str, dict[str, str]] = {}  # node -> prev.* labels (incl. marker)
    for name in sorted(obs.nodes):
        if name in prev_of:
            make_labels[name] = prev_of[name]
        elif name in breaking:
            ns = obs.nodes[name]
            prev = {prev_key(k): v for k, v in planner_labels(ns.node.labels).items()}
            prev[MARKER] = "true"
            make_labels[name] = prev
    # Companions for every old BGPPeer a make-state node matched, or that changes.
    make_label_sets = [
        {k[len(PREV) :]: v for k, v in prev.items() if k != MARKER} for prev in make_labels.values()
    ]
    need_companion: list[str] = []
    for name, peer in sorted(old_peers.items()):
        if name + PREV_SUFFIX in companions:
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
            need_companion.append(name)

    make = Decision(Phase.MAKING, plan=want.plan, in_transition=len(make_labels))
    if obs.mesh_enabled and not bridge:
        make.peer_applies.append(bridge_peer(group))
    for name in need_companion:
        make.peer_applies.append(companion_peer(old_peers[name], group))
    for name, peer in sorted(want.peers.items()):
        if name not in old_peers or not _same_peer(old_peers[name], peer):
            make.peer_applies.append(peer)
    touched_existing = bool(make.peer_applies)
    for name, ns in sorted(obs.nodes.items()):
        labels = dict(want.labels[name])
        cid = want.cids.get(name)
        if name in make_labels:
            labels.update(make_labels[name])
            if cid is None:
                cid = current_cluster_id(ns)
            if extra is not None and extra in _current_labels(ns, extra):
                labels.setdefault(extra, ns.node.labels[extra])
        ann = {ANN_CLUSTER_ID: cid} if cid is not None else {}
        change = _apply_if_changed(ns, labels, ann)
        if change is not None:
            make.node_applies.append(change)
            if name in make_labels:
                touched_existing = True
    _cns_changes(obs, settings, want.rr_nodes, make)
    make.node_status_deletes.clear()  # old RRs keep reporting until the break
    if make.writes:
        make.message = (
            f"rollout: keeping old peerings of {len(make_labels)} node(s) while adding new ones"
        )
        new_record: dict[str, Any] = {
            "kind": "Rollout",
            "startedAt": record.get("startedAt", obs.now)
            if record.get("kind") == "Rollout"
            else obs.now,
        }
        if "madeAt" in record and record.get("kind") == "Rollout" and not touched_existing:
            new_record["madeAt"] = record["madeAt"]
        if new_record != record:
            make.set_transition(new_record)
        return make
    # -- confirm ---------------------------------------------------------------
    made_at = record.get("madeAt") if record.get("kind") == "Rollout" else None
    if not isinstance(made_at, int | float):
        d = Decision(
            Phase.CONFIRMING,
            "rollout: new peerings written; confirming their sessions",
            plan=want.plan,
            in_transition=len(make_labels),
        )
        d.set_transition(
            {"kind": "Rollout", "startedAt": record.get("startedAt", obs.now), "madeAt": obs.now}
        )
        d.requeue_after = requeue_delay(settings, 0.0)
        return d
    ok, why = sessions_confirmed(obs, settings, want.plan, float(made_at))
    if not ok:
        d = Decision(Phase.CONFIRMING, why, plan=want.plan, in_transition=len(make_labels))
        d.requeue_after = requeue_delay(settings, obs.now - float(made_at))
        return d
    # -- break -----------------------------------------------------------------
    if not obs.mesh_enabled:
        # Nothing else carries routes once the old peerings go: the new layout
        # alone must reach every running node (e.g. a config that leaves no node
        # eligible as an RR must not remove the RRs that exist).  The make state
        # (old and new peerings together) stays until the plan is fixed.
        blocked = _after_break_blocker(obs, settings, want)
        if blocked is not None:
            d = Decision(
                Phase.BLOCKED,
                f"rollout held before removing old peerings: {blocked}",
                plan=want.plan,
                in_transition=len(make_labels),
            )
            d.requeue_after = 5.0
            return d
    brk = Decision(Phase.BREAKING, f"rollout: {why}; removing old peerings", plan=want.plan)
    brk.in_transition = len(make_labels)
    for name in sorted(make_labels):
        ns = obs.nodes[name]
        cid = want.cids.get(name)
        ann = {ANN_CLUSTER_ID: cid} if cid is not None else {}
        change = _apply_if_changed(ns, want.labels[name], ann)
        if change is not None:
            brk.node_applies.append(change)
    # The replaced BGPPeers go before their companions: a companion found without
    # its original would be re-created by the next pass (a crash between the two
    # deletes, repeated, would otherwise never finish the break).
    brk.peer_deletes.extend(sorted(n for n in old_peers if n not in want.peers))
    brk.peer_deletes.extend(sorted(companions))
    if not obs.mesh_enabled:
        brk.peer_deletes.extend(sorted(bridge))
    _cns_changes(obs, settings, want.rr_nodes, brk)
    brk.set_transition(None)
    return brk


# ---------------------------------------------------------------------------
# uninstall
# ---------------------------------------------------------------------------


def summary_counts(decision: Decision, obs: Observed) -> dict[str, int]:
    """Figures for status and metrics."""
    the_plan = decision.plan
    rrs = len(the_plan.layout.holders) if the_plan is not None else 0
    peers = sum(1 for p in obs.peers.values() if not is_companion(p))
    return {"routeReflectors": rrs, "bgpPeers": peers, "inTransition": decision.in_transition}


__all__: Sequence[str] = ("reconcile", "rr_peer_addresses", "sessions_confirmed", "summary_counts")
