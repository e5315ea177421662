"""Node health from the Kubernetes API for the operator on Calico's etcd.

Calico in etcd mode often runs on Kubernetes anyway: calico-node keeps its Calico
Node in etcd, while the kubelet keeps the Kubernetes Node's Ready condition, and
``kubectl cordon`` / taints / node deletion happen there.  With
``--node-health kubernetes`` the etcd operator takes every node's health from a
read-only informer on ``/api/v1/nodes`` (one LIST, then WATCH; RBAC: nodes get,
list, watch) instead of Felix's liveness reports; the layout itself still lives
in etcd only.  The match is by ``spec.orchRefs`` (``orchestrator: k8s``), else
by name (:func:`calico_rr.core.formats.etcd_nodes.k8s_node_name`).

The kubelet rewrites a Node's status often (heartbeats, images, addresses): only
a change of what route-reflector selection reads (conditions, taints, cordon,
deletion) wakes the operator.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.informer import Informer
from calico_rr.core.formats.kube import node_from_k8s
from calico_rr.errors import InputError
from calico_rr.model import Node

log = logging.getLogger(__name__)


def _health_of(node: Node | None) -> object:
    if node is None:
        return None
    return (
        tuple(sorted(node.conditions.items())),
        node.taints,
        node.unschedulable,
        node.deleting,
    )


class KubeNodeHealth:
    """Kubernetes Nodes by name, reduced to what health needs; calls ``on_change``
    when a node's health (or its existence) changes."""

    def __init__(self, client: KubeClient, *, on_change: Callable[[], None] | None = None):
        self.client = client
        self.on_change = on_change
        self._health: dict[str, object] = {}
        self._lock = threading.Lock()
        self.informer = Informer(
            client,
            api_path("v1", "nodes"),
            name="kube-nodes",
            transform=self._transform,
            on_event=self._on_event,
        )

    @staticmethod
    def _transform(obj: dict[str, Any]) -> Node | None:
        try:
            return node_from_k8s(obj)
        except InputError as exc:
            log.warning("Kubernetes node ignored for health: %s", exc)
            return None

    def _on_event(self, etype: str, key: str, value: Any) -> None:
        if etype == "SYNC":  # the first LIST: remember everyone's health
            with self._lock:
                self._health = {k: _health_of(v) for k, v in self.informer.items().items()}
            if self.on_change is not None:
                self.on_change()
            return
        health = None if etype == "DELETED" else _health_of(value)
        with self._lock:
            before = self._health.get(key, None)
            if etype == "DELETED":
                self._health.pop(key, None)
            else:
                self._health[key] = health
        if before != health and self.on_change is not None:
            self.on_change()

    def start(self) -> KubeNodeHealth:
        self.informer.start()
        return self

    def stop(self) -> None:
        self.informer.stop()

    @property
    def synced(self) -> bool:
        return self.informer.synced.is_set()

    def get(self, name: str) -> Node | None:
        value = self.informer.get(name)
        return value if isinstance(value, Node) else None
