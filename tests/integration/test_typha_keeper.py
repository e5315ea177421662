"""The Typha keeper on a real kube-apiserver + etcd (issue 7, part 2).

The operator runs in-process as the unprivileged ``calico-rr`` user with the RBAC
of deploy/rbac.yaml; the test acts as the cluster with the admin user.  What the
operator sent is read from the API server's audit log, so "never wrote" means the
API server saw no such request.

One scenario, in order (one control plane; ~60 s, most of it creating nodes):

1. keeper off (the default): a whole convergence without a single Deployment request;
2. keeper on, 50 nodes: the manifest-style ``kube-system/calico-typha`` (1 replica)
   goes to 3;
3. 700 nodes: 4 replicas, in exactly one more scale write (the burst of joins is
   one change);
4. 100 nodes: back to 3, not before the cool-down has passed since the drop;
5. pointed at a Typha owned by another controller (``ownerReferences``): read,
   reported in ``status.typha.managedBy``, never written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.demo import create_nodes
from calico_rr.adapters.kube.operator import Operator
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.sandbox import ControlPlane, apply_crds
from calico_rr.sandbox.manifests import apply_documents, calico_crds, install_operator_rbac

pytestmark = pytest.mark.integration

CONFIG = "/apis/calico-rr.io/v1alpha1/routereflectorconfigs/default"
TYPHA = api_path("apps/v1", "deployments", "calico-typha", namespace="kube-system")
OWNED_NS = "tenant-a"
OWNED = api_path("apps/v1", "deployments", "calico-typha", namespace=OWNED_NS)
COOL_DOWN = 8.0
BASE_SPEC: dict[str, Any] = {"waitTimeout": "1s", "debounce": "50ms"}
KEEPER = {"enabled": True, "settle": "1s", "coolDown": f"{COOL_DOWN:g}s"}


def deployment(namespace: str, owner: dict[str, Any] | None = None) -> dict[str, Any]:
    """A calico-typha Deployment as Calico's manifests write it (trimmed)."""
    meta: dict[str, Any] = {
        "name": "calico-typha",
        "namespace": namespace,
        "labels": {"k8s-app": "calico-typha"},
    }
    if owner is not None:
        meta["ownerReferences"] = [owner]
    labels = {"k8s-app": "calico-typha"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "hostNetwork": True,
                    "containers": [{"name": "calico-typha", "image": "calico/typha:v3.31.0"}],
                },
            },
        },
    }


def wait_for(what: str, check: Callable[[], bool], timeout: float) -> float:
    """Seconds until ``check()``; fails with ``what`` after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)
    return time.monotonic() - start


class Env:
    def __init__(self, cp: ControlPlane, admin: KubeClient) -> None:
        self.cp = cp
        self.admin = admin

    def config(self, spec: dict[str, Any]) -> None:
        doc = {
            "apiVersion": "calico-rr.io/v1alpha1",
            "kind": "RouteReflectorConfig",
            "metadata": {"name": "default"},
            "spec": spec,
        }
        apply_documents(self.cp, [doc])

    def status(self) -> dict[str, Any]:
        return dict((self.admin.get(CONFIG) or {}).get("status") or {})

    def replicas(self, path: str = TYPHA) -> int:
        return int((self.admin.get(path) or {})["spec"]["replicas"])

    def deployment_requests(self, start: int = 0) -> list[dict[str, Any]]:
        """The operator's requests to any Deployment (or its scale) since ``start``."""
        return [
            e
            for e in self.cp.audit_events("calico-rr")[start:]
            if (e.get("objectRef") or {}).get("resource") == "deployments"
        ]


@pytest.fixture
def env() -> Iterator[Env]:
    with ControlPlane(audit=True) as cp:
        apply_crds(cp, calico_crds("crd.projectcalico.org-v1"))
        install_operator_rbac(cp)
        admin = KubeClient.from_kubeconfig(cp.admin_kubeconfig)
        try:
            yield Env(cp, admin)
        finally:
            admin.close()


def scale_writes(events: list[dict[str, Any]], namespace: str) -> list[dict[str, Any]]:
    return [
        e
        for e in events
        if e["verb"] not in ("get", "list", "watch")
        and e["objectRef"].get("namespace") == namespace
    ]


def test_typha_keeper_50_700_100_and_a_typha_owned_elsewhere(env: Env) -> None:
    admin = env.admin
    admin.create(
        api_path("v1", "namespaces"),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OWNED_NS}},
    )
    owner = {
        "apiVersion": "operator.tigera.io/v1",
        "kind": "Installation",
        "name": "default",
        "uid": "4b1e0a34-8c52-4d3c-9a57-0d5c3f0e8d11",
        "controller": True,
    }
    for ns, own in (("kube-system", None), (OWNED_NS, owner)):
        admin.create(api_path("apps/v1", "deployments", namespace=ns), deployment(ns, own))
    nodes = synthetic_cluster(700, zones=3)
    create_nodes(admin, nodes[:50])

    # 1. off by default: converge without touching any Deployment
    env.config(BASE_SPEC)
    client = KubeClient.from_kubeconfig(
        env.cp.operator_kubeconfig, backoff_base=0.02, backoff_max=0.5
    )
    op = Operator(client, identity="op", env={}, lease_duration=3.0)
    op.start()
    try:
        wait_for("Steady", lambda: env.status().get("phase") == "Steady", 60)
        assert env.deployment_requests() == []
        assert "typha" not in env.status()
        assert env.replicas() == 1

        # 2. on, 50 nodes: 1 -> 3 (at least 3 in production)
        env.config({**BASE_SPEC, "typha": KEEPER})
        wait_for("3 replicas", lambda: env.replicas() == 3, 30)
        wait_for("status", lambda: (env.status().get("typha") or {}).get("replicas") == 3, 10)
        typha = env.status()["typha"]
        assert typha["target"] == 3 and typha["nodes"] == 50
        assert typha["deployment"] == "kube-system/calico-typha"
        assert "managedBy" not in typha

        # 3. 700 nodes: 4 replicas (ceil(700/200)), one change for the whole burst
        create_nodes(admin, nodes[50:])
        wait_for("4 replicas", lambda: env.replicas() == 4, 60)
        wait_for("700 nodes seen", lambda: env.status()["typha"]["nodes"] == 700, 30)
        time.sleep(1.5)  # a settle more: nothing else may follow
        writes = scale_writes(env.deployment_requests(), "kube-system")
        assert [(e["verb"], e["objectRef"].get("subresource")) for e in writes] == [
            ("patch", "scale"),
            ("patch", "scale"),
        ]
        assert env.replicas() == 4

        # 4. 100 nodes: back to 3 only after the cool-down
        t0 = time.monotonic()  # the target cannot drop before this
        with ThreadPoolExecutor(max_workers=8) as pool:
            names = [n.name for n in nodes[100:]]
            list(pool.map(lambda n: admin.delete(api_path("v1", "nodes", n)), names))
        deleted = time.monotonic() - t0
        wait_for("3 replicas again", lambda: env.replicas() == 3, COOL_DOWN + 40)
        took = time.monotonic() - t0
        assert took >= COOL_DOWN, f"scaled down {took:.1f}s after the drop"
        assert took <= max(deleted, 0.0) + COOL_DOWN + 10.0  # and not much later
        wait_for("100 nodes seen", lambda: env.status()["typha"]["nodes"] == 100, 30)
        assert len(scale_writes(env.deployment_requests(), "kube-system")) == 3

        # 5. a Typha owned by another controller: read, reported, never written
        start = len(env.cp.audit_events("calico-rr"))
        env.config({**BASE_SPEC, "typha": {**KEEPER, "namespace": OWNED_NS}})
        wait_for(
            "managedBy",
            lambda: "managedBy" in (env.status().get("typha") or {}),
            30,
        )
        typha = env.status()["typha"]
        assert "Installation/default" in typha["managedBy"]
        assert "leaves its replicas alone" in typha["message"]
        assert typha["deployment"] == f"{OWNED_NS}/calico-typha"
        requests = env.deployment_requests(start)
        assert [e["verb"] for e in requests if e["objectRef"].get("namespace") == OWNED_NS]
        assert scale_writes(requests, OWNED_NS) == []
        assert env.replicas(OWNED) == 1
        events, _ = admin.list(api_path("v1", "events", namespace="default"))
        assert any(e.get("reason") == "TyphaManagedElsewhere" for e in events)
        assert any(e.get("reason") == "TyphaScaled" for e in events)
    finally:
        op.stop()
        client.close()
