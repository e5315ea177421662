"""`calico-rr uninstall --dry-run` against a real kube-apiserver: it reads the
cluster the operator converged, prints the uninstall's steps and writes nothing (no
write request in the API server's audit log, every resourceVersion unchanged); the
real uninstall then deletes exactly what the dry run listed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from calico_rr.adapters.etcd.operator import DEFAULT_PREFIX
from calico_rr.adapters.etcd.values import EventType, WatchEvent
from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.demo import CONFIG_PATH, WRITE_VERBS, create_nodes
from calico_rr.adapters.kube.operator import Operator
from calico_rr.core.formats import etcd as L
from calico_rr.core.operator.settings import CONFIG_NAME
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import MANAGED_BY_LABEL, MANAGED_BY_VALUE, PREFIX
from calico_rr.sandbox import ControlPlane, apply_crds
from calico_rr.sandbox.manifests import apply_documents, calico_crds, install_operator_rbac

from .test_etcd_operator import Cluster, cluster, converge, etcd

__all__ = ["cluster", "etcd"]  # the etcd tests' fixtures, used here

pytestmark = pytest.mark.integration

GROUP = "crd.projectcalico.org/v1"
NODES = 15
REPO = Path(__file__).resolve().parents[2]
OURS = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
UNINSTALL = [sys.executable, "-m", "calico_rr.cli", "uninstall"]


@pytest.fixture(scope="module")
def converged() -> Iterator[tuple[ControlPlane, KubeClient]]:
    """A cluster the operator moved off the mesh onto RRs; the operator stopped."""
    with ControlPlane(audit=True) as plane:
        apply_crds(plane, calico_crds("crd.projectcalico.org-v1"))
        install_operator_rbac(plane)
        admin = KubeClient.from_kubeconfig(plane.admin_kubeconfig, user_agent="test-admin")
        create_nodes(admin, synthetic_cluster(NODES, zones=3))
        config = {
            "apiVersion": "calico-rr.io/v1alpha1",
            "kind": "RouteReflectorConfig",
            "metadata": {"name": CONFIG_NAME},
            "spec": {"waitTimeout": "1s", "topology": "multi"},
        }
        apply_documents(plane, [config])
        client = KubeClient.from_kubeconfig(plane.operator_kubeconfig)
        op = Operator(client, env={}, leader_election=False)
        op.start()
        try:
            deadline = time.monotonic() + 60
            while _status(admin).get("phase") != "Steady" or _status(admin).get("meshEnabled"):
                assert time.monotonic() < deadline, f"not converged: {_status(admin)}"
                time.sleep(0.1)
        finally:
            op.stop()
            client.close()
        yield plane, admin
        admin.close()


def _status(admin: KubeClient) -> dict[str, Any]:
    return dict((admin.get(f"{CONFIG_PATH}/{CONFIG_NAME}") or {}).get("status") or {})


def _versions(admin: KubeClient) -> dict[str, str]:
    """kind/name -> resourceVersion of everything an uninstall touches."""
    out: dict[str, str] = {}
    for path in (
        api_path("v1", "nodes"),
        api_path(GROUP, "bgppeers"),
        api_path(GROUP, "bgpconfigurations"),
        api_path(GROUP, "caliconodestatuses"),
        CONFIG_PATH,
    ):
        for obj in admin.list(path)[0]:
            meta = obj["metadata"]
            out[f"{path}/{meta['name']}"] = meta["resourceVersion"]
    return out


def _writes(plane: ControlPlane) -> list[str]:
    """Every write but the API server's own: it renews its identity Lease every
    10 s as ``system:apiserver`` (seen in CI: one ``update leases`` between the
    snapshots).  The CLI, the test and the operator write as other users."""
    return [
        f"{e.get('verb')} {(e.get('objectRef') or {}).get('resource')}"
        for e in plane.audit_events()
        if e.get("verb") in WRITE_VERBS
        and not str((e.get("user") or {}).get("username", "")).startswith("system:")
    ]


def _cli(plane: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*UNINSTALL, "--kubeconfig", str(plane.admin_kubeconfig), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_dry_run_writes_nothing_and_lists_what_uninstall_deletes(
    converged: tuple[ControlPlane, KubeClient],
) -> None:
    plane, admin = converged
    our_peers = sorted(
        p["metadata"]["name"]
        for p in admin.list(api_path(GROUP, "bgppeers"), label_selector=OURS)[0]
    )
    labelled = sorted(
        n["metadata"]["name"]
        for n in admin.list(api_path("v1", "nodes"))[0]
        if any(k.startswith(PREFIX + "/") for k in n["metadata"].get("labels") or {})
    )
    assert our_peers and labelled
    before, writes_before = _versions(admin), _writes(plane)

    dry = _cli(plane, "--dry-run", "-o", "json")
    assert dry.returncode == 0, dry.stderr[-3000:]
    text = _cli(plane, "--dry-run")
    assert text.returncode == 0, text.stderr[-3000:]
    time.sleep(0.5)  # a stray write would be in the audit log by now
    assert _versions(admin) == before
    assert _writes(plane) == writes_before

    preview = json.loads(dry.stdout)
    assert preview["dry_run"] is True and preview["node_to_node_mesh"] is False
    steps = preview["steps"]
    assert steps[0]["create_bgppeers"] == ["calico-rr-bridge"]
    assert steps[0]["node_to_node_mesh"] is True
    removed = {n["name"] for s in steps for n in s.get("remove_from_nodes", [])}
    assert sorted(removed) == labelled
    deleted = {name for s in steps for name in s.get("delete_bgppeers", [])}
    assert deleted == {*our_peers, "calico-rr-bridge"}
    assert steps[-1]["phase"] == "Uninstalled"
    assert "dry run, nothing written" in text.stdout
    assert "switch the node-to-node mesh on" in text.stdout
    assert f"remove from {len(labelled)} nodes" in text.stdout

    done = _cli(plane, "--timeout", "60", "-o", "yaml")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "uninstalled: true" in done.stdout
    assert admin.list(api_path(GROUP, "bgppeers"), label_selector=OURS)[0] == []
    again = _cli(plane, "--dry-run")
    assert again.returncode == 2 and "nothing to uninstall" in again.stderr


# -- on Calico's etcd ------------------------------------------------------------------


def _writes_since(c: Cluster, revision: int) -> set[tuple[EventType, str]]:
    """Every write etcd made after ``revision`` (its history, read with a watch)."""
    end = c.admin.list("/").revision
    if end <= revision:
        return set()
    out: set[tuple[EventType, str]] = set()
    w = c.admin.watch("/", revision + 1)
    guard = threading.Timer(10.0, w.close)
    guard.start()
    try:
        for item in w:
            if isinstance(item, WatchEvent) and item.revision <= end:
                out.add((item.type, item.kv.key))
            if w.next_revision > end:
                break
    finally:
        guard.cancel()
        w.close()
    assert w.next_revision > end, "the watch ended before it reached the last revision"
    return out


def test_dry_run_on_etcd_writes_nothing(cluster: Cluster) -> None:
    """On etcd no write at all: the store's revision (which every write moves) stays."""
    c = cluster
    op = converge(c, 9, {"topology": "multi"})
    op.stop(release=False)
    ours = sorted(name for name, d in c.docs("bgppeers").items() if L.is_managed(d))
    assert ours
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "KUBECONFIG"))}
    env.update(c.etcd.env())
    before = c.admin.list("/").revision
    dry = subprocess.run(
        [*UNINSTALL, "--dry-run", "-o", "yaml"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dry.returncode == 0, dry.stderr[-3000:]
    # The stopped leader's lease (2 s) may expire meanwhile and etcd deletes its key:
    # that is the one write allowed; anything else moved the revision for the dry run.
    assert _writes_since(c, before) <= {(EventType.DELETE, f"{DEFAULT_PREFIX}leader")}
    preview = yaml.safe_load(dry.stdout)
    assert preview["datastore"] == "etcdv3" and preview["node_to_node_mesh"] is False
    deleted = {name for s in preview["steps"] for name in s.get("delete_bgppeers", [])}
    assert deleted == {*ours, "calico-rr-bridge"}
    removed = {n["name"] for s in preview["steps"] for n in s.get("remove_from_nodes", [])}
    assert removed and removed <= set(c.docs("nodes"))
