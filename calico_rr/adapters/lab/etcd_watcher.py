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
from collections.abc import Iterable, Mapping
from typing import Any

from calico_rr.adapters.etcd.cache import PrefixCache
from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.errors import Conflict
from calico_rr.adapters.etcd.values import KeyValue
from calico_rr.adapters.lab.agent import LabAgent
from calico_rr.adapters.lab.watcher import DatastoreWatcher
from calico_rr.core.bgp.calico_version import CalicoVersion
from calico_rr.core.formats.etcd import RESOURCE_ROOT, decode_document, encode_document
from calico_rr.errors import InputError

_STATE_KINDS = frozenset({"Node", "BGPPeer", "BGPConfiguration"})


class EtcdWatcher(DatastoreWatcher):
    where = "etcd"
    apply_first_sync = True

    def __init__(
        self, agent: LabAgent, client: EtcdClient, *, calico: CalicoVersion | None = None
    ) -> None:
        super().__init__(agent, calico=calico)
        self.client = client
        self.cache = PrefixCache(
            client,
            RESOURCE_ROOT,
            name="lab",
            decode=self._decode,
            on_event=lambda _key, _existed, _exists: self._dirty.set(),
        )
        self.synced = self.cache.synced

    def _start_caches(self) -> None:
        self.cache.start()

    def _stop_caches(self) -> None:
        self.cache.stop()

    def _caches_synced(self) -> bool:
        return self.synced.is_set()

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

    def _node_statuses(self) -> Iterable[tuple[str, Mapping[str, Any]]]:
        return [
            (key, e.value)
            for key, e in self.cache.entries().items()
            if e.value is not None and e.value.get("kind") == "CalicoNodeStatus"
        ]

    def _write_status(self, key: str, doc: Mapping[str, Any], status: dict[str, Any]) -> bool:
        """Compare-and-swap on the revision the document was decoded at
        (``decode_document`` keeps it in ``metadata.resourceVersion``)."""
        new = json.loads(json.dumps(doc))
        new["status"] = status
        _, value = encode_document(new)
        try:
            self.client.put_if(key, value, int(doc["metadata"]["resourceVersion"]))
        except Conflict:
            return False  # someone else wrote it: the watch brings the new revision
        return True
