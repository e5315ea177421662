"""``plan``, ``render`` and ``verify`` read a live cluster (``--kubeconfig``,
``--context``) exactly as they read a file holding the same objects (issue 16
item 3), on a real kube-apiserver + etcd."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.demo import cluster_documents, create_nodes
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.sandbox import ControlPlane, apply_crds
from calico_rr.sandbox.manifests import calico_crds

pytestmark = pytest.mark.integration

GROUP = "crd.projectcalico.org/v1"


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "calico_rr.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[ControlPlane, KubeClient]]:
    with ControlPlane() as cp:
        apply_crds(cp, calico_crds("crd.projectcalico.org-v1"))
        admin = KubeClient.from_kubeconfig(cp.admin_kubeconfig)
        create_nodes(admin, synthetic_cluster(36, zones=3, racks=4))
        try:
            yield cp, admin
        finally:
            admin.close()


def _node_list(admin: KubeClient, path: Path) -> Path:
    items, _ = admin.list(api_path("v1", "nodes"))
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "NodeList", "items": items}))
    return path


def test_plan_reads_the_clusters_nodes(
    cluster: tuple[ControlPlane, KubeClient], tmp_path: Path
) -> None:
    cp, admin = cluster
    flags = ["--topology", "multi", "-o", "json"]
    live = cli("plan", "--kubeconfig", cp.admin_kubeconfig, "--context", "default", *flags)
    assert live.returncode == 0, live.stderr
    from_file = cli("plan", "--nodes-file", _node_list(admin, tmp_path / "n.json"), *flags)
    assert from_file.returncode == 0, from_file.stderr
    data = json.loads(live.stdout)
    assert data["nodes"] == 36 and data["topology"] == "multi"
    assert data == json.loads(from_file.stdout)


def test_render_reads_the_clusters_nodes(
    cluster: tuple[ControlPlane, KubeClient], tmp_path: Path
) -> None:
    cp, admin = cluster
    flags = ["--topology", "hierarchy", "--racks", "4"]
    live = cli("render", "--kubeconfig", cp.admin_kubeconfig, *flags)
    assert live.returncode == 0, live.stderr
    from_file = cli("render", "--nodes-file", _node_list(admin, tmp_path / "n.json"), *flags)
    assert live.stdout == from_file.stdout
    kinds = {d["kind"] for d in yaml.safe_load_all(live.stdout)}
    assert {"Node", "BGPPeer", "BGPConfiguration"} <= kinds


def test_verify_reads_the_clusters_bgp_objects(
    cluster: tuple[ControlPlane, KubeClient], tmp_path: Path
) -> None:
    cp, admin = cluster
    live = cli("verify", "--kubeconfig", cp.admin_kubeconfig, "-o", "json")
    dump = tmp_path / "dump.json"
    dump.write_text(json.dumps({"kind": "List", "items": cluster_documents(admin, GROUP)}))
    from_file = cli("verify", "--resources", dump, "-o", "json")
    assert live.returncode == from_file.returncode == 0, live.stdout + live.stderr
    got: dict[str, Any] = json.loads(live.stdout)
    assert got["nodes"] == 36 and got["reachable"] is True  # the full mesh
    got.pop("notes")
    want = json.loads(from_file.stdout)
    want.pop("notes")
    assert got == want

    # The cluster's BGPConfiguration is read too: with the mesh off and no BGPPeer,
    # no node reaches another, and verify says so from the live objects.
    admin.create(
        api_path(GROUP, "bgpconfigurations"),
        {
            "apiVersion": GROUP,
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {"nodeToNodeMeshEnabled": False},
        },
    )
    try:
        broken = cli("verify", "--kubeconfig", cp.admin_kubeconfig, "-o", "json")
        assert broken.returncode == 1, broken.stderr
        assert json.loads(broken.stdout)["reachable"] is False
    finally:
        admin.delete(api_path(GROUP, "bgpconfigurations", "default"))


def test_live_inputs_bad_input_exits_2(
    cluster: tuple[ControlPlane, KubeClient], tmp_path: Path
) -> None:
    cp, _ = cluster
    both = cli("plan", "--kubeconfig", cp.admin_kubeconfig, "--nodes", "5")
    assert both.returncode == 2 and "--kubeconfig/--context" in both.stderr
    clash = cli("verify", "--kubeconfig", cp.admin_kubeconfig, "--resources", "x.yaml")
    assert clash.returncode == 2 and "not both" in clash.stderr
    context = cli("render", "--kubeconfig", cp.admin_kubeconfig, "--context", "nope")
    assert context.returncode == 2 and "nope" in context.stderr, context.stderr
    missing = cli("plan", "--kubeconfig", tmp_path / "absent")
    assert missing.returncode == 2 and missing.stderr.startswith("calico-rr: error:")
