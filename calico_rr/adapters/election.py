"""The election loop both electors share: a thread that runs one round every
``retry_period``, leads while its rounds succeed, and steps down by itself when
it has not renewed for ``renew_deadline`` - before its lease can expire and
another replica take over, so two replicas never write at once.

A datastore's elector provides the round (:meth:`Elector.try_acquire_or_renew`)
and its release; :class:`~calico_rr.adapters.kube.leader.LeaderElector` holds a
Kubernetes Lease, :class:`~calico_rr.adapters.etcd.leader.EtcdLeaderElector` an
etcd key on an etcd lease.  The operator only asks :attr:`Elector.is_leader`.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Elector(ABC):
    #: what a failed round raises (the datastore's own error): logged, retried
    round_errors: tuple[type[Exception], ...] = ()
    #: a round that answers "someone else leads" ends our leadership at once
    #: (etcd: the key is not ours); False keeps leading until the renew deadline,
    #: as client-go's renew loop does on Kubernetes
    step_down_on_loss = False

    def __init__(
        self,
        *,
        identity: str,
        lease_duration: float,
        renew_deadline: float | None,
        retry_period: float | None,
        on_change: Callable[[bool], None] | None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = (
            renew_deadline if renew_deadline is not None else lease_duration * 2 / 3
        )
        self.retry_period = retry_period if retry_period is not None else lease_duration / 5
        self.on_change = on_change
        self.monotonic = monotonic
        #: times this replica took leadership over from another holder
        self.transitions = 0
        self._leader = threading.Event()
        self._stop = threading.Event()
        self._last_renew = 0.0
        self._thread: threading.Thread | None = None

    @abstractmethod
    def try_acquire_or_renew(self) -> bool:
        """One election round; True when this replica leads afterwards."""

    def _holds_lease(self) -> bool:
        """Is there anything for :meth:`_release` to give up?"""
        return self.is_leader

    @abstractmethod
    def _release(self) -> None:
        """Give leadership up so that another replica takes over at once."""

    def _stepped_down(self) -> None:  # noqa: B027 - a hook; a Lease holds nothing to forget
        """Forget what a leader holds (renew deadline passed, or stopped)."""

    def _log_extra(self) -> dict[str, Any]:
        return {"identity": self.identity}

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    def wait_for_leadership(self, timeout: float | None = None) -> bool:
        return self._leader.wait(timeout)

    def start(self) -> Elector:
        name = f"leader-election-{type(self).__name__}"
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        return self

    def stop(self, *, release: bool = True) -> None:
        """Stop competing; ``release`` gives the lease up, else it runs out by itself."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(max(5.0, self.retry_period * 2))
        released = release and self._holds_lease()
        if released:
            self._release()
        self._stepped_down()
        # A stop is not a loss: nobody took over, nothing needs an operator's eye.
        self._set(
            False,
            stopping="leadership released (stopping)"
            if released
            else "leadership given up (stopping; the lease is not released)",
        )

    def _set(self, leader: bool, *, stopping: str = "") -> None:
        """Lead or not.  ``stopping`` is the message when :meth:`stop` ends
        leadership, logged at INFO: only a real loss is a WARNING."""
        if leader == self._leader.is_set():
            return
        if leader:
            self._leader.set()
            log.info("became leader", extra=self._log_extra())
        else:
            self._leader.clear()
            if stopping:
                log.info(stopping, extra=self._log_extra())
            else:
                log.warning("lost leadership", extra=self._log_extra())
        if self.on_change is not None:
            self.on_change(leader)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self.monotonic()
            try:
                ok, failed = self.try_acquire_or_renew(), False
            except self.round_errors as exc:
                log.warning("leader election (%s): %s", self.identity, exc)
                ok, failed = False, True
            except Exception:
                # Never let the thread die: a dead elector would stay "leader"
                # while its lease runs out.
                log.exception("leader election (%s): unexpected error", self.identity)
                ok, failed = False, True
            if ok:
                # the lease runs at least its duration from when the round began
                self._last_renew = started
                self._set(True)
            elif self.is_leader and not failed and self.step_down_on_loss:
                self._set(False)
            elif self.is_leader and self.monotonic() - self._last_renew > self.renew_deadline:
                log.warning("no lease renewal for %.1fs: stepping down", self.renew_deadline)
                self._stepped_down()
                self._set(False)
            self._stop.wait(self.retry_period)
