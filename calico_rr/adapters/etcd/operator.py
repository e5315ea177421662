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

import contextlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Final

from calico_rr.adapters.etcd.client import (
    Compacted,
    Conflict,
    EtcdClient,
    EtcdError,
    EventType,
    Fence,
    Fenced,
    KeyValue,
    Watch,
    WatchEvent,
)
from calico_rr.adapters.etcd.kube_health import KubeNodeHealth
from calico_rr.adapters.etcd.leader import EtcdLeaderElector
from calico_rr.adapters.observe import Health, OperatorMetrics
from calico_rr.adapters.runtime import WRITE_WORKERS, ReconcileLoop, conditions
from calico_rr.core.formats import etcd as L
from calico_rr.core.formats.kube import format_timestamp
from calico_rr.core.operator import reconcile as core
from calico_rr.core.operator.settings import CONFIG_NAME, settings_from_spec
from calico_rr.core.planning.config import ApiGroup
from calico_rr.errors import ConfigError, InputError
from calico_rr.model import MANAGED_BY_LABEL, PREFIX, Node

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PREFIX",
    "EtcdOperator",
    "NodeDoc",
    "PrefixCache",
    "merge_foreign_metadata",
    "request_uninstall",
    "uninstall",
]

#: Where calico-rr keeps its own keys: ``config/<name>``, ``status/<name>``, ``leader``.
DEFAULT_PREFIX: Final = "/calico-rr/"
API_GROUP: Final[ApiGroup] = "projectcalico.org/v3"
CALICO_PLURALS: Final = ("nodes", "bgppeers", "bgpconfigurations", "caliconodestatuses")


# ---------------------------------------------------------------------------
# Caches: list once, then watch
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    kv: KeyValue
    #: the decoded value (None: it did not decode; the key is still known for CAS)
    value: Any


@dataclass(frozen=True, slots=True)
class NodeDoc:
    doc: dict[str, Any]
    state: core.NodeState


class PrefixCache:
    """Every key under ``prefix``: one ``list`` snapshot at revision R, then a watch
    from R + 1.  A broken watch resumes at its ``next_revision``; a compacted one
    lists again.  The newest mod revision of a key wins, so write-through results
    (:meth:`store`, :meth:`deleted`) and late watch events can arrive in any order.
    ``on_event(key, existed, exists)`` is called after every change."""

    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        *,
        name: str,
        decode: Callable[[KeyValue], Any],
        on_event: Callable[[str, bool, bool], None] | None = None,
        on_relist: Callable[[], None] | None = None,
        backoff: float = 0.2,
    ) -> None:
        self.client = client
        self.on_relist = on_relist
        self.prefix = prefix
        self.name = name
        self.decode = decode
        self.on_event = on_event
        self.backoff = backoff
        self.synced = threading.Event()
        self.lists = 0
        self._entries: dict[str, Entry] = {}
        #: key -> revision it was deleted at (a lower bound): older PUTs are stale
        self._tombstones: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watch: Watch | None = None
        self._thread: threading.Thread | None = None

    # -- reading ---------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        with self._lock:
            return self._entries.get(key)

    def entries(self) -> dict[str, Entry]:
        with self._lock:
            return dict(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- changes ---------------------------------------------------------------

    def store(self, kv: KeyValue) -> None:
        """A key as written or read now (write-through); ignored if not newer."""
        self._apply(kv, deleted=False)

    def deleted(self, key: str, revision: int) -> None:
        """``key`` was deleted at (or after) ``revision``."""
        self._apply(KeyValue(key, mod_revision=revision), deleted=True)

    def _apply(self, kv: KeyValue, *, deleted: bool) -> None:
        key, rev = kv.key, kv.mod_revision
        with self._lock:
            old = self._entries.get(key)
            if old is not None and old.kv.mod_revision >= rev:
                return
            tomb = self._tombstones.get(key)
            if tomb is not None and tomb >= rev:
                return
            if deleted:
                if old is None:
                    self._tombstones[key] = rev
                    return
                del self._entries[key]
                self._tombstones[key] = rev
            else:
                self._tombstones.pop(key, None)
                self._entries[key] = Entry(kv, self._decode(kv))
        if self.on_event is not None:
            self.on_event(key, old is not None, not deleted)

    def _decode(self, kv: KeyValue) -> Any:
        try:
            return self.decode(kv)
        except (InputError, ValueError) as exc:
            log.warning("ignoring etcd key %s: %s", kv.key, exc)
            return None

    def _relist(self) -> int:
        result = self.client.list(self.prefix)
        self.lists += 1
        fresh = {kv.key: kv for kv in result.kvs}
        changed: list[tuple[str, bool, bool]] = []
        with self._lock:
            for key, cached in list(self._entries.items()):
                if key not in fresh and cached.kv.mod_revision <= result.revision:
                    del self._entries[key]
                    self._tombstones[key] = result.revision
                    changed.append((key, True, False))
            for key, kv in fresh.items():
                old = self._entries.get(key)
                if old is not None and old.kv.mod_revision >= kv.mod_revision:
                    continue
                self._entries[key] = Entry(kv, self._decode(kv))
                self._tombstones.pop(key, None)
                changed.append((key, old is not None, True))
            self._tombstones = {k: r for k, r in self._tombstones.items() if r > result.revision}
        if self.on_event is not None:
            for key, existed, exists in changed:
                self.on_event(key, existed, exists)
        return result.revision

    # -- the thread ------------------------------------------------------------

    def start(self) -> PrefixCache:
        self._thread = threading.Thread(target=self._run, name=f"etcd-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        w = self._watch
        if w is not None:
            w.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)

    def _run(self) -> None:
        next_rev = 0
        failures = 0
        while not self._stop.is_set():
            w: Watch | None = None
            try:
                if next_rev == 0:
                    next_rev = self._relist() + 1
                    self.synced.set()
                w = self.client.watch(self.prefix, next_rev)
                self._watch = w
                if self._stop.is_set():
                    w.close()
                failures = 0
                for item in w:
                    if isinstance(item, WatchEvent):
                        self._apply(item.kv, deleted=item.type == EventType.DELETE)
                    next_rev = w.next_revision
                next_rev = max(next_rev, w.next_revision)
            except Compacted as exc:
                log.warning("%s: %s; listing again", self.name, exc)
                next_rev = 0
                if self.on_relist is not None:
                    self.on_relist()
            except EtcdError as exc:
                if self._stop.is_set():
                    break
                if w is not None:
                    next_rev = max(next_rev, w.next_revision)
                failures += 1
                delay = min(5.0, self.backoff * 2 ** min(failures, 5))
                log.warning("%s watch: %s; again in %.1fs", self.name, exc, delay)
                self._stop.wait(delay)
            except Exception:  # a bug must not stop the cache for good
                log.exception("%s watch crashed", self.name)
                next_rev = 0
                self._stop.wait(1.0)
            finally:
                self._watch = None


# ---------------------------------------------------------------------------
# Documents
# ---------------------------------------------------------------------------


def _ours(key: str) -> bool:
    return key == MANAGED_BY_LABEL or key.startswith((f"{PREFIX}/", f"prev.{PREFIX}/"))


def merge_foreign_metadata(
    doc: dict[str, Any], existing: Mapping[str, Any] | None
) -> dict[str, Any]:
    """``doc`` (our object as ``etcd_layout.managed_document`` made it) keeping the
    labels and annotations someone else added to the stored object: like
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


def _json_object(kv: KeyValue) -> dict[str, Any] | None:
    value = json.loads(kv.value)
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _node_doc(kv: KeyValue) -> NodeDoc:
    doc = L.decode_document(kv.key, kv.value, kv.mod_revision)
    try:
        state = L.node_state_from_calico(doc)
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


def _document(kv: KeyValue) -> dict[str, Any]:
    return L.decode_document(kv.key, kv.value, kv.mod_revision)


class _PassEnded(Exception):
    """A compare-and-swap failed: the cache holds the fresh value; decide again."""


class _NotLeader(_PassEnded):
    """Leadership was lost during the pass: write nothing more."""


# ---------------------------------------------------------------------------
# The operator
# ---------------------------------------------------------------------------


class EtcdOperator(ReconcileLoop):
    """One operator replica on etcd.  ``start()`` runs it in background threads."""

    log = log

    def __init__(
        self,
        client: EtcdClient,
        *,
        identity: str | None = None,
        env: Mapping[str, str] | None = None,
        metrics: OperatorMetrics | None = None,
        health: Health | None = None,
        config_name: str = CONFIG_NAME,
        prefix: str = DEFAULT_PREFIX,
        lease_duration: float = 15.0,
        leader_election: bool = True,
        node_status_supported: bool = True,
        kube_health: KubeNodeHealth | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        #: node health from the Kubernetes API instead of Felix's reports (optional)
        self.kube_health = kube_health
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}"
        self.env = dict(os.environ if env is None else env)
        self.metrics = metrics or OperatorMetrics()
        self.health = health or Health()
        self.clock = clock
        self.node_status_supported = node_status_supported
        self.prefix = prefix if prefix.endswith("/") else prefix + "/"
        self.config_key = f"{self.prefix}config/{config_name}"
        self.status_key = f"{self.prefix}status/{config_name}"
        self._init_loop()
        self._pool = ThreadPoolExecutor(max_workers=WRITE_WORKERS, thread_name_prefix="etcd-write")
        if client.on_request is None:
            client.on_request = lambda op, endpoint, code: self.metrics.on_request(op, "etcd", code)
        self.caches: dict[str, PrefixCache] = {}
        for plural in CALICO_PLURALS:
            self.caches[plural] = PrefixCache(
                client,
                L.plural_prefix(plural),
                name=plural,
                decode=_node_doc if plural == "nodes" else _document,
                on_event=self._on_event,
                on_relist=self.metrics.relists.labels(plural).inc,
            )
        self.caches["felix"] = PrefixCache(
            client,
            L.FELIX_STATUS_PREFIX,
            name="felix",
            decode=lambda kv: None,
            on_event=self._on_felix,
            on_relist=self.metrics.relists.labels("felix").inc,
        )
        self.caches["own"] = PrefixCache(
            client,
            self.prefix,
            name="calico-rr",
            decode=self._decode_own,
            on_event=self._on_own,
            on_relist=self.metrics.relists.labels("calico-rr").inc,
        )
        self.elector: EtcdLeaderElector | None = None
        if leader_election:
            self.elector = EtcdLeaderElector(
                client,
                identity=self.identity,
                key=f"{self.prefix}leader",
                lease_duration=lease_duration,
                on_change=self._on_leadership,
            )

    # -- lifecycle ---------------------------------------------------------------

    def start(self) -> EtcdOperator:
        for cache in self.caches.values():
            cache.start()
        if self.kube_health is not None:
            self.kube_health.on_change = self._wake.set
            self.kube_health.start()
        if self.elector is not None:
            self.elector.start()
        self._start_loop("etcd-reconcile")
        return self

    def stop(self, *, release: bool = True) -> None:
        self._stop_loop()
        if self.elector is not None:
            self.elector.stop(release=release)
        for cache in self.caches.values():
            cache.stop()
        if self.kube_health is not None:
            self.kube_health.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def kill(self) -> None:
        """Stop as a crash would: the leader lease is not released."""
        self.stop(release=False)

    @property
    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader

    @property
    def synced(self) -> bool:
        kube = self.kube_health is None or self.kube_health.synced
        return kube and all(c.synced.is_set() for c in self.caches.values())

    def lists(self) -> int:
        return sum(c.lists for c in self.caches.values())

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
        return _json_object(kv)

    def _on_own(self, key: str, existed: bool, exists: bool) -> None:
        if key == self.config_key:
            self._wake.set()

    def _on_leadership(self, leader: bool) -> None:
        self.metrics.leader.set(1 if leader else 0)
        self._wake.set()

    def _configured_debounce(self) -> float:
        spec, _ = self.operator_config()
        return settings_from_spec(spec, env=self.env, api_group=API_GROUP).debounce

    # -- the observed state ----------------------------------------------------------

    def operator_config(self) -> tuple[Any, int]:
        """(spec, generation) of our config document; LookupError when absent.
        The generation is the key's etcd ``version`` (writes since it was created)."""
        entry = self.caches["own"].get(self.config_key)
        if entry is None:
            raise LookupError(self.config_key)
        doc = entry.value
        if not isinstance(doc, dict):
            raise ConfigError(f"{self.config_key}: not a JSON object")
        return doc.get("spec"), entry.kv.version

    def ready_nodes(self) -> frozenset[str] | None:
        """Nodes with a Felix liveness report; None when no node reports (all Ready)."""
        hosts = {L.felix_status_host(k) for k in self.caches["felix"].entries()}
        hosts.discard(None)
        return frozenset(h for h in hosts if h is not None) or None

    def _docs(self, plural: str) -> dict[str, Entry]:
        prefix = L.plural_prefix(plural)
        return {
            k[len(prefix) :]: e
            for k, e in self.caches[plural].entries().items()
            if e.value is not None
        }

    def observed(self, transition: Mapping[str, Any] | None) -> core.Observed:
        kube = self.kube_health
        ready = self.ready_nodes() if kube is None else None
        nodes: dict[str, core.NodeState] = {}
        for name, entry in self._docs("nodes").items():
            state: core.NodeState = entry.value.state
            if kube is not None:
                k8s = kube.get(L.k8s_node_name(entry.value.doc))
                state = replace(state, node=L.with_kube_health(state.node, k8s))
            elif ready is not None and name not in ready:
                state = replace(state, node=replace(state.node, conditions={"Ready": "False"}))
            nodes[name] = state
        peers = {n: e.value for n, e in self._docs("bgppeers").items() if L.is_managed(e.value)}
        config = self._docs("bgpconfigurations").get("default")
        try:
            mesh = L.mesh_enabled(config.value if config is not None else None)
        except InputError as exc:
            log.warning("%s; taking the mesh as on", exc)
            mesh = True
        statuses: dict[str, core.NodeBGPStatus] = {}
        cns_names: set[str] = set()
        for name, entry in self._docs("caliconodestatuses").items():
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
            node_status_supported=self.node_status_supported,
            now=self.clock(),
        )

    def status(self) -> dict[str, Any]:
        entry = self.caches["own"].get(self.status_key)
        return dict(entry.value) if entry is not None and isinstance(entry.value, dict) else {}

    # -- one pass ------------------------------------------------------------------------

    def reconcile_once(self) -> core.Decision | None:
        start = time.perf_counter()
        self.stats.last_start = time.monotonic()
        status = self.status()
        decision: core.Decision | None = None
        try:
            try:
                spec, generation = self.operator_config()
            except LookupError:
                self._record("NoConfig", f"no config at {self.config_key}: idle")
                return None
            except ConfigError as exc:
                self._invalid(status, str(exc), None)
                return None
            cfg = self.caches["own"].get(self.config_key)
            meta = (cfg.value if cfg is not None else {}).get("metadata") or {}
            if meta.get("deletionTimestamp"):
                decision = self._uninstall_step(spec, status)
            else:
                try:
                    settings = settings_from_spec(spec, env=self.env, api_group=API_GROUP)
                except ConfigError as exc:
                    self._invalid(status, str(exc), generation)
                    return None
                obs = self.observed(status.get("transition"))
                decision = core.reconcile(obs, settings)
                status.setdefault("meshBefore", obs.mesh_enabled)
                self._execute(decision, status)
                self._after(decision, status, obs, generation)
            self._failures = 0
            self.metrics.reconciles.labels("ok").inc()
        except _NotLeader:
            log.info("lost leadership during the pass; the new leader decides")
        except _PassEnded as exc:
            self.stats.conflicts += 1
            self.metrics.reconciles.labels("conflict").inc()
            log.info("pass ended: %s; deciding again on the fresh state", exc)
            self._requeue(0.0)
        except EtcdError as exc:
            self._failed(f"{exc}", status)
        except Exception as exc:  # a bug must not kill the loop: report, back off, retry
            log.exception("reconcile crashed")
            self._failed(f"internal error: {type(exc).__name__}: {exc}", status)
        finally:
            self.metrics.reconcile_seconds.observe(time.perf_counter() - start)
            self.stats.reconciles += 1
            self.stats.last_end = time.monotonic()
        return decision

    def _failed(self, message: str, status: dict[str, Any]) -> None:
        delay = self._pass_failed(message)
        log.warning("reconcile failed: %s; retrying in %.1fs", message, delay)
        with contextlib.suppress(Exception):
            self._write_status(status, phase="Error", message=message, degraded=message)

    def _invalid(self, status: dict[str, Any], message: str, generation: int | None) -> None:
        self._record("InvalidConfig", message)
        self._event("Warning", "InvalidConfig", message)
        self._write_status(
            status, phase="InvalidConfig", message=message, invalid=message, generation=generation
        )

    def _uninstall_step(self, spec: Any, status: dict[str, Any]) -> core.Decision:
        try:
            settings = settings_from_spec(spec, env=self.env, api_group=API_GROUP)
        except ConfigError:
            settings = settings_from_spec({}, env={}, api_group=API_GROUP)
        obs = self.observed(status.get("transition"))
        mesh_before = status.get("meshBefore")
        decision = core.uninstall(
            obs, settings, mesh_before=mesh_before if isinstance(mesh_before, bool) else None
        )
        self._execute(decision, status)
        if decision.phase == core.Phase.UNINSTALLED and not decision.writes:
            # The status first: the config's deletion says "done", and once it is gone
            # no pass runs that could still delete a status left behind.
            cache = self.caches["own"]
            for key in (self.status_key, self.config_key):
                entry = cache.get(key)
                if entry is None:
                    continue
                try:
                    cache.deleted(
                        key, self.client.delete_if(key, entry.kv.mod_revision, fence=self._fence())
                    )
                except Fenced as exc:
                    raise self._fenced(exc) from None
                except Conflict as exc:  # changed meanwhile: take it, the next pass retries
                    self._conflict(cache, entry, exc)
                    self._wake.set()
                    break
            self._record(decision.phase.value, decision.message)
            self._event("Normal", "Uninstalled", "mesh restored, calico-rr objects removed")
        else:
            self._record(decision.phase.value, decision.message)
            if decision.requeue_after is not None:
                self._requeue(decision.requeue_after)
            elif decision.writes:
                self._wake.set()
        return decision

    # -- executing a decision (the order core.Decision prescribes) ---------------------------

    def _check_leader(self) -> None:
        if not self.is_leader:
            raise _NotLeader("lost leadership: writing nothing more")

    def _fence(self) -> Fence | None:
        """The condition every write carries: our leader key under our lease.  Our
        elector may believe it leads for up to renew_deadline after etcd gave the
        key to another replica (a pause, a partition); etcd itself refuses then."""
        if self.elector is None:
            return None
        lease = self.elector.lease_id
        if lease is None:
            raise _NotLeader("no leader lease: writing nothing")
        return Fence(self.elector.key, lease)

    def _fenced(self, exc: Fenced) -> _NotLeader:
        self.stats.fenced += 1
        log.warning("%s; stepping down", exc)
        if self.elector is not None:
            self.elector.fenced()
        return _NotLeader(str(exc))

    def _conflict(self, cache: PrefixCache, entry: Entry | None, exc: Conflict) -> None:
        """Take what the key holds now (read in the failed transaction)."""
        if exc.current is not None:
            cache.store(exc.current)
        else:
            cache.deleted(exc.key, (entry.kv.mod_revision if entry else 0) + 1)

    def _execute(self, d: core.Decision, status: dict[str, Any]) -> None:
        self._check_leader()  # lost the lease since the pass began: the new leader decides
        conflicts: list[str] = []
        if d.transition_set and d.transition is not None:
            status["transition"] = d.transition
            record = {"transition": d.transition, "meshBefore": status.get("meshBefore")}
            self._put_status({**self.status(), **record}, end_pass=True)
        for obj in d.peer_applies:
            self._put_managed("bgppeers", obj, conflicts)
        ended: list[_PassEnded] = []

        def apply_node(change: core.NodeApply) -> None:
            try:
                self._apply_node(change, conflicts)
            except _PassEnded as exc:
                ended.append(exc)

        if len(d.node_applies) > 1:
            for future in [self._pool.submit(apply_node, c) for c in d.node_applies]:
                future.result()
        else:
            for change in d.node_applies:
                apply_node(change)
        if ended:
            # Every subset of a batch's node writes is safe; what follows them is not.
            raise ended[0]
        for name in d.peer_deletes:
            self._delete_managed("bgppeers", name, conflicts)
        for obj in d.node_status_applies:
            self._put_managed("caliconodestatuses", obj, conflicts)
        for name in d.node_status_deletes:
            self._delete_managed("caliconodestatuses", name, conflicts)
        if d.mesh is not None:
            self._put_mesh(d.mesh)
            self._event(
                "Normal",
                "MeshEnabled" if d.mesh else "MeshDisabled",
                "node-to-node mesh " + ("switched on" if d.mesh else "switched off"),
            )
        if d.transition_set and d.transition is None:
            status["transition"] = None
        if conflicts:
            msg = "fields owned by someone else: " + "; ".join(conflicts[:3])
            self._event("Warning", "Conflict", msg)
            status["_degraded"] = msg

    def _put(self, cache: PrefixCache, doc: dict[str, Any], entry: Entry | None) -> None:
        key, value = L.encode_document(doc)
        self._check_leader()
        try:
            kv = self.client.put_if(
                key, value, entry.kv.mod_revision if entry else 0, fence=self._fence()
            )
        except Fenced as exc:
            raise self._fenced(exc) from None
        except Conflict as exc:
            self._conflict(cache, entry, exc)
            raise _PassEnded(str(exc)) from None
        cache.store(kv)
        self._count(str(doc["kind"]).lower())
        self.health.beat()

    def _put_managed(self, plural: str, obj: dict[str, Any], conflicts: list[str]) -> None:
        cache = self.caches[plural]
        key = L.resource_key(plural, str(obj["metadata"]["name"]))
        entry = cache.get(key)
        existing = entry.value if entry is not None else None
        try:
            if entry is not None and existing is None:
                raise L.OwnershipConflict("exists and does not decode; it is left alone", obj=key)
            doc = L.managed_document(obj, existing, uid=str(uuid.uuid4()), now=self.clock())
        except L.OwnershipConflict as exc:
            conflicts.append(str(exc))
            return
        self._put(cache, merge_foreign_metadata(doc, existing), entry)

    def _delete_managed(self, plural: str, name: str, conflicts: list[str]) -> None:
        cache = self.caches[plural]
        key = L.resource_key(plural, name)
        entry = cache.get(key)
        if entry is None:
            return
        if not L.is_managed(entry.value):
            conflicts.append(f"{plural}/{name}: not created by calico-rr; not deleted")
            return
        self._check_leader()
        try:
            cache.deleted(
                key, self.client.delete_if(key, entry.kv.mod_revision, fence=self._fence())
            )
        except Fenced as exc:
            raise self._fenced(exc) from None
        except Conflict as exc:
            self._conflict(cache, entry, exc)
            if exc.current is None:
                return  # gone already: what we wanted
            raise _PassEnded(str(exc)) from None
        self._count(L.KINDS[plural].lower() + "-delete")

    def _apply_node(self, change: core.NodeApply, conflicts: list[str]) -> None:
        cache = self.caches["nodes"]
        key = L.resource_key("nodes", change.name)
        entry = cache.get(key)
        if entry is None or entry.value is None:
            return  # the node left meanwhile
        doc: dict[str, Any] = entry.value.doc
        if change.uid is not None and (doc.get("metadata") or {}).get("uid") != change.uid:
            return  # another node of the same name now: the next pass decides for it
        try:
            new = L.apply_node(doc, change.labels, change.annotations)
        except L.OwnershipConflict as exc:
            conflicts.append(str(exc))
            return
        try:
            self._put(cache, new, entry)
        except _PassEnded:
            if cache.get(key) is None:
                return  # deleted meanwhile: nothing to do for it
            raise

    def _put_mesh(self, mesh: bool) -> None:
        cache = self.caches["bgpconfigurations"]
        entry = cache.get(L.resource_key("bgpconfigurations", "default"))
        existing = entry.value if entry is not None else None
        doc = L.mesh_document(existing, mesh, uid=str(uuid.uuid4()), now=self.clock())
        self._put(cache, doc, entry)

    # -- status ------------------------------------------------------------------------

    def _put_status(self, new: dict[str, Any], *, end_pass: bool) -> None:
        cache = self.caches["own"]
        entry = cache.get(self.status_key)
        self._check_leader()
        value = json.dumps(new, separators=(",", ":"), sort_keys=True).encode()
        try:
            kv = self.client.put_if(
                self.status_key, value, entry.kv.mod_revision if entry else 0, fence=self._fence()
            )
        except Fenced as exc:
            raise self._fenced(exc) from None
        except Conflict as exc:
            self._conflict(cache, entry, exc)
            if end_pass:
                raise _PassEnded(str(exc)) from None
            log.info("status changed meanwhile (%s); written on the next pass", exc)
            self._requeue(0.0)
            return
        cache.store(kv)
        self._count("status")

    def _write_status(
        self,
        status: dict[str, Any],
        *,
        phase: str,
        message: str,
        degraded: str | None = None,
        invalid: str | None = None,
        topology: str | None = None,
        rrs: int | None = None,
        mesh: bool | None = None,
        generation: int | None = None,
    ) -> None:
        old = self.status()
        if phase == core.Phase.APPLYING.value and old.get("phase") == core.Phase.STEADY.value:
            # A join or an RR replaced in steady state: no status churn.
            phase, message = core.Phase.STEADY.value, str(old.get("message", message))
        new: dict[str, Any] = {
            **old,
            "phase": phase,
            "message": message[:1000],
            "transition": status.get("transition"),
        }
        if generation is not None:
            new["observedGeneration"] = generation
        if "meshBefore" in status:
            new["meshBefore"] = status["meshBefore"]
        if topology is not None:
            new["topology"] = topology
        if rrs is not None:
            new["routeReflectors"] = rrs
            new["bgpPeers"] = sum(
                1
                for e in self._docs("bgppeers").values()
                if L.is_managed(e.value)
                and not {core.COMPANION_LABEL, core.BRIDGE_LABEL}
                & set((e.value.get("metadata") or {}).get("labels") or {})
            )
        if mesh is not None:
            new["meshEnabled"] = mesh
        new["conditions"] = conditions(
            old.get("conditions"),
            phase=phase,
            message=message,
            degraded=degraded,
            invalid=invalid,
            now=self.clock(),
        )
        if new == old:
            return
        self._put_status(new, end_pass=False)

    def _after(
        self,
        d: core.Decision,
        status: dict[str, Any],
        obs: core.Observed,
        generation: int,
    ) -> None:
        counts = core.summary_counts(d, obs)
        self.metrics.route_reflectors.set(counts["routeReflectors"])
        self.metrics.bgppeers.set(len(obs.peers))
        self.metrics.nodes.set(len(obs.nodes))
        self.metrics.transitions.set(counts["inTransition"])
        degraded = status.pop("_degraded", None)
        if d.phase == core.Phase.BLOCKED:
            degraded = d.message
        warnings = list(d.plan.warnings) if d.plan is not None else []
        if not degraded and warnings and any("no node" in w for w in warnings):
            degraded = "; ".join(warnings)
        self._write_status(
            status,
            phase=d.phase.value,
            message=d.message,
            degraded=degraded,
            topology=d.plan.topology if d.plan is not None else None,
            rrs=counts["routeReflectors"],
            mesh=(obs.mesh_enabled if d.mesh is None else d.mesh),
            generation=generation,
        )
        prev_phase = self.stats.last_phase
        self._record(d.phase.value, d.message)
        self._track_steady(d.phase)
        if d.phase.value != prev_phase and d.phase in (
            core.Phase.MAKING,
            core.Phase.BREAKING,
            core.Phase.MESH_OFF,
        ):
            self._event("Normal", d.phase.value, d.message)
        if d.requeue_after is not None:
            self._requeue(d.requeue_after)
        elif d.writes or d.transition_set:
            self._wake.set()  # the next batch, on the caches our writes went through to

    # -- small things ------------------------------------------------------------------

    def _event(self, etype: str, reason: str, message: str) -> None:
        """etcd has no Events: the event is a log line (reason, type)."""
        level = logging.WARNING if etype == "Warning" else logging.INFO
        log.log(level, message, extra={"reason": reason, "event": etype})


def request_uninstall(
    client: EtcdClient, *, config_name: str = CONFIG_NAME, prefix: str = DEFAULT_PREFIX
) -> None:
    """Mark our config as being deleted (``metadata.deletionTimestamp``, with a
    compare-and-swap): the leader runs the uninstall steps, then deletes the config
    and status keys - the etcd form of the Kubernetes finalizer."""
    key = f"{prefix.rstrip('/')}/config/{config_name}"
    while True:
        kv = client.get(key)
        if kv is None:
            raise ConfigError(f"no config at {key}: nothing to uninstall")
        doc = json.loads(kv.value)
        if not isinstance(doc, dict):
            raise ConfigError(f"{key}: not a JSON object")
        meta = dict(doc.get("metadata") or {})
        if meta.get("deletionTimestamp"):
            return
        meta["deletionTimestamp"] = format_timestamp(float(int(time.time())))
        doc["metadata"] = meta
        value = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        try:
            client.put_if(key, value, kv.mod_revision)
            return
        except Conflict:
            continue


def uninstall(
    client: EtcdClient,
    *,
    config_name: str = CONFIG_NAME,
    prefix: str = DEFAULT_PREFIX,
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    poll: float = 0.5,
) -> str:
    """``calico-rr uninstall --datastore-type etcdv3``: mark the config deleted, then
    drive the uninstall steps to the end in this process (compare-and-swap makes it
    safe next to a running leader doing the same).  Returns a summary line."""
    request_uninstall(client, config_name=config_name, prefix=prefix)
    op = EtcdOperator(
        client, env=env or {}, config_name=config_name, prefix=prefix, leader_election=False
    )
    for cache in op.caches.values():
        cache.start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not op.synced:
                time.sleep(0.05)
                continue
            if op.caches["own"].get(op.config_key) is None:
                return "uninstalled: mesh restored, every calico-rr object removed"
            op.reconcile_once()
            wait = poll if op._requeue_at is None else op._requeue_at - time.monotonic()
            time.sleep(max(0.0, min(poll, wait)))
            op._requeue_at = None
    finally:
        for cache in op.caches.values():
            cache.stop()
        op._pool.shutdown(wait=True)
    raise TimeoutError(f"uninstall did not finish in {timeout:.0f}s: {op.stats.last_message}")
