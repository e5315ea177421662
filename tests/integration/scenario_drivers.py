"""One scenario suite, two datastores: the drivers behind it.

The operator's acceptance scenarios (tests/integration/test_scenarios_both_datastores.py)
are written once against :class:`Driver`, which acts as the cluster (nodes join, fail,
are cordoned and deleted; a user edits their own objects), runs operator replicas, and
reads the result back the way calico-node does.  Two implementations:

* :class:`KubeDriver`: a real kube-apiserver + etcd (``calico_rr.sandbox.ControlPlane``,
  Calico's ``crd.projectcalico.org/v1`` CRDs, our CRD and the deploy/ RBAC); the
  operator (``Operator``) runs as the unprivileged ``calico-rr`` user, the driver acts
  as the admin.  Readiness is the Node's ``Ready`` condition, cordon is
  ``spec.unschedulable``.
* :class:`EtcdDriver`: a real etcd with client-certificate TLS
  (``calico_rr.sandbox.etcd.EtcdServer``) holding Calico's v3 documents; the operator is
  ``EtcdOperator``.  Readiness is Felix's liveness report
  ``/calico/felix/v2/no-region/host/<node>/status`` (present = Ready; the driver writes
  one for every node it adds), the config is the key ``/calico-rr/config/default``.
  etcd has no cordon (docs/ETCD.md "Readiness"): the driver maps ``cordon`` to the
  documented replacement, a node label listed in ``incompatibleNodeLabels``
  (:data:`CORDON_LABEL`, added to every config this driver writes).

Both drivers wrap the operator's connection in a write counter (:class:`WriteBudget` for
the Kubernetes transport, :class:`DyingClient` for the etcd client) that counts layout
writes (nodes, BGPPeers, BGPConfiguration, CalicoNodeStatus) apart from the operator's
bookkeeping (status, Events), and with a budget lets k layout writes through and then
fails every request as if the process had died: the crash-mid-transition hook.
"""

from __future__ import annotations

import abc
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.errors import Conflict, EtcdUnavailable
from calico_rr.adapters.etcd.operator import EtcdOperator
from calico_rr.adapters.etcd.values import KeyValue
from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.demo import cluster_documents, create_nodes, ready_status
from calico_rr.adapters.kube.operator import Operator
from calico_rr.core.formats import etcd as L
from calico_rr.core.formats.etcd_nodes import node_to_calico
from calico_rr.core.formats.scalars import format_timestamp
from calico_rr.core.operator.safety import Safety, check
from calico_rr.core.planning.config import RR_LABEL
from calico_rr.model import ANN_CLUSTER_ID, MANAGED_BY_LABEL, MANAGED_BY_VALUE, Node
from calico_rr.sandbox import ControlPlane
from calico_rr.sandbox.etcd import EtcdServer

__all__ = [
    "CORDON_LABEL",
    "Driver",
    "DyingClient",
    "EtcdDriver",
    "KubeDriver",
    "NodeView",
    "RunningOperator",
    "WriteBudget",
]

#: etcd has no cordon: a node with this label is not eligible (incompatibleNodeLabels)
CORDON_LABEL = "scenario.example.com/cordoned"
CONFIG_PATH = "/apis/calico-rr.io/v1alpha1/routereflectorconfigs/default"
ETCD_CONFIG_KEY = "/calico-rr/config/default"
ETCD_STATUS_KEY = "/calico-rr/status/default"
ETCD_LEADER_KEY = "/calico-rr/leader"
FELIX = "/calico/felix/v2/no-region/host/{}/status"
UNLIMITED = 10**9


# ---------------------------------------------------------------------------
# Write counters / crash hooks
# ---------------------------------------------------------------------------


#: our node labels, a rollout's ``prev.`` copies included
OUR_LABELS = ("calico-rr", "prev.calico-rr")


class WriteBudget:
    """A transport wrapper for the Kubernetes client that counts the operator's
    writes and lets ``budget`` layout writes through (not counting the config
    status, Events and Leases), then fails every request as if the process died.

    ``layout_writes`` counts the layout writes that succeeded, ``other_writes`` the
    config status and Event writes (the Lease requests of leader election are not
    counted at all)."""

    def __init__(self, budget: int = UNLIMITED) -> None:
        self.budget = budget
        self.layout_writes = 0
        self.other_writes = 0
        self.exhausted = threading.Event()
        self._lock = threading.Lock()

    def wrap(self, inner: httpx.BaseTransport) -> httpx.BaseTransport:
        budget = self

        class Dying(httpx.BaseTransport):
            def handle_request(self, request: httpx.Request) -> httpx.Response:
                path = request.url.path
                write = request.method in ("POST", "PUT", "PATCH", "DELETE")
                counted = write and not (
                    "/events" in path
                    or path.endswith("/status")
                    or "/leases" in path
                    or "routereflectorconfigs" in path
                )
                if not counted:
                    if budget.exhausted.is_set():
                        raise httpx.ConnectError("operator is dead", request=request)
                    response = inner.handle_request(request)
                    if write and "/leases" not in path and response.status_code < 400:
                        with budget._lock:
                            budget.other_writes += 1
                    return response
                # One counted write at a time, so "dies after k writes" is exact even
                # though the operator sends a batch's node writes in parallel.
                with budget._lock:
                    if budget.exhausted.is_set():
                        raise httpx.ConnectError("operator is dead", request=request)
                    response = inner.handle_request(request)
                    if response.status_code < 400:
                        budget.layout_writes += 1
                        budget.budget -= 1
                        if budget.budget <= 0:
                            budget.exhausted.set()
                    return response

            def close(self) -> None:
                inner.close()

        return Dying()


class DyingClient(EtcdClient):
    """An etcd client that lets ``budget`` datastore writes (keys under Calico's
    resource root) through, then fails every write as if the process had died.
    Status writes are counted in ``other_writes``; the leader key is not counted.
    Extra keyword arguments of ``put_if``/``delete_if`` (a leader fence) pass through."""

    def __init__(self, *args: Any, budget: int = UNLIMITED, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.budget = budget
        self.layout_writes = 0
        self.other_writes = 0
        self.exhausted = threading.Event()
        self._gate = threading.Lock()

    def _write(self, key: str, do: Callable[[], Any]) -> Any:
        if not key.startswith(L.RESOURCE_ROOT):
            if self.exhausted.is_set():
                raise EtcdUnavailable("operator is dead")
            result = do()
            if key != ETCD_LEADER_KEY:
                with self._gate:
                    self.other_writes += 1
            return result
        with self._gate:  # one counted write at a time: "after k writes" is exact
            if self.exhausted.is_set():
                raise EtcdUnavailable("operator is dead")
            result = do()
            self.layout_writes += 1
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


# ---------------------------------------------------------------------------
# The neutral interface
# ---------------------------------------------------------------------------


class OperatorLike(Protocol):
    """What both Operator and EtcdOperator offer the scenarios."""

    identity: str
    stats: Any

    @property
    def is_leader(self) -> bool: ...

    @property
    def synced(self) -> bool: ...

    def stop(self, *, release: bool = True) -> None: ...

    def kill(self) -> None: ...

    def lists(self) -> int: ...

    def observed(self, transition: Any) -> Any: ...


@dataclass
class RunningOperator:
    """An operator replica the driver started, with its write counter."""

    op: OperatorLike
    counter: WriteBudget | DyingClient

    @property
    def identity(self) -> str:
        return self.op.identity

    @property
    def stats(self) -> Any:
        return self.op.stats

    @property
    def is_leader(self) -> bool:
        return self.op.is_leader

    @property
    def layout_writes(self) -> int:
        return self.counter.layout_writes

    @property
    def all_writes(self) -> int:
        return self.counter.layout_writes + self.counter.other_writes

    @property
    def exhausted(self) -> threading.Event:
        return self.counter.exhausted

    def seen_node(self, name: str) -> Node | None:
        """The node as the operator's caches show it now (readiness included)."""
        state = self.op.store.observed(None).nodes.get(name)
        return None if state is None else state.node

    def seen_nodes(self) -> int:
        return len(self.op.store.observed(None).nodes)

    def kill(self) -> None:
        self.op.kill()

    def stop(self) -> None:
        self.op.stop()


@dataclass(frozen=True)
class NodeView:
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    #: the route reflector cluster ID calico-node reads ("" when none)
    cluster_id: str


@dataclass
class Driver(abc.ABC):
    """A datastore with the operator on it.  Module-scoped; ``reset()`` between tests."""

    name: str = ""
    lease_duration: float = 3.0
    operators: list[RunningOperator] = field(default_factory=list)

    # -- acting as the cluster ---------------------------------------------------------

    @abc.abstractmethod
    def add_nodes(self, nodes: Iterable[Node], *, sequential: bool = False) -> None:
        """Register nodes, Ready.  ``sequential``: one after another, in order (so
        the datastore's creation order is the list's)."""

    @abc.abstractmethod
    def set_ready(self, name: str, ready: bool) -> None: ...

    @abc.abstractmethod
    def cordon(self, name: str) -> None:
        """Make a node ineligible as an RR while it keeps running."""

    @abc.abstractmethod
    def is_cordoned(self, node: Node) -> bool:
        """Whether the operator's view of ``node`` shows the cordon."""

    @abc.abstractmethod
    def delete_node(self, name: str) -> None: ...

    @abc.abstractmethod
    def set_user_metadata(
        self, name: str, labels: dict[str, str], annotations: dict[str, str]
    ) -> None:
        """A user adds labels/annotations of their own to a node."""

    @abc.abstractmethod
    def create_user_peer(self, name: str, labels: dict[str, str], spec: dict[str, Any]) -> None:
        """A user's own BGPPeer."""

    @abc.abstractmethod
    def peer_fingerprint(self, name: str) -> Any:
        """Everything stored for a BGPPeer incl. its version: equal = never rewritten."""

    @abc.abstractmethod
    def set_config(self, spec: dict[str, Any]) -> None:
        """Write the RouteReflectorConfig ``default``."""

    @abc.abstractmethod
    def status(self) -> dict[str, Any]: ...

    # -- operators -----------------------------------------------------------------------

    @abc.abstractmethod
    def start_operator(
        self,
        identity: str = "op",
        *,
        leader_election: bool = True,
        budget: int = UNLIMITED,
    ) -> RunningOperator:
        """Start a replica whose connection dies after ``budget`` layout writes."""

    @abc.abstractmethod
    def leader(self) -> str | None:
        """The identity holding leadership in the datastore (None: nobody)."""

    @abc.abstractmethod
    def relists(self, op: RunningOperator) -> int:
        """Lists beyond each cache's first one (a re-list)."""

    # -- reading back ------------------------------------------------------------------------

    @abc.abstractmethod
    def nodes(self) -> dict[str, NodeView]: ...

    @abc.abstractmethod
    def peers(self) -> dict[str, dict[str, Any]]:
        """Every BGPPeer (name -> document)."""

    @abc.abstractmethod
    def snapshot(self) -> list[dict[str, Any]]:
        """Nodes, BGPPeers and BGPConfigurations as calico-node reads them."""

    @abc.abstractmethod
    def not_ready(self) -> set[str]:
        """Nodes that are down (not Ready)."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Stop every replica and empty the datastore (nodes, Calico objects, our
        config, status and leader record)."""

    # -- shared ---------------------------------------------------------------------------------

    def stop_all(self) -> None:
        for r in self.operators:
            r.op.stop(release=False)
            client = getattr(r.op, "client", None)
            if client is not None:
                client.close()
        self.operators.clear()

    def safety(self, down: set[str] | None = None) -> Safety:
        return check(self.snapshot(), self.not_ready() if down is None else down)

    def labels(self, name: str) -> dict[str, str]:
        return self.nodes()[name].labels

    def rr_nodes(self) -> list[str]:
        return sorted(n for n, v in self.nodes().items() if RR_LABEL in v.labels)

    def managed_peers(self) -> dict[str, dict[str, Any]]:
        return {
            n: p
            for n, p in self.peers().items()
            if (p["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE
        }

    def layout(self) -> tuple[dict[str, dict[str, str]], dict[str, Any]]:
        """Our node labels (a rollout's ``prev.`` copies too) and cluster IDs, and our
        BGPPeers' specs."""
        nodes = {
            n: {
                **{k: x for k, x in v.labels.items() if k.startswith(OUR_LABELS)},
                "cid": v.cluster_id,
            }
            for n, v in self.nodes().items()
        }
        peers = {n: p["spec"] for n, p in self.managed_peers().items()}
        return nodes, peers

    def wait_steady(
        self,
        r: RunningOperator,
        *,
        since: float = 0.0,
        timeout: float = 120.0,
        seen: Callable[[RunningOperator], bool] | None = None,
    ) -> float:
        """Wait for Steady with the mesh off, reached after ``since``.

        With ``seen``: first until the operator's caches show the change, then for a
        whole reconcile pass that started after that and left the layout Steady (a
        change that needs no write never leaves Steady)."""
        start = time.monotonic()
        if seen is not None:
            while not seen(r):
                if time.monotonic() - start > timeout:
                    raise AssertionError(f"{self.name}: the caches never showed the change")
                time.sleep(0.02)
            since = time.monotonic()
        while time.monotonic() - start < timeout:
            st, stats = self.status(), r.stats
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
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(
            f"{self.name}: not steady after {timeout}s: {r.stats.last_message} {self.status()}"
        )


# ---------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------


@dataclass
class KubeDriver(Driver):
    cp: ControlPlane | None = None
    admin: KubeClient | None = None
    group: str = "crd.projectcalico.org/v1"
    namespace: str = "calico-rr"

    @property
    def api(self) -> KubeClient:
        assert self.admin is not None
        return self.admin

    @property
    def plane(self) -> ControlPlane:
        assert self.cp is not None
        return self.cp

    def add_nodes(self, nodes: Iterable[Node], *, sequential: bool = False) -> None:
        create_nodes(self.api, nodes, workers=1 if sequential else 8)

    def set_ready(self, name: str, ready: bool) -> None:
        self.api.patch(api_path("v1", "nodes", name) + "/status", ready_status(ready))

    def cordon(self, name: str) -> None:
        self.api.patch(api_path("v1", "nodes", name), {"spec": {"unschedulable": True}})

    def is_cordoned(self, node: Node) -> bool:
        return bool(node.unschedulable)

    def delete_node(self, name: str) -> None:
        self.api.delete(api_path("v1", "nodes", name))

    def set_user_metadata(
        self, name: str, labels: dict[str, str], annotations: dict[str, str]
    ) -> None:
        self.api.patch(
            api_path("v1", "nodes", name),
            {"metadata": {"labels": labels, "annotations": annotations}},
        )

    def create_user_peer(self, name: str, labels: dict[str, str], spec: dict[str, Any]) -> None:
        body = {
            "apiVersion": self.group,
            "kind": "BGPPeer",
            "metadata": {"name": name, "labels": labels},
            "spec": spec,
        }
        self.api.create(api_path(self.group, "bgppeers"), body)

    def peer_fingerprint(self, name: str) -> Any:
        obj = self.api.get(api_path(self.group, "bgppeers", name))
        return None if obj is None else json.dumps(obj, sort_keys=True)

    def set_config(self, spec: dict[str, Any]) -> None:
        from calico_rr.sandbox.manifests import apply_documents

        apply_documents(
            self.plane,
            [
                {
                    "apiVersion": "calico-rr.io/v1alpha1",
                    "kind": "RouteReflectorConfig",
                    "metadata": {"name": "default"},
                    "spec": spec,
                }
            ],
        )

    def status(self) -> dict[str, Any]:
        return dict((self.api.get(CONFIG_PATH) or {}).get("status") or {})

    def start_operator(
        self,
        identity: str = "op",
        *,
        leader_election: bool = True,
        budget: int = UNLIMITED,
    ) -> RunningOperator:
        counter = WriteBudget(budget)
        client = KubeClient.from_kubeconfig(
            self.plane.operator_kubeconfig,
            wrap_transport=counter.wrap,
            backoff_base=0.02,
            backoff_max=0.5,
            user_agent=f"calico-rr/{identity}",
        )
        op = Operator(
            client,
            namespace=self.namespace,
            identity=identity,
            env={},
            lease_duration=self.lease_duration,
            leader_election=leader_election,
        )
        r = RunningOperator(op, counter)
        self.operators.append(r)
        op.start()
        assert op.api_group == self.group
        return r

    def leader(self) -> str | None:
        lease = self.api.get(
            api_path("coordination.k8s.io/v1", "leases", "calico-rr", namespace=self.namespace)
        )
        holder = ((lease or {}).get("spec") or {}).get("holderIdentity")
        return str(holder) if holder else None

    def relists(self, r: RunningOperator) -> int:
        op = r.op
        assert isinstance(op, Operator)
        # after the first LIST only a 410 (a quiet watch outliving etcd's compaction
        # of its resourceVersion) may cause a re-LIST; that is not what we count
        gone = sum(inf.gone for inf in op.informers.values())
        return op.lists() - len(op.informers) - gone

    def nodes(self) -> dict[str, NodeView]:
        items, _ = self.api.list(api_path("v1", "nodes"))
        out = {}
        for o in items:
            meta = o["metadata"]
            annotations = dict(meta.get("annotations") or {})
            out[meta["name"]] = NodeView(
                meta["name"],
                dict(meta.get("labels") or {}),
                annotations,
                annotations.get(ANN_CLUSTER_ID, ""),
            )
        return out

    def peers(self) -> dict[str, dict[str, Any]]:
        items, _ = self.api.list(api_path(self.group, "bgppeers"))
        return {o["metadata"]["name"]: o for o in items}

    def snapshot(self) -> list[dict[str, Any]]:
        return cluster_documents(self.api, self.group)

    def not_ready(self) -> set[str]:
        items, _ = self.api.list(api_path("v1", "nodes"))
        return {
            o["metadata"]["name"]
            for o in items
            if not any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (o.get("status") or {}).get("conditions") or []
            )
        }

    def reset(self) -> None:
        self.stop_all()
        api = self.api
        cfg = api.get(CONFIG_PATH)
        if cfg is not None:
            if cfg["metadata"].get("finalizers"):
                api.patch(CONFIG_PATH, {"metadata": {"finalizers": None}})
            api.delete(CONFIG_PATH)
        paths = [api_path("v1", "nodes")] + [
            api_path(self.group, plural)
            for plural in ("bgppeers", "bgpconfigurations", "caliconodestatuses")
        ]
        doomed: list[str] = []
        for path in paths:
            try:
                items, _ = api.list(path)
            except Exception:  # a kind this CRD set does not serve
                continue
            doomed += [f"{path}/{o['metadata']['name']}" for o in items]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(api.delete, doomed))
        api.delete(
            api_path("coordination.k8s.io/v1", "leases", "calico-rr", namespace=self.namespace)
        )
        deadline = time.monotonic() + 30
        while api.get(CONFIG_PATH) is not None or api.list(api_path("v1", "nodes"))[0]:
            assert time.monotonic() < deadline, "kube reset: objects did not go away"
            time.sleep(0.05)


# ---------------------------------------------------------------------------
# etcd
# ---------------------------------------------------------------------------


@dataclass
class EtcdDriver(Driver):
    server: EtcdServer | None = None
    admin: EtcdClient | None = None

    @property
    def kv(self) -> EtcdClient:
        assert self.admin is not None
        return self.admin

    @property
    def etcd(self) -> EtcdServer:
        assert self.server is not None
        return self.server

    def add_nodes(self, nodes: Iterable[Node], *, sequential: bool = False) -> None:
        # Documents carry the synthetic creation time: the order is the list's anyway.
        for n in nodes:
            key, value = L.encode_document(node_to_calico(n, uid=f"uid-{n.name}"))
            self.kv.put_if(key, value, 0)
            self.kv.put(FELIX.format(n.name), b'{"time":"now"}')

    def set_ready(self, name: str, ready: bool) -> None:
        # Felix's report (on a lease that runs out when Felix stops): gone = NotReady
        if ready:
            self.kv.put(FELIX.format(name), b'{"time":"now"}')
        else:
            self.kv.delete(FELIX.format(name))

    def _edit_node(self, name: str, edit: Callable[[dict[str, Any]], None]) -> None:
        key = L.resource_key("nodes", name)
        while True:  # compare-and-swap: the operator may write the node meanwhile
            kv = self.kv.get(key)
            assert kv is not None, name
            doc = L.decode_document(kv.key, kv.value, kv.mod_revision)
            edit(doc)
            try:
                self.kv.put_if(key, L.encode_document(doc)[1], kv.mod_revision)
                return
            except Conflict:
                continue

    def cordon(self, name: str) -> None:
        def edit(doc: dict[str, Any]) -> None:
            doc["metadata"].setdefault("labels", {})[CORDON_LABEL] = "true"

        self._edit_node(name, edit)

    def is_cordoned(self, node: Node) -> bool:
        return node.labels.get(CORDON_LABEL) == "true"

    def delete_node(self, name: str) -> None:
        assert self.kv.delete(L.resource_key("nodes", name))
        self.kv.delete(FELIX.format(name))

    def set_user_metadata(
        self, name: str, labels: dict[str, str], annotations: dict[str, str]
    ) -> None:
        def edit(doc: dict[str, Any]) -> None:
            meta = doc["metadata"]
            meta["labels"] = {**(meta.get("labels") or {}), **labels}
            if annotations:
                meta["annotations"] = {**(meta.get("annotations") or {}), **annotations}

        self._edit_node(name, edit)

    def create_user_peer(self, name: str, labels: dict[str, str], spec: dict[str, Any]) -> None:
        # As ``calicoctl create`` stores it: libcalico-go sets uid and creationTimestamp,
        # and refuses to update a document without them (the calicoctl round trip).
        doc = {
            "apiVersion": L.API_VERSION,
            "kind": "BGPPeer",
            "metadata": {
                "name": name,
                "labels": labels,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": format_timestamp(time.time()),
            },
            "spec": spec,
        }
        key, value = L.encode_document(doc)
        self.kv.put_if(key, value, 0)

    def peer_fingerprint(self, name: str) -> Any:
        return self.kv.get(L.resource_key("bgppeers", name))  # value bytes + revisions

    def set_config(self, spec: dict[str, Any]) -> None:
        # No cordon on etcd: the documented replacement is an incompatible label.
        spec = {
            **spec,
            "incompatibleNodeLabels": [
                *spec.get("incompatibleNodeLabels", []),
                f"{CORDON_LABEL}=true",
            ],
        }
        doc = {
            "apiVersion": "calico-rr.io/v1alpha1",
            "kind": "RouteReflectorConfig",
            "metadata": {"name": "default"},
            "spec": spec,
        }
        self.kv.put(ETCD_CONFIG_KEY, json.dumps(doc).encode())

    def status(self) -> dict[str, Any]:
        kv = self.kv.get(ETCD_STATUS_KEY)
        return dict(kv.json()) if kv is not None else {}

    def start_operator(
        self,
        identity: str = "op",
        *,
        leader_election: bool = True,
        budget: int = UNLIMITED,
    ) -> RunningOperator:
        s = self.etcd.settings()
        client = DyingClient(
            s.endpoints,
            ca_file=s.ca_cert_file,
            cert_file=s.cert_file,
            key_file=s.key_file,
            timeout=5.0,
            budget=budget,
        )
        op = EtcdOperator(
            client,
            identity=identity,
            env={},
            lease_duration=self.lease_duration,
            leader_election=leader_election,
        )
        r = RunningOperator(op, client)
        self.operators.append(r)
        op.start()
        return r

    def leader(self) -> str | None:
        kv = self.kv.get(ETCD_LEADER_KEY)
        return kv.value.decode() if kv is not None else None

    def relists(self, r: RunningOperator) -> int:
        op = r.op
        assert isinstance(op, EtcdOperator)
        return op.lists() - len(op.caches)

    def _docs(self, plural: str) -> dict[str, dict[str, Any]]:
        prefix = L.plural_prefix(plural)
        return {
            kv.key[len(prefix) :]: L.decode_document(kv.key, kv.value, kv.mod_revision)
            for kv in self.kv.list(prefix).kvs
        }

    def nodes(self) -> dict[str, NodeView]:
        out = {}
        for name, doc in self._docs("nodes").items():
            meta = doc["metadata"]
            out[name] = NodeView(
                name,
                dict(meta.get("labels") or {}),
                dict(meta.get("annotations") or {}),
                str((doc.get("spec") or {}).get("bgp", {}).get("routeReflectorClusterID", "")),
            )
        return out

    def peers(self) -> dict[str, dict[str, Any]]:
        return self._docs("bgppeers")

    def snapshot(self) -> list[dict[str, Any]]:
        # one list of the whole resource tree: every kind read at the same revision
        wanted = ("nodes", "bgppeers", "bgpconfigurations")
        out = []
        for kv in self.kv.list(L.RESOURCE_ROOT).kvs:
            rk = L.parse_key(kv.key)
            if rk is not None and rk.plural in wanted:
                out.append(L.decode_document(kv.key, kv.value, kv.mod_revision))
        return out

    def not_ready(self) -> set[str]:
        reports = {L.felix_status_host(kv.key) for kv in self.kv.list(L.FELIX_STATUS_PREFIX).kvs}
        reports.discard(None)
        if not reports:  # no Felix reports at all: every node counts as Ready
            return set()
        return set(self._docs("nodes")) - {h for h in reports if h is not None}

    def reset(self) -> None:
        self.stop_all()
        for kv in self.kv.list("/calico").kvs:  # also /calico-rr/
            self.kv.delete(kv.key)
