"""The lab agent fed from Calico's etcd datastore (etcdv3 mode) instead of the
Kubernetes API: what calico-node does on a cluster that keeps Calico's data in etcd.

One LIST of ``/calico/resources/v3/projectcalico.org/`` then a WATCH from the
next revision; a compacted revision re-lists.  Calico Nodes (``spec.bgp``),
BGPPeers and BGPConfigurations go to :class:`LabAgent`; every CalicoNodeStatus
naming a lab node gets that node's BIRD session states in its ``status``,
written with compare-and-swap on the document's mod revision (a concurrent
writer wins and the report is retried on the next round).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from calico_rr.adapters.etcd.client import (
    Compacted,
    Conflict,
    EtcdClient,
    EtcdError,
    EventType,
    WatchEvent,
)
from calico_rr.adapters.lab.agent import LabAgent, bgp_status
from calico_rr.adapters.lab.birdctl import BirdError
from calico_rr.adapters.lab.net import LabError
from calico_rr.core.bgp.calico_version import CalicoVersion
from calico_rr.core.bgp.resources import parse_resources
from calico_rr.core.formats.etcd import RESOURCE_ROOT, decode_document, encode_document
from calico_rr.core.formats.kube import format_timestamp
from calico_rr.errors import InputError

__all__ = ["EtcdWatcher"]

log = logging.getLogger(__name__)

_STATE_KINDS = frozenset({"Node", "BGPPeer", "BGPConfiguration"})


class EtcdWatcher:
    def __init__(
        self,
        agent: LabAgent,
        client: EtcdClient,
        *,
        coalesce: float = 0.05,
        status_period: float = 1.0,
        calico: CalicoVersion | None = None,
    ) -> None:
        self.agent = agent
        #: the Calico release whose reading the verifier's view follows (None: newest)
        self.calico = calico
        self.client = client
        self.coalesce = coalesce
        self.status_period = status_period
        self.errors: list[str] = []
        self.applied = 0
        self.lists = 0
        self.status_writes = 0
        self.synced = threading.Event()
        self._docs: dict[str, tuple[int, dict[str, Any]]] = {}  # key -> (mod rev, doc)
        self._lock = threading.Lock()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._watch: Any = None
        self._threads: list[threading.Thread] = []
        self._status_sent: dict[str, Any] = {}

    def start(self) -> EtcdWatcher:
        for target in (self._watch_loop, self._apply_loop, self._status_loop):
            t = threading.Thread(target=target, name=f"lab-etcd-{target.__name__}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        watch = self._watch
        if watch is not None:
            watch.close()
        for t in self._threads:
            t.join(timeout=10)

    # -- datastore ------------------------------------------------------------

    def _note(self, message: str) -> None:
        if message not in self.errors:
            self.errors.append(message)
        log.warning("lab etcd watcher: %s", message)

    def _store(self, key: str, value: bytes, revision: int) -> None:
        try:
            doc = decode_document(key, value, revision)
        except InputError as exc:  # calico-node skips what it cannot read
            self._note(str(exc))
            with self._lock:
                self._docs.pop(key, None)
            return
        with self._lock:
            self._docs[key] = (revision, doc)

    def _list(self) -> int:
        result = self.client.list(RESOURCE_ROOT)
        self.lists += 1
        with self._lock:
            self._docs.clear()
        for kv in result.kvs:
            self._store(kv.key, kv.value, kv.mod_revision)
        self.synced.set()
        self._dirty.set()
        return result.revision

    def _handle(self, event: WatchEvent) -> None:
        if event.type is EventType.DELETE:
            with self._lock:
                self._docs.pop(event.kv.key, None)
        else:
            self._store(event.kv.key, event.kv.value, event.kv.mod_revision)
        self._dirty.set()

    def _watch_loop(self) -> None:
        revision = 0
        while not self._stop.is_set():
            try:
                if revision == 0:
                    revision = self._list()
                self._watch = self.client.watch(RESOURCE_ROOT, revision + 1)
                for item in self._watch:
                    if self._stop.is_set():
                        return
                    revision = max(revision, getattr(item, "revision", revision))
                    if isinstance(item, WatchEvent):
                        self._handle(item)
            except Compacted:
                revision = 0  # re-list: the change history we needed is gone
            except EtcdError as exc:
                if self._stop.is_set():
                    return
                self._note(f"watch: {exc}")
                self._stop.wait(0.5)

    def documents(self) -> list[dict[str, Any]]:
        with self._lock:
            return [doc for _, doc in self._docs.values() if doc.get("kind") in _STATE_KINDS]

    def _apply_loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.is_set():
                return
            time.sleep(self.coalesce)
            self._dirty.clear()
            if not self.synced.is_set():
                continue
            try:
                state = parse_resources(self.documents(), where="etcd", calico=self.calico).state
                self.agent.apply(state)
                self.applied += 1
            except (InputError, LabError, BirdError) as exc:
                self._note(str(exc))

    # -- status -----------------------------------------------------------------

    def _status_loop(self) -> None:
        while not self._stop.wait(self.status_period):
            try:
                self.report_status()
            except Exception as exc:  # keep reporting
                self._note(f"status report: {exc!r}")

    def report_status(self) -> int:
        """Session states into every CalicoNodeStatus naming a lab node (CAS)."""
        lab_nodes = {n.name: n for n in self.agent.lab.nodes}
        with self._lock:
            statuses = [
                (key, rev, doc)
                for key, (rev, doc) in self._docs.items()
                if doc.get("kind") == "CalicoNodeStatus"
            ]
        writes = 0
        for key, rev, doc in statuses:
            node = lab_nodes.get(str((doc.get("spec") or {}).get("node") or ""))
            if node is None:
                continue
            bgp = bgp_status(self.agent, node)
            if self._status_sent.get(key) == bgp:
                continue
            new = json.loads(json.dumps(doc))
            new["status"] = {"lastUpdated": format_timestamp(time.time()), "bgp": bgp}
            _, value = encode_document(new)
            try:
                self.client.put_if(key, value, rev)
            except Conflict:
                continue  # someone else wrote it: the watch brings the new revision
            self._status_sent[key] = bgp
            writes += 1
        self.status_writes += writes
        return writes
