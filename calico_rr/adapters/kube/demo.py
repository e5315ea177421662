"""``calico-rr demo``: the operator end to end on a local control plane.

Starts etcd + kube-apiserver (calico_rr.sandbox; binaries built once and
cached), installs Calico's CRDs and ours, creates N synthetic nodes across
zones with the full mesh on, runs the operator (as the unprivileged
``calico-rr`` user, with the deploy/ RBAC) to convergence, verifies what is in
the API server with the verifier, joins one node, then fails a zone's nodes and
shows the re-convergence.  API requests are counted by the API server's audit
log, not by the operator.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from calico_rr.adapters import demo
from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.operator import Operator
from calico_rr.core.formats.kube import node_to_k8s
from calico_rr.core.operator.settings import CONFIG_NAME
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import ANN_IPV4, Node
from calico_rr.sandbox import ControlPlane, apply_crds
from calico_rr.sandbox.manifests import apply_documents, calico_crds, install_operator_rbac

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
CONFIG_PATH = "/apis/calico-rr.io/v1alpha1/routereflectorconfigs"


def node_object(node: Node) -> dict[str, Any]:
    obj = node_to_k8s(node)
    if node.ip is not None:  # an IPv6-only node has no IPv4 annotation
        obj.setdefault("metadata", {}).setdefault("annotations", {})[ANN_IPV4] = f"{node.ip}/24"
    return obj


def ready_status(ready: bool) -> dict[str, Any]:
    return {
        "status": {
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "KubeletReady" if ready else "KubeletNotReady",
                    "message": "demo",
                    "lastHeartbeatTime": "2026-01-01T00:00:00Z",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ]
        }
    }


def create_nodes(admin: KubeClient, nodes: Iterable[Node], *, workers: int = 8) -> int:
    """Create Nodes and mark them Ready (the API server drops status on create);
    ``workers`` requests in flight (the client is thread-safe)."""

    def one(node: Node) -> None:
        admin.create(api_path("v1", "nodes"), node_object(node))
        admin.patch(api_path("v1", "nodes", node.name) + "/status", ready_status(True))

    return demo.create_all(one, nodes, workers)


def cluster_documents(admin: KubeClient, api_group: str) -> list[dict[str, Any]]:
    """Nodes, BGPPeers and BGPConfiguration as calico-node would read them (a list
    leaves out each item's apiVersion and kind: they are put back)."""
    docs: list[dict[str, Any]] = []
    for group, plural, kind in (
        ("v1", "nodes", "Node"),
        (api_group, "bgppeers", "BGPPeer"),
        (api_group, "bgpconfigurations", "BGPConfiguration"),
    ):
        items, _ = admin.list(api_path(group, plural))
        for obj in items:
            obj.setdefault("apiVersion", group)
            obj.setdefault("kind", kind)
        docs += items
    return docs


def status(admin: KubeClient) -> dict[str, Any]:
    """The RouteReflectorConfig's status (empty until the operator wrote one)."""
    cfg = admin.get(f"{CONFIG_PATH}/{CONFIG_NAME}") or {}
    return dict(cfg.get("status") or {})


@dataclass
class KubeSite:
    """The demo's view of the Kubernetes API: API requests from the audit log."""

    cp: ControlPlane
    admin: KubeClient
    op: Operator
    where: str = "cluster"
    _audit_sync: int = 0

    def status(self) -> dict[str, Any]:
        return status(self.admin)

    def documents(self) -> list[dict[str, Any]]:
        return cluster_documents(self.admin, self.op.api_group)

    def seen(self, name: str) -> bool:
        return self.op.informers["nodes"].get(name) is not None

    def mark_sync(self) -> None:
        self._audit_sync = len(self.cp.audit_events("calico-rr"))

    def join(self, nodes: Sequence[Node], wait: Callable[[], float]) -> tuple[int, list[str]]:
        before = len(self.cp.audit_events("calico-rr"))
        create_nodes(self.admin, nodes)
        wait()
        time.sleep(0.5)  # let any trailing write show up in the audit log
        writes = [describe(e) for e in self.cp.audit_events("calico-rr")[before:] if is_write(e)]
        return len(writes), writes

    def fail_zone(self, zone: str, names: Sequence[str]) -> None:
        for name in names:
            self.admin.patch(api_path("v1", "nodes", name) + "/status", ready_status(False))

    def lists_after_sync(self) -> int:
        audit = self.cp.audit_events("calico-rr")
        return sum(1 for e in audit[self._audit_sync :] if e.get("verb") == "list")

    def requests_total(self) -> int:
        return len(self.cp.audit_events("calico-rr"))


def run_demo(
    *,
    nodes: int,
    zones: int,
    topology: str,
    progress: Callable[[str], None],
    trace: demo.DemoTrace,
    ip_family: str,
) -> dict[str, Any]:
    progress("starting kube-apiserver + etcd (binaries are built on first use, then cached)")
    with ControlPlane(audit=True) as cp:
        apply_crds(cp, calico_crds())
        install_operator_rbac(cp)
        admin = KubeClient.from_kubeconfig(cp.admin_kubeconfig)
        cluster = synthetic_cluster(nodes + 1, zones=zones, ip_family=ip_family)
        progress(f"creating {nodes} nodes in {zones} zones (full mesh on)")
        create_nodes(admin, cluster[:nodes])
        apply_documents(cp, [demo.config_document({"topology": topology, "waitTimeout": "2s"})])
        client = KubeClient.from_kubeconfig(cp.operator_kubeconfig)
        op = Operator(client, identity="demo-0", env={}, lease_duration=5.0)
        op.start()
        try:
            site = KubeSite(cp, admin, op)
            return demo.run_flow(site, cluster, nodes, zones, ip_family, progress, trace)
        finally:
            op.stop()


def _ref(event: dict[str, Any]) -> dict[str, Any]:
    ref = event.get("objectRef")
    return ref if isinstance(ref, dict) else {}


def is_lease(event: dict[str, Any]) -> bool:
    """An audit event on a Lease (leader election)."""
    return _ref(event).get("resource") == "leases"


def is_write(event: dict[str, Any]) -> bool:
    """An operator write that counts: any write verb except the leader's Lease
    renewals (periodic, not caused by what is being measured)."""
    return event.get("verb") in WRITE_VERBS and not is_lease(event)


def describe(event: dict[str, Any]) -> str:
    """``verb resource[/subresource] name`` of an audit event."""
    ref = _ref(event)
    sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
    return f"{event.get('verb')} {ref.get('resource')}{sub} {ref.get('name', '')}".strip()
