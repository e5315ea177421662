"""A rollout: make, confirm, break (core.operator.decide's module doc says why).
The old peerings stay beside the new ones until the new sessions are confirmed;
then they go, and the nodes drop their ``prev.`` copies.  Pure."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from calico_rr.core.bgp.selector import parse_selector
from calico_rr.core.operator.confirm import confirm_sessions, node_status_changes
from calico_rr.core.operator.desired import (
    Desired,
    OurPeers,
    apply_if_changed,
    bridge_in_place,
    current_labels,
    extra_key,
    hubs_first,
    same_peer,
    wanted_node_applies,
)
from calico_rr.core.operator.peerings import (
    companion_peer,
    planner_labels,
    prev_key,
    spec_of,
)
from calico_rr.core.operator.settings import OperatorSettings
from calico_rr.core.operator.state import (
    MARKER,
    PREV,
    PREV_SUFFIX,
    Decision,
    NodeApply,
    Observed,
    Phase,
    current_cluster_id,
    node_and_peer_documents,
    server_side_apply,
)
from calico_rr.core.planning import render
from calico_rr.model import ANN_CLUSTER_ID


def _after_break_blocker(
    obs: Observed, settings: OperatorSettings, want: Desired, ids: Mapping[str, str]
) -> str | None:
    """Why a rollout's break must wait with the mesh off, or None.  Checks the
    cluster exactly as the break leaves it: every node's labels with ours replaced
    by the wanted ones, our cluster IDs replaced by the wanted ones (or, where
    given, by ``ids``: the state between a split break's halves), our wanted
    BGPPeers (a user's own BGPPeers are not seen here, so this errs on the safe
    side), the mesh off."""
    from calico_rr.core.operator.safety import check

    if not want.plan.layout.holders:
        return "no route reflector could be placed (no eligible node)"
    nodes = {name: obs.nodes[name] for name in sorted(obs.nodes)}
    for name in nodes:
        cid = ids.get(name, want.cids.get(name))
        ann = {ANN_CLUSTER_ID: cid} if cid is not None else {}
        server_side_apply(nodes, NodeApply(name, want.labels[name], ann))
    peers = dict(sorted(want.peers.items()))
    docs = node_and_peer_documents(nodes, peers)
    docs.append(render.bgp_configuration(settings.plan, mesh=False))
    down = [ns.node.name for ns in obs.nodes.values() if not ns.node.ready]
    report = check(docs, down)
    return None if report.ok else f"afterwards {report.describe()}"


def rollout(
    obs: Observed,
    settings: OperatorSettings,
    want: Desired,
    record: dict[str, Any],
    have: OurPeers,
    prev_of: dict[str, dict[str, str]],
    breaking: set[str],
) -> Decision:
    """Make, confirm, break (see the module docstring): the next step of a rollout."""
    make_labels = _make_labels(obs, prev_of, breaking)
    held = _held_ids(obs, want, make_labels)
    ctx = _Rollout(obs, settings, want, record, have, make_labels, held)
    in_transition = len(make_labels)
    gone = record.get(_OLD_GONE)
    if gone is None:
        make = _make(ctx)
        if make.writes:
            return make
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
    elif gone != _break_key(want, make_labels):
        return _make_again(obs, want, record, make_labels)
    else:
        why = "old peerings removed"
    if not obs.mesh_enabled:
        # Nothing else carries routes once the old peerings go: the new layout
        # alone must reach every running node (e.g. a config that leaves no node
        # eligible as an RR must not remove the RRs that exist).  The make state
        # (old and new peerings together) stays until the plan is fixed.
        blocked = _after_break_blocker(obs, settings, want, {})
        if blocked is not None:
            return Decision(
                Phase.BLOCKED,
                f"rollout held before removing old peerings: {blocked}",
                plan=want.plan,
                in_transition=in_transition,
                requeue_after=5.0,
            )
    return _break(ctx, why)


def _make_again(
    obs: Observed, want: Desired, record: Mapping[str, Any], make_labels: Mapping[str, Any]
) -> Decision:
    """The plan changed between the two halves of the break: the nodes drop their
    ``prev.`` copies (inert: the companions are gone) and keep labels and IDs as
    they are, and the next pass starts a rollout from there, make first."""
    again = Decision(Phase.MAKING, "rollout: the plan changed; making again", plan=want.plan)
    again.in_transition = len(make_labels)
    for name in sorted(make_labels):
        ns = obs.nodes[name]
        labels = {k: v for k, v in ns.owned_label_values().items() if not k.startswith(PREV)}
        change = apply_if_changed(ns, labels, current_cluster_id(ns))
        if change is not None:
            again.node_applies.append(change)
    again.set_transition({"kind": "Rollout", "startedAt": record.get("startedAt", obs.now)})
    return again


#: In the transition record: the old peerings are gone and the RRs that kept their
#: cluster IDs take the new ones next; the value keys the layout it was done for.
_OLD_GONE = "oldPeeringsGone"


def _held_ids(
    obs: Observed, want: Desired, make_labels: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """RRs in transition that keep the cluster ID they have until the old peerings
    are gone, where the plan gives them another, with that ID: those whose old ID
    another such RR shares, with the mesh off (with the mesh on, the bridge's
    order of IDs applies: desired.hubs_first).

    Why: an old RR that takes a new ID in the make state is still peered with the
    other old RRs and, as their old client, with every new RR; under distinct IDs
    each treats the others as clients, and a route travels every chain of them.
    Old RRs that keep their one shared ID do not reflect to each other: ``single``
    -> ``hierarchy`` at 100 nodes held 3,277 routes per node in the make state
    instead of 32,285 (final layout 1,887; bench/bridge_fanout.py --from single).
    An ID no other RR shares (``multi``: one RR per ID) is not held: it would add
    one more distinct ID to the chains (``multi`` -> ``hierarchy`` at 100 nodes:
    238,081 instead of 32,285).  An RR the plan takes the ID from keeps it through
    the make state anyway and gives it up in the break: a client reflects nothing."""
    if obs.mesh_enabled:
        return {}
    held: dict[str, str] = {}
    for name in make_labels:
        cid, wanted = current_cluster_id(obs.nodes[name]), want.cids.get(name)
        if cid is not None and wanted is not None and cid != wanted:
            held[name] = cid
    shared = Counter(held.values())
    return {name: cid for name, cid in held.items() if shared[cid] > 1}


def _break_key(want: Desired, make_labels: Mapping[str, Mapping[str, str]]) -> str:
    """What the break's second half writes: the wanted labels and IDs of the nodes
    in transition and the wanted BGPPeers, as a short digest."""
    nodes = {n: [want.labels[n], want.cids.get(n)] for n in sorted(make_labels)}
    peers = {n: p["spec"] for n, p in want.peers.items()}
    text = json.dumps([nodes, peers], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class _Rollout:
    """What one pass of a rollout reads: the cluster, the settings, the layout
    wanted, the transition record, our BGPPeers, the nodes in transition with
    their ``prev.`` labels, and the cluster IDs held (:func:`_held_ids`)."""

    obs: Observed
    settings: OperatorSettings
    want: Desired
    record: dict[str, Any]
    have: OurPeers
    make_labels: dict[str, dict[str, str]]
    held: Mapping[str, str]


def _break(ctx: _Rollout, why: str) -> Decision:
    """Remove the old peerings, then let the nodes drop their ``prev.`` copies,
    in two passes: in one batch the nodes that dropped their copies first would,
    for a moment, be matched by the companions under the old rules by their new
    labels (``single`` -> ``hierarchy`` at 40 nodes: 95,832 routes per node
    against 747 when done).  Between the passes the ``prev.`` labels are inert.

    Nodes whose cluster ID still differs from the wanted one (held, or old RRs
    the plan makes clients) take it in the second pass when :func:`_may_split`
    allows, else in the first, before the deletes (the executor writes a batch's
    nodes before its deletes): for that moment the make state has the new IDs,
    as every make state had before IDs were held (``single`` -> ``hierarchy`` at
    100 nodes: 32,285 routes per node, 1,887 when done)."""
    obs, want, held = ctx.obs, ctx.want, ctx.held
    brk = Decision(Phase.BREAKING, f"rollout: {why}; removing old peerings", plan=want.plan)
    brk.in_transition = len(ctx.make_labels)
    # The replaced BGPPeers go before their companions: a companion found without
    # its original would be re-created by the next pass (a crash between the two
    # deletes, repeated, would otherwise never finish the break).
    brk.peer_deletes.extend(sorted(n for n in ctx.have.layout if n not in want.peers))
    brk.peer_deletes.extend(sorted(ctx.have.companions))
    if not obs.mesh_enabled:
        brk.peer_deletes.extend(sorted(ctx.have.bridge))
    if brk.peer_deletes:
        between = _between(ctx)
        if between and not _may_split(ctx, between):
            brk.node_applies = _make_node_applies(
                obs, ctx.settings, want, ctx.make_labels, {}, wanted_ids=True
            )
            brk.message += f" once {len(brk.node_applies)} RR(s) have their new cluster IDs"
        elif held:
            brk.message += f"; {len(held)} RR(s) keep their cluster IDs until then"
        base = {k: v for k, v in ctx.record.items() if k != _OLD_GONE}
        brk.set_transition({**base, _OLD_GONE: _break_key(want, ctx.make_labels)})
        return brk
    brk.message = "rollout: old peerings removed; nodes drop their prev. copies"
    if held:
        brk.message += f", {len(held)} RR(s) take their new cluster IDs"
    brk.node_applies = wanted_node_applies(obs, want, sorted(ctx.make_labels))
    node_status_changes(obs, ctx.settings, want.rr_nodes, brk)
    brk.set_transition(None)
    return brk


def _may_split(ctx: _Rollout, between: Mapping[str, str]) -> bool:
    """Whether the nodes whose ID differs from the wanted one may keep it until
    the old peerings are gone.

    The state between must pass the safety check, read with the IDs the nodes
    really have then (``between``, from :func:`_between`: old RRs the plan makes
    clients are still RRs).  And no held RR may take an ID that another node in transition holds
    and gives up: the second pass's writes land in any order, and for a moment
    the two would share it.  ``hierarchy`` -> ``single`` gives the rack RRs the
    spines' ID; with some rack RRs moved and the old spines not yet clients, the
    spines are non-clients of every RR and lose each other's routes (found by the
    in-memory checker)."""
    if not ctx.held:
        return False
    leaving = set(between.values())  # each differs from the node's wanted ID
    if any(ctx.want.cids.get(name) in leaving for name in ctx.held):
        return False
    return _after_break_blocker(ctx.obs, ctx.settings, ctx.want, between) is None


def _between(ctx: _Rollout) -> dict[str, str]:
    """The cluster IDs that differ from the wanted ones between a split break's
    halves: the held ones, and those of old RRs the plan makes clients (they give
    their IDs up in the second half, with their ``prev.`` copies)."""
    ids = {}
    for name in ctx.make_labels:
        cid = current_cluster_id(ctx.obs.nodes[name])
        if cid is not None and ctx.want.cids.get(name) is None:
            ids[name] = cid
    return {**ids, **ctx.held}


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


def _make(ctx: _Rollout) -> Decision:
    """The writes still missing from the make state (none once it is complete)."""
    obs, settings, want, record, have, make_labels = (
        ctx.obs,
        ctx.settings,
        ctx.want,
        ctx.record,
        ctx.have,
        ctx.make_labels,
    )
    group = settings.plan.api_group
    make = Decision(Phase.MAKING, plan=want.plan, in_transition=len(make_labels))
    if want.bridge is not None and not bridge_in_place(obs, want.bridge, have):
        make.peer_applies.append(want.bridge)
    for name in _need_companion(want, have, make_labels):
        make.peer_applies.append(companion_peer(have.layout[name], group))
    for name, peer in sorted(want.peers.items()):
        if name not in have.layout or not same_peer(have.layout[name], peer):
            make.peer_applies.append(peer)
    make.node_applies = hubs_first(
        obs, want, _make_node_applies(obs, settings, want, make_labels, ctx.held)
    )
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
    want: Desired, have: OurPeers, make_labels: dict[str, dict[str, str]]
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
        changes = name not in want.peers or not same_peer(peer, want.peers[name])
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
    want: Desired,
    make_labels: dict[str, dict[str, str]],
    held: Mapping[str, str],
    *,
    wanted_ids: bool = False,
) -> list[NodeApply]:
    """Every node gets its wanted labels and ID; a node in transition also keeps its
    ``prev.`` copy, its current cluster ID if the plan takes it away (unless
    ``wanted_ids``) or it is ``held`` (:func:`_held_ids`), and our extra RR label
    if it has it."""
    extra = extra_key(settings)
    out: list[NodeApply] = []
    for name, ns in sorted(obs.nodes.items()):
        labels = dict(want.labels[name])
        cid = want.cids.get(name)
        if name in make_labels:
            labels.update(make_labels[name])
            if not wanted_ids:
                cid = held.get(name, cid if cid is not None else current_cluster_id(ns))
            if extra is not None and extra in current_labels(ns, extra):
                labels.setdefault(extra, ns.node.labels[extra])
        change = apply_if_changed(ns, labels, cid)
        if change is not None:
            out.append(change)
    return out
