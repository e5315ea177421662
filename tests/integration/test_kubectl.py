"""The kubectl commands the docs show, with a real kubectl (issue 16 item 7).

kubectl is built from the Go module proxy beside kube-apiserver
(scripts/controlplane-build.sh, the same k8s.io/kubernetes release) and runs against
the test API server with the admin's kubeconfig:

* the by-hand recipe of docs/OPERATIONS.md: ``kubectl get nodes -o json``,
  ``calico-rr render --nodes-file ... --output-file rr.yaml``, ``kubectl diff
  --server-side`` (exit 1: changes), ``kubectl apply --server-side -f rr.yaml``, the
  same diff again (exit 0), then the dump ``kubectl get nodes,bgppeers,
  bgpconfigurations -o yaml`` that ``calico-rr verify --resources`` reads;
* the install of docs/INSTALL.md (CRD, RBAC, example config) and the operator's
  status the way OPERATIONS.md reads it: ``kubectl get rrc default`` with its
  columns, ``kubectl wait --for=condition=Ready``, a jsonpath, the Events;
* ``kubectl calico-rr`` finds the plugin entry point on PATH;
* removing a prototype's cluster ID and RR label, the kustomize install and its
  etcd secret, pause and resume by patch, and the uninstall by ``kubectl delete rrc``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.demo import create_nodes
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.sandbox import ControlPlane, apply_crds
from calico_rr.sandbox.manifests import calico_crds
from calico_rr.sandbox.process import REPO_ROOT, build_binaries, free_port

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent


class Kubectl:
    def __init__(self, cp: ControlPlane, tmp: Path) -> None:
        self.exe = build_binaries() / "kubectl"
        assert os.access(self.exe, os.X_OK), f"kubectl was not built: {self.exe}"
        self.tmp = tmp
        # the venv's bin first: `kubectl calico-rr` looks for kubectl-calico_rr on PATH
        path = os.pathsep.join([str(BIN), str(self.exe.parent), os.environ.get("PATH", "")])
        self.env = {
            **os.environ,
            "KUBECONFIG": str(cp.admin_kubeconfig),
            "PATH": path,
            "HOME": str(tmp),  # kubectl's discovery cache stays in the test's directory
        }

    def run(self, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [str(self.exe), *args],
            env=self.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode in ok, (
            f"kubectl {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
        return done

    def calico_rr(self, *args: str, ok: tuple[int, ...] = (0,)) -> str:
        done = subprocess.run(
            [str(BIN / "calico-rr"), *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert done.returncode in ok, f"calico-rr {args} exited {done.returncode}: {done.stderr}"
        return done.stdout


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[ControlPlane, Kubectl]]:
    with ControlPlane() as cp:
        apply_crds(cp, calico_crds("crd.projectcalico.org-v1"))
        admin = KubeClient.from_kubeconfig(cp.admin_kubeconfig)
        try:
            create_nodes(admin, synthetic_cluster(30, zones=3))
        finally:
            admin.close()
        yield cp, Kubectl(cp, tmp_path)


def test_the_by_hand_recipe_with_kubectl(cluster: tuple[ControlPlane, Kubectl]) -> None:
    _, k = cluster
    nodes = k.tmp / "nodes.json"
    nodes.write_text(k.run("get", "nodes", "-o", "json").stdout)
    assert len(json.loads(nodes.read_text())["items"]) == 30
    rr = k.tmp / "rr.yaml"
    k.calico_rr(
        "render", "--nodes-file", str(nodes), "--topology", "multi", "--output-file", str(rr)
    )
    assert rr.stat().st_size > 0

    # kubectl diff: 1 while the cluster differs from the file, 0 once it is applied
    first = k.run("diff", "--server-side", "-f", str(rr), ok=(1,))
    assert "calico-rr.io" in first.stdout
    k.run("apply", "--server-side", "-f", str(rr))
    k.run("diff", "--server-side", "-f", str(rr), ok=(0,))

    dump = k.tmp / "after.yaml"
    dump.write_text(k.run("get", "nodes,bgppeers,bgpconfigurations", "-o", "yaml").stdout)
    kinds = {d["kind"] for d in yaml.safe_load(dump.read_text())["items"]}
    assert {"Node", "BGPPeer", "BGPConfiguration"} <= kinds
    # the mesh is still on (render leaves it): verify proves the dump reaches everyone
    k.calico_rr("verify", "--resources", str(dump))

    # OPERATIONS.md's way out of a prototype: a node's cluster ID and RR label removed
    node = json.loads(nodes.read_text())["items"][0]["metadata"]["name"]
    k.run("annotate", "node", node, "projectcalico.org/RouteReflectorClusterID-")
    k.run("label", "node", node, "calico-route-reflector-")

    # INSTALL.md's kustomize install, with kubectl's own kustomize, and its etcd secret
    k.run("apply", "--server-side", "-k", "deploy")
    k.run("-n", "calico-rr", "get", "deployment", "calico-rr")
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (k.tmp / name).write_text("placeholder\n")
    k.run(
        "-n", "calico-rr", "create", "secret", "generic", "calico-etcd-secrets",
        f"--from-file=etcd-ca={k.tmp / 'ca.pem'}", f"--from-file=etcd-cert={k.tmp / 'cert.pem'}",
        f"--from-file=etcd-key={k.tmp / 'key.pem'}",
    )  # fmt: skip
    k.run("delete", "-k", "deploy", "--wait=false")  # no namespace controller here


def test_install_and_status_with_kubectl(cluster: tuple[ControlPlane, Kubectl]) -> None:
    cp, k = cluster
    k.run("apply", "--server-side", "-f", "deploy/crds/")
    k.run("wait", "--for=condition=Established", "crd/routereflectorconfigs.calico-rr.io")
    k.run("apply", "-f", "deploy/rbac.yaml")
    spec = yaml.safe_load((REPO_ROOT / "deploy" / "example-config.yaml").read_text())
    spec["spec"] = {**(spec.get("spec") or {}), "waitTimeout": "1s", "debounce": "20ms"}
    config = k.tmp / "config.yaml"
    config.write_text(yaml.safe_dump(spec))
    k.run("apply", "-f", str(config))

    operator = subprocess.Popen(
        [str(BIN / "calico-rr"), "run", "--kubeconfig", str(cp.operator_kubeconfig),
         "--namespace", "calico-rr", "--port", str(free_port()), "--identity", "kubectl-test"],
        env=k.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        k.run("wait", "--for=condition=Ready", "rrc/default", "--timeout=150s")
        table = k.run("get", "rrc", "default").stdout.splitlines()
        header = table[0].split()
        assert "PHASE" in header, table
        assert "Steady" in table[1].split(), table
        phase = k.run("get", "rrc", "default", "-o", "jsonpath={.status.phase}").stdout
        assert phase == "Steady"
        events = k.run(
            "get", "events", "-n", "default",
            "--field-selector", "involvedObject.kind=RouteReflectorConfig",
        ).stdout  # fmt: skip
        assert "default" in events
        ours = "app.kubernetes.io/managed-by=calico-rr"
        k.run("get", "caliconodestatuses", "-l", ours, "-o", "yaml")
        added = json.loads(
            k.run(
                "get", "events", "-n", "default", "-o", "json",
                "--field-selector", "involvedObject.kind=Node,reason=RouteReflectorAdded",
            ).stdout
        )["items"]  # fmt: skip
        assert added, "no RouteReflectorAdded Event"
        rr = added[0]["involvedObject"]["name"]
        for_rr = k.run("events", "-n", "default", "--for", f"node/{rr}").stdout
        assert "RouteReflectorAdded" in for_rr
        # OPERATIONS.md's pause and resume
        k.run("patch", "rrc", "default", "--type", "merge", "-p", '{"spec":{"paused":true}}')
        k.run("wait", "--for=jsonpath={.status.phase}=Paused", "rrc/default", "--timeout=60s")
        k.run("patch", "rrc", "default", "--type", "merge", "-p", '{"spec":{"paused":false}}')
        k.run("wait", "--for=jsonpath={.status.phase}=Steady", "rrc/default", "--timeout=60s")
        plugin = k.run("calico-rr", "plan", "--nodes", "50", "-o", "json").stdout
        assert json.loads(plugin)["nodes"] == 50
        # INSTALL.md's uninstall through kubectl: the running operator lets it go
        k.run("delete", "rrc", "default", "--wait=false")
        k.run("wait", "--for=delete", "rrc/default", "--timeout=150s")
        mesh = k.run(
            "get", "bgpconfigurations.crd.projectcalico.org", "default",
            "-o", "jsonpath={.spec.nodeToNodeMeshEnabled}",
        ).stdout  # fmt: skip
        assert mesh == "true"
    finally:
        operator.terminate()
        _, err = operator.communicate(timeout=30)
    assert operator.returncode == 0, err[-2000:]
