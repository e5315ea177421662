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

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.errors import ApiError
from calico_rr.adapters.kube.events import EventRecorder
from calico_rr.adapters.kube.informer import Informer
from calico_rr.adapters.kube.leader import LeaderElector
from calico_rr.adapters.kube.ports import CONFIG_API, FINALIZER, KubeStatus, KubeStore, KubeWriter
from calico_rr.adapters.observe import Health, OperatorMetrics
from calico_rr.adapters.wiring import DatastoreOperator
from calico_rr.core import operator as core
from calico_rr.core.formats.kube import node_from_k8s
from calico_rr.core.operator import typha
from calico_rr.core.operator.settings import (
    CONFIG_NAME,
    CRD_KIND,
    CRD_PLURAL,
    OperatorSettings,
)
from calico_rr.core.planning.config import ApiGroup
from calico_rr.errors import ConfigError, InputError
from calico_rr.model import MANAGED_BY_LABEL, MANAGED_BY_VALUE, Node

log = logging.getLogger(__name__)

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


class Operator(DatastoreOperator):
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
        lease_duration: float = 15.0,
        renew_deadline: float | None = None,
        retry_period: float | None = None,
        leader_election: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.config_name = CONFIG_NAME
        self._init_replica(
            identity=identity, env=env, metrics=metrics, health=health, clock=clock, writers="write"
        )
        self.api_group: ApiGroup = "crd.projectcalico.org/v1"
        self.node_status_supported = False
        self._typha_state = typha.KeeperState()
        #: (node count, settings) of the keeper's last read, and when to read again
        self._typha_read: tuple[tuple[int, typha.TyphaSettings], float] | None = None
        self.informers: dict[str, Informer] = {}
        self.events = EventRecorder(client, instance=self.identity)
        self.store = KubeStore(self)
        self.writer = KubeWriter(self)
        self.status_sink = KubeStatus(self)
        if client.on_request is None:
            client.on_request = self.metrics.on_request
        self.elector: LeaderElector | None = None
        if leader_election:
            self.elector = LeaderElector(
                client,
                namespace=namespace,
                name="calico-rr",
                identity=self.identity,
                lease_duration=lease_duration,
                renew_deadline=renew_deadline,
                retry_period=retry_period,
                on_change=self._on_leadership,
            )

    # -- lifecycle -----------------------------------------------------------------

    def _start_caches(self) -> None:
        self._discover()
        self._start_informers()

    def stop(self, *, release: bool = True) -> None:
        self._stop_running(release=release)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _watched(self) -> list[Informer]:
        return list(self.informers.values())

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
        # What the keeper saw while leading before is stale: start its waits again.
        self._typha_state = typha.KeeperState()
        self._typha_read = None
        super()._on_leadership(leader)

    # -- the pass (adapters/controller.py) --------------------------------------------

    def after_pass(self, settings: OperatorSettings) -> None:
        self._keep_typha(settings)

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
                self.status_sink.write({"typha": None}, end_pass=False)
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
        new, event, next_read = self._typha_step(ts, nodes)
        self._typha_read = (key, time.monotonic() + next_read)
        if {k: v for k, v in new.items() if v is not None} == (old or {}):
            return
        self.status_sink.write({"typha": new}, end_pass=False)
        if event is not None:
            self.status_sink.event(*event, str(new["message"]))

    def _typha_step(
        self, ts: typha.TyphaSettings, nodes: int
    ) -> tuple[dict[str, Any], tuple[str, str] | None, float]:
        """Read the Deployment, and scale it when core.operator.typha says so and
        nobody else owns it: the status to record, the event to send (type, reason)
        and the seconds until the next read."""
        where = f"{ts.namespace}/{ts.name}"
        path = api_path("apps/v1", "deployments", ts.name, namespace=ts.namespace)
        new: dict[str, Any] = {"deployment": where, "nodes": nodes, "managedBy": None}
        new["target"] = typha.target_replicas(nodes)
        try:
            dep = self.client.get(path)
        except ApiError as exc:
            new.update(replicas=None, message=f"cannot read Deployment {where}: {exc}")
            return new, ("Warning", "TyphaError"), TYPHA_POLL
        if dep is None:
            new.update(replicas=None, message=f"Deployment {where} not found")
            return new, ("Warning", "TyphaNotFound"), TYPHA_POLL
        replicas = int((dep.get("spec") or {}).get("replicas", 1))
        new["replicas"] = replicas
        owner = typha.managed_by(dep)
        if owner is not None:
            self._typha_state = typha.KeeperState()
            new["managedBy"] = owner
            new["message"] = f"managed by {owner}: calico-rr leaves its replicas alone"
            return new, ("Normal", "TyphaManagedElsewhere"), TYPHA_POLL
        step = typha.decide(
            replicas,
            nodes,
            self.clock(),
            self._typha_state,
            settle=ts.settle,
            cool_down=ts.cool_down,
        )
        new["message"] = f"Deployment {where}: {step.message}"
        event: tuple[str, str] | None = None
        if step.replicas is None:
            self._typha_state = step.state
        else:
            try:
                self.client.patch(path + "/scale", {"spec": {"replicas": step.replicas}})
            except ApiError as exc:
                new["message"] = f"cannot scale Deployment {where}: {exc}"
                event = ("Warning", "TyphaError")
            else:
                self._typha_state = step.state
                new["replicas"] = step.replicas
                self._count("typha-scale")
                event = ("Normal", "TyphaScaled")
        if step.wait is None:
            return new, event, TYPHA_POLL
        self._requeue(step.wait)
        return new, event, min(TYPHA_POLL, step.wait)


def uninstall(
    client: KubeClient,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
    poll: float = 0.5,
) -> str:
    """``calico-rr uninstall``: mark the config deleted (the finalizer keeps it) and
    drive the uninstall steps to the end in this process - idempotent with a
    running operator doing the same.  Returns a summary line."""
    op = Operator(client, env=env, leader_election=False)
    path = api_path(CONFIG_API, CRD_PLURAL, CONFIG_NAME)
    cfg = client.get(path)
    if cfg is None:
        raise ConfigError(f"no {CRD_KIND} named {CONFIG_NAME!r}: nothing to uninstall")
    if FINALIZER not in ((cfg.get("metadata") or {}).get("finalizers") or []):
        client.patch(
            path,
            {"metadata": {"finalizers": [*(cfg["metadata"].get("finalizers") or []), FINALIZER]}},
        )
    client.delete(path)
    op.start_caches()
    try:
        return op.drive_uninstall(
            lambda: op.informers["config"].get(CONFIG_NAME) is None, timeout, poll
        )
    finally:
        op.stop_caches()
