"""calicoctl accepts what calico-rr writes (issue 13 item 5; docs/CALICO.md).

Calico's own ``calicoctl`` (built from the Go module proxy by
scripts/calico-build.sh through ``calico_rr.adapters.calico_bin``) runs in
Kubernetes-datastore mode against a real kube-apiserver holding Calico's
crd.projectcalico.org/v1 CRDs *of the same Calico version*.  For the render output of
every topology, and for ``deploy/example-config.yaml``'s settings:

1. the synthetic Nodes are created, then the render output (node labels and
   cluster-ID annotations, BGPPeers, BGPConfiguration) is server-side applied as
   ``calico-rr render | kubectl apply --server-side`` would;
2. ``calicoctl get bgppeers|bgpconfigurations|nodes -o yaml`` reads it back through
   Calico's client library, and ``calicoctl replace -f`` sends it through Calico's
   validation: every object must be accepted (a rejection names the object).  This is
   ``roundtrip()`` of tests/integration/calicoctl.py, which the operator scenarios
   (test_operator_scenarios.py, test_scenarios_both_datastores.py) also run on the
   state each scenario leaves;
3. the same plan rendered for ``projectcalico.org/v3`` goes through
   ``calicoctl apply -f`` as written;
4. each RR node's ``spec.bgp.routeReflectorClusterID`` as calicoctl shows it is the
   cluster ID calico-rr wrote, and no other node has one.

Invalid objects (a bad selector, ``peerIP`` beside a ``peerSelector``, mesh settings on
a non-default BGPConfiguration) are rejected by ``calicoctl apply`` while the API server,
whose CRDs validate none of that, stores them: the check can fail.
"""

from __future__ import annotations

import dataclasses
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico_rr.adapters.calico_bin import CalicoBinaries, locate
from calico_rr.core.formats.kube import node_to_k8s
from calico_rr.core.operator.settings import settings_from_spec
from calico_rr.core.planning.config import PlanConfig
from calico_rr.core.planning.planner import Plan, plan
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.core.values import parse_duration
from calico_rr.model import MANAGED_BY_LABEL, MANAGED_BY_VALUE
from calico_rr.sandbox import ControlPlane, apply_crds, request

from .calicoctl import KINDS, Ctl, roundtrip

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
V1 = "/apis/crd.projectcalico.org/v1"
APPLY = "application/apply-patch+yaml"
FIELD_MANAGER = "calico-rr"
CID_ANNOTATION = "projectcalico.org/RouteReflectorClusterID"
METADATA_ANNOTATION = "projectcalico.org/metadata"


@pytest.fixture(scope="module")
def calico() -> CalicoBinaries:
    """Built on first use (minutes), cached afterwards; a failure fails the tests."""
    return locate()


@pytest.fixture(scope="module")
def cp(calico: CalicoBinaries) -> Iterator[ControlPlane]:
    with ControlPlane() as plane:
        names = apply_crds(plane, calico.crds)
        assert "bgppeers.crd.projectcalico.org" in names
        yield plane


@pytest.fixture(scope="module")
def ctl(cp: ControlPlane, calico: CalicoBinaries, tmp_path_factory: pytest.TempPathFactory) -> Ctl:
    return Ctl.kubernetes(
        calico.calicoctl, cp.admin_kubeconfig, tmp_path_factory.mktemp("calicoctl")
    )


def _meaning(spec: dict[str, Any]) -> dict[str, Any]:
    """A BGPPeer spec with its duration as seconds: Calico writes ``120s`` back as
    ``2m0s`` (a Go metav1.Duration), which means the same."""
    out = dict(spec)
    if "maxRestartTime" in out:
        out["maxRestartTime"] = parse_duration(out["maxRestartTime"])
    return out


# -- the cluster ------------------------------------------------------------------------


def _wait_empty(cp: ControlPlane, path: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        status, body = request(cp, "GET", path)
        assert status == 200, body
        if not body["items"]:
            return
        assert time.monotonic() < deadline, f"{path} not emptied: {len(body['items'])} left"
        time.sleep(0.1)


def _reset(cp: ControlPlane) -> None:
    """No Nodes, BGPPeers or BGPConfigurations (each case starts from nothing)."""
    for path in (f"{V1}/bgppeers", f"{V1}/bgpconfigurations", "/api/v1/nodes"):
        status, body = request(cp, "DELETE", path)
        assert status == 200, (path, body)
        _wait_empty(cp, path)


def _object_path(doc: dict[str, Any]) -> str:
    name = doc["metadata"]["name"]
    if doc["kind"] == "Node":
        return f"/api/v1/nodes/{name}"
    plural = {"BGPPeer": "bgppeers", "BGPConfiguration": "bgpconfigurations"}[doc["kind"]]
    return f"/apis/{doc['apiVersion']}/{plural}/{name}"


def _install(cp: ControlPlane, the_plan: Plan) -> list[dict[str, Any]]:
    """Nodes as a kubelet makes them, then the render output, server-side applied."""
    _reset(cp)
    for node in the_plan.nodes:
        status, body = request(cp, "POST", "/api/v1/nodes", node_to_k8s(node))
        assert status == 201, body
    docs = the_plan.resources()
    assert {d["kind"] for d in docs} == {"Node", "BGPPeer", "BGPConfiguration"}
    for doc in docs:
        status, body = request(
            cp,
            "PATCH",
            _object_path(doc),
            yaml.safe_dump(doc),
            content_type=APPLY,
            params={"fieldManager": FIELD_MANAGER},
        )
        assert status in (200, 201), (doc["kind"], doc["metadata"]["name"], body)
    return docs


# -- the cases --------------------------------------------------------------------------


def _example_config() -> PlanConfig:
    doc = yaml.safe_load((REPO / "deploy" / "example-config.yaml").read_text())
    return settings_from_spec(doc["spec"], api_group="crd.projectcalico.org/v1").plan


CASES: dict[str, tuple[int, dict[str, Any], PlanConfig]] = {
    "single": (30, {"zones": 3}, PlanConfig(topology="single")),
    "multi": (120, {"zones": 3}, PlanConfig(topology="multi", rrs=9)),
    "quorum": (60, {"zones": 3}, PlanConfig(topology="quorum", rrs=9)),
    "hierarchy": (200, {"zones": 3}, PlanConfig(topology="hierarchy", racks=8)),
    # Every optional field render can write: restart time, password, AS number.
    "multi-options": (
        90,
        {"zones": 3},
        PlanConfig(
            topology="multi",
            rrs=6,
            max_restart_time="120s",
            password_secret=("bgp-password", "password"),
            as_number=64512,
        ),
    ),
}


def _case_plan(case: str) -> Plan:
    if case == "example-config":
        return plan(synthetic_cluster(150, zones=3), _example_config())
    nodes, cluster, config = CASES[case]
    return plan(synthetic_cluster(nodes, **cluster), config)


@pytest.mark.parametrize("case", [*CASES, "example-config"])
def test_calicoctl_accepts_render_output(cp: ControlPlane, ctl: Ctl, case: str) -> None:
    the_plan = _case_plan(case)
    if case in CASES and case != "multi-options":
        assert the_plan.topology == case
    peers = the_plan.bgppeers()
    _install(cp, the_plan)

    # Read back through Calico's client library, then through Calico's validation
    # (``calicoctl replace`` of everything read): zero rejections.
    trip = roundtrip(ctl)
    assert trip.rejections == []
    assert set(trip.objects) == set(KINDS)

    # Everything we wrote, nothing else.
    got_peers = trip.objects["bgppeers"]
    assert {p["metadata"]["name"] for p in got_peers} == {p["metadata"]["name"] for p in peers}
    by_name = {p["metadata"]["name"]: p for p in got_peers}
    for peer in peers:
        got = by_name[peer["metadata"]["name"]]
        assert got["apiVersion"] == "projectcalico.org/v3"
        assert _meaning(got["spec"]) == _meaning(peer["spec"]), got
        assert got["metadata"]["labels"] == peer["metadata"]["labels"]
    got_configs = trip.objects["bgpconfigurations"]
    assert [c["metadata"]["name"] for c in got_configs] == ["default"]
    assert got_configs[0]["spec"] == the_plan.bgp_configuration()["spec"]

    # The node side: cluster IDs (annotation -> spec.bgp) and our labels, as Calico reads them.
    cids = the_plan.layout.cluster_ids()
    assert cids, "a plan without route reflectors"
    got_nodes = trip.objects["nodes"]
    assert len(got_nodes) == len(the_plan.nodes)
    for node in got_nodes:
        name = node["metadata"]["name"]
        got_cid = ((node.get("spec") or {}).get("bgp") or {}).get("routeReflectorClusterID")
        assert got_cid == cids.get(name), (name, got_cid, cids.get(name))
        want = the_plan.layout.node_labels.get(name, {})
        assert want.items() <= node["metadata"].get("labels", {}).items(), name

    # The replaced objects still mean what we wrote.
    status, stored = request(cp, "GET", f"{V1}/bgppeers")
    assert status == 200, stored
    assert {p["metadata"]["name"]: _meaning(p["spec"]) for p in stored["items"]} == {
        p["metadata"]["name"]: _meaning(p["spec"]) for p in peers
    }
    for name, cid in cids.items():
        status, k8s_node = request(cp, "GET", f"/api/v1/nodes/{name}")
        assert status == 200, k8s_node
        assert k8s_node["metadata"]["annotations"][CID_ANNOTATION] == cid

    # The same plan rendered for projectcalico.org/v3, applied with calicoctl as written.
    v3 = dataclasses.replace(the_plan.config, api_group="projectcalico.org/v3")
    v3_docs = [d for d in plan(list(the_plan.nodes), v3).resources() if d["kind"] != "Node"]
    assert {d["apiVersion"] for d in v3_docs} == {"projectcalico.org/v3"}
    assert ctl.rejections("apply", v3_docs) == []


def test_calicoctl_replace_moves_our_labels_off_the_crd_object(cp: ControlPlane, ctl: Ctl) -> None:
    """What a calicoctl write does to our BGPPeers on crd.projectcalico.org/v1: the
    labels (``app.kubernetes.io/managed-by: calico-rr``, the operator's informer
    selector) leave the Kubernetes object's metadata and live on only inside the
    ``projectcalico.org/metadata`` annotation; calicoctl itself still shows them."""
    the_plan = _case_plan("multi")
    _install(cp, the_plan)
    selector = {"labelSelector": f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"}
    status, before = request(cp, "GET", f"{V1}/bgppeers", params=selector)
    assert status == 200, before
    assert len(before["items"]) == len(the_plan.bgppeers())

    assert ctl.rejections("replace", ctl.get("bgppeers")) == []

    status, after = request(cp, "GET", f"{V1}/bgppeers", params=selector)
    assert status == 200, after
    assert after["items"] == []
    status, stored = request(cp, "GET", f"{V1}/bgppeers")
    assert status == 200, stored
    assert len(stored["items"]) == len(the_plan.bgppeers())
    for item in stored["items"]:
        assert MANAGED_BY_LABEL not in (item["metadata"].get("labels") or {})
        assert METADATA_ANNOTATION in item["metadata"]["annotations"]
    for peer in ctl.get("bgppeers"):
        assert peer["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY_VALUE


INVALID: dict[str, tuple[dict[str, Any], str]] = {
    "bad-selector": (
        {
            "kind": "BGPPeer",
            "spec": {
                "nodeSelector": "calico-rr.io/group == 'g1",
                "peerSelector": "has(calico-rr.io/route-reflector)",
            },
        },
        "error with field NodeSelector",
    ),
    "peer-ip-and-selector": (
        {
            "kind": "BGPPeer",
            "spec": {"peerIP": "10.0.0.1", "peerSelector": "has(calico-rr.io/route-reflector)"},
        },
        "PeerIP field must be empty when PeerSelector is specified",
    ),
    "mesh-off-default": (
        {"kind": "BGPConfiguration", "spec": {"nodeToNodeMeshEnabled": False}},
        "Cannot set nodeToNodeMeshEnabled on a non default BGP Configuration",
    ),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_calicoctl_rejects_invalid_objects(cp: ControlPlane, ctl: Ctl, case: str) -> None:
    """The check can fail: calicoctl refuses what Calico's validation refuses, which
    the API server (the CRDs validate none of it) stores as it is."""
    _reset(cp)
    partial, message = INVALID[case]
    kind = partial["kind"]
    plural = {"BGPPeer": "bgppeers", "BGPConfiguration": "bgpconfigurations"}[kind]
    bad = {"apiVersion": "projectcalico.org/v3", "metadata": {"name": "calico-rr-bad"}, **partial}
    [rejected] = ctl.rejections("apply", [bad])
    assert rejected.startswith(f"{kind} calico-rr-bad: "), rejected
    assert message in rejected, rejected
    status, body = request(cp, "GET", f"{V1}/{plural}/calico-rr-bad")
    assert status == 404, body

    status, body = request(
        cp, "POST", f"{V1}/{plural}", {**bad, "apiVersion": "crd.projectcalico.org/v1"}
    )
    assert status == 201, body
    status, body = request(cp, "DELETE", f"{V1}/{plural}/calico-rr-bad")
    assert status == 200, body


def test_calico_version_is_recorded(calico: CalicoBinaries, ctl: Ctl) -> None:
    assert calico.branch.startswith("release-v3."), calico.branch
    assert calico.version in calico.label
    done = ctl.run("version")
    assert f"Client Version:    {calico.manifests}-g{calico.commit}" in done.stdout, done.stdout
    confd = subprocess.run(
        [str(calico.confd), "-version"], capture_output=True, text=True, check=False
    )
    assert confd.returncode == 0, confd.stderr
    assert calico.commit in confd.stdout
