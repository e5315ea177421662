"""Lease-based leader election (``coordination.k8s.io/v1``).

Each replica tries to hold the Lease ``<namespace>/<name>``: it may take it when
the Lease is missing, released (no holder) or not renewed for
``leaseDurationSeconds``; the holder renews it every ``retry_period``.

"Not renewed" is measured the way client-go measures it, immune to clock skew
between replicas: a follower never compares the holder's ``renewTime`` (written
by the holder's clock) with its own wall clock.  It remembers the Lease record it
last saw and when it saw it change, on its own monotonic clock; the Lease has
expired when the record has not changed for ``leaseDurationSeconds`` since.  A
replica that starts next to an abandoned Lease therefore waits one full duration
before it takes it over - the price of never taking a live one.  Every
write uses the Lease's resourceVersion (optimistic concurrency), so two replicas
can never both win the same round.  A leader that cannot renew for
``renew_deadline`` steps down by itself, before its Lease can expire and a
follower take over; only the leader reconciles, so a follower writes nothing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from calico_rr.adapters.election import Elector
from calico_rr.adapters.kube.api import api_path
from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.errors import ApiError, Conflict

log = logging.getLogger(__name__)

#: The pod's namespace, in every pod that mounts its ServiceAccount token.
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
#: Out of a cluster, with neither $POD_NAMESPACE nor the file: deploy/'s namespace.
DEFAULT_LEASE_NAMESPACE = "calico-rr"


def lease_namespace(
    flag: str | None,
    env: Mapping[str, str] | None = None,
    service_account_file: Path = SERVICE_ACCOUNT_NAMESPACE,
) -> str:
    """Where the Lease lives: ``--namespace``, else $POD_NAMESPACE (the downward API
    in deploy/operator.yaml and the chart), else the pod's ServiceAccount namespace
    file, else ``calico-rr``.  The Lease belongs beside the pods that compete for it,
    so an install in another namespace needs no flag."""
    if flag:
        return flag
    variables = os.environ if env is None else env
    if variables.get("POD_NAMESPACE", "").strip():
        return variables["POD_NAMESPACE"].strip()
    try:
        text = service_account_file.read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    return text or DEFAULT_LEASE_NAMESPACE


def micro_time(seconds: float) -> str:
    """Kubernetes MicroTime: RFC 3339 with microseconds, UTC."""
    whole = int(seconds)
    micros = round((seconds - whole) * 1_000_000)
    if micros == 1_000_000:
        whole, micros = whole + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{micros:06d}Z"


class LeaderElector(Elector):
    round_errors = (ApiError,)

    def __init__(
        self,
        client: KubeClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float | None = None,
        retry_period: float | None = None,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            identity=identity,
            lease_duration=lease_duration,
            renew_deadline=renew_deadline,
            retry_period=retry_period,
            on_change=on_change,
            monotonic=monotonic,  # the renew deadline and another holder's expiry
        )
        self.client = client
        self.path = api_path("coordination.k8s.io/v1", "leases", name, namespace=namespace)
        self.collection = api_path("coordination.k8s.io/v1", "leases", namespace=namespace)
        self.name = name
        self.namespace = namespace
        self.clock = clock  # wall clock: only for the times written into the Lease
        self._seen_record: tuple[Any, ...] | None = None
        self._seen_at = 0.0

    def _spec(self, now: float, lease: dict[str, Any] | None) -> dict[str, Any]:
        old = (lease or {}).get("spec") or {}
        holder = old.get("holderIdentity")
        transitions = int(old.get("leaseTransitions") or 0)
        acquire = old.get("acquireTime")
        if holder != self.identity:
            # A new holder, also of a released Lease (empty holder), is a transition,
            # as client-go counts it; only the very first holder (no Lease yet) is not.
            transitions += 1 if lease is not None else 0
            acquire = micro_time(now)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": acquire,
            "renewTime": micro_time(now),
            "leaseTransitions": transitions,
        }

    def try_acquire_or_renew(self) -> bool:
        now = self.clock()
        lease = self.client.get(self.path)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now, None),
            }
            try:
                self.client.create(self.collection, body)
            except Conflict:
                return False
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        if holder and holder != self.identity and not self._expired(spec):
            return False  # someone else holds a live lease
        if holder != self.identity:
            self.transitions += 1
        lease["spec"] = self._spec(now, lease)
        try:
            self.client.replace(self.path, lease)
        except Conflict:
            return False
        return True

    def _expired(self, spec: dict[str, Any]) -> bool:
        """Has the record in ``spec`` stayed the same for its lease duration, as this
        replica's monotonic clock measures it since it first saw that record?"""
        record = tuple(sorted((k, str(v)) for k, v in spec.items()))
        now = self.monotonic()
        if record != self._seen_record:
            self._seen_record, self._seen_at = record, now
        try:
            duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        except (TypeError, ValueError):
            duration = self.lease_duration
        return now >= self._seen_at + duration

    def _release(self) -> None:
        try:
            lease = self.client.get(self.path)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            lease["spec"]["holderIdentity"] = ""
            lease["spec"]["renewTime"] = micro_time(self.clock() - self.lease_duration - 1)
            self.client.replace(self.path, lease)
        except ApiError as exc:
            log.warning("releasing lease: %s", exc)
