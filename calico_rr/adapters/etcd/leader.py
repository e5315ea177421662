"""Leader election on etcd: a lease plus a key created only if absent.

Each replica competes for one key (``/calico-rr/leader`` by default).  A round:

* **Follower.**  Read the key.  If it exists, someone leads: wait.  If not, grant
  a lease (TTL ``lease_duration``) and create the key with a transaction
  "create only if the key's mod revision is 0", the value being our identity and
  the key attached to the lease.  At most one replica's transaction succeeds.
* **Leader.**  Keep the lease alive and check the key still carries our lease.
  A keepalive answered with TTL 0 (the lease expired or was revoked, which also
  deleted the key) or a key that is gone or not ours means leadership is lost at
  once.  A leader that cannot reach etcd keeps leading until ``renew_deadline``
  (2/3 of the TTL) after its last successful keepalive, then steps down by
  itself - before the lease can expire and another replica take over.

A graceful :meth:`EtcdLeaderElector.stop` revokes the lease, which deletes the key,
so a follower takes over within one ``retry_period``; a killed leader's lease
expires after the TTL.  The interface is the one of
:class:`calico_rr.adapters.kube.leader.LeaderElector`, so the operator runtime can
use either.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable

from calico_rr.adapters.etcd.client import (
    Conflict,
    EtcdClient,
    EtcdError,
    LeaseNotFound,
)

log = logging.getLogger(__name__)

DEFAULT_KEY = "/calico-rr/leader"

__all__ = ["DEFAULT_KEY", "EtcdLeaderElector"]


class EtcdLeaderElector:
    def __init__(
        self,
        client: EtcdClient,
        *,
        identity: str,
        key: str = DEFAULT_KEY,
        lease_duration: float = 15.0,
        renew_deadline: float | None = None,
        retry_period: float | None = None,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not identity:
            raise ValueError("identity must not be empty")
        self.client = client
        self.key = key
        self.identity = identity
        self.ttl = max(1, math.ceil(lease_duration))
        self.lease_duration = float(self.ttl)
        self.renew_deadline = (
            renew_deadline if renew_deadline is not None else self.lease_duration * 2 / 3
        )
        self.retry_period = retry_period if retry_period is not None else self.lease_duration / 5
        if self.renew_deadline >= self.lease_duration:
            raise ValueError("renew_deadline must be shorter than lease_duration")
        self.on_change = on_change
        self.clock = clock
        #: times this replica took leadership over from another holder
        self.transitions = 0
        #: the lease we hold (leader) or hold ready (a follower that lost a race)
        self.lease_id: int | None = None
        #: who held the key when we last looked (None: nobody)
        self.holder: str | None = None
        self._holding = False
        self._leader = threading.Event()
        self._stop = threading.Event()
        self._last_renew = 0.0
        self._thread: threading.Thread | None = None

    # -- the interface shared with the Kubernetes elector ---------------------------

    @property
    def is_leader(self) -> bool:
        return self._leader.is_set()

    def wait_for_leadership(self, timeout: float | None = None) -> bool:
        return self._leader.wait(timeout)

    def start(self) -> EtcdLeaderElector:
        self._thread = threading.Thread(target=self._run, name="etcd-leader-election", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, release: bool = True) -> None:
        """Stop competing.  ``release``: revoke our lease (deleting the key) so that
        another replica takes over at once; without it the lease runs out by itself."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(max(5.0, self.retry_period * 2))
        if release and self.lease_id is not None:
            try:
                self.client.revoke(self.lease_id)
            except LeaseNotFound:
                pass
            except EtcdError as exc:
                log.warning("releasing leader lease %x: %s", self.lease_id, exc)
            self.lease_id = None
        self._holding = False
        self._set(False)

    def try_acquire_or_renew(self) -> bool:
        """One election round; True when this replica leads afterwards."""
        if self._holding and self.lease_id is not None:
            return self._renew(self.lease_id)
        return self._acquire()

    def fenced(self) -> None:
        """A write fenced on our lease was refused by etcd: the key is not ours any
        more.  Step down now instead of at the next renewal."""
        self._lost()
        self._set(False)

    # -- internals --------------------------------------------------------------

    def _renew(self, lease_id: int) -> bool:
        if self.client.keepalive(lease_id) <= 0:
            log.warning("leader lease %x is gone (expired or revoked)", lease_id)
            self._lost()
            return False
        kv = self.client.get(self.key)
        if kv is None or kv.lease != lease_id:
            self.holder = kv.value.decode(errors="replace") if kv is not None else None
            log.warning("leader key %s is no longer ours (holder %s)", self.key, self.holder)
            self._lost()
            return False
        return True

    def _lost(self) -> None:
        self._holding = False
        if self.lease_id is not None:
            with contextlib.suppress(EtcdError):  # gone already, or it runs out by itself
                self.client.revoke(self.lease_id)
            self.lease_id = None

    def _acquire(self) -> bool:
        kv = self.client.get(self.key)
        if kv is not None:
            self.holder = kv.value.decode(errors="replace")
            if self.lease_id is not None and kv.lease == self.lease_id:
                self._holding = True  # our create went through, its answer was lost
                return True
            return False
        if self.lease_id is None or self.client.keepalive(self.lease_id) <= 0:
            self.lease_id = self.client.grant(self.ttl).id
        try:
            self.client.put_if(self.key, self.identity.encode(), 0, lease=self.lease_id)
        except Conflict as exc:
            current = exc.current
            self.holder = current.value.decode(errors="replace") if current else None
            return False
        if self.holder not in (None, self.identity):
            self.transitions += 1
        self.holder = self.identity
        self._holding = True
        return True

    def _set(self, leader: bool) -> None:
        if leader == self._leader.is_set():
            return
        if leader:
            self._leader.set()
            log.info("became leader", extra={"identity": self.identity, "key": self.key})
        else:
            self._leader.clear()
            log.warning("lost leadership", extra={"identity": self.identity, "key": self.key})
        if self.on_change is not None:
            self.on_change(leader)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = self.clock()
            try:
                ok = self.try_acquire_or_renew()
                failed = False
            except EtcdError as exc:
                log.warning("leader election on %s: %s", self.key, exc)
                ok, failed = False, True
            except Exception:
                # Never let the thread die: a dead elector would stay "leader"
                # while its lease runs out.
                log.exception("leader election on %s: unexpected error", self.key)
                ok, failed = False, True
            if ok:
                # The lease runs at least TTL from when the keepalive was sent.
                self._last_renew = started
                self._set(True)
            elif not failed or not self._holding:
                self._set(False)
            elif self.clock() - self._last_renew > self.renew_deadline:
                log.warning("no lease renewal for %.1fs: stepping down", self.renew_deadline)
                self._holding = False
                self._set(False)
            self._stop.wait(self.retry_period)
