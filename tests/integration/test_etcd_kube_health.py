"""The etcd operator with node health from the Kubernetes API (``--node-health
kubernetes``): Calico's resources in a real etcd with client-cert TLS, the
Kubernetes Nodes in a real kube-apiserver, read as the ``calico-rr`` identity of
deploy/rbac.yaml.  No Felix report exists at all, so the Felix rule would call every
node Ready: every health decision below can only have come from Kubernetes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest

from calico_rr.adapters.etcd.kube_health import KubeNodeHealth
from calico_rr.adapters.etcd.operator import EtcdOperator
from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.demo import create_nodes, ready_status
from calico_rr.core.formats import etcd as L
from calico_rr.core.formats.etcd_nodes import node_to_calico
from calico_rr.core.operator.safety import check
from calico_rr.core.planning.config import RR_LABEL
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.sandbox import ControlPlane
from calico_rr.sandbox.etcd import EtcdServer
from calico_rr.sandbox.manifests import install_operator_rbac

pytestmark = pytest.mark.integration

CONFIG_KEY = "/calico-rr/config/default"


@pytest.fixture(scope="module")
def planes() -> Iterator[tuple[ControlPlane, EtcdServer]]:
    with EtcdServer() as etcd:
        cp = ControlPlane()
        cp.start()
        try:
            install_operator_rbac(cp)
            yield cp, etcd
        finally:
            cp.stop()


def _until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_health_from_kubernetes_nodes(planes: tuple[ControlPlane, EtcdServer]) -> None:
    cp, etcd = planes
    admin_kube = KubeClient.from_kubeconfig(cp.admin_kubeconfig)
    admin = etcd.client(timeout=5.0)
    nodes = synthetic_cluster(12, zones=3)
    # Kubernetes knows 11 of them; the 12th Calico Node has no Kubernetes Node
    create_nodes(admin_kube, nodes[:11])
    for i, n in enumerate(nodes):
        doc = node_to_calico(n, uid=f"uid-{n.name}")
        if i == 0:  # a Calico Node named after the host's FQDN, linked by orchRefs
            doc["metadata"]["name"] = f"{n.name}.example.com"
            doc["spec"]["orchRefs"] = [{"orchestrator": "k8s", "nodeName": n.name}]
        key, value = L.encode_document(doc)
        admin.put_if(key, value, 0)
    fqdn = f"{nodes[0].name}.example.com"
    orphan = nodes[11].name
    config = {
        "apiVersion": "calico-rr.io/v1alpha1",
        "kind": "RouteReflectorConfig",
        "metadata": {"name": "default"},
        "spec": {"topology": "single", "waitTimeout": "1s", "debounce": "20ms"},
    }
    admin.put(CONFIG_KEY, json.dumps(config).encode())

    health = KubeNodeHealth(KubeClient.from_kubeconfig(cp.operator_kubeconfig))
    op = EtcdOperator(
        etcd.client(timeout=5.0), identity="op", env={}, lease_duration=2.0, kube_health=health
    )

    def docs(plural: str) -> dict[str, dict[str, object]]:
        prefix = L.plural_prefix(plural)
        return {
            kv.key[len(prefix) :]: L.decode_document(kv.key, kv.value, kv.mod_revision)
            for kv in admin.list(prefix).kvs
        }

    def rrs() -> set[str]:
        return {
            name
            for name, d in docs("nodes").items()
            if RR_LABEL in (d["metadata"].get("labels") or {})  # type: ignore[attr-defined]
        }

    def safe() -> bool:
        everything = [*docs("nodes").values(), *docs("bgppeers").values()]
        everything += docs("bgpconfigurations").values()
        return check(everything, set()).ok

    op.start()
    try:
        _until(lambda: op.stats.last_phase == "Steady" and len(rrs()) == 3, 60, "never steady")
        assert orphan not in rrs()  # no Kubernetes Node: Ready Unknown, never an RR
        assert health.informer.lists == 1 and op.ready_nodes() is None  # no Felix at all
        assert safe()

        # the RR's Kubernetes Node goes NotReady: replaced (by Kubernetes health alone)
        victim = sorted(rrs() - {fqdn})[0]
        admin_kube.patch(api_path("v1", "nodes", victim) + "/status", ready_status(False))
        _until(lambda: victim not in rrs() and len(rrs()) == 3, 60, "NotReady RR kept")
        assert orphan not in rrs() and safe()

        # a cordon in Kubernetes, on the node whose Calico name differs (orchRefs)
        if fqdn not in rrs():  # make it an RR first: everyone else is cordoned away
            others = sorted(rrs())
            for name in others:
                admin_kube.patch(api_path("v1", "nodes", name), {"spec": {"unschedulable": True}})
            _until(lambda: fqdn in rrs(), 60, "the orchRefs node never became an RR")
            for name in others:
                admin_kube.patch(api_path("v1", "nodes", name), {"spec": {"unschedulable": False}})
        admin_kube.patch(api_path("v1", "nodes", nodes[0].name), {"spec": {"unschedulable": True}})
        _until(lambda: fqdn not in rrs() and len(rrs()) == 3, 60, "cordoned RR kept")
        assert orphan not in rrs() and safe()
        # the kubelet's routine status rewrites do not wake the operator: only health does
        quiet_since, passes = time.monotonic(), op.stats.reconciles
        while time.monotonic() - quiet_since < 3.0:  # the rollout's last passes first
            time.sleep(0.1)
            if op.stats.reconciles != passes:
                quiet_since, passes = time.monotonic(), op.stats.reconciles
        heartbeat = {"status": {"nodeInfo": {"kubeletVersion": "v1.35.4-heartbeat"}}}
        for n in nodes[1:11]:
            admin_kube.patch(api_path("v1", "nodes", n.name) + "/status", heartbeat)
        time.sleep(1.5)
        assert op.stats.reconciles == passes
    finally:
        op.stop(release=False)
        op.client.close()
        admin.close()
