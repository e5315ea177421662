"""The operator's high availability, its process and its uninstall, on a real
kube-apiserver + etcd (calico_rr.sandbox).

One control plane for the module (audit log on, Calico's crd.projectcalico.org/v1
CRDs, our CRD and RBAC), 20 synthetic nodes and a RouteReflectorConfig
``default`` (multi topology, waitTimeout 1s).  Every replica runs as the
unprivileged ``calico-rr`` user with its own User-Agent, so the audit log tells
the replicas apart.

The tests run in file order and build on each other's cluster state (the last
one uninstalls); each starts and stops its own replicas.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.demo import CONFIG_PATH, WRITE_VERBS, create_nodes
from calico_rr.adapters.kube.operator import Operator
from calico_rr.core.operator.settings import CONFIG_NAME
from calico_rr.core.planning.config import GROUP_LABEL, RR_LABEL
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import ANN_CLUSTER_ID, MANAGED_BY_LABEL, MANAGED_BY_VALUE, PREFIX, Node
from calico_rr.sandbox import ControlPlane, apply_crds
from calico_rr.sandbox.manifests import apply_documents, calico_crds, install_operator_rbac
from calico_rr.sandbox.process import free_port

pytestmark = pytest.mark.integration

NAMESPACE = "calico-rr"
OPERATOR_USER = "calico-rr"
LEASE_DURATION = 3.0
RETRY_PERIOD = LEASE_DURATION / 5  # LeaderElector's default
#: Calico CRD set -> the API group the operator must pick for it (domain.md 8)
GROUPS = {
    "crd.projectcalico.org-v1": "crd.projectcalico.org/v1",
    "projectcalico.org-v3": "projectcalico.org/v3",
}
NODES = 20
#: the cluster's nodes, plus a few more that join during the tests (youngest last)
CLUSTER = synthetic_cluster(NODES + 4, zones=3)
REPO = Path(__file__).resolve().parents[2]
#: A join must be handled well within the operator's idle resync (30 s): the new
#: leader reconciles as soon as it leads, and on every node event.
JOIN_TIMEOUT = 10.0


@pytest.fixture(scope="module", params=sorted(GROUPS))
def crd_set(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def group(crd_set: str) -> str:
    return GROUPS[crd_set]


@pytest.fixture(scope="module")
def cp(crd_set: str) -> Iterator[ControlPlane]:
    with ControlPlane(audit=True) as plane:
        apply_crds(plane, calico_crds(crd_set))
        install_operator_rbac(plane)
        admin = KubeClient.from_kubeconfig(plane.admin_kubeconfig)
        create_nodes(admin, CLUSTER[:NODES])
        apply_documents(
            plane,
            [
                {
                    "apiVersion": "calico-rr.io/v1alpha1",
                    "kind": "RouteReflectorConfig",
                    "metadata": {"name": CONFIG_NAME},
                    "spec": {"waitTimeout": "1s", "topology": "multi"},
                }
            ],
        )
        admin.close()
        yield plane


@pytest.fixture(scope="module")
def admin(cp: ControlPlane) -> Iterator[KubeClient]:
    client = KubeClient.from_kubeconfig(cp.admin_kubeconfig, user_agent="test-admin")
    yield client
    client.close()


# -- helpers -------------------------------------------------------------------------


def replica(cp: ControlPlane, name: str) -> Operator:
    """A replica as the calico-rr user, User-Agent ``calico-rr/<name>``."""
    client = KubeClient.from_kubeconfig(cp.operator_kubeconfig, user_agent=f"calico-rr/{name}")
    return Operator(
        client, namespace=NAMESPACE, identity=name, env={}, lease_duration=LEASE_DURATION
    )


@contextlib.contextmanager
def running(*ops: Operator) -> Iterator[None]:
    started: list[Operator] = []
    try:
        for op in ops:
            started.append(op.start())
        yield
    finally:
        for op in started:
            op.stop()
            op.client.close()


def wait_for(what: str, cond: Callable[[], bool], timeout: float, poll: float = 0.02) -> float:
    """Seconds until ``cond()`` holds; fails the test after ``timeout``."""
    start = time.monotonic()
    while not cond():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(poll)
    return time.monotonic() - start


def one_leader(ops: list[Operator], timeout: float = 15.0) -> Operator:
    wait_for("a leader", lambda: any(op.is_leader for op in ops), timeout)
    leaders = [op for op in ops if op.is_leader]
    assert len(leaders) == 1, [op.identity for op in leaders]
    return leaders[0]


def config_status(admin: KubeClient) -> dict[str, Any]:
    cfg = admin.get(f"{CONFIG_PATH}/{CONFIG_NAME}") or {}
    return dict(cfg.get("status") or {})


def wait_converged(admin: KubeClient, timeout: float = 60.0) -> float:
    def steady() -> bool:
        status = config_status(admin)
        return status.get("phase") == "Steady" and status.get("meshEnabled") is False

    return wait_for("Steady with the mesh off", steady, timeout, poll=0.1)


def node_labels(admin: KubeClient, name: str) -> dict[str, str]:
    node = admin.get(api_path("v1", "nodes", name)) or {}
    return dict((node.get("metadata") or {}).get("labels") or {})


def join(admin: KubeClient, node: Node) -> None:
    assert create_nodes(admin, [node]) == 1


def agent(event: dict[str, Any]) -> str:
    return str(event.get("userAgent") or "")


def writes(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write requests other than the leader election's own Lease requests."""
    return [
        e
        for e in events
        if e.get("verb") in WRITE_VERBS and (e.get("objectRef") or {}).get("resource") != "leases"
    ]


def describe(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        ref = e.get("objectRef") or {}
        out.append(f"{agent(e)} {e.get('verb')} {ref.get('resource')} {ref.get('name', '')}")
    return out


def lease(admin: KubeClient) -> dict[str, Any]:
    obj = admin.get(api_path("coordination.k8s.io/v1", "leases", "calico-rr", namespace=NAMESPACE))
    assert obj is not None
    return dict(obj.get("spec") or {})


# -- leader election with two replicas ---------------------------------------------------


def test_failover_after_leader_crash(cp: ControlPlane, admin: KubeClient, group: str) -> None:
    a, b = replica(cp, "a"), replica(cp, "b")
    with running(a, b):
        assert a.api_group == b.api_group == group  # Calico's rule picked the served group
        leader = one_leader([a, b])
        follower = b if leader is a else a
        seconds = wait_converged(admin)
        print(f"\nconverged in {seconds:.1f}s with leader {leader.identity}")
        assert lease(admin)["holderIdentity"] == leader.identity
        assert not follower.is_leader
        assert follower.synced  # warm caches, ready to take over
        assert follower.health.ready() == (True, "follower")

        events = cp.audit_events(OPERATOR_USER)
        leader_ua, follower_ua = f"calico-rr/{leader.identity}", f"calico-rr/{follower.identity}"
        assert {agent(e) for e in events} >= {leader_ua, follower_ua}
        written = writes(events)
        assert written, "the leader wrote nothing"
        assert {agent(e) for e in written} == {leader_ua}, describe(written)
        follower_leases = [
            e
            for e in events
            if agent(e) == follower_ua and (e.get("objectRef") or {}).get("resource") == "leases"
        ]
        assert follower_leases, "the follower never tried the Lease"
        # What must hold: the follower never holds or writes the Lease while the
        # leader renews it.  At start-up both may find no Lease and both try to create
        # it; the loser's create is refused (409), which changes nothing.
        follower_lease_writes = [
            e
            for e in follower_leases
            if e.get("verb") != "get" and int((e.get("responseStatus") or {}).get("code", 0)) < 400
        ]
        assert not follower_lease_writes, describe(follower_lease_writes)
        assert follower.stats.writes == 0
        assert follower.stats.reconciles == 0

        # The leader crashes (no Lease release); a node joins meanwhile.
        mark = len(events)
        t0 = time.monotonic()
        leader.kill()
        joined = CLUSTER[NODES]
        join(admin, joined)
        wait_for("the follower to lead", lambda: follower.is_leader, 4 * LEASE_DURATION)
        takeover = time.monotonic() - t0
        handled = wait_for(
            f"{joined.name} to be labelled",
            lambda: GROUP_LABEL in node_labels(admin, joined.name),
            JOIN_TIMEOUT,
        )
        print(f"takeover after a crash: {takeover:.2f}s; join handled {handled:.2f}s later")
        # Not before the dead leader's Lease expired (it renewed at most one retry
        # period before dying), and not much after.
        assert takeover > LEASE_DURATION - RETRY_PERIOD - 0.3
        assert takeover < 2 * LEASE_DURATION + 2
        assert RR_LABEL not in node_labels(admin, joined.name)  # the youngest is a client
        assert lease(admin)["holderIdentity"] == follower.identity
        wait_converged(admin, 30.0)

        after = writes(cp.audit_events(OPERATOR_USER)[mark:])
        assert after, "the new leader wrote nothing for the join"
        assert {agent(e) for e in after} == {follower_ua}, describe(after)
        assert any(
            (e.get("objectRef") or {}).get("name") == joined.name
            and (e.get("objectRef") or {}).get("resource") == "nodes"
            for e in after
        ), describe(after)


def test_handover_on_graceful_stop(cp: ControlPlane, admin: KubeClient) -> None:
    c, d = replica(cp, "c"), replica(cp, "d")
    with running(c, d):
        leader = one_leader([c, d])
        follower = d if leader is c else c
        wait_converged(admin)
        before = lease(admin)
        leader.stop()  # releases the Lease
        released = time.monotonic()
        spec = lease(admin)
        assert spec["holderIdentity"] in ("", follower.identity)
        takeover = wait_for("the follower to lead", lambda: follower.is_leader, LEASE_DURATION)
        print(f"\ntakeover after a graceful stop: {takeover:.2f}s")
        assert takeover < RETRY_PERIOD + 1.0  # no waiting for the Lease to expire
        assert time.monotonic() - released < LEASE_DURATION
        spec = lease(admin)
        assert spec["holderIdentity"] == follower.identity
        assert spec["acquireTime"] != before["acquireTime"]
        # A new leader reconciles at once (the old one may have left work behind),
        # not at the next event or idle resync.
        wait_for("the new leader's first reconcile", lambda: follower.stats.reconciles > 0, 5.0)

        joined = CLUSTER[NODES + 1]
        join(admin, joined)
        wait_for(
            f"{joined.name} to be labelled",
            lambda: GROUP_LABEL in node_labels(admin, joined.name),
            JOIN_TIMEOUT,
        )
        wait_converged(admin, 30.0)


# -- `calico-rr run` as a process ------------------------------------------------------------


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""


def test_run_command_process(
    cp: ControlPlane, admin: KubeClient, tmp_path: Path, group: str
) -> None:
    port = free_port()
    stderr = tmp_path / "stderr.log"
    cmd = [
        sys.executable,
        "-m",
        "calico_rr.cli",
        "run",
        "--kubeconfig",
        str(cp.operator_kubeconfig),
        "--namespace",
        NAMESPACE,
        "--port",
        str(port),
        "--identity",
        "proc",
        "--lease-duration",
        str(LEASE_DURATION),
    ]
    env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
        )
        try:
            wait_for(
                "/readyz 200",
                lambda: proc.poll() is None and http_get(port, "/readyz")[0] == 200,
                30.0,
                poll=0.1,
            )
            assert proc.poll() is None, stderr.read_text()[-2000:]
            assert http_get(port, "/healthz") == (200, "ok\n")
            wait_for(
                "leadership", lambda: "calico_rr_leader 1.0" in http_get(port, "/metrics")[1], 15.0
            )
            assert http_get(port, "/readyz") == (200, "leader\n")
            status, text = http_get(port, "/metrics")
            assert status == 200
            lines = text.splitlines()
            assert "calico_rr_leader 1.0" in lines
            lists = [
                line
                for line in lines
                if line.startswith("calico_rr_api_requests_total{") and 'verb="list"' in line
            ]
            assert lists, text
            assert any('resource="nodes"' in line for line in lists), lists
            assert http_get(port, "/nope")[0] == 404
            assert lease(admin)["holderIdentity"] == "proc"
            wait_converged(admin, 30.0)

            t0 = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=10)
            print(f"\nexit {code} {time.monotonic() - t0:.2f}s after SIGTERM")
            assert code == 0, stderr.read_text()[-2000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert lease(admin)["holderIdentity"] == ""  # released on the way out
    records = [json.loads(line) for line in stderr.read_text().splitlines() if line.strip()]
    assert records, "no log output"
    for record in records:
        assert {"ts", "level", "logger", "msg"} <= record.keys(), record
        assert record["logger"].startswith("calico_rr")
    assert any(r["msg"] == "became leader" and r.get("identity") == "proc" for r in records)
    assert any(r.get("api_group") == group for r in records)


# -- `calico-rr uninstall` ------------------------------------------------------------------------


def test_uninstall_command_with_a_running_replica(
    cp: ControlPlane, admin: KubeClient, group: str
) -> None:
    user_peer = {
        "apiVersion": group,
        "kind": "BGPPeer",
        "metadata": {"name": "user-peer", "labels": {"team": "net"}},
        "spec": {"peerIP": "192.0.2.1", "asNumber": 64513},
    }
    admin.create(api_path(group, "bgppeers"), user_peer)
    user_node = CLUSTER[0].name
    node_count = len(admin.list(api_path("v1", "nodes"))[0])
    assert node_count >= NODES
    admin.patch(api_path("v1", "nodes", user_node), {"metadata": {"labels": {"team": "net"}}})

    e = replica(cp, "e")
    with running(e):
        wait_for("leadership", lambda: e.is_leader, 3 * LEASE_DURATION)
        wait_converged(admin)
        ours, _ = admin.list(
            api_path(group, "bgppeers"), label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
        )
        assert ours, "nothing to uninstall: the operator made no BGPPeers"
        nodes, _ = admin.list(api_path("v1", "nodes"))
        assert any(
            any(k.startswith(PREFIX + "/") for k in n["metadata"].get("labels") or {})
            for n in nodes
        )
        assert any(ANN_CLUSTER_ID in (n["metadata"].get("annotations") or {}) for n in nodes)

        t0 = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "calico_rr.cli",
                "uninstall",
                "--kubeconfig",
                str(cp.admin_kubeconfig),
                "--timeout",
                "60",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        print(f"\nuninstall took {time.monotonic() - t0:.1f}s: {done.stdout.strip()}")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "uninstalled" in done.stdout
        time.sleep(1.0)  # the replica sees the config gone and must stay idle
        assert e.is_leader
        check_uninstalled(admin, user_node, node_count, group)
    check_uninstalled(admin, user_node, node_count, group)


def check_uninstalled(admin: KubeClient, user_node: str, node_count: int, group: str) -> None:
    assert admin.get(f"{CONFIG_PATH}/{CONFIG_NAME}") is None
    bgpconfig = admin.get(api_path(group, "bgpconfigurations", "default"))
    assert bgpconfig is not None
    assert bgpconfig["spec"]["nodeToNodeMeshEnabled"] is True
    ours, _ = admin.list(
        api_path(group, "bgppeers"), label_selector=f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
    )
    assert ours == [], [p["metadata"]["name"] for p in ours]
    peers, _ = admin.list(api_path(group, "bgppeers"))
    assert [p["metadata"]["name"] for p in peers] == ["user-peer"]
    assert peers[0]["spec"]["peerIP"] == "192.0.2.1"
    nodes, _ = admin.list(api_path("v1", "nodes"))
    assert len(nodes) == node_count
    for node in nodes:
        meta = node["metadata"]
        leftover = [k for k in meta.get("labels") or {} if k.startswith(PREFIX + "/")]
        assert leftover == [], (meta["name"], leftover)
        assert ANN_CLUSTER_ID not in (meta.get("annotations") or {}), meta["name"]
    assert node_labels(admin, user_node).get("team") == "net"
