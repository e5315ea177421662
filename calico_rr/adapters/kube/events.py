"""Events through ``events.k8s.io/v1``, with series counting.

The first occurrence of an event creates an Event object.  The same event again
(same regarding object, type, reason, action and note) within :data:`SERIES_WINDOW`
of its last occurrence is not a new object: the existing one gets ``series.count``
bumped and ``series.lastObservedTime`` set, by a merge PATCH - the behaviour of
client-go's events recorder, so ``kubectl events`` shows "x5 over 3m" instead of
five lines.  The note is part of the key because the API server keeps an Event's
note immutable: a different message is different news and gets its own Event.

Events about cluster-scoped objects (the RouteReflectorConfig, Nodes) live in the
``default`` namespace, the one the API server accepts for them.  Recording is best
effort: a failed write is logged and never fails the reconcile.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.errors import ApiError, NotFound
from calico_rr.adapters.kube.leader import micro_time

log = logging.getLogger(__name__)

EVENTS_API = "events.k8s.io/v1"
#: ``reportingController``: a qualified name, as the API server requires.
REPORTING_CONTROLLER = "calico-rr.io/operator"
#: A repeat this long after the last occurrence starts a new Event (client-go: 6 min).
SERIES_WINDOW = 360.0
#: Series remembered at most (the oldest are forgotten first).
MAX_SERIES = 1024
#: The namespace of Events about cluster-scoped objects.
CLUSTER_EVENTS_NAMESPACE = "default"
#: The API server's limits on an Event's note and reportingInstance.
NOTE_LIMIT = 1024
INSTANCE_LIMIT = 128


@dataclass(frozen=True, slots=True)
class Regarding:
    """The object an Event is about (``regarding``): cluster-scoped, as a Node and
    the RouteReflectorConfig are."""

    api_version: str
    kind: str
    name: str
    uid: str | None = None

    def ref(self) -> dict[str, Any]:
        ref: dict[str, Any] = {"apiVersion": self.api_version, "kind": self.kind, "name": self.name}
        if self.uid:
            ref["uid"] = self.uid
        return ref


@dataclass(slots=True)
class _Series:
    namespace: str
    name: str
    count: int
    last_seen: float  # monotonic


class EventRecorder:
    """Records Events for one operator replica (``instance``)."""

    def __init__(
        self,
        client: KubeClient,
        *,
        instance: str,
        window: float = SERIES_WINDOW,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.instance = instance[:INSTANCE_LIMIT] or "calico-rr"
        self.window = window
        self.clock = clock
        self.monotonic = monotonic
        self._series: OrderedDict[tuple[Any, ...], _Series] = OrderedDict()
        # Node writes run in parallel: one event (create or bump) at a time keeps
        # the count exact.
        self._lock = threading.Lock()
        self._last_stamp = 0

    def record(self, regarding: Regarding, etype: str, reason: str, action: str, note: str) -> None:
        note = note[:NOTE_LIMIT]
        key = (regarding, etype, reason, action, note)
        with self._lock:
            now = self.monotonic()
            self._forget_old(now)
            series = self._series.get(key)
            try:
                if series is not None and self._bump(series):
                    series.last_seen = now
                    self._series.move_to_end(key)
                    return
                self._series.pop(key, None)
                created = self._create(regarding, etype, reason, action, note)
            except ApiError as exc:
                log.warning("could not record event %s: %s", reason, exc)
                return
            meta = created.get("metadata") or {}
            self._series[key] = _Series(str(meta["namespace"]), str(meta["name"]), 1, now)
            while len(self._series) > MAX_SERIES:
                self._series.popitem(last=False)

    def _forget_old(self, now: float) -> None:
        while self._series:
            key, oldest = next(iter(self._series.items()))
            if now - oldest.last_seen < self.window:
                return
            del self._series[key]

    def _create(
        self, regarding: Regarding, etype: str, reason: str, action: str, note: str
    ) -> Mapping[str, Any]:
        namespace = CLUSTER_EVENTS_NAMESPACE
        body = {
            "apiVersion": EVENTS_API,
            "kind": "Event",
            # <object>.<hex nanoseconds>, as kubectl's events show them; the name
            # must be a DNS subdomain, which generateName's trailing "." is not.
            "metadata": {"name": self._name(regarding), "namespace": namespace},
            "eventTime": micro_time(self.clock()),
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self.instance,
            "action": action,
            "reason": reason,
            "regarding": regarding.ref(),
            "note": note,
            "type": etype,
        }
        created: Mapping[str, Any] = self.client.create(
            api_path(EVENTS_API, "events", namespace=namespace), body
        )
        return created

    def _name(self, regarding: Regarding) -> str:
        stamp = max(time.time_ns(), self._last_stamp + 1)  # unique within this replica
        self._last_stamp = stamp
        return f"{regarding.name[:200]}.{stamp:x}"

    def _bump(self, series: _Series) -> bool:
        """One more occurrence of ``series``; False when its Event is gone (expired:
        the API server keeps Events for an hour by default) and a new one is due."""
        count = series.count + 1
        patch = {"series": {"count": count, "lastObservedTime": micro_time(self.clock())}}
        path = api_path(EVENTS_API, "events", series.name, namespace=series.namespace)
        try:
            self.client.patch(path, patch, patch_type="merge")
        except NotFound:
            return False
        series.count = count
        return True
