"""EtcdOperator pieces without etcd: the prefix cache's ordering rules (newest mod
revision wins, deletions are not undone by late events, re-list on compaction) and
the merge that keeps a user's labels on our objects."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any, cast

from calico_rr.adapters.etcd.cache import PrefixCache
from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.errors import Compacted
from calico_rr.adapters.etcd.ports import merge_foreign_metadata
from calico_rr.adapters.etcd.values import EventType, KeyValue, ListResult, WatchEvent
from calico_rr.model import MANAGED_BY_LABEL, MANAGED_BY_VALUE


def kv(key: str, rev: int, value: bytes = b"{}") -> KeyValue:
    return KeyValue(key, value, 1, rev, 1)


def cache(client: object = None) -> tuple[PrefixCache, list[tuple[str, bool, bool]]]:
    seen: list[tuple[str, bool, bool]] = []
    c = PrefixCache(
        cast(EtcdClient, client),
        "/p/",
        name="test",
        decode=lambda k: k.value.decode(),
        on_event=lambda key, existed, exists: seen.append((key, existed, exists)),
    )
    return c, seen


def test_newest_revision_wins_whatever_the_order() -> None:
    c, seen = cache()
    c.store(kv("/p/a", 5, b"ours"))  # our write, written through
    c.store(kv("/p/a", 4, b"older watch event"))
    entry = c.get("/p/a")
    assert entry is not None and entry.value == "ours" and entry.kv.mod_revision == 5
    c.deleted("/p/a", 7)
    c.store(kv("/p/a", 6, b"late event from before the delete"))
    assert c.get("/p/a") is None
    c.store(kv("/p/a", 9, b"re-created"))
    entry = c.get("/p/a")
    assert entry is not None and entry.value == "re-created"
    assert seen == [("/p/a", False, True), ("/p/a", True, False), ("/p/a", False, True)]


def test_undecodable_values_are_kept_for_their_revision() -> None:
    c = PrefixCache(cast(EtcdClient, None), "/p/", name="t", decode=lambda k: int(k.value))
    c.store(kv("/p/x", 3, b"not a number"))
    entry = c.get("/p/x")
    assert entry is not None and entry.value is None and entry.kv.mod_revision == 3


class FakeWatch:
    def __init__(self, items: list[Any], start: int) -> None:
        self.items = items
        self.next_revision = start
        self.closed = threading.Event()

    def __iter__(self) -> Iterator[Any]:
        for item in self.items:
            if isinstance(item, Exception):
                raise item
            self.next_revision = item.revision + 1
            yield item
        self.closed.wait(5)  # an idle watch, until closed

    def close(self) -> None:
        self.closed.set()


class FakeClient:
    """list() snapshots and a watch that delivers an event, then reports compaction."""

    def __init__(self) -> None:
        self.lists: list[ListResult] = [
            ListResult((kv("/p/a", 3), kv("/p/b", 4)), 10),
            ListResult((kv("/p/a", 12, b"new"),), 20),
        ]
        self.watches: list[int] = []
        self.done = threading.Event()

    def list(self, prefix: str) -> ListResult:
        return self.lists.pop(0)

    def watch(self, prefix: str, start: int) -> FakeWatch:
        self.watches.append(start)
        if len(self.watches) == 1:
            return FakeWatch(
                [WatchEvent(EventType.PUT, kv("/p/c", 11)), Compacted("gone", 15)], start
            )
        self.done.set()
        return FakeWatch([], start)


def test_compaction_lists_again_and_drops_keys_deleted_meanwhile() -> None:
    fake = FakeClient()
    c, _ = cache(fake)
    relists: list[int] = []
    c.on_relist = lambda: relists.append(1)  # calico_rr_relists_total on etcd
    c.start()
    try:
        assert fake.done.wait(5)
    finally:
        c.stop()
    assert fake.watches[:2] == [11, 21]  # from each list's revision + 1
    assert c.lists == 2 and c.synced.is_set()
    assert relists == [1]  # the initial list is not a re-list
    assert set(c.entries()) == {"/p/a"}  # b and c were deleted before revision 20
    entry = c.get("/p/a")
    assert entry is not None and entry.value == "new"


def test_user_labels_on_our_objects_are_kept_ours_replaced() -> None:
    existing = {
        "metadata": {
            "name": "p",
            "labels": {
                MANAGED_BY_LABEL: MANAGED_BY_VALUE,
                "calico-rr.io/topology": "single",
                "owner": "netops",
            },
            "annotations": {"note": "keep"},
        },
        "spec": {"old": True},
    }
    ours = {
        "kind": "BGPPeer",
        "metadata": {
            "name": "p",
            "labels": {MANAGED_BY_LABEL: MANAGED_BY_VALUE, "calico-rr.io/companion-of": "x"},
        },
        "spec": {"new": True},
    }
    merged = merge_foreign_metadata(ours, existing)
    assert merged["metadata"]["labels"] == {
        MANAGED_BY_LABEL: MANAGED_BY_VALUE,
        "calico-rr.io/companion-of": "x",  # ours: the old topology label is gone
        "owner": "netops",
    }
    assert merged["metadata"]["annotations"] == {"note": "keep"}
    assert merged["spec"] == {"new": True}
    assert merge_foreign_metadata(ours, None) is ours
