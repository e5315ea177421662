"""Integration tests against a real kube-apiserver + etcd (calico_rr.sandbox).

Run with ``pytest tests/integration -m integration``.  The binaries are built on
first use by scripts/controlplane-build.sh (cached afterwards); a missing binary
or a failed build fails these tests, it never skips them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico_rr.core.formats.kube import node_to_k8s
from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.planner import Plan, plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.sandbox import ControlPlane, apply_crds, request

pytestmark = pytest.mark.integration

CRDS = Path(__file__).resolve().parents[2].parent / "shared" / "calico" / "crds"
CRDS_V1 = CRDS / "crd.projectcalico.org-v1"
CRDS_V3 = CRDS / "projectcalico.org-v3"
FIELD_MANAGER = "calico-rr"
APPLY = "application/apply-patch+yaml"


@pytest.fixture(scope="module")
def cp() -> Iterator[ControlPlane]:
    """The module's control plane (crd.projectcalico.org/v1 CRDs go here)."""
    with ControlPlane() as plane:
        yield plane


@pytest.fixture(scope="module")
def cp_v3() -> Iterator[ControlPlane]:
    """A second control plane for the projectcalico.org/v3 CRD set.

    Deleting the v1 CRDs from ``cp`` instead would work too, but kube-apiserver's
    CRD finalizer sometimes backs off for minutes ("storage is (re)initializing")
    right after the CRDs were created; a fresh control plane starts in seconds.
    """
    with ControlPlane() as plane:
        yield plane


def _path(doc: dict[str, Any]) -> str:
    name = doc["metadata"]["name"]
    if doc["apiVersion"] == "v1" and doc["kind"] == "Node":
        return f"/api/v1/nodes/{name}"
    plural = {"BGPPeer": "bgppeers", "BGPConfiguration": "bgpconfigurations"}[doc["kind"]]
    return f"/apis/{doc['apiVersion']}/{plural}/{name}"


def _ensure_nodes(cp: ControlPlane, the_plan: Plan) -> None:
    """Create the cluster's Node objects as a kubelet would (without our labels)."""
    for node in the_plan.nodes:
        status, body = request(cp, "POST", "/api/v1/nodes", node_to_k8s(node))
        assert status in (201, 409), body


def _apply_and_check(cp: ControlPlane, the_plan: Plan) -> None:
    docs = the_plan.resources()
    kinds = {d["kind"] for d in docs}
    assert kinds == {"Node", "BGPPeer", "BGPConfiguration"}, kinds
    for doc in docs:
        status, body = request(
            cp,
            "PATCH",
            _path(doc),
            yaml.safe_dump(doc),
            content_type=APPLY,
            params={"fieldManager": FIELD_MANAGER},
        )
        assert status in (200, 201), (doc["kind"], doc["metadata"]["name"], body)
    for doc in docs:
        status, got = request(cp, "GET", _path(doc))
        assert status == 200, got
        assert got["apiVersion"] == doc["apiVersion"]
        want_labels = doc["metadata"].get("labels", {})
        assert want_labels.items() <= got["metadata"].get("labels", {}).items()
        want_ann = doc["metadata"].get("annotations", {})
        assert want_ann.items() <= got["metadata"].get("annotations", {}).items()
        if "spec" in doc:
            assert doc["spec"].items() <= got["spec"].items()
        managers = {(m["manager"], m["operation"]) for m in got["metadata"]["managedFields"]}
        assert (FIELD_MANAGER, "Apply") in managers


def test_kubeconfigs_point_at_the_server(cp: ControlPlane) -> None:
    for path, user in ((cp.admin_kubeconfig, "admin"), (cp.operator_kubeconfig, "calico-rr")):
        config = yaml.safe_load(path.read_text())
        assert config["clusters"][0]["cluster"]["server"] == cp.url
        assert config["clusters"][0]["cluster"]["certificate-authority"] == str(cp.ca_file)
        assert config["users"][0]["name"] == user
        assert Path(config["users"][0]["user"]["client-certificate"]).is_file()
    status, body = request(cp, "GET", "/readyz")
    assert (status, body) == (200, "ok")


def test_create_and_read_node(cp: ControlPlane) -> None:
    node = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "itest-node", "labels": {"example.com/role": "test"}},
    }
    status, body = request(cp, "POST", "/api/v1/nodes", node)
    assert status == 201, body
    status, got = request(cp, "GET", "/api/v1/nodes/itest-node")
    assert status == 200, got
    assert got["kind"] == "Node"
    assert got["metadata"]["labels"]["example.com/role"] == "test"
    assert got["metadata"]["uid"]


def test_apply_plan_crd_projectcalico_org_v1(cp: ControlPlane) -> None:
    names = apply_crds(cp, CRDS_V1)
    assert "bgppeers.crd.projectcalico.org" in names
    the_plan = plan(synthetic_cluster(30, zones=3), PlanConfig(topology="multi"))
    _ensure_nodes(cp, the_plan)
    _apply_and_check(cp, the_plan)
    status, peers = request(cp, "GET", "/apis/crd.projectcalico.org/v1/bgppeers")
    assert status == 200, peers
    assert len(peers["items"]) == len(the_plan.bgppeers())


def test_apply_plan_projectcalico_org_v3(cp_v3: ControlPlane) -> None:
    cp = cp_v3
    names = apply_crds(cp, CRDS_V3)
    assert "bgppeers.projectcalico.org" in names
    config = PlanConfig(topology="multi", api_group="projectcalico.org/v3")
    the_plan = plan(synthetic_cluster(30, zones=3), config)
    assert the_plan.bgppeers()[0]["apiVersion"] == "projectcalico.org/v3"
    _ensure_nodes(cp, the_plan)
    _apply_and_check(cp, the_plan)
    status, peers = request(cp, "GET", "/apis/projectcalico.org/v3/bgppeers")
    assert status == 200, peers
    assert len(peers["items"]) == len(the_plan.bgppeers())


def test_operator_without_rbac_is_forbidden(cp: ControlPlane) -> None:
    status, body = request(cp, "GET", "/api/v1/nodes", user="calico-rr")
    assert status == 403, body
    assert 'User "calico-rr"' in body["message"]
    status, body = request(cp, "GET", "/api/v1/nodes")
    assert status == 200, body
