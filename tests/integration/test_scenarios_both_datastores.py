"""The operator's scenario suite, written once, run on both of Calico's datastores.

Every test takes ``d``, a :class:`~tests.integration.scenario_drivers.Driver` for
``kubernetes`` (a real kube-apiserver + etcd; the operator runs as the unprivileged
``calico-rr`` user) or ``etcdv3`` (a real etcd with client-certificate TLS; the operator
is ``EtcdOperator``).  The tests act as the cluster through the driver and judge what the
datastore holds afterwards the way calico-node reads it (core.operator.safety): after every step
every running node reaches every other one, and the layout is the expected one.

Scenarios: scale up and down, an RR failing (NotReady, cordoned, deleted), a zone lost
and back, topology switches while running, the operator killed mid-transition after k
writes (several k), a user's BGPPeer and labels/annotations untouched, and leader
failover between two replicas.

After every scenario, pass or fail, the ``d`` fixture stops the replicas and runs
Calico's own calicoctl round trip on what the scenario left (issue 13 item 5,
docs/CALICO.md; tests/integration/calicoctl.py): ``calicoctl get
bgppeers|bgpconfigurations|nodes -o yaml``, then ``calicoctl replace -f`` of all of it,
with ``DATASTORE_TYPE=kubernetes`` (admin kubeconfig; crd.projectcalico.org/v1 objects
and Kubernetes Nodes) or ``DATASTORE_TYPE=etcdv3`` (the server's endpoint and client
certificate; Calico v3 documents, Nodes included).  Every object must be accepted, and
calicoctl must see the BGPPeers (ours among them) and Nodes the datastore holds, with
each RR's cluster ID.  A failure is reported at the teardown of that scenario.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from calico_rr.adapters.calico_bin import locate
from calico_rr.core.operator.safety import Safety
from calico_rr.core.operator.state import BRIDGE_LABEL, COMPANION_LABEL
from calico_rr.core.planning.config import GROUP_LABEL, RR_LABEL, SLOT_LABEL
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import MANAGED_BY_LABEL, MANAGED_BY_VALUE, ZONE_LABEL
from calico_rr.sandbox import ControlPlane, apply_crds
from calico_rr.sandbox.etcd import EtcdServer
from calico_rr.sandbox.manifests import calico_crds, install_operator_rbac

from .calicoctl import Ctl, roundtrip
from .scenario_drivers import Driver, EtcdDriver, KubeDriver, RunningOperator

pytestmark = pytest.mark.integration

DATASTORES = ["kubernetes", "etcdv3"]
BASE = {"waitTimeout": "1s", "debounce": "20ms"}
TOPOLOGY_LABEL = "calico-rr.io/topology"


@pytest.fixture(scope="module", params=DATASTORES)
def datastore(request: pytest.FixtureRequest) -> Iterator[Driver]:
    if request.param == "kubernetes":
        with ControlPlane(audit=False) as cp:
            apply_crds(cp, calico_crds("crd.projectcalico.org-v1"))
            install_operator_rbac(cp)
            from calico_rr.adapters.kube.client import KubeClient

            admin = KubeClient.from_kubeconfig(cp.admin_kubeconfig, user_agent="scenario-admin")
            kube = KubeDriver(name="kubernetes", cp=cp, admin=admin)
            try:
                yield kube
            finally:
                kube.stop_all()
                admin.close()
    else:
        with EtcdServer() as server:
            client = server.client(timeout=5.0)
            etcd = EtcdDriver(name="etcdv3", server=server, admin=client)
            try:
                yield etcd
            finally:
                etcd.stop_all()
                client.close()


@pytest.fixture(scope="module")
def calicoctl() -> Path:
    """Built on first use, cached afterwards; a failure fails the tests."""
    return locate().calicoctl


@pytest.fixture
def d(datastore: Driver, calicoctl: Path, tmp_path: Path) -> Iterator[Driver]:
    datastore.reset()
    try:
        yield datastore
        # Pass or fail: no replica writes any more (a replace racing an operator write
        # would conflict), then Calico's own client judges what the scenario left.
        datastore.stop_all()
        calicoctl_accepts(datastore, ctl_for(datastore, calicoctl, tmp_path))
    finally:
        datastore.stop_all()


def ctl_for(d: Driver, binary: Path, workdir: Path) -> Ctl:
    if isinstance(d, KubeDriver):
        return Ctl.kubernetes(binary, d.plane.admin_kubeconfig, workdir)
    assert isinstance(d, EtcdDriver)
    return Ctl.etcdv3(binary, d.etcd.env(), workdir)


def calicoctl_accepts(d: Driver, ctl: Ctl) -> None:
    """The calicoctl round trip (tests/integration/calicoctl.py) of the state a scenario
    left: zero rejections, and calicoctl sees what the datastore holds - the same
    BGPPeers (ours among them) and Nodes, and each RR's cluster ID."""
    peers, nodes = d.peers(), d.nodes()
    trip = roundtrip(ctl)
    print(f"\n{d.name}: {trip.summary()}")
    assert trip.rejections == [], f"{d.name}: calicoctl rejected:\n" + "\n".join(trip.rejections)
    assert trip.names("bgppeers") == set(peers), d.name
    assert trip.names("nodes") == set(nodes), d.name
    ours = {
        p["metadata"]["name"]
        for p in trip.objects["bgppeers"]
        if (p["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE
    }
    assert ours, f"{d.name}: calicoctl read back none of our BGPPeers"
    cids = {n: v.cluster_id for n, v in nodes.items() if v.cluster_id}
    assert cids, f"{d.name}: no route reflector left"
    seen = {
        o["metadata"]["name"]: o["spec"]["bgp"]["routeReflectorClusterID"]
        for o in trip.objects["nodes"]
        if ((o.get("spec") or {}).get("bgp") or {}).get("routeReflectorClusterID")
    }
    assert seen == cids, d.name


# -- helpers ----------------------------------------------------------------------------


def converge(d: Driver, n: int, spec: dict[str, object], *, zones: int = 3) -> RunningOperator:
    d.add_nodes(synthetic_cluster(n, zones=zones))
    d.set_config({**BASE, **spec})
    r = d.start_operator()
    d.wait_steady(r)
    check_layout(d, topology=str(spec.get("topology", "")) or None)
    return r


def check_layout(
    d: Driver, *, topology: str | None = None, cordoned: frozenset[str] = frozenset()
) -> Safety:
    """Safe, and the layout the operator promises once Steady."""
    down = d.not_ready()
    safety = d.safety(down)
    assert safety.ok, f"{d.name}: {safety.describe()}"
    nodes = d.nodes()
    rrs = sorted(n for n, v in nodes.items() if RR_LABEL in v.labels)
    assert rrs, f"{d.name}: no route reflectors"
    assert not set(rrs) & down, f"{d.name}: RRs that are down: {set(rrs) & down}"
    assert not set(rrs) & cordoned, f"{d.name}: cordoned RRs: {set(rrs) & cordoned}"
    slots = Counter(v.labels[SLOT_LABEL] for v in nodes.values() if SLOT_LABEL in v.labels)
    assert all(c == 1 for c in slots.values()), f"{d.name}: slots held twice: {slots}"
    for name, v in nodes.items():
        assert not any(k.startswith("prev.") for k in v.labels), (d.name, name, v.labels)
        if name in rrs:
            assert SLOT_LABEL in v.labels and v.cluster_id, (d.name, name, v)
        else:
            assert not v.cluster_id, (d.name, name, v.cluster_id)
            if topology == "multi" and name not in down:  # clients join a group
                assert GROUP_LABEL in v.labels, (d.name, name, v.labels)
    status = d.status()
    assert status.get("phase") == "Steady" and status.get("meshEnabled") is False, status
    assert status.get("routeReflectors") == len(rrs), (d.name, status, rrs)
    peers = d.managed_peers()
    assert peers, f"{d.name}: no BGPPeers of ours"
    for name, p in peers.items():
        labels = p["metadata"].get("labels") or {}
        assert COMPANION_LABEL not in labels and BRIDGE_LABEL not in labels, (d.name, name)
    if topology is not None:
        assert status.get("topology") == topology, (d.name, status)
        tops = {(p["metadata"].get("labels") or {}).get(TOPOLOGY_LABEL) for p in peers.values()}
        assert tops == {topology}, (d.name, tops)
    return safety


def wait_for(what: str, cond: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


def node_count(n: int) -> Callable[[RunningOperator], bool]:
    """The operator's caches hold ``n`` nodes."""
    return lambda o: o.seen_nodes() == n


def status_topology(d: Driver, topology: str) -> Callable[[RunningOperator], bool]:
    """The operator has taken up ``topology`` (its status says so)."""
    return lambda o: d.status().get("topology") == topology


# -- scenarios ----------------------------------------------------------------------------


def test_scale_up_and_down(d: Driver) -> None:
    r = converge(d, 5, {"topology": "multi", "ratio": "0.1", "minRouteReflectors": 2})
    every = synthetic_cluster(200, zones=3)
    rrs: dict[int, int] = {}
    for target in (200, 5):
        have = len(d.nodes())
        if target > have:
            d.add_nodes(every[have:target])
        else:
            for node in every[target:have]:
                d.delete_node(node.name)
        d.wait_steady(r, timeout=300, seen=node_count(target))
        assert len(d.nodes()) == target
        check_layout(d, topology="multi")
        rrs[target] = len(d.rr_nodes())
    assert rrs[200] > rrs[5] >= 2, rrs
    assert d.relists(r) == 0  # one LIST per cache, then only watches


def test_rr_failure_notready_cordoned_deleted(d: Driver) -> None:
    r = converge(d, 30, {"topology": "multi"})
    cordoned: set[str] = set()
    for event in ("notready", "cordon", "delete"):
        victim = d.rr_nodes()[0]
        slot = d.labels(victim)[SLOT_LABEL]
        if event == "notready":
            d.set_ready(victim, False)
        elif event == "cordon":
            d.cordon(victim)
            cordoned.add(victim)
        else:
            d.delete_node(victim)

        def seen(o: RunningOperator, v: str = victim, e: str = event) -> bool:
            node = o.seen_node(v)
            if e == "delete":
                return node is None
            if node is None:
                return False
            return d.is_cordoned(node) if e == "cordon" else not node.ready

        d.wait_steady(r, seen=seen)
        nodes = d.nodes()
        holders = [n for n, v in nodes.items() if v.labels.get(SLOT_LABEL) == slot]
        assert len(holders) == 1 and holders[0] != victim, (d.name, event, holders)
        if event != "delete":
            view = nodes[victim]
            left = [k for k in view.labels if k.startswith("calico-rr.io/") and k != GROUP_LABEL]
            assert not left, (d.name, event, view.labels)
            assert not view.cluster_id, (d.name, event, view)
        check_layout(d, topology="multi", cordoned=frozenset(cordoned))


def test_zone_lost_and_back(d: Driver) -> None:
    r = converge(d, 45, {"topology": "multi"})
    lost = sorted(n for n, v in d.nodes().items() if v.labels.get(ZONE_LABEL) == "zone-a")
    assert len(lost) == 15
    for name in lost:
        d.set_ready(name, False)

    def all_seen(ready: bool) -> Callable[[RunningOperator], bool]:
        def seen(o: RunningOperator) -> bool:
            return all((n := o.seen_node(name)) is not None and n.ready == ready for name in lost)

        return seen

    d.wait_steady(r, seen=all_seen(False))
    assert d.not_ready() == set(lost)
    check_layout(d, topology="multi")
    live = d.rr_nodes()
    assert len(live) >= 3 and not set(live) & set(lost), live
    for name in lost:
        d.set_ready(name, True)
    d.wait_steady(r, seen=all_seen(True))
    assert d.not_ready() == set()
    check_layout(d, topology="multi")


def test_topology_switch_while_running(d: Driver) -> None:
    r = converge(d, 60, {"topology": "single"})
    for topology in ("multi", "hierarchy", "quorum"):
        d.set_config({**BASE, "topology": topology})
        d.wait_steady(r, seen=status_topology(d, topology))
        check_layout(d, topology=topology)


@pytest.mark.parametrize("transition", ["install", "rollout"])
def test_crash_mid_transition_after_k_writes(d: Driver, transition: str) -> None:
    """A transition interrupted after k of its n layout writes, for several k: every
    state left behind is safe, and a fresh replica finishes it with the layout an
    uninterrupted run gives.  ``install``: from the full mesh to multi (bridge, labels,
    peers, mesh off last); ``rollout``: single -> multi, make-before-break."""
    nodes = synthetic_cluster(18, zones=3)

    def prepare() -> None:
        d.reset()
        d.add_nodes(nodes, sequential=True)  # the same ages, so the same RR choice
        if transition == "rollout":
            d.set_config({**BASE, "topology": "single"})
            installer = d.start_operator("installer", leader_election=False)
            d.wait_steady(installer)
            installer.stop()
        d.set_config({**BASE, "topology": "multi"})

    prepare()
    start = d.layout()
    ref = d.start_operator("reference", leader_election=False)
    d.wait_steady(ref, seen=status_topology(d, "multi"))
    ref.stop()
    reference = d.layout()
    check_layout(d, topology="multi")
    n = ref.layout_writes
    assert n >= 10, n
    ks = sorted({1, 2, n // 3, n // 2, 2 * n // 3, n - 1})
    print(f"\n{d.name}: {transition} of {n} layout writes, killed after k = {ks}")
    for k in ks:
        prepare()
        assert d.layout() == start, (d.name, k)
        dying = d.start_operator(f"dies-after-{k}", leader_election=False, budget=k)
        assert dying.exhausted.wait(60), (d.name, k, dying.stats)
        dying.kill()
        assert dying.layout_writes == k
        safety = d.safety()
        assert safety.ok, (d.name, transition, k, safety.describe())
        assert d.layout() != reference, (d.name, transition, k)  # really mid-transition
        if transition == "rollout":  # the crash-safe record of a make-before-break
            assert d.status().get("transition"), (d.name, k, d.status())
        survivor = d.start_operator(f"survivor-{k}", leader_election=False)
        d.wait_steady(survivor, since=time.monotonic())
        survivor.stop()
        assert d.layout() == reference, (d.name, transition, k)
        check_layout(d, topology="multi")


def test_users_peer_labels_and_annotations_untouched(d: Driver) -> None:
    nodes = synthetic_cluster(20, zones=2)
    nodes[0] = replace(nodes[0], labels={**nodes[0].labels, "team": "blue"})
    d.add_nodes(nodes)
    d.set_user_metadata(nodes[1].name, {"rack.example.com/row": "7"}, {"example.com/note": "x"})
    d.create_user_peer(
        "tor-router", {"owner": "netops"}, {"peerIP": "192.0.2.1", "asNumber": 65001}
    )
    before = d.peer_fingerprint("tor-router")
    assert before is not None
    d.set_config({**BASE, "topology": "multi"})
    r = d.start_operator()
    d.wait_steady(r)
    check_layout(d, topology="multi")
    # A user labels and annotates an RR after we set ours; that RR then fails, and a
    # rollout to another topology follows.
    rr = d.rr_nodes()[0]
    d.set_user_metadata(rr, {"rack.example.com/row": "9"}, {"example.com/owner": "netops"})
    victim = d.rr_nodes()[1]
    d.set_ready(victim, False)
    d.wait_steady(r, seen=lambda o: (n := o.seen_node(victim)) is not None and not n.ready)
    check_layout(d, topology="multi")
    d.set_config({**BASE, "topology": "single"})
    d.wait_steady(r, seen=status_topology(d, "single"))
    check_layout(d, topology="single")
    assert d.peer_fingerprint("tor-router") == before  # byte for byte, never rewritten
    assert "tor-router" not in d.managed_peers()
    views = d.nodes()
    assert views[nodes[0].name].labels["team"] == "blue"
    assert views[nodes[1].name].labels["rack.example.com/row"] == "7"
    assert views[nodes[1].name].annotations["example.com/note"] == "x"
    assert views[rr].labels["rack.example.com/row"] == "9"
    assert views[rr].annotations["example.com/owner"] == "netops"


def test_leader_failover(d: Driver) -> None:
    d.add_nodes(synthetic_cluster(20, zones=3))
    d.set_config({**BASE, "topology": "multi"})
    a = d.start_operator("a")
    wait_for("a to lead", lambda: a.is_leader, 15)
    b = d.start_operator("b")
    d.wait_steady(a)
    check_layout(d, topology="multi")
    wait_for("b's caches", lambda: b.op.synced, 15)
    assert not b.is_leader and d.leader() == "a"
    # only the leader writes: the follower sent nothing but leader-election requests
    assert a.layout_writes > 0
    assert b.all_writes == 0 and b.stats.writes == 0 and b.stats.reconciles == 0
    assert b.seen_nodes() == 20  # warm caches

    written = a.all_writes
    t0 = time.monotonic()
    a.kill()  # a crash: no release; b takes over when the lease runs out
    joined = synthetic_cluster(25, zones=3)[20:]
    d.add_nodes(joined)
    wait_for("b to lead", lambda: b.is_leader, 4 * d.lease_duration)
    takeover = time.monotonic() - t0
    assert takeover > d.lease_duration * 0.8 - 0.3, takeover  # not before the lease ran out
    assert takeover < 2 * d.lease_duration + 2, takeover
    print(f"\n{d.name}: takeover {takeover:.2f}s after the leader was killed")
    d.wait_steady(b, seen=node_count(25))
    assert a.all_writes == written  # the dead leader wrote nothing more
    assert b.layout_writes > 0
    assert d.leader() == "b"
    views = d.nodes()
    for node in joined:
        assert {GROUP_LABEL, RR_LABEL} & set(views[node.name].labels), views[node.name]
    check_layout(d, topology="multi")
