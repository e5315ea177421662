"""The RouteReflectorConfig CRD and the RBAC manifest against a real kube-apiserver.

Checks that admission rejects what ``calico_rr.core.operator.settings`` rejects (each bad
spec is also fed to the Python parser), that the status subresource and printer
columns work, and that ``deploy/rbac.yaml`` gives the operator's identity (the
client-certificate user ``calico-rr``) what it needs and nothing more.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico_rr.core.operator.settings import (
    CONFIG_NAME,
    CRD_GROUP,
    CRD_KIND,
    CRD_PLURAL,
    CRD_VERSION,
    settings_from_spec,
)
from calico_rr.errors import ConfigError
from calico_rr.sandbox import ControlPlane, apply_crds, request

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CALICO_V1_CRDS = REPO.parent / "shared" / "calico" / "crds" / "crd.projectcalico.org-v1"
CRDS_PATH = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
RRC = f"/apis/{CRD_GROUP}/{CRD_VERSION}/{CRD_PLURAL}"
DEFAULT = f"{RRC}/{CONFIG_NAME}"
OPERATOR = "calico-rr"
NAMESPACE = "calico-rr"
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"
MERGE = "application/merge-patch+json"


@pytest.fixture(scope="module")
def cp() -> Iterator[ControlPlane]:
    with ControlPlane() as plane:
        apply_crds(plane, DEPLOY / "crds")
        yield plane


def _config(spec: dict[str, Any], name: str = CONFIG_NAME) -> dict[str, Any]:
    return {
        "apiVersion": f"{CRD_GROUP}/{CRD_VERSION}",
        "kind": CRD_KIND,
        "metadata": {"name": name},
        "spec": spec,
    }


def _delete_default(cp: ControlPlane) -> None:
    status, body = request(cp, "DELETE", DEFAULT)
    assert status in (200, 404), body
    deadline = time.monotonic() + 30
    while request(cp, "GET", DEFAULT)[0] != 404:
        assert time.monotonic() < deadline, "RouteReflectorConfig default not deleted"
        time.sleep(0.1)


@pytest.fixture
def fresh(cp: ControlPlane) -> Iterator[ControlPlane]:
    """No RouteReflectorConfig ``default`` before and after the test."""
    _delete_default(cp)
    yield cp
    _delete_default(cp)


def _example() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "example-config.yaml").read_text())
    return doc


# -- the CRD ---------------------------------------------------------------------------


def test_crd_served_with_printer_columns(cp: ControlPlane) -> None:
    status, crd = request(cp, "GET", f"{CRDS_PATH}/{CRD_PLURAL}.{CRD_GROUP}")
    assert status == 200, crd
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"]["shortNames"] == ["rrc"]
    [version] = crd["spec"]["versions"]
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns == {
        "Phase": ".status.phase",
        "Topology": ".status.topology",
        "RRs": ".status.routeReflectors",
        "Peers": ".status.bgpPeers",
        "Mesh": ".status.meshEnabled",
        "Ready": '.status.conditions[?(@.type=="Ready")].status',
        "Age": ".metadata.creationTimestamp",
    }
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions.get("NonStructuralSchema") is None
    assert conditions["Established"] == "True"


def test_example_config_accepted(fresh: ControlPlane) -> None:
    doc = _example()
    status, body = request(fresh, "POST", RRC, doc)
    assert status == 201, body
    assert body["spec"] == doc["spec"]  # nothing pruned, nothing defaulted
    status, stored = request(fresh, "GET", DEFAULT)
    assert status == 200
    settings = settings_from_spec(stored["spec"], api_group="crd.projectcalico.org/v1")
    assert settings.plan.topology == "auto"


VALID_SPECS: list[dict[str, Any]] = [
    {},
    {"steps": "200:3,1000:5,5000:25", "routeReflectors": 4},
    {
        "topology": "hierarchy",
        "redundancy": 16,
        "minRouteReflectors": 1,
        "maxRouteReflectors": 1,
        "ratio": "1",
        "perZoneSizing": True,
        "sessionBudget": 10,
        "zoneLabel": "",
        "rackLabel": "example.com/rack",
        "racks": 1,
        "spines": 1,
        "preferredNodeLabel": "node-role.example.com/infra=yes",
        "dedicatedNodeLabel": "rr",
        "incompatibleNodeLabels": ["a", "b=", "example.com/c=d"],
        "routeReflectorLabel": "calico-route-reflector=",
        "clusterIDBase": "255.255.255.0",
        "asNumber": 4294967295,
        "maxRestartTime": "1h2m3.5s",
        "password": {"secretKeyRef": {"name": "bgp-secrets", "key": "rr.password"}},
        "sessionCheck": "NodeStatus",
        "waitTimeout": "1h",
        "debounce": "1m",
        "paused": True,
        "typha": {
            "enabled": True,
            "namespace": "calico-system",
            "name": "calico-typha",
            "coolDown": "24h",
            "settle": "1h",
        },
    },
    {"typha": {"enabled": False, "coolDown": "0s", "settle": "0s"}},
    {"waitTimeout": "1ns", "debounce": "0s", "ratio": ".5", "asNumber": 1},
]


@pytest.mark.parametrize("spec", VALID_SPECS, ids=range(len(VALID_SPECS)))
def test_valid_specs_accepted_by_both(fresh: ControlPlane, spec: dict[str, Any]) -> None:
    settings_from_spec(spec, api_group="crd.projectcalico.org/v1")  # no ConfigError
    status, body = request(fresh, "POST", RRC, _config(spec), params={"dryRun": "All"})
    assert status == 201, body
    assert body["spec"] == spec


INVALID_SPECS: list[tuple[str, dict[str, Any]]] = [
    ("bad topology", {"topology": "ring"}),
    ("redundancy 0", {"redundancy": 0}),
    ("redundancy 17", {"redundancy": 17}),
    ("routeReflectors 0", {"routeReflectors": 0}),
    ("max < min", {"minRouteReflectors": 5, "maxRouteReflectors": 3}),
    ("ratio and steps", {"ratio": "0.01", "steps": "200:3"}),
    ("min with steps", {"minRouteReflectors": 2, "steps": "200:3"}),
    ("ratio 0", {"ratio": "0"}),
    ("ratio > 1", {"ratio": "1.5"}),
    ("ratio as number", {"ratio": 0.5}),
    ("steps malformed", {"steps": "200-3"}),
    ("sessionBudget 9", {"sessionBudget": 9}),
    ("bad zone label", {"zoneLabel": "bad label"}),
    ("bad incompatible label", {"incompatibleNodeLabels": ["ok", "=x"]}),
    ("preferred key=", {"preferredNodeLabel": "infra="}),
    ("rr label ours", {"routeReflectorLabel": "calico-rr.io/route-reflector"}),
    ("clusterIDBase octet", {"clusterIDBase": "256.0.0.1"}),
    ("clusterIDBase short", {"clusterIDBase": "10.0.0"}),
    ("asNumber 0", {"asNumber": 0}),
    ("asNumber 2^32", {"asNumber": 4294967296}),
    ("maxRestartTime words", {"maxRestartTime": "2 minutes"}),
    ("maxRestartTime bare", {"maxRestartTime": "120"}),
    ("maxRestartTime 4096s", {"maxRestartTime": "4096s"}),
    ("maxRestartTime beyond Go", {"maxRestartTime": "99999999999999h"}),
    ("clusterIDBase leading zero", {"clusterIDBase": "010.0.0.0"}),
    ("routeReflectors 10^30", {"routeReflectors": 10**30}),
    ("routeReflectors 1001", {"routeReflectors": 1001}),
    ("maxRouteReflectors 1001", {"maxRouteReflectors": 1001}),
    ("spines 65", {"spines": 65}),
    ("racks 10001", {"racks": 10001}),
    ("sessionBudget 100001", {"sessionBudget": 100001}),
    ("password without key", {"password": {"secretKeyRef": {"name": "bgp"}}}),
    ("password without ref", {"password": {}}),
    ("sessionCheck case", {"sessionCheck": "auto"}),
    ("waitTimeout 0", {"waitTimeout": "0s"}),
    ("waitTimeout 2h", {"waitTimeout": "2h"}),
    ("debounce 5m", {"debounce": "5m"}),
    ("paused string", {"paused": "yes"}),
    ("typha not an object", {"typha": True}),
    ("typha enabled string", {"typha": {"enabled": "true"}}),
    ("typha namespace", {"typha": {"namespace": "Kube_System"}}),
    ("typha name", {"typha": {"name": "calico/typha"}}),
    ("typha coolDown 25h", {"typha": {"coolDown": "25h"}}),
    ("typha settle 2h", {"typha": {"settle": "2h"}}),
    ("typha settle bare", {"typha": {"settle": "30"}}),
]


@pytest.mark.parametrize(("case", "spec"), INVALID_SPECS, ids=[c for c, _ in INVALID_SPECS])
def test_invalid_specs_rejected_by_both(cp: ControlPlane, case: str, spec: dict[str, Any]) -> None:
    status, body = request(cp, "POST", RRC, _config(spec), params={"dryRun": "All"})
    assert status == 422, (case, status, body)
    assert body["reason"] == "Invalid", body
    with pytest.raises(ConfigError):
        settings_from_spec(spec, api_group="crd.projectcalico.org/v1")


def test_other_names_rejected(cp: ControlPlane) -> None:
    status, body = request(cp, "POST", RRC, _config({}, name="mine"), params={"dryRun": "All"})
    assert status == 422, body
    assert "default" in body["message"]


def test_unknown_field_pruned_or_rejected_strictly(cp: ControlPlane) -> None:
    # The API server prunes unknown fields silently (which is why the operator
    # rejects them itself when an object predates the schema); strict field
    # validation turns them into an error.
    doc = _config({"maxRouteRefectors": 3})
    status, body = request(cp, "POST", RRC, doc, params={"dryRun": "All"})
    assert status == 201, body
    assert body["spec"] == {}
    status, body = request(
        cp, "POST", RRC, doc, params={"dryRun": "All", "fieldValidation": "Strict"}
    )
    assert status in (400, 422), body
    assert "maxRouteRefectors" in body["message"]


# -- status subresource and printer columns ---------------------------------------------


def _condition(kind: str, status: str, reason: str) -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
        "observedGeneration": 1,
    }


def _table(cp: ControlPlane, path: str) -> dict[str, Any]:
    req = urllib.request.Request(cp.url + path, headers={"Accept": TABLE}, method="GET")
    with urllib.request.urlopen(req, context=cp.ssl_context(), timeout=30) as resp:
        table: dict[str, Any] = json.loads(resp.read())
    return table


def test_status_subresource(fresh: ControlPlane) -> None:
    cp = fresh
    status, created = request(cp, "POST", RRC, _config({"topology": "multi"}))
    assert status == 201, created
    generation = created["metadata"]["generation"]

    # PUT /status: the status changes, a spec change in the same body is ignored
    created["spec"] = {"topology": "single"}
    created["status"] = {
        "observedGeneration": generation,
        "phase": "Confirming",
        "topology": "multi",
        "routeReflectors": 6,
        "bgpPeers": 4,
        "meshEnabled": False,
        "meshBefore": True,
        "transition": {"kind": "Rollout", "madeAt": 12.5, "nodes": {"n1": ["a", "b"]}},
        "conditions": [_condition("Ready", "True", "Applied")],
    }
    status, updated = request(cp, "PUT", f"{DEFAULT}/status", created)
    assert status == 200, updated
    assert updated["spec"] == {"topology": "multi"}
    assert updated["status"]["transition"] == {
        "kind": "Rollout",
        "madeAt": 12.5,
        "nodes": {"n1": ["a", "b"]},
    }
    assert updated["metadata"]["generation"] == generation
    assert updated["status"]["phase"] == "Confirming"  # declared, so not pruned

    # PATCH /status (merge): meshBefore may be null, conditions are a map by type
    patch = {
        "status": {
            "meshBefore": None,
            "transition": None,
            "conditions": [
                _condition("Ready", "False", "Progressing"),
                _condition("Progressing", "True", "RollingOut"),
            ],
        },
        "spec": {"topology": "quorum"},
    }
    status, patched = request(cp, "PATCH", f"{DEFAULT}/status", patch, content_type=MERGE)
    assert status == 200, patched
    assert patched["spec"] == {"topology": "multi"}
    assert "meshBefore" not in patched["status"]  # merge-patch null removes it
    assert "transition" not in patched["status"]
    assert [c["type"] for c in patched["status"]["conditions"]] == ["Ready", "Progressing"]
    assert patched["status"]["routeReflectors"] == 6

    # a status written through the main resource is ignored
    status, body = request(
        cp, "PATCH", DEFAULT, {"status": {"routeReflectors": 99}}, content_type=MERGE
    )
    assert status == 200, body
    assert body["status"]["routeReflectors"] == 6

    # two conditions of one type are rejected (list-map keyed by type)
    dup = {
        "status": {
            "conditions": [_condition("Ready", "True", "A"), _condition("Ready", "False", "B")]
        }
    }
    status, body = request(cp, "PATCH", f"{DEFAULT}/status", dup, content_type=MERGE)
    assert status == 422, body
    bad = {"status": {"conditions": [_condition("Ready", "Maybe", "A")]}}
    status, body = request(cp, "PATCH", f"{DEFAULT}/status", bad, content_type=MERGE)
    assert status == 422, body

    # printer columns in a Table, with the values from the status
    table = _table(cp, DEFAULT)
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names == ["Name", "Phase", "Topology", "RRs", "Peers", "Mesh", "Ready", "Age"]
    [row] = table["rows"]
    cells = dict(zip(names, row["cells"], strict=True))
    assert cells["Name"] == CONFIG_NAME
    assert cells["Phase"] == "Confirming"  # what `kubectl get rrc` shows
    assert (cells["Topology"], cells["RRs"], cells["Peers"]) == ("multi", 6, 4)
    assert cells["Mesh"] is False
    assert cells["Ready"] == "False"


# -- RBAC ------------------------------------------------------------------------------

_COLLECTIONS = {
    "Namespace": "/api/v1/namespaces",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    "Deployment": "/apis/apps/v1/namespaces/{ns}/deployments",
    "PodDisruptionBudget": "/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets",
    "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
}


def _create_all(cp: ControlPlane, path: Path, *, dry_run: bool = False) -> list[str]:
    kinds: list[str] = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc:
            continue
        collection = _COLLECTIONS[doc["kind"]].format(ns=doc["metadata"].get("namespace"))
        params = {"dryRun": "All"} if dry_run else None
        status, body = request(cp, "POST", collection, doc, params=params)
        assert status in (201, 409), (doc["kind"], body)
        kinds.append(doc["kind"])
    return kinds


@pytest.fixture(scope="module")
def rbac(cp: ControlPlane) -> ControlPlane:
    kinds = _create_all(cp, DEPLOY / "rbac.yaml")
    assert sorted(kinds) == sorted(
        ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]
    )
    apply_crds(cp, CALICO_V1_CRDS)
    return cp


def _as_operator(
    cp: ControlPlane, method: str, path: str, body: Any = None, **kwargs: Any
) -> tuple[int, Any]:
    return request(cp, method, path, body, user=OPERATOR, **kwargs)


def test_operator_reads_and_patches_nodes(rbac: ControlPlane) -> None:
    cp = rbac
    status, body = request(
        cp,
        "POST",
        "/api/v1/nodes",
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}},
    )
    assert status in (201, 409), body
    status, body = _as_operator(cp, "GET", "/api/v1/nodes")
    assert status == 200, body
    assert "n1" in [n["metadata"]["name"] for n in body["items"]]
    patch = {"metadata": {"labels": {"calico-rr.io/route-reflector": "true"}}}
    status, body = _as_operator(cp, "PATCH", "/api/v1/nodes/n1", patch, content_type=MERGE)
    assert status == 200, body
    assert body["metadata"]["labels"]["calico-rr.io/route-reflector"] == "true"
    # but it may neither delete nor create nodes
    assert _as_operator(cp, "DELETE", "/api/v1/nodes/n1")[0] == 403
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}}
    assert _as_operator(cp, "POST", "/api/v1/nodes", node)[0] == 403


def test_operator_cannot_read_secrets(rbac: ControlPlane) -> None:
    assert _as_operator(rbac, "GET", f"/api/v1/namespaces/{NAMESPACE}/secrets")[0] == 403
    assert _as_operator(rbac, "GET", "/api/v1/secrets")[0] == 403
    # the admin can, so the 403 is RBAC's answer and not a missing path
    assert request(rbac, "GET", f"/api/v1/namespaces/{NAMESPACE}/secrets")[0] == 200


def test_operator_writes_calico_v1_resources(rbac: ControlPlane) -> None:
    cp = rbac
    peers = "/apis/crd.projectcalico.org/v1/bgppeers"
    peer = {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "BGPPeer",
        "metadata": {"name": "calico-rr-test"},
        "spec": {"nodeSelector": "all()", "peerSelector": "has(calico-rr.io/route-reflector)"},
    }
    status, body = _as_operator(cp, "POST", peers, peer)
    assert status == 201, body
    assert _as_operator(cp, "GET", peers)[0] == 200
    status, body = _as_operator(cp, "DELETE", f"{peers}/calico-rr-test")
    assert status == 200, body
    config = {
        "apiVersion": "crd.projectcalico.org/v1",
        "kind": "BGPConfiguration",
        "metadata": {"name": "default"},
        "spec": {"nodeToNodeMeshEnabled": False},
    }
    status, body = _as_operator(
        cp, "POST", "/apis/crd.projectcalico.org/v1/bgpconfigurations", config
    )
    assert status in (201, 409), body


def test_operator_holds_a_lease_in_its_namespace_only(rbac: ControlPlane) -> None:
    cp = rbac
    leases = f"/apis/coordination.k8s.io/v1/namespaces/{NAMESPACE}/leases"
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "calico-rr", "namespace": NAMESPACE},
        "spec": {"holderIdentity": "replica-a", "leaseDurationSeconds": 15},
    }
    status, created = _as_operator(cp, "POST", leases, lease)
    assert status == 201, created
    status, current = _as_operator(cp, "GET", f"{leases}/calico-rr")
    assert status == 200, current
    current["spec"]["holderIdentity"] = "replica-b"
    status, updated = _as_operator(cp, "PUT", f"{leases}/calico-rr", current)
    assert status == 200, updated
    assert updated["spec"]["holderIdentity"] == "replica-b"
    other = {**lease, "metadata": {"name": "calico-rr", "namespace": "default"}}
    status, body = _as_operator(
        cp, "POST", "/apis/coordination.k8s.io/v1/namespaces/default/leases", other
    )
    assert status == 403, body


def test_operator_writes_status_and_finalizer_not_delete(rbac: ControlPlane) -> None:
    cp = rbac
    _delete_default(cp)
    try:
        status, body = request(cp, "POST", RRC, _config({"topology": "multi"}))
        assert status == 201, body
        assert _as_operator(cp, "GET", RRC)[0] == 200
        patch = {"status": {"topology": "multi", "routeReflectors": 3}}
        status, body = _as_operator(cp, "PATCH", f"{DEFAULT}/status", patch, content_type=MERGE)
        assert status == 200, body
        assert body["status"]["routeReflectors"] == 3
        # patch on the object itself: the operator adds/removes its finalizer
        fin_patch = {"metadata": {"finalizers": ["calico-rr.io/uninstall"]}}
        status, body = _as_operator(cp, "PATCH", DEFAULT, fin_patch, content_type=MERGE)
        assert status == 200, body
        assert body["metadata"]["finalizers"] == ["calico-rr.io/uninstall"]
        clear = {"metadata": {"finalizers": None}}
        assert _as_operator(cp, "PATCH", DEFAULT, clear, content_type=MERGE)[0] == 200
        assert _as_operator(cp, "DELETE", DEFAULT)[0] == 403
    finally:
        _delete_default(cp)


def test_discovery_needs_no_extra_rbac(rbac: ControlPlane) -> None:
    # The operator finds the served Calico API group through /apis, not by reading CRDs.
    status, body = _as_operator(rbac, "GET", "/apis")
    assert status == 200, body
    groups = {g["name"] for g in body["groups"]}
    assert {"crd.projectcalico.org", CRD_GROUP} <= groups
    assert _as_operator(rbac, "GET", CRDS_PATH)[0] == 403


@pytest.mark.parametrize(
    ("group", "resource", "verb", "namespace", "allowed"),
    [
        ("projectcalico.org", "bgppeers", "create", None, True),
        ("projectcalico.org", "bgpconfigurations", "update", None, True),
        ("projectcalico.org", "caliconodestatuses", "delete", None, True),
        ("crd.projectcalico.org", "caliconodestatuses", "watch", None, True),
        # Events go through events.k8s.io/v1 only (create, and patch for a series)
        ("events.k8s.io", "events", "create", "default", True),
        ("events.k8s.io", "events", "patch", "kube-system", True),
        ("events.k8s.io", "events", "delete", "default", False),
        ("", "events", "create", "default", False),
        ("", "nodes", "update", None, False),
        ("", "pods", "list", None, False),
        ("projectcalico.org", "ippools", "create", None, False),
        ("apiextensions.k8s.io", "customresourcedefinitions", "list", None, False),
        ("coordination.k8s.io", "leases", "delete", NAMESPACE, False),
        # the Typha keeper: only the Deployment named calico-typha (resourceNames)
        ("apps", "deployments", "get", "kube-system", False),
        ("apps", "deployments", "list", None, False),
    ],
)
def test_access_review(
    rbac: ControlPlane,
    group: str,
    resource: str,
    verb: str,
    namespace: str | None,
    allowed: bool,
) -> None:
    attributes: dict[str, Any] = {"group": group, "resource": resource, "verb": verb}
    if namespace:
        attributes["namespace"] = namespace
    for subject in ({"user": OPERATOR}, {"user": f"system:serviceaccount:{NAMESPACE}:calico-rr"}):
        review = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {**subject, "resourceAttributes": attributes},
        }
        status, body = request(
            rbac, "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", review
        )
        assert status == 201, body
        assert body["status"].get("allowed", False) is allowed, (subject, attributes, body)


def test_operator_manifest_is_valid(rbac: ControlPlane) -> None:
    kinds = _create_all(rbac, DEPLOY / "operator.yaml", dry_run=True)
    assert kinds == ["Deployment", "PodDisruptionBudget", "NetworkPolicy"]
