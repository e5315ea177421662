"""The operator on the Kubernetes API: informers in, reconcile, writes out.

Data flow::

    informers (1 LIST each, then WATCH with resourceVersion resume, re-list on 410)
        nodes -> NodeState (our owned fields from managedFields), our BGPPeers,
        BGPConfiguration, our CalicoNodeStatus, RouteReflectorConfig
      --> wake-up flag (events coalesced for ``debounce``)
      --> Observed --core.reconcile--> Decision
      --> writes in the Decision's order (server-side apply, one field manager),
          each result written through to the cache
      --> RouteReflectorConfig status (only when it changed), Events, metrics

Only the Lease holder reconciles; followers keep warm caches and write nothing.
All knowledge of progress lives in the cluster (labels, BGPPeers, the status
transition record), so a replacement process resumes where the last one died.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from calico_rr.adapters.kube.client import (
    ApiError,
    Conflict,
    KubeClient,
    NotFound,
    api_path,
)
from calico_rr.adapters.kube.informer import Informer
from calico_rr.adapters.kube.leader import LeaderElector
from calico_rr.adapters.observe import Health, OperatorMetrics
from calico_rr.adapters.runtime import WRITE_WORKERS, ReconcileLoop, conditions
from calico_rr.core.formats.kube import format_timestamp, node_from_k8s
from calico_rr.core.operator import reconcile as core
from calico_rr.core.operator import typha
from calico_rr.core.operator.settings import (
    CONFIG_NAME,
    CRD_GROUP,
    CRD_KIND,
    CRD_PLURAL,
    CRD_VERSION,
    OperatorSettings,
    settings_from_spec,
)
from calico_rr.core.planning.config import ApiGroup
from calico_rr.errors import ConfigError, InputError
from calico_rr.model import MANAGED_BY_LABEL, MANAGED_BY_VALUE, Node

log = logging.getLogger(__name__)

FINALIZER = f"{CRD_GROUP}/uninstall"
CONFIG_API = f"{CRD_GROUP}/{CRD_VERSION}"
MANAGED_SELECTOR = f"{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"
#: The Typha keeper reads its Deployment at most this often while the node count
#: and its settings stay the same (and nothing is due).
TYPHA_POLL = 30.0


def choose_api_group(served: set[str]) -> ApiGroup:
    """Calico's rule (domain.md 8): projectcalico.org/v3 only when that group is
    served and crd.projectcalico.org is not."""
    if "projectcalico.org" in served and "crd.projectcalico.org" not in served:
        return "projectcalico.org/v3"
    return "crd.projectcalico.org/v1"


def owned_fields(obj: Mapping[str, Any], manager: str) -> tuple[frozenset[str], frozenset[str]]:
    """Label and annotation keys ``manager`` owns through server-side apply."""
    labels: set[str] = set()
    annotations: set[str] = set()
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") != manager or entry.get("operation") != "Apply":
            continue
        meta = (entry.get("fieldsV1") or {}).get("f:metadata") or {}
        labels.update(k[2:] for k in meta.get("f:labels") or {} if k.startswith("f:"))
        annotations.update(k[2:] for k in meta.get("f:annotations") or {} if k.startswith("f:"))
    return frozenset(labels), frozenset(annotations)


def node_state(obj: dict[str, Any], manager: str) -> core.NodeState:
    """A watched Node as the reconcile sees it.  A node that does not parse (e.g. a
    malformed address annotation) is kept, with no address: it runs no BGP as far
    as we can tell, is never chosen as an RR, and the error is logged."""
    try:
        node = replace(node_from_k8s(obj), raw=None)
    except InputError as exc:
        meta = obj.get("metadata") or {}
        log.warning("node %s ignored for BGP: %s", meta.get("name"), exc)
        labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
        node = Node(name=str(meta.get("name")), ip=None, labels=dict(labels or {}))
    owned_l, owned_a = owned_fields(obj, manager)
    uid = (obj.get("metadata") or {}).get("uid")
    return core.NodeState(node, owned_l, owned_a, str(uid) if uid else None)


def node_bgp_status(obj: Mapping[str, Any]) -> tuple[str, core.NodeBGPStatus]:
    spec = obj.get("spec") or {}
    bgp = (obj.get("status") or {}).get("bgp")
    if not isinstance(bgp, Mapping):
        return str(spec.get("node") or ""), core.NodeBGPStatus(False)
    up = frozenset(
        str(p.get("peerIP"))
        for p in bgp.get("peersV4") or []
        if isinstance(p, Mapping) and p.get("state") == "Established"
    )
    return str(spec.get("node") or ""), core.NodeBGPStatus(True, up)


class Operator(ReconcileLoop):
    """One operator replica.  ``start()`` runs it in background threads."""

    log = log

    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str = "calico-rr",
        identity: str | None = None,
        env: Mapping[str, str] | None = None,
        metrics: OperatorMetrics | None = None,
        health: Health | None = None,
        config_name: str = CONFIG_NAME,
        lease_name: str = "calico-rr",
        lease_duration: float = 15.0,
        leader_election: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}"
        self.env = dict(os.environ if env is None else env)
        self.metrics = metrics or OperatorMetrics()
        self.health = health or Health()
        self.config_name = config_name
        self.clock = clock
        self._init_loop()
        self.api_group: ApiGroup = "crd.projectcalico.org/v1"
        self.node_status_supported = False
        self._last_event: tuple[str, str] | None = None
        self._typha_state = typha.KeeperState()
        #: (node count, settings) of the keeper's last read, and when to read again
        self._typha_read: tuple[tuple[int, typha.TyphaSettings], float] | None = None
        self.informers: dict[str, Informer] = {}
        self._pool = ThreadPoolExecutor(max_workers=WRITE_WORKERS, thread_name_prefix="write")
        if client.on_request is None:
            client.on_request = self.metrics.on_request
        self.elector: LeaderElector | None = None
        if leader_election:
            self.elector = LeaderElector(
                client,
                namespace=namespace,
                name=lease_name,
                identity=self.identity,
                lease_duration=lease_duration,
                on_change=self._on_leadership,
            )

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> Operator:
        self._discover()
        self._start_informers()
        if self.elector is not None:
            self.elector.start()
        self._start_loop("reconcile")
        return self

    def stop(self, *, release: bool = True) -> None:
        self._stop_loop()
        if self.elector is not None:
            self.elector.stop(release=release)
        for inf in self.informers.values():
            inf.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def kill(self) -> None:
        """Stop abruptly, as a crash would: no lease release, no final writes."""
        self.stop(release=False)

    @property
    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader

    @property
    def synced(self) -> bool:
        return all(inf.synced.is_set() for inf in self.informers.values())

    def lists(self) -> int:
        return sum(inf.lists for inf in self.informers.values())

    # -- discovery and informers -------------------------------------------------------

    def _discover(self) -> None:
        served = self.client.served_groups()
        self.api_group = choose_api_group(served)
        resources = self.client.request("GET", "/apis/" + self.api_group)
        names = {r.get("name") for r in (resources or {}).get("resources") or []}
        self.node_status_supported = "caliconodestatuses" in names
        log.info(
            "using Calico API group",
            extra={"api_group": self.api_group, "node_status": self.node_status_supported},
        )

    def _on_event(self, etype: str, key: str, value: Any) -> None:
        self._wake.set()

    def _start_informers(self) -> None:
        g = self.api_group
        manager = self.client.field_manager
        specs: list[tuple[str, str, str | None, Callable[[dict[str, Any]], Any] | None]] = [
            ("nodes", api_path("v1", "nodes"), None, lambda o: node_state(o, manager)),
            ("config", api_path(CONFIG_API, CRD_PLURAL), None, None),
            ("bgppeers", api_path(g, "bgppeers"), MANAGED_SELECTOR, None),
            ("bgpconfig", api_path(g, "bgpconfigurations"), None, None),
        ]
        if self.node_status_supported:
            specs.append(("cns", api_path(g, "caliconodestatuses"), MANAGED_SELECTOR, None))
        for name, path, selector, transform in specs:
            inf = Informer(
                self.client,
                path,
                name=name,
                label_selector=selector,
                transform=transform,
                on_event=self._on_event,
                on_gone=self.metrics.relists.labels(name).inc,
            )
            self.informers[name] = inf
            inf.start()

    def _on_leadership(self, leader: bool) -> None:
        self.metrics.leader.set(1 if leader else 0)
        # What the keeper saw while leading before is stale: start its waits again.
        self._typha_state = typha.KeeperState()
        self._typha_read = None
        self._wake.set()

    def _configured_debounce(self) -> float:
        cfg = self.informers["config"].get(self.config_name)
        spec = (cfg or {}).get("spec")
        return settings_from_spec(spec, env=self.env, api_group=self.api_group).debounce

    # -- one reconcile -----------------------------------------------------------------

    def observed(self, transition: Mapping[str, Any] | None) -> core.Observed:
        cfg = self.informers["bgpconfig"].get("default")
        mesh = (cfg or {}).get("spec", {}).get("nodeToNodeMeshEnabled")
        statuses: dict[str, core.NodeBGPStatus] = {}
        cns_names: set[str] = set()
        if "cns" in self.informers:
            for name, obj in self.informers["cns"].items().items():
                cns_names.add(name)
                node, status = node_bgp_status(obj)
                statuses[node] = status
        return core.Observed(
            nodes=self.informers["nodes"].items(),
            peers=self.informers["bgppeers"].items(),
            mesh_enabled=mesh is not False,
            transition=transition,
            node_status=statuses,
            node_status_objects=frozenset(cns_names),
            node_status_supported=self.node_status_supported,
            now=self.clock(),
        )

    def reconcile_once(self) -> core.Decision | None:
        start = time.perf_counter()
        self.stats.last_start = time.monotonic()
        cfg = self.informers["config"].get(self.config_name)
        if cfg is None:
            self._record("NoConfig", f"no {CRD_KIND} named {self.config_name!r}: idle")
            return None
        status = dict(cfg.get("status") or {})
        decision: core.Decision | None
        try:
            if (cfg.get("metadata") or {}).get("deletionTimestamp"):
                decision = self._uninstall_step(cfg, status)
            else:
                decision = self._reconcile_config(cfg, status)
            self._failures = 0
            self.metrics.reconciles.labels("ok").inc()
        except ApiError as exc:
            delay = self._pass_failed(str(exc))
            log.warning("reconcile failed: %s; retrying in %.1fs", exc, delay)
            with contextlib.suppress(ApiError):
                self._write_status(cfg, status, phase="Error", message=str(exc), degraded=str(exc))
            return None
        except Exception as exc:  # a bug must not kill the loop: report, back off, retry
            msg = f"internal error: {type(exc).__name__}: {exc}"
            delay = self._pass_failed(msg)
            log.exception("reconcile crashed; retrying in %.1fs", delay)
            with contextlib.suppress(Exception):
                self._write_status(cfg, status, phase="Error", message=msg, degraded=msg)
            return None
        finally:
            self.metrics.reconcile_seconds.observe(time.perf_counter() - start)
            self.stats.reconciles += 1
            self.stats.last_end = time.monotonic()
        return decision

    def _reconcile_config(
        self, cfg: dict[str, Any], status: dict[str, Any]
    ) -> core.Decision | None:
        if FINALIZER not in ((cfg.get("metadata") or {}).get("finalizers") or []):
            self._add_finalizer(cfg)
        try:
            settings = settings_from_spec(cfg.get("spec"), env=self.env, api_group=self.api_group)
        except ConfigError as exc:
            self._record("InvalidConfig", str(exc))
            self._write_status(
                cfg, status, phase="InvalidConfig", message=str(exc), invalid=str(exc)
            )
            self._event(cfg, "Warning", "InvalidConfig", str(exc))
            return None
        obs = self.observed(status.get("transition"))
        decision = core.reconcile(obs, settings)
        if "meshBefore" not in status:
            status["meshBefore"] = obs.mesh_enabled
        self._execute(decision, cfg, status, settings)
        self._after(decision, cfg, status, obs)
        self._keep_typha(settings)
        return decision

    # -- the Typha keeper (core/operator/typha.py) -------------------------------------------------

    def _keep_typha(self, settings: OperatorSettings) -> None:
        """Scale the Typha Deployment to its target through its scale subresource.

        Off (the default): no request at all.  On: one GET of the Deployment when the
        node count or the settings changed, when a pending change is due, else at
        most every TYPHA_POLL seconds; a PATCH of ``deployments/<name>/scale`` only
        when core.operator.typha says so and nobody else owns the Deployment."""
        cfg = self.informers["config"].get(self.config_name)
        if cfg is None or not self.is_leader:
            return
        ts = settings.typha
        old = (cfg.get("status") or {}).get("typha")
        if not ts.enabled or settings.paused:
            self._typha_state = typha.KeeperState()
            self._typha_read = None
            if old is not None and not settings.paused:
                self._patch_status(cfg, {"typha": None})
            return
        nodes = len(self.informers["nodes"])
        key = (nodes, ts)
        if (
            self._typha_read is not None
            and self._typha_read[0] == key
            and time.monotonic() < self._typha_read[1]
        ):
            if self._typha_state.pending is not None:  # keep the wake-up for the due time
                self._requeue(self._typha_read[1] - time.monotonic())
            return
        where = f"{ts.namespace}/{ts.name}"
        path = api_path("apps/v1", "deployments", ts.name, namespace=ts.namespace)
        new: dict[str, Any] = {"deployment": where, "nodes": nodes, "managedBy": None}
        new["target"] = typha.target_replicas(nodes)
        reason, etype = "", "Normal"
        next_read = TYPHA_POLL
        try:
            dep = self.client.get(path)
        except ApiError as exc:
            dep = None
            new.update(replicas=None, message=f"cannot read Deployment {where}: {exc}")
            reason, etype = "TyphaError", "Warning"
        if dep is not None:
            replicas = int((dep.get("spec") or {}).get("replicas", 1))
            new["replicas"] = replicas
            owner = typha.managed_by(dep)
            if owner is not None:
                self._typha_state = typha.KeeperState()
                new["managedBy"] = owner
                new["message"] = f"managed by {owner}: calico-rr leaves its replicas alone"
                reason = "TyphaManagedElsewhere"
            else:
                step = typha.decide(
                    replicas,
                    nodes,
                    self.clock(),
                    self._typha_state,
                    settle=ts.settle,
                    cool_down=ts.cool_down,
                )
                new["message"] = f"Deployment {where}: {step.message}"
                if step.replicas is not None:
                    try:
                        self.client.patch(path + "/scale", {"spec": {"replicas": step.replicas}})
                    except ApiError as exc:
                        new["message"] = f"cannot scale Deployment {where}: {exc}"
                        reason, etype = "TyphaError", "Warning"
                    else:
                        self._typha_state = step.state
                        new["replicas"] = step.replicas
                        self._count("typha-scale")
                        reason = "TyphaScaled"
                else:
                    self._typha_state = step.state
                if step.wait is not None:
                    next_read = min(next_read, step.wait)
                    self._requeue(step.wait)
        elif not reason:
            new.update(replicas=None, message=f"Deployment {where} not found")
            reason, etype = "TyphaNotFound", "Warning"
        self._typha_read = (key, time.monotonic() + next_read)
        if {k: v for k, v in new.items() if v is not None} == (old or {}):
            return
        self._patch_status(cfg, {"typha": new})
        if reason:
            self._event(cfg, etype, reason, str(new["message"]))

    def _uninstall_step(self, cfg: dict[str, Any], status: dict[str, Any]) -> core.Decision:
        try:
            settings = settings_from_spec(cfg.get("spec"), env=self.env, api_group=self.api_group)
        except ConfigError:
            settings = settings_from_spec({}, env={}, api_group=self.api_group)
        obs = self.observed(status.get("transition"))
        mesh_before = status.get("meshBefore")
        decision = core.uninstall(
            obs, settings, mesh_before=mesh_before if isinstance(mesh_before, bool) else None
        )
        self._execute(decision, cfg, status, settings)
        if decision.phase == core.Phase.UNINSTALLED and not decision.writes:
            self._remove_finalizer(cfg)
            self._event(cfg, "Normal", "Uninstalled", "mesh restored, calico-rr objects removed")
        else:
            self._record(decision.phase.value, decision.message)
            if decision.requeue_after is not None:
                self._requeue(decision.requeue_after)
            elif decision.writes:
                self._wake.set()
        return decision

    # -- executing a decision ------------------------------------------------------------

    def _execute(
        self,
        d: core.Decision,
        cfg: dict[str, Any],
        status: dict[str, Any],
        settings: OperatorSettings,
    ) -> None:
        g = settings.plan.api_group
        if not self.is_leader:
            return  # lost the Lease since the pass began: the new leader takes over
        if d.transition_set and d.transition is not None:
            status["transition"] = d.transition
            self._patch_status(
                cfg, {"transition": d.transition, "meshBefore": status.get("meshBefore")}
            )
        peers = self.informers["bgppeers"]
        for obj in d.peer_applies:
            name = str(obj["metadata"]["name"])
            result = self.client.apply(api_path(g, "bgppeers", name), obj)
            peers.store(result)
            self._count("bgppeer")
        nodes = self.informers["nodes"]
        conflicts: list[str] = []

        def apply_node(change: core.NodeApply) -> None:
            path = api_path("v1", "nodes", change.name)
            try:
                result = self.client.apply(path, change.body())
            except NotFound:
                return  # the node left meanwhile; its DELETED event is on the way
            except ApiError as exc:
                if exc.status in (409, 422) and "uid" in exc.message:
                    return  # deleted (or deleted and re-created) since our snapshot
                if isinstance(exc, Conflict):
                    conflicts.append(f"{change.name}: {exc.message}")
                    return
                # Without a uid an apply to a deleted node would create it, which our
                # RBAC forbids (403): the node is gone, not our permission.
                if exc.status == 403 and self.client.get(path) is None:
                    return
                raise
            nodes.store(result)
            self._count("node")
            self.health.beat()  # a long batch is progress, not a hung loop

        # Node writes of one batch are independent (each node's apply is atomic and
        # every subset of the batch is a safe state), so they go out in parallel.
        if len(d.node_applies) > 1:
            for future in [self._pool.submit(apply_node, c) for c in d.node_applies]:
                future.result()  # re-raises the first API error: the pass fails
        else:
            for change in d.node_applies:
                apply_node(change)
        for name in d.peer_deletes:
            self.client.delete(api_path(g, "bgppeers", name))
            peers.forget(name)
            self._count("bgppeer-delete")
        if "cns" in self.informers:
            cns = self.informers["cns"]
            for obj in d.node_status_applies:
                name = str(obj["metadata"]["name"])
                cns.store(self.client.apply(api_path(g, "caliconodestatuses", name), obj))
                self._count("caliconodestatus")
            for name in d.node_status_deletes:
                self.client.delete(api_path(g, "caliconodestatuses", name))
                cns.forget(name)
                self._count("caliconodestatus-delete")
        if d.mesh is not None:
            body = {
                "apiVersion": g,
                "kind": "BGPConfiguration",
                "metadata": {"name": "default"},
                "spec": {"nodeToNodeMeshEnabled": d.mesh},
            }
            # The one field we take over from whoever set it; its old value is in
            # status.meshBefore and is restored on uninstall.
            result = self.client.apply(
                api_path(g, "bgpconfigurations", "default"), body, force=True
            )
            self.informers["bgpconfig"].store(result)
            self._count("bgpconfiguration")
            self._event(
                cfg,
                "Normal",
                "MeshEnabled" if d.mesh else "MeshDisabled",
                "node-to-node mesh " + ("switched on" if d.mesh else "switched off"),
            )
        if d.transition_set and d.transition is None:
            status["transition"] = None
        if conflicts:
            msg = "fields owned by another manager: " + "; ".join(conflicts[:3])
            self._event(cfg, "Warning", "Conflict", msg)
            status["_degraded"] = msg

    def _after(
        self, d: core.Decision, cfg: dict[str, Any], status: dict[str, Any], obs: core.Observed
    ) -> None:
        counts = core.summary_counts(d, obs)
        self.metrics.route_reflectors.set(counts["routeReflectors"])
        self.metrics.bgppeers.set(len(self.informers["bgppeers"]))
        self.metrics.nodes.set(len(obs.nodes))
        self.metrics.transitions.set(counts["inTransition"])
        if d.plan is not None:
            self._session_metrics(d)
        degraded = status.pop("_degraded", None)
        if d.phase == core.Phase.BLOCKED:
            degraded = d.message
        warnings = list(d.plan.warnings) if d.plan is not None else []
        if not degraded and warnings and any("no node" in w for w in warnings):
            degraded = "; ".join(warnings)
        self._write_status(
            cfg,
            status,
            phase=d.phase.value,
            message=d.message,
            degraded=degraded,
            topology=d.plan.topology if d.plan is not None else None,
            rrs=counts["routeReflectors"],
            mesh=(obs.mesh_enabled if d.mesh is None else d.mesh),
        )
        prev_phase = self.stats.last_phase
        self._record(d.phase.value, d.message)
        self._track_steady(d.phase)
        if d.phase.value != prev_phase and d.phase in (
            core.Phase.MAKING,
            core.Phase.BREAKING,
            core.Phase.MESH_OFF,
        ):
            self._event(cfg, "Normal", d.phase.value, d.message)
        if d.requeue_after is not None:
            self._requeue(d.requeue_after)
        elif d.writes or d.transition_set:
            self._wake.set()  # continue with the next batch on fresh caches

    _session_key: object = None

    def _session_metrics(self, d: core.Decision) -> None:
        """Sessions per RR, recomputed only when the RR set or the rules change."""
        assert d.plan is not None
        layout = d.plan.layout
        key = (tuple(sorted(layout.holders.items())), layout.rules, len(d.plan.nodes))
        if key == self._session_key:
            return
        self._session_key = key
        try:
            expected = core.expected_sessions(d.plan)
        except Exception:  # metrics must never break the reconcile
            log.exception("session metrics failed")
            return
        counts = [len(v) for v in expected.values()] or [0]
        self.metrics.sessions_per_rr.labels("min").set(min(counts))
        self.metrics.sessions_per_rr.labels("max").set(max(counts))
        self.metrics.sessions_per_rr.labels("mean").set(sum(counts) / len(counts))

    # -- status, events, finalizer ---------------------------------------------------------

    def _config_path(self, cfg: Mapping[str, Any]) -> str:
        return api_path(CONFIG_API, CRD_PLURAL, str(cfg["metadata"]["name"]))

    def _patch_status(self, cfg: dict[str, Any], fields: Mapping[str, Any]) -> None:
        result = self.client.patch(
            self._config_path(cfg) + "/status", {"status": dict(fields)}, patch_type="merge"
        )
        self.informers["config"].store(result)
        self._count("status")

    def _write_status(
        self,
        cfg: dict[str, Any],
        status: dict[str, Any],
        *,
        phase: str,
        message: str,
        degraded: str | None = None,
        invalid: str | None = None,
        topology: str | None = None,
        rrs: int | None = None,
        mesh: bool | None = None,
    ) -> None:
        old = dict(cfg.get("status") or {})
        if phase == core.Phase.APPLYING.value and old.get("phase") == core.Phase.STEADY.value:
            # A join or an RR replaced in steady state: one node write, no status churn.
            phase, message = core.Phase.STEADY.value, str(old.get("message", message))
        new: dict[str, Any] = {
            "observedGeneration": (cfg.get("metadata") or {}).get("generation"),
            "phase": phase,
            "message": message[:1000],
            "transition": status.get("transition"),
        }
        if "meshBefore" in status:
            new["meshBefore"] = status["meshBefore"]
        if topology is not None:
            new["topology"] = topology
        if rrs is not None:
            new["routeReflectors"] = rrs
            new["bgpPeers"] = sum(
                1
                for p in self.informers["bgppeers"].items().values()
                if core.COMPANION_LABEL not in ((p.get("metadata") or {}).get("labels") or {})
                and core.BRIDGE_LABEL not in ((p.get("metadata") or {}).get("labels") or {})
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
            reason=_reason,
            extra={"observedGeneration": new["observedGeneration"]},
        )
        # A None value deletes the field (merge patch); absent stays absent.
        new = {k: v for k, v in new.items() if v is not None or k in old}
        merged = {**old, **new}
        if merged == old:
            return
        self._patch_status(cfg, new)

    def _event(self, cfg: Mapping[str, Any], etype: str, reason: str, message: str) -> None:
        key = (reason, message)
        if key == self._last_event:
            return  # the same news again is noise
        self._last_event = key
        meta = cfg.get("metadata") or {}
        now = format_timestamp(float(int(time.time())))
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta.get('name', 'config')}.", "namespace": "default"},
            "involvedObject": {
                "apiVersion": CONFIG_API,
                "kind": CRD_KIND,
                "name": meta.get("name"),
                "uid": meta.get("uid"),
            },
            "reason": reason,
            "message": message[:1024],
            "type": etype,
            "source": {"component": "calico-rr"},
            "reportingComponent": "calico-rr",
            "reportingInstance": self.identity,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            self.client.create(api_path("v1", "events", namespace="default"), body)
        except ApiError as exc:
            log.warning("could not record event %s: %s", reason, exc)

    def _add_finalizer(self, cfg: dict[str, Any]) -> None:
        meta = cfg.get("metadata") or {}
        finalizers = [*(meta.get("finalizers") or []), FINALIZER]
        patch = {
            "metadata": {"finalizers": finalizers, "resourceVersion": meta.get("resourceVersion")}
        }
        result = self.client.patch(self._config_path(cfg), patch, patch_type="merge")
        self.informers["config"].store(result)
        cfg.update(result)

    def _remove_finalizer(self, cfg: dict[str, Any]) -> None:
        meta = cfg.get("metadata") or {}
        finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        patch = {
            "metadata": {"finalizers": finalizers, "resourceVersion": meta.get("resourceVersion")}
        }
        with contextlib.suppress(NotFound):
            self.client.patch(self._config_path(cfg), patch, patch_type="merge")


def _reason(text: str) -> str:
    """A CamelCase condition reason (the API requires ``^[A-Za-z]([A-Za-z0-9_,:]*...)$``)."""
    clean = "".join(ch for ch in text.title() if ch.isalnum())
    return clean or "Unknown"


def uninstall(
    client: KubeClient,
    *,
    config_name: str = CONFIG_NAME,
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    poll: float = 0.5,
) -> str:
    """``calico-rr uninstall``: mark the config deleted (the finalizer keeps it) and
    drive the uninstall steps to the end in this process - idempotent with a
    running operator doing the same.  Returns a summary line."""
    op = Operator(client, env=env, config_name=config_name, leader_election=False)
    op._discover()
    path = api_path(CONFIG_API, CRD_PLURAL, config_name)
    cfg = client.get(path)
    if cfg is None:
        raise ConfigError(f"no {CRD_KIND} named {config_name!r}: nothing to uninstall")
    if FINALIZER not in ((cfg.get("metadata") or {}).get("finalizers") or []):
        client.patch(
            path,
            {"metadata": {"finalizers": [*(cfg["metadata"].get("finalizers") or []), FINALIZER]}},
        )
    client.delete(path)
    op._start_informers()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not op.synced:
                time.sleep(0.05)
                continue
            if op.informers["config"].get(config_name) is None:
                return "uninstalled: mesh restored, every calico-rr object removed"
            op.reconcile_once()
            time.sleep(
                poll
                if op._requeue_at is None
                else max(0.0, min(poll, op._requeue_at - time.monotonic()))
            )
            op._requeue_at = None
    finally:
        for inf in op.informers.values():
            inf.stop()
    raise TimeoutError(f"uninstall did not finish in {timeout:.0f}s: {op.stats.last_message}")


__all__ = ["FINALIZER", "Operator", "choose_api_group", "node_state", "owned_fields", "uninstall"]
