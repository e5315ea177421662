"""Preview before apply (issue 16 item 3) on a real kube-apiserver + etcd, and on a
real etcd datastore.

* A paused operator publishes ``status.preview`` (the API server keeps the field:
  the CRD's schema declares it) and writes nothing else: the audit log shows only
  its config status, its Lease and Events; unpaused, it converges to exactly what
  the preview said (the same RRs, BGPPeers, mesh setting and number of writes).
* ``calico-rr diff`` exits 1 on a cluster still on the mesh and 0 once the operator
  is Steady; its dry run is accepted by the API server and stores nothing.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.demo import create_nodes, describe
from calico_rr.adapters.kube.operator import Operator
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import ANN_CLUSTER_ID
from calico_rr.sandbox import ControlPlane, apply_crds
from calico_rr.sandbox.etcd import EtcdServer
from calico_rr.sandbox.manifests import apply_documents, calico_crds, install_operator_rbac

from .scenario_drivers import EtcdDriver

pytestmark = pytest.mark.integration

GROUP = "crd.projectcalico.org/v1"
CONFIG = "/apis/calico-rr.io/v1alpha1/routereflectorconfigs/default"
WRITES = frozenset({"create", "update", "patch", "delete", "deletecollection"})
SPEC = {"waitTimeout": "1s", "debounce": "20ms"}


def wait_for(what: str, cond: Callable[[], bool], timeout: float = 120.0) -> None:
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


class Kube:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.admin = KubeClient.from_kubeconfig(cp.admin_kubeconfig)

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

    def nodes(self) -> dict[str, dict[str, Any]]:
        items, _ = self.admin.list(api_path("v1", "nodes"))
        return {o["metadata"]["name"]: o for o in items}

    def rrs(self) -> list[str]:
        return sorted(
            n
            for n, o in self.nodes().items()
            if ANN_CLUSTER_ID in (o["metadata"].get("annotations") or {})
        )

    def our_labels(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for name, o in self.nodes().items():
            ours = {
                k: v for k, v in (o["metadata"].get("labels") or {}).items() if "calico-rr.io" in k
            }
            if ours:
                out[name] = ours
        return out

    def peers(self) -> list[str]:
        items, _ = self.admin.list(api_path(GROUP, "bgppeers"))
        return sorted(o["metadata"]["name"] for o in items)

    def mesh(self) -> bool:
        cfg = self.admin.get(api_path(GROUP, "bgpconfigurations", "default")) or {}
        return (cfg.get("spec") or {}).get("nodeToNodeMeshEnabled") is not False

    def operator_writes(self, start: int = 0) -> list[dict[str, Any]]:
        events = self.cp.audit_events("calico-rr")[start:]
        return [e for e in events if e.get("verb") in WRITES]

    def steady(self, op: Operator, timeout: float = 120.0) -> None:
        def done() -> bool:
            st = self.status()
            return (
                op.stats.last_phase == "Steady"
                and st.get("phase") == "Steady"
                and st.get("meshEnabled") is False
            )

        wait_for("Steady with the mesh off", done, timeout)


@pytest.fixture
def kube() -> Iterator[Kube]:
    with ControlPlane(audit=True) as cp:
        apply_crds(cp, calico_crds("crd.projectcalico.org-v1"))
        install_operator_rbac(cp)
        k = Kube(cp)
        try:
            yield k
        finally:
            k.admin.close()


def start_operator(cp: ControlPlane) -> Operator:
    client = KubeClient.from_kubeconfig(cp.operator_kubeconfig)
    op = Operator(client, identity="op", env={}, lease_duration=3.0)
    op.start()
    return op


def _ref(event: dict[str, Any]) -> dict[str, Any]:
    ref = event.get("objectRef")
    return ref if isinstance(ref, dict) else {}


def _allowed_while_paused(event: dict[str, Any]) -> bool:
    """Its config's status, its Lease, Events: nothing of the cluster's routing."""
    ref = _ref(event)
    resource, sub = ref.get("resource"), ref.get("subresource")
    if resource == "routereflectorconfigs":
        return sub == "status"
    return resource in ("leases", "events")


def _layout_write(event: dict[str, Any]) -> bool:
    """A write the preview counts: nodes, BGPPeers, CalicoNodeStatus, the mesh flag."""
    resource = _ref(event).get("resource")
    return resource in ("nodes", "bgppeers", "caliconodestatuses", "bgpconfigurations")


def run_diff(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "calico_rr.cli", "diff", "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_paused_300_nodes_previews_writes_nothing_then_converges_to_it(kube: Kube) -> None:
    create_nodes(kube.admin, synthetic_cluster(300, zones=3))
    kube.config({**SPEC, "paused": True})
    before = len(kube.cp.audit_events("calico-rr"))
    op = start_operator(kube.cp)
    try:
        wait_for(
            "the preview in the status",
            lambda: kube.status().get("phase") == "Paused" and "preview" in kube.status(),
        )
        time.sleep(1.5)  # more passes (debounce, resync) and any trailing write
        preview = kube.status()["preview"]
        print(f"\npreview: {preview['message']}")
        assert preview["outcome"] == "Steady"
        assert preview["routeReflectors"] == len(preview["addRouteReflectors"]) >= 3
        assert preview["addRouteReflectorsCount"] == preview["routeReflectors"]
        assert preview["removeRouteReflectors"] == []
        assert preview["createBGPPeers"], preview
        assert preview["meshOff"] is True and preview["safe"] is True
        assert preview["writes"] > len(preview["addRouteReflectors"])
        assert "Paused" not in preview["steps"] and preview["steps"][-1] == "Steady"
        assert kube.status()["message"].startswith("paused by spec.paused; would: ")

        writes = kube.operator_writes(before)
        assert any(_ref(e).get("subresource") == "status" for e in writes)
        others = [describe(e) for e in writes if not _allowed_while_paused(e)]
        assert others == [], f"a paused operator wrote: {others[:10]}"
        assert kube.our_labels() == {} and kube.rrs() == [] and kube.peers() == []
        assert kube.mesh() is True

        # diff plans with the (paused) config, exactly as the preview did
        result = run_diff(kube.cp.admin_kubeconfig)
        assert result.returncode == 1, result.stdout + result.stderr
        assert preview["message"] in result.stdout
        assert "the API server accepts every write" in result.stdout
        assert kube.peers() == [] and kube.our_labels() == {}  # the dry run stored nothing

        unpaused = len(kube.cp.audit_events("calico-rr"))
        kube.admin.patch(CONFIG, {"spec": {"paused": False}})
        kube.steady(op)
        time.sleep(0.5)
        assert kube.rrs() == preview["addRouteReflectors"]
        ours = [p for p in kube.peers() if not p.endswith("-prev")]
        assert ours == sorted(preview["createBGPPeers"])
        assert kube.mesh() is False
        status = kube.status()
        assert "preview" not in status
        assert status["routeReflectors"] == preview["routeReflectors"]
        assert status["topology"] == preview["topology"]
        layout = [describe(e) for e in kube.operator_writes(unpaused) if _layout_write(e)]
        assert len(layout) == preview["writes"], layout
        assert len(kube.our_labels()) == preview["nodesChanged"]
    finally:
        op.stop()


def test_diff_exits_1_before_the_first_rollout_and_0_after(kube: Kube) -> None:
    create_nodes(kube.admin, synthetic_cluster(40, zones=2))
    # no config yet: the planning flags decide
    result = run_diff(kube.cp.admin_kubeconfig, "--topology", "multi", "--zone-label", "")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "the planning flags" in result.stdout
    assert "+ bgppeer/" in result.stdout and "~ node/" in result.stdout
    assert "- spec.nodeToNodeMeshEnabled=true" in result.stdout
    assert "+ spec.nodeToNodeMeshEnabled=false" in result.stdout
    assert "safety gate: passes" in result.stdout
    assert kube.peers() == [] and kube.our_labels() == {}

    kube.config({**SPEC, "topology": "multi"})
    op = start_operator(kube.cp)
    try:
        kube.steady(op)
    finally:
        op.stop()
    result = run_diff(kube.cp.admin_kubeconfig)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "nothing to change" in result.stdout
    assert "RouteReflectorConfig" in result.stdout


def test_diff_bad_input_exits_2(kube: Kube, tmp_path: Path) -> None:
    result = run_diff(kube.cp.admin_kubeconfig, "--nodes", "5")
    assert result.returncode == 2
    assert "drop --nodes" in result.stderr
    result = run_diff(tmp_path / "missing.kubeconfig")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("calico-rr: error:")


def test_paused_on_etcd_previews_writes_nothing_then_converges_to_it() -> None:
    with EtcdServer() as server:
        client = server.client(timeout=5.0)
        d = EtcdDriver(name="etcdv3", server=server, admin=client)
        try:
            d.add_nodes(synthetic_cluster(60, zones=3))
            d.set_config({**SPEC, "paused": True})
            r = d.start_operator()
            wait_for("the preview", lambda: "preview" in d.status())
            time.sleep(1.0)
            preview = d.status()["preview"]
            assert d.status()["phase"] == "Paused"
            assert preview["outcome"] == "Steady" and preview["meshOff"] is True
            assert r.layout_writes == 0, "a paused operator wrote into Calico's datastore"
            assert d.rr_nodes() == [] and d.managed_peers() == {}

            d.set_config({**SPEC, "paused": False})
            d.wait_steady(r)
            rrs = sorted(n for n, v in d.nodes().items() if v.cluster_id)
            assert rrs == preview["addRouteReflectors"]
            assert sorted(d.managed_peers()) == sorted(preview["createBGPPeers"])
            assert r.layout_writes == preview["writes"]
            assert "preview" not in d.status()
        finally:
            d.stop_all()
            client.close()
