"""The bridge BGPPeer that carries every route while the mesh is switched
(core.operator.peerings.bridge_hubs): to the RRs of one cluster ID when there are
several, so its make state stays near the final layout's add-path table, with the
other RRs' writes ordered after the hubs' - and every subset of a batch safe, since
the executor writes a batch's nodes at once."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable
from dataclasses import replace

import pytest
from test_reconcile import converged, make_settings, safe

from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.selector import parse_selector
from calico_rr.core.bgp.sessions import build_session_graph
from calico_rr.core.bgp.verify.fanout import fanout
from calico_rr.core.operator.decide import reconcile
from calico_rr.core.operator.peerings import bridge_hubs, is_companion
from calico_rr.core.operator.state import BRIDGE_NAME, MARKER, Decision, NodeApply, Phase
from calico_rr.core.operator.teardown import uninstall
from calico_rr.core.planning import planner
from calico_rr.core.planning.config import RR_LABEL, SLOT_LABEL, PlanConfig
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import ANN_CLUSTER_ID
from calico_rr.testing.sim import SimCluster


def _cid_changes(sim: SimCluster, d: Decision) -> list[NodeApply]:
    """The applies that give a node a cluster ID or take one away."""
    return [
        a
        for a in d.node_applies
        if a.annotations.get(ANN_CLUSTER_ID)
        != sim.nodes[a.name].node.annotations.get(ANN_CLUSTER_ID)
    ]


def every_subset_safe(sim: SimCluster, d: Decision) -> int:
    """Check every subset of ``d``'s ID changes, with its other node writes all
    landed (and, in a small batch, none): the executor writes a batch's nodes in
    parallel.  Returns the number of states checked."""
    changes = _cid_changes(sim, d)
    rest = [a for a in d.node_applies if a not in changes]
    base = sim.clone()
    base.execute(replace(d, node_applies=[], peer_deletes=[], mesh=None))
    states = 0
    variants = [rest] if len(changes) > 6 else [[], rest]  # a bound on the test's time
    for others in variants:
        for k in range(len(changes) + 1):
            for subset in itertools.combinations(changes, k):
                state = base.clone()
                state.execute(Decision(Phase.APPLYING, node_applies=[*others, *subset]))
                safe(state, f"{[a.name for a in subset]} of {d.message}")
                states += 1
    return states


def drive(sim: SimCluster, step: Callable[[], Decision], checked: list[int]) -> list[Decision]:
    decisions = []
    for _ in range(200):
        d = step()
        decisions.append(d)
        if not d.writes and not d.transition_set and d.phase in (Phase.STEADY, Phase.UNINSTALLED):
            return decisions
        if d.node_applies:
            checked.append(every_subset_safe(sim, d))
        sim.execute(d, checker=safe)
        sim.now += d.requeue_after or 1.0
    raise AssertionError("did not settle")


def table(sim: SimCluster) -> int:
    found = fanout(build_session_graph(parse_resources(sim.calico_documents()).state))
    assert found is not None and not found.at_least
    return found.paths_per_prefix


def test_hubs_are_the_rrs_of_the_largest_cluster_id() -> None:
    def hubs(topology: str) -> frozenset[str] | None:
        layout = planner.plan(synthetic_cluster(40, zones=3), PlanConfig(topology=topology)).layout
        return bridge_hubs(layout.cluster_ids(), layout.node_labels)

    assert hubs("hierarchy") == {"spine.0", "spine.1", "spine.2"}
    assert hubs("quorum") == {"r0", "r1", "r2"}  # two IDs of three: the lower
    assert hubs("single") is None  # one ID: every RR
    assert hubs("multi") is None  # one RR per ID: no group survives a failure alone


@pytest.mark.parametrize("topology", ["hierarchy", "quorum"])
def test_migration_writes_hubs_first_and_every_subset_is_safe(topology: str) -> None:
    sim = SimCluster.of(synthetic_cluster(40, zones=3))
    s = make_settings(topology)
    checked: list[int] = []
    decisions = drive(sim, lambda: reconcile(sim.observed(), s), checked)
    bridge = parse_selector(
        next(p for d in decisions for p in d.peer_applies if p["metadata"]["name"] == BRIDGE_NAME)[
            "spec"
        ]["peerSelector"]
    )
    rrs = {n for n, ns in sim.nodes.items() if ANN_CLUSTER_ID in ns.node.annotations}
    hubs = {n for n in rrs if bridge.matches(sim.nodes[n].node.labels)}
    assert hubs and hubs < rrs
    writes = [d for d in decisions if d.node_applies]
    assert {a.name for a in writes[0].node_applies} & rrs == hubs  # pass 1: hubs only
    assert rrs - hubs <= {a.name for a in writes[1].node_applies}  # pass 2: the rest
    assert sum(checked) > 2 ** len(hubs)
    assert not sim.mesh_enabled and BRIDGE_NAME not in sim.peers


def test_the_make_state_stays_near_the_final_table() -> None:
    """Issue: the bridge to every RR peered the RRs of four cluster IDs with each
    other, and every node held 2,713 paths per prefix until the mesh went off."""
    sim = SimCluster.of(synthetic_cluster(40, zones=3))
    s = make_settings("hierarchy")
    make: list[int] = []

    def before(state: SimCluster, d: Decision) -> None:
        if d.mesh is False:
            make.append(table(state))

    sim.run(s, before=before)
    final = table(sim)
    assert make and make[0] <= 2 * final, (make, final)


def test_uninstall_takes_the_hubs_last_and_every_subset_is_safe() -> None:
    sim, s = converged(20, topology="hierarchy")
    checked: list[int] = []
    decisions = drive(sim, lambda: uninstall(sim.observed(), s, mesh_before=True), checked)
    bridge = next(p for d in decisions for p in d.peer_applies)
    assert SLOT_LABEL in bridge["spec"]["peerSelector"]  # to the spines, not every RR
    removals = [d for d in decisions if d.node_applies]
    assert len(removals) == 2
    first = {a.name for a in removals[0].node_applies}
    assert first and all("spine" not in n for n in first)
    assert sim.mesh_enabled and not sim.peers


def test_a_mesh_switched_on_over_a_settled_layout_bridges_every_rr() -> None:
    """The bridge is narrowed only while no other RR holds an ID: here every RR has
    one, so only a bridge to every RR keeps each reachable in any order."""
    sim, s = converged(30, topology="hierarchy")
    sim.mesh_enabled = True
    d = reconcile(sim.observed(), s)
    assert [p["spec"]["peerSelector"] for p in d.peer_applies] == [f"has({RR_LABEL})"]


def test_a_switch_keeps_new_rrs_out_of_the_old_peerings() -> None:
    """single -> hierarchy: the 9 nodes that become RRs were clients.  Matched by
    their new labels, the old layout's RR-to-RR BGPPeer (kept until the break)
    peered all 12 new RRs of 4 cluster IDs with each other: 2,712 paths per prefix
    (60x the final layout).  Marked and matched by what they were, 499."""
    sim, _ = converged(40, topology="single")
    make: list[int] = []

    def before(state: SimCluster, d: Decision) -> None:
        if d.phase == Phase.BREAKING:
            make.append(table(state))

    sim.run(make_settings("hierarchy"), checker=safe, before=before)
    final = table(sim)
    assert make and make[0] <= 12 * final, (make, final)


def _cids(sim: SimCluster, names: set[str]) -> dict[str, str | None]:
    return {n: sim.nodes[n].node.annotations.get(ANN_CLUSTER_ID) for n in names}


def _breaks_of(
    sim: SimCluster, topology: str, old_rrs: set[str], **kw: object
) -> tuple[list[int], list[tuple[Decision, dict[str, str | None]]]]:
    """Run to ``topology``; the add-path table and the old RRs' IDs before each break."""
    tables: list[int] = []
    breaks: list[tuple[Decision, dict[str, str | None]]] = []

    def before(state: SimCluster, d: Decision) -> None:
        if d.phase == Phase.BREAKING:
            tables.append(table(state))
            breaks.append((d, _cids(state, old_rrs)))

    sim.run(make_settings(topology, **kw), checker=safe, before=before)
    assert sim.transition is None
    assert not any(k.startswith("prev.") for ns in sim.nodes.values() for k in ns.node.labels)
    return tables, breaks


def test_a_switch_holds_old_rrs_ids_through_the_make_state() -> None:
    """single -> hierarchy with the mesh off: the old RRs that get new cluster IDs
    keep their shared old one through the make state.  Under one ID they do not
    reflect to each other, so chains of distinct IDs stay short: the make state
    held 13,305 routes per node with the new IDs, now under twice the final
    layout's 747.  The IDs change in the break's first pass, before its deletes
    (their ID is the spines': the state between the old peerings' removal and
    the new IDs would not be safe)."""
    sim, _ = converged(40, topology="single")
    old_rrs = {n for n, ns in sim.nodes.items() if ANN_CLUSTER_ID in ns.node.annotations}
    old_ids = _cids(sim, old_rrs)
    tables, breaks = _breaks_of(sim, "hierarchy", old_rrs)
    moved = {n for n, cid in _cids(sim, old_rrs).items() if cid not in (None, old_ids[n])}
    assert moved, "no old RR took a new ID: the test shows nothing"
    assert tables[0] <= 2 * table(sim), (tables, table(sim))  # the confirmed make state
    assert {n: breaks[0][1][n] for n in moved} == {n: old_ids[n] for n in moved}
    first = breaks[0][0]
    assert moved <= {a.name for a in first.node_applies} and first.peer_deletes
    assert all(MARKER in a.labels for a in first.node_applies)  # prev. copies kept


def test_the_break_takes_old_peerings_first_when_the_state_between_is_safe() -> None:
    """single -> multi: the old peerings go while the old RRs still hold their
    shared ID (the state between passes the same check as the break's end), then
    those RRs take their new IDs.  Every write is checked."""
    sim, _ = converged(30, topology="single")
    old_rrs = {n for n, ns in sim.nodes.items() if ANN_CLUSTER_ID in ns.node.annotations}
    old_ids = _cids(sim, old_rrs)
    _, breaks = _breaks_of(sim, "multi", old_rrs)
    moved = {n for n, cid in _cids(sim, old_rrs).items() if cid not in (None, old_ids[n])}
    assert moved
    (first, ids_first), (second, ids_second) = breaks
    assert first.peer_deletes and not first.node_applies  # the old peerings first
    assert first.transition is not None and "oldPeeringsGone" in first.transition
    held = {n: old_ids[n] for n in moved}
    assert {n: ids_first[n] for n in moved} == held == {n: ids_second[n] for n in moved}
    assert moved <= {a.name for a in second.node_applies} and not second.peer_deletes


@pytest.mark.parametrize("rrs", [4, 5])
def test_old_rrs_made_clients_keep_their_ids_between_the_halves(rrs: int) -> None:
    """single (``rrs`` RRs) -> multi (3): the old RRs the plan makes clients are
    still RRs, under their shared old ID, between the break's halves, and the
    check of that state reads them so (rollout._between).  With two of them
    (``rrs`` 5) the state between would cut them off from each other (found:
    "node-00003 lacks node-00004" after the first half, when the check read them
    as clients), so the IDs change in the batch that removes the old peerings,
    before its deletes; with one, after the old peerings go.  Every write
    checked."""
    sim = SimCluster.of(synthetic_cluster(30, zones=3))
    sim.run(make_settings("single", rrs=rrs), checker=safe)
    old_rrs = {n for n, ns in sim.nodes.items() if ANN_CLUSTER_ID in ns.node.annotations}
    old_ids = _cids(sim, old_rrs)
    _, breaks = _breaks_of(sim, "multi", old_rrs)
    demoted = {n for n, cid in _cids(sim, old_rrs).items() if cid is None}
    assert len(demoted) == rrs - 3
    assert {n: breaks[0][1][n] for n in demoted} == {n: old_ids[n] for n in demoted}
    kinds = [(bool(d.node_applies), bool(d.peer_deletes)) for d, _ in breaks]
    if len(demoted) == 1:  # the old peerings first, then the IDs and prev. copies
        assert kinds == [(False, True), (True, False)]
        assert demoted <= {a.name for a in breaks[1][0].node_applies}
    else:  # the IDs and the old peerings, then the prev. copies
        assert kinds == [(True, True), (True, False)]
        assert demoted <= {a.name for a in breaks[0][0].node_applies}


def test_a_held_id_that_another_node_gives_up_changes_before_the_old_peerings_go() -> None:
    """hierarchy -> single (6 RRs): the rack RRs take the spines' old ID.  Taken
    after the old peerings went, the writes land in any order, and with some rack
    RRs moved while the old spines still hold that ID, the spines lose each
    other's routes (found: "node-00006 lacks node-00007").  The IDs change before
    the deletes, the old peerings still there.  Every write checked."""
    sim = SimCluster.of(synthetic_cluster(12, zones=3))
    sim.run(make_settings("hierarchy"), checker=safe)
    old_rrs = {n for n, ns in sim.nodes.items() if ANN_CLUSTER_ID in ns.node.annotations}
    _, breaks = _breaks_of(sim, "single", old_rrs, rrs=6)
    kinds = [(bool(d.node_applies), bool(d.peer_deletes)) for d, _ in breaks]
    assert kinds == [(True, True), (True, False)]


def _switch_tables(start: str, topology: str, n: int = 40) -> tuple[int, int, int]:
    """The largest table (routes per node, busiest node) after any single write of
    the switch's make passes, and of its break passes, and the final one.  Every write is checked,
    and no node drops its ``prev.`` marker while a companion is still there."""
    sim, _ = converged(n, topology=start)
    worst = {Phase.MAKING: 0, Phase.BREAKING: 0}
    phase = [Phase.MAKING]
    in_transition: set[str] = set()

    def before(state: SimCluster, d: Decision) -> None:
        if d.phase in worst:
            phase[0] = d.phase
        in_transition.update(n for n, ns in state.nodes.items() if MARKER in ns.node.labels)

    def check(state: SimCluster, what: str) -> None:
        safe(state, what)
        worst[phase[0]] = max(worst[phase[0]], _routes(state))
        if any(is_companion(p) for p in state.peers.values()):
            dropped = {n for n in in_transition if MARKER not in state.nodes[n].node.labels}
            assert not dropped, f"after {what}: {sorted(dropped)[:3]} matched by new labels"

    sim.run(make_settings(topology), checker=check, before=before)
    return worst[Phase.MAKING], worst[Phase.BREAKING], _routes(sim)


def _routes(sim: SimCluster) -> int:
    found = fanout(build_session_graph(parse_resources(sim.calico_documents()).state))
    assert found is not None and not found.at_least
    return found.routes_per_node


@pytest.mark.parametrize(
    ("start", "topology"),
    [("single", "hierarchy"), ("single", "multi"), ("single", "quorum"), ("multi", "hierarchy")],
)
def test_no_write_of_a_break_is_heavier_than_the_make(start: str, topology: str) -> None:
    """The old peerings go in a pass of their own, before the nodes drop their
    ``prev.`` copies.  In one batch the nodes that dropped them first were matched
    by the companions under the old rules by their new labels: ``single`` ->
    ``hierarchy`` at 40 nodes held 95,832 routes per node for a moment, against
    61,620 at most while the make state was written and 747 when done."""
    make, brk, final = _switch_tables(start, topology)
    assert brk <= max(make, final), (brk, make, final)


@pytest.mark.parametrize(
    ("start", "topology"),
    [("quorum", "hierarchy"), ("hierarchy", "quorum"), ("hierarchy", "single")],
)
def test_no_node_drops_its_copy_while_old_peerings_remain(start: str, topology: str) -> None:
    """Switches whose held IDs change before the old peerings go (the state
    between would not be safe): the check inside :func:`_switch_tables`."""
    _switch_tables(start, topology, n=30)


def test_a_plan_changed_between_the_halves_of_the_break_is_made_again() -> None:
    """The second half writes the layout the first was checked for: when the plan
    changes between them, the rollout makes the new layout first (every write
    checked), never writes unconfirmed labels straight away."""
    sim, _ = converged(30, topology="single")
    seen: list[Decision] = []

    def stop_after_first_half(state: SimCluster, d: Decision) -> None:
        if d.phase == Phase.BREAKING and d.transition is not None:
            state.execute(d, checker=safe)
            raise StopIteration

    with contextlib.suppress(StopIteration):
        sim.run(make_settings("multi"), checker=safe, before=stop_after_first_half)
    assert sim.transition is not None and "oldPeeringsGone" in sim.transition
    sim.run(make_settings("multi", rrs=6), checker=safe, before=lambda _s, d: seen.append(d))
    again = seen[0]
    assert again.phase == Phase.MAKING and "plan changed" in again.message
    # the stale prev. copies go (nothing matches them any more), labels and IDs stay
    assert again.node_applies and all(
        not any(k.startswith("prev.") for k in a.labels) for a in again.node_applies
    )
    assert seen[1].phase == Phase.MAKING and seen[1].node_applies  # a fresh make
    assert any(d.phase == Phase.CONFIRMING for d in seen)
    assert sim.transition is None
    assert not any(k.startswith("prev.") for ns in sim.nodes.values() for k in ns.node.labels)
