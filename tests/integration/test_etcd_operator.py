"""The operator on Calico's etcd datastore, against a real etcd with client-cert TLS.

The tests act as the cluster (creating and deleting Calico Nodes, Felix liveness
reports, a user's objects) with their own etcd client, run EtcdOperators in-process,
and judge the result from the documents read back from etcd the way calico-node
reads them (core.operator.safety).  etcd comes from scripts/controlplane-build.sh; a missing
binary fails these tests, it never skips them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.errors import EtcdUnavailable
from calico_rr.adapters.etcd.operator import EtcdOperator, request_uninstall
from calico_rr.adapters.etcd.values import KeyValue
from calico_rr.core.formats import etcd as L
from calico_rr.core.formats.etcd_nodes import node_to_calico, owned_fields
from calico_rr.core.operator.safety import Safety, check
from calico_rr.core.planning.config import GROUP_LABEL, RR_LABEL, SLOT_LABEL
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import Node
from calico_rr.sandbox.etcd import EtcdServer
from calico_rr.sandbox.process import free_port

from .scenario_drivers import OUR_LABELS

pytestmark = pytest.mark.integration

CONFIG_KEY = "/calico-rr/config/default"
STATUS_KEY = "/calico-rr/status/default"
FELIX = "/calico/felix/v2/no-region/host/{}/status"


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    with EtcdServer() as server:
        yield server


@dataclass
class Cluster:
    etcd: EtcdServer
    admin: EtcdClient
    ops: list[EtcdOperator] = field(default_factory=list)

    # -- acting as the cluster -------------------------------------------------------

    def add(self, nodes: list[Node]) -> None:
        for n in nodes:
            key, value = L.encode_document(node_to_calico(n, uid=f"uid-{n.name}"))
            self.admin.put_if(key, value, 0)

    def delete(self, name: str) -> None:
        assert self.admin.delete(L.resource_key("nodes", name))

    def config(self, spec: dict[str, Any]) -> None:
        doc = {
            "apiVersion": "calico-rr.io/v1alpha1",
            "kind": "RouteReflectorConfig",
            "metadata": {"name": "default"},
            "spec": spec,
        }
        self.admin.put(CONFIG_KEY, json.dumps(doc).encode())

    def status(self) -> dict[str, Any]:
        kv = self.admin.get(STATUS_KEY)
        return dict(kv.json()) if kv is not None else {}

    # -- operators ---------------------------------------------------------------------

    def client(self) -> EtcdClient:
        return self.etcd.client(timeout=5.0)

    def operator(
        self,
        identity: str = "op",
        *,
        client: EtcdClient | None = None,
        leader_election: bool = True,
        start: bool = True,
    ) -> EtcdOperator:
        op = EtcdOperator(
            client or self.client(),
            identity=identity,
            env={},
            lease_duration=2.0,
            leader_election=leader_election,
        )
        self.ops.append(op)
        return op.start() if start else op

    def steady(
        self,
        op: EtcdOperator,
        *,
        since: float = 0.0,
        timeout: float = 60.0,
        seen: Callable[[EtcdOperator], bool] | None = None,
    ) -> None:
        """Steady with the mesh off, after ``since``; with ``seen``: after the
        operator's caches show the change, a whole pass left it Steady."""
        start = time.monotonic()
        if seen is not None:
            while not seen(op):
                assert time.monotonic() - start < timeout, "caches never showed the change"
                time.sleep(0.02)
            since = time.monotonic()
        while time.monotonic() - start < timeout:
            st, stats = self.status(), op.stats
            if seen is not None:
                fresh = stats.last_start > since and stats.last_end > stats.last_start
            else:
                fresh = stats.steady_since is not None and stats.steady_since >= since
            if (
                fresh
                and stats.last_phase == "Steady"
                and st.get("phase") == "Steady"
                and st.get("meshEnabled") is False
            ):
                return
            time.sleep(0.05)
        raise AssertionError(f"not steady after {timeout}s: {op.stats} {self.status()}")

    def run_process(
        self,
        cmd: list[str],
        env: dict[str, str],
        stderr: Path,
        *,
        timeout: float = 30.0,
        while_steady: Callable[[], None] | None = None,
    ) -> None:
        """Start ``cmd`` (a ``calico-rr run``), wait until the status is Steady with
        the mesh off, call ``while_steady``, then SIGTERM it: it must exit 0.  Its
        stderr goes to ``stderr``."""
        with stderr.open("wb") as err:
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
            try:
                deadline = time.monotonic() + timeout
                while not (
                    self.status().get("phase") == "Steady"
                    and self.status().get("meshEnabled") is False
                ):
                    assert proc.poll() is None, stderr.read_text()[-2000:]
                    assert time.monotonic() < deadline, (self.status(), stderr.read_text()[-2000:])
                    time.sleep(0.1)
                if while_steady is not None:
                    while_steady()
                proc.send_signal(signal.SIGTERM)
                assert proc.wait(timeout=15) == 0, stderr.read_text()[-2000:]
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()

    # -- reading back --------------------------------------------------------------------

    def kvs(self, plural: str) -> dict[str, KeyValue]:
        prefix = L.plural_prefix(plural)
        return {kv.key[len(prefix) :]: kv for kv in self.admin.list(prefix).kvs}

    def docs(self, plural: str) -> dict[str, dict[str, Any]]:
        return {
            n: L.decode_document(kv.key, kv.value, kv.mod_revision)
            for n, kv in self.kvs(plural).items()
        }

    def labels(self, name: str) -> dict[str, str]:
        return dict(self.docs("nodes")[name]["metadata"].get("labels") or {})

    def rr_nodes(self) -> list[str]:
        return sorted(
            n for n, d in self.docs("nodes").items() if RR_LABEL in d["metadata"].get("labels", {})
        )

    def layout(self) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
        """Our node labels (a rollout's ``prev.`` copies too) and cluster IDs, and our
        BGPPeers' specs."""
        nodes = {
            n: {
                **{k: v for k, v in d["metadata"]["labels"].items() if k.startswith(OUR_LABELS)},
                "cid": d["spec"].get("bgp", {}).get("routeReflectorClusterID", ""),
            }
            for n, d in self.docs("nodes").items()
        }
        peers = {n: d["spec"] for n, d in self.docs("bgppeers").items() if L.is_managed(d)}
        return nodes, peers

    def safety(self, down: set[str] | None = None) -> Safety:
        docs = [
            *self.docs("nodes").values(),
            *self.docs("bgppeers").values(),
            *self.docs("bgpconfigurations").values(),
        ]
        return check(docs, down or set())

    def no_prev_labels(self) -> bool:
        return not any(
            k.startswith("prev.")
            for d in self.docs("nodes").values()
            for k in d["metadata"].get("labels") or {}
        )


@pytest.fixture
def cluster(etcd: EtcdServer) -> Iterator[Cluster]:
    admin = etcd.client(timeout=5.0)
    for kv in admin.list("/calico").kvs:  # also /calico-rr/: a clean keyspace per test
        admin.delete(kv.key)
    c = Cluster(etcd, admin)
    try:
        yield c
    finally:
        for op in c.ops:
            op.stop(release=False)
            op.client.close()
        admin.close()


def converge(
    c: Cluster, n: int, spec: dict[str, Any] | None = None, *, zones: int = 3
) -> EtcdOperator:
    c.add(synthetic_cluster(n, zones=zones))
    c.config({"waitTimeout": "1s", "debounce": "20ms", **(spec or {})})
    op = c.operator()
    c.steady(op)
    assert c.safety().ok
    return op


def node_count(n: int) -> Callable[[EtcdOperator], bool]:
    return lambda op: len(op.caches["nodes"]) == n


# ---------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------


def test_scale_5_60_5(cluster: Cluster) -> None:
    c = cluster
    op = converge(c, 5, {"topology": "multi", "ratio": "0.1", "minRouteReflectors": 2})
    every = synthetic_cluster(60, zones=3)
    rrs: dict[int, int] = {}
    for target in (60, 5):
        have = len(c.kvs("nodes"))
        if target > have:
            c.add(every[have:target])
        else:
            for node in every[target:have]:
                c.delete(node.name)
        c.steady(op, seen=node_count(target))
        safety = c.safety()
        assert safety.ok, safety.describe()
        assert len(c.kvs("nodes")) == target
        rrs[target] = len(c.rr_nodes())
        status = c.status()
        assert status["routeReflectors"] == rrs[target]
        assert status["observedGeneration"] == 1  # the config key was written once
        assert c.no_prev_labels()
    assert rrs[60] > rrs[5] >= 2
    # One LIST per cache, then only watches: nothing is polled.
    assert op.lists() == len(op.caches)
    assert not any(L.is_managed(d) is False for d in c.docs("caliconodestatuses").values())


def test_rr_felix_down_then_deleted_is_replaced(cluster: Cluster) -> None:
    c = cluster
    nodes = synthetic_cluster(24, zones=3)
    # Felix reports on every node (one lease), the first RR's on a lease of its own.
    c.add(nodes)
    shared = c.admin.grant(60)
    for n in nodes:
        c.admin.put(FELIX.format(n.name), b'{"time":"now"}', lease=shared.id)
    c.config({"waitTimeout": "1s", "debounce": "20ms", "topology": "multi"})
    op = c.operator()
    c.steady(op)
    victim = c.rr_nodes()[0]
    slot = c.labels(victim)[SLOT_LABEL]
    own = c.admin.grant(60)
    c.admin.put(FELIX.format(victim), b'{"time":"now"}', lease=own.id)

    def holders() -> list[str]:
        return [
            n for n, d in c.docs("nodes").items() if d["metadata"]["labels"].get(SLOT_LABEL) == slot
        ]

    # Felix stops on the RR (its liveness lease runs out): NotReady, slot handed over
    # make-before-break, the node itself keeps no RR role.
    mark = time.monotonic()
    c.admin.revoke(own.id)
    c.steady(op, since=mark)
    assert victim not in c.rr_nodes()
    assert len(holders()) == 1 and holders()[0] != victim
    safety = c.safety({victim})
    assert safety.ok, safety.describe()
    assert c.no_prev_labels()
    # Now an RR is deleted outright: its slot goes to a successor.
    victim2 = c.rr_nodes()[0]
    slot = c.labels(victim2)[SLOT_LABEL]
    c.delete(victim2)
    c.steady(op, seen=lambda o: L.resource_key("nodes", victim2) not in o.caches["nodes"].entries())
    assert len(holders()) == 1 and holders()[0] != victim2
    safety = c.safety({victim})
    assert safety.ok, safety.describe()


def test_topology_switch_while_running(cluster: Cluster) -> None:
    c = cluster
    op = converge(c, 40, {"topology": "single"})
    for topology in ("multi", "quorum"):
        mark = time.monotonic()
        c.config({"waitTimeout": "1s", "debounce": "20ms", "topology": topology})
        c.steady(op, since=mark)
        assert c.status()["topology"] == topology
        peers = [d for d in c.docs("bgppeers").values() if L.is_managed(d)]
        assert {p["metadata"]["labels"].get("calico-rr.io/topology") for p in peers} == {topology}
        safety = c.safety()
        assert safety.ok, safety.describe()
        assert c.no_prev_labels()


class DyingClient(EtcdClient):
    """Lets ``budget`` datastore writes through, then fails every write as if the
    process had died (status and leader keys are not counted)."""

    def __init__(self, *args: Any, budget: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budget = budget
        self.exhausted = threading.Event()
        self._gate = threading.Lock()

    def _write(self, key: str, do: Callable[[], Any]) -> Any:
        if not key.startswith(L.RESOURCE_ROOT):
            if self.exhausted.is_set():
                raise EtcdUnavailable("operator is dead")
            return do()
        with self._gate:  # one counted write at a time: "after k writes" is exact
            if self.exhausted.is_set():
                raise EtcdUnavailable("operator is dead")
            result = do()
            self.budget -= 1
            if self.budget <= 0:
                self.exhausted.set()
            return result

    def put_if(self, key: str, value: bytes, mod_revision: int, **kwargs: Any) -> KeyValue:
        parent = super().put_if
        return self._write(key, lambda: parent(key, value, mod_revision, **kwargs))  # type: ignore[no-any-return]

    def delete_if(self, key: str, mod_revision: int, **kwargs: Any) -> int:
        parent = super().delete_if
        return self._write(key, lambda: parent(key, mod_revision, **kwargs))  # type: ignore[no-any-return]


def dying_client(c: Cluster, budget: int) -> DyingClient:
    s = c.etcd.settings()
    return DyingClient(
        s.endpoints,
        ca_file=s.ca_cert_file,
        cert_file=s.cert_file,
        key_file=s.key_file,
        budget=budget,
    )


def test_killed_mid_rollout_resumes_to_the_same_layout(cluster: Cluster) -> None:
    """A topology switch (a make-before-break rollout) interrupted after k of its n
    datastore writes, for k from the first to the last write: every state left
    behind is safe, and a fresh replica finishes it with the layout an
    uninterrupted run gives."""
    c = cluster
    op = converge(c, 18, {"topology": "single"})
    op.stop()
    before = {kv.key: kv.value for kv in c.admin.list("/calico").kvs if "/leader" not in kv.key}
    switch = {"waitTimeout": "1s", "debounce": "20ms", "topology": "multi"}

    def restore() -> None:
        for kv in c.admin.list("/calico").kvs:
            c.admin.delete(kv.key)
        for key, value in before.items():
            c.admin.put(key, value)
        c.config(switch)

    # The reference: the same rollout, uninterrupted, counting its writes.
    counter = dying_client(c, 10**6)
    c.config(switch)
    ref = c.operator("reference", client=counter, leader_election=False)
    c.steady(ref, since=time.monotonic())
    reference = c.layout()
    ref.stop()
    n = 10**6 - counter.budget
    assert n >= 20  # companions, new peers, nodes, then the break
    for k in sorted({1, 2, n // 3, n // 2, 2 * n // 3, n - 2, n - 1}):
        restore()
        dying = dying_client(c, k)
        op = c.operator(f"dies-after-{k}", client=dying, leader_election=False)
        assert dying.exhausted.wait(30), (k, op.stats)
        op.kill()
        safety = c.safety()
        assert safety.ok, (k, safety.describe())
        assert c.layout() != reference and c.status().get("transition"), k  # mid-rollout
        survivor = c.operator(f"survivor-{k}", leader_election=False)
        c.steady(survivor, since=time.monotonic())
        survivor.stop()
        assert c.layout() == reference, k
        assert c.safety().ok and c.no_prev_labels()


def test_users_peer_and_labels_untouched(cluster: Cluster) -> None:
    c = cluster
    nodes = synthetic_cluster(20, zones=2)
    nodes[0] = replace(nodes[0], labels={**nodes[0].labels, "team": "blue"})
    c.add(nodes)
    router = {
        "apiVersion": L.API_VERSION,
        "kind": "BGPPeer",
        "metadata": {"name": "tor-router", "labels": {"owner": "netops"}},
        "spec": {"peerIP": "192.0.2.1", "asNumber": 65001},
    }
    key, value = L.encode_document(router)
    stored = c.admin.put_if(key, value, 0)
    c.config({"waitTimeout": "1s", "debounce": "20ms", "topology": "multi"})
    op = c.operator()
    c.steady(op)
    # A user labels an RR node after we set ours; a rollout (another topology) follows.
    rr = c.rr_nodes()[0]
    kv = c.kvs("nodes")[rr]
    doc = L.decode_document(kv.key, kv.value, kv.mod_revision)
    doc["metadata"]["labels"]["rack.example.com/row"] = "7"
    c.admin.put_if(kv.key, L.encode_document(doc)[1], kv.mod_revision)
    mark = time.monotonic()
    c.config({"waitTimeout": "1s", "debounce": "20ms", "topology": "single"})
    c.steady(op, since=mark)
    assert c.admin.get(key) == stored  # byte for byte, never rewritten
    assert c.labels(nodes[0].name)["team"] == "blue"
    assert c.labels(rr)["rack.example.com/row"] == "7"
    owned, _ = owned_fields(c.docs("nodes")[rr])
    assert "rack.example.com/row" not in owned and "team" not in owned
    assert c.safety().ok


def test_leader_failover_only_the_leader_writes(cluster: Cluster) -> None:
    c = cluster
    c.add(synthetic_cluster(20, zones=3))
    c.config({"waitTimeout": "1s", "debounce": "20ms", "topology": "multi"})
    a = c.operator("a")
    assert a.elector is not None and a.elector.wait_for_leadership(10)
    b = c.operator("b")
    c.steady(a)
    assert b.synced and not b.is_leader
    assert b.stats.writes == 0 and b.stats.reconciles == 0
    assert len(b.caches["nodes"]) == 20  # warm caches
    a.kill()  # no lease release: b takes over when the lease runs out
    written = a.stats.writes
    assert b.elector is not None and b.elector.wait_for_leadership(10)
    c.add(synthetic_cluster(30, zones=3)[20:])
    c.steady(b, seen=node_count(30))
    assert a.stats.writes == written and b.stats.writes > 0
    assert (kv := c.admin.get("/calico-rr/leader")) is not None and kv.value == b"b"
    assert c.safety().ok


class RacingClient(EtcdClient):
    """The first time the operator rewrites an existing BGPPeer, a user adds a label
    to that BGPPeer between the operator's read and its write."""

    def __init__(self, *args: Any, user: EtcdClient, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.armed = False
        self.raced: str | None = None

    def put_if(self, key: str, value: bytes, mod_revision: int, **kwargs: Any) -> KeyValue:
        if self.armed and mod_revision and key.startswith(L.plural_prefix("bgppeers")):
            self.armed = False
            kv = self.user.get(key)
            assert kv is not None
            doc = L.decode_document(key, kv.value, kv.mod_revision)
            doc["metadata"]["labels"]["owner"] = "netops"
            self.user.put_if(key, L.encode_document(doc)[1], kv.mod_revision)
            self.raced = key
        return super().put_if(key, value, mod_revision, **kwargs)


def test_concurrent_edit_of_a_managed_peer_keeps_both_intents(cluster: Cluster) -> None:
    c = cluster
    c.add(synthetic_cluster(15, zones=3))
    c.config({"waitTimeout": "1s", "debounce": "20ms", "topology": "multi"})
    s = c.etcd.settings()
    racing = RacingClient(
        s.endpoints,
        ca_file=s.ca_cert_file,
        cert_file=s.cert_file,
        key_file=s.key_file,
        user=c.admin,
    )
    op = c.operator(client=racing)
    c.steady(op)
    assert op.stats.conflicts == 0
    racing.armed = True
    mark = time.monotonic()
    c.config(
        {"waitTimeout": "1s", "debounce": "20ms", "topology": "multi", "maxRestartTime": "90s"}
    )
    c.steady(op, since=mark)
    assert racing.raced is not None
    assert op.stats.conflicts >= 1  # our compare-and-swap failed: nothing overwritten
    name = racing.raced.rsplit("/", 1)[1]
    peer = c.docs("bgppeers")[name]
    assert peer["metadata"]["labels"]["owner"] == "netops"  # the user's intent
    assert peer["spec"]["maxRestartTime"] == "90s"  # ours
    assert L.is_managed(peer)
    assert c.safety().ok and c.no_prev_labels()


def test_uninstall_restores_the_mesh_and_removes_our_objects(cluster: Cluster) -> None:
    c = cluster
    op = converge(c, 12, {"topology": "multi"})
    request_uninstall(c.admin)
    deadline = time.monotonic() + 30
    while c.admin.get(CONFIG_KEY) is not None:
        assert time.monotonic() < deadline, op.stats
        time.sleep(0.05)
    assert c.admin.get(STATUS_KEY) is None
    assert not any(L.is_managed(d) for d in c.docs("bgppeers").values())
    assert not c.docs("caliconodestatuses")
    assert L.mesh_enabled(c.docs("bgpconfigurations").get("default"))
    assert not c.rr_nodes()
    assert all(not owned_fields(d)[0] for d in c.docs("nodes").values())
    assert c.safety().ok


def test_etcd_restart_resumes_watches_without_listing_again(cluster: Cluster) -> None:
    c = cluster
    op = converge(c, 10, {"topology": "multi"})
    c.etcd.kill()
    time.sleep(0.5)
    c.etcd.restart()
    joined = synthetic_cluster(12, zones=3)[10:]
    c.add(joined)
    c.steady(op, seen=node_count(12))
    assert op.lists() == len(op.caches)  # every watch resumed at its next revision
    assert c.safety().ok
    for n in joined:  # the joins were seen through the resumed watch and handled
        assert GROUP_LABEL in c.labels(n.name) or RR_LABEL in c.labels(n.name)


def test_run_command_on_etcd(cluster: Cluster, tmp_path: Path) -> None:
    """`calico-rr run` with Calico's etcd variables: converges, then exits cleanly on
    SIGTERM, releasing the leader key."""
    c = cluster
    c.add(synthetic_cluster(9, zones=3))
    c.config({"waitTimeout": "1s", "debounce": "20ms", "topology": "multi"})
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "KUBECONFIG"))}
    env.update(c.etcd.env())  # DATASTORE_TYPE=etcdv3, ETCD_ENDPOINTS, TLS files
    cmd = [sys.executable, "-m", "calico_rr.cli", "run", "--port", str(port), "--identity", "proc"]

    def leader_is_proc() -> None:
        kv = c.admin.get("/calico-rr/leader")
        assert kv is not None and kv.value == b"proc"

    c.run_process(cmd, env, tmp_path / "stderr.log", while_steady=leader_is_proc)
    assert c.admin.get("/calico-rr/leader") is None  # released on the way out
    assert c.safety().ok and len(c.rr_nodes()) >= 2
    bad = subprocess.run(
        [*cmd, "--datastore-type", "consul"], env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "must be 'kubernetes' or 'etcdv3'" in bad.stderr


def test_uninstall_command_on_etcd_with_a_leader_running(cluster: Cluster) -> None:
    """`calico-rr uninstall` with Calico's etcd variables, next to a running leader:
    both drive the same steps with compare-and-swap; the mesh comes back, nothing of
    ours is left, a user's BGPPeer stays; a second run says there is nothing to do."""
    c = cluster
    op = converge(c, 12, {"topology": "multi"})
    user_key, user_value = L.encode_document(
        {
            "apiVersion": "projectcalico.org/v3",
            "kind": "BGPPeer",
            "metadata": {"name": "tor-1"},
            "spec": {"peerIP": "192.0.2.1", "asNumber": 65001},
        }
    )
    c.admin.put_if(user_key, user_value, 0)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "KUBECONFIG"))}
    env.update(c.etcd.env())
    cmd = [sys.executable, "-m", "calico_rr.cli", "uninstall", "--timeout", "60"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "uninstalled" in done.stdout
    assert c.admin.get(CONFIG_KEY) is None and c.admin.get(STATUS_KEY) is None
    assert L.mesh_enabled(c.docs("bgpconfigurations").get("default"))
    assert not any(L.is_managed(d) for d in c.docs("bgppeers").values())
    assert not c.rr_nodes() and c.safety().ok
    kept = c.admin.get(user_key)
    assert kept is not None and kept.value == user_value
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "nothing to uninstall" in again.stderr, again.stderr
    assert op.stats.errors == 0
