"""Leader election on etcd: a lease plus a key created only if absent.

Each replica competes for one key (the operator's is ``/calico-rr/leader``).  A round:

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
expires after the TTL.  The election loop is the one both electors share
(:class:`calico_rr.adapters.election.Elector`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from calico_rr.adapters.election import Elector
from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.errors import Conflict, EtcdError, LeaseNotFound

log = logging.getLogger(__name__)


class EtcdLeaderElector(Elector):
    round_errors = (EtcdError,)
    step_down_on_loss = True

    def __init__(
        self,
        client: EtcdClient,
        *,
        identity: str,
        key: str,
        lease_duration: float = 15.0,
        renew_deadline: float | None = None,
        retry_period: float | None = None,
        on_change: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not identity:
            raise ValueError("identity must not be empty")
        self.ttl = max(1, math.ceil(lease_duration))
        super().__init__(
            identity=identity,
            lease_duration=float(self.ttl),
            renew_deadline=renew_deadline,
            retry_period=retry_period,
            on_change=on_change,
            monotonic=clock,
        )
        if self.renew_deadline >= self.lease_duration:
            raise ValueError("renew_deadline must be shorter than lease_duration")
        self.client = client
        self.key = key
        #: the lease we hold (leader) or hold ready (a follower that lost a race)
        self.lease_id: int | None = None
        #: who held the key when we last looked (None: nobody)
        self.holder: str | None = None
        self._holding = False

    def _holds_lease(self) -> bool:
        return self.lease_id is not None  # also a follower's lease held ready

    def _release(self) -> None:
        """Revoke our lease (deleting the key) so that another replica takes over
        at once."""
        assert self.lease_id is not None
        try:
            self.client.revoke(self.lease_id)
        except LeaseNotFound:
            pass
        except EtcdError as exc:
            log.warning("releasing leader lease %x: %s", self.lease_id, exc)
        self.lease_id = None

    def _stepped_down(self) -> None:
        self._holding = False

    def _log_extra(self) -> dict[str, Any]:
        return {"identity": self.identity, "key": self.key}

    def try_acquire_or_renew(self) -> bool:
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
