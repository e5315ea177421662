"""The etcd datastore's ports for the one controller (adapters/controller.py):
prefix caches in, compare-and-swap writes fenced on the leader's lease out, the
status document ``<prefix>status/<name>`` and events as log lines.

A write whose compare fails writes nothing: the cache takes what the key holds now
(etcd returns it in the same transaction) and :class:`PassEnded` ends the pass, so
the next pass decides again on that fresh state."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Protocol

from calico_rr.adapters.controller import ConfigRecord, NotLeader, PassEnded
from calico_rr.adapters.etcd.cache import Entry, PrefixCache
from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.errors import Conflict, EtcdError, Fenced
from calico_rr.adapters.etcd.kube_health import KubeNodeHealth
from calico_rr.adapters.etcd.leader import EtcdLeaderElector
from calico_rr.adapters.etcd.values import Fence
from calico_rr.adapters.observe import Health
from calico_rr.adapters.runtime import LoopStats
from calico_rr.core import operator as core
from calico_rr.core.formats import etcd as L
from calico_rr.core.formats import etcd_nodes
from calico_rr.core.planning.config import ApiGroup
from calico_rr.errors import ConfigError, InputError
from calico_rr.model import MANAGED_BY_LABEL, PREFIX

log = logging.getLogger(__name__)

API_GROUP: ApiGroup = "projectcalico.org/v3"


class Host(Protocol):
    """What the ports use of the operator that holds them (etcd/operator.py)."""

    client: EtcdClient
    caches: dict[str, PrefixCache]
    config_key: str
    status_key: str
    elector: EtcdLeaderElector | None
    kube_health: KubeNodeHealth | None
    node_status_supported: bool
    health: Health
    stats: LoopStats
    clock: Callable[[], float]

    @property
    def is_leader(self) -> bool: ...

    def ready_nodes(self) -> frozenset[str] | None: ...

    def docs(self, plural: str) -> dict[str, Entry]: ...

    def _count(self, kind: str) -> None: ...

    def _requeue(self, delay: float) -> None: ...


def _ours(key: str) -> bool:
    return key == MANAGED_BY_LABEL or key.startswith((f"{PREFIX}/", f"prev.{PREFIX}/"))


def merge_foreign_metadata(
    doc: dict[str, Any], existing: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``doc`` (our object as ``core.formats.etcd.managed_document`` made it) keeping
    the labels and annotations someone else added to the stored object: like
    server-side apply, we own our keys (``calico-rr.io/*``, managed-by) and the
    spec; other keys are the user's and stay."""
    if existing is None:
        return doc
    old = existing.get("metadata") or {}
    meta = dict(doc["metadata"])
    for part in ("labels", "annotations"):
        foreign = {k: v for k, v in (old.get(part) or {}).items() if not _ours(k)}
        if foreign:
            meta[part] = {**foreign, **(meta.get(part) or {})}
    return {**doc, "metadata": meta}


class EtcdStore:
    api_group: ApiGroup = API_GROUP
    errors: tuple[type[Exception], ...] = (EtcdError,)

    def __init__(self, op: Host) -> None:
        self.op = op

    def config(self) -> ConfigRecord | None:
        key = self.op.config_key
        entry = self.op.caches["own"].get(key)
        if entry is None:
            return None
        doc = entry.value
        if not isinstance(doc, dict):
            raise ConfigError(f"{key}: not a JSON object")
        meta = doc.get("metadata") or {}
        # The generation is the key's etcd ``version`` (writes since it was created).
        return ConfigRecord(doc.get("spec"), entry.kv.version, bool(meta.get("deletionTimestamp")))

    def no_config(self) -> str:
        return f"no config at {self.op.config_key}: idle"

    def observed(self, transition: Mapping[str, Any] | None) -> core.Observed:
        op = self.op
        kube = op.kube_health
        ready = op.ready_nodes() if kube is None else None
        nodes: dict[str, core.NodeState] = {}
        for name, entry in op.docs("nodes").items():
            state: core.NodeState = entry.value.state
            if kube is not None:
                k8s = kube.get(etcd_nodes.k8s_node_name(entry.value.doc))
                state = replace(state, node=etcd_nodes.with_kube_health(state.node, k8s))
            elif ready is not None and name not in ready:
                state = replace(state, node=replace(state.node, conditions={"Ready": "False"}))
            nodes[name] = state
        peers = {n: e.value for n, e in op.docs("bgppeers").items() if L.is_managed(e.value)}
        config = op.docs("bgpconfigurations").get("default")
        try:
            mesh = L.mesh_enabled(config.value if config is not None else None)
        except InputError as exc:
            log.warning("%s; taking the mesh as on", exc)
            mesh = True
        statuses: dict[str, core.NodeBGPStatus] = {}
        cns_names: set[str] = set()
        for name, entry in op.docs("caliconodestatuses").items():
            if L.is_managed(entry.value):
                cns_names.add(name)
                node, status = L.node_status_from_calico(entry.value)
                statuses[node] = status
        return core.Observed(
            nodes=nodes,
            peers=peers,
            mesh_enabled=mesh,
            transition=transition,
            node_status=statuses,
            node_status_objects=frozenset(cns_names),
            node_status_supported=op.node_status_supported,
            now=op.clock(),
        )

    def plain_peer_count(self) -> int:
        return sum(
            1
            for e in self.op.docs("bgppeers").values()
            if L.is_managed(e.value)
            and not {core.COMPANION_LABEL, core.BRIDGE_LABEL}
            & set((e.value.get("metadata") or {}).get("labels") or {})
        )


class EtcdWriter:
    """Compare-and-swap on the mod revision the cache holds, fenced on our lease."""

    def __init__(self, op: Host) -> None:
        self.op = op

    # -- leadership --------------------------------------------------------------------

    def check_leader(self) -> None:
        if not self.op.is_leader:
            raise NotLeader("lost leadership: writing nothing more")

    def fence(self) -> Fence | None:
        """The condition every write carries: our leader key under our lease.  Our
        elector may believe it leads for up to renew_deadline after etcd gave the
        key to another replica (a pause, a partition); etcd itself refuses then."""
        elector = self.op.elector
        if elector is None:
            return None
        lease = elector.lease_id
        if lease is None:
            raise NotLeader("no leader lease: writing nothing")
        return Fence(elector.key, lease)

    def fenced(self, exc: Fenced) -> NotLeader:
        log.warning("%s; stepping down", exc)
        if self.op.elector is not None:
            self.op.elector.fenced()
        # counted once stepped down: whoever sees the count sees a follower
        self.op.stats.fenced += 1
        return NotLeader(str(exc))

    @staticmethod
    def take_current(cache: PrefixCache, entry: Entry | None, exc: Conflict) -> None:
        """Take what the key holds now (read in the failed transaction)."""
        if exc.current is not None:
            cache.store(exc.current)
        else:
            cache.deleted(exc.key, (entry.kv.mod_revision if entry else 0) + 1)

    # -- writes --------------------------------------------------------------------------

    def put_value(self, cache: PrefixCache, key: str, value: bytes, entry: Entry | None) -> None:
        """Compare-and-swap ``key`` on ``entry``'s mod revision, fenced, through
        ``cache``; a :class:`Conflict` leaves what the key holds now in ``cache``."""
        self.check_leader()
        revision = entry.kv.mod_revision if entry else 0
        try:
            kv = self.op.client.put_if(key, value, revision, fence=self.fence())
        except Fenced as exc:
            raise self.fenced(exc) from None
        except Conflict as exc:
            self.take_current(cache, entry, exc)
            raise
        cache.store(kv)

    def put(self, cache: PrefixCache, doc: dict[str, Any], entry: Entry | None) -> None:
        key, value = L.encode_document(doc)
        try:
            self.put_value(cache, key, value, entry)
        except Conflict as exc:
            raise PassEnded(str(exc)) from None
        self.op._count(str(doc["kind"]).lower())
        self.op.health.beat()

    def delete(self, cache: PrefixCache, entry: Entry, *, count: str = "") -> bool:
        """Delete ``entry``'s key if it is unchanged; False when it changed. A
        delete that happened is counted under ``count`` (when given)."""
        self.check_leader()
        key = entry.kv.key
        try:
            cache.deleted(
                key, self.op.client.delete_if(key, entry.kv.mod_revision, fence=self.fence())
            )
        except Fenced as exc:
            raise self.fenced(exc) from None
        except Conflict as exc:
            self.take_current(cache, entry, exc)
            return exc.current is None  # gone already is what we wanted
        if count:
            self.op._count(count)
        return True

    def prepare(self, config: ConfigRecord) -> None:
        """Nothing: on etcd the config's deletion timestamp is the finalizer."""

    def _put_managed(self, plural: str, obj: dict[str, Any], conflicts: list[str]) -> None:
        cache = self.op.caches[plural]
        key = L.resource_key(plural, str(obj["metadata"]["name"]))
        entry = cache.get(key)
        existing = entry.value if entry is not None else None
        try:
            if entry is not None and existing is None:
                raise L.OwnershipConflict("exists and does not decode; it is left alone", obj=key)
            doc = L.managed_document(obj, existing, uid=str(uuid.uuid4()), now=self.op.clock())
        except L.OwnershipConflict as exc:
            conflicts.append(str(exc))
            return
        self.put(cache, merge_foreign_metadata(doc, existing), entry)

    def _delete_managed(self, plural: str, name: str, conflicts: list[str]) -> None:
        cache = self.op.caches[plural]
        key = L.resource_key(plural, name)
        entry = cache.get(key)
        if entry is None:
            return
        if not L.is_managed(entry.value):
            conflicts.append(f"{plural}/{name}: not created by calico-rr; not deleted")
            return
        if not self.delete(cache, entry, count=L.KINDS[plural].lower() + "-delete"):
            raise PassEnded(f"{plural}/{name} changed while being deleted")

    def apply_peer(self, obj: dict[str, Any], conflicts: list[str]) -> None:
        self._put_managed("bgppeers", obj, conflicts)

    def delete_peer(self, name: str, conflicts: list[str]) -> None:
        self._delete_managed("bgppeers", name, conflicts)

    def apply_node_status(self, obj: dict[str, Any], conflicts: list[str]) -> None:
        self._put_managed("caliconodestatuses", obj, conflicts)

    def delete_node_status(self, name: str, conflicts: list[str]) -> None:
        self._delete_managed("caliconodestatuses", name, conflicts)

    def apply_node(self, change: core.NodeApply, conflicts: list[str]) -> None:
        cache = self.op.caches["nodes"]
        key = L.resource_key("nodes", change.name)
        entry = cache.get(key)
        if entry is None or entry.value is None:
            return  # the node left meanwhile
        doc: dict[str, Any] = entry.value.doc
        if change.uid is not None and (doc.get("metadata") or {}).get("uid") != change.uid:
            return  # another node of the same name now: the next pass decides for it
        try:
            new = etcd_nodes.apply_node(doc, change.labels, change.annotations)
        except L.OwnershipConflict as exc:
            conflicts.append(str(exc))
            return
        try:
            self.put(cache, new, entry)
        except PassEnded as exc:
            if isinstance(exc, NotLeader) or cache.get(key) is not None:
                raise
            # deleted meanwhile: nothing to do for it

    def set_mesh(self, mesh: bool) -> None:
        cache = self.op.caches["bgpconfigurations"]
        entry = cache.get(L.resource_key("bgpconfigurations", "default"))
        existing = entry.value if entry is not None else None
        doc = L.mesh_document(existing, mesh, uid=str(uuid.uuid4()), now=self.op.clock())
        self.put(cache, doc, entry)

    def finish_uninstall(self) -> bool:
        """The status first, then the config: the config's deletion says "done", and
        once it is gone no pass runs that could still delete a status left behind."""
        cache = self.op.caches["own"]
        for key in (self.op.status_key, self.op.config_key):
            entry = cache.get(key)
            if entry is not None and not self.delete(cache, entry):
                return False  # changed meanwhile: the next pass retries
        return True


class EtcdStatus:
    """The status document (compare-and-swap on its mod revision); events are log
    lines, as etcd has no Events."""

    generation_in_conditions = False

    def reason(self, text: str) -> str:
        """Condition reasons as the phases read (no CamelCase rule on etcd)."""
        return text

    def __init__(self, op: Host, writer: EtcdWriter) -> None:
        self.op = op
        self.writer = writer

    def current(self) -> dict[str, Any]:
        return _status_of(self.op.caches["own"].get(self.op.status_key))

    def write(self, fields: Mapping[str, Any], *, end_pass: bool) -> None:
        cache = self.op.caches["own"]
        entry = cache.get(self.op.status_key)
        new = {k: v for k, v in {**_status_of(entry), **fields}.items() if v is not None}
        value = json.dumps(new, separators=(",", ":"), sort_keys=True).encode()
        try:
            self.writer.put_value(cache, self.op.status_key, value, entry)
        except Conflict as exc:
            if end_pass:
                raise PassEnded(str(exc)) from None
            log.info("status changed meanwhile (%s); written on the next pass", exc)
            self.op._requeue(0.0)
            return
        self.op._count("status")

    def event(self, etype: str, reason: str, message: str) -> None:
        level = logging.WARNING if etype == "Warning" else logging.INFO
        log.log(level, message, extra={"reason": reason, "event": etype})


def _status_of(entry: Entry | None) -> dict[str, Any]:
    return dict(entry.value) if entry is not None and isinstance(entry.value, dict) else {}
