"""Leader fencing on etcd: every write of the operator carries "the leader key is
still under my lease" in the same transaction, so a replica that still believes it
leads (a long pause, a partition, a clock that stalled) cannot write once etcd gave
leadership to someone else.  Real etcd with client-certificate TLS.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from calico_rr.adapters.etcd.client import EtcdClient
from calico_rr.adapters.etcd.errors import Conflict, Fenced
from calico_rr.adapters.etcd.operator import EtcdOperator
from calico_rr.adapters.etcd.values import Fence
from calico_rr.core.formats import etcd as L
from calico_rr.core.formats.etcd_nodes import node_to_calico
from calico_rr.core.planning.config import RR_LABEL
from calico_rr.core.planning.synthetic import synthetic_cluster
from calico_rr.sandbox.etcd import EtcdServer

pytestmark = pytest.mark.integration

CONFIG_KEY = "/calico-rr/config/default"
STATUS_KEY = "/calico-rr/status/default"
LEADER_KEY = "/calico-rr/leader"


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    with EtcdServer() as server:
        yield server


@pytest.fixture
def admin(etcd: EtcdServer) -> Iterator[EtcdClient]:
    client = etcd.client(timeout=5.0)
    for kv in client.list("/calico").kvs:  # /calico and /calico-rr: a clean keyspace
        client.delete(kv.key)
    try:
        yield client
    finally:
        client.close()


def test_fenced_writes_land_only_under_the_fence_lease(admin: EtcdClient) -> None:
    lease = admin.grant(30).id
    admin.put_if(LEADER_KEY, b"me", 0, lease=lease)
    fence = Fence(LEADER_KEY, lease)

    kv = admin.put_if("/calico-rr/test/a", b"1", 0, fence=fence)
    kv = admin.put_if("/calico-rr/test/a", b"2", kv.mod_revision, fence=fence)
    assert admin.get("/calico-rr/test/a") is not None

    # a stale revision with a good fence is a plain conflict, not a fencing error
    with pytest.raises(Conflict) as conflict:
        admin.put_if("/calico-rr/test/a", b"3", kv.mod_revision - 1, fence=fence)
    assert not isinstance(conflict.value, Fenced)

    # the leader key taken over by another lease: nothing is written, whatever the revision
    admin.revoke(lease)
    other = admin.grant(30).id
    admin.put_if(LEADER_KEY, b"usurper", 0, lease=other)
    with pytest.raises(Fenced, match="usurper") as fenced:
        admin.put_if("/calico-rr/test/a", b"4", kv.mod_revision, fence=fence)
    assert fenced.value.holder is not None and fenced.value.holder.lease == other
    with pytest.raises(Fenced):
        admin.delete_if("/calico-rr/test/a", kv.mod_revision, fence=fence)
    with pytest.raises(Fenced):
        admin.put_if("/calico-rr/test/new", b"x", 0, fence=fence)
    got = admin.get("/calico-rr/test/a")
    assert got is not None and got.value == b"2" and got.mod_revision == kv.mod_revision
    assert admin.get("/calico-rr/test/new") is None

    # the leader key gone altogether: refused too
    admin.revoke(other)
    with pytest.raises(Fenced, match="does not exist"):
        admin.put_if("/calico-rr/test/a", b"5", kv.mod_revision, fence=fence)


def _wait(condition: object, timeout: float, what: str) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_leader_that_lost_its_key_unknowingly_cannot_write(
    etcd: EtcdServer, admin: EtcdClient
) -> None:
    nodes = synthetic_cluster(12, zones=3)
    for n in nodes:
        key, value = L.encode_document(node_to_calico(n, uid=f"uid-{n.name}"))
        admin.put_if(key, value, 0)
    config = {
        "apiVersion": "calico-rr.io/v1alpha1",
        "kind": "RouteReflectorConfig",
        "metadata": {"name": "default"},
        "spec": {"topology": "multi", "waitTimeout": "1s", "debounce": "20ms"},
    }
    admin.put(CONFIG_KEY, json.dumps(config).encode())
    # a long lease: the elector renews every 12 s and would keep believing it leads
    # for up to 40 s after etcd handed the key to someone else
    op = EtcdOperator(etcd.client(timeout=5.0), identity="stale", env={}, lease_duration=60.0)
    op.start()
    try:
        _wait(
            lambda: op.stats.last_phase == "Steady" and (admin.get(STATUS_KEY) or None) is not None,
            60,
            "never steady",
        )
        assert op.is_leader and op.elector is not None and op.elector.lease_id is not None
        writes_before = op.stats.writes

        # behind its back: its lease is revoked and another replica takes the key
        admin.revoke(op.elector.lease_id)
        usurper = admin.grant(60).id
        admin.put_if(LEADER_KEY, b"usurper", 0, lease=usurper)
        assert op.is_leader  # it has not noticed yet

        # a change that needs writes (a joining multi-topology client gets labels)
        joiner = synthetic_cluster(13, zones=3)[-1]
        key, value = L.encode_document(node_to_calico(joiner, uid="uid-joiner"))
        joined = admin.put_if(key, value, 0)
        status_before = admin.get(STATUS_KEY)

        _wait(lambda: op.stats.fenced >= 1, 20, "the write was never fenced")
        assert not op.is_leader  # stepped down at once, long before its next renewal
        assert op.stats.writes == writes_before
        # etcd holds nothing of the stale leader's: the joiner untouched, status untouched,
        # the usurper still leads
        got = admin.get(key)
        assert got is not None and got.mod_revision == joined.mod_revision
        assert RR_LABEL not in (
            L.decode_document(key, got.value, 0)["metadata"].get("labels") or {}
        )
        status_after = admin.get(STATUS_KEY)
        assert status_before is not None and status_after is not None
        assert status_after.mod_revision == status_before.mod_revision
        leader = admin.get(LEADER_KEY)
        assert leader is not None and leader.value == b"usurper" and leader.lease == usurper
        time.sleep(1.0)  # and it stays a follower: no write in the next second either
        assert op.stats.writes == writes_before and not op.is_leader
    finally:
        op.stop(release=False)
        op.client.close()
