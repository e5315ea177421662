"""The pure reconcile (calico_rr.core.operator.reconcile), driven on an in-memory cluster.

Every test checks *every* intermediate state - after each single write - for
reachability among the running nodes (core.operator.safety, the verifier's rules), and
the crash tests stop a batch after every possible number of writes and let a
fresh reconcile pick up from what the "cluster" shows.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.selector import parse_selector
from calico_rr.core.bgp.twins import twin_pairs
from calico_rr.core.operator.confirm import sessions_confirmed
from calico_rr.core.operator.decide import reconcile
from calico_rr.core.operator.peerings import companion_selector
from calico_rr.core.operator.safety import Safety
from calico_rr.core.operator.settings import OperatorSettings
from calico_rr.core.operator.state import COMPANION_LABEL, MARKER, NodeBGPStatus, Phase
from calico_rr.core.operator.teardown import uninstall
from calico_rr.core.planning.config import GROUP_LABEL, RR_LABEL, SLOT_LABEL, PlanConfig
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import ANN_CLUSTER_ID, Node
from calico_rr.testing.sim import Checker, Crash, SimCluster, status_all_established


def make_settings(topology: str = "multi", **kw: object) -> OperatorSettings:
    plan = PlanConfig(topology=topology, **kw)  # type: ignore[arg-type]
    return OperatorSettings(
        plan=plan,
        session_check="Wait",
        wait_timeout=5.0,
        debounce=0.0,
        rr_label=None,
        paused=False,
    )


def running_safety(sim: SimCluster) -> Safety:
    """Reachability among the running nodes that have been given peerings.
    (A node that just joined has none until its first write: nothing to lose.)"""
    fresh = set() if sim.mesh_enabled else sim.joined
    return sim.safety(sim.down() | fresh)


def safe(sim: SimCluster, what: str) -> None:
    """Every running node that has been given peerings reaches every other one."""
    report = running_safety(sim)
    assert report.ok, f"after {what}: {report.describe()}"
    # nor does any step leave a pair with two BIRD protocols on both ends (core.bgp.twins)
    twins = twin_pairs(parse_resources(sim.calico_documents()).state)
    assert twins.count == 0, f"after {what}: twin protocols {twins}"


def converged(
    n: int = 30, zones: int = 3, topology: str = "multi"
) -> tuple[SimCluster, OperatorSettings]:
    sim = SimCluster.of(synthetic_cluster(n, zones=zones))
    s = make_settings(topology)
    sim.run(s, checker=safe)
    return sim, s


def joiner(sim: SimCluster, index: int, zones: int = 3) -> Node:
    node = synthetic_cluster(index + 1, zones=zones)[-1]
    assert node.name not in sim.nodes
    return node


# -- selectors ------------------------------------------------------------------


def test_companion_selector_matches_old_and_prev_labels() -> None:
    text = companion_selector(f"{GROUP_LABEL} == 'g1'")
    sel = parse_selector(text)
    assert sel.matches({GROUP_LABEL: "g1"})
    assert sel.matches({MARKER: "true", f"prev.{GROUP_LABEL}": "g1", GROUP_LABEL: "g2"})
    assert not sel.matches({f"prev.{GROUP_LABEL}": "g1"})  # no marker: not in a transition
    assert not sel.matches({GROUP_LABEL: "g2"})


def test_companion_selector_negation_only_hits_transitioning_nodes() -> None:
    sel = parse_selector(companion_selector(f"!has({RR_LABEL})"))
    assert sel.matches({})  # a plain client, as before
    assert not sel.matches({RR_LABEL: "true"})
    # An old RR in the make state: it lacks the RR label now, matched via the old part;
    # a new RR in the make state that was a client before is matched through prev.
    assert sel.matches({MARKER: "true", RR_LABEL: "true"})
    assert not sel.matches({MARKER: "true", RR_LABEL: "true", f"prev.{RR_LABEL}": "true"})


# -- converging -------------------------------------------------------------------


@pytest.mark.parametrize("topology", ["single", "multi", "quorum", "hierarchy"])
def test_migration_from_full_mesh_switches_the_mesh_off_last(topology: str) -> None:
    sim = SimCluster.of(synthetic_cluster(40, zones=3))
    s = make_settings(topology)
    decisions = sim.run(s, checker=safe)
    phases = [d.phase for d in decisions]
    assert phases[-1] == Phase.STEADY
    assert Phase.MESH_OFF in phases
    assert sim.log[-3:] == ["mesh False", "status clear", "delete bgppeer calico-rr-bridge"]
    assert not sim.mesh_enabled
    # the bridge came first, every node write happened while the mesh was still on
    assert sim.log[0] == "apply bgppeer calico-rr-bridge"
    assert sim.log.index("mesh False") > max(
        i for i, w in enumerate(sim.log) if w.startswith("apply")
    )
    assert sim.transition is None
    # the final state is the plan, and the plan verifies
    final = reconcile(sim.observed(), s)
    assert final.phase == Phase.STEADY and final.writes == 0
    assert sim.safety().ok


def test_mesh_stays_on_until_the_wait_is_over() -> None:
    sim = SimCluster.of(synthetic_cluster(20, zones=2))
    s = make_settings("multi")
    d = reconcile(sim.observed(), s)
    sim.execute(d)
    d = reconcile(sim.observed(), s)
    assert d.phase == Phase.CONFIRMING
    sim.execute(d)
    sim.now += 4.9
    d = reconcile(sim.observed(), s)
    assert d.phase == Phase.CONFIRMING and d.mesh is None
    sim.now += 0.2
    d = reconcile(sim.observed(), s)
    assert d.phase == Phase.MESH_OFF and d.mesh is False


def test_join_in_steady_state_is_one_write() -> None:
    sim, s = converged(30)
    node = joiner(sim, 30)
    sim.add(node)
    before = sim.writes
    d = reconcile(sim.observed(), s)
    assert d.phase == Phase.APPLYING
    assert [a.name for a in d.node_applies] == [node.name]
    assert d.writes == 1 and not d.peer_applies
    sim.execute(d, checker=safe)
    assert reconcile(sim.observed(), s).phase == Phase.STEADY
    assert sim.writes - before == 1


def test_burst_of_joins_is_one_batch() -> None:
    sim, s = converged(30)
    new = synthetic_cluster(130, zones=3)[30:]
    for n in new:
        sim.add(n)
    d = reconcile(sim.observed(), s)
    assert d.phase == Phase.APPLYING and len(d.node_applies) == 100
    sim.execute(d, checker=safe)
    assert reconcile(sim.observed(), s).phase == Phase.STEADY


def rr_nodes(sim: SimCluster) -> list[str]:
    return sorted(n for n, ns in sim.nodes.items() if RR_LABEL in ns.node.labels)


@pytest.mark.parametrize("topology", ["single", "multi", "quorum", "hierarchy"])
@pytest.mark.parametrize("event", ["notready", "cordon", "delete"])
def test_rr_failure_never_cuts_a_node_off(topology: str, event: str) -> None:
    sim, s = converged(30, topology=topology)
    victim = rr_nodes(sim)[0]
    slot = sim.nodes[victim].node.labels[SLOT_LABEL]
    if event == "notready":
        sim.set_ready(victim, False)
    elif event == "cordon":
        sim.update(victim, unschedulable=True)
    else:
        sim.remove(victim)
    first = reconcile(sim.observed(), s)
    # the successor takes the slot in the very first batch (before any wait)
    successors = [a.name for a in first.node_applies if a.labels.get(SLOT_LABEL) == slot]
    assert len(successors) == 1 and successors[0] != victim
    decisions = sim.run(s, checker=safe)
    holders = [n for n, ns in sim.nodes.items() if ns.node.labels.get(SLOT_LABEL) == slot]
    assert holders == successors
    if event != "delete":
        assert [d.phase for d in decisions][:1] == [Phase.MAKING]
        labels = sim.nodes[victim].node.labels
        assert RR_LABEL not in labels and not any(k.startswith("prev.") for k in labels)
        assert ANN_CLUSTER_ID not in sim.nodes[victim].node.annotations
    assert not any(COMPANION_LABEL in p["metadata"]["labels"] for p in sim.peers.values())


def test_rollout_waits_before_breaking() -> None:
    sim, s = converged(30)
    victim = rr_nodes(sim)[0]
    sim.update(victim, unschedulable=True)
    make = reconcile(sim.observed(), s)
    assert make.phase == Phase.MAKING and make.transition is not None
    sim.execute(make, checker=safe)
    # both the old holder and its successor hold the slot now
    slot = sim.nodes[victim].node.labels.get(f"prev.{SLOT_LABEL}")
    assert slot is not None
    d = reconcile(sim.observed(), s)
    assert d.phase == Phase.CONFIRMING
    sim.execute(d)
    sim.now += 1.0
    assert reconcile(sim.observed(), s).phase == Phase.CONFIRMING
    sim.now += 5.0
    brk = reconcile(sim.observed(), s)
    assert brk.phase == Phase.BREAKING
    assert any(n.name == victim for n in brk.node_applies)


def test_zone_loss() -> None:
    sim, s = converged(45)
    lost = [
        n
        for n, ns in sim.nodes.items()
        if ns.node.labels.get("topology.kubernetes.io/zone", "").endswith("a")
    ]
    assert lost
    for n in lost:
        sim.set_ready(n, False)
    sim.run(s, checker=safe)
    live_rrs = [n for n in rr_nodes(sim) if n not in lost]
    assert len(live_rrs) >= 3


@pytest.mark.parametrize(
    "path", [("single", "multi", "hierarchy"), ("hierarchy", "quorum", "single")]
)
def test_topology_switch_while_running(path: tuple[str, ...]) -> None:
    sim, s = converged(60, topology=path[0])
    for topo in path[1:]:
        s = make_settings(topo)
        decisions = sim.run(s, checker=safe)
        assert decisions[0].phase == Phase.MAKING
        names = {p["metadata"]["name"] for p in sim.peers.values()}
        assert all(
            p["metadata"]["labels"]["calico-rr.io/topology"] == topo for p in sim.peers.values()
        ), names


def test_scale_up_and_down() -> None:
    sim, s = converged(5, zones=0)
    for target in (50, 200, 50, 5):
        current = len(sim.nodes)
        if target > current:
            for n in synthetic_cluster(target)[current:]:
                sim.add(n)
        else:
            for name in sorted(sim.nodes)[target:]:
                sim.remove(name)
        sim.run(s, checker=safe)
        assert len(sim.nodes) == target
        assert reconcile(sim.observed(), s).phase == Phase.STEADY


def test_user_labels_and_peers_untouched() -> None:
    nodes = synthetic_cluster(20, zones=2)
    nodes[0] = replace(nodes[0], labels={**nodes[0].labels, "team": "blue"})
    sim = SimCluster.of(nodes)
    user_peer = {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "BGPPeer",
        "metadata": {"name": "tor-router", "labels": {}},
        "spec": {"peerIP": "192.0.2.1", "asNumber": 65001},
    }
    sim.peers["tor-router"] = dict(user_peer)
    s = make_settings("multi")
    sim.run(s, checker=safe)
    sim.set_ready(rr_nodes(sim)[0], False)
    sim.run(s, checker=safe)
    assert sim.peers["tor-router"] == user_peer
    assert sim.nodes[nodes[0].name].node.labels["team"] == "blue"
    assert "tor-router" not in sim.log and not any("tor-router" in w for w in sim.log)


def test_cluster_id_set_by_a_user_is_not_removed() -> None:
    nodes = synthetic_cluster(12)
    nodes[5] = replace(nodes[5], annotations={ANN_CLUSTER_ID: "10.9.9.9"})
    sim = SimCluster.of(nodes)
    sim.run(make_settings("single"), checker=None)
    assert sim.nodes[nodes[5].name].node.annotations[ANN_CLUSTER_ID] == "10.9.9.9"


# -- crashes -----------------------------------------------------------------------


def writes_of_run(sim: SimCluster, s: OperatorSettings) -> int:
    probe = sim.clone()
    probe.run(s)
    return probe.writes


@pytest.mark.parametrize("scenario", ["cordon", "switch"])
def test_killed_at_every_write_resumes_safely(scenario: str) -> None:
    base, s = converged(18, topology="multi")
    if scenario == "cordon":
        base.update(rr_nodes(base)[0], unschedulable=True)
        target = s
    else:
        target = make_settings("hierarchy")
    total = writes_of_run(base, target)
    assert total > 3
    finals = set()
    for k in range(total):
        sim = base.clone()
        try:
            for _ in range(100):
                d = reconcile(sim.observed(), target)
                if d.phase == Phase.STEADY:
                    break
                sim.execute(d, budget=k - (sim.writes - base.writes), checker=safe)
                if d.requeue_after:
                    sim.now += d.requeue_after
        except Crash:
            pass
        # "restart": a new operator with no memory, reading the cluster
        sim.run(target, checker=safe)
        finals.add(
            tuple(sorted((n, tuple(sorted(ns.node.labels.items()))) for n, ns in sim.nodes.items()))
        )
        assert sim.transition is None
        assert not any(k.startswith("prev.") for ns in sim.nodes.values() for k in ns.node.labels)
    assert len(finals) == 1  # every restart point ends in the same layout


# -- confirmation with CalicoNodeStatus --------------------------------------------------


def test_node_status_gates_the_break() -> None:
    sim, _ = converged(24)
    s = replace(make_settings("multi"), session_check="NodeStatus")
    sim.update(rr_nodes(sim)[0], unschedulable=True)
    for _ in range(5):
        d = reconcile(sim.observed(), s)
        if d.phase == Phase.CONFIRMING and d.transition is None:
            break
        sim.execute(d)
    obs = replace(sim.observed(), node_status_supported=True)
    made = float((sim.transition or {})["madeAt"])
    # nothing reported: never break in NodeStatus mode, however long we wait
    ok, why = sessions_confirmed(replace(obs, now=made + 999), s, reconcile(obs, s).plan, made)  # type: ignore[arg-type]
    assert not ok and "CalicoNodeStatus" in why
    # everything Established: break
    status = status_all_established(sim)
    ok, _ = sessions_confirmed(replace(obs, node_status=status), s, reconcile(obs, s).plan, made)  # type: ignore[arg-type]
    assert ok
    # one RR still missing a session: wait
    rr = next(n for n in rr_nodes(sim) if n in status and status[n].established)
    some = sorted(status[rr].established)[0]
    status[rr] = NodeBGPStatus(True, status[rr].established - {some})
    ok, why = sessions_confirmed(replace(obs, node_status=status), s, reconcile(obs, s).plan, made)  # type: ignore[arg-type]
    assert not ok and "not Established" in why


# -- property: random event sequences stay safe ---------------------------------------


@settings(deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["join", "notready", "ready", "cordon", "delete", "topology"]),
            st.integers(0, 10_000),
        ),
        min_size=1,
        max_size=6,
    ),
    st.sampled_from(["single", "multi", "quorum", "hierarchy"]),
)
def test_random_events_never_cut_a_node_off(events: list[tuple[str, int]], topology: str) -> None:
    sim, s = converged(18, topology=topology)
    count = 18
    for event, pick in events:
        names = sorted(sim.nodes)
        victim = names[pick % len(names)]
        if event == "join":
            sim.add(joiner(sim, count))
            count += 1
        elif event == "notready":
            sim.set_ready(victim, False)
        elif event == "ready":
            sim.set_ready(victim, True)
        elif event == "cordon":
            sim.update(victim, unschedulable=True)
        elif event == "delete" and len(names) > 6:
            sim.remove(victim)
        elif event == "topology":
            s = make_settings(["single", "multi", "quorum", "hierarchy"][pick % 4])
        sim.run(s, checker=no_worse(sim))
        final = reconcile(sim.observed(), s)
        assert final.phase == Phase.STEADY and final.writes == 0
        assert running_safety(sim).ok, running_safety(sim).describe()


def no_worse(sim: SimCluster) -> Checker:
    """A checker for after an event: the event itself may have cut a node off (the
    only healthy RR of a rack went down, say: found by this test, events
    [notready, cordon, delete, delete, notready, notready] on hierarchy), which no
    write can have prevented.  Then no write may make it worse, and once the
    operator is Steady every running node must reach every other (asserted by the
    caller).  From a safe state every write must keep it safe, as :func:`safe`."""
    last = [running_safety(sim)]

    def check(sim: SimCluster, what: str) -> None:
        report, before = running_safety(sim), last[0]
        if before.ok:
            safe(sim, what)
        else:
            why = f"after {what}: {report.describe()}"
            assert report.missing_pairs <= before.missing_pairs, why
            assert set(report.isolated) <= set(before.isolated), why
        last[0] = report

    return check


def test_mesh_stays_on_when_no_node_can_be_an_rr() -> None:
    nodes = [replace(n, unschedulable=True) for n in synthetic_cluster(10)]
    sim = SimCluster.of(nodes)
    s = make_settings("multi")
    for _ in range(10):
        d = reconcile(sim.observed(), s)
        sim.execute(d)
        sim.now += 10
    assert d.phase == Phase.BLOCKED and "no route reflector" in d.message
    assert sim.mesh_enabled


def run_uninstall(sim: SimCluster, s: OperatorSettings, mesh_before: bool | None) -> list[Phase]:
    phases = []
    for _ in range(100):
        d = uninstall(sim.observed(), s, mesh_before=mesh_before)
        phases.append(d.phase)
        if d.phase == Phase.UNINSTALLED and not d.writes and not d.transition_set:
            return phases
        sim.execute(d, checker=safe)
        sim.now += d.requeue_after or 0.5
    raise AssertionError("uninstall did not finish")


@pytest.mark.parametrize("topology", ["single", "multi", "quorum", "hierarchy"])
def test_uninstall_restores_the_mesh_first_and_removes_everything(topology: str) -> None:
    sim, s = converged(30, topology=topology)
    user_peer = {"apiVersion": "x", "kind": "BGPPeer", "metadata": {"name": "tor"}, "spec": {}}
    sim.peers["tor"] = user_peer
    start = len(sim.log)
    run_uninstall(sim, s, mesh_before=True)
    log = [w for w in sim.log[start:] if not w.startswith("status")]
    assert sim.mesh_enabled
    assert log.index("mesh True") < min(i for i, w in enumerate(log) if w.startswith("apply node"))
    assert log[-1] == "delete bgppeer calico-rr-bridge"
    assert list(sim.peers) == ["tor"]
    for ns in sim.nodes.values():
        assert not ns.owned_labels and not ns.owned_annotations
        assert not any(k.startswith(("calico-rr.io/", "prev.")) for k in ns.node.labels)
        assert ANN_CLUSTER_ID not in ns.node.annotations


def strictly_safe(sim: SimCluster, what: str) -> None:
    """Every running node reaches every other one, newcomers included."""
    report = sim.safety(sim.down())
    assert report.ok, f"after {what}: {report.describe()}"


def test_uninstall_switches_the_mesh_on_even_when_it_was_off_before() -> None:
    """Issue 14: leaving the mesh off with our peerings gone cut every node off (the
    operator cannot see a user's own peerings), so the mesh always comes back."""
    sim, s = converged(12, topology="single")
    start = len(sim.log)
    last = None
    for _ in range(100):
        d = uninstall(sim.observed(), s, mesh_before=False)
        last = d
        if d.phase == Phase.UNINSTALLED and not d.writes and not d.transition_set:
            break
        sim.execute(d, checker=strictly_safe)
        sim.now += d.requeue_after or 0.5
    assert last is not None and last.phase == Phase.UNINSTALLED
    assert sim.mesh_enabled
    log = [w for w in sim.log[start:] if not w.startswith("status")]
    assert log.index("mesh True") < min(i for i, w in enumerate(log) if w.startswith("apply node"))
    assert "off before calico-rr" in last.message


def test_uninstall_in_the_middle_of_a_rollout() -> None:
    sim, s = converged(24)
    sim.update(rr_nodes(sim)[0], unschedulable=True)
    sim.execute(reconcile(sim.observed(), s), checker=safe)  # the make state
    assert any(k.startswith("prev.") for ns in sim.nodes.values() for k in ns.node.labels)
    run_uninstall(sim, s, mesh_before=True)
    assert sim.mesh_enabled and not any(
        k.startswith(("calico-rr.io/", "prev."))
        for ns in sim.nodes.values()
        for k in ns.node.labels
    )


def test_paused_writes_nothing() -> None:
    sim = SimCluster.of(synthetic_cluster(10))
    d = reconcile(sim.observed(), replace(make_settings("multi"), paused=True))
    assert d.phase == Phase.PAUSED and d.writes == 0


@pytest.mark.parametrize("topology", ["single", "multi"])
def test_rollout_that_would_leave_no_rr_is_held_with_the_mesh_off(topology: str) -> None:
    """With the mesh off, a new config under which no node may be an RR (a
    dedicated label nobody has) must not remove the RRs that exist: the rollout
    stops in its make state (old peerings kept), Blocked, safe at every write."""
    sim, s = converged(20, topology=topology)
    assert not sim.mesh_enabled
    rrs = {n for n, ns in sim.nodes.items() if ANN_CLUSTER_ID in ns.node.annotations}
    assert rrs
    bad = make_settings(topology, dedicated_label="nobody-has-this")
    last = None
    for _ in range(40):
        last = reconcile(sim.observed(), bad)
        sim.execute(last, checker=safe)
        sim.now += last.requeue_after or 1.0
    assert last is not None and last.phase == Phase.BLOCKED
    assert "no route reflector" in last.message
    assert rrs <= {n for n, ns in sim.nodes.items() if ANN_CLUSTER_ID in ns.node.annotations}
    # fixing the config resumes and converges to a safe layout
    sim.run(s, checker=safe)
    assert reconcile(sim.observed(), s).phase == Phase.STEADY
