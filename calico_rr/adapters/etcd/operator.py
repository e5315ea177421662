"""The operator on Calico's etcd datastore: caches in, core.operator.reconcile, CAS writes out.

Data flow::

    PrefixCache per prefix (one LIST snapshot, then WATCH from its revision + 1;
    resumed at ``next_revision`` after a broken stream, re-listed on Compacted)
        /calico/resources/v3/projectcalico.org/{nodes,bgppeers,bgpconfigurations,
        caliconodestatuses}/, /calico/felix/v2/ (Felix liveness), /calico-rr/
      --> wake-up flag (events coalesced for ``debounce``, at most 1 s)
      --> Observed --core.reconcile--> Decision   (the same pure core as on Kubernetes)
      --> writes in the Decision's order, each a compare-and-swap (``put_if`` /
          ``delete_if``) on the mod revision the cache holds; results written through
      --> status document /calico-rr/status/<name> (CAS, only when it changed), logs

A write whose compare fails (someone changed the key since we read it) writes
nothing: the cache takes what the key holds now (etcd returns it in the same
transaction) and the pass ends.  The next pass decides again on that fresh state,
so a concurrent edit is never overwritten and our intent is re-applied on top of it.

Node health (docs/ETCD.md "Readiness"): a Calico Node is Ready while Felix's
liveness report ``/calico/felix/v2/<region>/host/<node>/status`` exists (Felix
keeps it on a lease that expires when Felix stops).  When no node has a report at
all (Felix reporting switched off, ``ReportingIntervalSecs=0``) every present node
is Ready.  etcd has no cordon: keep nodes off RR duty with incompatibleNodeLabels.

Only the leader (etcd lease on ``/calico-rr/leader``) writes; a follower keeps
warm caches.  Progress lives in etcd (labels, BGPPeers, the status transition
record), so a replacement process resumes where the last one stopped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Self

from calico_rr.adapters.etcd.cache import Entry, PrefixCache
from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.errors import Conflict
from calico_rr.adapters.etcd.kube_health import KubeNodeHealth
from calico_rr.adapters.etcd.leader import EtcdLeaderElector
from calico_rr.adapters.etcd.ports import (
    EtcdStatus,
    EtcdStore,
    EtcdWriter,
)
from calico_rr.adapters.etcd.values import KeyValue
from calico_rr.adapters.observe import Health, OperatorMetrics
from calico_rr.adapters.wiring import DatastoreOperator
from calico_rr.core import operator as core
from calico_rr.core.formats import etcd as L
from calico_rr.core.formats.etcd_nodes import node_state_from_calico
from calico_rr.core.formats.scalars import format_timestamp
from calico_rr.core.operator.settings import CONFIG_NAME
from calico_rr.errors import ConfigError, InputError
from calico_rr.model import Node

log = logging.getLogger(__name__)

#: Where calico-rr keeps its own keys: ``config/<name>``, ``status/<name>``, ``leader``.
DEFAULT_PREFIX: Final = "/calico-rr/"
CONFIG_KEY: Final = f"{DEFAULT_PREFIX}config/{CONFIG_NAME}"
STATUS_KEY: Final = f"{DEFAULT_PREFIX}status/{CONFIG_NAME}"
CALICO_PLURALS: Final = ("nodes", "bgppeers", "bgpconfigurations", "caliconodestatuses")


@dataclass(frozen=True, slots=True)
class NodeDoc:
    doc: dict[str, Any]
    state: core.NodeState


def _node_doc(kv: KeyValue) -> NodeDoc:
    doc = L.decode_document(kv.key, kv.value, kv.mod_revision)
    try:
        state = node_state_from_calico(doc)
    except InputError as exc:
        # Kept without an address, as on Kubernetes: it runs no BGP as far as we can
        # tell and is never chosen as an RR.
        log.warning("node %s ignored for BGP: %s", doc["metadata"]["name"], exc)
        labels = (doc.get("metadata") or {}).get("labels")
        node = Node(
            name=str(doc["metadata"]["name"]),
            ip=None,
            labels=dict(labels) if isinstance(labels, dict) else {},
        )
        state = core.NodeState(node)
    return NodeDoc(doc, state)


#: a cache's ``on_event(key, existed, exists)``
_OnEvent = Callable[[str, bool, bool], None]


def _document(kv: KeyValue) -> dict[str, Any]:
    return L.decode_document(kv.key, kv.value, kv.mod_revision)


# ---------------------------------------------------------------------------
# The operator
# ---------------------------------------------------------------------------


class EtcdOperator(DatastoreOperator):
    """One operator replica on etcd.  ``start()`` runs it in background threads."""

    log = log
    loop_name = "etcd-reconcile"

    def __init__(
        self,
        client: EtcdClient,
        *,
        identity: str | None = None,
        env: Mapping[str, str] | None = None,
        metrics: OperatorMetrics | None = None,
        health: Health | None = None,
        lease_duration: float = 15.0,
        renew_deadline: float | None = None,
        retry_period: float | None = None,
        leader_election: bool = True,
        kube_health: KubeNodeHealth | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        #: node health from the Kubernetes API instead of Felix's reports (optional)
        self.kube_health = kube_health
        self._init_replica(
            identity=identity,
            env=env,
            metrics=metrics,
            health=health,
            clock=clock,
            writers="etcd-write",
        )
        self.node_status_supported = True
        self.config_key = CONFIG_KEY
        self.status_key = STATUS_KEY
        if client.on_request is None:
            client.on_request = lambda op, endpoint, code: self.metrics.on_request(op, "etcd", code)
        #: (cache, prefix, name, decode, on_event): Calico's kinds, Felix's liveness
        #: reports (only their keys matter), and our own keys
        specs: list[tuple[str, str, str, Callable[[KeyValue], Any], _OnEvent]] = [
            (p, L.plural_prefix(p), p, _node_doc if p == "nodes" else _document, self._on_event)
            for p in CALICO_PLURALS
        ]
        specs.append(("felix", L.FELIX_STATUS_PREFIX, "felix", lambda kv: None, self._on_felix))
        specs.append(("own", DEFAULT_PREFIX, "calico-rr", self._decode_own, self._on_own))
        self.caches = {
            key: PrefixCache(
                client,
                prefix,
                name=name,
                decode=decode,
                on_event=on_event,
                on_relist=self.metrics.relists.labels(name).inc,
            )
            for key, prefix, name, decode, on_event in specs
        }
        self.elector: EtcdLeaderElector | None = None
        if leader_election:
            self.elector = EtcdLeaderElector(
                client,
                identity=self.identity,
                key=f"{DEFAULT_PREFIX}leader",
                lease_duration=lease_duration,
                renew_deadline=renew_deadline,
                retry_period=retry_period,
                on_change=self._on_leadership,
            )
        self.store = EtcdStore(self)
        self.writer = EtcdWriter(self)
        self.status_sink = EtcdStatus(self, self.writer)

    # -- lifecycle ---------------------------------------------------------------

    def start_caches(self) -> Self:
        """The etcd caches only (see DatastoreOperator.start_caches; the Kubernetes
        health informer is the running replica's)."""
        for cache in self.caches.values():
            cache.start()
        return self

    def _start_caches(self) -> None:
        self.start_caches()
        if self.kube_health is not None:
            self.kube_health.on_change = self._wake.set
            self.kube_health.start()

    def stop(self, *, release: bool = True) -> None:
        self._stop_running(release=release)
        if self.kube_health is not None:
            self.kube_health.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _watched(self) -> list[PrefixCache]:
        return list(self.caches.values())

    @property
    def synced(self) -> bool:
        return (self.kube_health is None or self.kube_health.synced) and super().synced

    # -- events ------------------------------------------------------------------

    def _on_event(self, key: str, existed: bool, exists: bool) -> None:
        self._wake.set()

    def _on_felix(self, key: str, existed: bool, exists: bool) -> None:
        # Felix rewrites its report every ReportingIntervalSecs: only a report
        # appearing or expiring changes readiness.
        if existed != exists and L.felix_status_host(key) is not None:
            self._wake.set()

    def _decode_own(self, kv: KeyValue) -> dict[str, Any] | None:
        if kv.key not in (self.config_key, self.status_key):
            return None  # the leader key and other replicas' configs
        value = json.loads(kv.value)
        if not isinstance(value, dict):
            raise ValueError(f"expected a JSON object, got {type(value).__name__}")
        return value

    def _on_own(self, key: str, existed: bool, exists: bool) -> None:
        if key == self.config_key:
            self._wake.set()

    # -- the observed state ----------------------------------------------------------

    def ready_nodes(self) -> frozenset[str] | None:
        """Nodes with a Felix liveness report; None when no node reports (all Ready)."""
        hosts = (L.felix_status_host(k) for k in self.caches["felix"].entries())
        return frozenset(h for h in hosts if h is not None) or None

    def docs(self, plural: str) -> dict[str, Entry]:
        """The decoded documents of ``plural`` by name."""
        prefix = L.plural_prefix(plural)
        return {
            k[len(prefix) :]: e
            for k, e in self.caches[plural].entries().items()
            if e.value is not None
        }


def request_uninstall(client: EtcdClient) -> None:
    """Mark our config as being deleted (``metadata.deletionTimestamp``, with a
    compare-and-swap): the leader runs the uninstall steps, then deletes the config
    and status keys - the etcd form of the Kubernetes finalizer."""
    while True:
        kv = client.get(CONFIG_KEY)
        if kv is None:
            raise ConfigError(f"no config at {CONFIG_KEY}: nothing to uninstall")
        doc = json.loads(kv.value)
        if not isinstance(doc, dict):
            raise ConfigError(f"{CONFIG_KEY}: not a JSON object")
        meta = dict(doc.get("metadata") or {})
        if meta.get("deletionTimestamp"):
            return
        meta["deletionTimestamp"] = format_timestamp(float(int(time.time())))
        doc["metadata"] = meta
        value = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        try:
            client.put_if(CONFIG_KEY, value, kv.mod_revision)
            return
        except Conflict:
            continue


def uninstall(
    client: EtcdClient,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    poll: float = 0.5,
) -> str:
    """``calico-rr uninstall --datastore-type etcdv3``: mark the config deleted, then
    drive the uninstall steps to the end in this process (compare-and-swap makes it
    safe next to a running leader doing the same).  Returns a summary line."""
    request_uninstall(client)
    op = EtcdOperator(client, env=env or {}, leader_election=False)
    op.start_caches()
    try:
        return op.drive_uninstall(
            lambda: op.caches["own"].get(op.config_key) is None, timeout, poll
        )
    finally:
        op.stop_caches()
