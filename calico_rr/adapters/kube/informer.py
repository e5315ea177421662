"""An informer: LIST once, then WATCH, and keep an in-memory cache of one resource.

Design decisions
----------------
* **One thread per informer** (a daemon), running the reflector loop:

  1. LIST (paginated, one ``KubeClient.list`` call) and store
     ``transform(obj)`` per key; the first time, set :attr:`Informer.synced` and
     call ``on_event("SYNC", "", None)``.
  2. WATCH from the list's resourceVersion with bookmarks.  Every event (BOOKMARK
     included) advances :attr:`Informer.resource_version`; ADDED/MODIFIED/DELETED
     update the cache and then call ``on_event(type, key, value_or_None)``.
  3. When the server ends the watch (timeoutSeconds), WATCH again from the last
     resourceVersion: no LIST.
  4. Only a 410 (:class:`~calico_rr.adapters.kube.client.Gone`) re-LISTs.  The new
     list replaces the cache and the differences are reported as synthetic
     ADDED/MODIFIED/DELETED events, so a consumer never misses a change.
  5. Any other error backs off (exponential, jittered, capped at ``backoff_max``)
     and retries the step that failed (the LIST, or the WATCH from the same
     resourceVersion).

* **Exact counters.**  :attr:`Informer.lists` counts ``KubeClient.list`` calls (a
  paginated chain is one) and :attr:`Informer.watches` counts watch requests, both
  including failed attempts, so a test can assert "one LIST, ever".
* **Callbacks run on the informer thread, outside the cache lock**, in event order.
  An exception from ``on_event`` or ``transform`` is logged and does not stop the
  informer; an object whose ``transform`` raises is left out of the cache (and a
  DELETED is reported if it was there before).
* **Stopping is prompt**: :meth:`Informer.stop` closes the open watch (which wakes
  the blocked reader) and interrupts backoff waits; a LIST in flight finishes first.
* **Write-through** for the owner's own writes: :meth:`Informer.store` puts the
  server's answer to a write into the cache at once (guarded by resourceVersion so
  that an older state never replaces a newer one), :meth:`Informer.forget` drops a
  deleted key; the watch events of those writes follow as usual.
* Guard against hot loops: a watch that ends within half a second without any
  event, or two 410s in a row without progress, are treated like errors (backoff).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from calico_rr.adapters.kube.client import KubeClient
from calico_rr.adapters.kube.errors import ApiError, Gone
from calico_rr.adapters.kube.watch import Watch, WatchEvent

log = logging.getLogger(__name__)

OnEvent = Callable[[str, str, Any], None]
_BACKOFF_BASE = 0.2
_SHORT_WATCH = 0.5  # seconds: an empty watch ending sooner than this is suspicious


_MISSING = object()


def _rv_int(rv: Any) -> int | None:
    try:
        return int(str(rv))
    except ValueError:
        return None


def object_key(obj: dict[str, Any]) -> str:
    """``namespace/name`` for namespaced objects, ``name`` for cluster-scoped ones."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    namespace = meta.get("namespace")
    return f"{namespace}/{name}" if namespace else name


class Informer:
    """A reflector + cache for one collection ``path`` (see the module docstring)."""

    def __init__(
        self,
        client: KubeClient,
        path: str,
        *,
        name: str,
        label_selector: str | None = None,
        transform: Callable[[dict[str, Any]], Any] | None = None,
        on_event: OnEvent | None = None,
        watch_timeout: int = 300,
        backoff_max: float = 10.0,
        on_gone: Callable[[], None] | None = None,
    ) -> None:
        self.client = client
        self.path = path
        self.name = name
        self.label_selector = label_selector
        self.watch_timeout = watch_timeout
        self.backoff_max = backoff_max
        self._transform = transform
        self._on_event = on_event
        #: called on the informer thread for every 410 (each is followed by a re-LIST)
        self._on_gone = on_gone
        self.synced = threading.Event()
        self.lists = 0
        #: 410 Gone answers (each is followed by a re-LIST): the only reason to re-list
        self.gone = 0
        self.watches = 0
        self.last_error: Exception | None = None
        self._cache: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: Watch | None = None
        self._rv = ""
        self._ahead: dict[str, int] = {}  # key -> resourceVersion of a store()d write

    # -- public surface -----------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        """The last resourceVersion seen (from the list or any watch event)."""
        return self._rv

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Informer:
        """Start the informer thread (once)."""
        if self._thread is not None:
            raise RuntimeError(f"informer {self.name} already started")
        self._thread = threading.Thread(target=self._run, name=f"informer-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the informer and wait (up to ``timeout``) for its thread to end."""
        self._stop.set()
        w = self._watch
        if w is not None:
            w.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def store(self, obj: dict[str, Any]) -> bool:
        """Write-through: put the result of our own write (``obj`` as the server
        returned it) into the cache now, before its watch event arrives.

        Ignored (returns False) when the cache already reflects that write or a later
        state: ``obj``'s resourceVersion is not newer than the informer's (or than a
        value stored before for the key).  Watch events older than a stored value
        leave it in place; the event of the write itself replaces it.  No
        ``on_event`` call is made.  resourceVersions are compared as integers (as
        etcd issues them); a non-numeric one is stored unconditionally.
        """
        rv = _rv_int((obj.get("metadata") or {}).get("resourceVersion"))
        ok, value = self._value(obj)
        if not ok:
            return False
        key = object_key(obj)
        with self._lock:
            current = _rv_int(self._rv)
            if rv is not None:
                if current is not None and rv <= current:
                    return False
                if rv <= self._ahead.get(key, -1):
                    return False
                self._ahead[key] = rv
            self._cache[key] = value
        return True

    def forget(self, key: str) -> bool:
        """Drop ``key`` from the cache now (after we deleted the object); returns
        whether it was there.  The DELETED watch event follows as usual (a watch
        event already in flight for the object may re-add it until then)."""
        with self._lock:
            self._ahead.pop(key, None)
            return self._cache.pop(key, _MISSING) is not _MISSING

    def get(self, key: str) -> Any | None:
        with self._lock:
            return self._cache.get(key)

    def items(self) -> dict[str, Any]:
        """A snapshot (copy) of the cache."""
        with self._lock:
            return dict(self._cache)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._cache)

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._cache

    def __repr__(self) -> str:
        return (
            f"Informer({self.name!r}, {self.path!r}, synced={self.synced.is_set()}, "
            f"items={len(self)}, lists={self.lists}, watches={self.watches})"
        )

    # -- the loop -----------------------------------------------------------------------

    def _run(self) -> None:
        need_list = True
        failures = 0
        gone_streak = 0
        while not self._stop.is_set():
            try:
                if need_list:
                    self._list()
                    need_list = False
                    failures = 0
                started = time.monotonic()
                events = self._watch_once()
                if events:
                    failures = gone_streak = 0
                elif time.monotonic() - started < _SHORT_WATCH and not self._stop.is_set():
                    failures += 1
                    self._backoff(failures, "watch ended at once without events")
            except Gone as exc:
                self.last_error = exc
                self.gone += 1
                need_list = True
                if self._on_gone is not None:
                    try:
                        self._on_gone()
                    except Exception:
                        log.exception("informer %s: on_gone failed", self.name)
                gone_streak += 1
                log.info("informer %s: %s; re-listing", self.name, exc)
                if gone_streak > 1:
                    self._backoff(gone_streak - 1, "repeated 410")
            except Exception as exc:
                if self._stop.is_set():
                    break
                if not isinstance(exc, ApiError):  # a bug (key/transform?), not the server
                    log.exception("informer %s: unexpected error", self.name)
                self.last_error = exc
                failures += 1
                self._backoff(failures, str(exc))
        log.debug("informer %s stopped", self.name)

    def _backoff(self, failures: int, why: str) -> None:
        cap = min(self.backoff_max, _BACKOFF_BASE * (2 ** min(failures - 1, 30)))
        delay = cap / 2 + random.uniform(0.0, cap / 2)
        log.warning("informer %s: %s; retrying in %.2fs", self.name, why, delay)
        self._stop.wait(delay)

    def _value(self, obj: dict[str, Any]) -> tuple[bool, Any]:
        if self._transform is None:
            return True, obj
        try:
            return True, self._transform(obj)
        except Exception:
            log.exception("informer %s: transform failed for %s", self.name, object_key(obj))
            return False, None

    def _emit(self, etype: str, key: str, value: Any) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(etype, key, value)
        except Exception:
            log.exception("informer %s: on_event(%s, %s) failed", self.name, etype, key)

    def _list(self) -> None:
        self.lists += 1
        items, rv = self.client.list(self.path, label_selector=self.label_selector)
        fresh: dict[str, Any] = {}
        for obj in items:
            ok, value = self._value(obj)
            if ok:
                fresh[object_key(obj)] = value
        list_rv = _rv_int(rv)
        with self._lock:
            old = self._cache
            # Our own writes newer than the list stay (see store()).
            self._ahead = {k: r for k, r in self._ahead.items() if list_rv is None or r > list_rv}
            for k in self._ahead:
                if k in old:
                    fresh[k] = old[k]
            self._cache = fresh
            self._rv = rv
        if not self.synced.is_set():
            self.synced.set()
            self._emit("SYNC", "", None)
            return
        for k in sorted(old.keys() - fresh.keys()):
            self._emit("DELETED", k, None)
        for k in sorted(fresh.keys() - old.keys()):
            self._emit("ADDED", k, fresh[k])
        for k in sorted(fresh.keys() & old.keys()):
            if fresh[k] != old[k]:
                self._emit("MODIFIED", k, fresh[k])

    def _watch_once(self) -> int:
        """One watch request; returns the number of events received."""
        self.watches += 1
        count = 0
        with self.client.watch(
            self.path,
            resource_version=self._rv,
            label_selector=self.label_selector,
            timeout_seconds=self.watch_timeout,
        ) as w:
            self._watch = w
            try:
                if self._stop.is_set():
                    w.close()
                for event in w:
                    count += 1
                    self._handle(event)
                    if self._stop.is_set():
                        break
            finally:
                self._watch = None
        return count

    def _handle(self, event: WatchEvent) -> None:
        obj = event.object
        rv = str((obj.get("metadata") or {}).get("resourceVersion") or "")
        if event.type not in ("ADDED", "MODIFIED", "DELETED"):
            if rv:
                with self._lock:
                    self._rv = rv
            if event.type != "BOOKMARK":
                log.warning("informer %s: ignoring %s event", self.name, event.type)
            return
        key = object_key(obj)
        ok, value = (True, None) if event.type == "DELETED" else self._value(obj)
        event_rv = _rv_int(rv)
        with self._lock:
            if rv:
                self._rv = rv
            ahead = self._ahead.get(key)
            if ahead is not None and event_rv is not None and event_rv < ahead:
                # Older than a write we stored ourselves: the event of that write
                # is still to come; keep the newer value.
                return
            self._ahead.pop(key, None)
            existed = key in self._cache
            if event.type == "DELETED" or not ok:
                self._cache.pop(key, None)
            else:
                self._cache[key] = value
        if ok:
            self._emit(event.type, key, value)
        elif existed:
            self._emit("DELETED", key, None)
