"""A dual-stack cluster on a real kube-apiserver + etcd (issue 17): Nodes carrying
``projectcalico.org/IPv4Address`` and ``projectcalico.org/IPv6Address`` (some IPv4
only), Calico's CRDs, the planner's resources applied.  ``plan --kubeconfig``
prefers RRs with both addresses, ``verify --kubeconfig`` reports each family and
names the nodes without an IPv6 address, and the operator, running in-process as
the ``calico-rr`` user, picks only dual-stack RRs, or says in its status that it
could not."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.demo import create_nodes
from calico_rr.adapters.kube.operator import Operator
from calico_rr.core.planning.candidates import FAMILY_GAP
from calico_rr.core.planning.config import RR_LABEL
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import ANN_CLUSTER_ID, ANN_IPV6, Node
from calico_rr.sandbox import ControlPlane, apply_crds
from calico_rr.sandbox.manifests import apply_documents, calico_crds, install_operator_rbac

pytestmark = pytest.mark.integration

CONFIG = "/apis/calico-rr.io/v1alpha1/routereflectorconfigs/default"


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "calico_rr.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def dual_cluster(n: int, ipv4_only: int, zones: int = 3) -> list[Node]:
    """``n`` dual-stack nodes whose ``ipv4_only`` *oldest* have no IPv6 address: a
    planner without the family preference would pick them first (oldest first)."""
    nodes = synthetic_cluster(n, zones=zones, ip_family="dual")
    return [replace(x, ip6=None) if i < ipv4_only else x for i, x in enumerate(nodes)]


NODES = dual_cluster(30, ipv4_only=6)
IPV4_ONLY = sorted(n.name for n in NODES if n.ip6 is None)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[ControlPlane, KubeClient]]:
    with ControlPlane() as cp:
        apply_crds(cp, calico_crds("crd.projectcalico.org-v1"))
        admin = KubeClient.from_kubeconfig(cp.admin_kubeconfig)
        create_nodes(admin, NODES)
        try:
            yield cp, admin
        finally:
            admin.close()


def test_the_nodes_carry_both_annotations(cluster: tuple[ControlPlane, KubeClient]) -> None:
    _, admin = cluster
    items, _ = admin.list(api_path("v1", "nodes"))
    without = sorted(
        o["metadata"]["name"] for o in items if ANN_IPV6 not in o["metadata"]["annotations"]
    )
    assert len(items) == 30 and without == IPV4_ONLY


def test_plan_prefers_dual_stack_rrs(cluster: tuple[ControlPlane, KubeClient]) -> None:
    cp, _ = cluster
    done = cli("plan", "--kubeconfig", cp.admin_kubeconfig, "--topology", "multi", "-o", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    rrs = data["route_reflectors"]
    assert rrs >= 3 and data["warnings"] == []
    assert data["families"]["ipv4"]["route_reflectors"] == rrs
    assert data["families"]["ipv6"]["route_reflectors"] == rrs  # every RR has both
    assert data["families"]["ipv6"]["nodes_without_address"] == IPV4_ONLY


def _path(doc: dict[str, Any]) -> str:
    plural = {"Node": "nodes", "BGPPeer": "bgppeers", "BGPConfiguration": "bgpconfigurations"}
    return api_path(str(doc["apiVersion"]), plural[doc["kind"]], doc["metadata"]["name"])


def test_verify_reports_both_families(cluster: tuple[ControlPlane, KubeClient]) -> None:
    cp, admin = cluster
    rendered = cli("render", "--kubeconfig", cp.admin_kubeconfig, "--topology", "multi")
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    assert {"Node", "BGPPeer", "BGPConfiguration"} <= {d["kind"] for d in docs}
    for doc in docs:  # as `kubectl apply --server-side` of render's output does
        admin.apply(_path(doc), doc, force=True)
    rr_names = sorted(
        d["metadata"]["name"]
        for d in docs
        if d["kind"] == "Node" and ANN_CLUSTER_ID in (d["metadata"].get("annotations") or {})
    )
    assert rr_names and not set(rr_names) & set(IPV4_ONLY)

    done = cli("verify", "--kubeconfig", cp.admin_kubeconfig, "-o", "json")
    # the IPv4-only nodes hold no IPv6 route: the cluster as a whole does not verify
    assert done.returncode == 1, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    families = data["families"]
    assert set(families) == {"ipv4", "ipv6"}
    v4, v6 = families["ipv4"], families["ipv6"]
    assert v4["reachable"] is True and v4["nodes_without_address"] == []
    assert v4["single_rr_failure_tolerant"] is True and v4["nodes"] == 30
    assert v6["nodes_without_address"] == IPV4_ONLY
    assert v6["nodes"] == 24 and v6["reachable"] is False
    # among the nodes with an IPv6 address, the IPv6 sessions carry every route
    assert v6["pairs_without_address"] == 30 * 29 - 24 * 23
    assert v6["missing_pairs"] == v6["pairs_without_address"]
    assert data["reachable"] is False

    # --ip-family cannot re-decide a live cluster's families
    default = cli("verify", "--kubeconfig", cp.admin_kubeconfig, "--ip-family", "ipv4")
    assert default.returncode == 1 and "IPv6" in default.stdout  # the default: no override
    refused = cli("verify", "--kubeconfig", cp.admin_kubeconfig, "--ip-family", "ipv6")
    assert refused.returncode == 2 and "live cluster" in refused.stderr
    refused = cli("plan", "--kubeconfig", cp.admin_kubeconfig, "--ip-family", "dual")
    assert refused.returncode == 2 and "live cluster" in refused.stderr


# -- the operator --------------------------------------------------------------------


def run_operator(nodes: list[Node], check: Any) -> None:
    """A fresh control plane with ``nodes``, the operator in-process until ``check``
    (status, the nodes) holds, or fail after 120 s with the last status."""
    with ControlPlane() as cp:
        apply_crds(cp, calico_crds("crd.projectcalico.org-v1"))
        install_operator_rbac(cp)
        admin = KubeClient.from_kubeconfig(cp.admin_kubeconfig)
        create_nodes(admin, nodes)
        spec = {"topology": "multi", "waitTimeout": "1s"}
        apply_documents(
            cp,
            [
                {
                    "apiVersion": "calico-rr.io/v1alpha1",
                    "kind": "RouteReflectorConfig",
                    "metadata": {"name": "default"},
                    "spec": spec,
                }
            ],
        )
        client = KubeClient.from_kubeconfig(cp.operator_kubeconfig)
        op = Operator(client, identity="dual-0", env={}, lease_duration=3.0)
        op.start()
        status: dict[str, Any] = {}
        try:
            deadline = time.monotonic() + 120.0
            while time.monotonic() < deadline:
                status = dict((admin.get(CONFIG) or {}).get("status") or {})
                if status.get("phase") == "Steady" and status.get("meshEnabled") is False:
                    items, _ = admin.list(api_path("v1", "nodes"))
                    if check(status, items, op):
                        return
                time.sleep(0.1)
            raise AssertionError(f"operator never reached the expected state: {status}")
        finally:
            op.stop()
            admin.close()


def _rrs(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in items if RR_LABEL in (o["metadata"].get("labels") or {})]


def _degraded(status: dict[str, Any]) -> dict[str, Any]:
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    return dict(conds.get("Degraded") or {})


def test_the_operator_picks_dual_stack_rrs() -> None:
    seen: dict[str, Any] = {}

    def check(status: dict[str, Any], items: list[dict[str, Any]], op: Operator) -> bool:
        rrs = _rrs(items)
        sample = op.metrics.registry.get_sample_value
        seen.update(
            status=status, rrs=rrs, most=sample("calico_rr_sessions_per_rr", {"stat": "max"})
        )
        return len(rrs) >= 3

    run_operator(dual_cluster(24, ipv4_only=6), check)
    rrs = seen["rrs"]
    # the six oldest nodes (IPv4 only) would be first in line; none is an RR
    assert all(ANN_IPV6 in o["metadata"]["annotations"] for o in rrs), [
        o["metadata"]["name"] for o in rrs
    ]
    assert _degraded(seen["status"]).get("status") == "False"
    # sessions per RR per BGP daemon: in multi an RR peers with every other node, 23
    # in IPv4 and 17 in IPv6 (the six IPv4-only nodes have none); not the 40 of both
    assert seen["most"] == 23


def test_too_few_dual_stack_candidates_are_in_the_status() -> None:
    # 12 nodes, only the two youngest with IPv6: a third RR must be IPv4-only
    nodes = dual_cluster(12, ipv4_only=10, zones=0)
    seen: dict[str, Any] = {}

    def check(status: dict[str, Any], items: list[dict[str, Any]], _op: Operator) -> bool:
        seen.update(status=status, rrs=_rrs(items))
        return _degraded(status).get("status") == "True"

    run_operator(nodes, check)
    message = _degraded(seen["status"])["message"]
    assert FAMILY_GAP in message and "has no IPv6 address" in message
    with6 = {n.name for n in nodes if n.ip6 is not None}
    rr_names = {o["metadata"]["name"] for o in seen["rrs"]}
    assert with6 <= rr_names  # both dual-stack nodes were taken first
    assert len(rr_names - with6) >= 1


# -- the demo ------------------------------------------------------------------------


@pytest.mark.parametrize("datastore", ["kubernetes", "etcdv3"])
def test_the_demo_verifies_both_families(datastore: str) -> None:
    done = cli(
        "demo",
        "--datastore",
        datastore,
        "--nodes",
        "30",
        "--topology",
        "multi",
        "--ip-family",
        "dual",
        "--no-report",
        "-o",
        "json",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    r = json.loads(done.stdout)
    assert r["ip_family"] == "dual" and r["converged"] is True and r["verified"] is True
    v = r["verification"]
    assert set(v["families"]) == {"ipv4", "ipv6"}
    for family in v["families"].values():
        assert family["reachable"] is True and family["single_rr_failure_tolerant"] is True
        assert family["nodes_without_address"] == 0 and family["sessions"] > 0
    assert v["sessions"] == sum(f["sessions"] for f in v["families"].values())
    assert r["zone_failure"]["surviving_nodes_reach_each_other"] is True
