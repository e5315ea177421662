"""What the Kubernetes and the etcd operator wire the same way around the pass
(:class:`~calico_rr.adapters.controller.Controller`): a replica's name, metrics,
loop and write pool; its warm caches (informers, prefix caches) and elector, started
and stopped in one order; and ``calico-rr uninstall`` driven in the calling process.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, Self

from calico_rr.adapters.controller import Controller
from calico_rr.adapters.observe import Health, OperatorMetrics
from calico_rr.adapters.runtime import WRITE_WORKERS


class Cache(Protocol):
    """One watched collection the pass reads (an Informer, a PrefixCache)."""

    #: set once the first LIST is in
    synced: threading.Event
    #: the full LISTs made so far (a re-list counts)
    lists: int

    def stop(self) -> None: ...


class DatastoreOperator(Controller):
    """One operator replica; a datastore sets up its caches, elector and ports."""

    identity: str
    #: the name of the reconcile loop's thread
    loop_name = "reconcile"

    def _init_replica(
        self,
        *,
        identity: str | None,
        env: Mapping[str, str] | None,
        metrics: OperatorMetrics | None,
        health: Health | None,
        clock: Callable[[], float],
        writers: str,
    ) -> None:
        """What every replica sets first; ``writers`` names the write pool's threads."""
        self.identity = identity or f"{socket.gethostname()}-{os.getpid()}"
        self.env = dict(os.environ if env is None else env)
        self.metrics = metrics or OperatorMetrics()
        self.health = health or Health()
        self.clock = clock
        self._init_loop()
        self._pool = ThreadPoolExecutor(max_workers=WRITE_WORKERS, thread_name_prefix=writers)

    def start(self) -> Self:
        """Run the replica in background threads: its caches, the elector, the loop."""
        self._start_caches()
        if self.elector is not None:
            self.elector.start()
        self._start_loop(self.loop_name)
        return self

    def _start_caches(self) -> None:
        raise NotImplementedError

    def start_caches(self) -> Self:
        """Only the caches: for one-shot commands (uninstall, its dry run) that read
        what the pass reads without leading or looping.  Undo with :meth:`stop_caches`."""
        self._start_caches()
        return self

    def stop_caches(self) -> None:
        """Stop the caches and the write pool (after :meth:`start_caches`)."""
        for cache in self._watched():
            cache.stop()
        self._pool.shutdown(wait=True)

    def _watched(self) -> Sequence[Cache]:
        """The caches the pass reads."""
        raise NotImplementedError

    @property
    def synced(self) -> bool:
        return all(c.synced.is_set() for c in self._watched())

    def lists(self) -> int:
        """The full LISTs the caches made so far (a re-list counts)."""
        return sum(c.lists for c in self._watched())

    def _stop_running(self, *, release: bool) -> None:
        """Stop the loop, then the elector (``release``: hand the lease over now),
        then the caches."""
        self._stop_loop()
        if self.elector is not None:
            self.elector.stop(release=release)
        for cache in self._watched():
            cache.stop()

    def stop(self, *, release: bool = True) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        """Stop as a crash would: the leader lease is not released, no final writes."""
        self.stop(release=False)

    def _on_leadership(self, leader: bool) -> None:
        self.metrics.leader.set(1 if leader else 0)
        self._wake.set()

    def drive_uninstall(self, removed: Callable[[], bool], timeout: float, poll: float) -> str:
        """Run passes (the caches started, no elector) until ``removed()`` says the
        config is gone - the uninstall steps ran to the end; TimeoutError after
        ``timeout`` seconds.  Returns a summary line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.synced:
                time.sleep(0.05)
                continue
            if removed():
                return "uninstalled: mesh restored, every calico-rr object removed"
            self.reconcile_once()
            wait = poll if self._requeue_at is None else self._requeue_at - time.monotonic()
            time.sleep(max(0.0, min(poll, wait)))
            self._requeue_at = None
        raise TimeoutError(f"uninstall did not finish in {timeout:.0f}s: {self.stats.last_message}")
