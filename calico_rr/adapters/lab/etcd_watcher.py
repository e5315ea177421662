"""The lab agent fed from Calico's etcd datastore (etcdv3 mode) instead of the
Kubernetes API: what calico-node does on a cluster that keeps Calico's data in etcd.

The documents under ``/calico/resources/v3/projectcalico.org/`` are kept by a
:class:`~calico_rr.adapters.etcd.cache.PrefixCache`, the operator's own cache (one
LIST, then a WATCH from the next revision; a compacted revision re-lists).
Calico Nodes (``spec.bgp``), BGPPeers and BGPConfigurations go to
:class:`LabAgent`; every CalicoNodeStatus
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

from calico_rr.adapters.etcd.cache import PrefixCache
from calico_rr.adapters.etcd.client import Conflict, EtcdClient, KeyValue
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
        self.status_writes = 0
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._status_sent: dict[str, Any] = {}
        self.cache = PrefixCache(
            client,
            RESOURCE_ROOT,
            name="lab",
            decode=self._decode,
            on_event=lambda _key, _existed, _exists: self._dirty.set(),
        )
        self.synced = self.cache.synced

    @property
    def lists(self) -> int:
        return self.cache.lists

    def start(self) -> EtcdWatcher:
        self.cache.start()
        for target in (self._apply_loop, self._status_loop):
            t = threading.Thread(target=target, name=f"lab-etcd-{target.__name__}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        self.cache.stop()
        for t in self._threads:
            t.join(timeout=10)

    # -- datastore ------------------------------------------------------------

    def _note(self, message: str) -> None:
        if message not in self.errors:
            self.errors.append(message)
        log.warning("lab etcd watcher: %s", message)

    def _decode(self, kv: KeyValue) -> dict[str, Any]:
        try:
            return decode_document(kv.key, kv.value, kv.mod_revision)
        except InputError as exc:  # calico-node skips what it cannot read
            self._note(str(exc))
            raise

    def documents(self) -> list[dict[str, Any]]:
        return [
            e.value
            for e in self.cache.entries().values()
            if e.value is not None and e.value.get("kind") in _STATE_KINDS
        ]

    def _apply_loop(self) -> None:
        while not self._stop.is_set():
            # the first state once synced (an empty datastore has no event), then
            # each change
            if not self._dirty.wait(0.2) and self.applied:
                continue
            if self._stop.is_set():
                return
            if not self.synced.is_set():
                continue
            time.sleep(self.coalesce)
            self._dirty.clear()
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
        statuses = [
            (key, e.kv.mod_revision, e.value)
            for key, e in self.cache.entries().items()
            if e.value is not None and e.value.get("kind") == "CalicoNodeStatus"
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
