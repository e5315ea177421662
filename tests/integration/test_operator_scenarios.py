"""The operator's acceptance scenarios on a real kube-apiserver + etcd.

Every scenario runs twice: with Calico's ``crd.projectcalico.org/v1`` CRDs and
with the ``projectcalico.org/v3`` ones (the operator must pick the group by
Calico's own rule).  The operator runs in-process as the unprivileged
``calico-rr`` user with the RBAC from deploy/; the tests act as the cluster
(creating nodes, failing them) with the admin user, and read the result back the
way calico-node would (core.operator.safety / the verifier).

Calico's own client judges the end state too (issue 13 item 5, docs/CALICO.md): after
each ``crd.projectcalico.org-v1`` scenario, pass or fail, the ``cluster`` fixture stops
the operators and runs the calicoctl round trip (tests/integration/calicoctl.py:
``calicoctl get bgppeers|bgpconfigurations|nodes -o yaml``, then ``calicoctl replace
-f`` of all of it) against that scenario's API server, with the admin kubeconfig.  Every
object must be accepted, and calicoctl must see what the API server holds: the same
BGPPeers (ours among them) and Nodes, each RR's cluster-ID annotation as
``spec.bgp.routeReflectorClusterID``.  A failure is reported at the teardown of the
scenario that left the state.  The API server holds ``calico_crds()``, a newer Calico's
CRDs than our calicoctl v3.28; calicoctl reads objects through the REST API and not
the CRD schemas, so the newer CRDs make no difference to it.

The ``projectcalico.org-v3`` variant gets no round trip: calicoctl v3.28 in
Kubernetes-datastore mode talks to ``crd.projectcalico.org/v1`` only (its client is
built for that group and version, ``buildCRDClientV1`` in
libcalico-go/lib/backend/k8s/k8s.go), and this API server serves no
``crd.projectcalico.org`` group.  In v3.28 ``projectcalico.org/v3`` exists only as
Calico's aggregated API server, which would store into ``crd.projectcalico.org/v1``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import pytest

from calico_rr.adapters.calico_bin import locate
from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.demo import cluster_documents, create_nodes, ready_status
from calico_rr.adapters.kube.operator import Operator
from calico_rr.core.operator.safety import Safety, check
from calico_rr.core.planning.config import GROUP_LABEL, RR_LABEL, SLOT_LABEL
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import ANN_CLUSTER_ID, MANAGED_BY_LABEL, MANAGED_BY_VALUE, ZONE_LABEL, Node
from calico_rr.sandbox import ControlPlane, apply_crds
from calico_rr.sandbox.manifests import apply_documents, calico_crds, install_operator_rbac
from calico_rr.testing.faults import FaultTransport

from .calicoctl import Ctl, roundtrip
from .scenario_drivers import WriteBudget

pytestmark = pytest.mark.integration

CONFIG = "/apis/calico-rr.io/v1alpha1/routereflectorconfigs/default"
WRITES = frozenset({"create", "update", "patch", "delete"})


@dataclass
class Cluster:
    cp: ControlPlane
    admin: KubeClient
    group: str  # API version the operator must pick
    ops: list[Operator] = field(default_factory=list)

    # -- acting as the cluster ------------------------------------------------------

    def add(self, nodes: list[Node]) -> None:
        create_nodes(self.admin, nodes)

    def set_ready(self, name: str, ready: bool) -> None:
        self.admin.patch(api_path("v1", "nodes", name) + "/status", ready_status(ready))

    def cordon(self, name: str) -> None:
        self.admin.patch(api_path("v1", "nodes", name), {"spec": {"unschedulable": True}})

    def delete(self, name: str) -> None:
        self.admin.delete(api_path("v1", "nodes", name))

    def config(self, spec: dict[str, Any]) -> None:
        apply_documents(
            self.cp,
            [
                {
                    "apiVersion": "calico-rr.io/v1alpha1",
                    "kind": "RouteReflectorConfig",
                    "metadata": {"name": "default"},
                    "spec": spec,
                }
            ],
        )

    def status(self) -> dict[str, Any]:
        return dict((self.admin.get(CONFIG) or {}).get("status") or {})

    # -- the operator ----------------------------------------------------------------

    def operator(
        self,
        *,
        identity: str = "op",
        wrap: Callable[[httpx.BaseTransport], httpx.BaseTransport] | None = None,
        env: dict[str, str] | None = None,
        leader_election: bool = True,
    ) -> Operator:
        client = KubeClient.from_kubeconfig(
            self.cp.operator_kubeconfig, wrap_transport=wrap, backoff_base=0.02, backoff_max=0.5
        )
        op = Operator(
            client,
            identity=identity,
            env=env or {},
            lease_duration=3.0,
            leader_election=leader_election,
        )
        self.ops.append(op)
        op.start()
        assert op.api_group == self.group
        return op

    def steady(
        self,
        op: Operator,
        since: float = 0.0,
        timeout: float = 120.0,
        *,
        seen: Callable[[Operator], bool] | None = None,
    ) -> float:
        """Wait for Steady with the mesh off, reached after ``since``.

        With ``seen``: first wait until the operator's caches show the change
        (``seen(op)``), then for a whole reconcile pass that started after that and
        left the layout Steady - a change that needs no write never leaves Steady.
        """
        start = time.monotonic()
        if seen is not None:
            while not seen(op):
                if time.monotonic() - start > timeout:
                    raise AssertionError("the operator's caches never showed the change")
                time.sleep(0.02)
            since = time.monotonic()
        while time.monotonic() - start < timeout:
            st = self.status()
            stats = op.stats
            if seen is not None:
                fresh = stats.last_start > since and stats.last_end > stats.last_start
            else:
                fresh = stats.steady_since is not None and stats.steady_since >= since
            if (
                fresh
                and stats.last_phase == "Steady"
                and st.get("phase") == "Steady"
                and st.get("meshEnabled") is False
            ):
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(
            f"not steady after {timeout}s: {op.stats.last_message} {self.status()}"
        )

    def stop_operators(self) -> None:
        """Stop every replica (idempotent); a stopped one makes no more writes."""
        for op in self.ops:
            op.stop(release=False)

    # -- reading the result back -------------------------------------------------------

    def nodes(self) -> dict[str, dict[str, Any]]:
        items, _ = self.admin.list(api_path("v1", "nodes"))
        return {o["metadata"]["name"]: o for o in items}

    def labels(self, name: str) -> dict[str, str]:
        return dict(self.nodes()[name]["metadata"].get("labels") or {})

    def peers(self) -> dict[str, dict[str, Any]]:
        items, _ = self.admin.list(api_path(self.group, "bgppeers"))
        return {o["metadata"]["name"]: o for o in items}

    def rr_nodes(self) -> list[str]:
        return sorted(
            n for n, o in self.nodes().items() if RR_LABEL in (o["metadata"].get("labels") or {})
        )

    def safety(self, down: set[str] | None = None) -> Safety:
        nodes = self.nodes()
        if down is None:
            down = {
                n
                for n, o in nodes.items()
                if not any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (o.get("status") or {}).get("conditions") or []
                )
            }
        return check(cluster_documents(self.admin, self.group), down)

    def audit_writes(self, start: int = 0) -> list[dict[str, Any]]:
        events = self.cp.audit_events("calico-rr")[start:]
        return [e for e in events if e.get("verb") in WRITES]


@pytest.fixture(params=["crd.projectcalico.org-v1", "projectcalico.org-v3"])
def cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    group = {"crd.projectcalico.org-v1": "crd.projectcalico.org/v1"}.get(
        request.param, "projectcalico.org/v3"
    )
    # calicoctl reads crd.projectcalico.org/v1 only (module docstring); built or found
    # before the scenario runs, so a missing binary fails it at setup.
    calicoctl = locate().calicoctl if group == "crd.projectcalico.org/v1" else None
    with ControlPlane(audit=True) as cp:
        apply_crds(cp, calico_crds(request.param))
        install_operator_rbac(cp)
        admin = KubeClient.from_kubeconfig(cp.admin_kubeconfig)
        c = Cluster(cp, admin, group)
        try:
            yield c
            # The scenario passed or failed; either way no operator writes any more
            # (a replace racing an operator write would conflict), then Calico's own
            # client reads back and re-validates what the scenario left.
            c.stop_operators()
            if calicoctl is not None:
                ctl = Ctl.kubernetes(calicoctl, cp.admin_kubeconfig, tmp_path_factory.mktemp("ctl"))
                calicoctl_accepts(c, ctl)
        finally:
            c.stop_operators()
            admin.close()


def calicoctl_accepts(c: Cluster, ctl: Ctl) -> None:
    """``calicoctl get`` + ``replace`` of the BGPPeers, BGPConfigurations and Nodes the
    scenario left: zero rejections, and calicoctl sees what the API server holds - our
    BGPPeers (at least one) and each RR's cluster ID as ``spec.bgp``."""
    peers, nodes = c.peers(), c.nodes()
    trip = roundtrip(ctl)
    print(f"\n{trip.summary()}")
    assert trip.rejections == [], "calicoctl rejected:\n" + "\n".join(trip.rejections)
    assert trip.names("bgppeers") == set(peers)
    assert trip.names("nodes") == set(nodes)
    ours = {
        p["metadata"]["name"]
        for p in trip.objects["bgppeers"]
        if (p["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE
    }
    assert ours, f"calicoctl read back none of our BGPPeers: {sorted(trip.names('bgppeers'))}"
    cids = {
        n: o["metadata"]["annotations"][ANN_CLUSTER_ID]
        for n, o in nodes.items()
        if ANN_CLUSTER_ID in (o["metadata"].get("annotations") or {})
    }
    assert cids, "no route reflector left"
    seen = {
        o["metadata"]["name"]: o["spec"]["bgp"]["routeReflectorClusterID"]
        for o in trip.objects["nodes"]
        if ((o.get("spec") or {}).get("bgp") or {}).get("routeReflectorClusterID")
    }
    assert seen == cids


def converge(c: Cluster, n: int, *, zones: int = 3, spec: dict[str, Any] | None = None) -> Operator:
    c.add(synthetic_cluster(n, zones=zones))
    c.config({"waitTimeout": "1s", "debounce": "50ms", **(spec or {})})
    op = c.operator()
    c.steady(op)
    assert c.safety().ok
    return op


# -- scenarios ------------------------------------------------------------------------


def test_scale_5_500_5000_and_back(cluster: Cluster) -> None:
    c = cluster
    op = converge(c, 5, zones=3)
    sizes = [5, 500, 5000, 500, 5]
    every = synthetic_cluster(max(sizes), zones=3)
    rrs: dict[int, int] = {}
    for target in sizes[1:]:
        have = len(c.nodes())
        if target > have:
            c.add(every[have:target])
        else:
            for node in every[target:have]:
                c.delete(node.name)
        c.steady(op, timeout=900, seen=lambda o, t=target: len(o.informers["nodes"]) == t)
        safety = c.safety()
        assert safety.ok, safety.describe()
        assert len(c.nodes()) == target
        rrs[target] = len(c.rr_nodes())
    assert rrs[5000] > rrs[500] >= 3
    # One LIST per informer; after that only a 410 (a quiet resource whose watch
    # outlived etcd's compaction of its resourceVersion) may cause a re-LIST.
    gone = sum(inf.gone for inf in op.informers.values())
    assert op.lists() == len(op.informers) + gone
    peers = [p for p in c.peers().values()]
    assert len(peers) <= 100


def test_rr_notready_cordoned_deleted(cluster: Cluster) -> None:
    c = cluster
    op = converge(c, 30, spec={"topology": "multi"})
    for event in ("notready", "cordon", "delete"):
        victim = c.rr_nodes()[0]
        slot = c.labels(victim)[SLOT_LABEL]
        if event == "notready":
            c.set_ready(victim, False)
        elif event == "cordon":
            c.cordon(victim)
        else:
            c.delete(victim)

        def seen(o: Operator, v: str = victim, e: str = event) -> bool:
            state = o.informers["nodes"].get(v)
            if e == "delete":
                return state is None
            if state is None:
                return False
            return bool(state.node.unschedulable) if e == "cordon" else not state.node.ready

        c.steady(op, seen=seen)
        holders = [
            n
            for n, o in c.nodes().items()
            if (o["metadata"].get("labels") or {}).get(SLOT_LABEL) == slot
        ]
        assert len(holders) == 1 and holders[0] != victim, (event, holders)
        if event != "delete":
            meta = c.nodes()[victim]["metadata"]
            assert not any(
                k.startswith(("calico-rr.io/", "prev.calico-rr.io/")) and k != GROUP_LABEL
                for k in meta.get("labels") or {}
            )
            assert ANN_CLUSTER_ID not in (meta.get("annotations") or {})
        safety = c.safety()
        assert safety.ok, (event, safety.describe())
    assert not any("companion" in str(p["metadata"].get("labels")) for p in c.peers().values())


def test_zone_lost(cluster: Cluster) -> None:
    c = cluster
    op = converge(c, 45, spec={"topology": "multi"})
    lost = [
        n
        for n, o in c.nodes().items()
        if (o["metadata"].get("labels") or {}).get(ZONE_LABEL) == "zone-a"
    ]
    mark = time.monotonic()
    for name in lost:
        c.set_ready(name, False)
    c.steady(op, since=mark)
    live = [n for n in c.rr_nodes() if n not in lost]
    assert len(live) >= 3
    safety = c.safety(set(lost))
    assert safety.ok, safety.describe()


def test_topology_switch_while_running(cluster: Cluster) -> None:
    c = cluster
    op = converge(c, 60, spec={"topology": "single"})
    for topology in ("multi", "hierarchy"):
        mark = time.monotonic()
        c.config({"waitTimeout": "1s", "debounce": "50ms", "topology": topology})
        c.steady(op, since=mark)
        assert c.status()["topology"] == topology
        labels = {p["metadata"]["labels"].get("calico-rr.io/topology") for p in c.peers().values()}
        assert labels == {topology}
        safety = c.safety()
        assert safety.ok, safety.describe()
        assert not any(
            k.startswith("prev.")
            for o in c.nodes().values()
            for k in o["metadata"].get("labels") or {}
        )


def test_full_mesh_migration_switches_the_mesh_off_last(cluster: Cluster) -> None:
    c = cluster
    c.add(synthetic_cluster(40, zones=3))
    # A running full-mesh cluster: BGPConfiguration says so, with a user's own field.
    c.admin.create(
        api_path(c.group, "bgpconfigurations"),
        {
            "apiVersion": c.group,
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {"nodeToNodeMeshEnabled": True, "logSeverityScreen": "Info"},
        },
    )
    c.config({"waitTimeout": "1s", "topology": "multi"})
    op = c.operator()
    c.steady(op)
    writes = [
        (
            e["verb"],
            (e.get("objectRef") or {}).get("resource"),
            (e.get("objectRef") or {}).get("name"),
        )
        for e in c.audit_writes()
    ]
    mesh_at = [i for i, w in enumerate(writes) if w[1] == "bgpconfigurations"]
    assert len(mesh_at) == 1
    last_layout = max(
        i
        for i, w in enumerate(writes)
        if w[1] == "nodes" or (w[1] == "bgppeers" and w[0] == "patch")
    )
    assert mesh_at[0] > last_layout  # the mesh went off after every node and peer write
    bridge = [i for i, w in enumerate(writes) if w[2] == "calico-rr-bridge"]
    assert bridge[0] < min(i for i, w in enumerate(writes) if w[1] == "nodes")
    assert writes[bridge[-1]][0] == "delete" and bridge[-1] > mesh_at[0]
    cfg = c.admin.get(api_path(c.group, "bgpconfigurations", "default")) or {}
    assert cfg["spec"]["nodeToNodeMeshEnabled"] is False
    assert cfg["spec"]["logSeverityScreen"] == "Info"  # the user's field is untouched
    assert c.status()["meshBefore"] is True


def test_invalid_config_changes_nothing(cluster: Cluster) -> None:
    c = cluster
    c.add(synthetic_cluster(12, zones=2))
    # Valid for the schema, not for the operator: steps must ascend.
    c.config({"steps": "1000:5,200:3"})
    op = c.operator()
    deadline = time.monotonic() + 30
    while c.status().get("phase") != "InvalidConfig" and time.monotonic() < deadline:
        time.sleep(0.05)
    st = c.status()
    conds = {x["type"]: x for x in st["conditions"]}
    assert (
        conds["InvalidConfig"]["status"] == "True" and "steps" in conds["InvalidConfig"]["message"]
    )
    assert conds["Ready"]["status"] == "False"
    phase = op.metrics.registry.get_sample_value
    assert phase("calico_rr_phase", {"phase": "InvalidConfig"}) == 1
    assert phase("calico_rr_phase", {"phase": "Steady"}) == 0
    events, _ = c.admin.list(api_path("v1", "events", namespace="default"))
    assert any(e.get("reason") == "InvalidConfig" for e in events)
    touched = {(e.get("objectRef") or {}).get("resource") for e in c.audit_writes()}
    assert touched <= {"routereflectorconfigs", "events", "leases"}, touched
    assert not c.rr_nodes()
    # fixed: it converges
    c.config({"waitTimeout": "1s", "steps": "200:3,1000:5"})
    c.steady(op)
    assert len(c.rr_nodes()) == 3
    assert phase("calico_rr_phase", {"phase": "InvalidConfig"}) == 0
    assert phase("calico_rr_phase", {"phase": "Steady"}) == 1


def test_users_peers_and_labels_untouched(cluster: Cluster) -> None:
    c = cluster
    nodes = synthetic_cluster(20, zones=2)
    nodes[0] = replace(nodes[0], labels={**nodes[0].labels, "team": "blue"})
    c.add(nodes)
    c.admin.patch(
        api_path("v1", "nodes", nodes[1].name),
        {"metadata": {"labels": {"rack.example.com/row": "7"}}},
    )
    router = {
        "apiVersion": c.group,
        "kind": "BGPPeer",
        "metadata": {"name": "tor-router", "labels": {"owner": "netops"}},
        "spec": {"peerIP": "192.0.2.1", "asNumber": 65001},
    }
    c.admin.create(api_path(c.group, "bgppeers"), router)
    c.config({"waitTimeout": "1s", "topology": "multi"})
    op = c.operator()
    c.steady(op)
    victim = c.rr_nodes()[0]
    mark = time.monotonic()
    c.set_ready(victim, False)
    c.steady(op, since=mark)
    tor = c.peers()["tor-router"]
    assert tor["spec"] == router["spec"] and tor["metadata"]["labels"] == {"owner": "netops"}
    assert c.labels(nodes[1].name)["rack.example.com/row"] == "7"
    assert c.labels(nodes[0].name)["team"] == "blue"
    names = {(e.get("objectRef") or {}).get("name") for e in c.audit_writes()}
    assert "tor-router" not in names


def test_killed_at_every_write_resumes_safely(cluster: Cluster) -> None:
    """Install from a full mesh and then replace a cordoned RR, with the operator
    dying after every single write and a fresh one taking over: every state the
    cluster passes through keeps every running node reachable."""
    c = cluster
    c.add(synthetic_cluster(18, zones=3))
    c.config({"waitTimeout": "1s", "debounce": "20ms", "topology": "multi"})
    restarts = 0
    states_checked = 0

    def run_until_steady(limit: int = 400) -> None:
        nonlocal restarts, states_checked
        for _ in range(limit):
            budget = WriteBudget(1)
            op = c.operator(identity=f"op-{restarts}", wrap=budget.wrap, leader_election=False)
            while not budget.exhausted.is_set():
                if (
                    op.stats.last_phase == "Steady"
                    and c.status().get("phase") == "Steady"
                    and c.status().get("meshEnabled") is False
                ):
                    op.stop()
                    return
                time.sleep(0.02)
            op.kill()  # dies right after its one write
            restarts += 1
            safety = c.safety()
            states_checked += 1
            assert safety.ok, f"after restart {restarts}: {safety.describe()}"
        raise AssertionError("no convergence")

    run_until_steady()
    victim = c.rr_nodes()[0]
    c.cordon(victim)
    run_until_steady()
    assert victim not in c.rr_nodes()
    # each restart made exactly one layout write before it died
    layout_writes = [
        e
        for e in c.audit_writes()
        if (e.get("objectRef") or {}).get("resource")
        in ("nodes", "bgppeers", "bgpconfigurations", "caliconodestatuses")
        and not (e.get("objectRef") or {}).get("subresource")
    ]
    assert len(layout_writes) == restarts and states_checked == restarts >= 15
    assert not any(
        k.startswith("prev.") for o in c.nodes().values() for k in o["metadata"].get("labels") or {}
    )


def test_injected_409_410_5xx(cluster: Cluster) -> None:
    c = cluster
    c.add(synthetic_cluster(24, zones=3))
    c.config({"waitTimeout": "1s", "debounce": "20ms", "topology": "multi"})
    holder: dict[str, FaultTransport] = {}

    def wrap(inner: httpx.BaseTransport) -> httpx.BaseTransport:
        holder["t"] = FaultTransport(inner)
        return holder["t"]

    faults: FaultTransport
    op = c.operator(wrap=wrap)
    faults = holder["t"]
    faults.fail_next("PATCH", "/api/v1/nodes/", 503, times=2)
    faults.fail_next("PATCH", "/bgppeers/", 429, headers={"Retry-After": "0"})
    faults.fail_next("PATCH", "/api/v1/nodes/", 409)
    faults.fail_next("PATCH", "routereflectorconfigs/default/status", 500)
    c.steady(op)
    assert faults.injected == 5
    lists_before = op.informers["nodes"].lists
    faults.fail_next("GET", "watch=true", 0, watch_gone=True)
    mark = time.monotonic()
    # Watches end by themselves (server timeout); end the nodes watch now so the
    # injected 410 hits its next watch request.
    watch = op.informers["nodes"]._watch
    assert watch is not None
    watch.close()
    deadline = time.monotonic() + 30
    while op.informers["nodes"].lists == lists_before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert op.informers["nodes"].lists == lists_before + 1  # re-listed after 410
    # ... and said so on /metrics
    relists = op.metrics.registry.get_sample_value("calico_rr_relists_total", {"resource": "nodes"})
    assert relists == op.informers["nodes"].gone >= 1
    c.add(synthetic_cluster(25, zones=3)[24:])
    c.steady(op, since=mark)
    assert GROUP_LABEL in c.labels("node-00024")
    assert c.safety().ok


def test_calico_node_status_gates_the_break(cluster: Cluster) -> None:
    """sessionCheck NodeStatus: old peerings stay until the RRs of the new layout
    report every expected session Established (the test plays calico-node)."""
    c = cluster
    op = converge(c, 24, spec={"topology": "multi", "sessionCheck": "Wait"})
    c.config(
        {"waitTimeout": "1s", "debounce": "50ms", "topology": "multi", "sessionCheck": "NodeStatus"}
    )
    time.sleep(0.5)
    ips = {
        n: o["metadata"]["annotations"]["projectcalico.org/IPv4Address"].split("/")[0]
        for n, o in c.nodes().items()
    }
    victim = c.rr_nodes()[0]
    c.cordon(victim)

    def report(skip: str | None) -> int:
        items, _ = c.admin.list(api_path(c.group, "caliconodestatuses"))
        for obj in items:
            node = obj["spec"]["node"]
            peers = [
                {"peerIP": ip, "state": "Established", "type": "NodePeer", "since": "00:00:01"}
                for n, ip in sorted(ips.items())
                if n != node and n != skip
            ]
            body = {
                "status": {
                    "bgp": {
                        "numberEstablishedV4": len(peers),
                        "numberEstablishedV6": 0,
                        "numberNotEstablishedV4": 0,
                        "numberNotEstablishedV6": 0,
                        "peersV4": peers,
                    }
                }
            }
            path = api_path(c.group, "caliconodestatuses", obj["metadata"]["name"]) + "/status"
            c.admin.patch(path, body)
        return len(items)

    deadline = time.monotonic() + 30
    while op.stats.last_phase != "Confirming" and time.monotonic() < deadline:
        time.sleep(0.05)
    successor = next(
        n for n in c.rr_nodes() if n != victim and f"prev.{SLOT_LABEL}" not in c.labels(n)
    )
    client = next(n for n in ips if n not in c.rr_nodes() and n != victim)
    assert report(skip=client) >= 3  # every RR reports, one client's sessions missing
    time.sleep(3.0)  # three wait timeouts: still no break without the reports
    assert op.stats.last_phase == "Confirming", op.stats.last_message
    assert "not Established" in op.stats.last_message
    assert f"prev.{SLOT_LABEL}" in c.labels(victim)  # old peerings still there
    mark = time.monotonic()
    report(skip=None)
    c.steady(op, since=mark)
    assert f"prev.{SLOT_LABEL}" not in c.labels(victim)
    assert successor in c.rr_nodes() and victim not in c.rr_nodes()


def test_graceful_restart_and_password_on_generated_peers(cluster: Cluster) -> None:
    c = cluster
    spec = {
        "topology": "multi",
        "maxRestartTime": "300s",
        "password": {"secretKeyRef": {"name": "bgp-secrets", "key": "rr-password"}},
    }
    converge(c, 12, zones=2, spec=spec)
    ours = [
        p
        for p in c.peers().values()
        if p["metadata"].get("labels", {}).get("app.kubernetes.io/managed-by") == "calico-rr"
    ]
    assert ours
    for peer in ours:
        assert peer["spec"]["maxRestartTime"] == "300s"
        assert peer["spec"]["password"] == {
            "secretKeyRef": {"name": "bgp-secrets", "key": "rr-password"}
        }
