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
from collections.abc import Callable, Iterable
from typing import Any

from calico_rr.adapters.demo_keys import demo_result
from calico_rr.adapters.kube.client import KubeClient, api_path
from calico_rr.adapters.kube.operator import Operator
from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.bgp.sessions import build_session_graph
from calico_rr.core.bgp.verify import verify
from calico_rr.core.formats.kube import node_to_k8s
from calico_rr.core.operator.safety import check
from calico_rr.core.operator.settings import CONFIG_NAME
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import ANN_IPV4, ZONE_LABEL, Node
from calico_rr.sandbox import ControlPlane, apply_crds
from calico_rr.sandbox.manifests import apply_documents, calico_crds, install_operator_rbac

WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})
CONFIG_PATH = "/apis/calico-rr.io/v1alpha1/routereflectorconfigs"


def node_object(node: Node) -> dict[str, Any]:
    obj = node_to_k8s(node)
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
    from concurrent.futures import ThreadPoolExecutor

    def one(node: Node) -> None:
        admin.create(api_path("v1", "nodes"), node_object(node))
        admin.patch(api_path("v1", "nodes", node.name) + "/status", ready_status(True))

    batch = list(nodes)
    if len(batch) <= 1:
        for node in batch:
            one(node)
        return len(batch)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(one, n) for n in batch]:
            future.result()
    return len(batch)


def cluster_documents(admin: KubeClient, api_group: str) -> list[dict[str, Any]]:
    """Nodes, BGPPeers and BGPConfiguration as calico-node would read them."""
    nodes, _ = admin.list(api_path("v1", "nodes"))
    peers, _ = admin.list(api_path(api_group, "bgppeers"))
    configs, _ = admin.list(api_path(api_group, "bgpconfigurations"))
    for obj in nodes:
        obj.setdefault("apiVersion", "v1")
        obj.setdefault("kind", "Node")
    for obj in peers:
        obj.setdefault("apiVersion", api_group)
        obj.setdefault("kind", "BGPPeer")
    for obj in configs:
        obj.setdefault("apiVersion", api_group)
        obj.setdefault("kind", "BGPConfiguration")
    return [*nodes, *peers, *configs]


def wait_steady(op: Operator, admin: KubeClient, timeout: float, since: float = 0.0) -> float:
    """Seconds until the operator reports Steady with the mesh off (after ``since``)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        cfg = admin.get(f"{CONFIG_PATH}/{CONFIG_NAME}") or {}
        status = cfg.get("status") or {}
        steady = op.stats.steady_since
        if (
            status.get("phase") == "Steady"
            and status.get("meshEnabled") is False
            and steady is not None
            and steady >= since
        ):
            return time.monotonic() - start
        time.sleep(0.05)
    raise TimeoutError(f"operator not steady after {timeout:.0f}s: {op.stats.last_message}")


def run_demo(
    *,
    nodes: int = 1000,
    zones: int = 3,
    topology: str = "auto",
    wait_timeout: str = "2s",
    progress: Callable[[str], None] = lambda _line: None,
    timeout: float = 600.0,
) -> dict[str, Any]:
    result: dict[str, Any] = {"nodes": nodes, "zones": zones, "converged": False, "verified": False}
    progress("starting kube-apiserver + etcd (binaries are built on first use, then cached)")
    with ControlPlane(audit=True) as cp:
        apply_crds(cp, calico_crds())
        install_operator_rbac(cp)
        admin = KubeClient.from_kubeconfig(cp.admin_kubeconfig)
        cluster = synthetic_cluster(nodes + 1, zones=zones)
        progress(f"creating {nodes} nodes in {zones} zones (full mesh on)")
        create_nodes(admin, cluster[:nodes])
        spec: dict[str, Any] = {"topology": topology, "waitTimeout": wait_timeout}
        apply_documents(
            cp,
            [
                {
                    "apiVersion": "calico-rr.io/v1alpha1",
                    "kind": "RouteReflectorConfig",
                    "metadata": {"name": CONFIG_NAME},
                    "spec": spec,
                }
            ],
        )
        client = KubeClient.from_kubeconfig(cp.operator_kubeconfig)
        op = Operator(client, identity="demo-0", env={}, lease_duration=5.0)
        t0 = time.monotonic()
        op.start()
        try:
            progress("operator running; waiting for convergence (mesh switched off last)")
            seconds = wait_steady(op, admin, timeout)
            result["seconds_to_converge"] = round(seconds, 2)
            result["converged"] = True
            sync_lists = op.lists()
            audit_sync = len(cp.audit_events("calico-rr"))
            docs = cluster_documents(admin, op.api_group)
            graph = build_session_graph(parse_resources(docs, where="cluster").state)
            report = verify(graph)
            result["verified"] = report.reachable and report.single_rr_failure_tolerant
            result["verification"] = {
                "reachable": report.reachable,
                "single_rr_failure_tolerant": report.single_rr_failure_tolerant,
                "sessions": report.sessions,
            }
            cfg = admin.get(f"{CONFIG_PATH}/{CONFIG_NAME}") or {}
            status = cfg.get("status") or {}
            result["topology"] = status.get("topology")
            result["route_reflectors"] = status.get("routeReflectors")
            peers = [d for d in docs if d.get("kind") == "BGPPeer"]
            result["bgppeer_objects"] = len(peers)
            progress(
                f"converged in {seconds:.1f}s: {result['route_reflectors']} RRs, "
                f"{len(peers)} BGPPeers, verified={result['verified']}"
            )

            # One node joins: count the operator's writes at the API server.
            before = len(cp.audit_events("calico-rr"))
            mark = time.monotonic()
            create_nodes(admin, cluster[nodes:])
            joined = cluster[nodes].name
            join_seconds = wait_node_handled(op, joined, mark, timeout)
            time.sleep(0.5)  # let any trailing write show up in the audit log
            join_writes = [
                describe(e) for e in cp.audit_events("calico-rr")[before:] if is_write(e)
            ]
            result["api_writes_per_node_join"] = len(join_writes)
            result["join_writes"] = join_writes
            result["seconds_to_converge_after_join"] = round(join_seconds, 3)
            progress(f"node {joined} joined: {result['api_writes_per_node_join']} write(s)")

            # A zone fails: its nodes go NotReady; the RRs there are replaced.
            zone = sorted({n.labels.get(ZONE_LABEL, "") for n in cluster})[0] if zones else ""
            lost = [n.name for n in cluster if zones and n.labels.get(ZONE_LABEL) == zone]
            if lost:
                progress(f"zone {zone} fails: {len(lost)} nodes NotReady")
                mark = time.monotonic()
                for name in lost:
                    admin.patch(api_path("v1", "nodes", name) + "/status", ready_status(False))
                seconds = wait_steady(op, admin, timeout, since=mark)
                safety = check(cluster_documents(admin, op.api_group), down=lost)
                result["zone_failure"] = {
                    "zone": zone,
                    "failed_nodes": len(lost),
                    "seconds_to_reconverge": round(seconds, 2),
                    "surviving_nodes_reach_each_other": safety.ok,
                }
                result["verified"] = result["verified"] and safety.ok
                progress(f"re-converged in {seconds:.1f}s; survivors safe: {safety.ok}")
            audit = cp.audit_events("calico-rr")
            result["api_lists_after_sync"] = sum(
                1 for e in audit[audit_sync:] if e.get("verb") == "list"
            )
            result["operator_lists_after_sync"] = op.lists() - sync_lists
            result["api_requests_total"] = len(audit)
            result["seconds_total"] = round(time.monotonic() - t0, 1)
        finally:
            op.stop()
    return demo_result(result)


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


def wait_node_handled(op: Operator, name: str, since: float, timeout: float) -> float:
    """Seconds from ``since`` until a reconcile pass that started after the node
    reached the operator's cache has ended, leaving the layout Steady."""
    seen: float | None = None
    while time.monotonic() - since < timeout:
        if seen is None and op.informers["nodes"].get(name) is not None:
            seen = time.monotonic()
        stats = op.stats
        if (
            seen is not None
            and stats.last_start > seen
            and stats.last_end > stats.last_start
            and stats.last_phase == "Steady"
        ):
            return stats.last_end - since
        time.sleep(0.002)
    raise TimeoutError(f"node {name} not handled in {timeout:.0f}s: {op.stats.last_message}")
