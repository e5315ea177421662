"""`calico-rr doctor` on a real kube-apiserver + etcd.

A 120-node cluster in 3 zones with Calico's crd.projectcalico.org/v1 CRDs, moved to
route reflectors by the operator (run in-process as the ``calico-rr`` user), plus a
CrossSubnet IPPool with natOutgoing and a 3-replica calico-typha Deployment: doctor on
the live cluster finds no error (only the natOutgoing note), the same cluster dumped
to a file the way ``kubectl get ... -A -o yaml`` writes it gives the same findings,
and switching the mesh back on is seen live.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from calico_rr.adapters.demo import wait_steady
from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.demo import create_nodes, status
from calico_rr.adapters.kube.operator import Operator
from calico_rr.cli import app
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.sandbox import ControlPlane, apply_crds
from calico_rr.sandbox.manifests import apply_documents, calico_crds, install_operator_rbac

pytestmark = pytest.mark.integration

V1 = "crd.projectcalico.org/v1"
NODES = 120
runner = CliRunner()


def typha_deployment(replicas: int) -> dict[str, Any]:
    labels = {"k8s-app": "calico-typha"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "calico-typha", "namespace": "kube-system", "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "hostNetwork": True,
                    "containers": [{"name": "calico-typha", "image": "calico/typha:v3.30.0"}],
                },
            },
        },
    }


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[ControlPlane, KubeClient]]:
    started = time.monotonic()
    with ControlPlane() as plane:
        apply_crds(plane, calico_crds("crd.projectcalico.org-v1"))
        install_operator_rbac(plane)
        admin = KubeClient.from_kubeconfig(plane.admin_kubeconfig)
        create_nodes(admin, synthetic_cluster(NODES, zones=3))
        admin.create(
            api_path(V1, "ippools"),
            {
                "apiVersion": V1,
                "kind": "IPPool",
                "metadata": {"name": "default-ipv4-ippool"},
                "spec": {
                    "cidr": "192.168.0.0/16",
                    "ipipMode": "CrossSubnet",
                    "vxlanMode": "Never",
                    "natOutgoing": True,
                },
            },
        )
        admin.create(
            api_path("apps/v1", "deployments", namespace="kube-system"), typha_deployment(3)
        )
        apply_documents(
            plane,
            [
                {
                    "apiVersion": "calico-rr.io/v1alpha1",
                    "kind": "RouteReflectorConfig",
                    "metadata": {"name": "default"},
                    "spec": {"topology": "auto", "waitTimeout": "2s"},
                }
            ],
        )
        op = Operator(
            KubeClient.from_kubeconfig(plane.operator_kubeconfig),
            identity="doctor-test",
            env={},
            lease_duration=5.0,
        )
        op.start()
        try:
            timeout = max(10.0, 45.0 - (time.monotonic() - started))
            wait_steady(op, lambda: status(admin), timeout=timeout)
        finally:
            op.stop()
        yield plane, admin
        admin.close()


def doctor(*args: str) -> tuple[int, list[dict[str, str]]]:
    result = runner.invoke(app, ["doctor", "--json", *args])
    assert result.exit_code in (0, 1), result.output
    data = json.loads(result.stdout)
    assert list(data) == ["findings", "notes"]
    return result.exit_code, data["findings"]


def kubectl_dump(admin: KubeClient) -> dict[str, Any]:
    """What `kubectl get nodes,ippools,bgpconfigurations,bgppeers,felixconfigurations,
    deployments -A -o yaml` prints: one List, every item with apiVersion and kind."""
    items: list[dict[str, Any]] = []
    for version, plural in [
        ("v1", "nodes"),
        (V1, "ippools"),
        (V1, "bgpconfigurations"),
        (V1, "bgppeers"),
        (V1, "felixconfigurations"),
        ("apps/v1", "deployments"),
    ]:
        objs, _ = admin.list(api_path(version, plural))
        items.extend(objs)
    assert all(obj.get("apiVersion") and obj.get("kind") for obj in items)
    return {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {}}


def test_healthy_managed_cluster_has_no_error_and_a_dump_agrees(
    cluster: tuple[ControlPlane, KubeClient], tmp_path: Path
) -> None:
    plane, admin = cluster
    code, live = doctor("--kubeconfig", str(plane.admin_kubeconfig))
    assert code == 0, live
    assert not [f for f in live if f["severity"] == "error"]
    # The only advice left for this cluster: the natOutgoing note on the pool.
    assert [(f["id"], f["severity"], f["object"]) for f in live] == [
        ("nat-outgoing", "info", "IPPool/default-ipv4-ippool")
    ]
    # The operator's work is really there: RRs with cluster IDs, mesh off.
    bgp = admin.get(api_path(V1, "bgpconfigurations", "default")) or {}
    assert bgp["spec"]["nodeToNodeMeshEnabled"] is False
    peers, _ = admin.list(api_path(V1, "bgppeers"))
    assert peers

    dump = tmp_path / "cluster.yaml"
    dump.write_text(yaml.safe_dump(kubectl_dump(admin)))
    code_dump, from_dump = doctor("--resources", str(dump))
    assert (code_dump, from_dump) == (code, live)


def test_live_doctor_sees_the_mesh_switched_back_on(
    cluster: tuple[ControlPlane, KubeClient],
) -> None:
    plane, admin = cluster
    path = api_path(V1, "bgpconfigurations", "default")
    admin.patch(path, {"spec": {"nodeToNodeMeshEnabled": True}})
    try:
        code, live = doctor("--kubeconfig", str(plane.admin_kubeconfig))
    finally:
        admin.patch(path, {"spec": {"nodeToNodeMeshEnabled": False}})
    ids = {f["id"]: f for f in live}
    assert code == 1
    assert ids["mesh-at-scale"]["severity"] == "error"
    assert ids["mesh-with-rrs"]["severity"] == "warning"
    rrs = sum(
        1
        for n in admin.list(api_path("v1", "nodes"))[0]
        if "projectcalico.org/RouteReflectorClusterID" in (n["metadata"].get("annotations") or {})
    )
    assert rrs >= 3
    assert f"with {NODES - rrs} nodes in the node-to-node mesh" in ids["mesh-at-scale"]["message"]


def test_cluster_without_calico_is_bad_input() -> None:
    with ControlPlane() as plane:
        result = runner.invoke(app, ["doctor", "--kubeconfig", str(plane.admin_kubeconfig)])
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert "serves no Calico API group" in line


def test_live_doctor_reads_as_the_release_the_cluster_records(
    cluster: tuple[ControlPlane, KubeClient],
) -> None:
    """calico-node records its release in ClusterInformation default: the live
    inventory reads the cluster as that release (core.bgp.calico_version)."""
    from calico_rr.adapters.kube.inventory import load_live

    _, admin = cluster
    assert not any("ClusterInformation" in n for n in load_live(admin).notes)
    path = api_path(V1, "clusterinformations")
    info = {
        "apiVersion": V1,
        "kind": "ClusterInformation",
        "metadata": {"name": "default"},
        "spec": {"calicoVersion": "v3.28.1", "clusterType": "k8s,bgp,kdd"},
    }
    admin.create(path, info)
    try:
        notes = load_live(admin).notes
    finally:
        admin.delete(api_path(V1, "clusterinformations", "default"))
    assert "read as Calico v3.28.1, the release ClusterInformation default records" in notes
