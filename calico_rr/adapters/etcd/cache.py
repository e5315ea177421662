"""A prefix of etcd kept in memory: one LIST snapshot, then a WATCH from the
next revision; resumed after a broken stream, listed again when compacted.  The
operator's caches (adapters/etcd/operator.py) and the lab's view of etcd
(adapters/lab/etcd_watcher.py) are built on it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.errors import Compacted, EtcdError
from calico_rr.adapters.etcd.values import EventType, KeyValue, WatchEvent
from calico_rr.adapters.etcd.watch import Watch
from calico_rr.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Entry:
    kv: KeyValue
    #: the decoded value (None: it did not decode; the key is still known for CAS)
    value: Any


class PrefixCache:
    """Every key under ``prefix``: one ``list`` snapshot at revision R, then a watch
    from R + 1.  A broken watch resumes at its ``next_revision``; a compacted one
    lists again.  The newest mod revision of a key wins, so write-through results
    (:meth:`store`, :meth:`deleted`) and late watch events can arrive in any order.
    ``on_event(key, existed, exists)`` is called after every change."""

    def __init__(
        self,
        client: EtcdClient,
        prefix: str,
        *,
        name: str,
        decode: Callable[[KeyValue], Any],
        on_event: Callable[[str, bool, bool], None] | None = None,
        on_relist: Callable[[], None] | None = None,
        backoff: float = 0.2,
    ) -> None:
        self.client = client
        self.on_relist = on_relist
        self.prefix = prefix
        self.name = name
        self.decode = decode
        self.on_event = on_event
        self.backoff = backoff
        self.synced = threading.Event()
        self.lists = 0
        self._entries: dict[str, Entry] = {}
        #: key -> revision it was deleted at (a lower bound): older PUTs are stale
        self._tombstones: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watch: Watch | None = None
        self._thread: threading.Thread | None = None

    # -- reading ---------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        with self._lock:
            return self._entries.get(key)

    def entries(self) -> dict[str, Entry]:
        with self._lock:
            return dict(self._entries)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    # -- changes ---------------------------------------------------------------

    def store(self, kv: KeyValue) -> None:
        """A key as written or read now (write-through); ignored if not newer."""
        self._apply(kv, deleted=False)

    def deleted(self, key: str, revision: int) -> None:
        """``key`` was deleted at (or after) ``revision``."""
        self._apply(KeyValue(key, mod_revision=revision), deleted=True)

    def _apply(self, kv: KeyValue, *, deleted: bool) -> None:
        key, rev = kv.key, kv.mod_revision
        with self._lock:
            old = self._entries.get(key)
            if old is not None and old.kv.mod_revision >= rev:
                return
            tomb = self._tombstones.get(key)
            if tomb is not None and tomb >= rev:
                return
            if deleted:
                if old is None:
                    self._tombstones[key] = rev
                    return
                del self._entries[key]
                self._tombstones[key] = rev
            else:
                self._tombstones.pop(key, None)
                self._entries[key] = Entry(kv, self._decode(kv))
        if self.on_event is not None:
            self.on_event(key, old is not None, not deleted)

    def _decode(self, kv: KeyValue) -> Any:
        try:
            return self.decode(kv)
        except (InputError, ValueError) as exc:
            log.warning("ignoring etcd key %s: %s", kv.key, exc)
            return None

    def _relist(self) -> int:
        result = self.client.list(self.prefix)
        self.lists += 1
        fresh = {kv.key: kv for kv in result.kvs}
        changed: list[tuple[str, bool, bool]] = []
        with self._lock:
            for key, cached in list(self._entries.items()):
                if key not in fresh and cached.kv.mod_revision <= result.revision:
                    del self._entries[key]
                    self._tombstones[key] = result.revision
                    changed.append((key, True, False))
            for key, kv in fresh.items():
                old = self._entries.get(key)
                if old is not None and old.kv.mod_revision >= kv.mod_revision:
                    continue
                self._entries[key] = Entry(kv, self._decode(kv))
                self._tombstones.pop(key, None)
                changed.append((key, old is not None, True))
            self._tombstones = {k: r for k, r in self._tombstones.items() if r > result.revision}
        if self.on_event is not None:
            for key, existed, exists in changed:
                self.on_event(key, existed, exists)
        return result.revision

    # -- the thread ------------------------------------------------------------

    def start(self) -> PrefixCache:
        self._thread = threading.Thread(target=self._run, name=f"etcd-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        w = self._watch
        if w is not None:
            w.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)

    def _run(self) -> None:
        next_rev = 0
        failures = 0
        while not self._stop.is_set():
            w: Watch | None = None
            try:
                if next_rev == 0:
                    next_rev = self._relist() + 1
                    self.synced.set()
                w = self.client.watch(self.prefix, next_rev)
                self._watch = w
                if self._stop.is_set():
                    w.close()
                failures = 0
                for item in w:
                    if isinstance(item, WatchEvent):
                        self._apply(item.kv, deleted=item.type == EventType.DELETE)
                    next_rev = w.next_revision
                next_rev = max(next_rev, w.next_revision)
            except Compacted as exc:
                log.warning("%s: %s; listing again", self.name, exc)
                next_rev = 0
                if self.on_relist is not None:
                    self.on_relist()
            except EtcdError as exc:
                if self._stop.is_set():
                    break
                if w is not None:
                    next_rev = max(next_rev, w.next_revision)
                failures += 1
                delay = min(5.0, self.backoff * 2 ** min(failures, 5))
                log.warning("%s watch: %s; again in %.1fs", self.name, exc, delay)
                self._stop.wait(delay)
            except Exception:  # a bug must not stop the cache for good
                log.exception("%s watch crashed", self.name)
                next_rev = 0
                self._stop.wait(1.0)
            finally:
                self._watch = None
