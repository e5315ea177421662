"""``calico-rr demo --datastore etcdv3``: the operator end to end on Calico's etcd.

The flow of the Kubernetes demo (calico_rr/adapters/kube/demo.py) on Calico's
etcdv3 datastore: starts a real etcd with client-certificate TLS
(calico_rr.sandbox.etcd; the binary is built once and cached), writes N synthetic
Calico Node documents across zones with the full mesh on (no BGPConfiguration:
the mesh is on by default) and a Felix liveness report for each node, writes the
RouteReflectorConfig to ``/calico-rr/config/default``, runs the
:class:`~calico_rr.adapters.etcd.operator.EtcdOperator` to convergence, verifies
what is in etcd with the verifier, joins one node, then fails a zone (its Felix
reports disappear, as when Felix stops and its lease expires) and shows the
re-convergence.

Felix reports of one zone share one etcd lease (a long TTL, so nothing expires by
itself during the demo); failing the zone revokes that lease, which deletes the
reports at once - what their expiry does after ``ReportingTTLSecs`` when Felix stops.

Counting requests.  etcd counts every gRPC request it starts
(``grpc_server_started_total`` by ``grpc_method`` on its ``/metrics``); each request
to the JSON gateway is one gRPC request inside etcd, a watch or a lease keepalive
is one stream.  The demo's own client counts what it sends by the same method
names (:class:`SentRequests`), so the operator's requests are etcd's count minus
the demo's own, exactly: independent of the operator's own counters.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from prometheus_client.parser import text_string_to_metric_families

from calico_rr.adapters import demo
from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.operator import CONFIG_KEY, STATUS_KEY, EtcdOperator
from calico_rr.adapters.etcd.values import EventType, WatchEvent
from calico_rr.core.formats import etcd as L
from calico_rr.core.formats.etcd_nodes import node_to_calico
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.model import ANN_IPV4, ZONE_LABEL, Node
from calico_rr.sandbox.etcd import EtcdServer

#: Felix's liveness report of a host (core.formats.etcd.felix_status_host reads it back).
FELIX_REPORT: Final = f"{L.FELIX_STATUS_PREFIX}no-region/host/{{}}/status"
#: Felix reports live on one lease per zone; nothing expires during a demo.
FELIX_LEASE_TTL: Final = 3600

#: EtcdClient operation (its ``on_request`` name) -> the etcd gRPC method it is.
GRPC_METHODS: Final[Mapping[str, str]] = {
    "get": "Range",
    "list": "Range",
    "put": "Put",
    "delete": "DeleteRange",
    "put_if": "Txn",
    "delete_if": "Txn",
    "compact": "Compact",
    "lease_grant": "LeaseGrant",
    "lease_keepalive": "LeaseKeepAlive",
    "lease_ttl": "LeaseTimeToLive",
    "lease_revoke": "LeaseRevoke",
    "watch": "Watch",
    "authenticate": "Authenticate",
}
#: gRPC methods that write (every write of the operator is a compare-and-swap Txn).
WRITE_METHODS: Final = frozenset({"Put", "Txn", "DeleteRange"})


# -- counting requests ------------------------------------------------------------------


class SentRequests:
    """What one :class:`EtcdClient` sent, by etcd gRPC method: pass an instance as
    the client's ``on_request``.  An attempt that never reached etcd (connection
    failed: status 0) is not counted."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, op: str, endpoint: str, status: int) -> None:
        if status == 0:
            return
        method = GRPC_METHODS[op]  # KeyError: a client operation this table lacks
        with self._lock:
            self._counts[method] += 1

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)


class EtcdRequestCounter:
    """etcd's own count of the gRPC requests it started, by method
    (``grpc_server_started_total``), read from its ``/metrics`` (an HTTP GET that
    is not a gRPC request, so reading it counts nothing)."""

    def __init__(self, endpoint: str, context: ssl.SSLContext | None = None) -> None:
        self.url = endpoint.rstrip("/") + "/metrics"
        self.context = context

    @classmethod
    def for_server(cls, server: EtcdServer) -> EtcdRequestCounter:
        ctx = ssl.create_default_context(cafile=str(server.ca_file))
        ctx.load_cert_chain(str(server.cert_file), str(server.key_file))
        return cls(server.endpoint, ctx)

    def snapshot(self) -> Counter[str]:
        with urllib.request.urlopen(self.url, timeout=10, context=self.context) as resp:
            text = resp.read().decode()
        out: Counter[str] = Counter()
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == "grpc_server_started_total":
                    out[s.labels.get("grpc_method", "?")] += int(s.value)
        return out


@dataclass(frozen=True)
class Mark:
    etcd: Counter[str]
    sent: Counter[str]


class RequestLedger:
    """Requests everyone but the driver (here: the operator) sent to etcd between
    two marks: etcd's count minus what the driver's client sent.  Marks are taken
    from the driver's thread with none of its requests in flight."""

    def __init__(self, etcd: EtcdRequestCounter, sent: SentRequests) -> None:
        self.etcd = etcd
        self.sent = sent

    def mark(self) -> Mark:
        return Mark(self.etcd.snapshot(), self.sent.snapshot())

    def quiet_mark(self, gap: float = 0.05, tries: int = 100) -> Mark:
        """A mark at a moment the others sent nothing for ``gap`` seconds, so it
        does not fall between the two requests of a leader renewal (a keepalive,
        then a read of the leader key)."""
        last = self.mark()
        for _ in range(tries):
            time.sleep(gap)
            now = self.mark()
            if not self.between(last, now):
                return last
            last = now
        return last

    @staticmethod
    def between(a: Mark, b: Mark) -> Counter[str]:
        out: Counter[str] = Counter()
        for method in set(a.etcd) | set(b.etcd) | set(a.sent) | set(b.sent):
            value = (b.etcd[method] - a.etcd[method]) - (b.sent[method] - a.sent[method])
            if value:
                out[method] = value
        return out

    def since(self, mark: Mark) -> Counter[str]:
        return self.between(mark, self.mark())


def writes(requests: Mapping[str, int]) -> int:
    return sum(requests.get(m, 0) for m in WRITE_METHODS)


def reads_not_leader(requests: Mapping[str, int]) -> int:
    """Range requests other than the leader's renewals (each renewal is one lease
    keepalive followed by one read of the leader key): re-lists, polling."""
    return requests.get("Range", 0) - requests.get("LeaseKeepAlive", 0)


# -- acting as the cluster --------------------------------------------------------------


def felix_report_key(name: str) -> str:
    return FELIX_REPORT.format(name)


def node_document(node: Node) -> dict[str, Any]:
    """The Calico Node of ``node`` with a /24 address, as in the Kubernetes demo (an
    IPv6 address, if any, as node_to_calico writes it)."""
    if node.ip is not None:  # an IPv6-only node has no IPv4 address
        node = replace(node, annotations={**node.annotations, ANN_IPV4: f"{node.ip}/24"})
    return node_to_calico(node, uid=f"uid-{node.name}")


def felix_report() -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return json.dumps({"time": stamp, "uptimeSeconds": 0, "firstUpdate": True}).encode()


def create_nodes(
    admin: EtcdClient,
    nodes: Iterable[Node],
    leases: Mapping[str, int],
    *,
    workers: int = 8,
) -> set[int]:
    """Create the Calico Nodes (create-only compare-and-swap), each followed by its
    Felix report on its zone's lease; ``workers`` in flight.  Returns the etcd
    revisions of these writes (to tell them apart from the operator's)."""
    revisions: set[int] = set()
    lock = threading.Lock()

    def one(node: Node) -> None:
        key, value = L.encode_document(node_document(node))
        kv = admin.put_if(key, value, 0)
        zone = node.labels.get(ZONE_LABEL, "")
        rev = admin.put(felix_report_key(node.name), felix_report(), lease=leases[zone])
        with lock:
            revisions.update((kv.mod_revision, rev))

    demo.create_all(one, nodes, workers)
    return revisions


def zone_leases(admin: EtcdClient, nodes: Iterable[Node]) -> dict[str, int]:
    zones = sorted({n.labels.get(ZONE_LABEL, "") for n in nodes})
    return {zone: admin.grant(FELIX_LEASE_TTL).id for zone in zones}


def write_config(admin: EtcdClient, spec: Mapping[str, Any]) -> int:
    return admin.put(CONFIG_KEY, json.dumps(demo.config_document(spec)).encode())


def status(admin: EtcdClient) -> dict[str, Any]:
    kv = admin.get(STATUS_KEY)
    value = kv.json() if kv is not None else None
    return dict(value) if isinstance(value, dict) else {}


def cluster_documents(admin: EtcdClient) -> list[dict[str, Any]]:
    """Nodes, BGPPeers and BGPConfigurations as calico-node reads them from etcd."""
    docs: list[dict[str, Any]] = []
    for plural in ("nodes", "bgppeers", "bgpconfigurations"):
        for kv in admin.list(L.plural_prefix(plural)).kvs:
            docs.append(L.decode_document(kv.key, kv.value, kv.mod_revision))
    return docs


def describe_writes(
    admin: EtcdClient, start: int, end: int, own: set[int], *, timeout: float = 10.0
) -> list[str]:
    """The writes under /calico* with revisions in [start, end] that are not in
    ``own``, read back from etcd's history (a watch from ``start``)."""
    out: list[str] = []
    if end < start:
        return out
    w = admin.watch("/calico", start)
    guard = threading.Timer(timeout, w.close)
    guard.start()
    try:
        for item in w:
            rev = item.kv.mod_revision if isinstance(item, WatchEvent) else 0
            if isinstance(item, WatchEvent) and rev <= end and rev not in own:
                verb = "put" if item.type == EventType.PUT else "delete"
                out.append(f"{verb} {_short(item.kv.key)}")
            if w.next_revision > end:
                break
    finally:
        guard.cancel()
        w.close()
    return out


def _short(key: str) -> str:
    """``nodes <name>`` for a Calico resource key, else the key."""
    if key.startswith(L.RESOURCE_ROOT):
        plural, _, name = key[len(L.RESOURCE_ROOT) :].strip("/").partition("/")
        return f"{plural} {name}"
    return key


@dataclass
class EtcdSite:
    """The demo's view of etcd: requests counted by etcd itself (docs/ETCD.md)."""

    admin: EtcdClient
    ledger: RequestLedger
    op: EtcdOperator
    leases: Mapping[str, int]
    own: set[int]
    #: taken before the operator started
    start_mark: Mark
    where: str = "etcd"
    _sync_mark: Mark | None = None

    def status(self) -> dict[str, Any]:
        return status(self.admin)

    def documents(self) -> list[dict[str, Any]]:
        return cluster_documents(self.admin)

    def seen(self, name: str) -> bool:
        return self.op.caches["nodes"].get(L.resource_key("nodes", name)) is not None

    def mark_sync(self) -> None:
        self._sync_mark = self.ledger.quiet_mark()

    def join(self, nodes: Sequence[Node], wait: Callable[[], float]) -> tuple[int, list[str]]:
        before = self.ledger.quiet_mark()
        start_rev = self.admin.list(STATUS_KEY).revision + 1
        self.own |= create_nodes(self.admin, nodes, self.leases)
        wait()
        time.sleep(0.5)  # let a trailing write (a follow-up pass) land
        requests = self.ledger.since(before)
        end_rev = self.admin.list(STATUS_KEY).revision
        return writes(requests), describe_writes(self.admin, start_rev, end_rev, self.own)

    def fail_zone(self, zone: str, names: Sequence[str]) -> None:
        """Felix stops on the zone's nodes: their reports go with the zone's lease."""
        self.admin.revoke(self.leases[zone])

    def lists_after_sync(self) -> int:
        assert self._sync_mark is not None
        return reads_not_leader(self.ledger.between(self._sync_mark, self.ledger.quiet_mark()))

    def requests_total(self) -> int:
        return sum(self.ledger.since(self.start_mark).values())


# -- the demo ---------------------------------------------------------------------------


def run_demo(
    *,
    nodes: int,
    zones: int,
    topology: str,
    progress: Callable[[str], None],
    trace: demo.DemoTrace,
    ip_family: str,
) -> dict[str, Any]:
    """The demo; the result has the keys of ``demo.DEMO_KEYS`` (docs/ETCD.md
    says what the request counts mean on etcd)."""
    progress("starting etcd with TLS (the binary is built on first use, then cached)")
    with EtcdServer() as server:
        sent = SentRequests()
        admin = server.client(timeout=10.0, on_request=sent)
        ledger = RequestLedger(EtcdRequestCounter.for_server(server), sent)
        op: EtcdOperator | None = None
        try:
            cluster = synthetic_cluster(nodes + 1, zones=zones, ip_family=ip_family)
            leases = zone_leases(admin, cluster)
            progress(f"writing {nodes} Calico Nodes in {zones} zones (full mesh on)")
            own = create_nodes(admin, cluster[:nodes], leases)
            write_config(admin, {"topology": topology, "waitTimeout": "2s"})
            op = EtcdOperator(
                server.client(timeout=10.0), identity="demo-0", env={}, lease_duration=5.0
            )
            site = EtcdSite(admin, ledger, op, leases, own, ledger.mark())
            op.start()
            return demo.run_flow(site, cluster, nodes, zones, ip_family, progress, trace)
        finally:
            if op is not None:
                op.stop()
                op.client.close()
            admin.close()
