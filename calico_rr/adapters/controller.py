"""The operator's pass, written once over small ports (issue 15 item 1).

One level-triggered reconcile, the same on every datastore::

    config  --Store.config()-->  spec, generation, deleting?
    caches  --Store.observed()-->  Observed  --core.reconcile / core.uninstall-->  Decision
    Decision  --Writer, in the order the Decision prescribes-->  the datastore
    phase, counts, conditions  --StatusSink-->  the config's status, Events

A datastore provides the ports and nothing of the pass:

* :class:`Store` reads what the reconcile needs from its caches;
* :class:`Writer` applies one write at a time (server-side apply on Kubernetes;
  compare-and-swap fenced on the leader's lease on etcd) and raises
  :class:`PassEnded` when the datastore changed under it, :class:`NotLeader` when
  leadership went;
* :class:`StatusSink` holds the status (a subresource on Kubernetes, a key on etcd)
  and records events;
* an elector (``is_leader``) decides who runs the pass at all.

The loop around the pass (coalescing, requeue, backoff) is
:class:`~calico_rr.adapters.runtime.ReconcileLoop`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from calico_rr.adapters.election import Elector
from calico_rr.adapters.runtime import ReconcileLoop, conditions
from calico_rr.core import operator as core
from calico_rr.core.operator.preview import preview
from calico_rr.core.operator.settings import OperatorSettings, settings_from_spec
from calico_rr.core.planning.config import ApiGroup
from calico_rr.errors import ConfigError

log = logging.getLogger(__name__)

#: Phases announced as events when the operator enters them.
_ANNOUNCED = frozenset({core.Phase.MAKING, core.Phase.BREAKING, core.Phase.MESH_OFF})


class PassEnded(Exception):
    """A write found the datastore changed since the caches were read (a
    compare-and-swap failed): the cache holds the fresh value; decide again."""


class NotLeader(PassEnded):
    """Leadership was lost during the pass: write nothing more."""


@dataclass(frozen=True, slots=True)
class ConfigRecord:
    """The operator's config as the pass needs it."""

    spec: Any
    generation: int | None
    #: uninstall requested (a deletion timestamp)
    deleting: bool


class Store(Protocol):
    """Reads, from warm caches, everything one pass needs."""

    #: the datastore's own error type: a failed pass, not a bug
    errors: tuple[type[Exception], ...]

    @property
    def api_group(self) -> ApiGroup:
        """The Calico API group the settings are read for."""
        ...

    def config(self) -> ConfigRecord | None:
        """None when there is no config; ConfigError when it does not decode."""
        ...

    def no_config(self) -> str:
        """The message for a pass without a config."""
        ...

    def observed(self, transition: Mapping[str, Any] | None) -> core.Observed: ...

    def plain_peer_count(self) -> int:
        """Our BGPPeers other than companions and bridges (status.bgpPeers)."""
        ...


class Writer(Protocol):
    """One write at a time, each written through to the cache it came from."""

    def check_leader(self) -> None:
        """Raise :class:`NotLeader` when this replica may no longer write."""
        ...

    def prepare(self, config: ConfigRecord) -> None:
        """Before a pass acts on ``config`` (Kubernetes: our finalizer on it)."""
        ...

    def apply_peer(self, obj: dict[str, Any], conflicts: list[str]) -> None: ...

    def delete_peer(self, name: str, conflicts: list[str]) -> None: ...

    def apply_node(self, change: core.NodeApply, conflicts: list[str]) -> None:
        """Called from several threads at once (a batch's nodes are independent)."""
        ...

    def apply_node_status(self, obj: dict[str, Any], conflicts: list[str]) -> None: ...

    def delete_node_status(self, name: str, conflicts: list[str]) -> None: ...

    def set_mesh(self, mesh: bool) -> None: ...

    def finish_uninstall(self) -> bool:
        """Remove what keeps the config (and its status); False when something
        changed meanwhile and the next pass should try again."""
        ...


class StatusSink(Protocol):
    """The config's status and the operator's events."""

    #: conditions carry observedGeneration (Kubernetes' convention)
    generation_in_conditions: bool

    def reason(self, text: str) -> str:
        """A condition reason from a phase (Kubernetes wants CamelCase)."""
        ...

    def current(self) -> dict[str, Any]:
        """The status as last read or written."""
        ...

    def write(self, fields: Mapping[str, Any], *, end_pass: bool) -> None:
        """Merge ``fields`` into the status; a None value removes a field.
        ``end_pass``: a write the rest of the pass relies on (raise PassEnded on a
        conflict); otherwise a conflict only requeues."""
        ...

    def event(self, etype: str, reason: str, message: str) -> None: ...


class Controller(ReconcileLoop):
    """The pass over the ports; a datastore adapter sets ``store``, ``writer``,
    ``status_sink``, ``elector``, ``env``, ``clock``, ``metrics``, ``health``."""

    store: Store
    writer: Writer
    status_sink: StatusSink
    elector: Elector | None
    env: Mapping[str, str]
    clock: Callable[[], float]
    _pool: ThreadPoolExecutor
    _session_key: object = None
    #: the config's generation seen by the pass under way (status's observedGeneration)
    _generation: int | None = None

    @property
    def is_leader(self) -> bool:
        return self.elector is None or self.elector.is_leader

    def _configured_debounce(self) -> float:
        cfg = self.store.config()
        if cfg is None:
            raise LookupError("no config")
        return self.settings_for(cfg.spec).debounce

    def settings_for(self, spec: Any) -> OperatorSettings:
        """The settings a config's ``spec`` gives with this replica's environment."""
        return settings_from_spec(spec, env=self.env, api_group=self.store.api_group)

    def after_pass(self, settings: OperatorSettings) -> None:
        """What a datastore adds after a pass that reconciled (Kubernetes: Typha)."""

    # -- one pass ------------------------------------------------------------------------

    def reconcile_once(self) -> core.Decision | None:
        start = time.perf_counter()
        self.stats.last_start = time.monotonic()
        status = dict(self.status_sink.current())
        self._generation = None
        decision: core.Decision | None = None
        try:
            try:
                cfg = self.store.config()
            except ConfigError as exc:
                self._invalid(status, str(exc))
                return None
            if cfg is None:
                self._record("NoConfig", self.store.no_config())
                return None
            self._generation = cfg.generation
            if cfg.deleting:
                decision = self._uninstall_step(cfg, status)
            else:
                decision = self._reconcile_config(cfg, status)
            self._failures = 0
            self.metrics.reconciles.labels("ok").inc()
        except NotLeader:
            log.info("lost leadership during the pass; the new leader decides")
        except PassEnded as exc:
            self.stats.conflicts += 1
            self.metrics.reconciles.labels("conflict").inc()
            log.info("pass ended: %s; deciding again on the fresh state", exc)
            self._requeue(0.0)
        except Exception as exc:  # a bug must not kill the loop: report, back off, retry
            if isinstance(exc, self.store.errors):
                message = str(exc)
            else:
                log.exception("reconcile crashed")
                message = f"internal error: {type(exc).__name__}: {exc}"
            delay = self._pass_failed(message)
            log.warning("reconcile failed: %s; retrying in %.1fs", message, delay)
            with contextlib.suppress(Exception):
                self._write_status(status, phase="Error", message=message, degraded=message)
        finally:
            self.metrics.reconcile_seconds.observe(time.perf_counter() - start)
            self.stats.reconciles += 1
            self.stats.last_end = time.monotonic()
        return decision

    def _reconcile_config(self, cfg: ConfigRecord, status: dict[str, Any]) -> core.Decision | None:
        try:
            settings = self.settings_for(cfg.spec)
        except ConfigError as exc:
            self.writer.prepare(cfg)
            self._invalid(status, str(exc))
            return None
        if not settings.paused:
            # Paused writes nothing but its status (issue 16), not even the finalizer:
            # with nothing written there is nothing for an uninstall to undo.
            self.writer.prepare(cfg)
        obs = self.store.observed(status.get("transition"))
        decision = core.reconcile(obs, settings)
        if settings.paused:
            # What the operator would do, published instead of done.
            shown = preview(obs, settings)
            decision.message = f"paused by spec.paused; would: {shown.summary()}"
            status["_preview"] = shown.to_status()
        status.setdefault("meshBefore", obs.mesh_enabled)
        self._execute(decision, status)
        self._after(decision, status, obs)
        self.after_pass(settings)
        return decision

    def _invalid(self, status: dict[str, Any], message: str) -> None:
        self._record("InvalidConfig", message)
        self._write_status(status, phase="InvalidConfig", message=message, invalid=message)
        self.status_sink.event("Warning", "InvalidConfig", message)

    def uninstall_inputs(
        self, cfg: ConfigRecord, status: Mapping[str, Any]
    ) -> tuple[core.Observed, OperatorSettings, bool | None]:
        """What an uninstall step is decided on: the observed state, the settings and
        the mesh setting from before calico-rr (``status.meshBefore``)."""
        try:
            settings = self.settings_for(cfg.spec)
        except ConfigError:  # an invalid config is still uninstalled, with the defaults
            settings = settings_from_spec({}, env={}, api_group=self.store.api_group)
        obs = self.store.observed(status.get("transition"))
        mesh_before = status.get("meshBefore")
        return obs, settings, mesh_before if isinstance(mesh_before, bool) else None

    def _uninstall_step(self, cfg: ConfigRecord, status: dict[str, Any]) -> core.Decision:
        obs, settings, mesh_before = self.uninstall_inputs(cfg, status)
        decision = core.uninstall(obs, settings, mesh_before=mesh_before)
        self._execute(decision, status)
        self._record(decision.phase.value, decision.message)
        if decision.phase == core.Phase.UNINSTALLED and not decision.writes:
            if self.writer.finish_uninstall():
                self.status_sink.event(
                    "Normal", "Uninstalled", "mesh restored, calico-rr objects removed"
                )
            else:
                self._wake.set()
        elif decision.requeue_after is not None:
            self._requeue(decision.requeue_after)
        elif decision.writes:
            self._wake.set()
        return decision

    # -- executing a decision (the order core.Decision prescribes) -------------------------

    def _execute(self, d: core.Decision, status: dict[str, Any]) -> None:
        w = self.writer
        w.check_leader()  # lost leadership since the pass began: the new leader decides
        conflicts: list[str] = []
        if d.transition_set and d.transition is not None:
            status["transition"] = d.transition
            self.status_sink.write(
                {"transition": d.transition, "meshBefore": status.get("meshBefore")},
                end_pass=True,
            )
        for obj in d.peer_applies:
            w.apply_peer(obj, conflicts)
        self._apply_nodes(d.node_applies, conflicts)
        for name in d.peer_deletes:
            w.delete_peer(name, conflicts)
        for obj in d.node_status_applies:
            w.apply_node_status(obj, conflicts)
        for name in d.node_status_deletes:
            w.delete_node_status(name, conflicts)
        if d.mesh is not None:
            w.set_mesh(d.mesh)
            self.status_sink.event(
                "Normal",
                "MeshEnabled" if d.mesh else "MeshDisabled",
                "node-to-node mesh " + ("switched on" if d.mesh else "switched off"),
            )
        if d.transition_set and d.transition is None:
            status["transition"] = None
        if conflicts:
            msg = "fields owned by another manager: " + "; ".join(conflicts[:3])
            self.status_sink.event("Warning", "Conflict", msg)
            status["_degraded"] = msg

    def _apply_nodes(self, changes: Sequence[core.NodeApply], conflicts: list[str]) -> None:
        """A batch's node writes are independent (each is atomic and every subset of
        the batch is a safe state), so they go out in parallel; what follows them
        waits for all.  The first error fails the pass."""
        ended: list[PassEnded] = []

        def one(change: core.NodeApply) -> None:
            try:
                self.writer.apply_node(change, conflicts)
            except PassEnded as exc:
                ended.append(exc)

        if len(changes) > 1:
            for future in [self._pool.submit(one, c) for c in changes]:
                future.result()
        else:
            for change in changes:
                one(change)
        if ended:
            raise ended[0]

    def _after(self, d: core.Decision, status: dict[str, Any], obs: core.Observed) -> None:
        counts = core.summary_counts(d, obs)
        self.metrics.route_reflectors.set(counts["routeReflectors"])
        self.metrics.bgppeers.set(len(obs.peers))
        self.metrics.nodes.set(len(obs.nodes))
        self.metrics.transitions.set(counts["inTransition"])
        if d.plan is not None:
            self._session_metrics(d)
        degraded = status.pop("_degraded", None)
        if d.phase == core.Phase.BLOCKED:
            degraded = d.message
        if not degraded and d.plan is not None and d.plan.degrading:
            degraded = "; ".join(d.plan.warnings)
        self._write_status(
            status,
            phase=d.phase.value,
            message=d.message,
            degraded=degraded,
            topology=d.plan.topology if d.plan is not None else None,
            rrs=counts["routeReflectors"],
            mesh=(obs.mesh_enabled if d.mesh is None else d.mesh),
            preview=status.pop("_preview", None),
        )
        prev_phase = self.stats.last_phase
        self._record(d.phase.value, d.message)
        self._track_steady(d.phase)
        if d.phase.value != prev_phase and d.phase in _ANNOUNCED:
            self.status_sink.event("Normal", d.phase.value, d.message)
        if d.requeue_after is not None:
            self._requeue(d.requeue_after)
        elif d.writes or d.transition_set:
            self._wake.set()  # the next batch, on the caches our writes went through to

    def _session_metrics(self, d: core.Decision) -> None:
        """Sessions per RR, recomputed only when the RR set or the rules change."""
        assert d.plan is not None
        layout = d.plan.layout
        key = (tuple(sorted(layout.holders.items())), layout.rules, len(d.plan.nodes))
        if key == self._session_key:
            return
        self._session_key = key
        try:
            by_family = core.rr_peer_addresses_by_family(d.plan)
        except Exception:  # metrics must never break the reconcile
            log.exception("session metrics failed")
            return
        # Per BGP daemon, as plan and doctor count them (the budget is per daemon): a
        # dual-stack RR's BIRD and bird6 each hold their family's sessions; the larger.
        per_rr: dict[str, int] = {}
        for expected in by_family.values():
            for rr, ips in expected.items():
                per_rr[rr] = max(per_rr.get(rr, 0), len(ips))
        counts = list(per_rr.values()) or [0]
        self.metrics.sessions_per_rr.labels("min").set(min(counts))
        self.metrics.sessions_per_rr.labels("max").set(max(counts))
        self.metrics.sessions_per_rr.labels("mean").set(sum(counts) / len(counts))

    # -- status ----------------------------------------------------------------------------

    def _write_status(
        self,
        status: Mapping[str, Any],
        *,
        phase: str,
        message: str,
        degraded: str | None = None,
        invalid: str | None = None,
        topology: str | None = None,
        rrs: int | None = None,
        mesh: bool | None = None,
        preview: dict[str, Any] | None = None,
    ) -> None:
        """The status for this pass, written only when it changed (``preview``: a
        paused operator's plan; None removes it)."""
        sink = self.status_sink
        old = sink.current()
        if phase == core.Phase.APPLYING.value and old.get("phase") == core.Phase.STEADY.value:
            # A join or an RR replaced in steady state: one node write, no status churn.
            phase, message = core.Phase.STEADY.value, str(old.get("message", message))
        new: dict[str, Any] = {
            "phase": phase,
            "message": message[:1000],
            "transition": status.get("transition"),
        }
        if self._generation is not None:
            new["observedGeneration"] = self._generation
        if "meshBefore" in status:
            new["meshBefore"] = status["meshBefore"]
        if topology is not None:
            new["topology"] = topology
        if rrs is not None:
            new["routeReflectors"] = rrs
            new["bgpPeers"] = self.store.plain_peer_count()
        if mesh is not None:
            new["meshEnabled"] = mesh
        new["preview"] = preview
        extra = {"observedGeneration": self._generation} if sink.generation_in_conditions else {}
        new["conditions"] = conditions(
            old.get("conditions"),
            phase=phase,
            message=message,
            degraded=degraded,
            invalid=invalid,
            now=self.clock(),
            reason=sink.reason,
            extra=extra,
        )
        # A None value removes the field; absent stays absent.
        new = {k: v for k, v in new.items() if v is not None or k in old}
        merged = {k: v for k, v in {**old, **new}.items() if v is not None}
        if merged == {k: v for k, v in old.items() if v is not None}:
            return
        sink.write(new, end_pass=False)
