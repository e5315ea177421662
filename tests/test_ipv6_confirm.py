"""Make-before-break's proof in a dual-stack cluster (core.operator.confirm): the
new sessions must be Established in every family, as CalicoNodeStatus reports
them (``peersV4`` from BIRD, ``peersV6`` from bird6)."""

from __future__ import annotations

from dataclasses import replace

from calico_rr.adapters.kube.ports import node_bgp_status
from calico_rr.core.formats import etcd as L
from calico_rr.core.formats.scalars import established_peers
from calico_rr.core.operator.confirm import (
    rr_peer_addresses,
    rr_peer_addresses_by_family,
    sessions_confirmed,
)
from calico_rr.core.operator.decide import reconcile
from calico_rr.core.operator.settings import OperatorSettings
from calico_rr.core.operator.state import NodeBGPStatus, Observed, Phase
from calico_rr.core.planning.config import RR_LABEL, PlanConfig
from calico_rr.core.planning.planner import Plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.testing.sim import SimCluster, status_all_established


def _settings(session_check: str = "NodeStatus") -> OperatorSettings:
    return OperatorSettings(
        plan=PlanConfig(topology="multi"),
        session_check=session_check,  # type: ignore[arg-type]
        wait_timeout=5.0,
        debounce=0.0,
        rr_label=None,
        paused=False,
    )


def _confirming(ipv4_only: float = 0.25) -> tuple[SimCluster, Observed, Plan, float]:
    """A converged dual-stack cluster whose first RR was cordoned, stopped at the
    confirmation of the replacement's sessions."""
    nodes = synthetic_cluster(24, zones=3, ip_family="dual", ipv4_only=ipv4_only)
    sim = SimCluster.of(nodes)
    s = _settings("Wait")
    sim.run(s)
    rrs = sorted(n for n, ns in sim.nodes.items() if RR_LABEL in ns.node.labels)
    sim.update(rrs[0], unschedulable=True)
    s = _settings()
    for _ in range(5):
        d = reconcile(sim.observed(), s)
        if d.phase == Phase.CONFIRMING and d.transition is None:
            break
        sim.execute(d)
    obs = replace(sim.observed(), node_status_supported=True)
    plan = reconcile(obs, s).plan
    assert plan is not None
    return sim, obs, plan, float((sim.transition or {})["madeAt"])


def test_expected_sessions_per_family() -> None:
    _sim, _, plan, _ = _confirming()
    by_family = rr_peer_addresses_by_family(plan)
    assert set(by_family) == {"ipv4", "ipv6"}
    without6 = {n.name for n in plan.nodes if n.ip6 is None}
    assert without6  # the fixture has IPv4-only nodes
    v6 = {ip for ips in by_family["ipv6"].values() for ip in ips}
    v4 = {ip for ips in by_family["ipv4"].values() for ip in ips}
    assert v6 and all(":" in ip for ip in v6)
    assert v4 and not any(":" in ip for ip in v4)
    # an IPv4-only node has IPv4 sessions and no IPv6 one
    by_ip6 = {n.ip6: n.name for n in plan.nodes if n.ip6 is not None}
    assert not {by_ip6[ip] for ip in v6} & without6
    assert {n.name for n in plan.nodes if n.ip in v4} & without6
    # the union is what one report must cover
    union = rr_peer_addresses(plan)
    for rr, ips in union.items():
        assert ips == by_family["ipv4"].get(rr, frozenset()) | by_family["ipv6"].get(
            rr, frozenset()
        )


def test_confirmation_needs_every_family() -> None:
    sim, obs, plan, made = _confirming()
    s = _settings()
    status = status_all_established(sim)
    ok, why = sessions_confirmed(replace(obs, node_status=status), s, plan, made)
    assert ok and "IPv4 and IPv6" in why
    # an RR reporting only its IPv4 peers (bird6's sessions not up): wait
    rr = sorted(rr_peer_addresses_by_family(plan)["ipv6"])[0]
    only4 = dict(status)
    only4[rr] = NodeBGPStatus(True, frozenset(ip for ip in status[rr].established if ":" not in ip))
    ok, why = sessions_confirmed(replace(obs, node_status=only4), s, plan, made)
    assert not ok and "IPv6 BGP sessions not Established" in why and "IPv4 BGP" not in why
    assert rr in why
    # one IPv4 session down and the IPv6 ones up: wait, naming IPv4
    one4 = sorted(ip for ip in status[rr].established if ":" not in ip)[0]
    less4 = dict(status)
    less4[rr] = NodeBGPStatus(True, status[rr].established - {one4})
    ok, why = sessions_confirmed(replace(obs, node_status=less4), s, plan, made)
    assert not ok and why.startswith("1 IPv4 BGP sessions not Established") and one4 in why


def test_ipv4_only_cluster_reads_as_before() -> None:
    nodes = synthetic_cluster(24, zones=3)
    sim = SimCluster.of(nodes)
    sim.run(_settings("Wait"))
    plan = reconcile(sim.observed(), _settings("Wait")).plan
    assert plan is not None
    assert set(rr_peer_addresses_by_family(plan)) == {"ipv4"}
    obs = replace(sim.observed(), node_status_supported=True, node_status={})
    status = status_all_established(sim)
    ok, why = sessions_confirmed(replace(obs, node_status=status), _settings(), plan, obs.now)
    assert ok and why == "every new BGP session is Established"


_BGP = {
    "peersV4": [
        {"peerIP": "10.0.0.2", "state": "Established"},
        {"peerIP": "10.0.0.3", "state": "Connect"},
    ],
    "peersV6": [
        {"peerIP": "fd00:0:0:0::2", "state": "Established"},
        {"peerIP": "fd00::3", "state": "Active"},
        {"peerIP": "not-an-address", "state": "Established"},
        {"state": "Established"},
    ],
}


def test_reports_read_both_families() -> None:
    # the IPv6 spelling is compressed, as the nodes' addresses are
    assert established_peers(_BGP) == {"10.0.0.2", "fd00::2"}
    assert established_peers({"peersV6": "garbage"}) == frozenset()
    doc = {"spec": {"node": "n1"}, "status": {"bgp": _BGP}}
    assert node_bgp_status(doc) == ("n1", NodeBGPStatus(True, frozenset({"10.0.0.2", "fd00::2"})))
    node, report = L.node_status_from_calico(doc)
    assert node == "n1" and report.established == {"10.0.0.2", "fd00::2"}
