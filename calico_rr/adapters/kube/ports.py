"""The Kubernetes datastore's ports for the one controller (adapters/controller.py):
informers in, server-side apply out, the RouteReflectorConfig status subresource
and Events.

Each port reads the operator's informers and client when called (not when
built), so a test may swap them."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from calico_rr.adapters.controller import ConfigRecord, NotLeader
from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.errors import ApiError, Conflict, NotFound
from calico_rr.adapters.kube.events import EventRecorder, Regarding
from calico_rr.adapters.kube.informer import Informer
from calico_rr.adapters.observe import Health
from calico_rr.core import operator as core
from calico_rr.core.formats.scalars import established_peers
from calico_rr.core.operator.settings import CRD_GROUP, CRD_KIND, CRD_PLURAL, CRD_VERSION
from calico_rr.core.planning.config import ApiGroup
from calico_rr.model import ANN_CLUSTER_ID

FINALIZER = f"{CRD_GROUP}/uninstall"
CONFIG_API = f"{CRD_GROUP}/{CRD_VERSION}"


class Host(Protocol):
    """What the ports use of the operator that holds them (kube/operator.py)."""

    client: KubeClient
    informers: dict[str, Informer]
    config_name: str
    api_group: ApiGroup
    node_status_supported: bool
    health: Health
    clock: Callable[[], float]
    events: EventRecorder

    @property
    def is_leader(self) -> bool: ...

    def _count(self, kind: str) -> None: ...


def node_bgp_status(obj: Mapping[str, Any]) -> tuple[str, core.NodeBGPStatus]:
    """(node name, BGP sessions) of a CalicoNodeStatus object."""
    spec = obj.get("spec") or {}
    bgp = (obj.get("status") or {}).get("bgp")
    if not isinstance(bgp, Mapping):
        return str(spec.get("node") or ""), core.NodeBGPStatus(False)
    return str(spec.get("node") or ""), core.NodeBGPStatus(True, established_peers(bgp))


class KubeStore:
    errors: tuple[type[Exception], ...] = (ApiError,)

    def __init__(self, op: Host) -> None:
        self.op = op

    @property
    def api_group(self) -> ApiGroup:
        return self.op.api_group

    def config(self) -> ConfigRecord | None:
        cfg = self.op.informers["config"].get(self.op.config_name)
        if cfg is None:
            return None
        meta = cfg.get("metadata") or {}
        generation = meta.get("generation")
        return ConfigRecord(
            cfg.get("spec"),
            generation if isinstance(generation, int) else None,
            bool(meta.get("deletionTimestamp")),
        )

    def no_config(self) -> str:
        return f"no {CRD_KIND} named {self.op.config_name!r}: idle"

    def observed(self, transition: Mapping[str, Any] | None) -> core.Observed:
        informers = self.op.informers
        cfg = informers["bgpconfig"].get("default")
        mesh = (cfg or {}).get("spec", {}).get("nodeToNodeMeshEnabled")
        statuses: dict[str, core.NodeBGPStatus] = {}
        cns_names: set[str] = set()
        if "cns" in informers:
            for name, obj in informers["cns"].items().items():
                cns_names.add(name)
                node, status = node_bgp_status(obj)
                statuses[node] = status
        return core.Observed(
            nodes=informers["nodes"].items(),
            peers=informers["bgppeers"].items(),
            mesh_enabled=mesh is not False,
            transition=transition,
            node_status=statuses,
            node_status_objects=frozenset(cns_names),
            node_status_supported=self.op.node_status_supported,
            now=self.op.clock(),
        )

    def plain_peer_count(self) -> int:
        plain = 0
        for peer in self.op.informers["bgppeers"].items().values():
            labels = (peer.get("metadata") or {}).get("labels") or {}
            if core.COMPANION_LABEL not in labels and core.BRIDGE_LABEL not in labels:
                plain += 1
        return plain


class KubeWriter:
    """Server-side apply with one field manager, each result stored in its informer."""

    def __init__(self, op: Host) -> None:
        self.op = op

    def _set_finalizers(self, meta: Mapping[str, Any], finalizers: list[str]) -> dict[str, Any]:
        """Merge-patch the config's finalizers, at the resourceVersion read."""
        patch = {
            "metadata": {"finalizers": finalizers, "resourceVersion": meta.get("resourceVersion")}
        }
        path = api_path(CONFIG_API, CRD_PLURAL, self.op.config_name)
        return self.op.client.patch(path, patch, patch_type="merge")

    def check_leader(self) -> None:
        if not self.op.is_leader:
            raise NotLeader("lost the Lease: writing nothing more")

    def prepare(self, config: ConfigRecord) -> None:
        cfg = self.op.informers["config"].get(self.op.config_name) or {}
        meta = cfg.get("metadata") or {}
        if FINALIZER in (meta.get("finalizers") or []):
            return
        finalizers = [*(meta.get("finalizers") or []), FINALIZER]
        self.op.informers["config"].store(self._set_finalizers(meta, finalizers))

    def _path(self, plural: str, name: str) -> str:
        return api_path(self.op.api_group, plural, name)

    def apply_peer(self, obj: dict[str, Any], conflicts: list[str]) -> None:
        name = str(obj["metadata"]["name"])
        self.op.informers["bgppeers"].store(self.op.client.apply(self._path("bgppeers", name), obj))
        self.op._count("bgppeer")

    def delete_peer(self, name: str, conflicts: list[str]) -> None:
        self.op.client.delete(self._path("bgppeers", name))
        self.op.informers["bgppeers"].forget(name)
        self.op._count("bgppeer-delete")

    def apply_node(self, change: core.NodeApply, conflicts: list[str]) -> None:
        path = api_path("v1", "nodes", change.name)
        client = self.op.client
        # Read before the write: the write's own watch event may refresh the cache
        # before the write returns.
        before = self.op.informers["nodes"].get(change.name)
        try:
            result = client.apply(path, change.body())
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
            if exc.status == 403 and client.get(path) is None:
                return
            raise
        self.op.informers["nodes"].store(result)
        self.op._count("node")
        self._rr_event(before, result)
        self.op.health.beat()  # a long batch is progress, not a hung loop

    def _rr_event(self, before: Any, after: Mapping[str, Any]) -> None:
        """An Event on the Node when it becomes or stops being a route reflector
        (its cluster ID annotation, which is what makes calico-node reflect)."""
        was = isinstance(before, core.NodeState) and ANN_CLUSTER_ID in before.node.annotations
        meta = after.get("metadata") or {}
        cluster_id = (meta.get("annotations") or {}).get(ANN_CLUSTER_ID)
        if was == (cluster_id is not None):
            return
        node = Regarding("v1", "Node", str(meta.get("name")), meta.get("uid"))
        if cluster_id is not None:
            note = f"route reflector with cluster ID {cluster_id}"
            self.op.events.record(node, "Normal", "RouteReflectorAdded", "Promote", note)
        else:
            note = "no longer a route reflector (a client of the route reflectors)"
            self.op.events.record(node, "Normal", "RouteReflectorRemoved", "Demote", note)

    def apply_node_status(self, obj: dict[str, Any], conflicts: list[str]) -> None:
        if "cns" not in self.op.informers:
            return
        name = str(obj["metadata"]["name"])
        path = self._path("caliconodestatuses", name)
        self.op.informers["cns"].store(self.op.client.apply(path, obj))
        self.op._count("caliconodestatus")

    def delete_node_status(self, name: str, conflicts: list[str]) -> None:
        if "cns" not in self.op.informers:
            return
        self.op.client.delete(self._path("caliconodestatuses", name))
        self.op.informers["cns"].forget(name)
        self.op._count("caliconodestatus-delete")

    def set_mesh(self, mesh: bool) -> None:
        body = {
            "apiVersion": self.op.api_group,
            "kind": "BGPConfiguration",
            "metadata": {"name": "default"},
            "spec": {"nodeToNodeMeshEnabled": mesh},
        }
        # The one field we take over from whoever set it; its old value is in
        # status.meshBefore and is restored on uninstall.
        path = self._path("bgpconfigurations", "default")
        self.op.informers["bgpconfig"].store(self.op.client.apply(path, body, force=True))
        self.op._count("bgpconfiguration")

    def finish_uninstall(self) -> bool:
        """Our finalizer off the config: the API server then deletes it."""
        cfg = self.op.informers["config"].get(self.op.config_name) or {}
        meta = cfg.get("metadata") or {}
        finalizers = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        with contextlib.suppress(NotFound):
            self._set_finalizers(meta, finalizers)
        return True


class KubeStatus:
    """The config's status subresource (merge patches) and its Events
    (events.k8s.io/v1, a repeat counted in the Event's series: adapters/kube/events.py)."""

    generation_in_conditions = True

    def __init__(self, op: Host) -> None:
        self.op = op

    def _config(self) -> dict[str, Any]:
        return self.op.informers["config"].get(self.op.config_name) or {}

    def reason(self, text: str) -> str:
        """A CamelCase condition reason (the API requires ``^[A-Za-z]([A-Za-z0-9_,:]*...)$``)."""
        return "".join(ch for ch in text.title() if ch.isalnum()) or "Unknown"

    def current(self) -> dict[str, Any]:
        return dict(self._config().get("status") or {})

    def write(self, fields: Mapping[str, Any], *, end_pass: bool) -> None:
        path = api_path(CONFIG_API, CRD_PLURAL, self.op.config_name) + "/status"
        body = dict(fields)
        record = body.get("transition")
        if isinstance(record, Mapping):
            # A merge patch merges nested objects (RFC 7386): a key the new record
            # drops (a make state's madeAt, the break's oldPeeringsGone) is removed
            # only by a null, else the old value would stay beside the new record.
            old = self.current().get("transition")
            dropped = {k: None for k in old if k not in record} if isinstance(old, Mapping) else {}
            body["transition"] = {**dropped, **record}
        result = self.op.client.patch(path, {"status": body}, patch_type="merge")
        self.op.informers["config"].store(result)
        self.op._count("status")

    def event(self, etype: str, reason: str, message: str) -> None:
        meta = self._config().get("metadata") or {}
        name, uid = meta.get("name") or self.op.config_name, meta.get("uid")
        config = Regarding(CONFIG_API, CRD_KIND, str(name), str(uid) if uid else None)
        self.op.events.record(config, etype, reason, "Reconcile", message)
