"""The operator runtime both datastores share: the reconcile loop, its
bookkeeping and the status conditions.

The Kubernetes operator (``adapters/kube/operator.py``) and the etcd operator
(``adapters/etcd/operator.py``) differ in how they watch, write and elect a
leader; what they do with time is the same and lives here once:

* :class:`ReconcileLoop` — the loop: wait for synced caches; as a follower do
  nothing; on becoming leader reconcile at once; then wake on an event (coalesced:
  hold back while events keep arriving, up to :data:`MAX_COALESCE`), on a requeue
  time, or every :data:`IDLE_RESYNC` seconds.  A subclass provides ``synced``,
  ``is_leader``, ``reconcile_once`` and ``_configured_debounce``.
* :class:`LoopStats`, the phase record (``calico_rr_phase``, log lines on change) and
  the error backoff (0.4 s doubling to 30 s).
* :func:`conditions` — Ready / Progressing / Degraded / InvalidConfig from a
  phase, with ``lastTransitionTime`` moving only when a condition's status does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from calico_rr.adapters.observe import Health, OperatorMetrics
from calico_rr.core import operator as core
from calico_rr.core.formats.scalars import format_timestamp
from calico_rr.errors import ConfigError

#: longest time events are coalesced into one pass (seconds)
MAX_COALESCE: Final = 1.0
#: node writes of one batch in flight at once
WRITE_WORKERS: Final = 8
#: a pass at least this often even without events (seconds)
IDLE_RESYNC: Final = 30.0

_PROGRESSING: Final = frozenset(
    {
        core.Phase.APPLYING.value,
        core.Phase.MAKING.value,
        core.Phase.CONFIRMING.value,
        core.Phase.BREAKING.value,
        core.Phase.MESH_OFF.value,
    }
)


@dataclass
class LoopStats:
    reconciles: int = 0
    writes: int = 0
    errors: int = 0
    #: compare-and-swap conflicts (etcd: a concurrent writer): passes ended early
    conflicts: int = 0
    #: etcd: writes refused because our leader key was no longer ours
    fenced: int = 0
    last_phase: str = ""
    last_message: str = ""
    steady_since: float | None = None
    #: monotonic times the last reconcile pass started and ended
    last_start: float = 0.0
    last_end: float = 0.0


class ReconcileLoop:
    """The loop and its bookkeeping; the datastore adapters subclass it."""

    log: logging.Logger
    metrics: OperatorMetrics
    health: Health

    def _init_loop(self) -> None:
        self.stats = LoopStats()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._requeue_at: float | None = None
        self._failures = 0

    # -- what a datastore adapter provides ---------------------------------------------

    @property
    def synced(self) -> bool:
        raise NotImplementedError

    @property
    def is_leader(self) -> bool:
        raise NotImplementedError

    def reconcile_once(self) -> core.Decision | None:
        raise NotImplementedError

    def _configured_debounce(self) -> float:
        """The config's debounce (seconds); ConfigError for an invalid config,
        LookupError for none."""
        raise NotImplementedError

    # -- the loop ------------------------------------------------------------------------

    def _start_loop(self, name: str) -> None:
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _stop_loop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30.0)

    def _loop(self) -> None:
        leading = False
        while not self._stop.is_set():
            self.health.beat()
            if not self.synced:
                self.health.set_ready(False, "caches not synced")
                self._stop.wait(0.05)
                continue
            self.health.set_ready(True, "leader" if self.is_leader else "follower")
            if not self.is_leader:
                leading = False
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            if not leading:
                # Just became leader: whatever happened while following (joins, a
                # half-done rollout of the previous leader) is handled right away.
                leading = True
                self._wake.clear()
                self._requeue_at = None
                self.reconcile_once()
                continue
            timeout = IDLE_RESYNC
            if self._requeue_at is not None:
                timeout = max(0.0, min(timeout, self._requeue_at - time.monotonic()))
            woke = self._wake.wait(timeout)
            if self._stop.is_set():
                break
            if woke:
                self._coalesce()
            if not self.is_leader:
                continue  # stepped down while waiting: write nothing
            self._wake.clear()
            self._requeue_at = None
            self.reconcile_once()

    def _coalesce(self) -> None:
        """Hold back while events keep arriving, up to MAX_COALESCE."""
        debounce = self._debounce()
        if debounce <= 0:
            return
        start = time.monotonic()
        while not self._stop.is_set():
            self._wake.clear()
            if not self._wake.wait(debounce) or time.monotonic() - start >= MAX_COALESCE:
                return

    def _debounce(self) -> float:
        try:
            return self._configured_debounce()
        except (ConfigError, LookupError):  # no config or an invalid one: the pass says so
            return 0.2

    def _requeue(self, delay: float) -> None:
        """Run a pass after ``delay`` seconds at the latest."""
        at = time.monotonic() + delay
        if self._requeue_at is None or at < self._requeue_at:
            self._requeue_at = at
        if delay <= 0:
            self._wake.set()

    # -- bookkeeping ---------------------------------------------------------------------

    def _record(self, phase: str, message: str) -> None:
        if phase != self.stats.last_phase:
            self.metrics.set_phase(phase)
        if (phase, message) != (self.stats.last_phase, self.stats.last_message):
            self.log.info(message, extra={"phase": phase})
        self.stats.last_phase = phase
        self.stats.last_message = message

    def _count(self, kind: str) -> None:
        self.stats.writes += 1
        self.metrics.writes.labels(kind).inc()

    def _pass_failed(self, message: str) -> float:
        """Count a failed pass, record phase Error and requeue with backoff (0.4 s
        doubling to 30 s); the delay."""
        self._failures += 1
        self.stats.errors += 1
        self.metrics.reconciles.labels("error").inc()
        delay = min(30.0, 0.2 * 2.0 ** min(self._failures, 8))
        self._record("Error", message)
        self._requeue(delay)
        return delay

    def _track_steady(self, phase: core.Phase) -> None:
        if phase != core.Phase.STEADY:
            self.stats.steady_since = None
        elif self.stats.steady_since is None:
            self.stats.steady_since = time.monotonic()


def conditions(
    old: Any,
    *,
    phase: str,
    message: str,
    degraded: str | None,
    invalid: str | None,
    now: float | None = None,
    reason: Callable[[str], str] = str,
    extra: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Ready / Progressing / Degraded / InvalidConfig for a status: a condition's
    ``lastTransitionTime`` moves only when its status does.  ``reason`` shapes
    reason strings (Kubernetes wants CamelCase); ``extra`` fields go on each
    condition (e.g. ``observedGeneration``)."""
    steady = phase == core.Phase.STEADY.value
    table = {
        "Ready": (steady and not degraded, phase, message),
        "Progressing": (phase in _PROGRESSING, phase, message),
        "Degraded": (bool(degraded), "Degraded" if degraded else "AsExpected", degraded or ""),
        "InvalidConfig": (bool(invalid), "InvalidConfig" if invalid else "Valid", invalid or ""),
    }
    before = {c.get("type"): c for c in old or [] if isinstance(c, dict)}
    stamp = format_timestamp(float(int(time.time() if now is None else now)))
    out = []
    for ctype, (value, why, msg) in table.items():
        st = "True" if value else "False"
        prev = before.get(ctype) or {}
        out.append(
            {
                "type": ctype,
                "status": st,
                "reason": reason(why),
                "message": msg[:1000],
                "lastTransitionTime": prev.get("lastTransitionTime", stamp)
                if prev.get("status") == st
                else stamp,
                **(extra or {}),
            }
        )
    return out
